"""trajectory_model: the trajectory posterior as a NumPyro model, checked against exact inference."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from conftest import random_grid
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

from pgm_rl import GridWorld, TabularMDP, rollout, solve, trajectory_model
from pgm_rl.model import trajectory_problem


def model_log_density(env, horizon, beta, actions):
    value, _ = log_density(trajectory_model, (env, horizon, beta), {}, {"actions": actions})
    return value


def test_trace_sites_shapes_and_plate():
    env = random_grid(0, (3, 4))
    horizon, beta = 7, 0.8
    model_trace = handlers.trace(handlers.seed(trajectory_model, 0)).get_trace(env, horizon, beta)
    assert list(model_trace) == ["time", "actions", "states", "rewards", "optimality"]

    plate = model_trace["time"]
    assert plate["type"] == "plate" and plate["args"] == (horizon, None)

    actions = model_trace["actions"]
    assert actions["type"] == "sample" and not actions["is_observed"]
    assert actions["value"].shape == (horizon,)
    assert jnp.issubdtype(actions["value"].dtype, jnp.integer)
    assert actions["fn"].has_enumerate_support  # discrete: DiscreteHMCGibbs / MixedHMC accept it
    assert actions["fn"].support.upper_bound == 4
    assert actions["fn"].batch_shape == (horizon,) and actions["fn"].event_shape == ()
    np.testing.assert_allclose(
        actions["fn"].log_prob(jnp.arange(5)[:, None]), np.full((5, horizon), -math.log(5))
    )
    assert [frame.name for frame in actions["cond_indep_stack"]] == ["time"]

    states, rewards = rollout(env, actions["value"])
    assert model_trace["states"]["type"] == "deterministic"
    assert model_trace["rewards"]["type"] == "deterministic"
    np.testing.assert_array_equal(model_trace["states"]["value"], states)
    np.testing.assert_array_equal(model_trace["rewards"]["value"], rewards)
    assert states.shape == (horizon + 1,) and rewards.shape == (horizon,)

    factor = model_trace["optimality"]
    assert factor["type"] == "sample" and factor["is_observed"]
    np.testing.assert_allclose(
        factor["fn"].log_prob(factor["value"]), beta * float(np.sum(rewards)), rtol=1e-14
    )


def test_trajectory_problem_reads_the_metadata():
    env = random_grid(1)

    def wrapper(env, horizon):
        trajectory_model(env, horizon, beta=0.3)

    mdp, horizon, beta = trajectory_problem(wrapper, (env, 4))
    assert mdp is env and horizon == 4 and beta == 0.3

    def other():
        numpyro.sample("actions", numpyro.distributions.Categorical(logits=jnp.zeros(5)))

    with pytest.raises(ValueError, match="trajectory_model"):
        trajectory_problem(other)


@pytest.mark.parametrize(
    ("start", "slip", "latents"),
    [
        (0, 0.0, ()),
        (0, 0.3, ("outcomes",)),
        (None, 0.0, ("start",)),
        (None, 0.3, ("start", "outcomes")),
    ],
)
def test_latent_sites_are_the_model_sites_besides_the_actions(start, slip, latents):
    """One function says which latent sites a world has (pgm_rl.worlds.latent_sites, new in
    issue 16); the model makes exactly those and trajectory_problem expects exactly those."""
    from pgm_rl.worlds import latent_sites

    grid = GridWorld([[0.0, 1.0], [-1.0, 2.0]], (1, 0), slip=slip)
    world = TabularMDP.from_outcomes(
        grid.outcome_states,
        grid.outcome_probs,
        grid.outcome_rewards,
        np.full(4, 0.25) if start is None else start,
    )
    assert latent_sites(world) == latents
    model_trace = handlers.trace(handlers.seed(trajectory_model, 0)).get_trace(world, 3, 1.0)
    latent = {name for name, site in model_trace.items() if site["type"] == "sample"}
    assert latent == {"actions", "optimality", *latents}
    assert trajectory_problem(trajectory_model, (world, 3, 1.0))[0] is world


@pytest.mark.parametrize(
    ("env", "horizon", "beta"),
    [
        (random_grid(2, (3, 3)), 5, 0.7),
        (random_grid(3, (4, 5)), 8, 2.0),
        (GridWorld.notebook(), 12, 0.05),
        (GridWorld.notebook(), 30, 100.0),
    ],
    ids=["3x3", "4x5", "notebook-small-beta", "notebook-beta100"],
)
def test_log_density_minus_log_z_is_exact_log_prob(env, horizon, beta):
    posterior = solve(env, horizon, beta)
    rng = np.random.default_rng(horizon)
    actions = rng.integers(0, env.n_actions, (20, horizon))
    # include the sequence the posterior favours, not only random (mostly improbable) ones
    policy, state, greedy = np.asarray(posterior.policy), env.start_state, []
    for t in range(horizon):
        greedy.append(int(np.argmax(policy[t, state])))
        state = int(env.next_state[state, greedy[-1]])
    actions = np.concatenate([actions, [greedy]])
    exact = np.asarray(posterior.log_prob(actions))
    density = jax.jit(lambda a: model_log_density(env, horizon, beta, a))
    for i, seq in enumerate(actions):
        value = float(density(jnp.asarray(seq)))
        assert abs((value - posterior.log_z) - exact[i]) <= 1e-9 * max(1.0, abs(value))
    # an independent check of the density itself: log prior + beta * return
    _, rewards = rollout(env, actions[0])
    expected = -horizon * math.log(5) + beta * math.fsum(np.asarray(rewards).tolist())
    value = float(model_log_density(env, horizon, beta, jnp.asarray(actions[0])))
    assert abs(value - expected) <= 1e-12 * max(1.0, abs(expected))


def test_log_density_under_vmap_and_jit():
    env = random_grid(4, (3, 4))
    horizon, beta = 6, 1.3
    actions = np.random.default_rng(0).integers(0, 5, (16, horizon))
    batched = jax.jit(jax.vmap(lambda a: model_log_density(env, horizon, beta, a)))(actions)
    assert batched.shape == (16,)
    looped = [float(model_log_density(env, horizon, beta, jnp.asarray(a))) for a in actions]
    np.testing.assert_allclose(batched, looped, rtol=1e-13)
    posterior = solve(env, horizon, beta)
    np.testing.assert_allclose(batched - posterior.log_z, posterior.log_prob(actions), atol=1e-9)


def test_log_density_gradient_in_beta_is_the_return():
    env = random_grid(5, (3, 3))
    actions = jnp.asarray([0, 3, 3, 1, 4])
    grad = jax.grad(lambda b: model_log_density(env, 5, b, actions))(0.5)
    _, rewards = rollout(env, actions)
    np.testing.assert_allclose(grad, np.sum(rewards), rtol=1e-13)


def test_predictive_prior_draws_are_consistent():
    env = random_grid(6, (3, 4))
    horizon, n = 6, 4000
    draws = Predictive(trajectory_model, num_samples=n)(jax.random.key(1), env, horizon, 1.0)
    assert draws["actions"].shape == (n, horizon)
    assert draws["states"].shape == (n, horizon + 1)
    assert draws["rewards"].shape == (n, horizon)
    states, rewards = rollout(env, draws["actions"])
    np.testing.assert_array_equal(draws["states"], states)
    np.testing.assert_array_equal(draws["rewards"], rewards)
    assert np.all(draws["states"][:, 0] == env.start_state)
    # prior draws: uniform actions at every step (4 sigma of a binomial frequency)
    freq = np.stack([np.mean(draws["actions"] == a, axis=0) for a in range(5)])
    assert np.max(np.abs(freq - 0.2)) < 4 * math.sqrt(0.2 * 0.8 / n)
    # same key -> same draws
    again = Predictive(trajectory_model, num_samples=n)(jax.random.key(1), env, horizon, 1.0)
    np.testing.assert_array_equal(again["actions"], draws["actions"])


def test_predictive_from_given_actions():
    env = random_grid(7, (2, 3))
    actions = np.random.default_rng(2).integers(0, 5, (10, 4))
    out = Predictive(trajectory_model, posterior_samples={"actions": jnp.asarray(actions)})(
        jax.random.key(0), env, 4, 0.5
    )
    np.testing.assert_array_equal(out["states"], rollout(env, actions)[0])


def test_works_with_a_plain_tabular_mdp():
    mdp = TabularMDP([[1, 0], [2, 1], [2, 2]], [[0.0, -1.0], [1.0, -1.0], [5.0, 5.0]], 0)
    actions = jnp.asarray([0, 1, 0])
    value = model_log_density(mdp, 3, 2.0, actions)
    np.testing.assert_allclose(value, -3 * math.log(2) + 2.0 * (0.0 - 1.0 + 1.0), rtol=1e-14)


def call_model(env, horizon, beta):
    handlers.trace(handlers.seed(trajectory_model, 0)).get_trace(env, horizon, beta)


@pytest.mark.parametrize(
    ("horizon", "error"),
    [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError), ("3", TypeError)],
)
def test_bad_horizon(horizon, error):
    with pytest.raises(error, match="horizon"):
        call_model(random_grid(0), horizon, 1.0)


@pytest.mark.parametrize(
    ("beta", "error"),
    [
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        ("x", TypeError),
        (True, TypeError),
        (np.ones(2), TypeError),
    ],
)
def test_bad_beta(beta, error):
    with pytest.raises(error, match="beta"):
        call_model(random_grid(0), 3, beta)


@pytest.mark.parametrize("env", [None, np.zeros((3, 3)), "notebook"])
def test_bad_env(env):
    with pytest.raises(TypeError, match="env"):
        call_model(env, 3, 1.0)
