"""trajectory_model and run_smc on stochastic MDPs: latent start and outcome-index sites."""

import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

import pgm_rl
from pgm_rl import rollout, solve, trajectory_model

sys.path.insert(0, str(Path(__file__).parent / "kernels"))
from stochastic_cases import RANDOM_START, SLIPPERY, outcome_indices


def test_sites_on_stochastic_mdps():
    names = list(handlers.trace(handlers.seed(trajectory_model, 0)).get_trace(SLIPPERY, 4, 1.0))
    assert names == ["time", "actions", "outcomes", "states", "rewards", "optimality"]
    model_trace = handlers.trace(handlers.seed(trajectory_model, 0)).get_trace(RANDOM_START, 4, 1.0)
    assert list(model_trace) == ["start", "time", "actions", "outcomes", "states", "rewards",
                                 "optimality"]  # fmt: skip
    outcomes = model_trace["outcomes"]
    assert outcomes["value"].shape == (4,) and outcomes["fn"].has_enumerate_support
    assert outcomes["cond_indep_stack"][0].name == "time"
    assert model_trace["states"]["type"] == "deterministic"


def test_log_density_is_the_exact_joint():
    """log p(start, actions, outcomes) + beta R - log Z is the exact posterior log-probability."""
    horizon, beta = 4, 0.7
    exact = solve(RANDOM_START, horizon, beta)
    draws = exact.sample(jax.random.key(0), 50)
    outcomes = outcome_indices(RANDOM_START, draws)
    for i in range(0, 50, 7):
        latent = {
            "start": draws["states"][i, 0],
            "actions": draws["actions"][i],
            "outcomes": outcomes[i],
        }
        value, _ = log_density(trajectory_model, (RANDOM_START, horizon, beta), {}, latent)
        expected = exact.log_prob(draws["actions"][i], draws["states"][i]) + exact.log_z
        np.testing.assert_allclose(value, expected, rtol=1e-9, atol=1e-9)


def test_predictive_draws_the_prior_dynamics():
    """Predictive at beta = 0 draws the prior: state marginals match solve(..., beta=0)."""
    horizon, n = 4, 20000
    draws = Predictive(trajectory_model, num_samples=n)(
        jax.random.key(1), RANDOM_START, horizon, 0.0
    )
    states, rewards = rollout(RANDOM_START, draws["actions"], draws["start"], draws["outcomes"])
    np.testing.assert_array_equal(draws["states"], states)
    np.testing.assert_allclose(draws["rewards"], rewards)
    prior = solve(RANDOM_START, horizon, 0.0).state_marginals
    empirical = np.stack(
        [np.bincount(np.asarray(states[:, t]), minlength=9) / n for t in range(horizon + 1)]
    )
    np.testing.assert_allclose(empirical, prior, atol=4 * np.sqrt(0.25 / n))


def test_rollout_needs_outcomes_and_checks_them():
    actions = np.zeros(3, np.int32)
    with pytest.raises(ValueError, match="pass outcomes"):
        rollout(SLIPPERY, actions)
    with pytest.raises(ValueError, match="outcomes must lie in"):
        rollout(SLIPPERY, actions, outcomes=np.array([0, 5, 0]))
    with pytest.raises(ValueError, match="outcomes must have shape"):
        rollout(SLIPPERY, actions, outcomes=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="random start"):
        rollout(RANDOM_START, actions, outcomes=actions)


@pytest.mark.parametrize(
    ("env", "horizon", "beta"),
    [(SLIPPERY, 5, 0.8), (RANDOM_START, 4, 1.2)],
    ids=["slippery", "random-start"],
)
def test_smc_log_z_on_stochastic_mdps(env, horizon, beta):
    """log Z = log E_prior[exp(beta R)] over start, actions and outcomes, within 3 SE."""
    exact = solve(env, horizon, beta)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pgm_rl.smc.SMCSaturationWarning)
        results = [pgm_rl.run_smc(jax.random.key(r), env, horizon, beta, 1000) for r in range(8)]
    for result in results:
        assert abs(float(result.log_z) - float(exact.log_z)) <= 3 * float(result.log_z_se) + 1e-3
    pooled = pgm_rl.smc.pool_log_z(results)
    assert abs(pooled - float(exact.log_z)) < 0.05
    # the paths are trajectories of the MDP: every step is a listed outcome with its reward
    result = results[0]
    states, actions = np.asarray(result.states), np.asarray(result.actions)
    draws = {"actions": actions, "states": states, "rewards": np.asarray(result.rewards)}
    outcome_indices(env, draws)  # asserts that each step matches exactly one outcome
    assert np.all(np.asarray(env.start_probs)[states[:, 0]] > 0)
