"""Chains sharded over devices (``pgm_rl.kernels.shard_chains``): the same draws on 1, 3 and 8
devices, and under NumPyro's ``chain_method="parallel"``, for every registry kernel.

Several devices need ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX starts,
so one subprocess runs every multi-device check and prints a JSON summary; bad input is checked
here on a 1-device mesh.
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
from pgm_rl.kernels import KERNELS, chains_mesh, shard_chains

# Runs with JAX's default float32 (as users do). Argument: the kernels to check.
SCRIPT = r"""
import json, sys
import jax
import numpy as np
from numpyro.infer import MCMC
import pgm_rl
from pgm_rl.diagnostics import to_datatree
from pgm_rl.kernels import KERNELS, chains_mesh, make_kernel, record_of, shard_chains

ENV = pgm_rl.GridWorld(np.random.default_rng(1).uniform(-2, 2, (3, 3)), (1, 1))
HORIZON, BETA, CHAINS = 4, 0.5, 8
DEVICES = jax.devices()
METHODS = {
    "8 devices": shard_chains(chains_mesh()),  # 8 chains: no padding
    "3 devices": shard_chains(chains_mesh(DEVICES[:3])),  # padded to 9, trimmed
    "parallel": "parallel",  # NumPyro's pmap over the 8 local devices
}


def run(name, chain_method, mcmc=None):
    if mcmc is None:
        mcmc = MCMC(make_kernel(name), num_warmup=3, num_samples=4, num_chains=CHAINS,
                    chain_method=chain_method, progress_bar=False)
        key = jax.random.key(0)
    else:  # go on from the last state
        mcmc.post_warmup_state = mcmc.last_state
        key = mcmc.post_warmup_state.rng_key
    mcmc.run(key, ENV, HORIZON, BETA, extra_fields=record_of(mcmc.sampler).extra_fields)
    return mcmc


def draws(mcmc):
    found = {**mcmc.get_samples(group_by_chain=True), **mcmc.get_extra_fields(group_by_chain=True)}
    return {name: np.asarray(value) for name, value in found.items()}


def compare(a, b):  # [integer draws equal, largest float difference relative to 1 + |b|]
    a, b = draws(a), draws(b)
    assert sorted(a) == sorted(b), (sorted(a), sorted(b))
    ints = all(np.array_equal(a[k], b[k]) for k in a if not np.issubdtype(a[k].dtype, np.floating))
    floats = [np.max(np.abs(a[k] - b[k]) / (1 + np.abs(b[k])), initial=0.0)
              for k in a if np.issubdtype(a[k].dtype, np.floating)]
    return [bool(ints), float(max(floats, default=0.0))]


summary = {"devices": len(DEVICES), "kernels": {}}
for name in sys.argv[1:]:
    base = run(name, KERNELS[name].chain_method)
    runs = {label: run(name, method) for label, method in METHODS.items()}
    summary["kernels"][name] = {label: compare(mcmc, base) for label, mcmc in runs.items()}
    if name == "trajectory-mh":
        sharded = runs["8 devices"]
        actions = sharded.get_samples(group_by_chain=True)["actions"]
        summary["actions_devices"] = len(actions.sharding.device_set)
        summary["actions_shape"] = list(actions.shape)
        tree, tree_base = to_datatree(sharded, ENV), to_datatree(base, ENV)
        summary["datatree"] = bool(
            np.array_equal(tree.posterior["actions"].values, tree_base.posterior["actions"].values)
            and np.allclose(tree.sample_stats["acceptance_rate"].values,
                            tree_base.sample_stats["acceptance_rate"].values, rtol=0, atol=1e-5)
        )
        # go on from the last (trimmed) state: its padding is redone
        summary["continued"] = compare(run(name, None, runs["3 devices"]), run(name, None, base))
print(json.dumps(summary))
"""

# One kernel run with "vectorized" chains and one with jax.vmap (NumPyro's built-ins) in the
# default run; the others in the slow run.
DEFAULT_KERNELS = ("trajectory-mh", "mixed-hmc")
# float32 rounding of sums of a few terms, relative to 1 + |value|
FLOAT_TOL = 1e-5


def run_on_8_devices(kernels):
    """The summary of SCRIPT on 8 virtual CPU devices."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    env["XLA_FLAGS"] = " ".join(
        filter(None, [env.get("XLA_FLAGS"), "--xla_force_host_platform_device_count=8"])
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(pgm_rl.__file__)), env.get("PYTHONPATH", "")]
    )
    env["JAX_COMPILATION_CACHE_DIR"] = jax.config.jax_compilation_cache_dir
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *kernels],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_same_draws(summary, kernels):
    """Integer draws (actions, states, outcomes, starts) equal; float ones (rewards, acceptance)
    equal to float32 rounding: XLA compiles a batch of N / D chains per device and may sum in
    another order than for N chains on one device (as it does for N and N / D chains there)."""
    assert summary["devices"] == 8
    assert sorted(summary["kernels"]) == sorted(kernels)
    for name, checks in summary["kernels"].items():
        assert sorted(checks) == ["3 devices", "8 devices", "parallel"], name
        for label, (ints, float_diff) in checks.items():
            assert ints, f"{name}, {label}: integer draws differ from one device"
            assert float_diff <= FLOAT_TOL, f"{name}, {label}: floats differ by {float_diff:.3g}"


def test_chains_sharded_give_the_same_draws_on_1_3_and_8_devices():
    summary = run_on_8_devices(DEFAULT_KERNELS)
    assert_same_draws(summary, DEFAULT_KERNELS)
    # the draws are split over the 8 devices, 8 chains x 4 draws x T = 4
    assert summary["actions_devices"] == 8
    assert summary["actions_shape"] == [8, 4, 4]
    assert summary["datatree"]
    ints, float_diff = summary["continued"]
    assert ints and float_diff <= FLOAT_TOL


@pytest.mark.slow
def test_every_registry_kernel_gives_the_same_draws_sharded_and_in_parallel():
    kernels = [name for name in KERNELS if name not in DEFAULT_KERNELS]
    assert_same_draws(run_on_8_devices(kernels), kernels)


# ----------------------------------------------------------------------------- bad input


def test_shard_chains_refuses_what_is_not_a_mesh():
    with pytest.raises(TypeError, match=r"mesh must be a jax\.sharding\.Mesh"):
        shard_chains(jax.devices())


def test_shard_chains_refuses_a_mesh_without_a_chains_axis():
    mesh = Mesh(np.asarray(jax.devices()[:1]), ("states",), axis_types=(AxisType.Auto,))
    with pytest.raises(ValueError, match=r"mesh must have an axis named 'chains'.*\('states',\)"):
        shard_chains(mesh)


def test_chains_mesh_refuses_what_are_not_devices():
    with pytest.raises(TypeError, match=r"devices must be a non-empty sequence of jax\.Device"):
        chains_mesh([])
    with pytest.raises(TypeError, match="devices must be"):
        chains_mesh(["cpu:0"])


def test_one_device_mesh_and_inconsistent_chain_counts():
    mesh = chains_mesh(jax.devices()[:1])
    assert mesh.axis_names == ("chains",) and mesh.axis_types == (AxisType.Auto,)
    method = shard_chains(mesh)
    assert repr(method) == "shard_chains(<Mesh {'chains': 1}>)"
    keys = jax.random.split(jax.random.key(0), 3)
    with pytest.raises(ValueError, match=r"num_chains.*\['3', '4'\]"):
        method(lambda args: args)((keys, None, {"actions": np.zeros((4, 5), np.int32)}))
