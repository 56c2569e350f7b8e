"""Continuous control runs as ArviZ DataTrees, and their distance to an exact Gaussian posterior.

:func:`control_datatree` converts a NumPyro ``MCMC`` run of
:func:`pgm_rl.control.control_model`, a dict of draws, or weighted draws (an
:class:`~pgm_rl.control.MPPIResult`, a :class:`~pgm_rl.control.ControlSMCResult`) into a tree:

``posterior``
    ``actions`` (chain, draw, time, action_dim), ``states`` (chain, draw, step, state_dim) with
    ``step`` = 1..T (the states entered; the start is the root attribute ``x0``, as the discrete
    layout keeps its start state out), ``rewards`` (chain, draw, time), ``return`` (chain,
    draw) and, on a stochastic problem, ``noise`` (chain, draw, time, state_dim).
``sample_stats``
    the MCMC run's extra fields (``diverging``, ``accept_prob`` as ``acceptance_rate``).

Root attributes: ``horizon``, ``beta`` (when known), ``x0``, ``sampler``, ``kind`` =
``"control"`` and, for resampled weighted draws, ``importance_ess`` (the ESS of the weights:
:func:`compare_to_gaussian` counts the draws as that many, not as the n copies).

:func:`compare_to_gaussian` judges such a tree against a
:class:`~pgm_rl.control.GaussianPosterior` (:func:`pgm_rl.control.solve_lq`).
"""

from typing import NamedTuple

import jax
import numpy as np
from arviz_base import from_dict
from arviz_stats.base import array_stats

from pgm_rl._checks import check_key
from pgm_rl._sampling import multinomial_resample

__all__ = ["CONTROL_DIMS", "GaussianComparison", "compare_to_gaussian", "control_datatree"]

CONTROL_DIMS = {
    "actions": ["time", "action_dim"],
    "states": ["step", "state_dim"],
    "rewards": ["time"],
    "noise": ["time", "state_dim"],
}
_STAT_NAMES = {"accept_prob": "acceptance_rate", "diverging": "diverging"}


def control_datatree(source, problem, *, beta=None, key=None, sampler=None):
    """Convert continuous-control draws to an ArviZ DataTree (layout: the module docstring).

    Parameters
    ----------
    source : numpyro.infer.MCMC, dict, MPPIResult or ControlSMCResult
        A finished ``MCMC`` run of :func:`pgm_rl.control.control_model` (its problem, horizon
        and beta are read from the model); a dict with ``"actions"`` of shape (n, T, du) (one
        chain, e.g. ``GaussianPosterior.sample``) or (chains, draws, T, du), and ``"noise"``
        on a stochastic problem (states and rewards are recomputed from them); or weighted
        draws (an object with ``trajectories`` and ``log_weights``, or a dict with
        ``"log_weights"`` (n,)), resampled multinomially into one equally weighted chain of n
        draws (repeated draws are not independent: ESS and R-hat then overstate).
    problem : ControlProblem
        The problem the draws come from.
    beta : float, optional
        Stored as the ``beta`` attribute (read from the model of an ``MCMC``).
    key : jax PRNG key, optional
        The key of the resampling of weighted draws (default ``jax.random.key(0)``).
    sampler : str, optional
        The ``sampler`` attribute (default the source's kind).

    Returns
    -------
    xarray.DataTree

    Raises
    ------
    ValueError
        Draws of the wrong shape, or missing noise on a stochastic problem.
    """
    stats = importance_ess = None
    if hasattr(source, "get_samples") and hasattr(source, "sampler"):
        samples, stats, model_beta = _from_mcmc(source, problem)
        beta = model_beta if beta is None else beta
        kind = type(source.sampler).__name__
    elif hasattr(source, "trajectories") and hasattr(source, "log_weights"):
        samples, importance_ess = _resample(dict(source.trajectories), source.log_weights, key)
        kind = type(source).__name__
    elif isinstance(source, dict):
        samples = dict(source)
        kind = "draws"
        if "log_weights" in samples:
            samples, importance_ess = _resample(samples, samples.pop("log_weights"), key)
            kind = "weighted draws"
    else:
        raise TypeError(
            "source must be a numpyro MCMC run, a dict of draws or weighted draws (MPPIResult, "
            f"ControlSMCResult), got {type(source).__name__}"
        )
    draws = _rolled_out(samples, problem)
    horizon = draws["actions"].shape[2]
    draws["states"] = draws["states"][:, :, 1:]
    draws["return"] = draws["rewards"].sum(axis=-1)
    dims = {name: dims for name, dims in CONTROL_DIMS.items() if name in draws}
    coords = {"time": np.arange(horizon), "step": np.arange(1, horizon + 1)}
    groups = {"posterior": draws}
    if stats:
        groups["sample_stats"] = stats
    dt = from_dict(groups, dims=dims, coords=coords, sample_dims=["chain", "draw"])
    dt.attrs.update(
        horizon=int(horizon),
        x0=np.asarray(problem.x0, float).tolist(),
        sampler=sampler or kind,
        kind="control",
    )
    if beta is not None:
        dt.attrs["beta"] = float(beta)
    if importance_ess is not None:
        dt.attrs["importance_ess"] = importance_ess
    return dt


def _from_mcmc(mcmc, problem):
    """``(samples, sample_stats, beta)`` of an MCMC run of ``control_model``."""
    from numpyro import handlers

    model = mcmc.sampler.model
    trace = handlers.trace(handlers.seed(model, 0)).get_trace(*mcmc._args, **mcmc._kwargs)
    about = trace.get("actions", {}).get("infer", {}).get("pgm_rl_control")
    if about is None:
        raise ValueError("source is not a run of pgm_rl.control.control_model (no 'actions' site)")
    if about["horizon"] is None or about["problem"].state_dim != problem.state_dim:
        raise ValueError("source was run on another problem than the one given")
    samples = {name: np.asarray(value) for name, value in
               mcmc.get_samples(group_by_chain=True).items()}  # fmt: skip
    stats = {}
    for name, value in mcmc.get_extra_fields(group_by_chain=True).items():
        field = name.rsplit(".", 1)[-1]
        if field in _STAT_NAMES:
            stats[_STAT_NAMES[field]] = np.asarray(value)
    return samples, stats, float(about["beta"])


def _resample(samples, log_weights, key):
    """One equally weighted chain: ``n`` multinomial draws of the weighted ``samples``, and
    the ESS of the weights."""
    key = jax.random.key(0) if key is None else check_key(key)
    log_weights = np.asarray(log_weights, float)
    if log_weights.ndim != 1 or log_weights.shape[0] < 1:
        raise ValueError(f"log_weights must have shape (n,) with n >= 1, got {log_weights.shape}")
    index = np.asarray(multinomial_resample(key, log_weights, log_weights.shape[0]))
    weights = np.exp(log_weights - log_weights.max())
    ess = float(weights.sum() ** 2 / np.sum(weights**2))
    return {name: np.asarray(value)[index] for name, value in samples.items()}, ess


def _rolled_out(samples, problem):
    """The draws with a (chain, draw) lead and their states and rewards from the actions (and
    noise)."""
    if "actions" not in samples:
        raise ValueError(f"source must hold 'actions' draws, got keys {sorted(samples)}")
    actions = np.asarray(samples["actions"], float)
    du = problem.action_dim
    if actions.ndim == 3:
        actions = actions[None]
        lead = True
    elif actions.ndim == 4:
        lead = False
    else:
        raise ValueError(
            f"source['actions'] must have shape (n, T, {du}) or (chains, draws, T, {du}), got "
            f"{actions.shape}"
        )
    if actions.shape[-1] != du or actions.shape[2] < 1:
        raise ValueError(
            f"source['actions'] must end in (T, {du}) with T >= 1, got {actions.shape}"
        )
    noise = None
    if problem.is_stochastic:
        if "noise" not in samples:
            raise ValueError(
                "source must hold 'noise' draws on a stochastic problem: the actions alone do "
                "not fix the states"
            )
        noise = np.asarray(samples["noise"], float)
        noise = noise[None] if lead else noise
        if noise.shape != (*actions.shape[:3], problem.state_dim):
            raise ValueError(
                f"source['noise'] must have shape {(*actions.shape[:3], problem.state_dim)} "
                f"(the actions' leading axes, state_dim), got {noise.shape}"
            )
    flat = actions.reshape(-1, *actions.shape[2:])
    roll = jax.jit(jax.vmap(problem.rollout))
    if noise is None:
        states, rewards = roll(flat)
    else:
        states, rewards = roll(flat, noise.reshape(-1, *noise.shape[2:]))
    draws = {
        "actions": actions,
        "states": np.asarray(states).reshape(*actions.shape[:2], *states.shape[1:]),
        "rewards": np.asarray(rewards).reshape(*actions.shape[:2], -1),
    }
    if noise is not None:
        draws["noise"] = noise
    return draws


class GaussianComparison(NamedTuple):
    """A run's action draws against an exact Gaussian posterior (:func:`compare_to_gaussian`).

    Attributes
    ----------
    mean_z : array (T, du)
        (sample mean - exact mean) / MCSE of the mean, per coordinate (for resampled weighted
        draws the MCSE is ``sd / sqrt(n_eff)``, ``1 / n_eff = 1 / importance_ess + 1 / ess``).
    variance_ratio : array (T, du)
        Sample variance / exact variance.
    variance_z : array (T, du)
        ``(variance_ratio - 1) / sqrt(2 / ess)``, with ``ess`` the bulk ESS of the squared
        deviations (the sd of a Gaussian variance estimate from ``ess`` draws).
    kl : float
        KL(N(sample mean, sample covariance) || exact), over all T du action coordinates
        (inf when there are fewer draws than coordinates).
    expected_kl : float
        About what ``kl`` is from sampling error alone: ``d (d + 3) / (4 n)`` with d = T du and
        n the median bulk ESS (exact for iid Gaussian draws, to first order in d / n).
    ess : float
        The median bulk ESS of the actions.
    threshold : float
        The |z| beyond which a coordinate disagrees.
    disagrees : bool
        True when some ``|mean_z|`` or ``|variance_z|`` exceeds ``threshold``.
    """

    mean_z: np.ndarray
    variance_ratio: np.ndarray
    variance_z: np.ndarray
    kl: float
    expected_kl: float
    ess: float
    threshold: float
    disagrees: bool

    def lines(self):
        """The comparison in words: one summary line, then one per disagreement kind."""
        text = [
            f"max |mean error| {np.max(np.abs(self.mean_z)):.2f} MCSE, variance ratio in "
            f"[{np.min(self.variance_ratio):.3f}, {np.max(self.variance_ratio):.3f}], KL "
            f"{self.kl:.4g} (sampling error alone: about {self.expected_kl:.3g}), median ESS "
            f"{self.ess:.0f}"
        ]
        bad_mean = np.argwhere(np.abs(self.mean_z) > self.threshold)
        bad_var = np.argwhere(np.abs(self.variance_z) > self.threshold)
        if len(bad_mean):
            t, i = bad_mean[0]
            text.append(
                f"the mean of {len(bad_mean)} action coordinate(s) disagrees with the exact "
                f"posterior (first: time {t}, action {i}: {self.mean_z[t, i]:+.1f} MCSE)"
            )
        if len(bad_var):
            t, i = bad_var[0]
            text.append(
                f"the variance of {len(bad_var)} action coordinate(s) disagrees with the exact "
                f"posterior (first: time {t}, action {i}: ratio {self.variance_ratio[t, i]:.3f})"
            )
        return text


def compare_to_gaussian(dt, posterior, threshold=4.0):
    """Compare the ``actions`` draws of a tree with an exact Gaussian posterior.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`control_datatree`.
    posterior : GaussianPosterior
        :func:`pgm_rl.control.solve_lq` of the same problem, horizon and beta.
    threshold : float, default 4
        The |z| beyond which a mean or a variance disagrees.

    Returns
    -------
    GaussianComparison

    Raises
    ------
    ValueError
        If the horizons or action dimensions differ, or beta differs from the tree's.
    """
    actions = np.asarray(dt["posterior"]["actions"].transpose("chain", "draw", "time",
                                                             "action_dim"))  # fmt: skip
    mean = np.asarray(posterior.mean, float)
    if actions.shape[2:] != mean.shape:
        raise ValueError(
            f"the tree's actions end in {actions.shape[2:]} but the posterior is over "
            f"{mean.shape} (horizon, action_dim)"
        )
    if "beta" in dt.attrs and not np.isclose(dt.attrs["beta"], float(posterior.beta)):
        raise ValueError(
            f"the tree was sampled at beta = {dt.attrs['beta']} but the posterior is at beta = "
            f"{float(posterior.beta)}"
        )
    chains, draws = actions.shape[:2]
    moved = np.moveaxis(actions, (0, 1), (-2, -1))  # (T, du, chain, draw)
    mcse = array_stats.mcse(moved, method="mean")
    ess_draws = array_stats.ess(moved, method="bulk")
    ess_var = array_stats.ess((moved - moved.mean(axis=(-2, -1), keepdims=True)) ** 2,
                              method="bulk")  # fmt: skip
    if "importance_ess" in dt.attrs:  # resampled weighted draws: n copies of ~ESS distinct ones
        importance = float(dt.attrs["importance_ess"])
        ess_draws = 1.0 / (1.0 / importance + 1.0 / ess_draws)
        ess_var = 1.0 / (1.0 / importance + 1.0 / ess_var)
        mcse = actions.std(axis=(0, 1), ddof=1) / np.sqrt(ess_draws)
    sample_mean = actions.mean(axis=(0, 1))
    mean_z = (sample_mean - mean) / mcse
    variance = np.asarray(posterior.action_cov, float).diagonal(axis1=-2, axis2=-1)
    sample_var = actions.reshape(chains * draws, *mean.shape).var(axis=0, ddof=1)
    ratio = sample_var / variance
    variance_z = (ratio - 1.0) / np.sqrt(2.0 / ess_var)
    ess = float(np.median(ess_draws))
    d = mean.size
    flat = actions.reshape(chains * draws, d)
    kl = _gaussian_kl(flat.mean(axis=0), np.atleast_2d(np.cov(flat, rowvar=False)),
                      mean.reshape(d), np.asarray(posterior.cov, float))  # fmt: skip
    disagrees = bool(np.max(np.abs(mean_z)) > threshold or np.max(np.abs(variance_z)) > threshold)
    return GaussianComparison(mean_z, ratio, variance_z, kl, d * (d + 3) / (4.0 * ess), ess,
                              float(threshold), disagrees)  # fmt: skip


def _gaussian_kl(m0, s0, m1, s1):
    """KL(N(m0, s0) || N(m1, s1)); inf when ``s0`` is singular."""
    sign0, logdet0 = np.linalg.slogdet(s0)
    if sign0 <= 0:
        return float("inf")
    _, logdet1 = np.linalg.slogdet(s1)
    solved = np.linalg.solve(s1, np.column_stack([s0, m1 - m0]))
    diff = m1 - m0
    return float(0.5 * (np.trace(solved[:, :-1]) + diff @ solved[:, -1] - m0.size
                        + logdet1 - logdet0))  # fmt: skip
