"""run_smc: weighted marginals and log Z (with its standard error) against exact inference."""

import jax
import numpy as np
import pytest
from conftest import random_grid
from jax.scipy.special import logsumexp

import pgm_rl
from pgm_rl.exact import tv_distance
from pgm_rl.smc import run_smc


def weighted_state_marginals(result, n_states):
    """(T + 1, S) marginals of the weighted particles."""
    states = np.asarray(result.states)
    weights = np.exp(np.asarray(result.log_weights))
    counts = np.zeros((states.shape[1], n_states))
    np.add.at(counts, (np.arange(states.shape[1])[None, :], states), weights[:, None])
    return counts


def test_shapes_normalised_and_deterministic(small_problem):
    env, horizon, beta = small_problem
    result = run_smc(jax.random.key(0), env, horizon, beta, 64)
    assert result.actions.shape == (64, horizon)
    assert result.states.shape == (64, horizon + 1) and result.rewards.shape == (64, horizon)
    np.testing.assert_allclose(logsumexp(result.log_weights), 0.0, atol=1e-12)
    states, rewards = pgm_rl.rollout(env, result.actions)
    np.testing.assert_array_equal(states, result.states)
    np.testing.assert_array_equal(rewards, result.rewards)
    assert 1.0 <= float(result.ess) <= 64.0 and float(result.log_z_se) > 0.0
    again = run_smc(jax.random.key(0), env, horizon, beta, 64)
    np.testing.assert_array_equal(result.actions, again.actions)
    assert float(result.log_z) == float(again.log_z)


def test_weighted_marginals_match_exact(small_problem):
    env, horizon, beta = small_problem
    post = pgm_rl.solve(env, horizon, beta)
    result = run_smc(jax.random.key(1), env, horizon, beta, 20000)
    marginals = weighted_state_marginals(result, env.n_states)
    assert tv_distance(marginals, post.state_marginals).mean() <= 0.03
    assert abs(float(result.log_z) - post.log_z) <= 3 * float(result.log_z_se)


@pytest.mark.parametrize("env_seed, horizon, beta", [(1, 5, 0.5), (3, 6, 1.0), (None, 8, 0.5)])
def test_log_z_within_three_standard_errors(env_seed, horizon, beta):
    """Over 40 runs of 500 particles: at least 38 estimates within 3 SE of exact, and the SE
    calibrated: the spread of the estimates matches the mean reported SE within a factor of 1.4
    (40 runs pin the spread to ~11%). On the notebook grid (``env_seed=None``) systematic
    resampling made the genealogy SE 1.75x too small; multinomial resampling keeps it calibrated.

    Not all 40: log Z_hat is skewed and the single-run SE is itself noisy, so |z| > 3 occurs in
    1.5-2% of runs (measured over 200 runs) rather than the Gaussian 0.3%."""
    env = pgm_rl.GridWorld.notebook() if env_seed is None else random_grid(env_seed)
    exact = pgm_rl.solve(env, horizon, beta).log_z
    runs = [
        run_smc(key, env, horizon, beta, 500) for key in jax.random.split(jax.random.key(2), 40)
    ]
    log_z = np.array([float(r.log_z) for r in runs])
    se = np.array([float(r.log_z_se) for r in runs])
    assert np.sum(np.abs(log_z - exact) <= 3 * se) >= 38
    assert 1 / 1.4 < np.std(log_z) / np.mean(se) < 1.4
    assert sum(int(r.num_resampling) for r in runs) > 0


def test_resampling_threshold(small_problem):
    env, horizon, beta = small_problem
    never = run_smc(jax.random.key(4), env, horizon, beta, 50, ess_threshold=0.0)
    assert int(never.num_resampling) == 0
    weights = np.exp(np.asarray(never.log_weights))
    importance_rel_var = (50 * np.sum(weights**2) - 1) / 49
    np.testing.assert_allclose(float(never.log_z_se) ** 2, importance_rel_var, rtol=1e-9)
    always = run_smc(jax.random.key(4), env, horizon, beta, 50, ess_threshold=1.0)
    assert int(always.num_resampling) == horizon - 1


def test_bad_arguments(small_problem):
    env, horizon, beta = small_problem
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="key"):
        run_smc(0, env, horizon, beta, 10)
    with pytest.raises(TypeError, match="env"):
        run_smc(key, "grid", horizon, beta, 10)
    with pytest.raises(ValueError, match="horizon"):
        run_smc(key, env, 0, beta, 10)
    with pytest.raises(ValueError, match="beta"):
        run_smc(key, env, horizon, -1.0, 10)
    with pytest.raises(ValueError, match="num_particles"):
        run_smc(key, env, horizon, beta, 1)
    with pytest.raises(TypeError, match="num_particles"):
        run_smc(key, env, horizon, beta, 10.0)
    with pytest.raises(ValueError, match="ess_threshold"):
        run_smc(key, env, horizon, beta, 10, ess_threshold=1.5)
