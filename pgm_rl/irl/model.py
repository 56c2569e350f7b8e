"""The NumPyro model of a linear reward given demonstrations, its point estimate (L-BFGS) and
NUTS over a batch of data sets."""

import math
import numbers
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from jax import lax
from numpyro.infer.hmc import hmc

from pgm_rl._checks import check_positive_int, check_trajectories
from pgm_rl.irl.likelihood import log_likelihood_of
from pgm_rl.irl.problem import (
    check_beta_arg,
    check_likelihood,
    check_prior_scale,
    check_theta,
    demonstration_statistics,
    dynamics,
    expected_reward,
    get_demo_arrays,
    prior_scales,
    real_array,
    statistics,
    to_jax,
)
from pgm_rl.messages import working_dtype
from pgm_rl.worlds import check_env

__all__ = ["MaxLikelihood", "max_likelihood", "reward_model", "sample_batched"]


def reward_model(env, features, demonstrations, beta=1.0, prior_scale=1.0, likelihood="trajectory"):
    """NumPyro model of a linear reward given demonstrations, for NUTS.

    Sites: ``"theta"`` (F,) ~ Normal(0, prior_scale); deterministic ``"reward"`` (S, A), the
    expected reward E_{s'}[r_theta(s, a, s')]; the factor ``"demonstrations"``, the log
    likelihood of all N demonstrations (:func:`~pgm_rl.irl.log_likelihood`).

    Parameters
    ----------
    env : TabularMDP
        Dynamics and start (deterministic or stochastic); its own rewards are not used.
    features : array, shape (S, F) or (S, A, F)
        (S, F): the grid convention, r_theta(s, a, s') = features[s'] @ theta, the reward of the
        state entered (0 after a terminal state of a GridWorld or Gymnasium MDP, where the agent
        stays with reward 0). (S, A, F): r_theta(s, a) = features[s, a] @ theta.
    demonstrations : dict
        ``"actions"`` int (N, T) and ``"states"`` int (N, T + 1): what ``solve(...).sample``,
        a kernel's samples, ``pgm_rl.io.load`` or a Gymnasium rollout give. Checked when
        concrete (shapes, ranges, possible starts and moves); traced values (e.g. under
        ``jax.vmap`` over simulated data sets) are taken as given.
    beta : float, default 1.0
    prior_scale : float or array (F,), default 1.0
    likelihood : {"trajectory", "soft_bellman"}
        ``"trajectory"``: the exact trajectory likelihood, p_prior(tau) exp(beta R(tau)) / Z
        (log Z differentiable, see :mod:`pgm_rl.irl`). ``"soft_bellman"``: the
        maximum-causal-entropy likelihood prod_t pi_theta,t(a_t | s_t), right for stochastic
        dynamics.

    Examples
    --------
    >>> mcmc = MCMC(NUTS(reward_model), num_warmup=500, num_samples=1000)
    >>> mcmc.run(key, env, features, demos, beta=1.0)
    """
    likelihood = check_likelihood(likelihood)
    beta = check_beta_arg(beta)
    prior_scale = check_prior_scale(prior_scale)
    dyn = dynamics(env, features)
    stats = demonstration_statistics(env, features, demonstrations)
    n_features = dyn.feats.shape[-1]
    scale = prior_scales(prior_scale, n_features, dyn.probs.dtype)
    theta = numpyro.sample(
        "theta", dist.Normal(jnp.zeros(n_features, scale.dtype), scale).to_event(1)
    )
    numpyro.deterministic("reward", expected_reward(dyn, theta))
    numpyro.factor("demonstrations", log_likelihood_of(dyn, stats, theta, beta, likelihood))


# ----------------------------------------------------------------------------- point estimate


class MaxLikelihood(NamedTuple):
    """The point estimate of :func:`max_likelihood`.

    ``theta`` (F,); ``reward`` (S, A), the expected reward; ``log_likelihood`` at ``theta``
    (plus the log prior unless ``prior_scale=None``); ``grad_norm`` (the largest absolute
    gradient entry at the end); ``num_steps`` taken; ``converged`` (grad_norm <= tol).
    """

    theta: jax.Array
    reward: jax.Array
    log_likelihood: jax.Array
    grad_norm: jax.Array
    num_steps: jax.Array
    converged: jax.Array


def max_likelihood(
    env,
    features,
    demonstrations,
    beta=1.0,
    likelihood="trajectory",
    *,
    prior_scale=1.0,
    init=None,
    max_steps=500,
    tol=1e-6,
):
    """Point estimate of the reward weights by optax L-BFGS: the MAP of :func:`reward_model`
    by default, the maximum likelihood (MCE-IRL for ``"soft_bellman"``) with
    ``prior_scale=None``.

    Maximises :func:`~pgm_rl.irl.log_likelihood` plus the log prior of :func:`reward_model`,
    theta ~ Normal(0, ``prior_scale``), divided by N * T for conditioning. With
    ``prior_scale=None`` the objective is the log likelihood alone, which is unregularised: its
    maximum need not exist or be unique, directions the data do not identify (a constant
    feature) keep their ``init`` value, and the weight of a feature never or rarely seen (a cell
    never entered) runs off towards -inf (|theta| in the tens to hundreds) until ``max_steps``.

    The optimisation is one jitted program, compiled once per problem shape (S, A, K, F, T),
    likelihood and dtype: a repeated call with new demonstrations, beta or ``init`` of the
    same shapes does not recompile.

    Parameters
    ----------
    env, features, demonstrations, beta, likelihood
        As in :func:`reward_model`.
    prior_scale : float or array (F,) or None, default 1.0
        The scale of the Normal(0, prior_scale) prior (:func:`reward_model`'s default); None
        for the plain, unregularised maximum likelihood.
    init : array (F,), optional
        Starting theta (default zeros); finite.
    max_steps : int >= 1, default 500
    tol : float >= 0, default 1e-6
        Stop when the largest absolute gradient entry of the scaled objective is at most it.

    Returns
    -------
    MaxLikelihood

    Raises
    ------
    ValueError, TypeError
        For bad arguments (naming them), before any work.
    """
    likelihood = check_likelihood(likelihood)
    beta = check_beta_arg(beta)
    dyn = dynamics(env, features)
    n_features = dyn.feats.shape[-1]
    scale = None
    if prior_scale is not None:
        check_prior_scale(prior_scale)
        scale = prior_scales(prior_scale, n_features, working_dtype())
    if init is None:
        theta0 = jnp.zeros(n_features, working_dtype())
    else:
        init = real_array(init, "init")
        theta0 = check_theta(init, n_features)
        if not np.all(np.isfinite(init)):
            raise ValueError(f"init must be finite, got {init!r}")
    steps = check_positive_int(max_steps, "max_steps")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a real number >= 0, got {tol!r}")
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite real number >= 0, got {tol!r}")
    stats = demonstration_statistics(env, features, demonstrations)
    theta, value, gnorm, i = _fit_point(
        to_jax(dyn), stats, theta0, beta, scale, tol, steps, likelihood=likelihood
    )
    return MaxLikelihood(
        theta=theta,
        reward=expected_reward(dyn, theta),
        log_likelihood=value,
        grad_norm=gnorm,
        num_steps=i,
        converged=gnorm <= tol,
    )


@partial(jax.jit, static_argnames=("likelihood",))
def _fit_point(dyn, stats, theta0, beta, scale, tol, max_steps, likelihood):
    """L-BFGS on -(log likelihood + log prior) / (N T) (no prior where ``scale`` is None).

    Jitted once at module level over pytree arguments (the arrays of the problem, the
    statistics of the demonstrations, beta, tol and the step limit are traced), so that calls
    with the same shapes reuse one compiled program. Returns theta, the objective times N T
    (the log likelihood, plus the log prior), the final largest absolute gradient entry and
    the number of steps taken.
    """
    weight = stats.n * stats.choices.shape[0]

    def objective(theta):
        value = log_likelihood_of(dyn, stats, theta, beta, likelihood)
        if scale is not None:
            value = value - 0.5 * jnp.sum((theta / scale) ** 2)
        return -value / weight

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def cond(carry):
        _, _, i, gnorm = carry
        return (i < max_steps) & (gnorm > tol)

    def body(carry):
        theta, state, i, _ = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = opt.update(grad, state, theta, value=value, grad=grad, value_fn=objective)
        theta = optax.apply_updates(theta, updates)
        return theta, state, i + 1, jnp.max(jnp.abs(grad))

    carry = (theta0, opt.init(theta0), jnp.asarray(0), jnp.asarray(jnp.inf, theta0.dtype))
    theta, _, i, _ = lax.while_loop(cond, body, carry)
    value, grad = jax.value_and_grad(objective)(theta)
    return theta, -value * weight, jnp.max(jnp.abs(grad)), i


# ----------------------------------------------------------------------------- many data sets


def sample_batched(
    key,
    env,
    features,
    demonstrations,
    beta=1.0,
    prior_scale=1.0,
    likelihood="trajectory",
    *,
    num_warmup=500,
    num_samples=1000,
    target_accept_prob=0.8,
    max_tree_depth=10,
):
    """NUTS posteriors of theta for a batch of R demonstration sets at once (one chain each).

    The model is :func:`reward_model`'s (the same log density), run through NumPyro's
    functional ``hmc(potential_fn_gen, algo="NUTS")`` under ``jax.vmap`` over the R data sets:
    one compiled program for all of them, each with its own step-size and diagonal mass-matrix
    adaptation. What simulation-based calibration needs.

    Parameters
    ----------
    key : PRNG key
    env, features, beta, prior_scale, likelihood
        As in :func:`reward_model` (shared by all data sets).
    demonstrations : dict
        ``"actions"`` (R, N, T) and ``"states"`` (R, N, T + 1), checked like
        :func:`reward_model`'s.
    num_warmup, num_samples : int
    target_accept_prob, max_tree_depth
        NUTS settings. Under ``vmap`` every iteration lasts as long as the deepest tree of
        the batch, so a lower ``max_tree_depth`` bounds the cost (the chains stay valid).

    Returns
    -------
    dict
        ``"theta"`` (R, num_samples, F) and ``"diverging"`` (R, num_samples) bool.
    """
    likelihood = check_likelihood(likelihood)
    beta = check_beta_arg(beta)
    prior_scale = check_prior_scale(prior_scale)
    dyn = dynamics(env, features)
    actions, states = get_demo_arrays(demonstrations)
    check_trajectories(
        check_env(env), actions, states, "demonstrations", "demonstration", batch_ndim=2
    )
    actions, states = np.asarray(actions), np.asarray(states)
    n_sets = actions.shape[0]
    n_features = dyn.feats.shape[-1]
    scale = prior_scales(prior_scale, n_features, dyn.probs.dtype)

    def potential_fn_gen(stats):
        def potential(theta):
            log_prior = -0.5 * jnp.sum((theta / scale) ** 2)
            return -(log_prior + log_likelihood_of(dyn, stats, theta, beta, likelihood))

        return potential

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def one(key, actions, states):
        stats = statistics(dyn, actions, states)
        state = init_kernel(
            jnp.zeros(n_features, dyn.probs.dtype),
            num_warmup,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            model_args=(stats,),
            rng_key=key,
        )

        def step(state, _):
            state = sample_kernel(state, model_args=(stats,))
            return state, (state.z, state.diverging)

        state, _ = lax.scan(step, state, None, length=num_warmup)
        _, (z, diverging) = lax.scan(step, state, None, length=num_samples)
        return z, diverging

    keys = jax.random.split(key, n_sets)
    theta, diverging = jax.jit(jax.vmap(one))(keys, jnp.asarray(actions), jnp.asarray(states))
    return {"theta": theta, "diverging": diverging}
