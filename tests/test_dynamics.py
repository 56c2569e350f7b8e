"""rollout: the one definition of moving through a tabular MDP."""

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import random_grid

from pgm_rl import GridWorld, TabularMDP, rollout
from pgm_rl.dynamics import (
    draw_start,
    follow,
    log_values_to_go,
    returns_to_go,
    start_log_prob,
)


def python_rollout(mdp, actions, start_state):
    """Reference: a plain Python step loop over the tabular arrays."""
    state = start_state
    states, rewards = [state], []
    for action in actions:
        rewards.append(mdp.reward[state, action])
        state = int(mdp.next_state[state, action])
        states.append(state)
    return np.array(states), np.array(rewards)


@pytest.mark.parametrize("batch_shape", [(), (7,), (3, 4)])
@pytest.mark.parametrize("horizon", [1, 6])
def test_rollout_matches_python_loop(batch_shape, horizon):
    env = random_grid(3, (3, 4))
    rng = np.random.default_rng(horizon)
    actions = rng.integers(0, env.n_actions, (*batch_shape, horizon))
    states, rewards = rollout(env, actions)
    assert states.shape == (*batch_shape, horizon + 1)
    assert rewards.shape == (*batch_shape, horizon)
    assert np.issubdtype(states.dtype, np.integer)
    assert rewards.dtype == np.float64
    flat_actions = actions.reshape(-1, horizon)
    flat_states = np.asarray(states).reshape(-1, horizon + 1)
    flat_rewards = np.asarray(rewards).reshape(-1, horizon)
    for i, seq in enumerate(flat_actions):
        ref_states, ref_rewards = python_rollout(env, seq, env.start_state)
        np.testing.assert_array_equal(flat_states[i], ref_states)
        np.testing.assert_array_equal(flat_rewards[i], ref_rewards)


def test_rollout_with_per_sequence_start_states():
    env = random_grid(4, (4, 5))
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 5, (10, 8))
    starts = rng.integers(0, env.n_states, 10)
    states, rewards = rollout(env, actions, starts)
    for i in range(10):
        ref_states, ref_rewards = python_rollout(env, actions[i], int(starts[i]))
        np.testing.assert_array_equal(states[i], ref_states)
        np.testing.assert_array_equal(rewards[i], ref_rewards)


def test_rollout_known_path_on_notebook():
    env = GridWorld.notebook()
    # from (5, 0): up, up, right, stay, left, down
    states, rewards = rollout(env, np.array([0, 0, 3, 4, 2, 1]))
    cells = [env.cell_of(int(s)) for s in states]
    assert cells == [(5, 0), (4, 0), (3, 0), (3, 1), (3, 1), (3, 0), (4, 0)]
    np.testing.assert_array_equal(rewards, [-10, -1, -1, -1, -1, -10])


def test_rollout_on_a_tabular_mdp():
    mdp = TabularMDP([[1, 0], [2, 1], [2, 2]], [[0.0, -1.0], [1.0, -1.0], [5.0, 5.0]], 0)
    states, rewards = rollout(mdp, np.array([[0, 0, 0], [1, 0, 1]]))
    np.testing.assert_array_equal(states, [[0, 1, 2, 2], [0, 0, 1, 1]])
    np.testing.assert_array_equal(rewards, [[0.0, 1.0, 5.0], [-1.0, 0.0, -1.0]])


def test_rollout_jits_and_vmaps():
    env = random_grid(5, (3, 3))
    actions = np.random.default_rng(1).integers(0, 5, (6, 4))
    ref_states, ref_rewards = rollout(env, actions)
    states, rewards = jax.jit(jax.vmap(lambda a: rollout(env, a)))(actions)
    np.testing.assert_array_equal(states, ref_states)
    np.testing.assert_array_equal(rewards, ref_rewards)


def test_rollout_rejects_bad_actions_instead_of_clamping():
    """JAX clamps out-of-range gathers silently; concrete input is checked."""
    env = GridWorld([[0.0, 1.0], [2.0, 3.0]], (0, 0))
    with pytest.raises(ValueError, match="actions"):
        rollout(env, np.array([7, 1]))
    with pytest.raises(ValueError, match="actions"):
        rollout(env, np.array([-1, 1]))
    with pytest.raises(TypeError, match="actions"):
        rollout(env, np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="start_state"):
        rollout(env, np.array([0, 1]), start_state=4)


# ----------------------------------------------------------------------------- over outcomes


def test_deterministic_worlds_move_over_outcomes_with_index_0_and_log_prior_0():
    """One path for every kind: K = 1, every outcome index 0 with log prior 0, and a one-hot
    start drawn whatever the key with log prior 0."""
    env = random_grid(6, (3, 4))
    actions = np.random.default_rng(2).integers(0, 5, (5, 6))
    states, rewards = rollout(env, actions)
    start = jnp.full(5, env.start_state)
    path = follow(env, start, actions, jnp.zeros((5, 6), jnp.int32))
    np.testing.assert_array_equal(path[0], states)
    np.testing.assert_array_equal(path[1], rewards)
    np.testing.assert_array_equal(path[3], 0.0)
    np.testing.assert_array_equal(rollout(env, actions, outcomes=np.zeros((5, 6), int))[0], states)
    with pytest.raises(ValueError, match=r"outcomes must lie in \[0, 1\)"):
        rollout(env, actions, outcomes=np.ones((5, 6), int))
    for seed in range(5):
        np.testing.assert_array_equal(draw_start(jax.random.key(seed), env, (3,)), env.start_state)
    np.testing.assert_array_equal(start_log_prob(env, start), 0.0)
    g = returns_to_go(env, actions[0])
    np.testing.assert_allclose(log_values_to_go(env, actions[0], np.zeros(6, int), 0.5), 0.5 * g)


def test_returns_to_go_follow_given_outcomes_on_stochastic_dynamics():
    """Before: returns_to_go read next_state, so a stochastic MDP raised an AttributeError;
    now it follows the given outcome indices from every state, like rollout."""
    env = GridWorld(np.arange(6.0).reshape(2, 3), (1, 0), slip=0.4)
    rng = np.random.default_rng(3)
    actions = rng.integers(0, 5, 4)
    outcomes = rng.integers(0, env.n_outcomes, 4)
    g = np.asarray(returns_to_go(env, actions, outcomes))
    assert g.shape == (5, env.n_states)
    for t in range(5):
        for s in range(env.n_states):
            _, rewards = rollout(env, actions[t:], s, outcomes[t:])
            assert g[t, s] == pytest.approx(float(np.sum(rewards)), abs=1e-12)
    with pytest.raises(ValueError, match=r"pass outcomes .* to returns_to_go"):
        returns_to_go(env, actions)


def test_random_starts_are_drawn_from_start_probs():
    """Inverse CDF: frequencies within 5 binomial standard deviations; a state of probability
    0 is never drawn."""
    probs = np.array([0.0, 0.5, 0.0, 0.2, 0.3, 0.0])
    mdp = TabularMDP.from_probabilities(np.eye(6)[:, None, :], np.zeros((6, 1)), probs)
    n = 20_000
    draws = np.asarray(draw_start(jax.random.key(0), mdp, (n,)))
    counts = np.bincount(draws, minlength=6)
    assert counts[probs == 0].sum() == 0
    sd = np.sqrt(n * probs * (1 - probs))
    assert np.all(np.abs(counts - n * probs) <= 5 * sd)
    log_probs = np.asarray(start_log_prob(mdp, jnp.arange(6)))
    np.testing.assert_allclose(log_probs[probs > 0], np.log(probs[probs > 0]))
    assert np.all(log_probs[probs == 0] == -np.inf)


def test_eager_rollout_compiles_once_per_shape(caplog):
    """Before: every eager call traced and compiled its scan again (about 0.1-0.3 s each)."""
    env = random_grid(7, (3, 3))
    rollout(env, np.array([[0, 1, 2]]))
    with caplog.at_level(logging.WARNING, logger="jax"), jax.log_compiles():
        rollout(env, np.array([[3, 4, 0]]))
    assert "Compiling" not in caplog.text
