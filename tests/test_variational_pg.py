"""ParticleGibbs with a proposal policy: exact whatever the proposal (conditional SMC)."""

import pickle

import jax
import numpy as np
import pytest
from conftest import random_grid
from helpers import expected_tv, occupancy_ess, run_mcmc

import pgm_rl
from pgm_rl.diagnostics import empirical_state_marginals, tv_distance
from pgm_rl.kernels.base import init_state
from pgm_rl.kernels.particle_gibbs import ParticleGibbs, build_kernel, soft_bellman_proposal


def poor_proposal(env, horizon, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(env.n_actions, 0.3), (horizon, env.n_states))
    return 0.7 * probs + 0.3 / env.n_actions


SLIPPERY = pgm_rl.GridWorld(np.random.default_rng(3).uniform(-2, 2, (3, 3)), (0, 0), slip=0.2)


@pytest.mark.parametrize(
    "env", [random_grid(1), pytest.param(SLIPPERY, marks=pytest.mark.slow)], ids=["det", "slippery"]
)
def test_guided_particle_gibbs_with_a_poor_proposal_matches_exact(env):
    horizon, beta = 5, 0.5
    kernel = ParticleGibbs(
        pgm_rl.trajectory_model, num_particles=16, proposal=poor_proposal(env, horizon)
    )
    mcmc = run_mcmc(kernel, env, horizon, beta, warmup=200, draws=1000)
    states = np.asarray(mcmc.get_samples(group_by_chain=True)["states"])
    post = pgm_rl.solve(env, horizon, beta)
    tv = tv_distance(empirical_state_marginals(states, env.n_states), post.state_marginals)
    ess, r_hat = occupancy_ess(states, env.n_states)
    assert r_hat < 1.05 and ess >= 150
    assert tv.mean() <= min(0.03, 2.0 * expected_tv(post.state_marginals, ess))


def test_one_sweep_from_exact_draws_keeps_the_posterior():
    """Invariance of the pure step: exact draws in, one guided sweep each, exact draws out."""
    env, horizon, beta = random_grid(2), 4, 1.0
    post = pgm_rl.solve(env, horizon, beta)
    n = 20000
    draws = post.sample(jax.random.key(0), n)
    step = build_kernel(env, horizon, num_particles=4, proposal=poor_proposal(env, horizon))
    start = jax.vmap(lambda a: init_state(env, a))(draws["actions"])
    new, info = jax.vmap(lambda k, s: step(k, s, beta))(
        jax.random.split(jax.random.key(2), n), start
    )
    assert float(np.mean(info.accept_prob)) > 0.3  # the sweep moves: invariance means something
    states, _ = pgm_rl.rollout(env, new.actions)
    marginals = empirical_state_marginals(np.asarray(states)[None], env.n_states)
    assert tv_distance(marginals, post.state_marginals).mean() <= 4 * expected_tv(
        post.state_marginals, n
    )


def test_proposal_built_from_the_problem_and_pickles():
    env, horizon, beta = random_grid(3), 5, 1.0
    kernel = ParticleGibbs(pgm_rl.trajectory_model, num_particles=8, proposal=soft_bellman_proposal)
    mcmc = run_mcmc(kernel, env, horizon, beta, warmup=20, draws=50, chains=2)
    assert np.asarray(mcmc.get_samples()["actions"]).shape == (100, horizon)
    assert pickle.loads(pickle.dumps(kernel)).proposal is soft_bellman_proposal


def test_bad_proposal_is_refused_when_built():
    env, horizon = random_grid(0), 3
    zero = np.full((horizon, env.n_states, env.n_actions), 0.25)
    zero[..., 4] = 0.0
    kernel = ParticleGibbs(pgm_rl.trajectory_model, num_particles=8, proposal=zero)
    with pytest.raises(ValueError, match="positive probability"):
        run_mcmc(kernel, env, horizon, 1.0, warmup=2, draws=2, chains=1)


@pytest.mark.slow
@pytest.mark.parametrize("beta", [0.05, 1.0, 100.0])
def test_the_notebook_setting_sampled(beta):
    """Notebook grid, T = 100, 4 chains x 1000 draws: guided Particle Gibbs (soft Bellman at
    beta / 10 as proposal: not the answer) reaches mean TV <= 0.05 and return R-hat < 1.01; the
    bootstrap version, measured beside it, does not."""
    import arviz_stats

    env, horizon = pgm_rl.GridWorld.notebook(), 100
    post = pgm_rl.solve(env, horizon, beta)

    def run(kernel):
        mcmc = run_mcmc(kernel, env, horizon, beta, warmup=200, draws=1000)
        samples = mcmc.get_samples(group_by_chain=True)
        states, returns = np.asarray(samples["states"]), np.asarray(samples["rewards"]).sum(-1)
        tv = tv_distance(empirical_state_marginals(states, env.n_states), post.state_marginals)
        if np.ptp(returns) == 0.0:  # every draw of every chain has the same return: agreed
            return tv.mean(), 1.0
        return tv.mean(), float(arviz_stats.rhat(returns, chain_axis=0, draw_axis=1))

    tv, r_hat = run(ParticleGibbs(pgm_rl.trajectory_model, proposal=soft_bellman_proposal))
    assert tv <= 0.05 and r_hat < 1.01, (tv, r_hat)
    tv_boot, r_hat_boot = run(ParticleGibbs(pgm_rl.trajectory_model))
    assert r_hat_boot > 1.01 or tv_boot > 0.05
