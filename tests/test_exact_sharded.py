"""``solve`` and ``soft_bellman`` with the states sharded over a mesh (pgm_rl.exact.sharding).

The multi-device checks run in ONE subprocess with 8 virtual CPU devices (the XLA flag must be
set before JAX starts); the bad-input checks need no devices and run here.
"""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh

import pgm_rl
from pgm_rl.exact import states_mesh

SCRIPT = r"""
import json, math
import jax
import numpy as np
from jax.sharding import AxisType, Mesh
jax.config.update("jax_enable_x64", True)
import pgm_rl
from pgm_rl.exact import states_mesh

assert len(jax.devices()) == 8, jax.devices()
rng = np.random.default_rng(0)
transition = rng.uniform(size=(13, 3, 13)) * (rng.uniform(size=(13, 3, 13)) < 0.6)
transition[np.arange(13), :, np.arange(13)] += 0.1
transition /= transition.sum(axis=2, keepdims=True)
start = rng.uniform(size=13)
start[0] = 0.0
worlds = {
    "grid 4x6": pgm_rl.GridWorld(rng.uniform(-2, 2, (4, 6)), (3, 0)),
    "grid 5x7": pgm_rl.GridWorld(rng.uniform(-2, 2, (5, 7)), (4, 0)),
    "slippery 5x5 terminal": pgm_rl.GridWorld(
        rng.uniform(-2, 2, (5, 5)), (4, 0), slip=0.2, terminal=[(0, 4), (2, 2)]
    ),
    "random start": pgm_rl.TabularMDP.from_probabilities(
        transition, rng.uniform(-2, 2, (13, 3, 13)), start / start.sum()
    ),
}
meshes = {"8 devices": states_mesh(), "3 devices": states_mesh(jax.devices()[:3])}
horizon, beta, tol = 7, 0.9, 1e-12


def close(a, b, what):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    finite = np.isfinite(b)
    assert np.array_equal(finite, np.isfinite(a)), what
    err = float(np.max(np.abs(a[finite] - b[finite]), initial=0.0))
    assert err <= tol * max(1.0, float(np.max(np.abs(b[finite]), initial=0.0))), (what, err)


def spec(array):
    return tuple(array.sharding.spec)


checked = []
for name, env in worlds.items():
    ref = pgm_rl.solve(env, horizon, beta)
    ref_soft = pgm_rl.soft_bellman(env, horizon, beta)
    draws = ref.sample(jax.random.key(1), 50)
    for mesh_name, mesh in meshes.items():
        where = f"{name}, {mesh_name}"
        post = pgm_rl.solve(env, horizon, beta, mesh=mesh)
        assert isinstance(post.log_z, float) and isinstance(post.expected_return, float)
        assert abs(post.log_z - ref.log_z) <= tol * max(1, abs(ref.log_z)), where
        assert abs(post.expected_return - ref.expected_return) <= tol * max(
            1, abs(ref.expected_return)
        ), where
        close(post.log_policy, ref.log_policy, where + " log_policy")
        close(post.state_marginals, ref.state_marginals, where + " marginals")
        close(post.action_marginals, ref.action_marginals, where + " action marginals")
        for mine, theirs in zip(post.messages, ref.messages):
            close(mine, theirs, where + " messages")
        sharded = env.n_states % mesh.shape["states"] == 0
        if sharded:  # nothing padded: the results stay split over the states
            assert spec(post.log_policy)[:2] == (None, "states"), post.log_policy.sharding
            assert spec(post.state_marginals)[:2] == (None, "states"), where
            assert spec(post.messages[0])[:2] == (None, "states"), where
            assert len(post.log_policy.addressable_shards) == mesh.size
            shard = post.log_policy.addressable_shards[0].data.shape
            assert shard == (horizon, env.n_states // mesh.size, env.n_actions), shard
        mine = post.sample(jax.random.key(1), 50)
        for key in draws:
            assert np.array_equal(mine[key], draws[key]), (where, key)
        close(
            post.log_prob(draws["actions"], draws["states"]),
            ref.log_prob(draws["actions"], draws["states"]),
            where + " log_prob",
        )
        cells = [0, env.n_states - 1]
        assert abs(post.reach_probability(cells) - ref.reach_probability(cells)) <= tol, where

        soft = pgm_rl.soft_bellman(env, horizon, beta, mesh=mesh)
        assert isinstance(soft.elbo, float), where
        assert abs(soft.elbo - ref_soft.elbo) <= tol * max(1, abs(ref_soft.elbo)), where
        assert abs(soft.expected_return - ref_soft.expected_return) <= tol * max(
            1, abs(ref_soft.expected_return)
        ), where
        close(soft.log_policy, ref_soft.log_policy, where + " soft log_policy")
        close(soft.state_marginals, ref_soft.state_marginals, where + " soft marginals")
        if sharded:
            assert spec(soft.log_policy)[:2] == (None, "states"), soft.log_policy.sharding
        checked.append([where, sharded])

# mesh with checkpoint=True: pgm_rl.exact.checkpointed gets the padded, placed dynamics
for name, mesh_name in (("slippery 5x5 terminal", "3 devices"), ("grid 4x6", "8 devices")):
    env, mesh, where = worlds[name], meshes[mesh_name], f"checkpoint, {name}, {mesh_name}"
    ref = pgm_rl.solve(env, horizon, beta)
    post = pgm_rl.solve(env, horizon, beta, checkpoint=True, mesh=mesh)
    assert abs(post.log_z - ref.log_z) <= tol * max(1, abs(ref.log_z)), where
    assert abs(post.expected_return - ref.expected_return) <= tol * max(
        1, abs(ref.expected_return)
    ), where
    steps = [0, 3, horizon]
    close(post.marginals_at(steps), np.asarray(ref.state_marginals)[steps], where)
    close(post.policy_at(2), ref.policy[2], where + " policy")
    soft, ref_soft = (
        pgm_rl.soft_bellman(env, horizon, beta, checkpoint=True, mesh=mesh),
        pgm_rl.soft_bellman(env, horizon, beta),
    )
    assert abs(soft.elbo - ref_soft.elbo) <= tol * max(1, abs(ref_soft.elbo)), where
    checked.append([where, None])

# S = 35 over 8 devices: the trimmed results are replicated on every device, so the solve is
# refused where those 8 copies would not fit (though one copy would)
from pgm_rl import _checks

limit, _checks.memory_limit = _checks.memory_limit, lambda: 60_000
try:
    pgm_rl.solve(worlds["grid 5x7"], horizon, beta, mesh=meshes["8 devices"])
except ValueError as error:
    assert "mesh=" in str(error) and "multiple of 8" in str(error), error
else:
    raise AssertionError("the replicated results were not refused")
pgm_rl.solve(worlds["grid 4x6"], horizon, beta, mesh=meshes["8 devices"])  # split: fits
pgm_rl.solve(worlds["grid 5x7"], horizon, beta, checkpoint=True, mesh=meshes["8 devices"])
_checks.memory_limit = limit

# a mesh with a second axis: the states split over "states", the rest replicated
grid = jax.make_mesh((4, 2), ("states", "other"), axis_types=(AxisType.Auto,) * 2)
env = worlds["grid 4x6"]
post = pgm_rl.solve(env, horizon, beta, mesh=grid)
close(post.log_policy, pgm_rl.solve(env, horizon, beta).log_policy, "2-D mesh")
assert len(post.log_policy.addressable_shards[0].data) == horizon
# jax.make_mesh's default Explicit axes are used as Auto ones (the gathers need propagation)
explicit = jax.make_mesh((8,), ("states",))
post = pgm_rl.solve(worlds["slippery 5x5 terminal"], horizon, beta, mesh=explicit)
assert abs(post.log_z - pgm_rl.solve(worlds["slippery 5x5 terminal"], horizon, beta).log_z) < 1e-12
print(json.dumps({"checked": checked}))
"""


def test_sharded_solve_equals_single_device_on_8_virtual_devices():
    env = dict(os.environ)
    env.update(
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=jax.config.jax_compilation_cache_dir or "",
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    package_root = os.path.dirname(os.path.dirname(pgm_rl.__file__))
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    checked = json.loads(result.stdout.strip().splitlines()[-1])["checked"]
    assert len(checked) == 10
    assert ["grid 4x6, 8 devices", True] in checked  # outputs checked sharded
    assert ["grid 5x7, 3 devices", False] in checked  # padded 35 -> 36, trimmed


def test_mesh_without_states_axis_is_refused():
    mesh = jax.make_mesh((1,), ("chains",), axis_types=(AxisType.Auto,))
    env = pgm_rl.GridWorld(np.zeros((2, 2)), (0, 0))
    for solver in (pgm_rl.solve, pgm_rl.soft_bellman):
        with pytest.raises(
            ValueError, match=r"mesh must have an axis named 'states'.*\('chains',\)"
        ):
            solver(env, 3, 1.0, mesh=mesh)


def test_mesh_that_is_not_a_mesh_is_refused():
    env = pgm_rl.GridWorld(np.zeros((2, 2)), (0, 0))
    for bad in ("states", jax.devices(), np.arange(2)):
        with pytest.raises(TypeError, match=r"mesh must be a jax\.sharding\.Mesh"):
            pgm_rl.solve(env, 3, 1.0, mesh=bad)
        with pytest.raises(TypeError, match=r"mesh must be a jax\.sharding\.Mesh"):
            pgm_rl.soft_bellman(env, 3, 1.0, mesh=bad)


def test_one_device_mesh_gives_the_same_answer():
    env = pgm_rl.GridWorld(np.random.default_rng(0).uniform(-2, 2, (3, 4)), (2, 0), slip=0.1)
    mesh = states_mesh()
    assert isinstance(mesh, Mesh) and mesh.axis_names == ("states",)
    ref = pgm_rl.solve(env, 4, 1.0)
    post = pgm_rl.solve(env, 4, 1.0, mesh=mesh)
    assert post.log_z == pytest.approx(ref.log_z, abs=1e-12)
    np.testing.assert_allclose(post.state_marginals, ref.state_marginals, atol=1e-12)


def test_states_mesh_refuses_bad_devices():
    with pytest.raises(TypeError, match=r"devices must be a non-empty sequence of jax\.Device"):
        states_mesh([])
    with pytest.raises(TypeError, match=r"devices must be a non-empty sequence of jax\.Device"):
        states_mesh(["cpu"])
