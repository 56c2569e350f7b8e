"""ControlProblem and LinearQuadratic: a pytree with static functions, rollouts, clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pgm_rl.control import ControlProblem, LinearQuadratic


def double_integrator(noise_scale=None):
    return ControlProblem(
        lambda x, u: jnp.array([x[0] + 0.1 * x[1], x[1] + 0.1 * u[0]]),
        lambda x, u, x_next: -(x_next @ x_next) - 0.01 * u @ u,
        [1.0, 0.0],
        1,
        action_scale=0.5,
        noise_scale=noise_scale,
    )


def test_a_problem_is_a_pytree_of_its_arrays():
    problem = double_integrator(noise_scale=[0.1, 0.2])
    leaves = jax.tree_util.tree_leaves(problem)
    assert [leaf.shape for leaf in leaves] == [(2,), (1,), (2,)]
    assert problem.state_dim == 2 and problem.action_dim == 1 and problem.is_stochastic
    assert not double_integrator().is_stochastic
    np.testing.assert_allclose(problem.action_scale, [0.5])
    doubled = jax.tree_util.tree_map(lambda leaf: 2 * leaf, problem)
    assert isinstance(doubled, ControlProblem)
    np.testing.assert_allclose(doubled.noise_scale, [0.2, 0.4])


def test_step_and_rollout_follow_the_dynamics_and_the_reward_of_the_state_entered():
    problem = double_integrator()
    actions = np.array([[1.0], [-2.0], [0.5]])
    states, rewards = problem.rollout(actions)
    x = np.array([1.0, 0.0])
    expected_states, expected_rewards = [x], []
    for u in actions:
        x = np.array([x[0] + 0.1 * x[1], x[1] + 0.1 * u[0]])
        expected_states.append(x)
        expected_rewards.append(-(x @ x) - 0.01 * u @ u)
    np.testing.assert_allclose(states, expected_states)
    np.testing.assert_allclose(rewards, expected_rewards)
    noise = np.array([[0.1, 0.0], [0.0, -0.1], [0.2, 0.2]])
    noisy_states, _ = problem.rollout(actions, noise)
    x_next, reward = problem.step(states[0], actions[0], noise[0])
    np.testing.assert_allclose(noisy_states[1], x_next)
    np.testing.assert_allclose(reward, -(x_next @ x_next) - 0.01)


def test_rollouts_vmap_and_with_start_reuses_the_compiled_code():
    problem = double_integrator()
    traces = []

    @jax.jit
    def returns(problem, actions):
        traces.append(1)
        return jax.vmap(problem.rollout)(actions)[1].sum(-1)

    actions = jnp.ones((5, 4, 1))
    first = returns(problem, actions)
    moved = returns(problem.with_start(jnp.array([0.0, 1.0])), actions)
    assert len(traces) == 1  # a new start is new data, not a new program
    assert first.shape == (5,) and not np.allclose(first, moved)
    # traced starts are accepted (a receding-horizon loop under jit)
    plan = jax.jit(lambda x0: problem.with_start(x0).rollout(actions[0])[0][-1])
    np.testing.assert_allclose(plan(jnp.zeros(2)), [0.06, 0.4])


def test_state_from_observation_is_the_identity_unless_observe_is_given():
    problem = double_integrator()
    np.testing.assert_allclose(problem.state_from_observation([0.5, 2.0]), [0.5, 2.0])
    observed = ControlProblem(
        problem.dynamics, problem.reward, [1.0, 0.0], 1, observe=lambda obs: obs[::-1]
    )
    np.testing.assert_allclose(observed.state_from_observation([0.5, 2.0]), [2.0, 0.5])


def test_linear_quadratic_dynamics_and_reward():
    A = np.array([[1.0, 0.1], [0.0, 1.0]])
    B = np.array([[0.0], [0.1]])
    Q, R = np.diag([1.0, 0.5]), np.array([[0.2]])
    problem = LinearQuadratic(A, B, Q, R, [1.0, -1.0], noise_scale=0.1)
    assert problem.is_stochastic and problem.state_dim == 2 and problem.action_dim == 1
    assert len(jax.tree_util.tree_leaves(problem)) == 7  # x0, scales, A, B, Q, R
    u = np.array([2.0])
    x_next, reward = problem.step(problem.x0, u)
    np.testing.assert_allclose(x_next, A @ [1.0, -1.0] + B @ u)
    np.testing.assert_allclose(reward, -0.5 * (x_next @ Q @ x_next + u @ R @ u))
    np.testing.assert_allclose(problem.dynamics(problem.x0, u), x_next)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"action_scale": 0.0}, ["action_scale", "> 0"]),
        ({"action_scale": -1.0}, ["action_scale", "> 0"]),
        ({"action_scale": [1.0, 2.0]}, ["action_scale", "(1,)"]),
        ({"noise_scale": 0.0}, ["noise_scale", "> 0"]),
        ({"noise_scale": [1.0, 2.0, 3.0]}, ["noise_scale", "(2,)"]),
        ({"x0": [np.nan, 0.0]}, ["x0", "finite"]),
        ({"x0": [[1.0, 0.0]]}, ["x0", "shape"]),
        ({"dynamics": lambda x, u: x[:1]}, ["dynamics returned shape (1,) at step 0"]),
        ({"dynamics": lambda x, u: x / 0.0}, ["dynamics", "non-finite", "step 0"]),
        ({"reward": lambda x, u, y: jnp.inf}, ["reward", "non-finite", "step 0"]),
        ({"reward": lambda x, u, y: y}, ["reward returned shape (2,) at step 0"]),
        ({"dynamics": lambda x, u: x @ jnp.ones((3, 3))}, ["dynamics failed at step 0"]),
    ],
)
def test_bad_problems_are_refused_naming_the_argument(kwargs, words):
    args = {
        "dynamics": lambda x, u: x + u[0],
        "reward": lambda x, u, y: -(y @ y),
        "x0": [1.0, 0.0],
        "action_dim": 1,
    } | kwargs
    with pytest.raises(ValueError) as error:
        ControlProblem(**args)
    for word in words:
        assert word in str(error.value), str(error.value)


def test_non_finite_states_in_a_rollout_name_the_step():
    problem = ControlProblem(
        lambda x, u: x * jnp.exp(10.0 * u[0]), lambda x, u, y: -(y @ y), [1.0], 1
    )
    actions = np.array([[1.0], [1.0], [70.0], [1.0]])  # e^700 overflows at step 2
    with pytest.raises(ValueError, match="non-finite state at step 2"):
        problem.rollout(actions)
    rewarding = ControlProblem(lambda x, u: x + u, lambda x, u, y: jnp.log(y[0]), [1.0], 1)
    with pytest.raises(ValueError, match="reward returned a non-finite value at step 1"):
        rewarding.rollout(np.array([[1.0], [-3.0]]))
    with pytest.raises(ValueError, match=r"actions must have shape \(T, 1\)"):
        problem.rollout(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"noise must have shape \(3, 1\)"):
        problem.rollout(np.ones((3, 1)), np.ones((2, 1)))
    with pytest.raises(TypeError, match="dynamics must be a function"):
        ControlProblem("x + u", lambda x, u, y: 0.0, [1.0], 1)
    with pytest.raises(TypeError, match="action_dim must be a positive int"):
        ControlProblem(lambda x, u: x, lambda x, u, y: 0.0, [1.0], 1.5)
    with pytest.raises(ValueError, match=r"x0 must have shape \(1,\)"):
        problem.with_start([1.0, 2.0])


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"A": np.ones((2, 3))}, ["A", "square"]),
        ({"B": np.ones((3, 1))}, ["B", "(2, ?)"]),
        ({"Q": np.ones((3, 3))}, ["Q", "(2, 2)"]),
        ({"R": np.eye(2)}, ["R", "(1, 1)"]),
        ({"Q": np.array([[1.0, 0.5], [0.0, 1.0]])}, ["Q must be symmetric"]),
        ({"Q": np.diag([1.0, -1.0])}, ["Q must be positive semi-definite", "allow_indefinite"]),
        ({"R": np.array([[0.0]])}, ["R must be positive definite"]),
        ({"R": np.array([[-1.0]])}, ["R must be positive definite"]),
        ({"A": np.full((2, 2), np.nan)}, ["A must be finite"]),
        ({"x0": [1.0, 2.0, 3.0]}, ["x0", "(2,)"]),
        ({"action_scale": 0.0}, ["action_scale", "> 0"]),
        ({"noise_scale": -1.0}, ["noise_scale", "> 0"]),
    ],
)
def test_bad_linear_quadratic_problems_are_refused_naming_the_argument(change, words):
    args = {"A": np.eye(2), "B": np.ones((2, 1)), "Q": np.eye(2), "R": np.eye(1)}
    args |= {"x0": [1.0, 0.0]} | change
    with pytest.raises(ValueError) as error:
        LinearQuadratic(**args)
    for word in words:
        assert word in str(error.value), str(error.value)
    # an indefinite Q is accepted when asked for
    assert LinearQuadratic(
        np.eye(2),
        np.ones((2, 1)),
        np.diag([1.0, -1.0]),
        np.eye(1),
        [1.0, 0.0],
        allow_indefinite=True,
    )
