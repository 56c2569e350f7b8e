"""pgm_rl: control as inference (planning and RL as probabilistic inference) with NumPyro and ArviZ.

Pictures live in ``pgm_rl.plots`` (imported on its own: it loads matplotlib).
"""

from pgm_rl import diagnostics, exact, io, kernels, smc
from pgm_rl.dynamics import rollout
from pgm_rl.envs import ACTION_NAMES, GridWorld, TabularMDP
from pgm_rl.exact import ExactPosterior, solve
from pgm_rl.model import trajectory_model
from pgm_rl.smc import SMCResult, run_smc

__all__ = [
    "ACTION_NAMES",
    "ExactPosterior",
    "GridWorld",
    "SMCResult",
    "TabularMDP",
    "diagnostics",
    "exact",
    "io",
    "kernels",
    "rollout",
    "run_smc",
    "smc",
    "solve",
    "trajectory_model",
]
