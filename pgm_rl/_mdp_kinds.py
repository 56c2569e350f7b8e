"""The two storage kinds of a :class:`~pgm_rl.envs.TabularMDP`, behind one set of properties.

Deterministic dynamics are stored as ``next_state`` (S, A) int32 and ``reward`` (S, A): the fast
path every kernel, SMC and the deterministic :func:`~pgm_rl.solve` use, with no (S, A, S) or
(S, A, K) array anywhere. Stochastic dynamics are stored sparsely, as the K possible outcomes of
each state-action pair (K = the largest number of outcomes of any pair, e.g. 3 on a slippery
grid): ``outcome_states`` (S, A, K) int32, ``outcome_probs`` (S, A, K) and ``outcome_rewards``
(S, A, K) (the reward of each outcome; it may depend on the state entered), with ``reward``
(S, A) their expectation. The start is either one state ``start_state`` or a distribution
``start_probs`` (S,).

Every MDP exposes ``outcome_states``, ``outcome_probs``, ``outcome_rewards`` (K = 1 for
deterministic dynamics, built on demand), ``start_probs``, ``expected_reward``,
``transition`` (S, A, S, built on first use, for users; never used on a hot path) and
``is_deterministic``. ``next_state`` exists only for deterministic dynamics and ``start_state``
only for a single start state: asking a stochastic MDP for them raises an ``AttributeError``
that says why, so code written for deterministic MDPs fails loudly instead of silently.
Stochastic MDPs are supported by :func:`~pgm_rl.trajectory_model`, every kernel except
``StepwiseMH``, :func:`~pgm_rl.smc.run_smc`, :func:`~pgm_rl.solve`,
:func:`~pgm_rl.soft_bellman` and :func:`~pgm_rl.evaluate_policy`; only ``StepwiseMH`` and
:func:`~pgm_rl.exact.most_probable_path` refuse them.
"""

import jax.numpy as jnp
import numpy as np

from pgm_rl._checks import memory_limit
from pgm_rl._transitions import check_start, dense_to_outcomes

# Attribute names of the pytree leaves, by (random dynamics, random start).
_DYNAMICS_FIELDS = {
    False: ("next_state", "reward"),
    True: ("_outcome_states", "_outcome_probs", "_outcome_rewards", "reward"),
}
_START_FIELDS = {False: ("start_state",), True: ("_start_probs",)}

_NOT_SUPPORTED = (
    "this code handles deterministic dynamics and a single start state only (as do StepwiseMH "
    "and most_probable_path); trajectory_model, the other kernels, run_smc, solve, "
    "soft_bellman and evaluate_policy take stochastic MDPs"
)
_NOT_SUPPORTED_SENTENCE = _NOT_SUPPORTED[0].upper() + _NOT_SUPPORTED[1:]


def _xp(array):
    """NumPy for concrete NumPy arrays (and ints), else jax.numpy (traced or device arrays)."""
    return np if isinstance(array, (np.ndarray, int, np.integer)) else jnp


class DynamicsMixin:
    """Properties shared by deterministic and stochastic tabular MDPs (see the module docs)."""

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
            With the deterministic fast path (``next_state``, ``start_state``) when every row
            has a single next state and the start is a single state.

        Raises
        ------
        TypeError
            For non-numeric arrays or a bool start.
        ValueError
            For shape mismatches, probabilities outside [0, 1] or NaN, rows or a start vector
            not summing to 1, non-finite rewards.
        """
        from pgm_rl.envs import TabularMDP

        states, probs, rewards = dense_to_outcomes(transition, reward)
        start = check_start(start, states.shape[0])
        mdp = object.__new__(TabularMDP)
        mdp._set_dynamics(states, probs, rewards, start)
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
        from pgm_rl._transitions import merge_outcomes
        from pgm_rl.envs import TabularMDP

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
        mdp._set_dynamics(states, probs, rewards, start)
        return mdp

    def _set_dynamics(self, states, probs, rewards, start):
        """Store checked (S, A, K) outcomes and a checked start (int or (S,) probabilities)."""
        if states.shape[2] == 1:
            self.next_state = np.ascontiguousarray(states[..., 0], dtype=np.int32)
            self.reward = np.ascontiguousarray(rewards[..., 0], dtype=np.float64)
            arrays = [self.next_state, self.reward]
        else:
            self._outcome_states = states.astype(np.int32)
            self._outcome_probs = probs.astype(np.float64)
            self._outcome_rewards = rewards.astype(np.float64)
            self.reward = np.sum(probs * rewards, axis=-1)
            arrays = [self._outcome_states, self._outcome_probs, self._outcome_rewards, self.reward]
        if isinstance(start, int):
            self.start_state = start
        else:
            self._start_probs = np.asarray(start, np.float64)
            arrays.append(self._start_probs)
        for array in arrays:
            array.flags.writeable = False

    # ------------------------------------------------------------------ pytree
    def _kind(self):
        """``(random dynamics, random start)``."""
        fields = self.__dict__
        return "next_state" not in fields, "start_state" not in fields

    def _tree_fields(self):
        random_dynamics, random_start = self._kind()
        return _DYNAMICS_FIELDS[random_dynamics] + _START_FIELDS[random_start]

    def tree_flatten(self):
        """Leaves: ``(next_state, reward, start_state)`` for a deterministic MDP (aux ``None``);
        else the outcome arrays, the expected reward and ``start_state`` or ``start_probs``."""
        kind = self._kind()
        children = tuple(getattr(self, name) for name in self._tree_fields())
        return children, (None if kind == (False, False) else kind)

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        """Rebuild from (possibly traced) leaves, unchecked."""
        mdp = object.__new__(cls)
        kind = (False, False) if aux_data is None else aux_data
        names = _DYNAMICS_FIELDS[kind[0]] + _START_FIELDS[kind[1]]
        for name, child in zip(names, children, strict=True):
            setattr(mdp, name, child)
        return mdp

    # ------------------------------------------------------------------ properties
    @property
    def is_deterministic(self):
        """True when the dynamics are deterministic and the start is a single state."""
        return self._kind() == (False, False)

    @property
    def has_random_dynamics(self):
        """True when some state-action pair has more than one possible outcome."""
        return self._kind()[0]

    @property
    def has_random_start(self):
        """True when the start is a distribution over more than one state."""
        return self._kind()[1]

    @property
    def n_outcomes(self):
        """K, the largest number of outcomes of a state-action pair (1 when deterministic)."""
        return 1 if not self._kind()[0] else self._outcome_states.shape[2]

    @property
    def outcome_states(self):
        """Possible next states, int32 (S, A, K)."""
        if self._kind()[0]:
            return self._outcome_states
        return self.next_state[..., None]

    @property
    def outcome_probs(self):
        """Probabilities of the outcomes (S, A, K); 0 marks padding."""
        if self._kind()[0]:
            return self._outcome_probs
        return _xp(self.reward).ones_like(self.reward)[..., None]

    @property
    def outcome_rewards(self):
        """Reward of each outcome (S, A, K) (0 for padding)."""
        if self._kind()[0]:
            return self._outcome_rewards
        return self.reward[..., None]

    @property
    def expected_reward(self):
        """Expected reward of each state-action pair, (S, A) (the same array as ``reward``)."""
        return self.reward

    @property
    def start_probs(self):
        """The start distribution, (S,)."""
        if self._kind()[1]:
            return self._start_probs
        xp = _xp(self.start_state)
        if xp is np:
            probs = np.zeros(self.reward.shape[0])
            probs[self.start_state] = 1.0
            return probs
        return jnp.zeros(self.reward.shape[0], self.reward.dtype).at[self.start_state].set(1.0)

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
        n_states, n_actions = self.reward.shape
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

    def __getattr__(self, name):
        # Only reached for attributes that are missing: the deterministic-only names.
        if name == "next_state" and "reward" in self.__dict__:
            raise AttributeError(
                "this TabularMDP has stochastic dynamics, so it has no next_state (S, A) "
                "(deterministic MDPs only); its dynamics are outcome_states / outcome_probs "
                f"(S, A, K) or transition (S, A, S). {_NOT_SUPPORTED_SENTENCE}"
            )
        if name == "start_state" and "reward" in self.__dict__:
            raise AttributeError(
                "this TabularMDP has a random start (start_probs (S,)), so it has no single "
                f"start_state. {_NOT_SUPPORTED_SENTENCE}"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _stochastic_repr(self):
        n_states, n_actions = self.reward.shape
        start = (
            f"start_probs: ({n_states},)" if self._kind()[1] else f"start_state={self.start_state}"
        )
        return (
            f"{type(self).__name__}(n_states={n_states}, n_actions={n_actions}, "
            f"n_outcomes={self.n_outcomes}, {start})"
        )


def not_supported_error(what):
    """The ``ValueError`` for code that handles deterministic MDPs only."""
    return ValueError(f"{what}: {_NOT_SUPPORTED}")
