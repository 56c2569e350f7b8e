"""run_smc with a proposal policy: exact whatever the proposal (importance weights), bad input."""

import warnings

import jax
import numpy as np
import pytest
from conftest import random_grid

import pgm_rl
from pgm_rl.diagnostics import tv_distance, weighted_state_marginals
from pgm_rl.smc import check_proposal, run_smc


def poor_proposal(env, horizon, seed=0, concentration=0.3):
    """A random (T, S, A) policy (a sparse Dirichlet draw, 30% uniform for full support): it
    prefers arbitrary actions, unrelated to the rewards."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(env.n_actions, concentration), (horizon, env.n_states))
    return 0.7 * probs + 0.3 / env.n_actions


def slippery_grid():
    rng = np.random.default_rng(3)
    return pgm_rl.GridWorld(rng.uniform(-2, 2, (3, 3)), (0, 0), slip=0.2)


@pytest.mark.parametrize("env", [random_grid(1), slippery_grid()], ids=["det", "slippery"])
def test_poor_proposal_stays_exact(env):
    horizon, beta = 5, 0.5
    post = pgm_rl.solve(env, horizon, beta)
    proposal = poor_proposal(env, horizon)
    result = run_smc(jax.random.key(1), env, horizon, beta, 20000, proposal=proposal)
    marginals = weighted_state_marginals(result.states, result.log_weights, env.n_states)
    assert tv_distance(marginals, post.state_marginals).mean() <= 0.03
    assert abs(float(result.log_z) - post.log_z) <= 3 * float(result.log_z_se)
    # the paths are real paths of the MDP, with their rewards
    if env.is_deterministic:
        states, rewards = pgm_rl.rollout(env, result.actions)
        np.testing.assert_array_equal(states, result.states)
        np.testing.assert_allclose(rewards, result.rewards)


def test_exact_posterior_as_proposal_has_equal_weights():
    env, horizon, beta = random_grid(2), 6, 1.0
    post = pgm_rl.solve(env, horizon, beta)
    result = run_smc(jax.random.key(0), env, horizon, beta, 500, proposal=post)
    assert float(result.log_z) == pytest.approx(post.log_z, abs=1e-9)
    assert float(result.ess) == pytest.approx(500.0)


@pytest.mark.parametrize(
    "beta",
    [0.05, pytest.param(1.0, marks=pytest.mark.slow), pytest.param(100.0, marks=pytest.mark.slow)],
)
def test_notebook_setting_log_z_with_a_guided_proposal(beta):
    """The notebook's own setting (T = 100): bootstrap SMC misses log Z by thousands of nats;
    a proposal that is not the answer (soft Bellman at beta / 10) gets it within 3 SE."""
    env, horizon = pgm_rl.GridWorld.notebook(), 100
    exact = pgm_rl.solve(env, horizon, beta).log_z
    proposal = pgm_rl.soft_bellman(env, horizon, beta / 10)
    guided = run_smc(jax.random.key(0), env, horizon, beta, 256, proposal=proposal)
    assert abs(float(guided.log_z) - exact) <= 3 * max(float(guided.log_z_se), 1e-6 * abs(exact))
    assert not guided.saturated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pgm_rl.smc.SMCSaturationWarning)
        bootstrap = run_smc(jax.random.key(0), env, horizon, beta, 256)
    assert exact - float(bootstrap.log_z) > 100 * beta


@pytest.mark.slow
def test_a_fitted_policy_is_a_proposal():
    from pgm_rl.variational import fit_policy

    env, horizon, beta = random_grid(4), 5, 1.0
    fit = fit_policy(env, horizon, beta, parametrization="stationary", num_steps=20)
    result = run_smc(jax.random.key(0), env, horizon, beta, 2000, proposal=fit)
    exact = pgm_rl.solve(env, horizon, beta).log_z
    assert abs(float(result.log_z) - exact) <= 3 * float(result.log_z_se)


def _bad_proposals():
    env, horizon = random_grid(0), 3
    good = np.full((horizon, env.n_states, env.n_actions), 1.0 / env.n_actions)
    zero = good.copy()
    zero[1, 2] = [0.5, 0.5, 0.0, 0.0, 0.0]
    nan = good.copy()
    nan[0, 0, 0] = np.nan
    unnormalised = good * 1.1

    class Holder:
        with np.errstate(divide="ignore"):
            log_policy = np.log(zero)

    return (
        env,
        horizon,
        [
            (good[:2], ValueError, "shape"),
            (zero, ValueError, r"positive probability .*: proposal\[1, 2, 2\] = 0"),
            (nan, ValueError, "NaN"),
            (unnormalised, ValueError, "sum to 1"),
            (np.full(good.shape, "a"), TypeError, "probabilities"),
            (Holder(), ValueError, "full support"),
        ],
    )


def test_bad_proposals_are_refused_by_name():
    env, horizon, cases = _bad_proposals()
    for proposal, error, words in cases:
        with pytest.raises(error, match=words):
            check_proposal(proposal, env, horizon)
        with pytest.raises(error, match=words):
            run_smc(jax.random.key(0), env, horizon, 1.0, 8, proposal=proposal)
