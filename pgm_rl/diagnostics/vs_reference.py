"""How far a run is from its model's reference, against what a correct run of its size shows.

:func:`compare_to_reference` compares with the exact posterior (:func:`compare_to_exact`) or
with an importance-sampling reference (:func:`pgm_rl.diagnostics.reference`), whose own noise
(its ESS) widens every threshold.
"""

import math
from statistics import NormalDist

import jax
import numpy as np
import xarray as xr
from scipy.special import xlogy

from pgm_rl._checks import check_key
from pgm_rl.control import GaussianPosterior
from pgm_rl.diagnostics.continuous import compare_to_gaussian
from pgm_rl.diagnostics.convergence import where_label
from pgm_rl.diagnostics.datatree import trajectory_states, tree_group
from pgm_rl.diagnostics.marginals import empirical_state_marginals, tv_distance
from pgm_rl.diagnostics.reference import Reference
from pgm_rl.diagnostics.vs_exact import (
    REFERENCE_REPLICATES,
    REFERENCE_Z,
    compare_to_exact,
    return_statistics,
    run_sizes,
)
from pgm_rl.exact import ExactPosterior

__all__ = ["EXACT_REFERENCE", "MIN_REFERENCE_ESS", "compare_to_reference", "has_reference"]

# Below this Kish ESS an importance-sampling reference is too noisy to judge a run by: its
# marginals have standard errors up to 0.05 and the ESS itself is unreliable (weights whose
# tail the draws have not seen).
MIN_REFERENCE_ESS = 100
# What compare_to_reference's attrs["reference"] says of the exact posterior.
EXACT_REFERENCE = "the exact posterior"


def has_reference(dt):
    """Whether the tree holds a reference: a ``reference`` or an ``exact`` group."""
    return isinstance(dt, xr.DataTree) and ("reference" in dt.children or "exact" in dt.children)


def compare_to_reference(
    dt, reference=None, *, key=None, replicates=REFERENCE_REPLICATES, min_ess=MIN_REFERENCE_ESS
):
    """Distance of the sampled trajectories to the model's reference, and whether it is too large.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.
    reference : Reference, ExactPosterior or GaussianPosterior, optional
        Defaults to the tree's ``reference`` group (a model with extra terms), else its
        ``exact`` group (:func:`to_datatree` stores one of them by default). A
        :class:`pgm_rl.control.GaussianPosterior` (``solve_lq``) compares a continuous run
        (:func:`control_datatree`) with :func:`compare_to_gaussian`.
    key : jax PRNG key, optional
        Key of the replicates behind the thresholds; default ``jax.random.key(0)``.
    replicates : int, default 32
    min_ess : float, default 100
        An importance-sampling reference with a smaller ESS does not judge the run
        (``judged`` False, and ``attrs["not_judged"]`` says so in one line).

    Returns
    -------
    xarray.Dataset or GaussianComparison
        Against a Gaussian posterior: :func:`compare_to_gaussian`'s GaussianComparison.
        Against the exact posterior: :func:`compare_to_exact`'s Dataset, with
        ``attrs["reference"]`` = ``"the exact posterior"``. Against importance sampling the
        same variables (``exact_expected_return`` is ``reference_expected_return``) plus
        ``reference_expected_return_se``, ``reference_ess``, ``reference_state_marginals``
        (step, state) and ``judged``; ``attrs["reference"]`` names it with its ESS.

    Notes
    -----
    Against importance sampling the reference's marginal p_ref of an indicator has its own
    variance, so the difference has the run's variance plus the reference's:
    ``p (1 - p) (1 / n_run + 1 / n_ref)``. ``n_run`` are the run's effective sizes of
    :func:`compare_to_exact`; ``n_ref``, per indicator, the smaller of Kish's ESS and the
    delta method's ``p (1 - p) / se^2``. Then, with the same 4-sd family-wise rule:

    - per indicator: the signed root of the two-sample binomial likelihood-ratio statistic
      (sampled frequency at n_run against the reference's at n_ref; it is the one-sample
      statistic of :func:`compare_to_exact` as n_ref grows, and stays finite where the
      reference saw no draw), Bonferroni over the tested indicators;
    - TV: replicates of both frequencies, binomial at n_run and at n_ref around their pooled
      value, give the expected TV and its spread; thresholds E + 4 sd as for exact;
    - return: the error's sd is ``sqrt(sd_R^2 / n_ret + se_ref^2)`` (sd_R the reference's
      weighted sd of the return, se_ref its standard error, n_ret the run's bulk ESS), and the
      threshold the mean + 4 sd of its absolute value (Gaussian: ``sd (sqrt(2/pi) + 4
      sqrt(1 - 2/pi))``), the rule of :func:`compare_to_exact` in closed form.
    """
    if isinstance(replicates, bool) or not isinstance(replicates, int) or replicates < 2:
        raise ValueError(f"replicates must be an int >= 2, got {replicates!r}")
    if isinstance(min_ess, bool) or not isinstance(min_ess, int | float) or not min_ess >= 1:
        raise ValueError(f"min_ess must be a number >= 1, got {min_ess!r}")
    posterior = tree_group(dt, "posterior")
    if reference is None:
        if "reference" in dt.children:
            data = dt["reference"].to_dataset()
        elif "exact" in dt.children:
            return _exact(compare_to_exact(dt, key=key, replicates=replicates))
        else:
            raise ValueError(
                "dt holds no reference (neither a 'reference' nor an 'exact' group): build it "
                "from the MCMC run with pgm_rl.diagnostics.to_datatree(mcmc, env) (reference="
                "True, the default), or pass reference=pgm_rl.diagnostics.reference(model, ...)"
            )
    elif isinstance(reference, ExactPosterior):
        return _exact(compare_to_exact(dt, reference, key=key, replicates=replicates))
    elif isinstance(reference, GaussianPosterior):  # a continuous run (pgm_rl.control)
        return compare_to_gaussian(dt, reference)
    elif isinstance(reference, Reference):
        if reference.kind == "exact":
            return _exact(compare_to_exact(dt, reference.posterior, key=key, replicates=replicates))
        data = reference.to_dataset()
    else:
        raise TypeError(
            "reference must be a pgm_rl.diagnostics.Reference, a pgm_rl.ExactPosterior or a "
            "pgm_rl.control.GaussianPosterior, got "
            f"{type(reference).__name__}"
        )
    key = jax.random.key(0) if key is None else check_key(key)
    n_states = tree_group(dt, "constant_data").sizes["state"]
    horizon = int(dt.attrs["horizon"])
    if data["state_marginals"].shape != (horizon + 1, n_states):
        raise ValueError(
            f"the reference has state marginals of shape {data['state_marginals'].shape}; dt "
            f"has horizon={horizon} with {n_states} states ({(horizon + 1, n_states)})"
        )
    return _importance(dt, posterior, data, n_states, key, replicates, float(min_ess))


def _exact(comparison):
    comparison.attrs["reference"] = EXACT_REFERENCE
    return comparison


def _importance(dt, posterior, data, n_states, key, replicates, min_ess):
    ref_ess, num_ref = float(data["ess"]), int(data["num_samples"])
    marginals = data["state_marginals"].values.astype(float)
    ref_return = float(data["expected_return"])
    ref_return_se = float(data["expected_return_se"])
    what = f"the importance-sampling reference (ESS {ref_ess:.0f} of {num_ref})"

    states = trajectory_states(dt).values
    sampled = empirical_state_marginals(states, n_states)
    tv = tv_distance(sampled, marginals)
    sampled_return = float(posterior["return"].mean())
    mcse, ess, max_r_hat, max_at = return_statistics(dt)
    sizes, n_tv, n_ret = run_sizes(states, n_states, sampled, ess)
    error = sampled_return - ref_return
    result = {
        "tv": ("step", tv),
        "mean_tv": float(tv.mean()),
        "max_tv": float(tv.max()),
        "expected_return": sampled_return,
        "reference_expected_return": ref_return,
        "reference_expected_return_se": ref_return_se,
        "reference_ess": ref_ess,
        "reference_state_marginals": (("step", "state"), marginals),
        "expected_return_error": error,
        "expected_return_mcse": mcse,
        "ess_bulk": ess,
        "max_r_hat": max_r_hat,
        "occupancy_ess": (("step", "state"), sizes),
        "n_ref_tv": n_tv,
        "n_ref_return": n_ret,
    }
    coords = {"step": np.arange(tv.shape[0]), "state": np.arange(n_states)}
    attrs = {"max_r_hat_at": max_at, "reference": what, "replicates": replicates}
    if not ref_ess >= min_ess:
        attrs["not_judged"] = (
            f"not judged against {what}: its ESS is below {min_ess:g}, too small to tell a "
            "wrong run from the reference's own noise (the model's terms pull the target far "
            "from its Markov part); draw more reference samples (to_datatree's "
            "reference_samples) or compare runs of two different kernels"
        )
        return xr.Dataset(
            {**result, "judged": False, "disagrees": False}, coords=coords, attrs=attrs
        )

    se = data["state_marginals_se"].values.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = np.where(se > 0, marginals * (1.0 - marginals) / se**2, np.inf)
    ref_sizes = np.clip(np.minimum(delta, ref_ess), 1.0, None)
    pooled = (sizes * sampled + ref_sizes * marginals) / (sizes + ref_sizes)
    z, tested = _two_sample_z(sampled, sizes, marginals, ref_sizes, pooled)
    alpha = 2.0 * NormalDist().cdf(-REFERENCE_Z)
    z_threshold = NormalDist().inv_cdf(1.0 - alpha / (2.0 * max(int(tested.sum()), 1)))
    mean_tv_threshold, step_thresholds = _tv_thresholds(pooled, sizes, ref_sizes, key, replicates)
    sd = math.sqrt(float(data["return_sd"]) ** 2 / n_ret + ref_return_se**2)
    return_threshold = sd * (
        math.sqrt(2.0 / math.pi) + REFERENCE_Z * math.sqrt(1.0 - 2.0 / math.pi)
    )
    max_z = float(np.abs(z).max())
    z_at = np.unravel_index(int(np.argmax(np.abs(z))), z.shape)
    disagrees = bool(
        tv.mean() > mean_tv_threshold
        or tv.max() > step_thresholds.max()
        or abs(error) > return_threshold
        or max_z > z_threshold
    )
    attrs.update(
        max_occupancy_z_at=where_label(dt, *z_at) if tested.any() else "",
        reference_z=REFERENCE_Z,
    )
    result.update(
        occupancy_z=(("step", "state"), z),
        max_occupancy_z=max_z,
        occupancy_z_threshold=z_threshold,
        tv_threshold=mean_tv_threshold,
        max_tv_threshold=float(step_thresholds.max()),
        return_error_threshold=return_threshold,
        judged=True,
        disagrees=disagrees,
    )
    return xr.Dataset(result, coords=coords, attrs=attrs)


def _two_sample_z(sampled, sizes, marginals, ref_sizes, pooled):
    """Signed root of the two-sample binomial likelihood-ratio statistic of each occupancy
    frequency (steps 1..T) against the reference's: (T + 1, S) z and the tested mask (the
    pooled frequency in (0, 1))."""

    def deviance(p, n):
        q = 1.0 - p
        with np.errstate(divide="ignore", invalid="ignore"):
            return n * (xlogy(p, p) - xlogy(p, pooled) + xlogy(q, q) - xlogy(q, 1.0 - pooled))

    tested = (pooled > 0) & (pooled < 1)
    tested[0] = False
    statistic = np.maximum(2.0 * (deviance(sampled, sizes) + deviance(marginals, ref_sizes)), 0.0)
    z = np.sign(sampled - marginals) * np.sqrt(np.where(tested, statistic, 0.0))
    return np.where(tested, z, 0.0), tested


def _tv_thresholds(pooled, sizes, ref_sizes, key, replicates):
    """Thresholds of the mean TV and of each step's TV: replicates of the run's and the
    reference's frequencies, binomial at their effective sizes around the pooled frequency;
    E + REFERENCE_Z * (sum of the per-indicator sds)."""
    p = np.clip(pooled, 0.0, 1.0)
    run_key, ref_key = jax.random.split(key)
    draws = []
    for part_key, n in ((run_key, sizes), (ref_key, ref_sizes)):
        n = np.maximum(np.round(np.minimum(n, 2.0**40)), 1.0)
        counts = jax.random.binomial(part_key, n, p, shape=(replicates, *p.shape))
        draws.append(np.asarray(counts, dtype=float) / n)
    errors = np.abs(draws[0] - draws[1])
    errors[:, 0] = 0.0  # the start is fixed
    expected = 0.5 * errors.mean(axis=0).sum(axis=-1)
    spread = 0.5 * errors.std(axis=0, ddof=1).sum(axis=-1)
    steps = expected + REFERENCE_Z * spread
    return float(expected.mean() + REFERENCE_Z * spread.mean()), steps
