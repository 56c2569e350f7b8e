"""What an SMC run returns and how runs are judged: :class:`SMCResult`, its warnings, the
agreement of several runs (:func:`log_z_problems`, :func:`z_score`) and their pooling
(:func:`pool_log_z`); :func:`resample_draws` for weighted draws (see :mod:`pgm_rl.smc`)."""

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pgm_rl._checks import check_key, check_positive_int
from pgm_rl.particles import multinomial_resample

__all__ = [
    "MIN_ANCESTORS",
    "MIN_PROPOSAL_ESS",
    "SMCProposalWarning",
    "SMCResult",
    "SMCSaturationWarning",
    "log_z_problems",
    "pool_log_z",
    "resample_draws",
    "z_score",
]

# Fewer surviving Eve indices than this and the genealogy SE is not trusted (see :mod:`pgm_rl.smc`).
MIN_ANCESTORS = 20
# A proposal that leaves the particles worth less than this at some step is far from the target
# (``SMCResult.proposal_ess``; see run_smc).
MIN_PROPOSAL_ESS = 1.0


class SMCSaturationWarning(UserWarning):
    """The genealogy estimate of the standard error of log Z has saturated (see ``run_smc``)."""


class SMCProposalWarning(UserWarning):
    """The proposal puts (almost) no mass where the target has it (``SMCResult.proposal_mismatch``):
    the estimate of log Z and its standard error mean nothing (see ``run_smc``)."""


class SMCResult(NamedTuple):
    """Weighted trajectories and the evidence estimate of one SMC run.

    Attributes
    ----------
    actions : int array, shape (N, T)
    states : int array, shape (N, T + 1)
    rewards : float array, shape (N, T)
    log_weights : float array, shape (N,)
        Normalised: ``logsumexp(log_weights) == 0``.
    log_z : float scalar
        Estimate of log Z = log E_prior[exp(beta * sum of rewards)].
    log_z_se : float scalar
        Standard error of ``log_z`` (genealogy estimator, see the module docstring).
    ess : float scalar
        Effective sample size of the final weights, ``1 / sum(W_i ** 2)``.
    num_resampling : int scalar
        How many times the particles were resampled.
    num_ancestors : int scalar
        How many distinct initial particles (Eve indices) the final particles descend from.
    effective_ancestors : float scalar
        The effective number of surviving Eve lineages, ``1 / sum_e m_e ** 2`` with ``m_e``
        the final weight descending from initial particle e (equal to ``ess`` without
        resampling). Below :data:`MIN_ANCESTORS` the run is :attr:`saturated`.
    proposal_ess : float scalar
        What the N particles are worth at the proposal's worst step: ``N / max_t sum_i W_i
        (1 + chi2_t(s_i))``, with ``chi2_t(s)`` the chi-square divergence of the step's
        locally optimal proposal from the proposal at the particle's state (see
        :func:`run_smc`); N for bootstrap proposals. Below :data:`MIN_PROPOSAL_ESS` the run
        has a :attr:`proposal_mismatch`.
    """

    actions: jax.Array
    states: jax.Array
    rewards: jax.Array
    log_weights: jax.Array
    log_z: jax.Array
    log_z_se: jax.Array
    ess: jax.Array
    num_resampling: jax.Array
    num_ancestors: jax.Array
    effective_ancestors: jax.Array
    proposal_ess: jax.Array

    @property
    def saturated(self):
        """True when ``log_z_se`` is not to be trusted: fewer than :data:`MIN_ANCESTORS`
        effective surviving Eve lineages (see the module docstring)."""
        return bool(float(self.effective_ancestors) < MIN_ANCESTORS)

    @property
    def proposal_mismatch(self):
        """True when the proposal puts (almost) no mass where the target has it: at some step
        the particles are worth less than :data:`MIN_PROPOSAL_ESS` (``proposal_ess``), so
        ``log_z`` and ``log_z_se`` mean nothing (all weights may even be equal, SE 0)."""
        return bool(float(self.proposal_ess) < MIN_PROPOSAL_ESS)

    @property
    def log_z_rounding(self):
        """The rounding error of ``log_z`` in its dtype: ``eps * (T + 1) * max(|log_z|, 1)``
        (T + 1 sums of terms up to ``|log_z|``); beyond ``log_z_se`` at large ``beta |r|``."""
        eps = float(jnp.finfo(jnp.asarray(self.log_z).dtype).eps)
        return eps * (self.actions.shape[1] + 1) * max(abs(float(self.log_z)), 1.0)

    @property
    def log_z_tolerance(self):
        """``sqrt(log_z_se ** 2 + log_z_rounding ** 2)``: what a z-score divides by."""
        return float(np.hypot(float(self.log_z_se), self.log_z_rounding))

    def problems(self):
        """What makes this run's ``log_z`` or ``log_z_se`` untrustworthy, one line each.

        Returns
        -------
        list of str
            Empty for a healthy run; else lines for :attr:`proposal_mismatch` and
            :attr:`saturated`. Runs that disagree with each other or with an exact log Z
            are judged by :func:`log_z_problems`.
        """
        return [line for _, line in self._problems()]

    def _problems(self):
        """``[(warning category, line)]`` behind :meth:`problems`."""
        found = []
        n = self.log_weights.shape[0]
        if self.proposal_mismatch:
            found.append(
                (
                    SMCProposalWarning,
                    "proposal far from the target: it draws (almost) none of the actions the "
                    f"target weighs, so at its worst step the {n} particles are worth "
                    f"{float(self.proposal_ess):.3g} (less than {MIN_PROPOSAL_ESS:g}) and log Z = "
                    f"{float(self.log_z):.8g} and its SE {float(self.log_z_se):.3g} mean nothing; "
                    "use a proposal fitted at this beta, or none (bootstrap)",
                )
            )
        if self.saturated:
            found.append(
                (
                    SMCSaturationWarning,
                    f"genealogy saturated: the final weight of the {n} particles descends from "
                    f"{float(self.effective_ancestors):.1f} effective initial particles "
                    f"({int(self.num_ancestors)} distinct; fewer than {MIN_ANCESTORS} effective), "
                    f"so log_z_se = {float(self.log_z_se):.3g} is unreliable (too few surviving "
                    "ancestors) and log Z may be far off; use more particles, or pool independent "
                    "runs with pgm_rl.smc.pool_log_z and judge the spread between them",
                )
            )
        return found

    def resample(self, key, n):
        """``n`` equally weighted trajectories drawn from the weighted particles.

        Multinomial resampling (with replacement, probabilities ``exp(log_weights)``).

        Parameters
        ----------
        key : jax PRNG key
        n : int
            Number of draws.

        Returns
        -------
        dict
            ``"actions"`` (n, T) int, ``"states"`` (n, T + 1) int, ``"rewards"`` (n, T).
        """
        draws = {"actions": self.actions, "states": self.states, "rewards": self.rewards}
        return resample_draws(key, draws, self.log_weights, n)


def resample_draws(key, draws, log_weights, n):
    """Multinomial resampling of weighted draws: ``n`` equally weighted draws.

    Parameters
    ----------
    key : jax PRNG key
    draws : dict of arrays
        Each of shape (N, ...) (e.g. ``"actions"`` (N, T), ``"states"`` (N, T + 1)).
    log_weights : float array, shape (N,)
        Unnormalised log weights; at least one finite.
    n : int
        Number of draws.

    Returns
    -------
    dict
        The same keys, each of shape (n, ...).
    """
    check_key(key)
    n = check_positive_int(n, "n")
    log_weights = jnp.asarray(log_weights)
    if log_weights.ndim != 1:
        raise ValueError(f"log_weights must have shape (N,), got {log_weights.shape}")
    if jnp.isnan(log_weights).any() or not jnp.isfinite(jnp.max(log_weights)):
        raise ValueError("log_weights must have no NaN and at least one finite entry")
    for name, values in draws.items():
        if jnp.shape(values)[:1] != log_weights.shape:
            raise ValueError(
                f"draws[{name!r}] must have {log_weights.shape[0]} rows (one per weight), got "
                f"shape {jnp.shape(values)}"
            )
    index = multinomial_resample(key, log_weights, n)
    return {name: jnp.asarray(values)[index] for name, values in draws.items()}


def pool_log_z(results_or_log_z):
    """Pool the log Z estimates of independent SMC runs: log of the mean of the Z estimates.

    ``log(mean_k exp(log_z_k))`` (log-mean-exp). Each run's ``Z_hat`` is unbiased for Z, so
    their mean is too, with the variance divided by the number of runs. The mean of the
    ``log_z`` values is *not* a good pooled estimate: it is biased low (Jensen's inequality,
    ``E[log Z_hat] <= log Z``), and the bias does not shrink with more runs.

    Parameters
    ----------
    results_or_log_z : sequence of SMCResult, or array-like of float, shape (K,)
        K >= 1 runs.

    Returns
    -------
    float
    """
    values = [
        float(item.log_z) if isinstance(item, SMCResult) else item for item in results_or_log_z
    ]
    try:
        log_z = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            "results_or_log_z must be a sequence of SMCResult or of log Z floats"
        ) from None
    if log_z.ndim != 1 or log_z.size == 0:
        raise ValueError(f"results_or_log_z must hold K >= 1 runs, got shape {log_z.shape}")
    if not np.isfinite(log_z).all():
        raise ValueError("results_or_log_z must be finite log Z estimates")
    top = log_z.max()
    return float(top + np.log(np.mean(np.exp(log_z - top))))


def log_z_problems(results, exact_log_z=None, threshold=4.0):
    """Do the log Z estimates of independent SMC runs agree with each other and with the exact
    log Z within their standard errors? One line per problem found.

    Each run's error is its :attr:`SMCResult.log_z_tolerance` (the SE, widened by rounding).
    Against ``exact_log_z``: a run with ``|z| > threshold`` is wrong beyond its SE. Between
    runs (K >= 2): ``Q = sum_k (log_z_k - m) ** 2 / se_k ** 2`` with ``m`` the SE-weighted
    mean, chi-square with K - 1 degrees of freedom when the SEs are right; a p-value below
    that of ``|z| > threshold`` for one normal (6.3e-5 at 4) is a problem (its line names the
    two runs furthest apart, in SEs). Both catch SEs that are far too small: a saturated
    genealogy, or particles that never reached a mode (then the runs can even agree with
    each other, and only the exact log Z tells).

    Parameters
    ----------
    results : sequence of SMCResult
        K >= 1 runs of the same problem.
    exact_log_z : float, optional
    threshold : float, default 4.0
        In standard errors, > 0.

    Returns
    -------
    list of str
        Empty when they agree.
    """
    from scipy import stats  # lazy: it takes longer to import than all of pgm_rl.smc

    results = list(results)
    if not results or not all(hasattr(r, "log_z_tolerance") for r in results):
        raise TypeError("results must be a non-empty sequence of SMCResult")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or threshold <= 0:
        raise ValueError(f"threshold must be a number > 0 (standard errors), got {threshold!r}")
    log_z = np.array([float(r.log_z) for r in results])
    se = np.array([r.log_z_tolerance for r in results])
    if not (np.isfinite(log_z).all() and np.isfinite(se).all()):
        raise ValueError("results must hold finite log Z estimates and standard errors")
    found = []
    if exact_log_z is not None:
        z = np.array([z_score(r, exact_log_z) for r in results])
        far = np.flatnonzero(np.abs(z) > threshold)
        if far.size:
            worst = far[np.argmax(np.abs(z[far]))]
            found.append(
                f"{_runs(far)} more than {threshold:g} standard errors from the exact log Z = "
                f"{exact_log_z:.8g} (worst: run {worst}, log Z = {log_z[worst]:.8g}, z = "
                f"{_z_text(z[worst])}): the SE is far too small for the error (a part of the "
                "target the particles never reached, or a saturated genealogy); use more "
                "particles or a better proposal"
            )
    if len(results) > 1:
        weight = 1.0 / se**2
        mean = np.sum(weight * log_z) / np.sum(weight)
        q = float(np.sum(weight * (log_z - mean) ** 2))
        p = float(stats.chi2.sf(q, len(results) - 1))
        if p < 2.0 * stats.norm.sf(threshold):
            gap = np.abs(log_z[:, None] - log_z[None, :]) / np.hypot(se[:, None], se[None, :])
            i, j = np.unravel_index(np.argmax(gap), gap.shape)
            found.append(
                f"the {len(results)} runs disagree beyond their standard errors (chi-square "
                f"{q:.3g} on {len(results) - 1} degrees of freedom, p = {p:.2g}; runs {min(i, j)} "
                f"and {max(i, j)} differ by {gap[i, j]:.3g} SE): the SEs are far too small; "
                "use more particles and judge the spread between runs, not the SE"
            )
    return found


def z_score(result, exact_log_z):
    """How many standard errors a run's ``log_z`` lies from the exact log Z.

    ``(log_z - exact_log_z) / sqrt(log_z_tolerance ** 2 + rounding ** 2)``, with the exact
    value's rounding counted as the run's (:attr:`SMCResult.log_z_rounding`), so that runs at
    large ``beta |r|`` are not judged by digits the dtype does not hold.

    Parameters
    ----------
    result : SMCResult
    exact_log_z : float

    Returns
    -------
    float
    """
    exact_log_z = float(exact_log_z)
    if not np.isfinite(exact_log_z):
        raise ValueError(f"exact_log_z must be a finite float, got {exact_log_z}")
    eps = float(jnp.finfo(jnp.asarray(result.log_z).dtype).eps)
    rounding = eps * (result.actions.shape[1] + 1) * max(abs(exact_log_z), 1.0)
    return (float(result.log_z) - exact_log_z) / float(np.hypot(result.log_z_tolerance, rounding))


def _runs(index):
    """``"run 3 is"`` or ``"runs 0, 2 are"``."""
    if index.size == 1:
        return f"run {index[0]} is"
    return f"runs {', '.join(str(i) for i in index)} are"


def _z_text(z):
    """A z-score: 2 decimals, or 3 significant digits when huge."""
    return f"{z:+.2f}" if abs(z) < 1e5 else f"{z:+.3g}"
