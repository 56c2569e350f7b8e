"""Reward machines and the product MDP that solves them exactly.

A reward machine (Icarte et al. 2018, "Using Reward Machines for High-Level Task Specification
and Decomposition in Reinforcement Learning") is a finite automaton over *events*: in machine
state ``u``, the event of the state just entered moves it to ``u'`` and pays a reward.
:func:`with_reward_machine` builds the product of a tabular world and a machine, a
:class:`~pgm_rl.worlds.tabular.TabularMDP` over pairs ``(s, u)``; the posterior over its
trajectories is the posterior of the world with the machine's rewards, so :func:`~pgm_rl.solve`,
every kernel, SMC and the diagnostics run on it unchanged and exactly.

Conventions (those of :mod:`pgm_rl.worlds.grid`):

- product index ``i = s * U + u`` (U machine states): ``s = i // U``, ``u = i % U``
  (:meth:`RewardMachineMDP.base_state`, :meth:`RewardMachineMDP.machine_state`,
  :meth:`RewardMachineMDP.product_state`);
- the events are the labels of the states *entered* (``s_1 .. s_T``); the start state's label is
  ignored, so the product starts in ``(s_0, initial)`` with the world's start probabilities;
- the reward of a step is the machine's reward of its transition, plus the world's reward of the
  step when ``keep_base_reward``;
- a terminal machine state is absorbing for the machine: it stays there and pays nothing more,
  while the world goes on (its moves, and its rewards when ``keep_base_reward``). A world's
  absorbing state (every action stays, reward 0: a terminal cell) stays absorbing in every
  machine state, and the machine does not move there.

So the product's posterior, projected on the world's states, is the posterior of the world's
own model with the machine's rewards as a trajectory-level term,
``numpyro.factor("task", beta * machine_rewards(machine, labels, traj.states, env).sum())``
(:func:`machine_rewards`): the two ways give one distribution, and every kernel samples the
factor form too. (Stopping the world when the task is done instead, as an episode end, would
be a different distribution that no term of the world's trajectory can express; put a cost on
the machine's steps, as :func:`~pgm_rl.worlds.office.office_tasks` does, to make finishing
early pay.)

:func:`satisfaction_probability` is the probability of having reached a terminal machine state
by each step, from exact marginals or from draws.
"""

import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from pgm_rl._checks import INT32_MAX, check_fits_in_memory
from pgm_rl.worlds.checks import check_env
from pgm_rl.worlds.tabular import TabularMDP

__all__ = [
    "PRODUCT_BYTES_PER_OUTCOME",
    "RewardMachine",
    "RewardMachineMDP",
    "machine_rewards",
    "satisfaction_probability",
    "with_reward_machine",
]

# Peak bytes per (product state, action, outcome) entry while the product is built and checked
# (the outcome arrays, merge_outcomes' sort keys and its packed copy); measured at most 148 with
# tracemalloc (100x100 grid x 10 machine states, deterministic and slippery).
PRODUCT_BYTES_PER_OUTCOME = 200


def _state_id(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a machine state: an int >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a machine state: an int >= 0, got {value}")
    return int(value)


class RewardMachine:
    """A reward machine: a finite automaton over events that pays a reward on each transition.

    Machine states are the ints ``0 .. n_states - 1`` (``n_states`` is one more than the largest
    state named anywhere). Events are strings: the labels of the states entered (``""`` is the
    event of a state without label).

    Parameters
    ----------
    transitions : dict
        ``{(u, event): (u_next, reward), ...}``: in machine state ``u`` the event ``event`` (a
        str) moves the machine to ``u_next`` and pays ``reward`` (a finite real). An event not
        listed for ``u`` keeps the machine in ``u`` with reward 0.
    initial : int, default 0
        The machine state at the start.
    terminal : sequence of int, default ()
        Terminal machine states (the task is done): absorbing, with reward 0 after them; their
        own transitions are refused. :func:`satisfaction_probability` is the probability of
        having reached one.

    Attributes
    ----------
    transitions : dict
        A copy of ``transitions`` with ints and floats.
    initial : int
    terminal : tuple of int, sorted
    n_states : int
    events : tuple of str
        The events the transitions name, sorted.

    Raises
    ------
    TypeError
        For a ``transitions`` that is not a dict of ``(int, str) -> (int, real)``, or
        non-int states.
    ValueError
        For negative states, non-finite rewards, or transitions out of a terminal state.

    Warns
    -----
    UserWarning
        When no terminal state can be reached from ``initial`` by any sequence of events.
    """

    def __init__(self, transitions, initial=0, terminal=()):
        if not isinstance(transitions, dict):
            raise TypeError(
                "transitions must be a dict {(u, event): (u_next, reward)}, got "
                f"{type(transitions).__name__}"
            )
        self.initial = _state_id(initial, "initial")
        if isinstance(terminal, (str, bytes)) or not hasattr(terminal, "__iter__"):
            raise TypeError(f"terminal must be a sequence of machine states, got {terminal!r}")
        self.terminal = tuple(sorted({_state_id(u, "terminal") for u in terminal}))
        checked = {}
        for key, value in transitions.items():
            if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[1], str)):
                raise TypeError(
                    f"transitions keys must be (u, event) pairs with event a str, got {key!r}"
                )
            if not (isinstance(value, tuple) and len(value) == 2):
                raise TypeError(
                    f"transitions[{key!r}] must be a (u_next, reward) pair, got {value!r}"
                )
            u = _state_id(key[0], f"the state of transitions key {key!r}")
            u_next = _state_id(value[0], f"transitions[{key!r}]'s next state")
            reward = value[1]
            if isinstance(reward, (bool, np.bool_)) or not isinstance(reward, numbers.Real):
                raise TypeError(
                    f"transitions[{key!r}]'s reward must be a real number, got {reward!r}"
                )
            if not np.isfinite(reward):
                raise ValueError(f"transitions[{key!r}]'s reward must be finite, got {reward!r}")
            if u in self.terminal:
                raise ValueError(
                    f"transitions[{key!r}] leaves the terminal state {u}: terminal machine "
                    "states are absorbing (list none of their transitions)"
                )
            checked[(u, key[1])] = (u_next, float(reward))
        self.transitions = checked
        named = [self.initial, *self.terminal, *(u for u, _ in checked)]
        named += [u for u, _ in checked.values()]
        self.n_states = max(named) + 1
        self.events = tuple(sorted({event for _, event in checked}))
        if self.terminal and not self.reachable(self.events) & set(self.terminal):
            warnings.warn(
                f"machine: no terminal state {list(self.terminal)} can be reached from the "
                f"initial state {self.initial} by any sequence of events",
                UserWarning,
                stacklevel=2,
            )

    def reachable(self, events):
        """The machine states reachable from ``initial`` when only ``events`` happen, a set."""
        events = set(events)
        seen, frontier = {self.initial}, [self.initial]
        while frontier:
            u = frontier.pop()
            for (here, event), (there, _) in self.transitions.items():
                if here == u and event in events and there not in seen:
                    seen.add(there)
                    frontier.append(there)
        return seen

    def tables(self, events):
        """Next state and reward of every (machine state, event), for ``events`` in that order.

        Returns
        -------
        next_state : int array, shape (U, E)
        reward : float array, shape (U, E)
            Unlisted events keep the state with reward 0 (terminal states included).
        """
        index = {event: e for e, event in enumerate(events)}
        next_state = np.repeat(np.arange(self.n_states)[:, None], len(events), axis=1)
        reward = np.zeros((self.n_states, len(events)))
        for (u, event), (u_next, value) in self.transitions.items():
            if event in index:
                next_state[u, index[event]] = u_next
                reward[u, index[event]] = value
        return next_state, reward

    def _key(self):
        return (tuple(sorted(self.transitions.items())), self.initial, self.terminal)

    def __eq__(self, other):
        return isinstance(other, RewardMachine) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __repr__(self):
        return (
            f"RewardMachine(n_states={self.n_states}, transitions={len(self.transitions)}, "
            f"events={list(self.events)}, initial={self.initial}, terminal={list(self.terminal)})"
        )


@jax.tree_util.register_pytree_node_class
class RewardMachineMDP(TabularMDP):
    """The product of a tabular world and a reward machine (made by :func:`with_reward_machine`).

    A :class:`~pgm_rl.worlds.tabular.TabularMDP` over ``S * U`` states, product index
    ``i = s * U + u``. Beside the tabular leaves it keeps the world ``base`` (a pytree child)
    and, as static data, the ``machine``, the ``labels`` and ``keep_base_reward``.

    Attributes
    ----------
    base : TabularMDP
    machine : RewardMachine
    labels : tuple of str, length S
    keep_base_reward : bool
    n_machine_states : int
        U.
    terminal_states : int array, shape (S * len(machine.terminal),)
        The product states whose machine state is terminal, sorted.
    """

    def tree_flatten(self):
        """Leaves: :class:`TabularMDP`'s, then the world's; static: its own, the machine, the
        labels and ``keep_base_reward``."""
        children, aux = super().tree_flatten()
        return (*children, self.base), (aux, self.machine, self.labels, self.keep_base_reward)

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        """Rebuild from (possibly traced) leaves, unchecked."""
        aux, machine, labels, keep = aux_data
        product = super().tree_unflatten(aux, children[:-1])
        product.base, product.machine, product.labels = children[-1], machine, labels
        product.keep_base_reward = keep
        return product

    @property
    def n_machine_states(self):
        """U, the number of machine states."""
        return self.machine.n_states

    @property
    def terminal_states(self):
        """Product indices whose machine state is terminal, int array (S * len(terminal),)."""
        terminal = np.asarray(self.machine.terminal, np.int64)
        states = np.arange(len(self.labels))[:, None] * self.n_machine_states + terminal
        return np.sort(states.ravel())

    def _indices(self, values, name, size):
        if isinstance(values, jax.Array):  # traced or on the device: no checks, jnp out
            return values, jnp
        array = np.asarray(values)
        if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() >= size):
            raise ValueError(f"{name} must lie in [0, {size}), got values outside")
        return array, np

    def base_state(self, i):
        """The world's state of product states ``i`` (array of ints, any shape): ``i // U``."""
        i, xp = self._indices(i, "i", self.n_states)
        return xp.floor_divide(i, self.n_machine_states)

    def machine_state(self, i):
        """The machine state of product states ``i`` (array of ints, any shape): ``i % U``."""
        i, xp = self._indices(i, "i", self.n_states)
        return xp.remainder(i, self.n_machine_states)

    def product_state(self, s, u):
        """The product index of world states ``s`` and machine states ``u`` (broadcast):
        ``s * U + u``."""
        s, _ = self._indices(s, "s", len(self.labels))
        u, _ = self._indices(u, "u", self.n_machine_states)
        return s * self.n_machine_states + u

    def __repr__(self):
        return (
            f"RewardMachineMDP(n_states={self.n_states} = {len(self.labels)} x "
            f"{self.n_machine_states}, n_actions={self.n_actions}, base={self.base!r}, "
            f"machine={self.machine!r})"
        )


def _check_labels(labels, n_states):
    if isinstance(labels, str) or not hasattr(labels, "__len__"):
        raise TypeError(
            f"labels must be a sequence or array of {n_states} str (one event per state, '' for "
            f"none), got {type(labels).__name__}"
        )
    values = list(np.asarray(labels, dtype=object).reshape(-1))
    if np.ndim(labels) != 1 or len(values) != n_states:
        raise ValueError(
            f"labels must have length S = {n_states} (one event per state of env), got shape "
            f"{np.shape(labels)}"
        )
    bad = [value for value in values if not isinstance(value, str)]
    if bad:
        raise TypeError(f"labels must hold str events ('' for none), got {bad[0]!r}")
    return tuple(str(value) for value in values)


def _absorbing(env):
    """World states where every action stays with probability 1 and reward 0, bool (S,)."""
    states = np.asarray(env.outcome_states)
    probs = np.asarray(env.outcome_probs)
    rewards = np.asarray(env.outcome_rewards)
    here = np.arange(env.n_states)[:, None, None]
    stays = ((states == here) & (rewards == 0.0)) | (probs == 0.0)
    return stays.all(axis=(1, 2))


def with_reward_machine(env, machine, labels, keep_base_reward=True):
    """The product MDP of ``env`` and ``machine``: the machine reads the labels of the states
    entered and pays its rewards.

    Parameters
    ----------
    env : TabularMDP
        The world (any: stochastic dynamics, a random start and terminal cells carry over).
    machine : RewardMachine
    labels : sequence of str, shape (S,)
        The event of each state of ``env`` (``""``: none). Every event the machine names,
        except ``""``, must be the label of some state.
    keep_base_reward : bool, default True
        Add the world's reward of each step to the machine's (else the machine's alone).

    Returns
    -------
    RewardMachineMDP
        A :class:`~pgm_rl.worlds.tabular.TabularMDP` over ``S * U`` states, index
        ``s * U + u``; deterministic when ``env`` is. Step ``t`` from ``(s, u)`` by action ``a``
        enters ``(s', u')`` for each outcome ``s'`` of ``env`` (same probability), with
        ``u', r_m = machine(u, labels[s'])`` and reward ``r_m`` (+ the world's reward). A
        terminal machine state stays, with ``r_m = 0``, while the world moves on; the world's
        absorbing states (every action stays, reward 0) are absorbing in the product, with
        reward 0. The start is ``(s_0, machine.initial)``.

    Raises
    ------
    TypeError
        For an ``env`` that is not a TabularMDP, a ``machine`` that is not a RewardMachine,
        ``labels`` that are not str, or a non-bool ``keep_base_reward``.
    ValueError
        For ``labels`` of the wrong length, a machine event that no state carries, or a
        product too large (int32 indices, or its tables beyond the memory limit: checked
        first, about ``PRODUCT_BYTES_PER_OUTCOME`` bytes per state, action and outcome).

    Warns
    -----
    UserWarning
        When no state with a terminal machine state can be reached from the start.
    """
    env = check_env(env)
    if not isinstance(machine, RewardMachine):
        raise TypeError(
            f"machine must be a pgm_rl.envs.RewardMachine, got {type(machine).__name__}"
        )
    if not isinstance(keep_base_reward, (bool, np.bool_)):
        raise TypeError(f"keep_base_reward must be a bool, got {keep_base_reward!r}")
    labels = _check_labels(labels, env.n_states)
    events = sorted(set(labels))
    missing = sorted(set(machine.events) - set(events) - {""})
    if missing:
        raise ValueError(
            f"machine has transitions on events {missing} that no state of labels carries "
            f"(labels has {[e for e in events if e]}): relabel the states or drop those events"
        )
    n_world, n_machine = env.n_states, machine.n_states
    n_product = n_world * n_machine
    if n_product > INT32_MAX:
        raise ValueError(
            f"machine of {n_machine} states on {n_world} states makes {n_product} product "
            f"states, more than {INT32_MAX} (state indices are int32): use a smaller machine"
        )
    check_fits_in_memory(
        n_product * env.n_actions * env.n_outcomes * PRODUCT_BYTES_PER_OUTCOME,
        "machine",
        f"<{n_machine} states>",
        f"the product of {n_world} states x {n_machine} machine states = {n_product} states "
        f"({env.n_actions} actions x {env.n_outcomes} outcomes)",
        "use a smaller machine or world",
    )
    index = {event: e for e, event in enumerate(events)}
    event_of = np.array([index[label] for label in labels])  # (S,), once per world state
    delta_u, delta_r = machine.tables(events)  # (U, E); terminal states stay, reward 0
    states = np.asarray(env.outcome_states, np.int64)[:, None]  # (S, 1, A, K)
    probs = np.asarray(env.outcome_probs)[:, None]
    base_rewards = np.asarray(env.outcome_rewards)[:, None]
    u = np.arange(n_machine)[None, :, None, None]  # (1, U, 1, 1)
    entered_event = event_of[states]  # (S, 1, A, K)
    u_next = delta_u[u, entered_event]  # (S, U, A, K)
    rewards = delta_r[u, entered_event] + (base_rewards if keep_base_reward else 0.0)
    next_states = states * n_machine + u_next
    stay = np.broadcast_to(_absorbing(env)[:, None], (n_world, n_machine))
    here = (np.arange(n_world)[:, None] * n_machine + np.arange(n_machine)[None, :])[
        ..., None, None
    ]
    next_states = np.where(stay[..., None, None], here, next_states)
    rewards = np.where(stay[..., None, None], 0.0, rewards)
    probs = np.broadcast_to(probs, next_states.shape)
    first = (np.arange(next_states.shape[-1]) == 0)[None, None, None, :]
    probs = np.where(stay[..., None, None], first.astype(float), probs)
    shape = (n_product, env.n_actions, env.n_outcomes)
    start = np.zeros(n_product)
    start[np.arange(n_world) * n_machine + machine.initial] = np.asarray(env.start_probs)
    checked = TabularMDP.from_outcomes(
        next_states.reshape(shape), probs.reshape(shape), rewards.reshape(shape), start
    )
    product = object.__new__(RewardMachineMDP)
    product._set_outcomes(
        checked.outcome_states,
        checked.outcome_probs,
        checked.outcome_rewards,
        checked.start_probs if checked._random_start else checked.start_state,
    )
    product.base, product.machine, product.labels = env, machine, labels
    product.keep_base_reward = bool(keep_base_reward)
    _warn_unreachable(product)
    return product


def _warn_unreachable(product):
    """Warn when no product state with a terminal machine state is reachable from the start."""
    machine = product.machine
    if not machine.terminal:
        return
    from scipy.sparse import csr_matrix  # lazy: slower to import than all of pgm_rl.worlds
    from scipy.sparse.csgraph import breadth_first_order

    states = np.asarray(product.outcome_states).reshape(product.n_states, -1)
    live = np.asarray(product.outcome_probs).reshape(product.n_states, -1) > 0
    rows = np.repeat(np.arange(product.n_states), states.shape[1])[live.ravel()]
    graph = csr_matrix(
        (np.ones(rows.size, bool), (rows, states.ravel()[live.ravel()])),
        shape=(product.n_states, product.n_states),
    )
    reached = np.zeros(product.n_states, bool)
    for start in np.flatnonzero(np.asarray(product.start_probs) > 0):
        reached[breadth_first_order(graph, int(start), return_predecessors=False)] = True
    if reached[product.terminal_states].any():
        return
    if not machine.reachable(set(product.labels)) & set(machine.terminal):
        why = "the labels' events cannot lead the machine there"
    else:
        why = "the world's moves never enter the labelled states in an order that leads there"
    warnings.warn(
        f"machine: no terminal machine state {list(machine.terminal)} can be reached from the "
        f"start ({why}); the satisfaction probability is 0 at every horizon",
        UserWarning,
        stacklevel=3,
    )


def satisfaction_probability(source, product):
    """The probability of having reached a terminal machine state by each step.

    Parameters
    ----------
    source : ExactPosterior, array of float (T + 1, S * U), or array of int (..., T + 1)
        The exact state marginals (an object with ``state_marginals``, e.g. the result of
        :func:`~pgm_rl.solve` on ``product``, or the array itself), or the product states of
        draws (e.g. ``samples["states"]`` or a run's states, any leading axes: the fraction of
        draws).
    product : RewardMachineMDP

    Returns
    -------
    numpy.ndarray, shape (T + 1,)
        Posterior mass on ``product.terminal_states`` at steps 0..T (non-decreasing: terminal
        machine states are absorbing).

    Raises
    ------
    TypeError
        For a ``product`` that is not a RewardMachineMDP, or a ``source`` of another kind.
    ValueError
        For marginals whose last axis is not the number of product states, or states out of
        range.
    """
    if not isinstance(product, RewardMachineMDP):
        raise TypeError(
            "product must be the result of pgm_rl.envs.with_reward_machine, got "
            f"{type(product).__name__}"
        )
    array = np.asarray(getattr(source, "state_marginals", source))
    terminal = product.terminal_states
    if array.dtype.kind == "f":
        if array.ndim != 2 or array.shape[1] != product.n_states:
            raise ValueError(
                f"source marginals must have shape (T + 1, {product.n_states}), got {array.shape}"
            )
        return array[:, terminal].sum(axis=1)
    if array.dtype.kind not in "iu" or array.ndim < 1:
        raise TypeError(
            "source must be an ExactPosterior, float marginals (T + 1, S) or int states "
            f"(..., T + 1), got {array.dtype} of shape {array.shape}"
        )
    if array.size and (array.min() < 0 or array.max() >= product.n_states):
        raise ValueError(f"source states must lie in [0, {product.n_states})")
    done = np.isin(array, terminal)
    return done.reshape(-1, array.shape[-1]).mean(axis=0)


def machine_rewards(machine, labels, states, env=None):
    """The machine's reward of each step of world paths: the machine run over their events.

    What a reward machine adds to a trajectory of the world itself, so that
    ``numpyro.factor("task", beta * machine_rewards(machine, labels, traj.states, env).sum())``
    in a model built on :func:`pgm_rl.trajectory_model` targets the posterior of
    :func:`with_reward_machine` (with ``keep_base_reward=True``) projected on the world's
    states. Step t reads the label of ``states[t + 1]`` (the state entered); a terminal machine
    state stays and pays 0; with ``env``, a step from one of its absorbing states (every action
    stays, reward 0: a terminal cell) moves nothing, as in the product.

    Parameters
    ----------
    machine : RewardMachine
    labels : sequence of str, shape (S,)
    states : int array, shape (..., T + 1)
        World paths, start included (traced arrays allowed: it is a ``lax.scan``).
    env : TabularMDP, optional
        The world, for its absorbing states (default: none is).

    Returns
    -------
    jax.Array, shape (..., T)
        The machine's reward of each step.
    """
    if not isinstance(machine, RewardMachine):
        raise TypeError(
            f"machine must be a pgm_rl.envs.RewardMachine, got {type(machine).__name__}"
        )
    n_states = len(labels) if env is None else check_env(env).n_states
    labels = _check_labels(labels, n_states)
    events = sorted(set(labels))
    event_of = jnp.asarray([events.index(label) for label in labels])
    delta_u, delta_r = (jnp.asarray(table) for table in machine.tables(events))
    absorbing = jnp.zeros(n_states, bool) if env is None else jnp.asarray(_absorbing(env))
    states = jnp.asarray(states)

    def step(u, pair):
        here, entered = pair
        moves = ~absorbing[here]
        event = event_of[entered]
        return jnp.where(moves, delta_u[u, event], u), jnp.where(moves, delta_r[u, event], 0.0)

    def run(path):
        return jax.lax.scan(step, jnp.asarray(machine.initial), (path[:-1], path[1:]))[1]

    flat = states.reshape(-1, states.shape[-1])
    return jax.vmap(run)(flat).reshape((*states.shape[:-1], states.shape[-1] - 1))
