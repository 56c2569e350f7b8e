"""MPPI (model predictive path integral control) as importance sampling of the trajectory
posterior: :func:`mppi` and :class:`MPPIResult`.

The target is the posterior over the actions (and, on stochastic dynamics, the noise) of
:func:`pgm_rl.control.control_model`:

    p(u, w | O) = prior(u) p(w) exp(beta * R(u, w)) / Z,     prior(u_t) = N(0, action_scale^2).

MPPI draws N action sequences from a Gaussian proposal ``q(u) = prod_t N(u_t; m_t, s_t^2)``
(the noise from its own prior) and weighs each by

    w_i = prior(u_i) / q(u_i) * exp(beta * R_i),

so the weighted draws represent the posterior and ``mean(w)`` estimates Z without bias,
whatever the proposal (it only has to cover the posterior). The weighted mean of the actions
is the MPPI control. With ``q`` equal to the prior the weights are ``exp(beta R_i)``
(Williams et al.'s ``exp(-S / lambda)`` with ``lambda = 1 / beta``); the ``prior / q`` ratio is
MPPI's "control cost" term ``u^T Sigma^-1 eps`` when the proposal is shifted to a nominal
plan, exact here rather than approximated.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax, random
from jax.scipy.stats import norm

from pgm_rl._sampling import multinomial_resample
from pgm_rl.control._importance import (
    check_common,
    check_plan,
    check_sample_count,
    draw_noise,
    finite_rewards,
    log_prior,
    weight_statistics,
)

__all__ = ["MPPIResult", "mppi"]

# The adapted proposal scale never falls below this fraction of the prior scale (a proposal
# that collapses onto one draw would stop exploring and make the next weights degenerate).
SCALE_FLOOR = 0.05


class MPPIResult(NamedTuple):
    """The weighted draws of one :func:`mppi` call (its last iteration).

    Attributes
    ----------
    actions : float array, shape (T, du)
        The weighted mean of the sampled actions: the MPPI control (posterior mean estimate).
    trajectories : dict of arrays
        The N draws: ``"actions"`` (N, T, du), ``"states"`` (N, T + 1, dx), ``"rewards"``
        (N, T) and, on stochastic dynamics, ``"noise"`` (N, T, dx).
    log_weights : float array, shape (N,)
        Normalised log importance weights (``logsumexp == 0``).
    log_z, log_z_se : float scalars
        ``log`` of the unbiased estimate of Z and its standard error (delta method,
        ``sqrt((N sum W^2 - 1) / (N - 1))``); trust it only where ``ess`` is large (>= 100).
    ess : float scalar
        Effective sample size ``1 / sum W^2`` in [1, N].
    proposal_mean, proposal_scale : float arrays, shape (T, du)
        The Gaussian proposal of the last iteration.
    """

    actions: jax.Array
    trajectories: dict
    log_weights: jax.Array
    log_z: jax.Array
    log_z_se: jax.Array
    ess: jax.Array
    proposal_mean: jax.Array
    proposal_scale: jax.Array

    @property
    def weights(self):
        """Normalised importance weights, shape (N,)."""
        return jnp.exp(self.log_weights)

    def resample(self, key, n):
        """``n`` equally weighted draws (multinomial resampling of :attr:`trajectories`).

        Parameters
        ----------
        key : jax PRNG key
        n : int
            Number of draws >= 1.

        Returns
        -------
        dict
            The entries of :attr:`trajectories`, each with leading axis n.
        """
        n = check_sample_count(n, "n", minimum=1)
        index = multinomial_resample(key, self.log_weights, n)
        return {name: value[index] for name, value in self.trajectories.items()}


def mppi(problem, horizon, beta, num_samples, key, init=None, iterations=1, scale=None):
    """Importance-sample the trajectory posterior with a Gaussian proposal (MPPI).

    Iteration k draws ``num_samples`` action sequences ``u = m_k + s_k * eps``
    (``eps ~ N(0, I)``), rolls them out (on stochastic dynamics with noise drawn from its
    prior) and weighs them by ``prior(u) / q_k(u) * exp(beta * R)``. With ``iterations > 1``
    the proposal adapts between iterations (cross-entropy / PMC style): ``m_{k+1}`` is the
    weighted mean of the actions and ``s_{k+1}`` their weighted standard deviation, per step
    and coordinate, floored at ``SCALE_FLOOR * action_scale`` (0.05). Only the last
    iteration's draws are returned: given the adapted proposal they are exact importance
    sampling, so ``log_z`` (from the last proposal alone) stays unbiased for Z and the
    weights correct whatever the adaptation did. The adaptation helps when the posterior is
    much narrower than the prior (large beta) but cannot follow correlations between steps (the
    proposal is diagonal); judge the result by ``ess``.

    Parameters
    ----------
    problem : ControlProblem
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0 (``1 / lambda`` of the MPPI papers).
    num_samples : int
        N >= 2 draws per iteration.
    key : jax PRNG key
    init : array_like, shape (T, du), optional
        The first proposal mean (MPC passes the shifted previous plan); default zeros (the
        prior mean).
    iterations : int, default 1
        Proposal adaptations + 1.
    scale : array_like, shape (T, du), (du,) or scalar, optional
        The first proposal standard deviation; default ``problem.action_scale``.

    Returns
    -------
    MPPIResult

    Raises
    ------
    ValueError
        Bad horizon, beta, sample count, ``init`` or ``scale`` shapes or values; sampled
        trajectories whose rewards are not finite (naming the first).
    """
    horizon, beta = check_common(problem, horizon, beta, key)
    num_samples = check_sample_count(num_samples, "num_samples")
    iterations = check_sample_count(iterations, "iterations", minimum=1)
    dtype = jnp.asarray(problem.x0).dtype
    du = problem.action_dim
    mean = check_plan(0.0 if init is None else init, horizon, du, "init", dtype)
    start_scale = problem.action_scale if scale is None else scale
    start_scale = check_plan(start_scale, horizon, du, "scale", dtype, positive=True)
    result = _mppi(problem, key, beta, mean, start_scale, num_samples, iterations)
    finite_rewards(result.trajectories["rewards"], "mppi")
    return result


@partial(jax.jit, static_argnums=(5, 6))
def _mppi(problem, key, beta, mean, scale, num_samples, iterations):
    """:func:`mppi` on checked arguments (also called inside MPC's scan)."""
    floor = SCALE_FLOOR * jnp.broadcast_to(problem.action_scale, mean.shape)

    def adapt(carry, step_key):
        mean, scale = carry
        draws, log_w = _weigh(problem, step_key, beta, mean, scale, num_samples)
        weights = jnp.exp(weight_statistics(log_w)[0])[:, None, None]
        new_mean = jnp.sum(weights * draws["actions"], axis=0)
        variance = jnp.sum(weights * (draws["actions"] - new_mean) ** 2, axis=0)
        return (new_mean, jnp.maximum(jnp.sqrt(variance), floor)), None

    keys = random.split(key, iterations)
    (mean, scale), _ = lax.scan(adapt, (mean, scale), keys[:-1])
    draws, log_w = _weigh(problem, keys[-1], beta, mean, scale, num_samples)
    log_w, log_z, ess, se = weight_statistics(log_w)
    control = jnp.einsum("n,ntd->td", jnp.exp(log_w), draws["actions"])
    return MPPIResult(control, draws, log_w, log_z, se, ess, mean, scale)


def _weigh(problem, key, beta, mean, scale, num_samples):
    """Draw ``num_samples`` trajectories from the proposal ``N(mean, scale^2)``; their dict and
    unnormalised log weights ``log prior - log q + beta * R`` (N,)."""
    action_key, noise_key = random.split(key)
    eps = random.normal(action_key, (num_samples, *mean.shape), mean.dtype)
    actions = mean + scale * eps
    log_q = norm.logpdf(eps).sum(axis=(1, 2)) - jnp.sum(jnp.log(scale))
    noise = draw_noise(problem, noise_key, (num_samples, mean.shape[0]))
    if noise is None:
        states, rewards = jax.vmap(problem.rollout)(actions)
    else:
        states, rewards = jax.vmap(problem.rollout)(actions, noise)
    draws = {"actions": actions, "states": states, "rewards": rewards}
    if noise is not None:
        draws["noise"] = noise
    log_w = log_prior(problem, actions) - log_q + beta * rewards.sum(axis=1)
    return draws, log_w
