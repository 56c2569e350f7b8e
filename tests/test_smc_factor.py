"""SMC on your own model: the model's extra terms f as a terminal potential (issue 18).

The reference is brute-force enumeration of every action sequence on a 3x3 grid (T = 4) with a
revisit penalty: log Z of the model and E[number of revisits]. Fixed keys; tolerances from the
run's own standard errors.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from scipy.special import logsumexp

import pgm_rl

GRID = pgm_rl.GridWorld(
    np.array([[0.0, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, 0.0, 1.0]]) - 0.1, (0, 0)
)
HORIZON, BETA, PENALTY = 4, 1.0, -0.8


def revisits(states):
    same = states[:, None] == states[None, :]
    return jnp.sum(jnp.any(jnp.triu(same, 1), axis=0))


def revisit_model(env, horizon, beta):
    traj = pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("revisits", PENALTY * revisits(traj.states))


def enumerated():
    """log Z of the revisit model and its E[revisits], by enumeration."""
    actions = np.array(list(itertools.product(range(5), repeat=HORIZON)))
    states, rewards = pgm_rl.rollout(GRID, actions)
    counts = np.asarray(jax.vmap(revisits)(states))
    log_w = BETA * np.asarray(rewards).sum(1) + PENALTY * counts - HORIZON * np.log(5)
    weights = np.exp(log_w - logsumexp(log_w))
    return logsumexp(log_w), float(weights @ counts)


def test_smc_with_the_models_factor_is_exact():
    factor = pgm_rl.trajectory_target(revisit_model, (GRID, HORIZON, BETA)).factor
    log_z, mean_revisits = enumerated()
    plain = pgm_rl.solve(GRID, HORIZON, BETA).log_z
    assert abs(log_z - plain) > 0.5  # the factor matters
    result = pgm_rl.run_smc(jax.random.key(0), GRID, HORIZON, BETA, 4000, log_factor=factor)
    assert abs(float(result.log_z) - log_z) < 4 * result.log_z_tolerance
    weights = np.exp(np.asarray(result.log_weights))
    sampled = np.asarray(jax.vmap(revisits)(result.states))
    mean = weights @ sampled
    se = np.sqrt(weights @ (sampled - mean) ** 2 / float(result.ess))
    assert abs(mean - mean_revisits) < 4 * se


@pytest.mark.filterwarnings("ignore::pgm_rl.smc.SMCSaturationWarning")  # small runs, on purpose
def test_smc_log_z_of_the_factor_model_is_unbiased_over_runs():
    """Unbiased Z: the mean of exp(log_z - exact) over 40 small runs is 1 within 4 SE."""
    factor = pgm_rl.trajectory_target(revisit_model, (GRID, HORIZON, BETA)).factor
    log_z, _ = enumerated()
    ratios = [
        np.exp(float(pgm_rl.run_smc(jax.random.key(seed), GRID, HORIZON, BETA, 64,
                                    log_factor=factor).log_z) - log_z)
        for seed in range(40)
    ]  # fmt: skip
    assert abs(np.mean(ratios) - 1.0) < 4 * np.std(ratios) / np.sqrt(len(ratios))


def test_log_factor_must_be_callable():
    with pytest.raises(TypeError, match="log_factor must be None or a callable"):
        pgm_rl.run_smc(jax.random.key(0), GRID, HORIZON, BETA, 10, log_factor=1.0)
