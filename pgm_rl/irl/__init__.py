"""Bayesian inverse RL: rewards inferred from demonstrations through exact, differentiable log Z.

Control as inference gives a demonstration tau = (s_0, a_0, ..., a_{T-1}, s_T) the likelihood

    p(tau | theta) = p0(s_0) prod_t (1/A) p(s_{t+1} | s_t, a_t) exp(beta r_theta(s_t, a_t, s_{t+1}))
                     / Z(theta)                                       (likelihood="trajectory")

whose normaliser log Z(theta) is the backward message pass of :func:`pgm_rl.solve`; or, the
maximum-causal-entropy likelihood (Ziebart 2010) of the soft-Bellman policy,

    p(tau | theta) = p0(s_0) prod_t pi_theta,t(a_t | s_t) p(s_{t+1} | s_t, a_t)
                                                                      (likelihood="soft_bellman"),

the right one for stochastic dynamics (the expert does not control the dice). The reward is
linear in features, r_theta = features @ theta, with theta ~ Normal(0, prior_scale) (F,).

The differentiable path
-----------------------
:func:`pgm_rl.solve` keeps its values as double-word sums hi + lo whose low word is split off on
the host in float64, so it is not differentiable in the reward. This package uses the
differentiable passes of :mod:`pgm_rl.messages` (:func:`~pgm_rl.messages.trajectory_log_z`,
:func:`~pgm_rl.messages.soft_bellman_values`), written with ``jax.nn.logsumexp`` over outcomes
and actions, entirely in log space: every exponential is of a difference to a maximum, so
nothing overflows at any beta * reward, and the gradients (softmax weights, i.e. posterior
occupancies) are computed from those differences too. In float64 the values V_t ~ beta * T *
max|r| carry an absolute error of about 1e-16 * |V_t|, which is what the O(1) differences driving
the policy lose: at the notebook's largest scale (beta * reward 1e4 per step, T = 20) about
1e-11, far below what matters. In float32 that loss is 1e-7 * |V_t|; use float64
(``jax_enable_x64``) for beta * T * max|r| beyond ~1e4, where the double-word pass of ``solve``
would still be exact.

The demonstrations enter only through sufficient statistics (counts of (state, action, outcome)
transitions and of (t, state, action) choices), so a likelihood evaluation costs one backward
pass whatever the number of demonstrations N.

Modules: :mod:`~pgm_rl.irl.problem` (arrays, statistics, argument checks),
:mod:`~pgm_rl.irl.likelihood` (log Z, the ELBO, the likelihoods), :mod:`~pgm_rl.irl.model`
(the NumPyro model, the point estimate, batched NUTS), :mod:`~pgm_rl.irl.calibration`
(simulation and simulation-based calibration).
"""

from pgm_rl.irl.calibration import Calibration, reward_mdp, simulate, simulation_based_calibration
from pgm_rl.irl.likelihood import feature_expectations, log_likelihood, log_z, soft_bellman_elbo
from pgm_rl.irl.model import MaxLikelihood, max_likelihood, reward_model, sample_batched
from pgm_rl.irl.problem import LIKELIHOODS, demonstration_statistics

__all__ = [
    "LIKELIHOODS",
    "Calibration",
    "MaxLikelihood",
    "demonstration_statistics",
    "feature_expectations",
    "log_likelihood",
    "log_z",
    "max_likelihood",
    "reward_mdp",
    "reward_model",
    "sample_batched",
    "simulate",
    "simulation_based_calibration",
    "soft_bellman_elbo",
]
