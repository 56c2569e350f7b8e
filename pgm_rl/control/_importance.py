"""What the continuous samplers share: the action prior, drawing the dynamics noise, the
argument checks, and the statistics of a set of importance weights.

Private to :mod:`pgm_rl.control` (:mod:`~pgm_rl.control.mppi`, :mod:`~pgm_rl.control.smc`,
:mod:`~pgm_rl.control.temperature`, :mod:`~pgm_rl.control.mpc`).
"""

import math
import numbers

import jax.numpy as jnp
import numpy as np
from jax import random
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from pgm_rl._checks import check_beta, check_horizon, check_key, check_positive_int

__all__ = [
    "check_common",
    "check_plan",
    "check_sample_count",
    "draw_noise",
    "finite_rewards",
    "log_prior",
    "weight_statistics",
]


def log_prior(problem, actions):
    """``log N(actions; 0, action_scale^2)`` summed over the last two axes (T, du).

    Parameters
    ----------
    problem : ControlProblem
    actions : float array, shape (..., T, du)

    Returns
    -------
    float array, shape (...)
    """
    return norm.logpdf(actions, 0.0, problem.action_scale).sum(axis=(-2, -1))


def draw_noise(problem, key, shape):
    """The dynamics noise ``w ~ N(0, diag(noise_scale^2))`` of shape ``shape + (dx,)``, or None
    for deterministic dynamics (``problem.noise_scale is None``)."""
    if not problem.is_stochastic:
        return None
    eps = random.normal(key, (*shape, problem.state_dim), jnp.asarray(problem.x0).dtype)
    return problem.noise_scale * eps


def weight_statistics(log_w):
    """Normalised log weights, log Z, ESS and the standard error of log Z of one set of
    importance weights.

    ``log_z = logsumexp(log_w) - log N`` (the log of the unbiased estimate of Z); with
    normalised weights ``W``, ``ess = 1 / sum W^2`` and by the delta method
    ``se(log Z) = sqrt((N sum W^2 - 1) / (N - 1))`` (the relative standard error of the Z
    estimate, about ``sqrt(1 / ess - 1 / N)``).

    Parameters
    ----------
    log_w : float array, shape (N,)

    Returns
    -------
    tuple
        ``(log_w - logsumexp(log_w) (N,), log_z, ess, log_z_se)``, scalars after the first.
    """
    n = log_w.shape[0]
    total = logsumexp(log_w)
    normalised = log_w - total
    square = jnp.clip(jnp.sum(jnp.exp(2.0 * normalised)), 1.0 / n, 1.0)
    se = jnp.sqrt(jnp.clip((n * square - 1.0) / (n - 1.0), 0.0, None))
    return normalised, total - math.log(n), 1.0 / square, se


def finite_rewards(rewards, what):
    """Raise ``ValueError`` when some sampled ``rewards`` (N, T) are not finite.

    The message names the first sample and step: the dynamics or the reward returned NaN or
    inf there (e.g. an unstable system driven by a wide proposal), so the weights would be
    meaningless.
    """
    finite = np.isfinite(np.asarray(rewards))
    if not finite.all():
        i, t = (int(v) for v in np.argwhere(~finite)[0])
        raise ValueError(
            f"{what}: the reward of step {t} of sample {i} is not finite "
            f"({int((~finite).any(axis=1).sum())} of {finite.shape[0]} sampled trajectories "
            "have a NaN or inf reward): the dynamics or the reward overflowed for those actions; "
            "use a smaller action_scale, a shorter horizon or a better-behaved problem"
        )


def check_common(problem, horizon, beta, key):
    """The checked ``(horizon, beta)`` of a sampler call (``key`` checked too)."""
    if not hasattr(problem, "rollout") or not hasattr(problem, "action_scale"):
        raise TypeError(
            f"problem must be a pgm_rl.control.ControlProblem, got {type(problem).__name__}"
        )
    check_key(key)
    return check_horizon(horizon), check_beta(beta)


def check_sample_count(value, name, minimum=2):
    """``value`` as an int >= ``minimum``, else an error naming ``name``."""
    value = check_positive_int(value, name)
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    return value


def check_plan(plan, horizon, action_dim, name, dtype, positive=False):
    """``plan`` as a (T, du) array of ``dtype``: a scalar or a (du,) array is broadcast over
    the steps; else ``ValueError`` naming ``name`` (wrong shape, NaN or inf, and with
    ``positive`` entries <= 0)."""
    if isinstance(plan, (bool, np.bool_)) or not (
        isinstance(plan, numbers.Real) or hasattr(plan, "shape") or isinstance(plan, (list, tuple))
    ):
        raise TypeError(f"{name} must be a (T, du) array of numbers, got {type(plan).__name__}")
    array = np.asarray(plan)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a (T, du) array of numbers, got dtype {array.dtype}")
    shape = (horizon, action_dim)
    try:
        array = np.broadcast_to(array, shape)
    except ValueError:
        raise ValueError(
            f"{name} must have shape (T, du) = {shape} (or (du,), or be a scalar), got "
            f"{array.shape}"
        ) from None
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    if positive and (array <= 0).any():
        raise ValueError(f"{name} must be > 0, got a minimum of {array.min()}")
    return jnp.asarray(array, dtype)
