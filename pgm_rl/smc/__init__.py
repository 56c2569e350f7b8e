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

Modules: :mod:`pgm_rl.smc.run` (:func:`run_smc`, its forward pass), :mod:`pgm_rl.smc.result`
(:class:`SMCResult`, the warnings, :func:`log_z_problems`, :func:`z_score`,
:func:`pool_log_z`, :func:`resample_draws`), :mod:`pgm_rl.smc.proposals` (proposing actions,
the proposal mismatch). The proposal check, the proposal's soft value and the twist are shared
with particle Gibbs in :mod:`pgm_rl.particles`.
"""

from pgm_rl.particles import check_proposal, multinomial_resample, proposal_values, twist
from pgm_rl.smc.result import (
    MIN_ANCESTORS,
    MIN_PROPOSAL_ESS,
    SMCProposalWarning,
    SMCResult,
    SMCSaturationWarning,
    log_z_problems,
    pool_log_z,
    resample_draws,
    z_score,
)
from pgm_rl.smc.run import run_smc

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
    "twist",
    "z_score",
]
