"""to_datatree, check_run and env_from_datatree on runs on stochastic MDPs."""

import jax
import numpy as np
import pytest
from numpyro.infer import MCMC

import pgm_rl
from pgm_rl.diagnostics import check_run, env_from_datatree, to_datatree, trajectory_states

ENV = pgm_rl.GridWorld(
    [[-0.5, 0.3, 1.0], [0.2, -2.0, 0.4], [0.0, 0.6, -1.0]], (0, 0), slip=0.2, terminal=[(0, 2)]
)


def test_stochastic_runs_round_trip():
    mcmc = MCMC(pgm_rl.kernels.SuffixMH(pgm_rl.trajectory_model), num_warmup=10,
                num_samples=20, num_chains=2, chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(0), ENV, 4, 1.0)
    exact = pgm_rl.solve(ENV, 4, 1.0)
    dt = check_run(to_datatree(mcmc, ENV, exact=exact))
    assert "outcome_states" in dt["constant_data"] and "next_state" not in dt["constant_data"]
    rebuilt = env_from_datatree(dt)
    assert rebuilt.slip == 0.2 and rebuilt.terminal == ((0, 2),)
    np.testing.assert_array_equal(rebuilt.outcome_probs, ENV.outcome_probs)
    assert trajectory_states(dt).shape == (2, 20, 5)
    check_run(to_datatree(exact.sample(jax.random.key(1), 30), ENV, beta=1.0))
    check_run(to_datatree(pgm_rl.run_smc(jax.random.key(2), ENV, 4, 1.0, 100), ENV, beta=1.0))
    bad = dt.copy()
    bad["posterior"]["rewards"] = dt["posterior"]["rewards"] + 0.5
    with pytest.raises(ValueError, match="not a possible outcome"):
        check_run(bad)


def test_impossible_draws_and_random_starts_are_refused():
    draws = {"actions": np.zeros((3, 4), int), "states": np.zeros((3, 5), int),
             "rewards": np.ones((3, 4))}  # fmt: skip
    with pytest.raises(ValueError, match="not a possible outcome"):
        to_datatree(draws, ENV, beta=1.0)
    with pytest.raises(ValueError, match="'states' and 'rewards' draws"):
        to_datatree({"actions": draws["actions"]}, ENV, beta=1.0)
    random_start = pgm_rl.TabularMDP.from_outcomes(
        ENV.outcome_states, ENV.outcome_probs, ENV.outcome_rewards, np.full(9, 1 / 9)
    )
    with pytest.raises(ValueError, match="random start"):
        to_datatree(draws, random_start, beta=1.0)


def test_one_outcome_per_step_needs_only_the_actions():
    """Terminal cells without slip leave one outcome per step (K = 1): the actions fix the path
    (outcome index 0), so actions-only draws are converted, stored as (S, A) tables with the
    terminal cells as attributes, and read back (the path to_datatree takes is chosen by K and
    by the draws given, not by the world's kind flags)."""
    grid = pgm_rl.GridWorld(ENV.rewards, (0, 0), terminal=[(0, 2)])
    assert grid.n_outcomes == 1
    exact = pgm_rl.solve(grid, 4, 1.0)
    actions = np.asarray(exact.sample(jax.random.key(3), 30)["actions"])
    dt = check_run(to_datatree({"actions": actions}, grid, exact))
    states, rewards = pgm_rl.rollout(grid, actions, outcomes=np.zeros_like(actions))
    np.testing.assert_array_equal(trajectory_states(dt).values[0], states)
    np.testing.assert_allclose(dt["posterior"]["rewards"].values[0], rewards)
    assert "next_state" in dt["constant_data"] and "outcome_states" not in dt["constant_data"]
    rebuilt = env_from_datatree(dt)
    assert rebuilt.terminal == ((0, 2),)
    np.testing.assert_array_equal(rebuilt.outcome_states, grid.outcome_states)
