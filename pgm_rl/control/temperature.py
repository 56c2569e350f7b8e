"""Choosing the inverse temperature of MPPI from the sample budget: :func:`choose_beta`.

The question MPPI users ask most (the temperature lambda = 1 / beta, and the noise sigma) has
two halves. Which posterior is wanted is a modelling choice: beta trades reward against the
prior (the action cost), and no sampler statistic can make it. Whether a given number of
samples can *represent* the posterior at a given beta is a statistical question, and it has an
answer: the effective sample size of the importance weights. As beta grows the weights
``prior / q * exp(beta R_i)`` concentrate on the best few draws, the ESS falls towards 1, the
MPPI control becomes the single best draw (random search), and the log Z estimate and its
standard error stop meaning anything (they are within 3 SE of the exact value only where the
ESS is large, measured on the linear-quadratic double integrator: see the README).

:func:`choose_beta` answers the second half: the largest beta at which ``num_samples`` draws
from the proposal still have ``ESS >= target_ess``. It draws the samples once; for fixed draws
``ESS(beta) = (sum_i c_i e^{beta R_i})^2 / sum_i c_i^2 e^{2 beta R_i}`` is non-increasing in
beta >= 0 (its log-derivative is ``2 (E_beta[R] - E_{2 beta}[R]) <= 0``, the weighted mean
return growing with beta), so bisection on log beta finds the crossing exactly for these draws.
The recipe, in words: pick the largest sample budget you can afford per control step, the
smallest ESS you will trust (100 gives a log Z within about 0.1 and a control whose Monte Carlo
error is a tenth of the posterior spread), and use a beta no larger than the one returned; if
that beta is too small for the task, the budget (or the proposal: a shifted plan, adapted
iterations) must grow, not the temperature.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import logsumexp

from pgm_rl._checks import check_beta
from pgm_rl.control._importance import (
    check_common,
    check_plan,
    check_sample_count,
    finite_rewards,
)
from pgm_rl.control.mppi import _weigh

__all__ = ["BetaChoice", "choose_beta"]

_weigh_jit = jax.jit(_weigh, static_argnums=5)


class BetaChoice(NamedTuple):
    """The answer of :func:`choose_beta`.

    Attributes
    ----------
    beta : float
        The largest beta in ``beta_range`` whose ESS is >= ``target_ess`` (the lower end of the
        range when even it falls short: see ``status``).
    ess, log_z, log_z_se : float
        The MPPI statistics of the same draws at ``beta``.
    status : str
        ``"found"`` (the crossing lies inside the range), ``"upper"`` (the ESS stays above the
        target up to the upper end: any beta in the range is fine for this budget) or
        ``"lower"`` (already below the target at the lower end: more samples or a better
        proposal are needed).
    grid : dict of arrays
        ``"beta"``, ``"ess"``, ``"log_z"``, ``"log_z_se"`` on 25 log-spaced betas across the
        range: the ESS curve, to show where the sampler collapses.
    """

    beta: float
    ess: float
    log_z: float
    log_z_se: float
    status: str
    grid: dict


def choose_beta(
    problem,
    horizon,
    num_samples,
    key,
    target_ess=100.0,
    beta_range=(1e-3, 1e3),
    init=None,
    scale=None,
):
    """The largest beta at which ``num_samples`` MPPI draws keep ``ESS >= target_ess``.

    Draws ``num_samples`` trajectories once from the MPPI proposal ``N(init, scale^2)`` (as
    :func:`pgm_rl.control.mppi` with ``iterations=1`` and the same key), then bisects on
    ``log beta`` (60 halvings: to machine precision) for the crossing of the ESS, which is
    monotone in beta for fixed draws (see the module docstring). What it answers: how
    reward-seeking a posterior this budget can represent, not which beta the task needs.

    Parameters
    ----------
    problem : ControlProblem
    horizon : int
        T >= 1.
    num_samples : int
        The budget N >= 2 of one MPPI call.
    key : jax PRNG key
    target_ess : float, default 100
        In [1, N].
    beta_range : (float, float), default (1e-3, 1e3)
        ``0 < low < high``.
    init, scale : array_like, optional
        The proposal, as in :func:`pgm_rl.control.mppi` (default the prior).

    Returns
    -------
    BetaChoice

    Raises
    ------
    ValueError
        Bad arguments (naming them); sampled rewards that are not finite.
    """
    horizon, _ = check_common(problem, horizon, 0.0, key)
    num_samples = check_sample_count(num_samples, "num_samples")
    if isinstance(target_ess, bool) or not isinstance(target_ess, (int, float)):
        raise TypeError(f"target_ess must be a number in [1, num_samples], got {target_ess!r}")
    if not 1.0 <= target_ess <= num_samples:
        raise ValueError(
            f"target_ess must be in [1, num_samples = {num_samples}], got {target_ess}"
        )
    try:
        low, high = (check_beta(value) for value in beta_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"beta_range must be two numbers 0 < low < high, got {beta_range!r}"
        ) from None
    if not 0.0 < low < high:
        raise ValueError(f"beta_range must be two numbers 0 < low < high, got {beta_range!r}")
    dtype = jnp.asarray(problem.x0).dtype
    du = problem.action_dim
    mean = check_plan(0.0 if init is None else init, horizon, du, "init", dtype)
    scale = check_plan(problem.action_scale if scale is None else scale, horizon, du, "scale",
                       dtype, positive=True)  # fmt: skip
    draw_key = jax.random.split(key, 1)[0]  # mppi's key of its (only) iteration: same draws
    draws, base = _weigh_jit(problem, draw_key, 0.0, mean, scale,
                                                    num_samples)  # fmt: skip
    finite_rewards(draws["rewards"], "choose_beta")
    # the bisection and the grid on the host, in float64 (60 + 25 small sums: no dispatch cost)
    returns = np.asarray(draws["rewards"], np.float64).sum(axis=1)
    base = np.asarray(base, np.float64)

    def log_ess(beta):
        log_w = base + beta * returns
        return 2.0 * logsumexp(log_w) - logsumexp(2.0 * log_w)

    log_target = math.log(target_ess)
    if float(log_ess(high)) >= log_target:
        beta, status = high, "upper"
    elif float(log_ess(low)) < log_target:
        beta, status = low, "lower"
    else:
        lo, hi = math.log(low), math.log(high)
        for _ in range(60):
            middle = 0.5 * (lo + hi)
            if float(log_ess(math.exp(middle))) >= log_target:
                lo = middle
            else:
                hi = middle
        beta, status = math.exp(lo), "found"
    grid_betas = np.geomspace(low, high, 25)
    stats = np.array([_statistics(base + b * returns) for b in grid_betas])  # (25, 3)
    log_z, ess, se = _statistics(base + beta * returns)
    grid = {"beta": grid_betas, "log_z": stats[:, 0], "ess": stats[:, 1],
            "log_z_se": stats[:, 2]}  # fmt: skip
    return BetaChoice(float(beta), float(ess), float(log_z), float(se), status, grid)


def _statistics(log_w):
    """``(log_z, ess, log_z_se)`` of unnormalised log weights (NumPy, N,), as
    :func:`pgm_rl.control._importance.weight_statistics`."""
    n = log_w.shape[0]
    total = logsumexp(log_w)
    square = min(max(float(np.sum(np.exp(2.0 * (log_w - total)))), 1.0 / n), 1.0)
    se = math.sqrt(max((n * square - 1.0) / (n - 1.0), 0.0))
    return float(total - math.log(n)), 1.0 / square, se
