"""The JAX classic-control problems match Gymnasium's env.step step for step (to 1e-6)."""

import gymnasium as gym
import jax
import numpy as np
import pytest

from pgm_rl.control import ControlProblem, cart_pole, mountain_car, pendulum


def gym_path(env, actions):
    """Gymnasium's states (entered, as float64) and rewards along ``actions`` (T, 1) until it
    terminates; also each step's state left, so a step can be replayed from it."""
    left, entered, rewards = [], [], []
    for u in actions:
        left.append(np.array(env.unwrapped.state, dtype=float))
        _, reward, terminated, _, _ = env.step(u)
        entered.append(np.array(env.unwrapped.state, dtype=float))
        rewards.append(float(reward))
        if terminated:
            break
    return np.array(left), np.array(entered), np.array(rewards)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pendulum_matches_gymnasium(seed):
    rng = np.random.default_rng(seed)
    env = gym.make("Pendulum-v1").unwrapped
    env.reset(seed=seed)
    actions = rng.normal(0.0, 3.0, (200, 1))  # beyond the torque limit too: clipped alike
    left, entered, rewards = gym_path(env, actions)
    problem = pendulum(x0=left[0])
    states, ours = problem.rollout(actions)
    np.testing.assert_allclose(states[1:], entered, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours, rewards, atol=1e-6, rtol=0)
    obs = env._get_obs()
    state = problem.state_from_observation(obs)
    wrapped = (entered[-1][0] + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(state, [wrapped, entered[-1][1]], atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_mountain_car_matches_gymnasium(seed):
    rng = np.random.default_rng(seed)
    env = gym.make("MountainCarContinuous-v0").unwrapped
    env.reset(seed=seed)
    # pushes that follow the velocity (with noise) reach the goal: the +100 step is covered
    actions = []
    left, entered, rewards = [], [], []
    for _ in range(400):
        u = np.array([np.sign(env.state[1] + 1e-9) * 1.3 + rng.normal(0.0, 0.5)])
        actions.append(u)
        step_left, step_entered, step_reward = gym_path(env, [u])
        left.append(step_left[0])
        entered.append(step_entered[0])
        rewards.append(step_reward[0])
        if step_reward[0] > 50:
            break
    assert rewards[-1] > 50, "the test's pushes should reach the goal"
    problem = mountain_car()
    # Gymnasium keeps the state in float32: replay each step from its state left
    step = jax.jit(jax.vmap(problem.step))
    ours_next, ours_reward = step(np.array(left), np.array(actions))
    np.testing.assert_allclose(ours_next, entered, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours_reward, rewards, atol=1e-6, rtol=0)
    # the whole path too, and the goal is absorbing
    states, ours = problem.with_start(left[0]).rollout(np.array([*actions, [1.0], [-1.0]]))
    np.testing.assert_allclose(states[1 : len(entered) + 1], entered, atol=1e-5, rtol=0)
    np.testing.assert_allclose(states[-1], states[-3])
    np.testing.assert_allclose(ours[-2:], 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cart_pole_matches_gymnasium_with_the_force_as_action(seed):
    rng = np.random.default_rng(seed)
    env = gym.make("CartPole-v1").unwrapped
    env.reset(seed=seed)
    forces = rng.normal(0.0, 8.0, (200, 1))
    left, entered, rewards = [], [], []
    for force in forces:
        # Gymnasium's push is +-force_mag: set its size to this step's |force| (clipped at 10)
        env.force_mag = min(abs(float(force[0])), 10.0)
        step_left, step_entered, step_reward = gym_path(env, [int(force[0] > 0)])
        left.append(step_left[0])
        entered.append(step_entered[0])
        rewards.append(step_reward[0])
        if abs(entered[-1][0]) > 2.4 or abs(entered[-1][2]) > 12 * 2 * np.pi / 360:
            break
    assert len(entered) < 200, "random forces should topple the pole"
    problem = cart_pole(x0=left[0])
    states, ours = problem.rollout(np.concatenate([forces[: len(entered)], [[5.0], [-5.0]]]))
    np.testing.assert_allclose(states[1 : len(entered) + 1], entered, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours[: len(entered)], rewards, atol=1e-6, rtol=0)
    # absorbing after the terminating step: stays, reward 0
    np.testing.assert_allclose(states[-1], states[-3])
    np.testing.assert_allclose(ours[-2:], 0.0)


def test_environments_are_control_problems_sharing_compiled_code():
    assert isinstance(pendulum(), ControlProblem)
    assert pendulum().dynamics == pendulum().dynamics  # equal constants: one compilation
    assert pendulum(g=9.81).dynamics != pendulum().dynamics
    assert pendulum().state_dim == 2 and cart_pole().state_dim == 4
    assert mountain_car().action_dim == 1
    np.testing.assert_allclose(pendulum().x0, [np.pi, 0.0])
    assert pendulum(noise_scale=0.01).is_stochastic
