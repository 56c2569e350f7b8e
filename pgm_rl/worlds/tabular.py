"""The tabular MDP: one pytree layout over outcomes, whatever is random in it.

Every :class:`TabularMDP` stores its dynamics as the K possible outcomes of each state-action
pair (K = the largest number of outcomes of any pair, e.g. 3 on a slippery grid):
``outcome_states`` (S, A, K) int32, ``outcome_probs`` (S, A, K) (0 marks padding) and
``outcome_rewards`` (S, A, K) (the reward of each outcome; it may depend on the state entered),
and its start as ``start_probs`` (S,). These four arrays are its pytree leaves, always:
deterministic dynamics are K = 1 with probability 1 and a single start state is a one-hot
``start_probs``, so one code path over outcomes (:mod:`pgm_rl.dynamics`) moves through every
kind. It implements :class:`pgm_rl.worlds.protocol.World`.

Conveniences: ``reward`` / ``expected_reward`` (S, A), the expected reward of each pair;
``transition`` (S, A, S, built on first use, for users; never used on a hot path);
``next_state`` (S, A), only for deterministic dynamics, and ``start_state``, only for a single
start state: asking a stochastic MDP for them raises an ``AttributeError`` that says why, so
code written for deterministic MDPs fails loudly instead of silently. ``is_deterministic``,
``has_random_dynamics`` and ``has_random_start`` say what is random. Stochastic MDPs are
supported by :func:`~pgm_rl.trajectory_model`, every kernel except ``StepwiseMH``,
:func:`~pgm_rl.smc.run_smc`, :func:`~pgm_rl.solve`, :func:`~pgm_rl.soft_bellman` and
:func:`~pgm_rl.evaluate_policy`; only ``StepwiseMH`` and
:func:`~pgm_rl.exact.most_probable_path` refuse them.

The constructors check their input; ``tree_unflatten`` (what JAX calls on traced or transformed
leaves) does not.
"""

import jax
import jax.numpy as jnp
import numpy as np

from pgm_rl._checks import INT32_MAX, memory_limit
from pgm_rl.worlds.outcomes import (
    check_start,
    dense_to_outcomes,
    finite_float_array,
    merge_outcomes,
)

__all__ = ["NOT_SUPPORTED", "TabularMDP"]

# What handles stochastic worlds, for the refusals of the code that does not.
NOT_SUPPORTED = (
    "this code handles deterministic dynamics and a single start state only (as do StepwiseMH "
    "and most_probable_path); trajectory_model, the other kernels, run_smc, solve, "
    "soft_bellman and evaluate_policy take stochastic MDPs"
)
_NOT_SUPPORTED_SENTENCE = NOT_SUPPORTED[0].upper() + NOT_SUPPORTED[1:]


def _xp(array):
    """NumPy for concrete NumPy arrays, else jax.numpy (traced or device arrays)."""
    return np if isinstance(array, np.ndarray) else jnp


@jax.tree_util.register_pytree_node_class
class TabularMDP:
    """A finite MDP (a JAX pytree over outcomes); this constructor makes deterministic ones.

    Stochastic dynamics or a random start: :meth:`from_probabilities` (a dense (S, A, S)
    table) or :meth:`from_outcomes` (sparse (S, A, K) outcomes). Every MDP has the leaves
    ``outcome_states`` / ``outcome_probs`` / ``outcome_rewards`` (S, A, K) and ``start_probs``
    (S,), and exposes ``transition`` (S, A, S), ``expected_reward`` (S, A) and
    ``is_deterministic``; ``next_state`` and ``start_state`` only where they are defined (see
    :mod:`pgm_rl.worlds.tabular`).

    Parameters
    ----------
    next_state : array_like of int, shape (S, A)
        ``next_state[s, a]`` is the state entered by taking action ``a`` in state ``s``.
    reward : array_like of float, shape (S, A)
        ``reward[s, a]`` is the reward of that step (finite real numbers; not bools).
    start_state : int
        Index of the start state, ``0 <= start_state < S``.

    Raises
    ------
    TypeError
        For non-integer ``next_state``, non-real or bool ``reward`` or a non-int start state.
    ValueError
        For mismatched shapes, out-of-range indices, non-finite rewards, or more than
        2**31 - 1 states (state indices are int32).
    """

    def __init__(self, next_state, reward, start_state):
        next_state = np.asarray(next_state)
        if next_state.ndim != 2 or next_state.size == 0:
            raise ValueError(
                f"next_state must be a non-empty (S, A) array, got shape {next_state.shape}"
            )
        if not np.issubdtype(next_state.dtype, np.integer):
            raise TypeError(f"next_state must hold integers, got dtype {next_state.dtype}")
        n_states = next_state.shape[0]
        if n_states > INT32_MAX:
            raise ValueError(
                f"next_state must have at most {INT32_MAX} rows (state indices are int32), "
                f"got {n_states}"
            )
        if next_state.min() < 0 or next_state.max() >= n_states:
            raise ValueError(f"next_state entries must lie in [0, {n_states}), the state indices")
        reward = finite_float_array(reward, "reward")
        if reward.shape != next_state.shape:
            raise ValueError(
                f"reward must have shape {next_state.shape} like next_state, got {reward.shape}"
            )
        if isinstance(start_state, bool) or not isinstance(start_state, (int, np.integer)):
            raise TypeError(f"start_state must be an int state index, got {start_state!r}")
        if not 0 <= start_state < n_states:
            raise ValueError(f"start_state must lie in [0, {n_states}), got {start_state}")
        self._set_outcomes(
            next_state.astype(np.int32)[..., None],
            np.ones((*reward.shape, 1)),
            reward[..., None],
            int(start_state),
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_probabilities(cls, transition, reward, start):
        """A :class:`TabularMDP` from a dense transition table.

        Parameters
        ----------
        transition : array_like, shape (S, A, S)
            ``transition[s, a, s']`` = P(s' | s, a). Every row ``transition[s, a]`` must sum to 1
            within 1e-6 (the error names the first row that does not) and hold probabilities
            in [0, 1] (no NaN). Rows are renormalised; only the nonzero entries are kept, as
            (S, A, K) outcome arrays.
        reward : array_like, shape (S, A) or (S, A, S)
            Finite rewards; ``reward[s, a, s']`` when the reward depends on the state entered.
        start : int or array_like, shape (S,)
            The start state, or a start distribution summing to 1 within 1e-6.

        Returns
        -------
        TabularMDP
            Deterministic (K = 1, with ``next_state``) when every row has a single next state,
            with ``start_state`` when the start is a single state.

        Raises
        ------
        TypeError
            For non-numeric arrays or a bool start.
        ValueError
            For shape mismatches, probabilities outside [0, 1] or NaN, rows or a start vector
            not summing to 1, non-finite rewards.
        """
        states, probs, rewards = dense_to_outcomes(transition, reward)
        start = check_start(start, states.shape[0])
        mdp = object.__new__(TabularMDP)
        mdp._set_outcomes(states, probs, rewards, start)
        return mdp

    @classmethod
    def from_outcomes(cls, next_states, probs, rewards, start):
        """A :class:`TabularMDP` from sparse outcomes (no (S, A, S) array is ever built).

        Parameters
        ----------
        next_states : array_like of int, shape (S, A, K)
            The possible next states of each state-action pair.
        probs : array_like, shape (S, A, K)
            Their probabilities; each row sums to 1 within 1e-6 (0 marks padding).
        rewards : array_like, shape (S, A, K)
            The reward of each outcome.
        start : int or array_like, shape (S,)

        Entries of one row with equal next state and reward are merged (probabilities summed).
        """
        next_states = np.asarray(next_states)
        if next_states.ndim != 3 or next_states.size == 0:
            raise ValueError(
                f"next_states must be a non-empty (S, A, K) array, got shape {next_states.shape}"
            )
        if not np.issubdtype(next_states.dtype, np.integer):
            raise TypeError(f"next_states must hold integers, got dtype {next_states.dtype}")
        for name, values in (("probs", probs), ("rewards", rewards)):
            if np.shape(values) != next_states.shape:
                raise ValueError(
                    f"{name} must have shape {next_states.shape} like next_states, got "
                    f"{np.shape(values)}"
                )
        n_states, n_actions, width = next_states.shape
        rows = np.repeat(np.arange(n_states * n_actions), width)
        states, probs, rewards = merge_outcomes(
            rows,
            next_states.ravel(),
            np.ravel(probs),
            np.ravel(rewards),
            n_states,
            n_actions,
            "next_states/probs",
        )
        start = check_start(start, n_states)
        mdp = object.__new__(TabularMDP)
        mdp._set_outcomes(states, probs, rewards, start)
        return mdp

    def _set_outcomes(self, states, probs, rewards, start):
        """Store checked (S, A, K) outcomes and a checked start (an int or (S,) probabilities).

        Takes ownership of the arrays (fresh ones: they are made read-only, not copied).
        """
        self.outcome_states = states.astype(np.int32, copy=False)
        self.outcome_probs = probs.astype(np.float64, copy=False)
        self.outcome_rewards = rewards.astype(np.float64, copy=False)
        self._random_start = not isinstance(start, int)
        if self._random_start:
            self.start_probs = np.asarray(start, np.float64)
        else:
            self.start_probs = np.zeros(states.shape[0])
            self.start_probs[start] = 1.0
        for array in (self.outcome_states, self.outcome_probs, self.outcome_rewards):
            array.flags.writeable = False
        self.start_probs.flags.writeable = False

    # ------------------------------------------------------------------ pytree
    def tree_flatten(self):
        """Leaves: ``(outcome_states, outcome_probs, outcome_rewards, start_probs)``; static:
        whether the start is random (``start_state`` exists only where it is not)."""
        leaves = (self.outcome_states, self.outcome_probs, self.outcome_rewards, self.start_probs)
        return leaves, self._random_start

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        """Rebuild from (possibly traced) leaves, unchecked."""
        mdp = object.__new__(cls)
        mdp.outcome_states, mdp.outcome_probs, mdp.outcome_rewards, mdp.start_probs = children
        mdp._random_start = aux_data
        return mdp

    # ------------------------------------------------------------------ sizes and kind
    @property
    def n_states(self):
        """Number of states S."""
        return self.outcome_states.shape[0]

    @property
    def n_actions(self):
        """Number of actions A."""
        return self.outcome_states.shape[1]

    @property
    def n_outcomes(self):
        """K, the largest number of outcomes of a state-action pair (1 when deterministic)."""
        return self.outcome_states.shape[2]

    @property
    def has_random_dynamics(self):
        """True when some state-action pair has more than one possible outcome (K > 1)."""
        return self.n_outcomes > 1

    @property
    def has_random_start(self):
        """True when the start is a distribution over more than one state."""
        return self._random_start

    @property
    def is_deterministic(self):
        """True when the dynamics are deterministic and the start is a single state."""
        return self.n_outcomes == 1 and not self._random_start

    # ------------------------------------------------------------------ conveniences
    @property
    def expected_reward(self):
        """Expected reward of each state-action pair, (S, A) (the same array as ``reward``)."""
        cached = self.__dict__.get("_expected_reward")
        if cached is not None:
            return cached
        probs, rewards = self.outcome_probs, self.outcome_rewards
        if _xp(probs) is np and _xp(rewards) is np:
            expected = np.sum(probs * rewards, axis=-1)
            expected.flags.writeable = False
            self.__dict__["_expected_reward"] = expected
            return expected
        return jnp.sum(jnp.asarray(probs) * jnp.asarray(rewards), axis=-1)

    @property
    def reward(self):
        """Expected reward of each state-action pair, (S, A): the reward of the step when the
        dynamics are deterministic."""
        return self.expected_reward

    @property
    def next_state(self):
        """The state each action enters, int32 (S, A); deterministic dynamics only (K = 1)."""
        if self.n_outcomes > 1:
            raise AttributeError(
                "this TabularMDP has stochastic dynamics, so it has no next_state (S, A) "
                "(deterministic MDPs only); its dynamics are outcome_states / outcome_probs "
                f"(S, A, K) or transition (S, A, S). {_NOT_SUPPORTED_SENTENCE}"
            )
        return self.outcome_states[..., 0]

    @property
    def start_state(self):
        """The start state (an int, or an int32 scalar when traced); a single start only."""
        if self._random_start:
            raise AttributeError(
                "this TabularMDP has a random start (start_probs (S,)), so it has no single "
                f"start_state. {_NOT_SUPPORTED_SENTENCE}"
            )
        if _xp(self.start_probs) is np:
            return int(np.argmax(self.start_probs))
        return jnp.argmax(self.start_probs).astype(jnp.int32)

    @property
    def transition(self):
        """Dense transition probabilities P(s' | s, a), shape (S, A, S), built on first use.

        Meant for users and small MDPs: the library itself works on the sparse outcome arrays.
        Raises ``ValueError`` if S * A * S floats would exceed the memory limit (half of this
        machine's memory, or of the process's address-space or cgroup limit where smaller).
        """
        cached = self.__dict__.get("_transition")
        if cached is not None:
            return cached
        n_states, n_actions = self.n_states, self.n_actions
        needed = 8 * n_states * n_actions * n_states
        limit = memory_limit()
        if needed > limit:
            raise ValueError(
                f"transition (S, A, S) of {n_states} states x {n_actions} actions needs "
                f"{needed / 2**30:.3g} GiB, more than the {limit / 2**30:.3g} GiB allowed (half of "
                "this machine's memory, or of the process's memory limit): use outcome_states / "
                "outcome_probs (S, A, K)"
            )
        states, probs = self.outcome_states, self.outcome_probs
        if _xp(states) is np and _xp(probs) is np:
            dense = np.zeros((n_states, n_actions, n_states))
            s, a, _ = np.indices(states.shape)
            np.add.at(dense, (s, a, states), probs)
            dense.flags.writeable = False
        else:
            s, a, _ = jnp.indices(states.shape)
            dense = jnp.zeros((n_states, n_actions, n_states), probs.dtype)
            dense = dense.at[s, a, states].add(probs)
        self.__dict__["_transition"] = dense
        return dense

    def _start_words(self):
        """``"start_probs: (S,)"`` or ``"start_state=s"``, for reprs."""
        if self._random_start:
            return f"start_probs: ({self.n_states},)"
        return f"start_state={self.start_state}"

    def __repr__(self):
        random = self.n_outcomes > 1 or self._random_start
        outcomes = f"n_outcomes={self.n_outcomes}, " if random else ""
        return (
            f"{type(self).__name__}(n_states={self.n_states}, n_actions={self.n_actions}, "
            f"{outcomes}{self._start_words()})"
        )
