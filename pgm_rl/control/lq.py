"""Exact answers of linear-quadratic problems, by a backward Riccati pass and a forward pass.

For :class:`~pgm_rl.control.LinearQuadratic` the trajectory posterior
p(u | O) ∝ N(u; 0, action_scale^2) exp(beta sum_t r_t) is Gaussian (maximum-entropy LQR;
Toussaint 2009, Watson et al. 2019). With v_t the latents of step t (the action u_t, and the
noise w_t when stochastic: the optimistic posterior chooses the noise too, as on stochastic
MDPs) and x_{t+1} = A x_t + E v_t (E = [B, I], or B), the soft value of a state is quadratic,
V_t(x) = -1/2 x^T P_t x + c_t, and each step's latents given the state are Gaussian:

    M_t = beta Q + P_{t+1}                  (P_T = 0, c_T = 0)
    H_t = diag(1 / prior variances) + beta blockdiag(R, 0) + E^T M_t E
    v_t | x_t ~ N(K_t x_t, H_t^{-1}),       K_t = -H_t^{-1} E^T M_t A
    P_t = A^T M_t A - A^T M_t E H_t^{-1} E^T M_t A
    c_t = c_{t+1} - 1/2 log det(prior covariance H_t)   (- 1/2 tr(M_t Sigma_w) for a policy)
    log Z = V_0(x_0) = -1/2 x_0^T P_0 x_0 + c_0

The joint precision of all the latents is positive definite exactly when every H_t is (they
are the pivots of its block elimination from the last step), so a non-positive-definite H_t
(an indefinite Q with beta too large) is reported as an improper posterior, never as NaN.
Everything is a ``lax.scan`` over the steps: O(T) for log Z, the moments and a sample, O(T^2)
for the full covariance.
"""

import math

import numpy as np

from pgm_rl._checks import check_beta, check_horizon
from pgm_rl.control.lq_passes import forward, policy_elbo, riccati
from pgm_rl.control.lq_results import GaussianPosterior, LinearGaussianPolicy
from pgm_rl.control.problems import LinearQuadratic


def _check(problem, horizon, beta):
    if not isinstance(problem, LinearQuadratic):
        raise TypeError(
            "problem must be a pgm_rl.control.LinearQuadratic (the exact answers need linear "
            f"dynamics and quadratic rewards), got {type(problem).__name__}"
        )
    return check_horizon(horizon), float(check_beta(beta))


def _require_proper(proper, value, beta, what):
    proper = np.asarray(proper)
    if not proper.all():
        step = len(proper) - 1 - int(np.argmin(proper[::-1]))  # the backward pass's first
        raise ValueError(
            f"the {what} is improper at beta = {beta}: the precision of step {step}'s latents "
            "(prior precision + beta R + the quadratic cost-to-go) is not positive definite, so "
            "exp(beta * return) grows faster than the Gaussian prior decays (an indefinite Q "
            "with beta too large) and log Z is +inf; use a smaller beta or a positive "
            "semi-definite Q"
        )
    if not math.isfinite(float(value)):
        raise ValueError(
            f"the {what} overflows the working dtype at beta = {beta} (log Z = {float(value)}); "
            'use a smaller beta or horizon, or enable float64: jax.config.update("jax_enable_x64", '
            "True)"
        )


def solve_lq(problem, horizon, beta):
    """The exact Gaussian trajectory posterior of a linear-quadratic problem.

    O(T) in the horizon (a backward Riccati pass and a forward pass); the full covariance is
    computed on first use (O(T^2)).

    Parameters
    ----------
    problem : LinearQuadratic
    horizon : int
        T, the number of actions.
    beta : float
        Inverse temperature, >= 0.

    Returns
    -------
    GaussianPosterior
        Over the actions, and over the noise too on a stochastic problem (the optimistic
        posterior, as on stochastic MDPs).

    Raises
    ------
    TypeError
        If ``problem`` is not a :class:`LinearQuadratic`.
    ValueError
        If horizon < 1, beta < 0, or the posterior is improper (a step's precision is not
        positive definite: an indefinite Q with beta too large) or overflows.
    """
    horizon, beta = _check(problem, horizon, beta)
    gains, chol, proper, log_z = riccati(problem, horizon, beta, joint=True)
    _require_proper(proper, log_z, beta, "trajectory posterior")
    moments = forward(problem, gains, chol, None)
    return GaussianPosterior(problem, horizon, beta, log_z, gains, chol, *moments)


def soft_bellman_lq(problem, horizon, beta):
    """The maximum-entropy LQR policy with the action prior: u_t ~ N(K_t x_t + k_t, Sigma_t).

    The policy that maximises its ELBO E[beta * return + log prior(u) - log pi(u | x)] under the
    true dynamics (the noise is not chosen: it keeps its prior). On a deterministic problem it
    is the posterior's conditional and its ELBO equals log Z; on a noisy one log Z exceeds it
    (the optimism of the posterior, which also chooses the noise).

    Parameters
    ----------
    problem : LinearQuadratic
    horizon : int
    beta : float

    Returns
    -------
    LinearGaussianPolicy

    Raises
    ------
    TypeError, ValueError
        As :func:`solve_lq`.
    """
    horizon, beta = _check(problem, horizon, beta)
    gains, chol, proper, value = riccati(problem, horizon, beta, joint=False)
    _require_proper(proper, value, beta, "soft Bellman policy")
    noise_var = problem.noise_scale**2 if problem.is_stochastic else None
    moments = forward(problem, gains, chol, noise_var)
    elbo = policy_elbo(problem, beta, chol, *moments[:4])
    return LinearGaussianPolicy(problem, horizon, beta, elbo, gains, chol, *moments)
