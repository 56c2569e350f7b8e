"""The likelihoods of demonstrations given a linear reward, differentiable in theta.

Both rest on the differentiable log-space recursions of :mod:`pgm_rl.messages`:
:func:`~pgm_rl.messages.trajectory_log_z` (``"trajectory"``) and
:func:`~pgm_rl.messages.soft_bellman_values` (``"soft_bellman"``).
"""

import jax
import jax.numpy as jnp

from pgm_rl.irl.problem import (
    bare_dynamics,
    check_beta_arg,
    check_horizon_arg,
    check_likelihood,
    check_theta,
    demonstration_statistics,
    dynamics,
    outcome_reward,
    reward_to_scaled,
    to_jax,
)
from pgm_rl.messages import soft_bellman_values, trajectory_log_z

__all__ = [
    "feature_expectations",
    "log_likelihood",
    "log_likelihood_of",
    "log_z",
    "soft_bellman_elbo",
]


def _log_z(dyn, scaled, horizon):
    """log Z of the trajectory posterior for scaled outcome rewards beta * r (S, A, K)."""
    dyn = to_jax(dyn)
    return trajectory_log_z(dyn.ns, dyn.logp, dyn.log_p0, scaled, horizon)


def _soft_bellman(dyn, scaled, horizon):
    """Soft-Bellman log policy (T, S, A) and V_0 (S,) for scaled outcome rewards (S, A, K)."""
    dyn = to_jax(dyn)
    return soft_bellman_values(dyn.ns, dyn.probs, scaled, horizon)


def log_z(env, reward, horizon, beta):
    """log Z of the trajectory posterior, differentiable in ``reward`` (``jax.grad`` works).

    The same number as ``pgm_rl.solve(env, horizon, beta).log_z`` for ``reward = env.reward``,
    by the log-space pass :func:`pgm_rl.messages.trajectory_log_z` (see :mod:`pgm_rl.irl`).

    Parameters
    ----------
    env : TabularMDP
        Its dynamics and start (its own rewards are ignored).
    reward : array, shape (S, A) or (S, A, K)
        Rewards per state-action or per outcome (``env.outcome_states`` (S, A, K)).
    horizon : int
    beta : float
        A finite real >= 0 (or a traced value, unchecked).

    Returns
    -------
    scalar array
    """
    dyn = bare_dynamics(env)
    horizon = check_horizon_arg(horizon)
    beta = check_beta_arg(beta)
    return _log_z(dyn, reward_to_scaled(dyn, reward, beta), horizon)


def soft_bellman_elbo(env, reward, horizon, beta):
    """E_{s_0}[V_0(s_0)] of the soft-Bellman policy, differentiable in ``reward`` (S, A) or
    (S, A, K); equals ``pgm_rl.soft_bellman(env, horizon, beta).elbo`` for ``env.reward``."""
    dyn = bare_dynamics(env)
    horizon = check_horizon_arg(horizon)
    beta = check_beta_arg(beta)
    _, v0 = _soft_bellman(dyn, reward_to_scaled(dyn, reward, beta), horizon)
    p0 = jnp.exp(jnp.asarray(dyn.log_p0))
    return jnp.sum(jnp.where(p0 > 0, p0 * v0, 0.0))


def log_likelihood_of(dyn, stats, theta, beta, likelihood):
    """log p(demonstrations | theta), summed over demonstrations; traceable.

    ``dyn`` a :class:`~pgm_rl.irl.problem.Dynamics`, ``stats`` the demonstrations'
    :class:`~pgm_rl.irl.problem.Statistics`, ``theta`` (F,).
    """
    horizon = stats.choices.shape[0]
    scaled = beta * outcome_reward(dyn, theta)  # (S, A, K)
    if likelihood == "trajectory":
        n_actions = dyn.ns.shape[1]
        log_a = jnp.log(n_actions).astype(scaled.dtype)
        return (
            stats.log_start_dynamics
            - stats.n * horizon * log_a
            + jnp.sum(stats.transitions * scaled)
            - stats.n * _log_z(dyn, scaled, horizon)
        )
    log_policy, _ = _soft_bellman(dyn, scaled, horizon)
    return stats.log_start_dynamics + jnp.sum(stats.choices * log_policy)


def log_likelihood(theta, env, features, demonstrations, beta=1.0, likelihood="trajectory"):
    """log p(demonstrations | theta) summed over the N demonstrations; differentiable in theta.

    ``likelihood="trajectory"``: sum_n [log p0(s_0) + sum_t (log p(s_{t+1} | s_t, a_t) - log A
    + beta r_theta(s_t, a_t, s_{t+1}))] - N log Z(theta). ``"soft_bellman"``: sum_n [log p0(s_0)
    + sum_t (log pi_t(a_t | s_t) + log p(s_{t+1} | s_t, a_t))] with the soft-Bellman policy of
    r_theta. ``theta`` (F,); the rest as in :func:`~pgm_rl.irl.reward_model`.
    """
    likelihood = check_likelihood(likelihood)
    beta = check_beta_arg(beta)
    dyn = dynamics(env, features)
    stats = demonstration_statistics(env, features, demonstrations)
    theta = check_theta(theta, dyn.feats.shape[-1])
    return log_likelihood_of(dyn, stats, theta, beta, likelihood)


def feature_expectations(theta, env, features, horizon, beta=1.0):
    """E[sum_t phi(s_t, a_t, s_{t+1})] under the trajectory posterior of r_theta, (F,).

    Computed as the gradient of log Z with respect to beta * theta (the occupancy identity), so
    ``grad log_likelihood = beta * (empirical - N * feature_expectations)``.
    """
    dyn = dynamics(env, features)
    horizon = check_horizon_arg(horizon)
    beta = check_beta_arg(beta)
    theta = check_theta(theta, dyn.feats.shape[-1])
    return jax.grad(lambda u: _log_z(dyn, dyn.feats @ u, horizon))(beta * theta)
