"""The kernels on stochastic MDPs: one-step invariance from exact draws, refusals by name.

Exact draws (start, actions, states, rewards) are read as kernel states with their outcome
indices (``stochastic_cases.outcome_indices``); a correct step leaves the posterior invariant,
so one step of 20000 independent chains must again give iid exact draws.
"""

import jax
import numpy as np
import pytest
from helpers import expected_tv
from numpyro.infer import MCMC
from stochastic_cases import RANDOM_START, SLIPPERY, state_paths, states_from_draws

import pgm_rl
from pgm_rl.diagnostics import empirical_state_marginals, tv_distance
from pgm_rl.kernels import StepwiseMH, action_gibbs, particle_gibbs, suffix_mh
from pgm_rl.kernels.stepwise_mh import stepwise_target

HORIZON, BETA, NUM_CHAINS = 4, 1.5, 20000

STEPS = {
    "suffix-mh": lambda env: suffix_mh.build_kernel(env, HORIZON),
    "block-mh": lambda env: suffix_mh.build_kernel(env, HORIZON, block_size=2),
    "trajectory-mh": lambda env: pgm_rl.kernels.TrajectoryMH(pgm_rl.trajectory_model).build_step(
        env, HORIZON
    ),
    "action-gibbs": lambda env: action_gibbs.build_kernel(env, HORIZON),
    "action-gibbs-mh": lambda env: action_gibbs.build_kernel(env, HORIZON, proposal="mh"),
    "particle-gibbs": lambda env: particle_gibbs.build_kernel(env, HORIZON, 4),
}
ENVS = {"slippery": SLIPPERY, "random-start": RANDOM_START}


@pytest.mark.parametrize("env_name", ENVS)
@pytest.mark.parametrize("name", STEPS)
def test_one_step_leaves_the_stochastic_posterior_invariant(name, env_name):
    env = ENVS[env_name]
    exact = pgm_rl.solve(env, HORIZON, BETA)
    start_key, step_key = jax.random.split(jax.random.key(11))
    draws = exact.sample(start_key, NUM_CHAINS)
    states = states_from_draws(env, draws)
    moved, info = jax.jit(jax.vmap(STEPS[name](env), in_axes=(0, 0, None)))(
        jax.random.split(step_key, NUM_CHAINS), states, BETA
    )
    assert float(np.mean(info.accept_prob)) > 0.05
    paths = state_paths(env, moved)
    _, rewards = pgm_rl.rollout(env, moved.actions, moved.start, moved.outcomes)
    np.testing.assert_allclose(moved.ret, np.asarray(rewards).sum(axis=1), rtol=1e-12)
    tv = tv_distance(empirical_state_marginals(paths, env.n_states), exact.state_marginals)
    assert tv.mean() <= 2.0 * expected_tv(exact.state_marginals, NUM_CHAINS)
    moved_outcomes = np.asarray(moved.outcomes) != np.asarray(states.outcomes)
    assert np.mean(np.any(moved_outcomes, axis=1)) > 0.05  # the outcomes move too
    if env.has_random_start:
        assert np.mean(np.asarray(moved.start) != np.asarray(states.start)) > 0.01


def test_block_moves_account_for_the_kept_outcomes():
    """Block moves keep outcome indices read from new states: at a large slip their prior
    ratio matters (a plain likelihood ratio would be biased); one step stays invariant."""
    env = pgm_rl.GridWorld(SLIPPERY.rewards, (0, 0), slip=0.6, terminal=[(0, 2), (1, 1)])
    exact = pgm_rl.solve(env, HORIZON, BETA)
    draws = exact.sample(jax.random.key(2), NUM_CHAINS)
    states = states_from_draws(env, draws)
    step = suffix_mh.build_kernel(env, HORIZON, block_size=1)
    moved, _ = jax.jit(jax.vmap(step, in_axes=(0, 0, None)))(
        jax.random.split(jax.random.key(3), NUM_CHAINS), states, BETA
    )
    tv = tv_distance(empirical_state_marginals(state_paths(env, moved), 9), exact.state_marginals)
    assert tv.mean() <= 2.0 * expected_tv(exact.state_marginals, NUM_CHAINS)


def test_stepwise_mh_refuses_stochastic_mdps_by_name():
    with pytest.raises(ValueError, match="deterministic dynamics and a single start state only"):
        MCMC(StepwiseMH(pgm_rl.trajectory_model), num_warmup=1, num_samples=1).run(
            jax.random.key(0), SLIPPERY, 3, 1.0
        )
    with pytest.raises(ValueError, match="stepwise_target"):
        stepwise_target(RANDOM_START, 3, 1.0)


def test_mcmc_returns_outcomes_and_start_sites():
    mcmc = MCMC(
        pgm_rl.kernels.SuffixMH(pgm_rl.trajectory_model),
        num_warmup=5,
        num_samples=7,
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), RANDOM_START, 3, 1.0)
    samples = mcmc.get_samples()
    assert samples["outcomes"].shape == (7, 3) and samples["start"].shape == (7,)
    states, rewards = pgm_rl.rollout(
        RANDOM_START, samples["actions"], samples["start"], samples["outcomes"]
    )
    np.testing.assert_array_equal(samples["states"], states)
    np.testing.assert_allclose(samples["rewards"], rewards)
    np.testing.assert_array_equal(samples["states"][:, 0], samples["start"])
