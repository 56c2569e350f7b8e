"""rollout: the one definition of moving through a tabular MDP."""

import jax
import numpy as np
import pytest
from conftest import random_grid

from pgm_rl import GridWorld, TabularMDP, rollout


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
