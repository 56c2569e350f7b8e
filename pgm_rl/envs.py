"""Tabular environments: the arrays every model, solver and kernel works on.

A :class:`TabularMDP` holds deterministic dynamics ``next_state`` (S, A), rewards
``reward`` (S, A) and a start state. :class:`GridWorld` builds one from a grid of cell
rewards; other environments plug in by building a :class:`TabularMDP` of their own.

Both are JAX pytrees (leaves: the arrays and the start state), so ``jax.jit`` and ``jax.vmap``
take them directly and a new start state or new rewards of the same shapes reuse the compiled
code. The constructors check their input; ``tree_unflatten`` (what JAX calls on traced or
transformed leaves) does not.
"""

import csv
import os

import jax
import numpy as np

from pgm_rl._checks import INT32_MAX, check_fits_in_memory
from pgm_rl._mdp_kinds import DynamicsMixin
from pgm_rl._transitions import check_slip, grid_outcomes

ACTION_NAMES = ("up", "down", "left", "right", "stay")
# (d_row, d_col) of each action, indexed by action id.
ACTION_MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)])
# Peak bytes per cell while GridWorld builds its tables (measured 229 with tracemalloc).
GRID_BYTES_PER_CELL = 240

NOTEBOOK_GRID = (
    (-1, -1, -1, -10, -1, 10**4),
    (-100, -1, -10, -1, -10, -10),
    (-1, -10, -100, -10, -1, -1),
    (-1, -1, -100, -10, -1, -1),
    (-10, -1, -100, -100, -100, -1),
    (-1, -1, -100, -100, -100, -1),
)
NOTEBOOK_START = (5, 0)


@jax.tree_util.register_pytree_node_class
class TabularMDP(DynamicsMixin):
    """A finite MDP (a JAX pytree); this constructor makes deterministic ones.

    Stochastic dynamics or a random start: :meth:`from_probabilities` (a dense (S, A, S)
    table) or :meth:`from_outcomes` (sparse (S, A, K) outcomes). Every MDP exposes
    ``transition`` (S, A, S), ``expected_reward`` (S, A), ``start_probs`` (S,),
    ``is_deterministic`` and the sparse ``outcome_states`` / ``outcome_probs`` /
    ``outcome_rewards`` (S, A, K); ``next_state`` and ``start_state`` only where they are
    defined (see :mod:`pgm_rl._mdp_kinds`).

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
        reward = _finite_float_array(reward, "reward")
        if reward.shape != next_state.shape:
            raise ValueError(
                f"reward must have shape {next_state.shape} like next_state, got {reward.shape}"
            )
        if isinstance(start_state, bool) or not isinstance(start_state, (int, np.integer)):
            raise TypeError(f"start_state must be an int state index, got {start_state!r}")
        if not 0 <= start_state < n_states:
            raise ValueError(f"start_state must lie in [0, {n_states}), got {start_state}")
        self.next_state = next_state.astype(np.int32)
        self.reward = reward
        self.start_state = int(start_state)
        self.next_state.flags.writeable = False
        self.reward.flags.writeable = False

    @property
    def n_states(self):
        """Number of states S."""
        return self.reward.shape[0]

    @property
    def n_actions(self):
        """Number of actions A."""
        return self.reward.shape[1]

    def __repr__(self):
        if not self.is_deterministic:
            return self._stochastic_repr()
        return f"TabularMDP(n_states={self.n_states}, n_actions={self.n_actions}, start_state={self.start_state})"


@jax.tree_util.register_pytree_node_class
class GridWorld(TabularMDP):
    """A grid world: 5 actions (0 up, 1 down, 2 left, 3 right, 4 stay), moves clipped at walls.

    The reward of a step is the reward of the cell entered (staying re-enters the same cell).
    State index = ``row * width + col``.

    Parameters
    ----------
    rewards : array_like, shape (H, W)
        Finite real reward of each cell (not bools).
    start : tuple of int
        ``(row, col)`` of the start cell.
    slip : float, default 0.0
        In [0, 1]: with probability ``slip`` a move goes to one of the two perpendicular
        directions instead (half each; "stay" always stays). With ``slip > 0`` the dynamics are
        stochastic, stored as at most 3 outcomes per (state, action).
    terminal : sequence of (row, col), default ()
        Cells that end the episode: entering one earns its reward, after which the agent stays
        there (every action) with reward 0, the way a goal or a trap behaves in RL.

    Raises
    ------
    TypeError
        For non-real or bool rewards or a start that is not a pair of ints.
    ValueError
        For a grid that is empty, not 2-D, holds NaN or inf, whose tables would not fit in
        memory (about 240 bytes per cell while building) or that has 2**31 cells or more
        (state indices are int32); or a start outside the grid.
    """

    def __init__(self, rewards, start, slip=0.0, terminal=()):
        grid = _finite_float_array(rewards, "rewards", check_shape=_check_grid_size)
        if grid.size == 0:
            raise ValueError("rewards must be a non-empty (H, W) grid, got an empty one")
        if grid.ndim != 2:
            raise ValueError(f"rewards must be a 2-D (H, W) grid, got {grid.ndim} dimension(s)")
        height, width = grid.shape
        row, col = _check_cell(start, grid.shape, "start")
        rows, cols = np.divmod(np.arange(height * width), width)
        next_rows = np.clip(rows[:, None] + ACTION_MOVES[None, :, 0], 0, height - 1)
        next_cols = np.clip(cols[:, None] + ACTION_MOVES[None, :, 1], 0, width - 1)
        next_state = next_rows * width + next_cols
        slip = check_slip(slip)
        terminal = _check_cells(terminal, grid.shape, "terminal")
        if slip == 0.0 and not terminal:
            super().__init__(next_state, grid.reshape(-1)[next_state], row * width + col)
        else:
            terminal_states = [r * width + c for r, c in terminal]
            outcomes = grid_outcomes(next_state, grid.reshape(-1), slip, terminal_states)
            self._set_dynamics(*outcomes, row * width + col)
        self.rewards = grid
        self.rewards.flags.writeable = False
        self.slip = slip
        self.terminal = terminal

    def tree_flatten(self):
        """Leaves: :class:`TabularMDP`'s, then ``rewards``; static: the kind, slip, terminal."""
        children, aux = super().tree_flatten()
        return (*children, self.rewards), (aux, self.slip, self.terminal)

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        """Rebuild from (possibly traced) leaves, unchecked."""
        kind, slip, terminal = aux_data
        grid = super().tree_unflatten(kind, children[:-1])
        grid.rewards, grid.slip, grid.terminal = children[-1], slip, terminal
        return grid

    @property
    def terminal_states(self):
        """State indices of the ``terminal`` cells, a tuple of ints."""
        return tuple(row * self.shape[1] + col for row, col in self.terminal)

    @property
    def start(self):
        """``(row, col)`` of the start cell (needs a concrete ``start_state``)."""
        return divmod(int(self.start_state), self.shape[1])

    @classmethod
    def notebook(cls):
        """The seed notebook's 6x6 grid (goal reward 1e4 at (0, 5)) with start (5, 0)."""
        return cls(NOTEBOOK_GRID, NOTEBOOK_START)

    @classmethod
    def from_file(cls, path, start, slip=0.0, terminal=()):
        """Read a grid of rewards from a CSV or whitespace-separated text file."""
        return cls(read_grid(path), start, slip=slip, terminal=terminal)

    @property
    def shape(self):
        """``(H, W)``."""
        return self.rewards.shape

    def state_of(self, row, col):
        """State index of cell ``(row, col)``."""
        row, col = _check_cell((row, col), self.shape, "(row, col)")
        return row * self.shape[1] + col

    def cell_of(self, state):
        """``(row, col)`` of state index ``state``."""
        if isinstance(state, bool) or not isinstance(state, (int, np.integer)):
            raise TypeError(f"state must be an int state index, got {state!r}")
        if not 0 <= state < self.n_states:
            raise ValueError(f"state must lie in [0, {self.n_states}), got {state}")
        return divmod(int(state), self.shape[1])

    def __repr__(self):
        extra = (f", slip={self.slip:g}" if self.slip else "") + (
            f", terminal={list(self.terminal)}" if self.terminal else ""
        )
        return f"GridWorld(shape={self.shape}, start={self.start}{extra})"


def from_gymnasium(env_or_id, **make_kwargs):
    """Build a :class:`TabularMDP` from a Gymnasium toy-text environment.

    See :func:`pgm_rl.gym.from_gymnasium` (FrozenLake-v1, CliffWalking-v1, Taxi-v4, ...; a state
    entered by a ``terminated`` transition becomes absorbing). Needs the optional extra
    ``pgm_rl[gymnasium]``; without it an ``ImportError`` says so.
    """
    from pgm_rl.gym import from_gymnasium as build

    return build(env_or_id, **make_kwargs)


def read_grid(path):
    """Read a 2-D grid of numbers from ``path`` (CSV or whitespace separated) -> (H, W) floats."""
    if not os.path.isfile(path):
        raise ValueError(f"grid file {path!r} does not exist or is not a file")
    try:
        with open(path, newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"grid file {path!r} cannot be read: {error}") from None
    lines = [
        line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    ]
    if any("," in line for line in lines):
        rows = [[cell.strip() for cell in row] for row in csv.reader(lines)]
    else:
        rows = [line.split() for line in lines]
    try:
        values = [[float(cell) for cell in row] for row in rows]
    except ValueError:
        raise ValueError(
            f"grid file {path!r} must hold only numbers (CSV or whitespace separated)"
        ) from None
    return _finite_float_array(values, f"rewards in grid file {path!r}")


def _check_grid_size(shape):
    """Refuse a grid of rewards whose GridWorld tables would not fit (before allocating them)."""
    if len(shape) != 2:
        return  # GridWorld reports the dimension
    cells = shape[0] * shape[1]
    if cells > INT32_MAX:
        raise ValueError(
            f"rewards must have fewer than 2**31 cells (state indices are int32), got a "
            f"{shape[0]}x{shape[1]} grid of {cells} cells"
        )
    check_fits_in_memory(
        cells * GRID_BYTES_PER_CELL,
        "rewards",
        f"<a {shape[0]}x{shape[1]} grid>",
        f"the transition and reward tables of {cells} cells",
        "use a smaller grid",
    )


def _finite_float_array(values, name, check_shape=None):
    """``values`` as a float64 array of finite reals; ``check_shape(shape)`` runs before any copy."""
    try:
        raw = np.asarray(values)
    except ValueError:
        raise ValueError(
            f"{name} must be a rectangular array of finite numbers (rows of equal length)"
        ) from None
    if raw.dtype.kind == "b":
        raise TypeError(
            f"{name} must be an array of finite real numbers, got bools (use 0.0 and 1.0)"
        )
    if raw.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must be an array of finite real numbers, got {raw.dtype} entries "
            f"from {type(values).__name__}"
        )
    if check_shape is not None:
        check_shape(raw.shape)
    array = raw.astype(float)
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must hold finite numbers only (no NaN or inf)")
    return array


def _check_cells(cells, shape, name):
    """``cells`` (an iterable of (row, col) pairs) as a tuple of checked int pairs, no repeats."""
    if isinstance(cells, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of (row, col) cells, got {cells!r}")
    try:
        items = list(cells)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of (row, col) cells, got {cells!r}") from None
    checked = tuple(_check_cell(cell, shape, name) for cell in items)
    return tuple(dict.fromkeys(checked))


def _check_cell(cell, shape, name):
    try:
        row, col = cell
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (row, col) pair of ints, got {cell!r}") from None
    for value in (row, col):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be a (row, col) pair of ints, got {cell!r}")
    if not (0 <= row < shape[0] and 0 <= col < shape[1]):
        raise ValueError(
            f"{name} {(int(row), int(col))} lies outside the {shape[0]}x{shape[1]} grid"
        )
    return int(row), int(col)
