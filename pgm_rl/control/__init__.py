"""Continuous control as inference: problems with JAX dynamics, their NumPyro model, and the exact
Gaussian posterior and maximum-entropy policy of linear-quadratic problems."""

from pgm_rl.control.environments import cart_pole, mountain_car, pendulum
from pgm_rl.control.lq import soft_bellman_lq, solve_lq
from pgm_rl.control.lq_results import GaussianPosterior, LinearGaussianPolicy
from pgm_rl.control.model import control_model
from pgm_rl.control.mpc import PLANNER_DEFAULTS, Episode, mpc
from pgm_rl.control.mppi import MPPIResult, mppi
from pgm_rl.control.problems import ControlProblem, LinearQuadratic
from pgm_rl.control.smc import ControlSMCResult, run_smc
from pgm_rl.control.temperature import BetaChoice, choose_beta
from pgm_rl.control.twist import TwistedValues, lq_twist

__all__ = [
    "PLANNER_DEFAULTS",
    "BetaChoice",
    "ControlProblem",
    "ControlSMCResult",
    "Episode",
    "GaussianPosterior",
    "LinearGaussianPolicy",
    "LinearQuadratic",
    "MPPIResult",
    "TwistedValues",
    "cart_pole",
    "choose_beta",
    "control_model",
    "lq_twist",
    "mountain_car",
    "mpc",
    "mppi",
    "pendulum",
    "run_smc",
    "soft_bellman_lq",
    "solve_lq",
]
