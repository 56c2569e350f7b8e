"""from_gymnasium: Gymnasium toy-text environments as TabularMDPs, and the issue's numbers.

Needs the optional extra ``pgm_rl[gymnasium]`` (skipped without it, except the ImportError test).
Gymnasium 1.x registers FrozenLake-v1, CliffWalking-v1 (``is_slippery``; also
CliffWalkingSlippery-v1) and Taxi-v4.
"""

import sys

import jax
import numpy as np
import pytest

from pgm_rl.envs import from_gymnasium
from pgm_rl.exact import evaluate_policy, soft_bellman, solve


def test_without_gymnasium_the_import_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(ImportError, match=r"pgm_rl\[gymnasium\]"):
        from_gymnasium("FrozenLake-v1")


gym = pytest.importorskip("gymnasium")


def _goal(mdp):
    """The states of the map's 'G' cells."""
    return [s for s in range(mdp.n_states) if mdp.desc[s // mdp.shape[1]][s % mdp.shape[1]] == "G"]


def _gym_table(base, n_states, n_actions):
    """Dense P(s' | s, a) of Gymnasium's table, duplicates summed."""
    dense = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            for prob, next_state, _, _ in base.P[s][a]:
                dense[s, a, int(next_state)] += prob
    return dense


@pytest.mark.parametrize(
    ("env_id", "kwargs", "shape", "deterministic"),
    [
        ("FrozenLake-v1", {}, (4, 4), False),
        ("FrozenLake-v1", {"is_slippery": False}, (4, 4), True),
        ("FrozenLake-v1", {"map_name": "8x8"}, (8, 8), False),
        ("CliffWalking-v1", {}, (4, 12), True),
        ("CliffWalking-v1", {"is_slippery": True}, (4, 12), False),
    ],
)
def test_grid_environments_convert(env_id, kwargs, shape, deterministic):
    mdp = from_gymnasium(env_id, **kwargs)
    base = gym.make(env_id, **kwargs).unwrapped
    n_states, n_actions = base.observation_space.n, base.action_space.n
    assert (mdp.n_states, mdp.n_actions) == (n_states, n_actions)
    assert mdp.shape == shape and len(mdp.desc) == shape[0] and len(mdp.desc[0]) == shape[1]
    assert mdp.is_deterministic == deterministic
    assert mdp.start_state == int(np.argmax(base.initial_state_distrib))
    assert len(mdp.action_names) == n_actions
    transition = mdp.transition
    np.testing.assert_allclose(transition.sum(axis=2), 1.0, atol=1e-12)
    terminal = np.array(mdp.terminal_states)
    assert terminal.size and set(_goal(mdp)) <= set(mdp.terminal_states)
    # terminal states are absorbing with reward 0; every other row is Gymnasium's
    np.testing.assert_array_equal(transition[terminal, :, terminal], 1.0)
    np.testing.assert_array_equal(np.asarray(mdp.outcome_rewards)[terminal], 0.0)
    others = np.setdiff1d(np.arange(n_states), terminal)
    np.testing.assert_allclose(transition[others], _gym_table(base, n_states, n_actions)[others])
    assert mdp.state_of(*mdp.cell_of(5)) == 5


def test_slippery_cliff_keeps_outcomes_with_equal_states_but_different_rewards():
    mdp = from_gymnasium("CliffWalkingSlippery-v1")
    start = mdp.start_state  # (3, 0); "right" steps into the cliff, or slips up, or down (wall)
    right = mdp.action_names.index("right")
    outcomes = sorted(
        (int(s), float(r))
        for s, p, r in zip(
            mdp.outcome_states[start, right],
            mdp.outcome_probs[start, right],
            mdp.outcome_rewards[start, right],
            strict=True,
        )
        if p > 0
    )
    assert outcomes == [(24, -1.0), (36, -100.0), (36, -1.0)]
    assert mdp.expected_reward[start, right] == pytest.approx(-34.0)


def test_taxi():
    mdp = from_gymnasium("Taxi-v4")
    assert (mdp.n_states, mdp.n_actions) == (500, 6)
    assert not mdp.has_random_dynamics and mdp.has_random_start
    assert np.count_nonzero(mdp.start_probs) == 300
    assert mdp.shape is None and mdp.desc is not None
    assert mdp.action_names[-1] == "dropoff"
    post, soft = solve(mdp, 8, 1.0), soft_bellman(mdp, 8, 1.0)
    assert post.log_z > soft.elbo  # the posterior also picks the start
    np.testing.assert_allclose(np.asarray(post.state_marginals).sum(axis=1), 1.0, atol=1e-12)


def test_issue_numbers_frozen_lake():
    mdp = from_gymnasium("FrozenLake-v1", is_slippery=True)
    post, soft = solve(mdp, 20, 5.0), soft_bellman(mdp, 20, 5.0)
    executed = evaluate_policy(mdp, post.policy, 5.0)
    goal = _goal(mdp)
    assert post.log_z == pytest.approx(1.04, abs=0.005)
    assert soft.elbo == pytest.approx(0.08, abs=0.005)
    assert float(post.state_marginals[-1, goal].sum()) == pytest.approx(0.65, abs=0.005)
    assert executed.reach_probability(goal) == pytest.approx(0.03, abs=0.005)
    assert soft.reach_probability(goal) > executed.reach_probability(goal) * 0.5


def test_issue_numbers_cliff_walking():
    slippery = from_gymnasium("CliffWalking-v1", is_slippery=True)
    post, soft = solve(slippery, 20, 5.0), soft_bellman(slippery, 20, 5.0)
    executed = evaluate_policy(slippery, post.policy, 5.0)
    goal = _goal(slippery)
    assert post.log_z == pytest.approx(-83.0, abs=0.05)
    # The issue's -105.1 (and -166 executed) came from a dense table in which, of the two
    # entries "fell off the cliff (-100)" and "slipped into the wall (-1)" that both end at the
    # start, the last one written won; kept as separate outcomes (Gymnasium's dynamics) the
    # optimum is -110.44. Checked against env.step in test_policies_agree_with_env_step.
    assert soft.elbo == pytest.approx(-110.44, abs=0.01)
    assert soft.elbo < post.log_z
    assert post.reach_probability(goal) == pytest.approx(1.0, abs=0.005)
    assert soft.expected_return == pytest.approx(-20.0, abs=0.01)
    assert executed.expected_return == pytest.approx(-227.8, abs=0.1)
    plain = from_gymnasium("CliffWalking-v1")
    post, soft = solve(plain, 20, 5.0), soft_bellman(plain, 20, 5.0)
    assert soft.elbo == pytest.approx(post.log_z, abs=1e-9)
    np.testing.assert_allclose(soft.policy, post.policy, atol=1e-9)


def _run_in_env(env, policy, episodes, seed):
    """Total reward and whether 'G' was reached, per episode of ``policy`` (T, S, A) in env."""
    rng = np.random.default_rng(seed)
    horizon = policy.shape[0]
    returns, reached = np.zeros(episodes), np.zeros(episodes, bool)
    for episode in range(episodes):
        state, _ = env.reset(seed=int(rng.integers(2**31)))
        for t in range(horizon):
            probs = policy[t, state]
            action = int(rng.choice(probs.size, p=probs / probs.sum()))
            state, reward, terminated, _, _ = env.step(action)
            returns[episode] += reward
            if terminated:
                reached[episode] = reward > 0 or env.unwrapped.desc is None
                break
    return returns, reached


def test_policies_agree_with_env_step():
    """Predicted reach and return of both policies against Gymnasium's own env.step."""
    mdp = from_gymnasium("FrozenLake-v1", is_slippery=True)
    env = gym.make("FrozenLake-v1", is_slippery=True)
    soft = soft_bellman(mdp, 20, 5.0)
    episodes = 1500
    _, reached = _run_in_env(env, np.asarray(soft.policy), episodes, 0)
    predicted = soft.reach_probability(_goal(mdp))
    se = np.sqrt(predicted * (1 - predicted) / episodes)
    assert abs(reached.mean() - predicted) < 4 * se + 1e-3
    cliff = from_gymnasium("CliffWalkingSlippery-v1")
    env = gym.make("CliffWalkingSlippery-v1")
    post = solve(cliff, 20, 5.0)
    returns, _ = _run_in_env(env, np.asarray(post.policy), 600, 1)
    predicted = evaluate_policy(cliff, post.policy, 5.0).expected_return
    assert abs(returns.mean() - predicted) < 4 * returns.std() / np.sqrt(returns.size)


def test_environment_instances_and_pytrees():
    env = gym.make("FrozenLake-v1", map_name="4x4")
    mdp = from_gymnasium(env)
    assert mdp.env_id == "FrozenLake-v1"
    leaves, treedef = jax.tree.flatten(mdp)
    again = jax.tree.unflatten(treedef, leaves)
    assert again.desc == mdp.desc and again.terminal_states == mdp.terminal_states
    assert "FrozenLake-v1" in repr(mdp)


class _NoTable(gym.Env):
    observation_space = gym.spaces.Discrete(3)
    action_space = gym.spaces.Discrete(2)


@pytest.mark.parametrize(
    ("make", "kwargs", "error", "match"),
    [
        (lambda: "CartPole-v1", {}, TypeError, "Discrete"),
        (lambda: "Blackjack-v1", {}, TypeError, "Discrete"),
        (lambda: _NoTable(), {}, ValueError, "no transition table P"),
        (lambda: gym.make("FrozenLake-v1"), {"is_slippery": True}, TypeError, "make_kwargs"),
        (lambda: 3, {}, TypeError, "env_or_id"),
    ],
)
def test_bad_environments(make, kwargs, error, match):
    with pytest.raises(error, match=match):
        from_gymnasium(make(), **kwargs)


class _Table(gym.Env):
    """Two states, one action: P[0][0] leads to ``next_state`` (the table under test)."""

    observation_space = gym.spaces.Discrete(2)
    action_space = gym.spaces.Discrete(1)
    initial_state_distrib = np.array([1.0, 0.0])

    def __init__(self, next_state):
        self.P = {0: {0: [(1.0, next_state, 0.0, False)]}, 1: {0: [(1.0, 1, 0.0, False)]}}


@pytest.mark.parametrize("next_state", [1.7, 0.5, float("nan"), "1", True])
def test_a_non_integer_next_state_is_refused(next_state):
    # before: 1.7 and 0.5 were truncated to 1 and 0 silently
    with pytest.raises(ValueError, match=r"P\[0\]\[0\]: next_state must be an integer state"):
        from_gymnasium(_Table(next_state))


@pytest.mark.parametrize("next_state", [1, np.int64(1), 1.0, np.float32(1.0)])
def test_integer_next_states_of_any_type_convert(next_state):
    mdp = from_gymnasium(_Table(next_state))
    assert int(mdp.outcome_states[0, 0, 0]) == 1
