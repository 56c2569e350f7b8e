"""How far a run is from the exact posterior, against what a correct run of its size shows.

:func:`compare_to_exact`: TV distances of the state marginals, the expected return, and one
test per occupancy indicator, each with a threshold from the run's own effective sizes.
"""

import warnings
from statistics import NormalDist

import arviz_stats as azs
import jax
import numpy as np
import xarray as xr
from arviz_stats.base import array_stats

from pgm_rl._checks import check_key
from pgm_rl.diagnostics.convergence import end_indicators, where_label, worst_occupancy
from pgm_rl.diagnostics.datatree import (
    SAMPLE_DIMS,
    env_from_datatree,
    trajectory_states,
    tree_group,
)
from pgm_rl.diagnostics.marginals import (
    empirical_state_marginals,
    tv_distance,
    varying_indicators,
)
from pgm_rl.exact import ExactPosterior, solve

__all__ = [
    "MIN_REFERENCE_DRAWS",
    "MIN_VISITS",
    "REFERENCE_REPLICATES",
    "REFERENCE_Z",
    "compare_to_exact",
]

# Reference replicates for compare_to_exact: how many, and how many sd above their mean.
REFERENCE_REPLICATES = 32
REFERENCE_Z = 4.0
MIN_REFERENCE_DRAWS = 20
# An occupancy indicator's own ESS is trusted from this many visits (runs of its rarer value).
MIN_VISITS = 50


# ----------------------------------------------------------------------------- against exact


def compare_to_exact(dt, exact=None, *, key=None, replicates=REFERENCE_REPLICATES):
    """Distance of the sampled trajectories to the exact posterior, and whether it is too large.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.
    exact : ExactPosterior, optional
        Defaults to the tree's ``exact`` group; the thresholds need the exact sampler, so the
        :class:`ExactPosterior` is then rebuilt with ``pgm_rl.solve(env_from_datatree(dt),
        horizon, beta)`` (and checked against the group).
    key : jax PRNG key, optional
        Key of the reference draws; default ``jax.random.key(0)`` (same tree, same answer).
    replicates : int, default 32
        Number R of reference replicates.

    Returns
    -------
    xarray.Dataset
        ``tv`` (step = 0..T): TV distance of the empirical state marginals at each step;
        ``mean_tv``: its mean over the T + 1 steps; ``max_tv``; ``expected_return``,
        ``exact_expected_return``, ``expected_return_error`` (sampled - exact) and
        ``expected_return_mcse`` (MCSE of the sampled mean, arviz-stats); ``ess_bulk`` of the
        return; ``max_r_hat``, the largest R-hat of the return, the ``end`` indicators and
        every varying occupancy indicator (NaN ones skipped; where it occurs is in
        ``attrs["max_r_hat_at"]``, as in :func:`summary`);
        ``occupancy_ess`` (step, state): the effective size of each occupancy indicator
        ``1[states[t] == s]`` (below); ``occupancy_z`` (step, state): its signed deviation
        from the exact marginal in standard units (0 where not tested); ``max_occupancy_z``
        (the largest ``|occupancy_z|``, where it occurs in ``attrs["max_occupancy_z_at"]``)
        and ``occupancy_z_threshold``;
        ``n_ref_tv`` (the iid sample size with the run's expected TV, a summary of
        ``occupancy_ess``), ``n_ref_return`` (the bulk ESS of the return, as used below);
        ``tv_threshold``, ``max_tv_threshold``, ``return_error_threshold`` and ``disagrees``
        (bool): ``mean_tv > tv_threshold`` or ``max_tv > max_tv_threshold`` or
        ``|expected_return_error| > return_error_threshold`` or ``max_occupancy_z >
        occupancy_z_threshold``.

    Notes
    -----
    Every test asks what a correct run with the run's own *effective* sizes would show, so a
    correct but autocorrelated MCMC run is not flagged, and each is set to a family-wise
    false-alarm rate of about ``2 * Phi(-4)`` = 6e-5 (``REFERENCE_Z`` = 4 sd).

    - Effective sizes: each occupancy indicator (steps 1..T) gets its own bulk ESS
      (arviz-stats), clipped to [``min(20, draws)``, draws], where that estimate is reliable:
      the run visits the cell (or leaves it) at least 50 separate times. Others (a cell seen
      in a few runs of draws, or never) get at most the smallest reliable effective size of
      their step (of the run if the step has none; all draws if nothing varies): an ESS
      estimated from two visits can be the number of draws on a chain that repeats every
      draw ten times (measured: 24% false alarms over 50 such runs without this). A kernel mixes
      some cells far more slowly than others (e.g. the choice of route around a trap), and
      the TV is dominated by the slowest ones: one effective size for every cell would be too
      strict for a correct run.
    - Per indicator: the signed root of the binomial likelihood-ratio statistic of the sampled
      frequency against the exact marginal at its effective size (accurate in the tails for
      rare cells, where the Gaussian z is not); ``occupancy_z_threshold`` is the Bonferroni
      quantile over the K tested indicators, valid whatever their correlation. A cell the run
      visits but the posterior cannot (or the reverse) gives an infinite z.
    - TV: ``replicates`` binomial draws per indicator at its effective size (``key``) give
      the expected ``E_t`` and the spread of each ``|p_hat - p|``; the thresholds are
      ``E + 4 sd`` where the sd is the sum of the per-indicator sds (the sd of a sum of
      errors correlated in any way, e.g. one slow mode moving every step together, is at most
      that). ``max_tv_threshold`` is the largest per-step threshold.
    - Return: ``replicates`` sets of ``n_ref_return`` exact iid trajectories give the spread of
      the absolute return error; threshold = mean + 4 sd.

    The effective sizes are capped at the number of draws and floored at ``min(20, draws)``:
    ESS estimates of a few units are themselves unreliable, and a run is never excused below
    the accuracy of 20 iid draws. Chains stuck on different routes make the ESS small and so
    the thresholds wide; they are caught by R-hat (:func:`problems`) rather than here. Chains
    that all sit in one part of the posterior mix well there: their effective sizes are large
    and the missing part is flagged here.
    """
    posterior = tree_group(dt, "posterior")
    n_states = tree_group(dt, "constant_data").sizes["state"]
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 2:
        raise ValueError(f"replicates must be an int >= 2, got {replicates!r}")
    key = jax.random.key(0) if key is None else check_key(key)
    exact = _reference_posterior(dt, exact, n_states)
    marginals = np.asarray(exact.state_marginals, dtype=float)
    exact_return = float(exact.expected_return)

    states = trajectory_states(dt).values
    sampled = empirical_state_marginals(states, n_states)
    tv = tv_distance(sampled, marginals)
    sampled_return = float(posterior["return"].mean())
    mcse, ess, max_r_hat, max_at = return_statistics(dt)

    sizes, n_tv, n_ret = run_sizes(states, n_states, sampled, ess)
    z, tested = _occupancy_z(sampled, marginals, sizes)
    alpha = 2.0 * NormalDist().cdf(-REFERENCE_Z)
    z_threshold = NormalDist().inv_cdf(1.0 - alpha / (2.0 * max(int(tested.sum()), 1)))
    tv_key, return_key = jax.random.split(key)
    mean_tv_threshold, step_thresholds = _tv_thresholds(marginals, sizes, tv_key, replicates)
    errors = _reference_return_errors(exact, return_key, replicates, n_ret, exact_return)
    return_threshold = float(errors.mean() + REFERENCE_Z * errors.std(ddof=1))
    error = sampled_return - exact_return
    max_z = float(np.abs(z).max())
    z_at = np.unravel_index(int(np.argmax(np.abs(z))), z.shape)
    disagrees = bool(
        tv.mean() > mean_tv_threshold
        or tv.max() > step_thresholds.max()
        or abs(error) > return_threshold
        or max_z > z_threshold
    )
    return xr.Dataset(
        {
            "tv": ("step", tv),
            "mean_tv": float(tv.mean()),
            "max_tv": float(tv.max()),
            "expected_return": sampled_return,
            "exact_expected_return": exact_return,
            "expected_return_error": error,
            "expected_return_mcse": mcse,
            "ess_bulk": ess,
            "max_r_hat": max_r_hat,
            "occupancy_ess": (("step", "state"), sizes),
            "occupancy_z": (("step", "state"), z),
            "max_occupancy_z": max_z,
            "occupancy_z_threshold": z_threshold,
            "n_ref_tv": n_tv,
            "n_ref_return": n_ret,
            "tv_threshold": mean_tv_threshold,
            "max_tv_threshold": float(step_thresholds.max()),
            "return_error_threshold": return_threshold,
            "disagrees": disagrees,
        },
        coords={"step": np.arange(tv.shape[0]), "state": np.arange(n_states)},
        attrs={
            "max_r_hat_at": max_at,
            "max_occupancy_z_at": where_label(dt, *z_at) if tested.any() else "",
            "replicates": replicates,
            "reference_z": REFERENCE_Z,
        },
    )


def return_statistics(dt):
    """MCSE and bulk ESS of the run's mean return (arviz-stats), and the largest R-hat of the
    return, the ``end`` indicators and the occupancy indicators with where it occurs."""
    returns = tree_group(dt, "posterior")["return"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mcse = float(azs.mcse(returns, sample_dims=SAMPLE_DIMS, method="mean"))
        ess = float(azs.ess(returns, sample_dims=SAMPLE_DIMS, method="bulk"))
        rhat = end_indicators(dt).azstats.rhat(sample_dims=SAMPLE_DIMS)
    r_hats = {name: float(value) for name, value in rhat.data_vars.items()}
    worst = worst_occupancy(dt)
    if worst is not None:
        r_hats[where_label(dt, worst[1], worst[2])] = worst[0]
    finite = {name: value for name, value in r_hats.items() if np.isfinite(value)}
    max_at = max(finite, key=finite.get) if finite else ""
    max_r_hat = finite[max_at] if finite else float("nan")
    return mcse, ess, max_r_hat, max_at


def _reference_posterior(dt, exact, n_states):
    horizon, beta = int(dt.attrs["horizon"]), float(dt.attrs["beta"])
    if exact is not None:
        if not isinstance(exact, ExactPosterior):
            raise TypeError(f"exact must be a pgm_rl.ExactPosterior, got {type(exact).__name__}")
        if exact.horizon != horizon or exact.mdp.n_states != n_states:
            raise ValueError(
                f"exact is for horizon={exact.horizon} with {exact.mdp.n_states} states; dt has "
                f"horizon={horizon} with {n_states} states"
            )
        return exact
    group = tree_group(dt, "exact")
    exact = solve(env_from_datatree(dt), horizon, beta)
    if not np.allclose(exact.state_marginals, group["state_marginals"].values, atol=1e-6):
        raise ValueError(
            "dt's exact group does not match the exact posterior of its own environment; pass "
            "exact explicitly"
        )
    return exact


def run_sizes(states, n_states, sampled, ess):
    """The run's effective sizes (see :func:`compare_to_exact`): per occupancy indicator
    (T + 1, S), the TV-equivalent one ``n_tv`` and the return's ``n_ret`` (from its bulk
    ``ess``), each in [``min(20, draws)``, draws]."""
    num_draws = states.shape[0] * states.shape[1]
    floor = min(MIN_REFERENCE_DRAWS, num_draws)
    raw_ess, visits = _occupancy_ess(states, n_states)
    sizes = _effective_sizes(raw_ess, visits, floor, num_draws)
    varying_sizes = np.where(np.isfinite(raw_ess), sizes, np.nan)
    n_tv = int(max(min(_tv_equivalent_ess(varying_sizes, sampled, num_draws), num_draws), floor))
    n_ret = int(max(min(ess if np.isfinite(ess) else floor, num_draws), floor))
    return sizes, n_tv, n_ret


def _occupancy_ess(states, n_states):
    """Bulk ESS of each occupancy indicator, (T + 1, S), NaN where it does not vary, and the
    number of visits (runs of the rarer value, 0 or 1, within the chains), (T + 1, S)."""
    indicators, (steps, cells) = varying_indicators(states, n_states)
    ess = np.full((states.shape[-1], n_states), np.nan)
    visits = np.zeros((states.shape[-1], n_states))
    if steps.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # bulk ESS of a 0/1 variable = ESS of its mean (rank normalisation is affine on it)
            ess[steps, cells] = array_stats.ess(
                indicators, chain_axis=1, draw_axis=2, method="mean"
            )
        changes = np.abs(np.diff(indicators, axis=2)).sum(axis=(1, 2))
        ones = (indicators[..., 0] + indicators[..., -1]).sum(axis=1)
        zeros = 2 * indicators.shape[1] - ones
        visits[steps, cells] = (changes + np.minimum(ones, zeros)) / 2
    return ess, visits


def _effective_sizes(raw_ess, visits, floor, num_draws):
    """Per-indicator effective sizes (see compare_to_exact): the clipped ESS where it is
    reliable (at least ``MIN_VISITS`` visits), else at most the smallest reliable one of the
    step, else of the run, else the number of draws."""
    sizes = np.clip(raw_ess, floor, num_draws)  # NaN stays NaN
    reliable = np.isfinite(sizes) & (visits >= MIN_VISITS)
    trusted = np.where(reliable, sizes, np.nan)
    run_min = float(trusted[reliable].min()) if reliable.any() else float(num_draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # steps with no reliable indicator
        step_min = np.nanmin(trusted, axis=1, keepdims=True)
    cap = np.where(np.isfinite(step_min), step_min, run_min)
    return np.where(reliable, sizes, np.fmin(sizes, cap))


def _tv_equivalent_ess(raw_ess, sampled, num_draws):
    """The iid sample size whose expected TV matches the run's (see compare_to_exact)."""
    varying = np.isfinite(raw_ess)
    varying[0] = False
    if not varying.any():
        return num_draws
    p = sampled[varying]
    weight = np.sqrt(p * (1.0 - p))
    ess = np.clip(raw_ess[varying], 1.0, num_draws)
    return float((weight.sum() / (weight / np.sqrt(ess)).sum()) ** 2)


def _occupancy_z(sampled, marginals, sizes):
    """Signed root of the binomial likelihood-ratio statistic of each occupancy frequency
    (steps 1..T) against the exact marginal at its effective size: (T + 1, S) z and the
    (T + 1, S) mask of tested indicators (exact marginal in (0, 1), or a sampled one that
    differs from it)."""
    p = np.clip(marginals, 0.0, 1.0)
    tested = ((p > 0) & (p < 1)) | (sampled != p)
    tested[0] = False
    with np.errstate(divide="ignore", invalid="ignore"):
        ones = np.where(sampled > 0, sampled * np.log(sampled / p), 0.0)
        zeros = np.where(sampled < 1, (1 - sampled) * np.log((1 - sampled) / (1 - p)), 0.0)
    statistic = np.maximum(2.0 * sizes * (ones + zeros), 0.0)
    z = np.sign(sampled - p) * np.sqrt(statistic)
    return np.where(tested, z, 0.0), tested


def _tv_thresholds(marginals, sizes, key, replicates):
    """Thresholds of the mean TV and of each step's TV: binomial replicates of every
    occupancy frequency at its effective size; E + REFERENCE_Z * (sum of the per-indicator
    sds), the largest sd of a sum of arbitrarily correlated errors."""
    p = np.clip(marginals, 0.0, 1.0)
    n = np.maximum(np.round(sizes), 1.0)
    counts = jax.random.binomial(key, n, p, shape=(replicates, *p.shape))
    errors = np.abs(np.asarray(counts, dtype=float) / n - p)
    errors[:, 0] = 0.0  # the start is fixed
    expected = 0.5 * errors.mean(axis=0).sum(axis=-1)  # (T + 1,)
    spread = 0.5 * errors.std(axis=0, ddof=1).sum(axis=-1)
    steps = expected + REFERENCE_Z * spread
    return float(expected.mean() + REFERENCE_Z * spread.mean()), steps


def _reference_return_errors(exact, key, replicates, n_ret, exact_return):
    """|mean return - exact| of ``replicates`` sets of ``n_ret`` exact iid draws, (R,).

    Each set is the first ``n_ret`` of a power-of-two number of draws: one compiled sampler
    per size class instead of one per ESS value."""
    bucket = 1 << (n_ret - 1).bit_length()
    out = []
    for replicate_key in jax.random.split(key, replicates):
        draws = exact.sample(replicate_key, bucket)
        returns = np.asarray(draws["rewards"])[:n_ret].sum(axis=-1)
        out.append(abs(returns.mean() - exact_return))
    return np.asarray(out)
