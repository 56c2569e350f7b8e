"""Fitting a policy by its ELBO (:func:`fit_policy`, :func:`exact_runner`) and what a fit
returns (:class:`FittedPolicy`); see :mod:`pgm_rl.variational`.
"""

import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from jax import lax
from numpyro.infer import SVI, TraceGraph_ELBO

from pgm_rl._checks import (
    check_beta,
    check_fit_memory,
    check_horizon,
    check_key,
    check_positive_int,
)
from pgm_rl.exact import evaluate_policy, solve
from pgm_rl.model import trajectory_model
from pgm_rl.variational.elbo import (
    PolicyGradientELBO,
    _dynamics,
    _euclidean_gradient,
    _natural_gradient,
)
from pgm_rl.variational.guides import PARAM_NAME, PolicyGuide, policy_guide
from pgm_rl.worlds import check_env

__all__ = ["OBJECTIVES", "FittedPolicy", "exact_runner", "fit_policy"]

OBJECTIVES = ("exact", "score")


@dataclass(frozen=True, eq=False)
class FittedPolicy:
    """A fitted variational policy.

    Attributes
    ----------
    log_policy : array, shape (T, S, A)
        log q_t(a | s).
    elbo : float
        Its ELBO, evaluated exactly (``evaluate_policy(env, policy, beta).elbo``).
    elbo_trace : array, shape (num_steps,)
        The ELBO at each step (exact for ``"exact"``; NumPyro's one-sample estimate for
        ``"score"``).
    kl_to_posterior : float or None
        ``log Z - elbo`` = KL(q || exact posterior) with log Z from :func:`~pgm_rl.exact.solve`
        (None where ``solve`` does not apply). On stochastic MDPs this includes the gap that no
        policy can close (the posterior bends the dynamics): compare ``elbo`` with
        ``soft_bellman(...).elbo`` instead.
    svi_state : the final optax state (``"exact"``) or ``numpyro.infer.svi.SVIState``
    params : the final logits
    guide : PolicyGuide
    objective : str
    beta : float
    """

    log_policy: jax.Array
    elbo: float
    elbo_trace: jax.Array
    kl_to_posterior: float | None
    svi_state: object
    params: jax.Array
    guide: PolicyGuide
    objective: str
    beta: float

    @property
    def policy(self):
        """q_t(a | s), shape (T, S, A)."""
        return jnp.exp(self.log_policy)

    def __repr__(self):
        kl = "None" if self.kl_to_posterior is None else f"{self.kl_to_posterior:.4g}"
        return (
            f"FittedPolicy(objective={self.objective!r}, parametrization="
            f"{self.guide.parametrization!r}, steps={len(self.elbo_trace)}, "
            f"elbo={self.elbo:.10g}, kl_to_posterior={kl})"
        )


def fit_policy(
    env,
    horizon,
    beta,
    *,
    parametrization="time-indexed",
    objective="exact",
    num_steps=500,
    optimizer=None,
    key=None,
    features=None,
    natural_gradient=True,
    num_particles=64,
    estimator="rloo",
    progress_bar=False,
):
    """Fit a variational policy to the trajectory posterior (maximise its ELBO).

    Parameters
    ----------
    env : TabularMDP
    horizon : int
    beta : float
    parametrization : {"time-indexed", "stationary", "features"}
    objective : {"exact", "score"}
        ``"exact"``: the analytic ELBO (a differentiable forward pass), optax steps on its
        natural gradient (see the module docstring) or, with ``natural_gradient=False``, on its
        ``jax.grad``. ``"score"``: ``numpyro.infer.SVI`` with ``TraceGraph_ELBO``
        (REINFORCE) on ``trajectory_model`` and :func:`policy_guide`.
    num_steps : int >= 1
    optimizer : optax.GradientTransformation, optional
        Default: ``optax.sgd(1.0)`` on the natural gradient (soft policy iteration; 0.5 for
        ``"stationary"`` and ``"features"``), ``optax.adam(0.1)`` on the Euclidean gradient,
        ``optax.adam(0.05)`` for ``"score"``. (For ``"score"`` an optax transformation is
        wrapped with ``numpyro.optim.optax_to_numpyro``; a ``numpyro.optim`` optimizer is used
        as is.)
    key : jax PRNG key (required for ``"score"``; unused by ``"exact"``)
    features : array (S, F), for ``parametrization="features"``
    natural_gradient : bool, default True (``"exact"`` only)
    num_particles : int, default 64 (``"score"`` only): trajectories per gradient estimate
    estimator : {"rloo", "tracegraph"} (``"score"`` only)
        ``"rloo"``: :class:`PolicyGradientELBO` (reward to go and a leave-one-out baseline);
        ``"tracegraph"``: NumPyro's ``TraceGraph_ELBO`` (unbiased, far noisier here).
    progress_bar : bool, default False (``"score"`` only): NumPyro's SVI progress bar

    Returns
    -------
    FittedPolicy

    Raises
    ------
    ValueError, TypeError
        For an unknown parametrization or objective, ``num_steps`` not a positive int, features
        of the wrong shape; ``FloatingPointError`` when the ELBO becomes NaN (naming the step
        and the last finite ELBO).

    Warns
    -----
    RuntimeWarning
        When the fitted policy's exact ELBO ends below the start (the uniform policy) or far
        below the best the fit reached (more than a tenth of its gain or 1 nat; for
        ``"score"`` beyond the noise of its estimates), naming the optimizer: its step size is
        too large or of the wrong sign.
    """
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    beta = float(check_beta(beta))
    if not isinstance(objective, str) or objective not in OBJECTIVES:
        raise ValueError(
            f"objective must be one of {', '.join(map(repr, OBJECTIVES))}, got {objective!r}"
        )
    num_steps = check_positive_int(num_steps, "num_steps")
    check_fit_memory(mdp, horizon, num_steps, objective, num_particles)  # before allocating
    guide = policy_guide(mdp, horizon, parametrization, features)
    if objective == "exact":
        trace, params, state = _fit_exact(guide, beta, num_steps, optimizer, natural_gradient)
    else:
        if key is None:
            raise ValueError("objective='score' needs key, a jax PRNG key")
        check_key(key)
        num_particles = check_positive_int(num_particles, "num_particles")
        if estimator not in ("rloo", "tracegraph"):
            raise ValueError(f"estimator must be 'rloo' or 'tracegraph', got {estimator!r}")
        trace, params, state = _fit_score(
            guide, beta, num_steps, optimizer, key, num_particles, estimator, bool(progress_bar)
        )
    _check_trace(trace, objective)
    if not np.isfinite(np.asarray(params)).all():
        raise FloatingPointError("the fitted policy logits are not finite (the fit diverged)")
    fitted = _finish(guide, params, trace, state, objective, beta)
    if optimizer is None:
        name = "the default " + _default_optimizer(objective, parametrization, natural_gradient)[1]
    else:
        name = "the optimizer passed (optimizer=...)"
    _warn_if_diverged(fitted, name)
    return fitted


def _check_trace(trace, objective):
    trace = np.asarray(trace)
    bad = ~np.isfinite(trace)
    if bad.any():
        step = int(np.argmax(bad))
        finite = trace[:step][np.isfinite(trace[:step])]
        last = f"{finite[-1]:.10g}" if finite.size else "none"
        raise FloatingPointError(
            f"fit_policy ({objective!r}) diverged: the ELBO is {trace[step]} at step {step} "
            f"(last finite ELBO: {last}); try a smaller step size (optimizer=...)"
        )


def _warn_if_diverged(fitted, optimizer_name):
    """``RuntimeWarning`` when a fit ends below its start or far below the best ELBO it saw.

    The start is the ELBO of the uniform policy (the initial logits), exact; the end is
    ``fitted.elbo``, exact. "Far below the best" means more than a tenth of the gain over the
    start or more than 1 nat (an unstable optimizer) and more than the rounding of the working
    dtype. For ``"score"``, whose trace is a noisy estimate, the best is that of the trace's
    moving mean (window n / 10, at most 50), and both comparisons allow 4 standard errors of
    that mean (the noise of the estimate also jitters the final policy).
    """
    trace = np.asarray(fitted.elbo_trace, np.float64)
    guide, final = fitted.guide, fitted.elbo
    if fitted.objective == "exact":
        start, best, noise = trace[0], max(trace.max(), final), 0.0
    else:
        uniform = np.full((guide.horizon, guide.env.n_states, guide.env.n_actions), 1.0)
        start = float(evaluate_policy(guide.env, uniform / guide.env.n_actions, fitted.beta).elbo)
        window = max(1, min(50, trace.size // 10))
        best = np.convolve(trace, np.ones(window) / window, mode="valid").max()
        spread = np.std(np.diff(trace)) / np.sqrt(2.0) if trace.size > 1 else 0.0
        noise = 4.0 * spread / np.sqrt(window)
    eps = float(np.finfo(np.asarray(fitted.params).dtype).eps)
    tol = np.sqrt(eps) * max(1.0, abs(start), abs(best))
    if final < start - tol - noise:
        what = f"below its start {start:.6g} (the uniform policy)"
    elif best - final > max(min(0.1 * (best - start), 1.0), noise) + tol:
        what = f"far below the best it reached, {best:.6g} (start {start:.6g})"
    else:
        return
    warnings.warn(
        f"fit_policy ({fitted.objective!r}) diverged: its ELBO ended at {final:.6g}, {what}; "
        f"the step size of {optimizer_name} is too large (or of the wrong sign): try a smaller "
        "one (optimizer=...)",
        RuntimeWarning,
        stacklevel=3,
    )


def _default_optimizer(objective, parametrization, natural_gradient):
    """The default optax optimizer of a fit and its name."""
    if objective == "score":
        return optax.adam(0.05), "optax.adam(0.05)"
    if natural_gradient:
        rate = 1.0 if parametrization == "time-indexed" else 0.5
        return optax.sgd(rate), f"optax.sgd({rate})"
    return optax.adam(0.1), "optax.adam(0.1)"


def _finish(guide, params, trace, state, objective, beta):
    log_pi = guide.log_policy(params)
    elbo = float(evaluate_policy(guide.env, np.exp(np.asarray(log_pi, np.float64)), beta).elbo)
    try:
        log_z = float(solve(guide.env, guide.horizon, beta).log_z)
    except (ValueError, MemoryError):
        log_z = None
    return FittedPolicy(
        log_policy=log_pi,
        elbo=elbo,
        elbo_trace=jnp.asarray(trace),
        kl_to_posterior=None if log_z is None else log_z - elbo,
        svi_state=state,
        params=params,
        guide=guide,
        objective=objective,
        beta=beta,
    )


def _fit_exact(guide, beta, num_steps, optimizer, natural_gradient):
    run, params, state = exact_runner(guide, beta, num_steps, optimizer, natural_gradient)
    (params, state), trace = run(params, state)
    return trace, params, state


def exact_runner(guide, beta, num_steps, optimizer=None, natural_gradient=True):
    """The jitted ``run(params, opt_state) -> ((params, opt_state), elbo_trace)`` of the
    ``"exact"`` objective, with the initial params and optimizer state (for benchmarks: call it
    twice to time it without compilation)."""
    if not isinstance(natural_gradient, bool):
        raise TypeError(f"natural_gradient must be a bool, got {natural_gradient!r}")
    if optimizer is None:
        optimizer = _default_optimizer("exact", guide.parametrization, natural_gradient)[0]
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}"
        )
    dyn = _dynamics(guide.env)
    direction = _natural_gradient if natural_gradient else _euclidean_gradient
    parametrization, features, horizon = guide.parametrization, guide.features, guide.horizon

    @jax.jit
    def run(params, opt_state):
        def step(carry, _):
            params, opt_state = carry
            grad, elbo = direction(params, parametrization, features, horizon, dyn, beta)
            updates, opt_state = optimizer.update(grad, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), elbo

        return lax.scan(step, (params, opt_state), None, length=num_steps)

    params = guide.init_params()
    return run, params, optimizer.init(params)


def _fit_score(guide, beta, num_steps, optimizer, key, num_particles, estimator, progress_bar):
    if optimizer is None:
        optimizer = _default_optimizer("score", guide.parametrization, True)[0]
    if isinstance(optimizer, optax.GradientTransformation):
        optimizer = numpyro.optim.optax_to_numpyro(optimizer)
    if not isinstance(optimizer, numpyro.optim._NumPyroOptim):
        raise TypeError(
            "optimizer must be an optax.GradientTransformation or a numpyro.optim optimizer, "
            f"got {type(optimizer).__name__}"
        )
    if estimator == "tracegraph":
        elbo = TraceGraph_ELBO(num_particles=num_particles)
    else:
        elbo = PolicyGradientELBO(num_particles=num_particles)
    svi = SVI(trajectory_model, guide, optimizer, elbo)
    result = svi.run(key, num_steps, guide.env, guide.horizon, beta, progress_bar=progress_bar)
    return -result.losses, result.params[PARAM_NAME], result.state
