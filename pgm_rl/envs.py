"""Tabular environments (the public names of :mod:`pgm_rl.worlds`, kept importable from here).

:class:`TabularMDP` is defined in :mod:`pgm_rl.worlds.tabular`, :class:`GridWorld`,
:func:`read_grid` and the grid constants in :mod:`pgm_rl.worlds.grid`, :func:`from_gymnasium` in
:mod:`pgm_rl.worlds.gymnasium`.
"""

from pgm_rl.worlds.grid import (
    ACTION_MOVES,
    ACTION_NAMES,
    GRID_BYTES_PER_CELL,
    NOTEBOOK_GRID,
    NOTEBOOK_START,
    GridWorld,
    read_grid,
)
from pgm_rl.worlds.gymnasium import from_gymnasium
from pgm_rl.worlds.tabular import TabularMDP

__all__ = [
    "ACTION_MOVES",
    "ACTION_NAMES",
    "GRID_BYTES_PER_CELL",
    "NOTEBOOK_GRID",
    "NOTEBOOK_START",
    "GridWorld",
    "TabularMDP",
    "from_gymnasium",
    "read_grid",
]
