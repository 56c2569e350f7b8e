"""pgm_rl: control as inference (planning and RL as probabilistic inference) with NumPyro and ArviZ."""

from pgm_rl import exact
from pgm_rl.dynamics import rollout
from pgm_rl.envs import ACTION_NAMES, GridWorld, TabularMDP
from pgm_rl.exact import ExactPosterior, solve
from pgm_rl.model import trajectory_model

__all__ = [
    "ACTION_NAMES",
    "ExactPosterior",
    "GridWorld",
    "TabularMDP",
    "exact",
    "rollout",
    "solve",
    "trajectory_model",
]
