"""Gymnasium toy-text environments as :class:`~pgm_rl.worlds.tabular.TabularMDP` s.

Gymnasium is an optional extra: ``pip install 'pgm_rl[gymnasium]'``. Any environment whose
``unwrapped`` exposes the transition table ``P[s][a] = [(prob, next_state, reward, terminated),
...]`` and ``initial_state_distrib`` converts: FrozenLake-v1 (4x4 and 8x8, slippery or not),
CliffWalking-v1 (``is_slippery`` or not; also CliffWalkingSlippery-v1) and Taxi-v4.

Finite horizon: a state entered by a transition marked ``terminated`` becomes absorbing (every
action stays there with reward 0), so the episode "ends" there and a horizon T is well defined
(FrozenLake's holes and goal, CliffWalking's goal, Taxi's delivered states). Entries of one
(state, action) with the same next state and reward are merged; entries with the same next state
but different rewards (slippery CliffWalking: falling off the cliff and slipping both lead back
to the start, with rewards -100 and -1) stay separate outcomes, so nothing is averaged away.
"""

import math
import numbers

import jax
import numpy as np

from pgm_rl.worlds.outcomes import check_start, merge_outcomes
from pgm_rl.worlds.tabular import TabularMDP

__all__ = ["GymnasiumMDP", "from_gymnasium"]

_ACTION_NAMES = {
    "FrozenLakeEnv": ("left", "down", "right", "up"),
    "CliffWalkingEnv": ("up", "right", "down", "left"),
    "TaxiEnv": ("south", "north", "east", "west", "pickup", "dropoff"),
}


def _import_gymnasium():
    try:
        import gymnasium
    except ImportError:
        raise ImportError(
            "from_gymnasium needs Gymnasium, an optional extra of pgm_rl: "
            "pip install 'pgm_rl[gymnasium]' (or pip install 'gymnasium>=1.0')"
        ) from None
    return gymnasium


@jax.tree_util.register_pytree_node_class
class GymnasiumMDP(TabularMDP):
    """A :class:`TabularMDP` built from a Gymnasium environment, with its map.

    Attributes (besides :class:`TabularMDP`'s)
    ------------------------------------------
    env_id : str
        The environment's id (e.g. ``"FrozenLake-v1"``) or class name.
    action_names : tuple of str
        Gymnasium's action meanings, by action id.
    shape : tuple of int or None
        ``(H, W)`` when the states are the cells of a grid in row-major order (FrozenLake,
        CliffWalking), else None (Taxi).
    desc : tuple of str or None
        The map, one string per row: FrozenLake's letters (S start, F frozen, H hole, G goal),
        CliffWalking's (S start, C cliff, G goal, . open), Taxi's ASCII map.
    terminal_states : tuple of int
        States entered by a ``terminated`` transition, made absorbing.
    """

    def tree_flatten(self):
        """Leaves: :class:`TabularMDP`'s; static: its own and the metadata."""
        children, aux = super().tree_flatten()
        meta = (self.env_id, self.action_names, self.shape, self.desc, self.terminal_states)
        return children, (aux, meta)

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        """Rebuild from (possibly traced) leaves, unchecked."""
        aux, meta = aux_data
        mdp = super().tree_unflatten(aux, children)
        mdp.env_id, mdp.action_names, mdp.shape, mdp.desc, mdp.terminal_states = meta
        return mdp

    def state_of(self, row, col):
        """State index of cell ``(row, col)`` (grid maps only)."""
        height, width = self._grid()
        for value in (row, col):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"(row, col) must be a pair of ints, got {(row, col)!r}")
        if not (0 <= row < height and 0 <= col < width):
            raise ValueError(f"(row, col) {(row, col)} lies outside the {height}x{width} grid")
        return int(row) * width + int(col)

    def cell_of(self, state):
        """``(row, col)`` of state index ``state`` (grid maps only)."""
        _, width = self._grid()
        if isinstance(state, bool) or not isinstance(state, (int, np.integer)):
            raise TypeError(f"state must be an int state index, got {state!r}")
        if not 0 <= state < self.n_states:
            raise ValueError(f"state must lie in [0, {self.n_states}), got {state}")
        return divmod(int(state), width)

    def _grid(self):
        if self.shape is None:
            raise ValueError(f"{self.env_id}'s states are not the cells of a grid")
        return self.shape

    def __repr__(self):
        kind = "stochastic" if self.n_outcomes > 1 else "deterministic"
        start = "random start" if self._random_start else f"start_state={self.start_state}"
        return (
            f"GymnasiumMDP({self.env_id!r}, n_states={self.n_states}, "
            f"n_actions={self.n_actions}, {kind}, {start})"
        )


def from_gymnasium(env_or_id, **make_kwargs):
    """Build a :class:`TabularMDP` from a Gymnasium toy-text environment.

    Parameters
    ----------
    env_or_id : str or gymnasium.Env
        An environment id (``"FrozenLake-v1"``, ``"CliffWalking-v1"``, ``"Taxi-v4"``, ...) made
        with ``gymnasium.make(env_or_id, **make_kwargs)``, or an environment instance.
    **make_kwargs
        Passed to ``gymnasium.make`` (e.g. ``is_slippery=True``, ``map_name="8x8"``); only with
        an id.

    Returns
    -------
    GymnasiumMDP
        Stochastic dynamics as sparse (S, A, K) outcomes, the start distribution from
        ``initial_state_distrib``, rewards per outcome. A state entered by a ``terminated``
        transition is absorbing (every action stays there, reward 0).

    Raises
    ------
    ImportError
        Without Gymnasium (install the extra ``pgm_rl[gymnasium]``).
    TypeError
        For make_kwargs with an environment instance, or non-``Discrete`` spaces.
    ValueError
        For an environment without a transition table ``P`` (e.g. CartPole) or a start
        distribution, or with a malformed one.
    """
    gymnasium = _import_gymnasium()
    if isinstance(env_or_id, str):
        env = gymnasium.make(env_or_id, **make_kwargs)
        env_id = env_or_id
    else:
        if make_kwargs:
            raise TypeError(
                "make_kwargs are passed to gymnasium.make and need an environment id, not an "
                f"environment instance; got {sorted(make_kwargs)}"
            )
        if not isinstance(env_or_id, gymnasium.Env):
            raise TypeError(
                "env_or_id must be a Gymnasium environment id (str) or a gymnasium.Env, got "
                f"{type(env_or_id).__name__}"
            )
        env = env_or_id
        spec = getattr(env, "spec", None)
        env_id = spec.id if spec is not None else type(env.unwrapped).__name__
    base = env.unwrapped
    for name in ("observation_space", "action_space"):
        space = getattr(base, name)
        if not isinstance(space, gymnasium.spaces.Discrete):
            raise TypeError(
                f"env_or_id {env_id!r} has a {type(space).__name__} {name}; from_gymnasium needs "
                "Discrete observation and action spaces (a tabular toy-text environment)"
            )
        if int(space.start) != 0:
            raise ValueError(
                f"env_or_id {env_id!r}: its {name} starts at {int(space.start)}; from_gymnasium "
                "needs Discrete spaces starting at 0"
            )
    n_states, n_actions = int(base.observation_space.n), int(base.action_space.n)
    table = getattr(base, "P", None)
    if table is None:
        raise ValueError(
            f"env_or_id {env_id!r} has no transition table P (env.unwrapped.P[s][a] = "
            "[(prob, next_state, reward, terminated), ...]); only tabular toy-text "
            "environments such as FrozenLake-v1, CliffWalking-v1 and Taxi-v4 convert"
        )
    start = getattr(base, "initial_state_distrib", None)
    if start is None:
        raise ValueError(
            f"env_or_id {env_id!r} has no initial_state_distrib (the start distribution)"
        )
    rows, states, probs, rewards, terminal = _read_table(table, n_states, n_actions, env_id)
    absorbing = rows // n_actions
    absorbing = np.isin(absorbing, terminal)
    rows, states, probs, rewards = (
        rows[~absorbing],
        states[~absorbing],
        probs[~absorbing],
        rewards[~absorbing],
    )
    loops = (terminal[:, None] * n_actions + np.arange(n_actions)).ravel()
    rows = np.concatenate([rows, loops])
    states = np.concatenate([states, np.repeat(terminal, n_actions)])
    probs = np.concatenate([probs, np.ones(loops.size)])
    rewards = np.concatenate([rewards, np.zeros(loops.size)])
    outcomes = merge_outcomes(rows, states, probs, rewards, n_states, n_actions, "env_or_id.P")
    try:
        start = check_start(np.asarray(start, np.float64), n_states)
    except (TypeError, ValueError) as error:
        raise ValueError(f"env_or_id {env_id!r}: initial_state_distrib: {error}") from None
    mdp = object.__new__(GymnasiumMDP)
    mdp._set_outcomes(*outcomes, start)
    name = type(base).__name__
    mdp.env_id = env_id
    mdp.action_names = _ACTION_NAMES.get(name, tuple(f"action {a}" for a in range(n_actions)))
    mdp.shape, mdp.desc = _map(base, name, n_states)
    mdp.terminal_states = tuple(int(s) for s in terminal)
    return mdp


def _read_table(table, n_states, n_actions, env_id):
    """Flat entry arrays of ``P`` and the sorted terminal states (entered by ``terminated``)."""
    rows, states, probs, rewards, terminal = [], [], [], [], set()
    for s in range(n_states):
        try:
            by_action = table[s]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"env_or_id {env_id!r}: P has no entry for state {s}") from None
        for a in range(n_actions):
            try:
                entries = by_action[a]
            except (KeyError, IndexError, TypeError):
                raise ValueError(
                    f"env_or_id {env_id!r}: P[{s}] has no entry for action {a}"
                ) from None
            for entry in entries:
                try:
                    prob, next_state, reward, terminated = entry
                except (TypeError, ValueError):
                    raise ValueError(
                        f"env_or_id {env_id!r}: P[{s}][{a}] entries must be (prob, next_state, "
                        f"reward, terminated), got {entry!r}"
                    ) from None
                next_state = _next_state(next_state, f"env_or_id {env_id!r}: P[{s}][{a}]")
                rows.append(s * n_actions + a)
                states.append(next_state)
                probs.append(float(prob))
                rewards.append(float(reward))
                if terminated and float(prob) > 0:
                    terminal.add(next_state)
    return (
        np.asarray(rows, np.int64),
        np.asarray(states, np.int64),
        np.asarray(probs, np.float64),
        np.asarray(rewards, np.float64),
        np.asarray(sorted(terminal), np.int64),
    )


def _next_state(value, where):
    """``value`` as an int state index; ``ValueError`` for a non-integer (e.g. 1.7 or NaN)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{where}: next_state must be an integer state index, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{where}: next_state must be an integer state index, got {value!r}")


def _map(base, name, n_states):
    """``(shape, desc)`` of the environment's map (see :class:`GymnasiumMDP`)."""
    desc = getattr(base, "desc", None)
    if name == "CliffWalkingEnv":
        height, width = (int(n) for n in base.shape)
        grid = np.full((height, width), ".")
        grid[np.asarray(base._cliff, bool)] = "C"
        start = int(np.argmax(base.initial_state_distrib))
        grid[divmod(start, width)] = "S"
        grid[height - 1, width - 1] = "G"
        return (height, width), tuple("".join(row) for row in grid)
    if desc is None:
        return None, None
    rows = tuple(
        "".join(c.decode() if isinstance(c, bytes) else str(c) for c in row)
        for row in np.asarray(desc)
    )
    if name == "FrozenLakeEnv" and len(rows) * len(rows[0]) == n_states:
        return (len(rows), len(rows[0])), rows
    return None, rows
