"""Demonstrations simulated from the model, and simulation-based calibration of its NUTS
posterior (Talts et al. 2018)."""

import numbers
import time
from typing import NamedTuple

import jax
import numpy as np
from scipy import stats as scipy_stats

from pgm_rl._checks import check_positive_int
from pgm_rl.exact import soft_bellman, solve
from pgm_rl.irl.model import sample_batched
from pgm_rl.irl.problem import (
    check_beta_arg,
    check_horizon_arg,
    check_likelihood,
    check_prior_scale,
    check_theta,
    dynamics,
    prior_scales,
)
from pgm_rl.worlds import TabularMDP, check_env

__all__ = ["Calibration", "reward_mdp", "simulate", "simulation_based_calibration"]


def reward_mdp(env, features, theta):
    """``env`` with the reward r_theta = features @ theta (outcome-wise), a new TabularMDP."""
    mdp = check_env(env)
    dyn = dynamics(mdp, features)
    theta = np.asarray(check_theta(theta, dyn.feats.shape[-1]), np.float64)
    rewards = np.asarray(dyn.feats, np.float64) @ theta
    return TabularMDP.from_outcomes(mdp.outcome_states, mdp.outcome_probs, rewards, mdp.start_probs)


def simulate(
    key, env, features, theta, horizon, num_demonstrations, beta=1.0, likelihood="trajectory"
):
    """Demonstrations given theta: N draws of the model's likelihood, a dict like ``solve``'s.

    ``"trajectory"``: exact draws of the trajectory posterior of r_theta (:func:`pgm_rl.solve`);
    ``"soft_bellman"``: the soft-Bellman policy of r_theta run in the true dynamics.
    """
    likelihood = check_likelihood(likelihood)
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
    """SBC (Talts et al. 2018) of :func:`~pgm_rl.irl.reward_model` with NUTS, vectorised over
    replications.

    Each replication draws theta from the prior, N demonstrations from the likelihood
    (:func:`simulate`), runs one NUTS chain (:func:`~pgm_rl.irl.sample_batched`, all
    replications in one vmapped program) of ``num_warmup + thin * num_draws`` steps, keeps
    every ``thin``-th draw and ranks the true theta among them. Calibrated inference gives
    uniform ranks on {0, ..., L}; the chi-square test uses ``bins`` equal bins (L + 1 must be
    divisible by it).

    Parameters
    ----------
    key : PRNG key
    env, features, beta, prior_scale, likelihood
        As in :func:`~pgm_rl.irl.reward_model`.
    horizon, num_demonstrations, num_replications : int >= 1
        T, N and R.
    num_warmup : int >= 0
    thin, num_draws, bins : int >= 1
        Keep every ``thin``-th of ``thin * num_draws`` draws (L = ``num_draws``); ``bins``
        must divide L + 1.
    **nuts_kwargs
        Passed to :func:`~pgm_rl.irl.sample_batched`.

    Returns
    -------
    Calibration

    Raises
    ------
    ValueError, TypeError
        For bad arguments (naming them), before any simulation or NUTS run.
    """
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
    horizon = check_horizon_arg(horizon)
    likelihood = check_likelihood(likelihood)
    beta = check_beta_arg(beta)
    dyn = dynamics(env, features)
    n_features = dyn.feats.shape[-1]
    prior_scales(check_prior_scale(prior_scale), n_features, dyn.probs.dtype)
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
