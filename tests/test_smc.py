"""run_smc: weighted marginals and log Z (with its standard error) against exact inference."""

import warnings

import jax
import numpy as np
import pytest
from conftest import random_grid
from jax.scipy.special import logsumexp

import pgm_rl
from pgm_rl.diagnostics import tv_distance, weighted_state_marginals
from pgm_rl.smc import MIN_ANCESTORS, SMCSaturationWarning, pool_log_z, resample_draws, run_smc


def trap_grid():
    rewards = np.zeros((5, 5))
    rewards[0, 4], rewards[2, 2] = 5.0, -10.0
    return pgm_rl.GridWorld(rewards, (4, 0))


@pytest.mark.filterwarnings("ignore::pgm_rl.smc.SMCSaturationWarning")  # 64 particles
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
    marginals = weighted_state_marginals(result.states, result.log_weights, env.n_states)
    assert tv_distance(marginals, post.state_marginals).mean() <= 0.03
    assert abs(float(result.log_z) - post.log_z) <= 3 * float(result.log_z_se)


@pytest.mark.slow
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
    with warnings.catch_warnings():
        warnings.simplefilter("error", SMCSaturationWarning)  # calibrated: never saturated
        runs = [
            run_smc(key, env, horizon, beta, 500) for key in jax.random.split(jax.random.key(2), 40)
        ]
    assert min(float(r.effective_ancestors) for r in runs) >= MIN_ANCESTORS
    log_z = np.array([float(r.log_z) for r in runs])
    se = np.array([float(r.log_z_se) for r in runs])
    assert np.sum(np.abs(log_z - exact) <= 3 * se) >= 38
    assert 1 / 1.4 < np.std(log_z) / np.mean(se) < 1.4
    assert sum(int(r.num_resampling) for r in runs) > 0


def test_resampling_threshold(small_problem):
    env, horizon, beta = small_problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SMCSaturationWarning)
        never = run_smc(jax.random.key(4), env, horizon, beta, 50, ess_threshold=0.0)
    assert int(never.num_resampling) == 0
    weights = np.exp(np.asarray(never.log_weights))
    importance_rel_var = (50 * np.sum(weights**2) - 1) / 49
    np.testing.assert_allclose(float(never.log_z_se) ** 2, importance_rel_var, rtol=1e-9)
    np.testing.assert_allclose(float(never.effective_ancestors), float(never.ess), rtol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SMCSaturationWarning)
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


def test_saturated_genealogy_warns():
    """Issue 9: 2000 particles on the trap grid (T = 12, beta = 1) report "+- 1" while the
    estimates spread over several units of log Z: every run must warn and say saturated."""
    env = trap_grid()
    exact = pgm_rl.solve(env, 12, 1.0).log_z
    results = []
    for key in jax.random.split(jax.random.key(0), 6):
        with pytest.warns(SMCSaturationWarning, match="too few surviving ancestors"):
            results.append(run_smc(key, env, 12, 1.0, 2000))
    assert all(r.saturated for r in results)
    assert all(float(r.effective_ancestors) < MIN_ANCESTORS for r in results)
    assert all(int(r.num_ancestors) >= 1 for r in results)
    errors = np.array([float(r.log_z) - exact for r in results])
    se = np.array([float(r.log_z_se) for r in results])
    assert np.std(errors) > 2 * se.mean()  # the reported SE is far too small


def test_healthy_run_is_not_saturated(small_problem):
    env, horizon, beta = small_problem
    with warnings.catch_warnings():
        warnings.simplefilter("error", SMCSaturationWarning)
        result = run_smc(jax.random.key(0), env, horizon, beta, 500)
    assert not result.saturated and 1 <= int(result.num_ancestors) <= 500


def test_pool_log_z_is_log_mean_exp(small_problem):
    env, horizon, beta = small_problem
    runs = [run_smc(k, env, horizon, beta, 500) for k in jax.random.split(jax.random.key(3), 8)]
    log_z = np.array([float(r.log_z) for r in runs])
    pooled = pool_log_z(runs)
    assert pooled == pytest.approx(np.log(np.mean(np.exp(log_z))), rel=1e-12)
    assert pool_log_z(log_z) == pooled
    assert pooled >= log_z.mean()  # Jensen: the mean of log Z_hat sits below
    assert pool_log_z([1e4, 1e4 + np.log(3.0)]) == pytest.approx(1e4 + np.log(2.0))  # no overflow
    with pytest.raises(ValueError, match="K >= 1"):
        pool_log_z([])
    with pytest.raises(TypeError, match="SMCResult"):
        pool_log_z(["a"])
    with pytest.raises(ValueError, match="finite"):
        pool_log_z([np.nan])


def test_resample(small_problem):
    env, horizon, beta = small_problem
    result = run_smc(jax.random.key(5), env, horizon, beta, 500)
    draws = result.resample(jax.random.key(0), 1000)
    assert draws["actions"].shape == (1000, horizon)
    assert draws["states"].shape == (1000, horizon + 1)
    assert draws["rewards"].shape == (1000, horizon)
    states, _ = pgm_rl.rollout(env, draws["actions"])
    np.testing.assert_array_equal(states, draws["states"])
    # the resampled marginals match the weighted ones to multinomial noise
    weighted = weighted_state_marginals(result.states, result.log_weights, env.n_states)
    empirical = pgm_rl.diagnostics.empirical_state_marginals(draws["states"], env.n_states)
    assert tv_distance(empirical, weighted).max() < 4 * 0.5 * np.sqrt(env.n_states / 1000)
    one_hot = np.full(500, -np.inf)
    one_hot[42] = 0.0
    picked = resample_draws(jax.random.key(1), {"actions": result.actions}, one_hot, 5)
    assert (np.asarray(picked["actions"]) == np.asarray(result.actions)[42]).all()
    with pytest.raises(ValueError, match="rows"):
        resample_draws(jax.random.key(1), {"actions": result.actions}, np.zeros(3), 5)
    with pytest.raises(ValueError, match="n"):
        result.resample(jax.random.key(0), 0)
    with pytest.raises(TypeError, match="key"):
        result.resample(0, 5)


@pytest.mark.filterwarnings("ignore::pgm_rl.smc.SMCSaturationWarning")  # 50, 100 particles
def test_one_forward_pass_for_every_world():
    """One pass over outcomes (issue 16): the actions and resampling draw the same random numbers
    on a deterministic world and on its slippery twin (before: two passes, whose streams
    differed, so the actions did too), and runs on deterministic worlds repeat the numbers of
    the former deterministic pass exactly (measured on it: log Z -15.39097069256184)."""
    rewards = np.random.default_rng(3).uniform(-2, 2, (3, 3))
    det, slippery = pgm_rl.GridWorld(rewards, (0, 0)), pgm_rl.GridWorld(rewards, (0, 0), slip=0.2)
    never = [
        run_smc(jax.random.key(5), env, 6, 1.0, 50, ess_threshold=0.0) for env in (det, slippery)
    ]
    np.testing.assert_array_equal(never[0].actions, never[1].actions)
    assert not np.array_equal(never[0].states, never[1].states)  # the slips moved them
    result = run_smc(jax.random.key(3), pgm_rl.GridWorld.notebook(), 12, 1.0, 100)
    assert float(result.log_z) == pytest.approx(-15.39097069256184, rel=1e-12)
    assert np.asarray(result.actions[0]).tolist() == [2, 1, 2, 3, 4, 0, 0, 2, 2, 1, 0, 0]
    assert int(result.num_resampling) == 3


def test_particle_machinery_is_shared_not_imported_from_smc():
    """Resampling, the proposal check, its soft value and the twist live in pgm_rl.particles,
    used by SMC and particle Gibbs alike; particle Gibbs loads nothing of pgm_rl.smc (before:
    it imported smc's internals, and pgm_rl.particles did not exist)."""
    import subprocess
    import sys

    import pgm_rl.particles as particles
    import pgm_rl.smc as smc

    for name in ("check_proposal", "multinomial_resample", "proposal_values", "twist"):
        assert getattr(smc, name) is getattr(particles, name)
    code = "import sys, pgm_rl.kernels.particle_gibbs; print('pgm_rl.smc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
