"""Worlds: what every model, solver, kernel and SMC run needs to know about an environment.

See :mod:`pgm_rl.worlds.protocol` for the protocol a world gives (start distribution, outcomes
of each state-action pair, their rewards and prior probabilities); :mod:`pgm_rl.worlds.tabular`
for the tabular MDP that implements it (one pytree layout over outcomes),
:mod:`pgm_rl.worlds.grid` and :mod:`pgm_rl.worlds.gymnasium` for the worlds built on it,
:mod:`pgm_rl.worlds.reward_machine` for reward machines and their product MDPs (read from the
reference code's text format by :mod:`pgm_rl.worlds.machine_text`; its office world and tasks in
:mod:`pgm_rl.worlds.office`), and
:mod:`pgm_rl.worlds.checks` for the argument checks every public function shares.
"""

from pgm_rl.worlds.checks import (
    check_env,
    describe_randomness,
    latent_sites,
    require_deterministic,
)
from pgm_rl.worlds.grid import ACTION_NAMES, NOTEBOOK_GRID, NOTEBOOK_START, GridWorld, read_grid
from pgm_rl.worlds.gymnasium import GymnasiumMDP, from_gymnasium
from pgm_rl.worlds.machine_text import load_reward_machine
from pgm_rl.worlds.office import OFFICE_TASKS, office_labels, office_tasks, office_world
from pgm_rl.worlds.protocol import World
from pgm_rl.worlds.reward_machine import (
    RewardMachine,
    RewardMachineMDP,
    machine_rewards,
    satisfaction_probability,
    with_reward_machine,
)
from pgm_rl.worlds.tabular import TabularMDP

__all__ = [
    "ACTION_NAMES",
    "NOTEBOOK_GRID",
    "NOTEBOOK_START",
    "OFFICE_TASKS",
    "GridWorld",
    "GymnasiumMDP",
    "RewardMachine",
    "RewardMachineMDP",
    "TabularMDP",
    "World",
    "check_env",
    "describe_randomness",
    "from_gymnasium",
    "latent_sites",
    "load_reward_machine",
    "machine_rewards",
    "office_labels",
    "office_tasks",
    "office_world",
    "read_grid",
    "require_deterministic",
    "satisfaction_probability",
    "with_reward_machine",
]
