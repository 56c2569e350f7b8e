"""Sequential Monte Carlo over trajectories: weighted samples and an estimate of log Z.

Planning as SMC (Piché et al. 2019) in its tabular form: ``N`` particles draw their actions from
the uniform prior (bootstrap proposals), each step multiplies a particle's weight by
``exp(beta * r_t)``, and the particles are resampled (multinomial resampling) whenever the
effective sample size falls below ``ess_threshold * N``. The running product of the mean
incremental weights estimates Z = E_prior[exp(beta * sum of rewards)] without bias.

Standard error of log Z. The relative variance of the Z estimate is estimated from the same
run with the genealogy estimator of Lee and Whiteley (2018), which also holds under adaptive
resampling (Du and Guyader 2021) and assumes multinomial resampling (with systematic
resampling it understated the spread of log Z by up to 1.75x here, so multinomial it is): with ``R`` resampling events, final normalised weights
``W_i`` and Eve indices ``E_i`` (the initial particle each final particle descends from),

    var(Z_hat) / Z_hat^2  ~=  1 - (N / (N - 1)) ** (R + 1) * (1 - sum_e (sum_{i: E_i = e} W_i) ** 2),

and by the delta method ``se(log Z_hat) = sqrt(max(that, 0))``. Without resampling this is the
usual importance-sampling variance ``(N sum W_i^2 - 1) / (N - 1)``. When every particle
descends from one initial particle the estimate saturates at 1: the run is then too small.

Saturation. The estimate is a spread between the surviving Eve lineages, so it is only as good
as their effective number ``k = 1 / sum_e m_e ** 2`` (``m_e``: final weight descending from
initial particle e; ``SMCResult.effective_ancestors``). It is bounded by 1 (reached when one
lineage holds all the weight), so with a few lineages it reports ``se ~ 1`` whatever the true
spread: 2000 particles on a 5x5 grid with a -10 trap (T = 12, beta = 1) gave estimates from
6.4 to 15.3 around an exact 13.65, each with a reported "+- 1", and k between 1.0 and 1.1 in
most runs. Measured over 40 runs each: calibrated problems (3x3 grids and the notebook grid,
T = 5 to 8, 500 particles) have k >= 28; the 5x5 case has k <= 7 even at 20000 particles.
:func:`run_smc` warns (``SMCSaturationWarning``) and sets ``SMCResult.saturated`` when
``k < MIN_ANCESTORS`` (20); then use more particles, or pool independent runs with
:func:`pool_log_z` and judge the spread between them. No genealogy criterion catches a mode
that no particle ever reached (then the weights look healthy and log Z is too low).

A proposal far from the target. A proposal that puts (almost) no mass where the target has
it makes the estimate meaningless while every diagnostic of the weights looks perfect: a
policy fitted at beta = 100 as proposal at beta = 0.001 sends all 2000 particles down one path
with equal weights (ESS 2000, SE 0) and gives log Z = -6.12 against an exact 0.258. The
weights cannot show the mass the particles never reached, but the proposal can be compared
with what each step should have drawn: :func:`run_smc` measures, at every step, what the
particles are worth under the proposal's chi-square divergence from the step's locally
optimal proposal (``SMCResult.proposal_ess``), and warns (``SMCProposalWarning``,
``SMCResult.proposal_mismatch``) below :data:`MIN_PROPOSAL_ESS` (measured: 8 to 190 of 50 to
500 particles for poor random proposals that stay calibrated, 1e-7 and below for the broken
ones, such as the exact posterior at beta = 10 as proposal at beta = 1).

Agreement. :func:`log_z_problems` judges several runs against their SEs: each against an
exact log Z (``|z| > 4``, :func:`z_score`), and the spread between them (a chi-square test at
the same level). Measured over 3000 healthy runs of 500 particles (3x3 grids and the notebook
grid, T = 5 to 8): |z| > 4 in 0.03% of runs, one of 600 groups of five runs warned.

Precision. At large ``beta |r|`` a log weight is a small difference on top of a huge number;
the weights are normalised in the working precision (the largest reward term and the largest
log weight are taken out before exponentiating), so ``logsumexp(log_weights) == 0``, ESS <= N
and ``log_z_se <= 1`` at any beta the overflow check accepts. ``log_z`` itself holds only the
digits its dtype has (``SMCResult.log_z_rounding``, about 900 at beta = 1e17 in float64).

Pooling. The mean of the log Z estimates of independent runs is biased low (Jensen: each
``Z_hat`` is unbiased, so ``E[log Z_hat] <= log Z``); :func:`pool_log_z` averages the Z
estimates instead (log-mean-exp), which is unbiased for Z and consistent for log Z.
"""

import numbers
import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random
from jax.scipy.special import logsumexp

from pgm_rl._checks import (
    check_beta,
    check_horizon,
    check_key,
    check_no_overflow,
    check_particles_fit,
    check_positive_int,
)
from pgm_rl._sampling import multinomial_resample, positive_uniform
from pgm_rl.dynamics import draw_start, follow, rollout
from pgm_rl.model import check_env

__all__ = [
    "MIN_ANCESTORS",
    "MIN_PROPOSAL_ESS",
    "SMCProposalWarning",
    "SMCResult",
    "SMCSaturationWarning",
    "check_proposal",
    "log_z_problems",
    "multinomial_resample",
    "pool_log_z",
    "proposal_values",
    "resample_draws",
    "run_smc",
    "z_score",
]

# Fewer surviving Eve indices than this and the genealogy SE is not trusted (see module doc).
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
    from scipy import stats

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


def run_smc(key, env, horizon, beta, num_particles, ess_threshold=0.5, proposal=None):
    """Run SMC with adaptive resampling on the trajectory posterior.

    Bootstrap proposals (actions from the uniform prior) by default; with ``proposal`` a
    policy q, particles propose a_t ~ q(. | s_t) and carry the incremental weight
    ``prior(a_t) exp(beta r_t) / q(a_t | s_t)``, so the weighted particles and ``log_z`` stay
    exact (unbiased Z) whatever the proposal, as long as it has full support. Outcomes of
    stochastic dynamics are still proposed from the dynamics.

    Twisting. The resampling decisions use intermediate targets twisted by the proposal's own
    soft value ``psi_t(s) = V^q_t(s)`` (:func:`proposal_values`, the ELBO to go of q): step t
    multiplies the weight by ``prior exp(beta r_t) / q * exp(psi_{t+1}(s_{t+1}) - psi_t(s_t))``
    (without the ``psi_0`` term at t = 0). The product over the steps telescopes to the
    untwisted weight (``psi_T = 0``), so the final weights and the Z estimate are those above;
    but a good proposal no longer degenerates: without the twist a particle that moved to a
    good state is penalised for the future reward it has not collected yet (measured on the
    notebook grid, T = 100: the exact posterior as proposal then gave mean TV 0.45 in Particle
    Gibbs; with the twist its weights are all equal).

    Proposal check. The step's locally optimal proposal ``pi_t(a | s)``, proportional to
    ``prior(a) E_{s'}[exp(beta r + psi_{t+1}(s'))]``, makes the twisted increments constant
    (``pi = q`` for the posterior). Drawing from q instead multiplies the variance of the
    weights of the particles at s by ``1 + chi2(pi_t(. | s) || q_t(. | s))``;
    ``proposal_ess`` is N over the largest weighted mean of that factor over the steps. It
    catches a proposal that ignores actions its own soft value says matter (a policy fitted at
    a much larger beta, near-zero entries), not a target mode that q's soft value misses too.

    Parameters
    ----------
    key : jax PRNG key
    env : TabularMDP
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0.
    num_particles : int
        N >= 2.
    ess_threshold : float, default 0.5
        Resample when ESS < ``ess_threshold * N``; in [0, 1] (0 never resamples).
    proposal : array (T, S, A) of probabilities, or an object with ``.log_policy`` (T, S, A), optional
        E.g. a :class:`~pgm_rl.variational.FittedPolicy`, ``soft_bellman(...)`` or
        ``solve(...)``; checked by :func:`check_proposal` (every action must keep a positive
        probability: the uniform prior gives them all one).

    Returns
    -------
    SMCResult

    Raises
    ------
    ValueError
        If the (T + 1, N) particle arrays would not fit in memory, N exceeds int32, or
        ``beta * max |reward|`` or a horizon's total overflows the working dtype.

    Warns
    -----
    SMCSaturationWarning
        When the genealogy SE has saturated (``result.saturated``): too few surviving
        ancestors for ``log_z_se`` to mean anything (see the module docstring).
    SMCProposalWarning
        When the proposal is far from the target (``result.proposal_mismatch``): at some step
        it leaves the particles worth less than :data:`MIN_PROPOSAL_ESS`, so ``log_z`` and
        ``log_z_se`` mean nothing (see the module docstring and ``result.problems()``).
    """
    check_key(key)
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    beta = check_beta(beta)
    num_particles = check_positive_int(num_particles, "num_particles")
    if num_particles < 2:
        raise ValueError(f"num_particles must be an int >= 2, got {num_particles}")
    check_particles_fit(num_particles, horizon)  # int32 indices and memory
    rewards_of = mdp.outcome_rewards if mdp.has_random_dynamics else mdp.reward
    check_no_overflow(rewards_of, horizon, beta)  # beta * reward and log Z in the dtype
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, numbers.Real):
        raise TypeError(f"ess_threshold must be a number in [0, 1], got {ess_threshold!r}")
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be a number in [0, 1], got {ess_threshold}")
    log_proposal = None if proposal is None else check_proposal(proposal, mdp, horizon)
    if mdp.is_deterministic:
        actions, stats = _smc(
            key,
            jnp.asarray(mdp.next_state),
            jnp.asarray(mdp.reward),
            mdp.start_state,
            beta,
            float(ess_threshold),
            horizon,
            num_particles,
            log_proposal,
        )
        states, rewards = rollout(mdp, actions)
    else:
        (states, rewards, actions), stats = _smc_stochastic(
            key, mdp, beta, float(ess_threshold), horizon, num_particles, log_proposal
        )
    result = SMCResult(actions, states, rewards, *stats)
    for category, line in result._problems():
        warnings.warn(f"SMC {line}", category, stacklevel=2)
    return result


@partial(jax.jit, static_argnums=(3, 4, 5))
def _smc_stochastic(key, mdp, beta, ess_threshold, horizon, num_particles, log_proposal=None):
    """:func:`_smc` on a stochastic MDP: bootstrap proposals of the start, the actions and the
    outcomes (drawn from the dynamics with :func:`pgm_rl.dynamics.follow`, one step at a time).
    Returns ``((states, rewards, actions) of the paths, statistics as in _smc)``."""
    n_actions = mdp.n_actions
    start_key, key = random.split(key)
    s0 = draw_start(start_key, mdp, (num_particles,))
    values = mismatch = None
    if log_proposal is not None:
        outcomes = (mdp.outcome_states, mdp.outcome_probs, mdp.outcome_rewards)
        outcomes = tuple(jnp.asarray(array) for array in outcomes)
        values = _proposal_values(log_proposal, *outcomes, beta)
        mismatch = _proposal_mismatch(log_proposal, *outcomes, beta, values)
    reward_dtype = jnp.asarray(mdp.outcome_rewards).dtype
    uniform = jnp.full(num_particles, -jnp.log(num_particles), reward_dtype)

    def forward(carry, inputs):
        states, log_w, log_z, eve, num_resampling = carry
        step_key, t = inputs
        action_key, outcome_key, resample_key = random.split(step_key, 3)
        inflation = _inflation(mismatch, t, states, log_w)
        actions, log_ratio = _propose(action_key, states, t, n_actions, log_proposal)
        actions = actions[:, None]
        noise = positive_uniform(outcome_key, (num_particles, 1), reward_dtype)
        zeros = jnp.zeros((num_particles, 1), jnp.int32)
        path, rewards, _, _ = follow(mdp, states, actions, zeros, noise, jnp.ones(1, bool))
        log_w = log_w + log_ratio
        if values is not None:
            log_w = log_w + twist(values, t, states, path[:, 1])
        carry, ancestors = _adaptive_resample(
            resample_key, log_w, beta * rewards[:, 0], path[:, 1], log_z, eve, num_resampling,
            t < horizon - 1, ess_threshold, uniform,
        )  # fmt: skip
        return carry, (ancestors, path[:, 1], rewards[:, 0], actions[:, 0], inflation)

    start = (s0, uniform, jnp.zeros((), reward_dtype), jnp.arange(num_particles),
             jnp.zeros((), jnp.int32))  # fmt: skip
    inputs = (random.split(key, horizon), jnp.arange(horizon))
    (_, log_w, log_z, eve, num_resampling), (ancestors, entered, rewards, actions, inflation) = (
        lax.scan(forward, start, inputs)
    )

    # ancestors[t] is the resampling after step t; step t's arrays are indexed by the particle
    # that took step t (before that resampling), as in _smc; ``first`` indexes s0.
    def trace_back(index, step_arrays):
        step_ancestors, step_entered, step_rewards, step_actions = step_arrays
        parent = step_ancestors[index]
        return parent, (step_entered[parent], step_rewards[parent], step_actions[parent])

    first, (path_entered, path_rewards, path_actions) = lax.scan(
        trace_back, jnp.arange(num_particles), (ancestors, entered, rewards, actions), reverse=True
    )
    states = jnp.concatenate([s0[first][None], path_entered]).T
    return (states, path_rewards.T, path_actions.T), _smc_statistics(
        log_w, log_z, eve, num_resampling, inflation
    )


def proposal_values(log_q, mdp, beta):
    """The soft value of a proposal policy: ``V^q_t(s)``, shape (T + 1, S), ``V^q_T = 0``.

    ``V^q_t(s) = sum_a q_t(a | s) (E_{s'}[beta r(s, a, s') + V^q_{t+1}(s')] - log q_t(a | s) -
    log A)``, the ELBO to go of q from state s at step t (= log Z to go when q is the
    posterior on a deterministic MDP). ``log_q`` (T, S, A); traceable in ``beta``.
    """
    ns = jnp.asarray(mdp.outcome_states)
    probs = jnp.asarray(mdp.outcome_probs)
    rewards = jnp.asarray(mdp.outcome_rewards)
    return _proposal_values(log_q, ns, probs, rewards, beta)


def _proposal_values(log_q, ns, probs, rewards, beta):
    """:func:`proposal_values` on the (S, A, K) outcome arrays."""
    mean_reward = jnp.sum(probs * rewards, axis=-1)
    log_a = jnp.log(log_q.shape[-1])

    def step(v_next, log_q_t):
        q_value = beta * mean_reward + jnp.sum(probs * v_next[ns], axis=-1)
        v = jnp.sum(jnp.exp(log_q_t) * (q_value - log_q_t - log_a), axis=-1)
        return v, v

    end = jnp.zeros(ns.shape[0], log_q.dtype)
    _, values = lax.scan(step, end, log_q, reverse=True)
    return jnp.concatenate([values, end[None]])


def twist(values, t, here, there):
    """``psi_{t+1}(there) - psi_t(here)`` (no ``psi_0`` at t = 0): the twisted increment."""
    return values[t + 1][there] - jnp.where(t > 0, values[t][here], 0.0)


def _proposal_mismatch(log_q, ns, probs, rewards, beta, values):
    """``log(1 + chi2(pi_t(. | s) || q_t(. | s)))``, shape (T, S): how far the proposal ``log_q``
    (T, S, A) is from the step's locally optimal proposal.

    ``pi_t(a | s)`` is proportional to ``prior(a) E_{s'}[exp(beta r(s, a, s') + psi_{t+1}(s'))]``
    with ``psi = values`` (T + 1, S), the twist: the distribution of the action that makes the
    step's twisted incremental weights constant (``pi = q`` when q is the posterior). Drawing
    the action from q instead multiplies the variance of the incremental weights at state s by
    ``1 + chi2 = sum_a pi(a) ** 2 / q(a)``, so N particles at s are worth about
    ``N / (1 + chi2)`` (``ns``, ``probs``, ``rewards``: the (S, A, K) outcome arrays).
    """
    reach = logsumexp(beta * rewards + values[1:][:, ns], b=probs, axis=-1)  # (T, S, A)
    log_pi = reach - logsumexp(reach, axis=-1, keepdims=True)
    return logsumexp(2.0 * log_pi - log_q, axis=-1)


def _inflation(mismatch, t, states, log_w):
    """``log sum_i W_i (1 + chi2_t(s_i))``: the factor by which the proposal's step t inflates
    the variance of the normalised weights ``log_w`` (N,) of the particles in ``states`` (N,)
    (see :func:`_proposal_mismatch`); 0 for bootstrap proposals (``mismatch=None``)."""
    if mismatch is None:
        return jnp.zeros((), log_w.dtype)
    return logsumexp(log_w + mismatch[t][states])


def _propose(key, states, t, n_actions, log_proposal):
    """Actions (N,) int32 for particles in ``states`` (N,) at step t, and the log importance
    ratio prior / proposal of each (0 for bootstrap proposals, ``log_proposal=None``)."""
    if log_proposal is None:
        actions = random.randint(key, states.shape, 0, n_actions, jnp.int32)
        return actions, jnp.zeros(states.shape)
    log_q = log_proposal[t][states]  # (N, A)
    actions = random.categorical(key, log_q).astype(jnp.int32)
    log_q_taken = jnp.take_along_axis(log_q, actions[:, None], axis=-1)[:, 0]
    return actions, -jnp.log(n_actions) - log_q_taken


def check_proposal(proposal, mdp, horizon):
    """The log-probabilities (T, S, A) of a proposal policy, checked; else a clear error.

    ``proposal``: a (T, S, A) array of probabilities (rows summing to 1 within 1e-6, no NaN,
    no zero: the uniform prior gives every action positive probability, and a proposal that
    never draws one would make the importance weights miss part of the posterior), or an
    object with a ``log_policy`` (T, S, A) attribute (a ``FittedPolicy``,
    ``SoftBellmanPolicy`` or ``ExactPosterior``), whose entries must be finite.

    Raises
    ------
    TypeError
        For a non-numeric proposal.
    ValueError
        For the wrong shape, NaN, negative or zero probabilities, rows not summing to 1.
    """
    if hasattr(proposal, "log_policy"):
        log_q = np.asarray(proposal.log_policy, np.float64)
        what = "proposal.log_policy"
    else:
        try:
            array = np.asarray(proposal)
        except (TypeError, ValueError):
            raise TypeError(
                "proposal must be a (T, S, A) array of probabilities or have a .log_policy"
            ) from None
        if array.dtype.kind not in "iuf":
            raise TypeError(
                f"proposal must be a (T, S, A) array of probabilities, got dtype {array.dtype}"
            )
        array = array.astype(np.float64)
        what = "proposal"
        log_q = None
    expected = (horizon, mdp.n_states, mdp.n_actions)
    shape = (log_q if log_q is not None else array).shape
    if shape != expected:
        raise ValueError(f"{what} must have shape (T, S, A) = {expected}, got {shape}")
    if log_q is None:
        if np.isnan(array).any() or (array < 0).any() or not np.isfinite(array).all():
            raise ValueError("proposal must hold probabilities (no NaN, inf or negative entries)")
        zero = array == 0.0
        if zero.any():
            t, s_, a = (int(i) for i in np.argwhere(zero)[0])
            raise ValueError(
                f"proposal must give every action a positive probability (the prior does): "
                f"proposal[{t}, {s_}, {a}] = 0 (step {t}, state {s_}, action {a})"
            )
        sums = array.sum(axis=-1)
        wrong = np.abs(sums - 1.0) > 1e-6
        if wrong.any():
            t, s_ = (int(i) for i in np.argwhere(wrong)[0])
            raise ValueError(
                f"proposal rows must sum to 1 (tolerance 1e-6): proposal[{t}, {s_}] sums to "
                f"{sums[t, s_]!r}"
            )
        log_q = np.log(array / sums[..., None])
    else:
        bad = ~np.isfinite(log_q)
        if bad.any():
            t, s_, a = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{what} must be finite (a proposal needs full support, as the prior has): "
                f"entry [{t}, {s_}, {a}] is {log_q[t, s_, a]!r}"
            )
        norm = np.logaddexp.reduce(log_q, axis=-1)
        if np.abs(norm).max() > 1e-6:
            raise ValueError(f"{what} must be normalised (logsumexp over actions = 0)")
        log_q = log_q - norm[..., None]
    return jnp.asarray(log_q, jnp.asarray(0.0).dtype)


def _smc_statistics(log_w, log_z, eve, num_resampling, inflation):
    """``(log_w, log_z, se, ess, num_resampling, num_ancestors, effective_ancestors,
    proposal_ess)`` of the final normalised log weights ``log_w`` (N,), Eve indices ``eve``
    (N,) and the proposal's per-step log weight inflation ``inflation`` (T,) (see
    :func:`_inflation`; zeros for bootstrap proposals).

    The weights are renormalised once more (their sum is 1 to working precision already), so
    ``ess`` lies in [1, N], ``effective_ancestors`` in [1, N] and the relative variance in
    [0, 1] (``se <= 1``) whatever the scale of the log weights.
    """
    num_particles = log_w.shape[0]
    log_w = log_w - logsumexp(log_w)
    weights = jnp.exp(log_w)
    eve_mass = jax.ops.segment_sum(weights, eve, num_segments=num_particles)
    ancestor_square = jnp.clip(jnp.sum(eve_mass**2), 1.0 / num_particles, 1.0)
    growth = (num_particles / (num_particles - 1.0)) ** (num_resampling + 1)
    # with k surviving Eves sum(eve_mass ** 2) >= 1 / k: the largest rel_var is then reached
    rel_var = jnp.clip(1.0 - growth * (1.0 - ancestor_square), 0.0, 1.0)
    ess = 1.0 / jnp.clip(jnp.sum(weights**2), 1.0 / num_particles, 1.0)
    return (
        log_w,
        log_z,
        jnp.sqrt(rel_var),
        ess,
        num_resampling,
        jnp.sum(eve_mass > 0),
        1.0 / ancestor_square,
        num_particles * jnp.exp(-jnp.max(inflation)),
    )


@partial(jax.jit, static_argnums=(6, 7))
def _smc(
    key,
    next_state,
    reward,
    start_state,
    beta,
    ess_threshold,
    horizon,
    num_particles,
    log_proposal=None,
):
    n_actions = next_state.shape[1]
    uniform = jnp.full(num_particles, -jnp.log(num_particles), reward.dtype)
    values = mismatch = None
    if log_proposal is not None:
        outcomes = (next_state[..., None], jnp.ones_like(reward)[..., None], reward[..., None])
        values = _proposal_values(log_proposal, *outcomes, beta)
        mismatch = _proposal_mismatch(log_proposal, *outcomes, beta, values)

    def forward(carry, inputs):
        states, log_w, log_z, eve, num_resampling = carry
        step_key, t = inputs
        action_key, resample_key = random.split(step_key)
        inflation = _inflation(mismatch, t, states, log_w)
        actions, log_ratio = _propose(action_key, states, t, n_actions, log_proposal)
        log_w = log_w + log_ratio
        entered = next_state[states, actions]
        if values is not None:
            log_w = log_w + twist(values, t, states, entered)
        carry, ancestors = _adaptive_resample(
            resample_key, log_w, beta * reward[states, actions], entered, log_z, eve,
            num_resampling, t < horizon - 1, ess_threshold, uniform,
        )  # fmt: skip
        return carry, (ancestors, actions, inflation)

    start = (
        jnp.full(num_particles, start_state, next_state.dtype),
        uniform,
        jnp.zeros((), reward.dtype),
        jnp.arange(num_particles),
        jnp.zeros((), jnp.int32),
    )
    inputs = (random.split(key, horizon), jnp.arange(horizon))
    (_, log_w, log_z, eve, num_resampling), (ancestors, actions, inflation) = lax.scan(
        forward, start, inputs
    )

    def trace_back(index, step_arrays):
        step_ancestors, step_actions = step_arrays
        parent = step_ancestors[index]
        return parent, step_actions[parent]

    _, paths = lax.scan(trace_back, jnp.arange(num_particles), (ancestors, actions), reverse=True)
    return paths.T, _smc_statistics(log_w, log_z, eve, num_resampling, inflation)


def _adaptive_resample(key, log_w, reward_term, states, log_z, eve, num_resampling,
                       may_resample, ess_threshold, uniform):  # fmt: skip
    """One SMC step's bookkeeping, shared by the deterministic and the stochastic forward pass.

    Adds the step's ``reward_term`` (N,) (``beta * r``) to the log weights ``log_w`` (N,) (which
    already hold the step's other increments), normalises them in the working precision and adds
    their log sum to ``log_z``; when ``may_resample`` and the ESS falls below
    ``ess_threshold * N``, resamples multinomially (weights reset to ``uniform``). Returns the
    new carry ``(states, log_w, log_z, eve, num_resampling)`` and the ancestor indices (N,).

    Precision: at large ``beta * |r|`` a log weight is a small number plus a huge one, and
    ``log_w - logsumexp(log_w)`` would lose the small part (the weights then summed to e^6.6 at
    beta = 1e17). So the largest reward term is split off first (equal rewards then leave the
    weights exactly as they were), then the largest log weight, each added to ``log_z`` on its
    own; what is left has a logsumexp in [0, log N], and ``logsumexp(log_w) == 0`` to working
    precision.
    """
    num_particles = log_w.shape[0]
    top_reward = jnp.max(reward_term)
    log_w = log_w + (reward_term - top_reward)
    top = jnp.max(log_w)
    log_w = log_w - top
    rest = logsumexp(log_w)
    log_w = log_w - rest
    ess = 1.0 / jnp.sum(jnp.exp(2.0 * log_w))
    resample = (ess < ess_threshold * num_particles) & may_resample
    ancestors = jnp.where(
        resample,
        multinomial_resample(key, log_w, num_particles),
        jnp.arange(num_particles),
    )
    carry = (
        states[ancestors],
        jnp.where(resample, uniform, log_w),
        log_z + top_reward + (top + rest),
        eve[ancestors],
        num_resampling + resample,
    )
    return carry, ancestors
