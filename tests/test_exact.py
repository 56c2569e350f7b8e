"""Exact inference (pgm_rl.solve) against brute-force enumeration and independent references."""

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import random_grid, tv_tolerance
from helpers import enumerate_posterior
from hypothesis import given, settings
from hypothesis import strategies as st

import pgm_rl
import pgm_rl.messages
from pgm_rl import GridWorld, TabularMDP, rollout, solve
from pgm_rl.diagnostics import empirical_state_marginals, tv_distance
from pgm_rl.exact import ExactPosterior

TOL = 1e-9


def brute_force_errors(env, horizon, beta):
    """Max absolute difference of each exact quantity to brute force."""
    posterior = solve(env, horizon, beta)
    ref = enumerate_posterior(env, horizon, beta)
    reached = ref["state_marginals"][:-1] > 1e-6  # (T, S): states the posterior visits
    ref_policy = ref["joint"] / np.where(reached, ref["state_marginals"][:-1], 1.0)[..., None]
    policy = np.asarray(posterior.policy)
    return {
        "log_z": abs(posterior.log_z - ref["log_z"]),
        "state_marginals": np.max(np.abs(posterior.state_marginals - ref["state_marginals"])),
        "action_marginals": np.max(np.abs(posterior.action_marginals - ref["action_marginals"])),
        "expected_return": abs(posterior.expected_return - ref["expected_return"])
        / max(1.0, abs(ref["expected_return"])),
        "log_prob": np.max(np.abs(posterior.log_prob(ref["actions"]) - ref["log_prob"])),
        "policy": np.max(np.abs(policy - ref_policy)[reached]),
    }


def assert_matches_brute_force(env, horizon, beta):
    errors = brute_force_errors(env, horizon, beta)
    for name, error in errors.items():
        assert error <= TOL, f"{name}: error {error:.3g} > {TOL} (T={horizon}, beta={beta})"


@settings(max_examples=12, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**31 - 1),
    height=st.integers(1, 4),
    width=st.integers(1, 5),
    horizon=st.integers(1, 6),
    beta=st.floats(0.0, 4.0),
)
def test_random_grids_match_brute_force(seed, height, width, horizon, beta):
    assert_matches_brute_force(random_grid(seed, (height, width)), horizon, beta)


@pytest.mark.parametrize(("seed", "shape"), [(11, (4, 5)), (12, (3, 3)), (13, (2, 4))])
def test_random_grids_match_brute_force_at_t6(seed, shape):
    assert_matches_brute_force(random_grid(seed, shape), 6, 1.0)


@pytest.mark.parametrize("beta", [0.05, 1.0, 100.0])
def test_notebook_matches_brute_force(beta):
    assert_matches_brute_force(GridWorld.notebook(), 6, beta)


def test_tabular_mdp_matches_brute_force():
    # a 4-state ring with 3 actions: forward, back, stay
    next_state = [[(s + 1) % 4, (s - 1) % 4, s] for s in range(4)]
    reward = [[0.5, -1.0, 0.0], [2.0, 0.0, -0.5], [-2.0, 1.0, 0.3], [0.0, 0.0, 1.0]]
    assert_matches_brute_force(TabularMDP(next_state, reward, 2), 5, 1.5)


def test_beta_zero_is_the_uniform_prior():
    env = random_grid(21, (3, 4))
    posterior = solve(env, 5, 0.0)
    assert abs(posterior.log_z) < 1e-14
    np.testing.assert_allclose(posterior.policy, 0.2, atol=1e-15)
    ref = enumerate_posterior(env, 5, 0.0)
    np.testing.assert_allclose(posterior.expected_return, ref["expected_return"], atol=1e-12)


def test_fields_and_invariants():
    env = random_grid(22, (4, 5))
    horizon, beta = 9, 1.7
    posterior = solve(env, horizon, beta)
    assert isinstance(posterior, ExactPosterior)
    assert posterior.mdp is env and posterior.horizon == horizon and posterior.beta == beta
    assert isinstance(posterior.log_z, float) and isinstance(posterior.expected_return, float)
    assert posterior.log_policy.shape == (horizon, 20, 5)
    assert posterior.policy.shape == (horizon, 20, 5)
    assert posterior.state_marginals.shape == (horizon + 1, 20)
    assert posterior.action_marginals.shape == (horizon, 5)
    assert posterior.log_policy.dtype == np.float64
    np.testing.assert_allclose(posterior.policy.sum(axis=-1), 1.0, atol=1e-14)
    np.testing.assert_allclose(posterior.state_marginals.sum(axis=-1), 1.0, atol=1e-14)
    np.testing.assert_allclose(posterior.action_marginals.sum(axis=-1), 1.0, atol=1e-14)
    assert posterior.state_marginals[0, env.start_state] == 1.0
    assert np.all(posterior.log_policy <= 1e-15)


# --------------------------------------------------------------------------- exact sampler


def test_sample_shapes_dtypes_and_consistency(small_problem):
    env, horizon, beta = small_problem
    posterior = solve(env, horizon, beta)
    draws = posterior.sample(jax.random.key(3), 1000)
    assert set(draws) == {"actions", "states", "rewards"}
    assert draws["actions"].shape == (1000, horizon)
    assert draws["states"].shape == (1000, horizon + 1)
    assert draws["rewards"].shape == (1000, horizon)
    assert np.issubdtype(draws["actions"].dtype, np.integer)
    assert np.issubdtype(draws["states"].dtype, np.integer)
    assert draws["rewards"].dtype == np.float64
    assert np.all((draws["actions"] >= 0) & (draws["actions"] < 5))
    states, rewards = rollout(env, draws["actions"])
    np.testing.assert_array_equal(draws["states"], states)
    np.testing.assert_array_equal(draws["rewards"], rewards)


def test_sample_same_key_same_draws(small_problem):
    posterior = solve(*small_problem)
    first = posterior.sample(jax.random.key(5), 300)
    second = posterior.sample(jax.random.key(5), 300)
    other = posterior.sample(jax.random.key(6), 300)
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
    assert not np.array_equal(first["actions"], other["actions"])
    # a legacy uint32 key works too
    legacy = posterior.sample(jax.random.PRNGKey(5), 10)
    assert legacy["actions"].shape == (10, small_problem[1])


def test_sample_marginals_within_tv_bound(small_problem):
    env, horizon, beta = small_problem
    posterior = solve(env, horizon, beta)
    n = 20_000
    draws = posterior.sample(jax.random.key(7), n)
    tv_states = tv_distance(
        empirical_state_marginals(draws["states"], env.n_states), posterior.state_marginals
    )
    tol = tv_tolerance(n, env.n_states)
    assert np.all(tv_states <= tol), (tv_states, tol)
    empirical_actions = np.stack([np.mean(draws["actions"] == a, axis=0) for a in range(5)], axis=1)
    assert np.all(tv_distance(empirical_actions, posterior.action_marginals) <= tv_tolerance(n, 5))
    # the check has power: the prior's marginals are far outside the bound
    prior = solve(env, horizon, 0.0)
    assert np.max(tv_distance(prior.state_marginals, posterior.state_marginals)) > 3 * tol


def test_sample_joint_distribution_within_tv_bound():
    env, horizon = random_grid(31, (2, 3)), 3
    posterior = solve(env, horizon, 1.2)
    ref = enumerate_posterior(env, horizon, 1.2)
    n = 50_000
    actions = np.asarray(posterior.sample(jax.random.key(8), n)["actions"])
    codes = (actions * 5 ** np.arange(horizon - 1, -1, -1)).sum(axis=1)  # matches np.indices order
    empirical = np.bincount(codes, minlength=5**horizon) / n
    assert tv_distance(empirical, np.exp(ref["log_prob"])) <= tv_tolerance(n, 5**horizon)


@pytest.mark.slow
def test_sample_marginals_notebook_many_draws():
    env, horizon, beta = GridWorld.notebook(), 15, 0.3
    posterior = solve(env, horizon, beta)
    n = 400_000
    draws = posterior.sample(jax.random.key(9), n)
    tv = tv_distance(
        empirical_state_marginals(draws["states"], env.n_states), posterior.state_marginals
    )
    assert np.all(tv <= tv_tolerance(n, env.n_states))
    np.testing.assert_allclose(
        np.mean(draws["rewards"].sum(axis=1)), posterior.expected_return, rtol=0.02
    )


# --------------------------------------------------------------------------- notebook scale


def reference_log_z_and_policy(env, horizon, beta):
    """Plain float64 backward recursion with max-shifted logsumexp (no double-word tricks)."""
    reward = beta * np.asarray(env.reward, dtype=np.float64)
    value = np.zeros(env.n_states)
    log_policy = np.empty((horizon, env.n_states, env.n_actions))
    for t in reversed(range(horizon)):
        q = reward + value[env.next_state]
        m = q.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(q - m).sum(axis=1, keepdims=True))
        log_policy[t] = q - m - log_sum
        value = (m + log_sum)[:, 0] - math.log(env.n_actions)
    return float(value[env.start_state]), log_policy


def best_return(env, horizon):
    """Max-plus recursion: the largest return of any action sequence."""
    best = np.zeros(env.n_states)
    for _ in range(horizon):
        best = (env.reward + best[env.next_state]).max(axis=1)
    return float(best[env.start_state])


def test_notebook_scale_float64():
    env = GridWorld.notebook()
    horizon, beta = 100, 100.0
    posterior = solve(env, horizon, beta)
    ref_log_z, ref_log_policy = reference_log_z_and_policy(env, horizon, beta)
    assert abs(posterior.log_z - ref_log_z) / abs(ref_log_z) < 1e-12
    for array in (posterior.log_policy, posterior.state_marginals, posterior.action_marginals):
        assert not np.any(np.isnan(array))
    np.testing.assert_allclose(posterior.policy, np.exp(ref_log_policy), atol=1e-8)
    np.testing.assert_allclose(posterior.state_marginals.sum(axis=1), 1.0, atol=1e-12)
    # at beta = 100 the posterior is the best path: reach the goal, then stay
    best = best_return(env, horizon)
    assert abs(posterior.expected_return - best) < 1e-9 * abs(best)
    assert posterior.state_marginals[-1, env.state_of(0, 5)] > 1 - 1e-12


F32_SCRIPT = """
import json, sys
import numpy as np
import jax
assert not jax.config.jax_enable_x64
import pgm_rl
posterior = pgm_rl.solve(pgm_rl.GridWorld.notebook(), 100, 100.0)
assert posterior.log_policy.dtype == np.float32, posterior.log_policy.dtype
np.savez(
    sys.argv[1],
    policy=np.asarray(posterior.policy),
    state_marginals=np.asarray(posterior.state_marginals),
    action_marginals=np.asarray(posterior.action_marginals),
)
print(json.dumps({"log_z": posterior.log_z, "expected_return": posterior.expected_return}))
"""


def test_notebook_scale_float32(tmp_path):
    path = tmp_path / "f32.npz"
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    # the child imports the same pgm_rl as this process
    package_root = os.path.dirname(os.path.dirname(pgm_rl.__file__))
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", F32_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    scalars = json.loads(result.stdout.strip().splitlines()[-1])
    f32 = np.load(path)
    ref = solve(GridWorld.notebook(), 100, 100.0)
    assert abs(scalars["log_z"] - ref.log_z) / abs(ref.log_z) < 1e-6
    assert abs(scalars["expected_return"] - ref.expected_return) / abs(ref.expected_return) < 1e-6
    for name in ("policy", "state_marginals", "action_marginals"):
        assert not np.any(np.isnan(f32[name])), name
        np.testing.assert_allclose(f32[name], getattr(ref, name), atol=1e-5, err_msg=name)


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("horizon", "error"), [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_solve_bad_horizon(horizon, error):
    with pytest.raises(error, match="horizon"):
        solve(random_grid(0), horizon, 1.0)


@pytest.mark.parametrize(
    ("beta", "error"),
    [(-1.0, ValueError), (float("nan"), ValueError), (float("inf"), ValueError), ("x", TypeError)],
)
def test_solve_bad_beta(beta, error):
    with pytest.raises(error, match="beta"):
        solve(random_grid(0), 3, beta)


@pytest.mark.parametrize("env", [None, np.zeros((3, 3)), "notebook"])
def test_solve_bad_env(env):
    with pytest.raises(TypeError, match="env"):
        solve(env, 3, 1.0)


def test_solve_too_large_is_refused_before_allocating():
    env = GridWorld(np.zeros((1000, 1000)), (0, 0))
    with pytest.raises(ValueError, match=r"horizon=1000000 needs about .* GiB"):
        solve(env, 10**6, 1.0)


@pytest.fixture(scope="module")
def posterior():
    return solve(random_grid(41, (2, 3)), 4, 0.5)


@pytest.mark.parametrize(
    ("key", "num_samples", "error", "match"),
    [
        (0, 10, TypeError, "key"),
        (np.array([1, 2, 3], dtype=np.uint32), 10, TypeError, "key"),
        (jax.random.split(jax.random.key(0), 2), 10, TypeError, "key"),
        (jax.random.key(0), 0, ValueError, "num_samples"),
        (jax.random.key(0), -3, ValueError, "num_samples"),
        (jax.random.key(0), 2.5, TypeError, "num_samples"),
        (jax.random.key(0), True, TypeError, "num_samples"),
        (jax.random.key(0), 10**15, ValueError, "num_samples"),
    ],
)
def test_sample_bad_input(posterior, key, num_samples, error, match):
    with pytest.raises(error, match=match):
        posterior.sample(key, num_samples)


@pytest.mark.parametrize(
    ("actions", "error"),
    [
        (np.zeros(3, dtype=int), ValueError),  # T = 4
        (np.zeros((2, 5), dtype=int), ValueError),
        (np.int64(0), ValueError),
        (np.array([0, 1, 5, 0]), ValueError),
        (np.array([[0, 1, 2, 3], [0, -1, 0, 0]]), ValueError),
        (np.zeros(4), TypeError),
        (np.zeros(4, dtype=bool), TypeError),
    ],
)
def test_log_prob_bad_input(posterior, actions, error):
    with pytest.raises(error, match="actions"):
        posterior.log_prob(actions)


def test_log_prob_batch_shapes(posterior):
    actions = np.random.default_rng(0).integers(0, 5, (3, 2, 4))
    values = posterior.log_prob(actions)
    assert values.shape == (3, 2)
    np.testing.assert_allclose(values[1, 0], posterior.log_prob(actions[1, 0]), rtol=1e-15)


def test_public_names():
    assert pgm_rl.solve is solve and pgm_rl.exact.solve is solve
    assert pgm_rl.ExactPosterior is ExactPosterior


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_most_probable_path_is_a_brute_force_maximiser(seed):
    """The max-product path has the largest posterior probability of all A^T sequences."""
    env, horizon, beta = random_grid(seed, (3, 4)), 5, 0.7
    truth = enumerate_posterior(env, horizon, beta)
    actions, states = pgm_rl.exact.most_probable_path(env, horizon, beta)
    assert actions.shape == (horizon,) and states.shape == (horizon + 1,)
    np.testing.assert_array_equal(states, np.asarray(rollout(env, actions)[0]))
    log_prob = float(solve(env, horizon, beta).log_prob(actions))
    assert log_prob == pytest.approx(truth["log_prob"].max(), abs=1e-9)


def test_most_probable_path_bad_input():
    with pytest.raises(ValueError, match="horizon"):
        pgm_rl.exact.most_probable_path(random_grid(0), 0, 1.0)
    with pytest.raises(ValueError, match="beta"):
        pgm_rl.exact.most_probable_path(random_grid(0), 3, -1.0)


def test_path_probability_sums_the_action_sequences_of_a_path():
    """Brute force: the probability of a state path is the sum over the action sequences
    that make it (walls and 'stay' give several)."""
    env, horizon, beta = GridWorld([[0.0, 1.0], [-1.0, 2.0]], (0, 0)), 3, 0.7
    truth = enumerate_posterior(env, horizon, beta)
    states = np.asarray(rollout(env, truth["actions"])[0])
    paths, inverse = np.unique(states, axis=0, return_inverse=True)
    expected = np.bincount(inverse.ravel(), weights=np.exp(truth["log_prob"]))
    posterior = solve(env, horizon, beta)
    np.testing.assert_allclose(posterior.path_probability(paths), expected, atol=1e-12)
    assert expected.sum() == pytest.approx(1.0)
    impossible = paths[0].copy()
    impossible[1] = 3  # (0, 0) -> (1, 1) is no move
    assert float(posterior.path_probability(impossible)) == 0.0
    assert float(posterior.path_probability(np.full(horizon + 1, 3))) == 0.0  # wrong start
    with pytest.raises(ValueError, match="states must have shape"):
        posterior.path_probability(paths[0][:-1])
    with pytest.raises(ValueError, match="states must lie in"):
        posterior.path_probability(np.full(horizon + 1, 4))
    with pytest.raises(TypeError, match="states must be an integer"):
        posterior.path_probability(paths[0].astype(float))


def test_exact_posterior_is_a_pytree_and_prints_short():
    posterior = solve(random_grid(0), 4, 0.5)
    leaves = jax.tree.leaves(posterior)
    assert any(leaf is posterior.log_policy for leaf in leaves)
    doubled = jax.tree.map(lambda x: x, posterior)
    assert isinstance(doubled, ExactPosterior) and doubled.horizon == 4
    log_z = jax.jit(lambda post: post.log_z + 0.0)(posterior)
    assert float(log_z) == pytest.approx(posterior.log_z)
    text = repr(posterior)
    assert "log_policy: (4, 9, 5)" in text and "log_z=" in text and len(text) < 400


def test_new_start_state_reuses_the_compiled_forward_pass():
    env = random_grid(0)
    solve(env, 4, 0.5)
    before = pgm_rl.messages.forward._cache_size()
    for start in ((0, 1), (2, 2)):
        solve(GridWorld(env.rewards, start), 4, 0.5)
    assert pgm_rl.messages.forward._cache_size() == before
