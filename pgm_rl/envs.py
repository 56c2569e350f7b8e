"""Tabular environments (the public names of :mod:`pgm_rl.worlds`, kept importable from here).

:class:`TabularMDP` is defined in :mod:`pgm_rl.worlds.tabular`, :class:`GridWorld`,
:func:`read_grid` and the grid constants in :mod:`pgm_rl.worlds.grid`, :func:`from_gymnasium` in
:mod:`pgm_rl.worlds.gymnasium`; :class:`RewardMachine`, :func:`with_reward_machine` and
:func:`satisfaction_probability` in :mod:`pgm_rl.worlds.reward_machine`,
:func:`load_reward_machine` in :mod:`pgm_rl.worlds.machine_text`, the office world and its tasks
in :mod:`pgm_rl.worlds.office`.
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
from pgm_rl.worlds.machine_text import load_reward_machine
from pgm_rl.worlds.office import OFFICE_TASKS, office_labels, office_tasks, office_world
from pgm_rl.worlds.reward_machine import (
    RewardMachine,
    RewardMachineMDP,
    machine_rewards,
    satisfaction_probability,
    with_reward_machine,
)
from pgm_rl.worlds.tabular import TabularMDP

__all__ = [
    "ACTION_MOVES",
    "ACTION_NAMES",
    "GRID_BYTES_PER_CELL",
    "NOTEBOOK_GRID",
    "NOTEBOOK_START",
    "OFFICE_TASKS",
    "GridWorld",
    "RewardMachine",
    "RewardMachineMDP",
    "TabularMDP",
    "from_gymnasium",
    "load_reward_machine",
    "machine_rewards",
    "office_labels",
    "office_tasks",
    "office_world",
    "read_grid",
    "satisfaction_probability",
    "with_reward_machine",
]
