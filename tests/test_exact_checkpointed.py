"""checkpoint=True (issue 20, item 1): V kept every ~sqrt(T) steps, everything else recomputed
segment by segment, equal to the full mode (float64) with the same draws for the same key."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from test_stochastic import random_mdp, slippery_grid

import pgm_rl
from pgm_rl import GridWorld, _checks
from pgm_rl.exact import CheckpointedPosterior, CheckpointedSoftBellman, soft_bellman, solve
from pgm_rl.exact.checkpointed import segments
from pgm_rl.exact.checks import check_problem

TOL = 1e-12


def deterministic_grid():
    return GridWorld(np.random.default_rng(0).uniform(-2.0, 2.0, (4, 5)), (3, 0))


@pytest.mark.parametrize(
    ("make", "horizon"),
    [
        pytest.param(deterministic_grid, 1, id="grid-T1"),
        pytest.param(deterministic_grid, 9, id="grid-T9-square"),
        pytest.param(lambda: slippery_grid(0, (3, 3), 0.2, ((0, 2),)), 13, id="slippery-T13-prime"),
        pytest.param(lambda: random_mdp(2, 6, 3), 7, id="random-start-T7"),
    ],
)
@pytest.mark.parametrize("method", [solve, soft_bellman])
def test_checkpoint_equals_the_full_mode(make, horizon, method):
    env, beta = make(), 0.8
    full = method(env, horizon, beta)
    kept = method(env, horizon, beta, checkpoint=True)
    assert isinstance(kept, CheckpointedPosterior if method is solve else CheckpointedSoftBellman)
    value = "log_z" if method is solve else "elbo"
    assert getattr(kept, value) == pytest.approx(getattr(full, value), abs=TOL, rel=0)
    ts = [horizon, 0, horizon // 2, 0]  # any order, repeats
    np.testing.assert_allclose(
        kept.marginals_at(ts), np.asarray(full.state_marginals)[ts], atol=TOL, rtol=0
    )
    assert kept.marginals_at(horizon).shape == (env.n_states,)
    for t in {0, horizon // 2, horizon - 1}:
        np.testing.assert_allclose(kept.policy_at(t), full.policy[t], atol=TOL, rtol=0)
    assert kept.expected_return == pytest.approx(full.expected_return, abs=TOL, rel=0)
    np.testing.assert_allclose(kept.action_marginals, full.action_marginals, atol=TOL, rtol=0)
    assert kept.reach_probability([1, 2]) == pytest.approx(
        full.reach_probability([1, 2]), abs=TOL, rel=0
    )
    key = jax.random.key(7)
    draws, expected = kept.sample(key, 32), full.sample(key, 32)
    for name in ("actions", "states", "rewards"):
        np.testing.assert_array_equal(draws[name], expected[name])


def test_segments_cover_the_horizon():
    for horizon in (1, 2, 3, 4, 5, 9, 13, 1000):
        length, full, rest = segments(horizon)
        assert length == int(np.ceil(np.sqrt(horizon)))
        assert full * length + rest == horizon and 1 <= rest <= length


def test_public_names_and_repr():
    assert pgm_rl.CheckpointedPosterior is CheckpointedPosterior
    assert pgm_rl.CheckpointedSoftBellman is CheckpointedSoftBellman
    kept = pgm_rl.solve(deterministic_grid(), 4, 1.0, checkpoint=True)
    assert "log_z=" in repr(kept) and "segment_length=2" in repr(kept)


@pytest.fixture(scope="module")
def kept():
    return solve(deterministic_grid(), 5, 1.0, checkpoint=True)


@pytest.mark.parametrize("checkpoint", [1, "yes", None])
def test_checkpoint_must_be_a_bool(checkpoint):
    for method in (solve, soft_bellman):
        with pytest.raises(TypeError, match="checkpoint must be True or False"):
            method(deterministic_grid(), 3, 1.0, checkpoint=checkpoint)


@pytest.mark.parametrize("ts", [6, -1, [0, 6], [0.5], "1", [True], [[0, 1]]])
def test_marginals_at_bad_steps(kept, ts):
    with pytest.raises(ValueError, match="ts must"):
        kept.marginals_at(ts)


@pytest.mark.parametrize(("t", "error"), [(5, ValueError), (-1, ValueError), (1.0, TypeError)])
def test_policy_at_bad_step(kept, t, error):
    with pytest.raises(error, match=r"t must"):
        kept.policy_at(t)


@pytest.mark.parametrize("name", ["log_policy", "policy", "state_marginals", "messages"])
def test_what_is_not_kept_is_refused_clearly(kept, name):
    with pytest.raises(AttributeError, match=r"checkpoint=True does not keep .* policy_at\(t\)"):
        getattr(kept, name)


def test_log_prob_and_path_probability_are_refused_clearly(kept):
    actions = np.zeros((1, 5), int)
    for call in (lambda: kept.log_prob(actions), lambda: kept.path_probability(actions)):
        with pytest.raises(ValueError, match="checkpoint=True does not keep"):
            call()


def test_memory_estimate_accounts_for_the_mode(monkeypatch):
    """Under a 64 MiB limit a 100 x 100 grid at T = 1000 does not fit in full (about 0.6 GiB of
    (T, S, A) arrays; the error suggests checkpoint=True) and fits checkpointed (~20 MiB); a
    300 x 300 grid (~180 MiB checkpointed) does not. Before: ``checkpoint`` was no argument."""
    env, larger = GridWorld(np.zeros((100, 100)), (0, 0)), GridWorld(np.zeros((300, 300)), (0, 0))
    monkeypatch.setattr(_checks, "memory_limit", lambda: 2**26)
    with pytest.raises(ValueError, match=r"horizon=1000 needs .*use checkpoint=True"):
        solve(env, 1000, 1.0)
    check_problem(env, 1000, 1.0, checkpoint=True)
    with pytest.raises(ValueError, match=r"horizon=1000 needs .*checkpointed messages"):
        check_problem(larger, 1000, 1.0, checkpoint=True)


def test_marginals_at_no_steps(kept):
    assert kept.marginals_at([]).shape == (0, 20)


MESH_SCRIPT = """
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
from test_stochastic import slippery_grid
from pgm_rl.exact import soft_bellman, solve, states_mesh
env = slippery_grid(0, (3, 5), 0.2, ((0, 2),))  # 15 states, padded to 16 over 8 devices
for method, value in ((solve, "log_z"), (soft_bellman, "elbo")):
    full = method(env, 10, 0.8)
    kept = method(env, 10, 0.8, checkpoint=True, mesh=states_mesh())
    assert abs(getattr(full, value) - getattr(kept, value)) < 1e-12
    rows = np.asarray(kept.marginals_at([0, 5, 10]))
    assert np.abs(rows - np.asarray(full.state_marginals)[[0, 5, 10]]).max() < 1e-12
    assert np.abs(np.asarray(kept.policy_at(3)) - np.asarray(full.policy[3])).max() < 1e-12
    assert abs(kept.expected_return - full.expected_return) < 1e-12
    a, b = full.sample(jax.random.key(1), 16), kept.sample(jax.random.key(1), 16)
    assert all(np.array_equal(a[k], b[k]) for k in a)
print("ok")
"""


@pytest.mark.slow
def test_checkpoint_with_a_states_mesh_of_8_devices():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.path.dirname(__file__),
    )
    run = subprocess.run(
        [sys.executable, "-c", MESH_SCRIPT], capture_output=True, text=True, timeout=600, env=env
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
