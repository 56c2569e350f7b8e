"""Stochastic MDPs: construction, the exact (optimistic) posterior, soft Bellman and policy
evaluation, each against brute-force enumeration of every (start, action, outcome) sequence."""

import math
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import logsumexp

import pgm_rl
from pgm_rl import GridWorld, TabularMDP
from pgm_rl.dynamics import rollout
from pgm_rl.exact import evaluate_policy, soft_bellman, solve

TOL = 1e-9


# ----------------------------------------------------------------------------- brute force


def enumerate_trajectories(mdp, horizon):
    """Every (start, action, outcome) sequence of positive prior probability.

    Returns states (N, T + 1), actions (N, T), rewards (N, T) and the log prior probability
    (N,) under the uniform action prior: log p0(s_0) + sum_t [log p(k_t | s_t, a_t) - log A].
    Two outcomes with the same next state but different rewards are different sequences.
    """
    ns = np.asarray(mdp.outcome_states)
    probs = np.asarray(mdp.outcome_probs)
    rewards_k = np.asarray(mdp.outcome_rewards)
    p0 = np.asarray(mdp.start_probs)
    _, n_actions, n_outcomes = ns.shape
    starts = np.flatnonzero(p0 > 0)
    states = starts[:, None]
    actions = np.zeros((starts.size, 0), int)
    rewards = np.zeros((starts.size, 0))
    log_prior = np.log(p0[starts])
    a_grid = np.repeat(np.arange(n_actions), n_outcomes)
    k_grid = np.tile(np.arange(n_outcomes), n_actions)
    for _ in range(horizon):
        s = states[:, -1]
        ok = probs[s[:, None], a_grid, k_grid] > 0
        row, j = np.nonzero(ok)
        a, k, here = a_grid[j], k_grid[j], s[row]
        states = np.concatenate([states[row], ns[here, a, k][:, None]], axis=1)
        actions = np.concatenate([actions[row], a[:, None]], axis=1)
        rewards = np.concatenate([rewards[row], rewards_k[here, a, k][:, None]], axis=1)
        log_prior = log_prior[row] + np.log(probs[here, a, k]) - math.log(n_actions)
    return states, actions, rewards, log_prior


def marginals(weights, states, actions, rewards, n_states, n_actions, cells=()):
    """State and action marginals, (t, s, a) joint, expected return and reach probability."""
    horizon = actions.shape[1]
    state_m = np.stack(
        [np.bincount(states[:, t], weights, minlength=n_states) for t in range(horizon + 1)]
    )
    action_m = np.stack(
        [np.bincount(actions[:, t], weights, minlength=n_actions) for t in range(horizon)]
    )
    joint = np.stack(
        [
            np.bincount(
                states[:, t] * n_actions + actions[:, t], weights, minlength=n_states * n_actions
            ).reshape(n_states, n_actions)
            for t in range(horizon)
        ]
    )
    reach = float(np.sum(weights[np.isin(states, list(cells)).any(axis=1)]))
    return state_m, action_m, joint, float(np.sum(weights * rewards.sum(axis=1))), reach


def brute_posterior(mdp, horizon, beta, cells=()):
    states, actions, rewards, log_prior = enumerate_trajectories(mdp, horizon)
    log_w = log_prior + beta * rewards.sum(axis=1)
    log_z = float(logsumexp(log_w))
    w = np.exp(log_w - log_z)
    state_m, action_m, joint, ret, reach = marginals(
        w, states, actions, rewards, mdp.n_states, mdp.n_actions, cells
    )
    return {
        "log_z": log_z,
        "weights": w,
        "states": states,
        "actions": actions,
        "state_marginals": state_m,
        "action_marginals": action_m,
        "joint": joint,
        "expected_return": ret,
        "reach": reach,
    }


def brute_policy(mdp, policy, beta, cells=()):
    """A policy executed in the true dynamics, by enumeration: marginals, return, ELBO, reach."""
    horizon = policy.shape[0]
    states, actions, rewards, log_prior = enumerate_trajectories(mdp, horizon)
    time = np.arange(horizon)
    pi = policy[time, states[:, :-1], actions]  # (N, T)
    keep = np.all(pi > 0, axis=1)
    states, actions, rewards, pi = states[keep], actions[keep], rewards[keep], pi[keep]
    log_q = log_prior[keep] + horizon * math.log(mdp.n_actions) + np.log(pi).sum(axis=1)
    q = np.exp(log_q)
    kl = np.sum(np.log(pi * mdp.n_actions), axis=1)
    elbo = float(np.sum(q * (beta * rewards.sum(axis=1) - kl)))
    state_m, action_m, _, ret, reach = marginals(
        q, states, actions, rewards, mdp.n_states, mdp.n_actions, cells
    )
    return {
        "elbo": elbo,
        "state_marginals": state_m,
        "action_marginals": action_m,
        "expected_return": ret,
        "reach": reach,
        "q": q,
        "states": states,
        "actions": actions,
    }


def random_mdp(seed, n_states=4, n_actions=2, random_start=True, reward_3d=True):
    """A dense random MDP with some impossible transitions, (S, A, S) rewards, random start."""
    rng = np.random.default_rng(seed)
    transition = rng.uniform(size=(n_states, n_actions, n_states))
    transition *= rng.uniform(size=transition.shape) < 0.6
    transition[np.arange(n_states), :, np.arange(n_states)] += 0.1  # every row possible
    transition /= transition.sum(axis=2, keepdims=True)
    shape = (n_states, n_actions, n_states) if reward_3d else (n_states, n_actions)
    reward = rng.uniform(-2.0, 2.0, shape)
    if random_start:
        start = rng.uniform(size=n_states)
        start[0] = 0.0
        start /= start.sum()
    else:
        start = int(rng.integers(n_states))
    return TabularMDP.from_probabilities(transition, reward, start)


def slippery_grid(seed, shape=(2, 3), slip=0.3, terminal=((0, 2),)):
    rng = np.random.default_rng(seed)
    return GridWorld(rng.uniform(-2.0, 2.0, shape), (shape[0] - 1, 0), slip=slip, terminal=terminal)


def random_policy(seed, horizon, n_states, n_actions, zeros=True):
    rng = np.random.default_rng(seed)
    policy = rng.dirichlet(np.ones(n_actions), size=(horizon, n_states))
    if zeros:
        policy[0, :, 0] = 0.0  # a policy that never takes action 0 at step 0
        policy /= policy.sum(axis=2, keepdims=True)
    return policy


PROBLEMS = [
    pytest.param(lambda: slippery_grid(0), 3, 0.8, id="slippery-2x3-terminal-T3"),
    pytest.param(lambda: slippery_grid(1, (2, 2), 0.5, ()), 4, 1.3, id="slippery-2x2-T4"),
    pytest.param(lambda: random_mdp(2), 4, 0.7, id="random-mdp-random-start-T4"),
    pytest.param(lambda: random_mdp(3, 3, 3, reward_3d=False), 3, 2.0, id="random-mdp-3x3-T3"),
    pytest.param(lambda: random_mdp(4, random_start=False), 4, 1.0, id="random-mdp-one-start"),
    pytest.param(
        lambda: TabularMDP.from_probabilities(
            GridWorld(np.arange(6.0).reshape(2, 3) / 3 - 1, (0, 0)).transition,
            GridWorld(np.arange(6.0).reshape(2, 3) / 3 - 1, (0, 0)).reward,
            np.full(6, 1 / 6),
        ),
        3,
        1.0,
        id="deterministic-dynamics-random-start",
    ),
]


# ----------------------------------------------------------------------------- the posterior


@pytest.mark.parametrize(("make", "horizon", "beta"), PROBLEMS)
def test_solve_matches_brute_force(make, horizon, beta):
    mdp = make()
    assert not mdp.is_deterministic
    cells = [mdp.n_states - 1]
    brute = brute_posterior(mdp, horizon, beta, cells)
    post = solve(mdp, horizon, beta)
    assert post.log_z == pytest.approx(brute["log_z"], abs=TOL)
    np.testing.assert_allclose(post.state_marginals, brute["state_marginals"], atol=TOL)
    np.testing.assert_allclose(post.action_marginals, brute["action_marginals"], atol=TOL)
    assert post.expected_return == pytest.approx(brute["expected_return"], abs=TOL)
    assert post.reach_probability(cells) == pytest.approx(brute["reach"], abs=TOL)
    # the policy wherever a state is reachable under the posterior
    occupied = brute["joint"].sum(axis=2)
    seen = occupied > 1e-12
    expected = brute["joint"][seen] / occupied[seen][:, None]
    np.testing.assert_allclose(np.asarray(post.policy)[seen], expected, atol=1e-8)
    # joint log-probabilities of every sequence (outcomes with equal states summed)
    states, actions = brute["states"], brute["actions"]
    keys = np.concatenate([states, actions], axis=1)
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    total = np.bincount(inverse.ravel(), brute["weights"])
    log_prob = np.asarray(post.log_prob(actions, states))
    np.testing.assert_allclose(log_prob, np.log(total[inverse.ravel()]), atol=1e-8)
    # path probabilities (summing over actions and outcomes)
    _, path_inverse = np.unique(states, axis=0, return_inverse=True)
    path_total = np.bincount(path_inverse.ravel(), brute["weights"])
    np.testing.assert_allclose(
        np.asarray(post.path_probability(states)), path_total[path_inverse.ravel()], atol=TOL
    )


@pytest.mark.parametrize(("make", "horizon", "beta"), PROBLEMS)
def test_soft_bellman_and_evaluate_policy_match_brute_force(make, horizon, beta):
    mdp = make()
    cells = [0, 1]
    soft = soft_bellman(mdp, horizon, beta)
    brute = brute_policy(mdp, np.asarray(soft.policy), beta, cells)
    assert soft.elbo == pytest.approx(brute["elbo"], abs=TOL)
    np.testing.assert_allclose(soft.state_marginals, brute["state_marginals"], atol=TOL)
    np.testing.assert_allclose(soft.action_marginals, brute["action_marginals"], atol=TOL)
    assert soft.expected_return == pytest.approx(brute["expected_return"], abs=TOL)
    assert soft.reach_probability(cells) == pytest.approx(brute["reach"], abs=TOL)
    log_z = solve(mdp, horizon, beta).log_z
    assert log_z >= soft.elbo - TOL
    for seed in range(3):
        policy = random_policy(seed, horizon, mdp.n_states, mdp.n_actions, zeros=seed == 0)
        evaluation = evaluate_policy(mdp, policy, beta)
        brute = brute_policy(mdp, policy, beta, cells)
        assert evaluation.elbo == pytest.approx(brute["elbo"], abs=TOL)
        np.testing.assert_allclose(evaluation.state_marginals, brute["state_marginals"], atol=TOL)
        assert evaluation.expected_return == pytest.approx(brute["expected_return"], abs=TOL)
        assert evaluation.reach_probability(cells) == pytest.approx(brute["reach"], abs=TOL)
        assert evaluation.elbo <= soft.elbo + TOL
        # joint log-probability of every trajectory the policy can produce
        keys = np.concatenate([brute["states"], brute["actions"]], axis=1)
        _, inverse = np.unique(keys, axis=0, return_inverse=True)
        total = np.bincount(inverse.ravel(), brute["q"])
        got = np.asarray(evaluation.log_prob(brute["actions"], brute["states"]))
        np.testing.assert_allclose(got, np.log(total[inverse.ravel()]), atol=1e-8)


@pytest.mark.parametrize(("make", "horizon", "beta"), PROBLEMS)
def test_soft_bellman_beats_the_posterior_policy_and_perturbations(make, horizon, beta):
    mdp = make()
    soft = soft_bellman(mdp, horizon, beta)
    post = solve(mdp, horizon, beta)
    executed = evaluate_policy(mdp, post.policy, beta)
    assert executed.elbo <= soft.elbo + TOL
    assert soft.elbo <= post.log_z + TOL
    rng = np.random.default_rng(0)
    base = np.asarray(soft.policy)
    for _ in range(5):
        noise = rng.normal(size=base.shape) * 0.05
        perturbed = base * np.exp(noise)
        perturbed /= perturbed.sum(axis=2, keepdims=True)
        assert evaluate_policy(mdp, perturbed, beta).elbo < soft.elbo
    assert evaluate_policy(mdp, base, beta).elbo == pytest.approx(soft.elbo, abs=TOL)


def test_stochastic_posterior_is_optimistic_on_a_slippery_cliff():
    # A goal behind a cliff edge: the posterior plans to reach it and slips less than it
    # would in the true dynamics; executed, its policy earns less than the soft-Bellman one.
    rewards = [[-1.0, -1.0, -1.0, -1.0], [-1.0, -100.0, -100.0, 10.0]]
    grid = GridWorld(rewards, (1, 0), slip=0.2, terminal=[(1, 1), (1, 2), (1, 3)])
    post = solve(grid, 6, 2.0)
    soft = soft_bellman(grid, 6, 2.0)
    executed = evaluate_policy(grid, post.policy, 2.0)
    assert post.log_z > soft.elbo + 0.1
    assert post.expected_return > executed.expected_return
    assert soft.expected_return > executed.expected_return
    goal = (1, 3)
    assert post.reach_probability(goal) > executed.reach_probability(goal)


@pytest.mark.parametrize("seed", range(3))
def test_deterministic_single_start_soft_bellman_equals_solve(seed):
    rng = np.random.default_rng(seed)
    grid = GridWorld(rng.uniform(-2, 2, (3, 4)), (2, 1), terminal=[(0, 3)])
    assert grid.is_deterministic
    for mdp in (grid, GridWorld(rng.uniform(-2, 2, (3, 3)), (1, 1)), random_mdp(seed, 4, 1, False)):
        if not mdp.is_deterministic:
            continue
        post, soft = solve(mdp, 5, 0.9), soft_bellman(mdp, 5, 0.9)
        np.testing.assert_allclose(soft.policy, post.policy, atol=TOL)
        assert soft.elbo == pytest.approx(post.log_z, abs=TOL)
        np.testing.assert_allclose(soft.state_marginals, post.state_marginals, atol=TOL)
        assert evaluate_policy(mdp, post.policy, 0.9).elbo == pytest.approx(post.log_z, abs=TOL)


def test_sample_stochastic_posterior_and_soft_policy():
    mdp = slippery_grid(5, (2, 2), 0.4, ())
    horizon, beta, n = 3, 1.0, 5_000
    for result in (solve(mdp, horizon, beta), soft_bellman(mdp, horizon, beta)):
        draws = result.sample(jax.random.key(1), n)
        states, actions, rewards = (np.asarray(draws[k]) for k in ("states", "actions", "rewards"))
        assert states.shape == (n, horizon + 1) and actions.shape == (n, horizon)
        assert rewards.shape == (n, horizon)
        # every draw has positive probability, and its rewards are those of its outcomes
        log_prob = np.asarray(result.log_prob(actions, states))
        assert np.all(np.isfinite(log_prob))
        empirical = np.stack(
            [np.bincount(states[:, t], minlength=mdp.n_states) / n for t in range(horizon + 1)]
        )
        tv = 0.5 * np.abs(empirical - np.asarray(result.state_marginals)).sum(axis=1)
        assert tv.max() < 4 * 0.5 * math.sqrt(mdp.n_states / n)
        same = result.sample(jax.random.key(1), n)
        np.testing.assert_array_equal(same["states"], states)


def test_log_prob_needs_states_for_stochastic_mdps():
    mdp = slippery_grid(0)
    post = solve(mdp, 3, 1.0)
    with pytest.raises(ValueError, match="states is required"):
        post.log_prob(jnp.zeros(3, jnp.int32))
    with pytest.raises(ValueError, match="states must have shape"):
        post.log_prob(jnp.zeros(3, jnp.int32), jnp.zeros(3, jnp.int32))
    # impossible transitions have probability 0
    assert post.log_prob(jnp.zeros(3, jnp.int32), jnp.array([3, 5, 5, 5])) == -jnp.inf
    # deterministic MDPs: states optional, and must be the rollout when given
    grid = GridWorld([[0.0, 1.0], [-1.0, 2.0]], (1, 0))
    post = solve(grid, 2, 1.0)
    actions = jnp.array([0, 3])
    states, _ = rollout(grid, actions)
    assert post.log_prob(actions, states) == pytest.approx(float(post.log_prob(actions)), abs=TOL)
    assert post.log_prob(actions, jnp.array([2, 2, 2])) == -jnp.inf


def test_reach_probability_cells_forms():
    grid = slippery_grid(0)
    post = solve(grid, 3, 1.0)
    state = grid.state_of(0, 2)
    value = post.reach_probability(state)
    assert post.reach_probability((0, 2)) == value
    assert post.reach_probability([(0, 2)]) == value
    assert post.reach_probability(np.arange(grid.n_states) == state) == value
    assert post.reach_probability([grid.start_state]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cells"):
        post.reach_probability([99])
    with pytest.raises(TypeError, match="cells"):
        post.reach_probability("goal")
    mdp = random_mdp(0)
    with pytest.raises(TypeError, match="no grid"):
        solve(mdp, 2, 1.0).reach_probability([(0, 1)])


# ----------------------------------------------------------------------------- construction


def test_gridworld_without_slip_or_terminal_is_unchanged():
    rng = np.random.default_rng(0)
    rewards = rng.uniform(-1, 1, (3, 4))
    grid = GridWorld(rewards, (1, 2))
    assert grid.is_deterministic and grid.n_outcomes == 1
    assert repr(grid) == "GridWorld(shape=(3, 4), start=(1, 2))"
    leaves, _ = jax.tree.flatten(grid)
    # the one layout: outcomes with K = 1 and probability 1, a one-hot start, the cell rewards
    assert [leaf.shape for leaf in leaves] == [(12, 5, 1)] * 3 + [(12,), (3, 4)]
    np.testing.assert_array_equal(grid.outcome_probs, 1.0)
    np.testing.assert_array_equal(grid.transition.sum(axis=2), 1.0)
    np.testing.assert_array_equal(grid.expected_reward, grid.reward)
    np.testing.assert_array_equal(grid.start_probs, np.eye(12)[grid.start_state])
    np.testing.assert_array_equal(grid.outcome_states[..., 0], grid.next_state)


def test_slippery_gridworld_moves():
    grid = GridWorld(np.arange(9.0).reshape(3, 3), (1, 1), slip=0.4)
    centre = grid.state_of(1, 1)
    up = grid.transition[centre, 0]
    assert up[grid.state_of(0, 1)] == pytest.approx(0.6)
    assert up[grid.state_of(1, 0)] == pytest.approx(0.2)
    assert up[grid.state_of(1, 2)] == pytest.approx(0.2)
    assert grid.transition[centre, 4, centre] == 1.0
    corner = grid.state_of(0, 0)
    left = grid.transition[corner, 2]  # left into the wall: stays, or slips up (wall) / down
    assert left[corner] == pytest.approx(0.8) and left[grid.state_of(1, 0)] == pytest.approx(0.2)
    assert grid.n_outcomes == 3 and not grid.is_deterministic
    np.testing.assert_allclose(
        grid.expected_reward[centre, 0], 0.6 * 1 + 0.2 * 3 + 0.2 * 5, atol=1e-12
    )
    # slip = 1: always perpendicular
    sideways = GridWorld(np.zeros((3, 3)), (1, 1), slip=1.0)
    assert sideways.transition[centre, 0, grid.state_of(0, 1)] == 0.0


def test_terminal_cells_are_absorbing_with_zero_reward():
    grid = GridWorld([[0.0, 5.0], [-1.0, -1.0]], (1, 0), terminal=[(0, 1)])
    assert grid.is_deterministic and grid.terminal_states == (1,)
    np.testing.assert_array_equal(grid.next_state[1], [1] * 5)
    np.testing.assert_array_equal(grid.reward[1], [0.0] * 5)
    assert grid.reward[0, 3] == 5.0  # entering the goal earns its reward, once
    post = solve(grid, 4, 1.0)
    assert post.reach_probability((0, 1)) > 0.5
    slippery = GridWorld([[0.0, 5.0], [-1.0, -1.0]], (1, 0), slip=0.2, terminal=[(0, 1)])
    np.testing.assert_array_equal(slippery.transition[1, :, 1], 1.0)
    np.testing.assert_array_equal(slippery.outcome_rewards[1], 0.0)


def test_from_probabilities_one_hot_gives_the_deterministic_fast_path():
    grid = GridWorld(np.random.default_rng(0).uniform(-1, 1, (3, 3)), (2, 0))
    mdp = TabularMDP.from_probabilities(grid.transition, grid.reward, grid.start_state)
    assert mdp.is_deterministic
    np.testing.assert_array_equal(mdp.next_state, grid.next_state)
    np.testing.assert_array_equal(mdp.reward, grid.reward)
    assert solve(mdp, 4, 1.0).log_z == pytest.approx(solve(grid, 4, 1.0).log_z, abs=TOL)
    # a one-hot start vector is a start state; (S, A, S) rewards of the state entered
    start = np.eye(grid.n_states)[grid.start_state]
    reward_3d = np.broadcast_to(grid.rewards.reshape(-1), grid.transition.shape)
    mdp = TabularMDP.from_probabilities(grid.transition, reward_3d, start)
    assert mdp.is_deterministic and mdp.start_state == grid.start_state
    np.testing.assert_array_equal(mdp.reward, grid.reward)


def test_from_outcomes_merges_duplicates_and_keeps_distinct_rewards():
    states = np.array([[[0, 0, 1]], [[1, 1, 1]]])
    probs = np.array([[[0.25, 0.25, 0.5]], [[0.5, 0.5, 0.0]]])
    rewards = np.array([[[1.0, -1.0, 0.0]], [[2.0, 2.0, 0.0]]])
    mdp = TabularMDP.from_outcomes(states, probs, rewards, [0.5, 0.5])
    assert mdp.n_outcomes == 3  # (0, +1), (0, -1), (1, 0) stay separate
    np.testing.assert_allclose(mdp.transition[0, 0], [0.5, 0.5])
    np.testing.assert_allclose(mdp.transition[1, 0], [0.0, 1.0])
    np.testing.assert_allclose(mdp.expected_reward[:, 0], [0.0, 2.0])
    brute = brute_posterior(mdp, 3, 1.5)
    assert solve(mdp, 3, 1.5).log_z == pytest.approx(brute["log_z"], abs=TOL)


def test_stochastic_mdps_are_pytrees():
    mdp = slippery_grid(0)
    leaves, treedef = jax.tree.flatten(mdp)
    again = jax.tree.unflatten(treedef, leaves)
    assert isinstance(again, GridWorld) and again.terminal == mdp.terminal
    np.testing.assert_array_equal(again.transition, mdp.transition)
    total = jax.jit(lambda m: jnp.sum(m.outcome_probs, axis=-1))(mdp)
    np.testing.assert_allclose(total, 1.0)
    post = solve(mdp, 3, 1.0)
    leaves, treedef = jax.tree.flatten(post)
    assert jax.tree.unflatten(treedef, leaves).log_z == post.log_z
    starts = random_mdp(0)
    np.testing.assert_allclose(jax.jit(lambda m: m.start_probs)(starts), starts.start_probs, atol=0)


def test_deterministic_only_code_refuses_stochastic_mdps_clearly():
    mdp = slippery_grid(0)
    with pytest.raises(AttributeError, match="stochastic dynamics, so it has no next_state"):
        mdp.next_state  # noqa: B018
    assert not hasattr(random_mdp(0), "start_state")
    # the model and the kernels now sample stochastic MDPs (tests/test_model_stochastic.py);
    # rollout needs the outcome indices
    with pytest.raises(ValueError, match="pass outcomes"):
        rollout(mdp, jnp.zeros(3, jnp.int32))


def _table(n_states=3, n_actions=2):
    transition = np.zeros((n_states, n_actions, n_states))
    transition[..., 0] = 0.5
    transition[..., 1] = 0.5
    return transition


@pytest.mark.parametrize(
    ("transform", "error", "match"),
    [
        (lambda t, r, s: (t * 0.9, r, s), ValueError, r"sum to 1.*state 0, action 0"),
        (lambda t, r, s: (np.where(t > 0, [-0.5, 1.5, 0.0], 0), r, s), ValueError, "transition"),
        (lambda t, r, s: (np.where(t > 0.4, np.nan, t), r, s), ValueError, "NaN"),
        (lambda t, r, s: (t[:, :, :2], r, s), ValueError, r"\(S, A, S\)"),
        (lambda t, r, s: (t.astype(str), r, s), TypeError, "transition"),
        (lambda t, r, s: (t, r[:2], s), ValueError, "reward must have shape"),
        (lambda t, r, s: (t, np.full_like(r, np.nan), s), ValueError, "reward"),
        (lambda t, r, s: (t, r, [0.5, 0.4, 0.0]), ValueError, "start must sum to 1"),
        (lambda t, r, s: (t, r, [0.5, 0.5]), ValueError, r"start .* shape \(3,\)"),
        (lambda t, r, s: (t, r, [1.5, -0.5, 0.0]), ValueError, "start"),
        (lambda t, r, s: (t, r, 3), ValueError, "start"),
        (lambda t, r, s: (t, r, True), TypeError, "start"),
    ],
)
def test_from_probabilities_bad_input(transform, error, match):
    args = transform(_table(), np.zeros((3, 2)), 0)
    with pytest.raises(error, match=match):
        TabularMDP.from_probabilities(*args)


def test_row_error_names_the_row():
    transition = _table()
    transition[2, 1] = [0.2, 0.2, 0.2]
    with pytest.raises(ValueError, match=r"transition\[2, 1\] \(state 2, action 1\) sums to 0\.6"):
        TabularMDP.from_probabilities(transition, np.zeros((3, 2)), 0)
    # within the 1e-6 tolerance: accepted and renormalised
    transition = _table()
    transition[0, 0, 0] += 5e-7
    mdp = TabularMDP.from_probabilities(transition, np.zeros((3, 2)), 0)
    np.testing.assert_allclose(mdp.transition.sum(axis=2), 1.0, atol=1e-15)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"slip": -0.1}, ValueError, r"slip must lie in \[0, 1\]"),
        ({"slip": 1.5}, ValueError, "slip"),
        ({"slip": float("nan")}, ValueError, "slip"),
        ({"slip": True}, TypeError, "slip"),
        ({"slip": "0.1"}, TypeError, "slip"),
        ({"terminal": [(5, 5)]}, ValueError, "terminal"),
        ({"terminal": (0, 1)}, TypeError, "terminal"),
        ({"terminal": 3}, TypeError, "terminal"),
    ],
)
def test_gridworld_bad_slip_or_terminal(kwargs, error, match):
    with pytest.raises(error, match=match):
        GridWorld(np.zeros((2, 2)), (0, 0), **kwargs)


@pytest.mark.parametrize(
    ("policy", "error", "match"),
    [
        (np.full((3, 6, 4), 0.25), ValueError, r"policy must have shape \(T, S, A\)"),
        (np.full((3, 6), 0.2), ValueError, "policy must have shape"),
        (np.full((3, 6, 5), 0.19), ValueError, r"policy\[0, 0\] .*sums to"),
        (np.full((3, 6, 5), np.nan), ValueError, "NaN"),
        (np.full((3, 6, 5), "a"), TypeError, "policy"),
    ],
)
def test_evaluate_policy_bad_input(policy, error, match):
    with pytest.raises(error, match=match):
        evaluate_policy(slippery_grid(0), policy, 1.0)


def test_public_names():
    for name in ("soft_bellman", "evaluate_policy", "SoftBellmanPolicy", "PolicyEvaluation"):
        assert getattr(pgm_rl, name) is getattr(pgm_rl.exact, name)
    assert callable(pgm_rl.envs.from_gymnasium)


# ----------------------------------------------------------------------------- precision

FLOAT32_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    from pgm_rl import GridWorld
    from pgm_rl.exact import solve, soft_bellman
    assert not jax.config.jax_enable_x64
    grid = GridWorld(GridWorld.notebook().rewards, (5, 0), slip=0.1, terminal=[(0, 5)])
    out = {}
    for name, fn in (("post", solve), ("soft", soft_bellman)):
        r = fn(grid, 12, 1e4)  # beta * reward up to 1e8
        out[name] = {
            "value": float(r.log_z if name == "post" else r.elbo),
            "log_policy": np.asarray(r.log_policy, np.float64).tolist(),
            "marginals": np.asarray(r.state_marginals, np.float64).tolist(),
            "dtype": str(r.log_policy.dtype),
        }
    json.dump(out, sys.stdout)
    """
)


def test_notebook_scale_slippery_float32_is_sound():
    """beta * reward ~ 1e8 on a slippery grid: float32 (in a subprocess) against float64."""
    import json

    run = subprocess.run(
        [sys.executable, "-c", FLOAT32_SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    f32 = json.loads(run.stdout)
    grid = GridWorld(GridWorld.notebook().rewards, (5, 0), slip=0.1, terminal=[(0, 5)])
    f64 = {"post": solve(grid, 12, 1e4), "soft": soft_bellman(grid, 12, 1e4)}
    for name, exact in f64.items():
        assert f32[name]["dtype"] == "float32"
        log_p32 = np.array(f32[name]["log_policy"])
        assert not np.any(np.isnan(log_p32)) and np.all(log_p32 <= 1e-6)
        p32, p64 = np.exp(log_p32), np.asarray(exact.policy)
        np.testing.assert_allclose(p32.sum(axis=2), 1.0, atol=1e-5)
        m32 = np.array(f32[name]["marginals"])
        np.testing.assert_allclose(m32.sum(axis=1), 1.0, atol=1e-4)
        value = exact.log_z if name == "post" else exact.elbo
        assert f32[name]["value"] == pytest.approx(value, rel=1e-7)
        if name == "post":  # the double-word posterior: the policy itself agrees closely
            assert np.max(np.abs(p32 - p64)) < 1e-4
            np.testing.assert_allclose(m32, exact.state_marginals, atol=1e-4)
