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
the host in float64, so it is not differentiable in the reward. This module has a **separate**
backward pass written with ``jax.nn.logsumexp`` over outcomes and actions, entirely in log
space: every exponential is of a difference to a maximum, so nothing overflows at any
beta * reward, and the gradients (softmax weights, i.e. posterior occupancies) are computed from
those differences too. In float64 the values V_t ~ beta * T * max|r| carry an absolute error of
about 1e-16 * |V_t|, which is what the O(1) differences driving the policy lose: at the
notebook's largest scale (beta * reward 1e4 per step, T = 20) about 1e-11, far below what
matters. In float32 that loss is 1e-7 * |V_t|; use float64 (``jax_enable_x64``) for
beta * T * max|r| beyond ~1e4, where the double-word pass of ``solve`` would still be exact.

The demonstrations enter only through sufficient statistics (counts of (state, action, outcome)
transitions and of (t, state, action) choices), so a likelihood evaluation costs one backward
pass whatever the number of demonstrations N.
"""

import math
import numbers
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pgm_rl._checks import check_beta, check_positive_int, check_trajectories
from pgm_rl.model import check_env

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

LIKELIHOODS = ("trajectory", "soft_bellman")


# ----------------------------------------------------------------------------- problem arrays


class _Dynamics(NamedTuple):
    """The MDP's arrays (a pytree): ``ns`` (S, A, K) int32, ``logp`` (S, A, K) (-inf padding),
    ``probs`` (S, A, K), ``log_p0`` (S,), ``feats`` (S, A, K, F) the features of each outcome;
    NumPy arrays in the working dtype."""

    ns: jax.Array
    logp: jax.Array
    probs: jax.Array
    log_p0: jax.Array
    feats: jax.Array


def _dtype():
    return np.dtype(jnp.asarray(0.0).dtype)


def _absorbing_mask(mdp):
    """(S,) bool: the MDP's terminal (absorbing, reward-0) states, where features are zeroed."""
    mask = np.zeros(mdp.n_states, bool)
    terminal = getattr(mdp, "terminal_states", ()) or ()
    mask[list(terminal)] = True
    return mask


def _check_features(features, mdp):
    """``features`` as a float array (S, F) or (S, A, F), checked."""
    if isinstance(features, jax.core.Tracer):
        raise TypeError("features must be a concrete array, not a traced value")
    try:
        array = np.asarray(features)
    except ValueError:
        raise ValueError("features must be a rectangular (S, F) or (S, A, F) array") from None
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TypeError(f"features must be a real (non-bool) array, got dtype {array.dtype}")
    n_states, n_actions = mdp.n_states, mdp.n_actions
    if (
        not (
            (array.ndim == 2 and array.shape[0] == n_states)
            or (array.ndim == 3 and array.shape[:2] == (n_states, n_actions))
        )
        or array.shape[-1] == 0
    ):
        raise ValueError(
            f"features must have shape (S, F) = ({n_states}, F) (features of the state entered) "
            f"or (S, A, F) = ({n_states}, {n_actions}, F), F >= 1; got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        raise ValueError("features must be finite (they hold NaN or inf)")
    return array.astype(np.float64)


def _dynamics(env, features):
    """Checked :class:`_Dynamics` of ``env`` with ``features`` (S, F) or (S, A, F)."""
    mdp = check_env(env)
    feats = _check_features(features, mdp)
    ns = np.asarray(mdp.outcome_states, np.int32)
    probs = np.asarray(mdp.outcome_probs, np.float64)
    if feats.ndim == 2:  # the grid convention: the reward of the state entered
        out = feats[ns]  # (S, A, K, F)
        out = out * (~_absorbing_mask(mdp))[:, None, None, None]
    else:
        out = np.broadcast_to(feats[:, :, None, :], (*ns.shape, feats.shape[-1]))
    out = np.where(probs[..., None] > 0, out, 0.0)
    dtype = _dtype()
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
        log_p0 = np.log(np.asarray(mdp.start_probs, np.float64))
    # NumPy arrays (host constants): checks read them even while a model is being traced
    return _Dynamics(
        ns=ns,
        logp=logp.astype(dtype),
        probs=probs.astype(dtype),
        log_p0=log_p0.astype(dtype),
        feats=np.ascontiguousarray(out, dtype),
    )


def _jax(dyn):
    """The same arrays as JAX arrays (for traced code)."""
    return _Dynamics(*(jnp.asarray(x) for x in dyn))


def _outcome_reward(dyn, theta):
    """r_theta(s, a, k) = feats[s, a, k] @ theta, (S, A, K)."""
    return dyn.feats @ theta


def _expected_reward(dyn, theta):
    """E_k r_theta(s, a, k), (S, A)."""
    return jnp.sum(dyn.probs * _outcome_reward(dyn, theta), axis=-1)


# ----------------------------------------------------------------------------- backward passes


def _log_z(dyn, scaled, horizon):
    """log Z of the trajectory posterior for scaled outcome rewards beta * r (S, A, K)."""
    dyn = _jax(dyn)
    n_actions = dyn.ns.shape[1]
    log_a = jnp.log(n_actions).astype(scaled.dtype)
    valid = jnp.isfinite(dyn.logp)
    base = jnp.where(valid, dyn.logp + scaled, -jnp.inf)

    def step(v, _):
        q = jax.nn.logsumexp(jnp.where(valid, base + v[dyn.ns], -jnp.inf), axis=-1)  # (S, A)
        return jax.nn.logsumexp(q, axis=-1) - log_a, None

    v0, _ = lax.scan(step, jnp.zeros(dyn.ns.shape[0], scaled.dtype), None, length=horizon)
    return jax.nn.logsumexp(dyn.log_p0 + v0)


def _soft_bellman(dyn, scaled, horizon):
    """Soft-Bellman log policy (T, S, A) and V_0 (S,) for scaled outcome rewards (S, A, K)."""
    dyn = _jax(dyn)
    n_actions = dyn.ns.shape[1]
    log_a = jnp.log(n_actions).astype(scaled.dtype)

    def step(v, _):
        q = jnp.sum(dyn.probs * (scaled + v[dyn.ns]), axis=-1)  # (S, A); padding has prob 0
        v_new = jax.nn.logsumexp(q, axis=-1) - log_a
        return v_new, q - v_new[:, None] - log_a

    v0, log_policy = lax.scan(
        step, jnp.zeros(dyn.ns.shape[0], scaled.dtype), None, length=horizon, reverse=True
    )
    return log_policy, v0


def _elbo(dyn, scaled, horizon):
    _, v0 = _soft_bellman(dyn, scaled, horizon)
    p0 = jnp.exp(dyn.log_p0)
    return jnp.sum(jnp.where(p0 > 0, p0 * v0, 0.0))


def _reward_to_scaled(dyn, reward, beta):
    """beta * reward as outcome rewards (S, A, K) from (S, A) or (S, A, K)."""
    reward = jnp.asarray(reward, _dtype())
    if reward.shape == dyn.ns.shape[:2]:
        reward = jnp.broadcast_to(reward[..., None], dyn.ns.shape)
    elif reward.shape != dyn.ns.shape:
        raise ValueError(
            f"reward must have shape (S, A) = {dyn.ns.shape[:2]} or (S, A, K) = {dyn.ns.shape}, "
            f"got {reward.shape}"
        )
    return beta * jnp.where(jnp.isfinite(dyn.logp), reward, 0.0)


def _bare_dynamics(env):
    mdp = check_env(env)
    return _dynamics(mdp, np.zeros((mdp.n_states, 1)))


def _check_horizon_arg(horizon):
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be an int >= 1, got {horizon!r}")
    return int(horizon)


def log_z(env, reward, horizon, beta):
    """log Z of the trajectory posterior, differentiable in ``reward`` (``jax.grad`` works).

    The same number as ``pgm_rl.solve(env, horizon, beta).log_z`` for ``reward = env.reward``,
    by the separate log-space pass described in the module docstring.

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
    dyn = _bare_dynamics(env)
    horizon = _check_horizon_arg(horizon)
    beta = _check_beta(beta)
    return _log_z(dyn, _reward_to_scaled(dyn, reward, beta), horizon)


def soft_bellman_elbo(env, reward, horizon, beta):
    """E_{s_0}[V_0(s_0)] of the soft-Bellman policy, differentiable in ``reward`` (S, A) or
    (S, A, K); equals ``pgm_rl.soft_bellman(env, horizon, beta).elbo`` for ``env.reward``."""
    dyn = _bare_dynamics(env)
    horizon = _check_horizon_arg(horizon)
    beta = _check_beta(beta)
    return _elbo(dyn, _reward_to_scaled(dyn, reward, beta), horizon)


# ----------------------------------------------------------------------------- demonstrations


class _Statistics(NamedTuple):
    """Sufficient statistics of N demonstrations (a pytree).

    ``transitions`` (S, A, K): how often outcome k of (s, a) was taken; ``choices`` (T, S, A):
    how often a was chosen in s at step t; ``constant``: the theta-free part of the log
    likelihood (start, dynamics; the uniform action prior for ``"trajectory"`` is added later);
    ``n``: N.
    """

    transitions: jax.Array
    choices: jax.Array
    log_start_dynamics: jax.Array
    n: jax.Array


def _is_traced(*values):
    return any(isinstance(v, jax.core.Tracer) for v in values)


def _get_demo_arrays(demonstrations):
    if not isinstance(demonstrations, dict) and not hasattr(demonstrations, "keys"):
        raise TypeError(
            "demonstrations must be a dict with 'actions' (N, T) and 'states' (N, T + 1), got "
            f"{type(demonstrations).__name__}"
        )
    missing = [k for k in ("actions", "states") if k not in demonstrations]
    if missing:
        raise ValueError(
            f"demonstrations lacks {missing}: it needs 'actions' (N, T) and 'states' (N, T + 1)"
        )
    return demonstrations["actions"], demonstrations["states"]


def _statistics(dyn, actions, states):
    """:class:`_Statistics` of (unchecked) demonstrations; traceable."""
    dyn = _jax(dyn)
    actions = jnp.asarray(actions, jnp.int32)
    states = jnp.asarray(states, jnp.int32)
    n, horizon = actions.shape
    n_states, n_actions, _ = dyn.ns.shape
    dtype = dyn.probs.dtype
    here, there = states[:, :-1], states[:, 1:]
    match = (dyn.ns[here, actions] == there[..., None]) & (dyn.probs[here, actions] > 0)
    k = jnp.argmax(match, axis=-1)  # (N, T)
    transitions = jnp.zeros(dyn.ns.shape, dtype).at[here, actions, k].add(1.0)
    time = jnp.broadcast_to(jnp.arange(horizon), (n, horizon))
    choices = jnp.zeros((horizon, n_states, n_actions), dtype).at[time, here, actions].add(1.0)
    logp = jnp.where(jnp.isfinite(dyn.logp), dyn.logp, 0.0)
    const = jnp.sum(dyn.log_p0[states[:, 0]]) + jnp.sum(transitions * logp)
    return _Statistics(transitions, choices, const, jnp.asarray(n, dtype))


def demonstration_statistics(env, features, demonstrations):
    """Checked sufficient statistics of ``demonstrations`` (what the likelihoods read).

    Returns a NamedTuple with ``transitions`` (S, A, K) counts of each outcome taken,
    ``choices`` (T, S, A) counts of each action chosen per step and state, the theta-free
    ``log_start_dynamics`` and ``n`` (N). Raises ``ValueError``/``TypeError`` as
    :func:`reward_model` does.
    """
    dyn = _dynamics(env, features)
    actions, states = _get_demo_arrays(demonstrations)
    if not _is_traced(actions, states):
        actions, states = check_trajectories(
            check_env(env), actions, states, "demonstrations", "demonstration", batch_ndim=1
        )
    return _statistics(dyn, actions, states)


def _log_likelihood(dyn, stats, theta, beta, likelihood):
    """log p(demonstrations | theta), summed over demonstrations; traceable."""
    horizon = stats.choices.shape[0]
    scaled = beta * _outcome_reward(dyn, theta)  # (S, A, K)
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


def _check_likelihood(likelihood):
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return likelihood


def _check_beta(beta):
    if _is_traced(beta):
        return beta
    return float(check_beta(beta))


def _check_prior_scale(prior_scale):
    if _is_traced(prior_scale):
        return prior_scale
    if isinstance(prior_scale, bool) or not isinstance(
        prior_scale, (int, float, np.integer, np.floating, np.ndarray, jax.Array)
    ):
        raise TypeError(f"prior_scale must be a positive float, got {prior_scale!r}")
    value = np.asarray(prior_scale, np.float64)
    if value.ndim > 1 or not np.all(np.isfinite(value)) or not np.all(value > 0):
        raise ValueError(
            f"prior_scale must be finite and > 0 (a float or (F,)), got {prior_scale!r}"
        )
    return prior_scale


def _prior_scales(prior_scale, n_features, dtype):
    """``prior_scale`` broadcast to (F,), or ``ValueError`` naming it."""
    scale = jnp.asarray(prior_scale, dtype)
    if scale.ndim > 1 or (scale.ndim == 1 and scale.shape[0] not in (1, n_features)):
        raise ValueError(
            f"prior_scale must be a float or an array (F,) = ({n_features},), got shape "
            f"{scale.shape}"
        )
    return jnp.broadcast_to(scale, (n_features,))


def _check_theta(theta, n_features):
    theta = jnp.asarray(theta, _dtype())
    if theta.shape != (n_features,):
        raise ValueError(f"theta must have shape (F,) = ({n_features},), got {theta.shape}")
    return theta


def log_likelihood(theta, env, features, demonstrations, beta=1.0, likelihood="trajectory"):
    """log p(demonstrations | theta) summed over the N demonstrations; differentiable in theta.

    ``likelihood="trajectory"``: sum_n [log p0(s_0) + sum_t (log p(s_{t+1} | s_t, a_t) - log A
    + beta r_theta(s_t, a_t, s_{t+1}))] - N log Z(theta). ``"soft_bellman"``: sum_n [log p0(s_0)
    + sum_t (log pi_t(a_t | s_t) + log p(s_{t+1} | s_t, a_t))] with the soft-Bellman policy of
    r_theta. ``theta`` (F,); the rest as in :func:`reward_model`.
    """
    likelihood = _check_likelihood(likelihood)
    beta = _check_beta(beta)
    dyn = _dynamics(env, features)
    stats = demonstration_statistics(env, features, demonstrations)
    theta = _check_theta(theta, dyn.feats.shape[-1])
    return _log_likelihood(dyn, stats, theta, beta, likelihood)


def feature_expectations(theta, env, features, horizon, beta=1.0):
    """E[sum_t phi(s_t, a_t, s_{t+1})] under the trajectory posterior of r_theta, (F,).

    Computed as the gradient of log Z with respect to beta * theta (the occupancy identity), so
    ``grad log_likelihood = beta * (empirical - N * feature_expectations)``.
    """
    dyn = _dynamics(env, features)
    horizon = _check_horizon_arg(horizon)
    beta = _check_beta(beta)
    theta = _check_theta(theta, dyn.feats.shape[-1])
    return jax.grad(lambda u: _log_z(dyn, dyn.feats @ u, horizon))(beta * theta)


# ----------------------------------------------------------------------------- the model


def reward_model(env, features, demonstrations, beta=1.0, prior_scale=1.0, likelihood="trajectory"):
    """NumPyro model of a linear reward given demonstrations, for NUTS.

    Sites: ``"theta"`` (F,) ~ Normal(0, prior_scale); deterministic ``"reward"`` (S, A), the
    expected reward E_{s'}[r_theta(s, a, s')]; the factor ``"demonstrations"``, the log
    likelihood of all N demonstrations (:func:`log_likelihood`).

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
        (log Z differentiable, see the module docstring). ``"soft_bellman"``: the
        maximum-causal-entropy likelihood prod_t pi_theta,t(a_t | s_t), right for stochastic
        dynamics.

    Examples
    --------
    >>> mcmc = MCMC(NUTS(reward_model), num_warmup=500, num_samples=1000)
    >>> mcmc.run(key, env, features, demos, beta=1.0)
    """
    import numpyro
    import numpyro.distributions as dist

    likelihood = _check_likelihood(likelihood)
    beta = _check_beta(beta)
    prior_scale = _check_prior_scale(prior_scale)
    dyn = _dynamics(env, features)
    stats = demonstration_statistics(env, features, demonstrations)
    n_features = dyn.feats.shape[-1]
    scale = _prior_scales(prior_scale, n_features, dyn.probs.dtype)
    theta = numpyro.sample(
        "theta", dist.Normal(jnp.zeros(n_features, scale.dtype), scale).to_event(1)
    )
    numpyro.deterministic("reward", _expected_reward(dyn, theta))
    numpyro.factor("demonstrations", _log_likelihood(dyn, stats, theta, beta, likelihood))


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

    Maximises :func:`log_likelihood` plus the log prior of :func:`reward_model`, theta ~
    Normal(0, ``prior_scale``), divided by N * T for conditioning. With ``prior_scale=None``
    the objective is the log likelihood alone, which is unregularised: its maximum need not
    exist or be unique, directions the data do not identify (a constant feature) keep their
    ``init`` value, and the weight of a feature never or rarely seen (a cell never entered)
    runs off towards -inf (|theta| in the tens to hundreds) until ``max_steps``.

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
    likelihood = _check_likelihood(likelihood)
    beta = _check_beta(beta)
    dyn = _dynamics(env, features)
    n_features = dyn.feats.shape[-1]
    scale = None
    if prior_scale is not None:
        _check_prior_scale(prior_scale)
        scale = _prior_scales(prior_scale, n_features, _dtype())
    if init is None:
        theta0 = jnp.zeros(n_features, _dtype())
    else:
        init = _real_array(init, "init")
        theta0 = _check_theta(init, n_features)
        if not np.all(np.isfinite(init)):
            raise ValueError(f"init must be finite, got {init!r}")
    steps = check_positive_int(max_steps, "max_steps")
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise TypeError(f"tol must be a real number >= 0, got {tol!r}")
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tol must be a finite real number >= 0, got {tol!r}")
    stats = demonstration_statistics(env, features, demonstrations)
    theta, value, gnorm, i = _fit_point(
        _jax(dyn), stats, theta0, beta, scale, tol, steps, likelihood=likelihood
    )
    return MaxLikelihood(
        theta=theta,
        reward=_expected_reward(dyn, theta),
        log_likelihood=value,
        grad_norm=gnorm,
        num_steps=i,
        converged=gnorm <= tol,
    )


def _real_array(values, name):
    array = np.asarray(values)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a real array, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be a real array, got a complex one")
    return array


@partial(jax.jit, static_argnames=("likelihood",))
def _fit_point(dyn, stats, theta0, beta, scale, tol, max_steps, likelihood):
    """L-BFGS on -(log likelihood + log prior) / (N T) (no prior where ``scale`` is None).

    Jitted once at module level over pytree arguments (the arrays of the problem, the
    statistics of the demonstrations, beta, tol and the step limit are traced), so that calls
    with the same shapes reuse one compiled program. Returns theta, the objective times N T
    (the log likelihood, plus the log prior), the final largest absolute gradient entry and
    the number of steps taken.
    """
    import optax

    weight = stats.n * stats.choices.shape[0]

    def objective(theta):
        value = _log_likelihood(dyn, stats, theta, beta, likelihood)
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
    from numpyro.infer.hmc import hmc

    likelihood = _check_likelihood(likelihood)
    beta = _check_beta(beta)
    prior_scale = _check_prior_scale(prior_scale)
    dyn = _dynamics(env, features)
    actions, states = _get_demo_arrays(demonstrations)
    check_trajectories(
        check_env(env), actions, states, "demonstrations", "demonstration", batch_ndim=2
    )
    actions, states = np.asarray(actions), np.asarray(states)
    n_sets = actions.shape[0]
    n_features = dyn.feats.shape[-1]
    scale = _prior_scales(prior_scale, n_features, dyn.probs.dtype)

    def potential_fn_gen(stats):
        def potential(theta):
            log_prior = -0.5 * jnp.sum((theta / scale) ** 2)
            return -(log_prior + _log_likelihood(dyn, stats, theta, beta, likelihood))

        return potential

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def one(key, actions, states):
        stats = _statistics(dyn, actions, states)
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


def reward_mdp(env, features, theta):
    """``env`` with the reward r_theta = features @ theta (outcome-wise), a new TabularMDP."""
    from pgm_rl.envs import TabularMDP

    mdp = check_env(env)
    dyn = _dynamics(mdp, features)
    theta = np.asarray(_check_theta(theta, dyn.feats.shape[-1]), np.float64)
    rewards = np.asarray(dyn.feats, np.float64) @ theta
    start = mdp.start_probs if mdp.has_random_start else int(mdp.start_state)
    return TabularMDP.from_outcomes(mdp.outcome_states, mdp.outcome_probs, rewards, start)


def simulate(
    key, env, features, theta, horizon, num_demonstrations, beta=1.0, likelihood="trajectory"
):
    """Demonstrations given theta: N draws of the model's likelihood, a dict like ``solve``'s.

    ``"trajectory"``: exact draws of the trajectory posterior of r_theta (:func:`pgm_rl.solve`);
    ``"soft_bellman"``: the soft-Bellman policy of r_theta run in the true dynamics.
    """
    from pgm_rl.exact import soft_bellman, solve

    likelihood = _check_likelihood(likelihood)
    mdp = reward_mdp(env, features, theta)
    if likelihood == "trajectory":
        return solve(mdp, horizon, beta).sample(key, num_demonstrations)
    return soft_bellman(mdp, horizon, beta).sample(key, num_demonstrations)


class Calibration(NamedTuple):
    """Simulation-based calibration of :func:`simulation_based_calibration`.

    ``ranks`` (R, F) int in [0, L]: how many of the L thinned posterior draws fall below the
    true theta; ``num_draws`` L; ``theta`` (R, F) the true values; ``posterior`` (R, L, F) the
    thinned draws; ``divergences`` (R,) per replication; ``p_values`` (F,) of the chi-square
    test of uniform ranks in ``bins`` equal bins; ``seconds`` wall time of the NUTS part.
    """

    ranks: np.ndarray
    num_draws: int
    theta: np.ndarray
    posterior: np.ndarray
    divergences: np.ndarray
    p_values: np.ndarray
    bins: int
    seconds: float


def simulation_based_calibration(
    key,
    env,
    features,
    horizon,
    num_demonstrations,
    num_replications,
    beta=1.0,
    prior_scale=1.0,
    likelihood="trajectory",
    *,
    num_warmup=300,
    thin=5,
    num_draws=99,
    bins=10,
    **nuts_kwargs,
):
    """SBC (Talts et al. 2018) of :func:`reward_model` with NUTS, vectorised over replications.

    Each replication draws theta from the prior, N demonstrations from the likelihood
    (:func:`simulate`), runs one NUTS chain (:func:`sample_batched`, all replications in one
    vmapped program) of ``num_warmup + thin * num_draws`` steps, keeps every ``thin``-th draw
    and ranks the true theta among them. Calibrated inference gives uniform ranks on
    {0, ..., L}; the chi-square test uses ``bins`` equal bins (L + 1 must be divisible by it).

    Parameters
    ----------
    key : PRNG key
    env, features, beta, prior_scale, likelihood
        As in :func:`reward_model`.
    horizon, num_demonstrations, num_replications : int >= 1
        T, N and R.
    num_warmup : int >= 0
    thin, num_draws, bins : int >= 1
        Keep every ``thin``-th of ``thin * num_draws`` draws (L = ``num_draws``); ``bins``
        must divide L + 1.
    **nuts_kwargs
        Passed to :func:`sample_batched`.

    Returns
    -------
    Calibration

    Raises
    ------
    ValueError, TypeError
        For bad arguments (naming them), before any simulation or NUTS run.
    """
    import time

    for name, value in (
        ("num_demonstrations", num_demonstrations),
        ("num_replications", num_replications),
        ("thin", thin),
        ("num_draws", num_draws),
        ("bins", bins),
    ):
        check_positive_int(value, name)
    if isinstance(num_warmup, bool) or not isinstance(num_warmup, numbers.Integral):
        raise TypeError(f"num_warmup must be an int >= 0, got {num_warmup!r}")
    if num_warmup < 0:
        raise ValueError(f"num_warmup must be an int >= 0, got {num_warmup}")
    if (num_draws + 1) % bins:
        raise ValueError(f"num_draws + 1 = {num_draws + 1} must be divisible by bins = {bins}")
    horizon = _check_horizon_arg(horizon)
    likelihood = _check_likelihood(likelihood)
    beta = _check_beta(beta)
    dyn = _dynamics(env, features)
    n_features = dyn.feats.shape[-1]
    _prior_scales(_check_prior_scale(prior_scale), n_features, dyn.probs.dtype)
    key_theta, key_demos, key_nuts = jax.random.split(key, 3)
    scale = np.broadcast_to(np.asarray(prior_scale, np.float64), (n_features,))
    theta = np.asarray(jax.random.normal(key_theta, (num_replications, n_features))) * scale
    demo_keys = jax.random.split(key_demos, num_replications)
    sets = [
        simulate(
            demo_keys[r], env, features, theta[r], horizon, num_demonstrations, beta, likelihood
        )
        for r in range(num_replications)
    ]
    demos = {k: np.stack([np.asarray(d[k]) for d in sets]) for k in ("actions", "states")}
    start = time.perf_counter()
    out = sample_batched(
        key_nuts,
        env,
        features,
        demos,
        beta,
        prior_scale,
        likelihood,
        num_warmup=num_warmup,
        num_samples=thin * num_draws,
        **nuts_kwargs,
    )
    draws = np.asarray(out["theta"])[:, thin - 1 :: thin]  # (R, L, F)
    seconds = time.perf_counter() - start
    ranks = np.sum(draws < theta[:, None, :], axis=1)
    from scipy import stats as scipy_stats

    counts = np.stack(
        [
            np.bincount(ranks[:, f] * bins // (num_draws + 1), minlength=bins)
            for f in range(n_features)
        ]
    )
    p_values = np.array([scipy_stats.chisquare(c).pvalue for c in counts])
    return Calibration(
        ranks=ranks,
        num_draws=num_draws,
        theta=theta,
        posterior=draws,
        divergences=np.asarray(out["diverging"]).sum(axis=1),
        p_values=p_values,
        bins=bins,
        seconds=seconds,
    )
