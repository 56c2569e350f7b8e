"""pgm_rl.exact at extreme scales: huge beta * reward stays finite and normalised (issue 13, item 3).

The per-state maximum of the backward pass must be the maximum of the double-word value hi + lo:
actions that tie in hi but differ in lo once gave a positive difference to the "maximum", ``exp``
overflowed and NaN spread (first seen in float32 on the notebook grid at beta ~ 1e10.75).
"""

import json
import math
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import pgm_rl
from pgm_rl.messages import posterior_backward, soft_backward

HORIZONS = (10, 100)
# 10**0 ... 10**30 in quarter decades: beta * max|reward| (1e4) stays far below float32's 3.4e38
LOG10_BETAS = [quarter / 4 for quarter in range(0, 121)]

F32_SCRIPT = """
import json, sys
import numpy as np
import jax
assert not jax.config.jax_enable_x64
import pgm_rl
horizons, log10_betas = json.loads(sys.argv[2])
env = pgm_rl.GridWorld.notebook()
out = {}
for horizon in horizons:
    for index, log10_beta in enumerate(log10_betas):
        posterior = pgm_rl.solve(env, horizon, 10.0 ** log10_beta)
        assert posterior.log_policy.dtype == np.float32, posterior.log_policy.dtype
        out[f"log_z_{horizon}_{index}"] = np.float64(posterior.log_z)
        out[f"log_policy_{horizon}_{index}"] = np.asarray(posterior.log_policy)
        out[f"state_marginals_{horizon}_{index}"] = np.asarray(posterior.state_marginals)
np.savez(sys.argv[1], **out)
print("ok")
"""


def _run_float32(script, tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    package_root = os.path.dirname(os.path.dirname(pgm_rl.__file__))
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def float32_notebook(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("f32")
    path = tmp_path / "f32.npz"
    _run_float32(F32_SCRIPT, tmp_path, str(path), json.dumps([HORIZONS, LOG10_BETAS]))
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


@pytest.mark.parametrize("horizon", HORIZONS)
def test_float32_notebook_has_no_nan_up_to_beta_1e30(float32_notebook, horizon):
    env = pgm_rl.GridWorld.notebook()
    bad = []
    for index, log10_beta in enumerate(LOG10_BETAS):
        log_z = float(float32_notebook[f"log_z_{horizon}_{index}"])
        log_policy = float32_notebook[f"log_policy_{horizon}_{index}"]
        marginals = float32_notebook[f"state_marginals_{horizon}_{index}"]
        policy = np.exp(log_policy.astype(np.float64))
        ref = pgm_rl.solve(env, horizon, 10.0**log10_beta)  # float64 (conftest enables x64)
        problems = []
        if not math.isfinite(log_z):
            problems.append(f"log_z={log_z}")
        elif abs(log_z - ref.log_z) > 1e-6 * abs(ref.log_z):
            problems.append(f"log_z={log_z!r} vs float64 {ref.log_z!r}")
        if np.isnan(log_policy).any() or np.isposinf(log_policy).any():
            problems.append(f"{int(np.isnan(log_policy).sum())} NaN log_policy entries")
        elif np.abs(policy.sum(axis=-1) - 1).max() > 1e-5:
            problems.append(
                f"policy rows sum to {policy.sum(axis=-1).min()}..{policy.sum(axis=-1).max()}"
            )
        if not np.isfinite(marginals).all() or np.abs(marginals.sum(axis=1) - 1).max() > 1e-4:
            problems.append("state marginals not finite or not normalised")
        if problems:
            bad.append(f"beta=1e{log10_beta}: " + "; ".join(problems))
    assert not bad, f"T={horizon}, {len(bad)} of {len(LOG10_BETAS)} betas:\n" + "\n".join(bad[:10])


@pytest.mark.parametrize("backward", [posterior_backward, soft_backward])
def test_backward_takes_the_maximum_of_hi_plus_lo(backward):
    """Two actions tie in the high word and differ in the low word by far more than exp's range.

    float64 here: 1e20 has an ulp of 16384, so a low word of 8000 is a valid double-word part,
    and exp(8000) overflows, as the old hi-only maximum made it compute. Deterministic dynamics
    are one outcome (K = 1) of log probability 0.
    """
    next_state = jnp.asarray([[[0], [1]], [[1], [1]]], dtype=jnp.int32)
    reward_hi = jnp.asarray([[[1e20], [1e20]], [[0.0], [0.0]]])
    reward_lo = jnp.asarray([[[0.0], [8000.0]], [[0.0], [0.0]]])
    log_p = jnp.zeros_like(reward_hi)
    log_policy, (v_hi, v_lo) = backward(next_state, log_p, reward_hi, reward_lo, reward_hi, 1)
    v_hi, v_lo = v_hi.reshape(-1, 2)[0], v_lo.reshape(-1, 2)[0]  # V_0 ((T + 1, S) or (S,))
    log_policy = np.asarray(log_policy)
    assert np.isfinite(log_policy[0, 0, 1]) and log_policy[0, 0, 1] == pytest.approx(0.0, abs=1e-12)
    assert np.exp(log_policy[0, 0, 0]) == 0.0  # 8000 nats less likely
    np.testing.assert_allclose(np.exp(log_policy[0, 1]), [0.5, 0.5])
    # V_0(0) = 1e20 + 8000 + log(1) - log(2), carried exactly by hi + lo
    assert (float(v_hi[0]) - 1e20) + float(v_lo[0]) == pytest.approx(8000 - math.log(2), abs=1e-9)
    assert abs(float(v_lo[0])) <= np.spacing(float(v_hi[0]))  # a normalised pair
