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
class TabularMDP:
    """A finite MDP with deterministic transitions (a JAX pytree).

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

    def tree_flatten(self):
        """Leaves ``(next_state, reward, start_state)``; no static data."""
        return (self.next_state, self.reward, self.start_state), None

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        """Rebuild from (possibly traced) leaves, unchecked."""
        mdp = object.__new__(cls)
        mdp.next_state, mdp.reward, mdp.start_state = children
        return mdp

    @property
    def n_states(self):
        """Number of states S."""
        return self.next_state.shape[0]

    @property
    def n_actions(self):
        """Number of actions A."""
        return self.next_state.shape[1]

    def __repr__(self):
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

    Raises
    ------
    TypeError
        For non-real or bool rewards or a start that is not a pair of ints.
    ValueError
        For a grid that is empty, not 2-D, holds NaN or inf, whose tables would not fit in
        memory (about 240 bytes per cell while building) or that has 2**31 cells or more
        (state indices are int32); or a start outside the grid.
    """

    def __init__(self, rewards, start):
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
        super().__init__(next_state, grid.reshape(-1)[next_state], row * width + col)
        self.rewards = grid
        self.rewards.flags.writeable = False

    def tree_flatten(self):
        """Leaves ``(next_state, reward, start_state, rewards)``; no static data."""
        return (self.next_state, self.reward, self.start_state, self.rewards), None

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        """Rebuild from (possibly traced) leaves, unchecked."""
        grid = object.__new__(cls)
        grid.next_state, grid.reward, grid.start_state, grid.rewards = children
        return grid

    @property
    def start(self):
        """``(row, col)`` of the start cell (needs a concrete ``start_state``)."""
        return divmod(int(self.start_state), self.shape[1])

    @classmethod
    def notebook(cls):
        """The seed notebook's 6x6 grid (goal reward 1e4 at (0, 5)) with start (5, 0)."""
        return cls(NOTEBOOK_GRID, NOTEBOOK_START)

    @classmethod
    def from_file(cls, path, start):
        """Read a grid of rewards from a CSV or whitespace-separated text file."""
        return cls(read_grid(path), start)

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
        return f"GridWorld(shape={self.shape}, start={self.start})"


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
