"""Grid worlds: a :class:`~pgm_rl.worlds.tabular.TabularMDP` built from a grid of cell rewards.

:class:`GridWorld` (moves clipped at walls, optional slipping and absorbing terminal cells),
:func:`read_grid` (a grid of rewards from a CSV or whitespace-separated file) and the seed
notebook's grid.
"""

import csv
import math
import numbers
import os

import jax
import numpy as np

from pgm_rl._checks import INT32_MAX, check_fits_in_memory
from pgm_rl.worlds.outcomes import finite_float_array, merge_outcomes
from pgm_rl.worlds.tabular import TabularMDP

__all__ = [
    "ACTION_MOVES",
    "ACTION_NAMES",
    "GRID_BYTES_PER_CELL",
    "NOTEBOOK_GRID",
    "NOTEBOOK_START",
    "GridWorld",
    "check_slip",
    "grid_outcomes",
    "read_grid",
]

ACTION_NAMES = ("up", "down", "left", "right", "stay")
# (d_row, d_col) of each action, indexed by action id.
ACTION_MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1), (0, 0)])
# Peak bytes per cell while GridWorld builds its tables (at most; measured 156 with tracemalloc).
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
        grid = finite_float_array(rewards, "rewards", check_shape=_check_grid_size)
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
        del rows, cols, next_rows, next_cols  # lower the peak while the tables are built
        slip = check_slip(slip)
        terminal = _check_cells(terminal, grid.shape, "terminal")
        if slip == 0.0 and not terminal:
            super().__init__(next_state, grid.reshape(-1)[next_state], row * width + col)
        else:
            terminal_states = [r * width + c for r, c in terminal]
            outcomes = grid_outcomes(next_state, grid.reshape(-1), slip, terminal_states)
            self._set_outcomes(*outcomes, row * width + col)
        self.rewards = grid
        self.rewards.flags.writeable = False
        self.slip = slip
        self.terminal = terminal

    def tree_flatten(self):
        """Leaves: :class:`TabularMDP`'s, then ``rewards``; static: its own, slip, terminal."""
        children, aux = super().tree_flatten()
        return (*children, self.rewards), (aux, self.slip, self.terminal)

    @classmethod
    def tree_unflatten(cls, aux_data, children):
        """Rebuild from (possibly traced) leaves, unchecked."""
        aux, slip, terminal = aux_data
        grid = super().tree_unflatten(aux, children[:-1])
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
    return finite_float_array(values, f"rewards in grid file {path!r}")


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


def check_slip(slip):
    """``slip`` as a float in [0, 1] or ``TypeError``/``ValueError`` naming it."""
    if isinstance(slip, (bool, np.bool_)) or not isinstance(slip, numbers.Real):
        raise TypeError(f"slip must be a real number in [0, 1], got {slip!r}")
    slip = float(slip)
    if not (math.isfinite(slip) and 0.0 <= slip <= 1.0):
        raise ValueError(f"slip must lie in [0, 1], got {slip}")
    return slip


# Actions 0 up, 1 down, 2 left, 3 right, 4 stay: the two perpendicular moves of each.
_PERPENDICULAR = np.array([(2, 3), (2, 3), (0, 1), (0, 1), (4, 4)])


def grid_outcomes(next_state, cell_rewards, slip, terminal_states):
    """Outcomes of a grid world's moves with slipping and absorbing terminal cells.

    Parameters
    ----------
    next_state : int array, shape (S, 5)
        The deterministic (clipped) move of each action.
    cell_rewards : array, shape (S,)
        Reward of entering each cell.
    slip : float
        With probability ``slip`` a move goes to one of the two perpendicular directions instead
        (half each); "stay" always stays.
    terminal_states : sequence of int
        Absorbing states: every action stays there with reward 0.

    Returns
    -------
    states, probs, rewards : arrays, shape (S, 5, K), K <= 3
    """
    n_states, n_actions = next_state.shape
    moving = np.arange(n_actions) != 4
    intended = np.where(moving, 1.0 - slip, 1.0)
    side = np.where(moving, slip / 2.0, 0.0)
    states = np.stack(
        [next_state, next_state[:, _PERPENDICULAR[:, 0]], next_state[:, _PERPENDICULAR[:, 1]]],
        axis=-1,
    )  # (S, A, 3)
    probs = np.broadcast_to(np.stack([intended, side, side], axis=-1), states.shape).copy()
    terminal = np.asarray(list(terminal_states), np.int64)
    states[terminal] = terminal[:, None, None]
    probs[terminal] = np.array([1.0, 0.0, 0.0])
    rewards = np.asarray(cell_rewards, np.float64)[states]
    rewards[terminal] = 0.0
    rows = np.broadcast_to(
        np.arange(n_states * n_actions).reshape(n_states, n_actions, 1), states.shape
    )
    return merge_outcomes(
        rows.ravel(),
        states.ravel(),
        probs.ravel(),
        rewards.ravel(),
        n_states,
        n_actions,
        "grid moves",
    )
