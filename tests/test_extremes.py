"""Huge numbers and huge sizes: a named ValueError/TypeError, never NaN, a hang or a JAX traceback.

Issue 13, items 4 to 6. Overflow: ``beta * max |reward|``, the largest return and
``horizon * beta * max |reward|`` are checked against the working dtype up front (float64 here,
as conftest enables x64; float32 in a subprocess). Sizes: every entry point estimates its memory
(``pgm_rl._checks.memory_limit``, monkeypatched small where the real limit depends on the
machine) and refuses counts beyond int32. Small holes: beta, actions, states, rewards,
n_states, zero draws and the CLI seed.
"""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest
from numpyro.handlers import seed, trace

import pgm_rl
from pgm_rl import _checks, cli
from pgm_rl.diagnostics import empirical_state_marginals, to_datatree
from pgm_rl.dynamics import rollout
from pgm_rl.exact import most_probable_path
from pgm_rl.kernels.stepwise_mh import stepwise_target
from pgm_rl.smc import SMCSaturationWarning, run_smc

# tiny SMC runs on degenerate problems: the saturation warning is expected and beside the point
pytestmark = pytest.mark.filterwarnings(
    f"ignore::{SMCSaturationWarning.__module__}.SMCSaturationWarning"
)

F64_MAX = float(np.finfo(np.float64).max)
LIMIT_64 = F64_MAX / _checks.RANGE_HEADROOM


def signed_grid(magnitude):
    """2x2 cells with rewards +-magnitude, 0 and magnitude / 2; start (1, 0)."""
    return pgm_rl.GridWorld([[magnitude, -magnitude], [0.0, magnitude / 2]], (1, 0))


def model_log_likelihood(env, horizon, beta):
    model_trace = trace(seed(pgm_rl.trajectory_model, 0)).get_trace(env, horizon, beta)
    site = model_trace["optimality"]
    return float(site["fn"].log_prob(site["value"]))


def smc_log_z(env, horizon, beta, num_particles=16):
    return float(run_smc(jax.random.key(0), env, horizon, beta, num_particles).log_z)


ENTRY_POINTS = {
    "solve": lambda env, horizon, beta: pgm_rl.solve(env, horizon, beta).log_z,
    "stepwise_target": lambda env, horizon, beta: stepwise_target(env, horizon, beta),
    "trajectory_model": model_log_likelihood,
    "run_smc": smc_log_z,
}


# ----------------------------------------------------------------------------- item 4: overflow


@pytest.mark.parametrize("name", sorted(ENTRY_POINTS))
@pytest.mark.parametrize(
    ("rewards", "horizon", "beta", "product"),
    [
        (1e308, 1, 1.0, "beta * max |reward|"),  # +-1e308 once: differences overflow
        (1e4, 3, 1e305, "beta * max |reward|"),  # beta * reward = inf
        (1e200, 3, 1e108, "beta * max |reward|"),  # each finite, the product not
        (1e307, 5, 1e-10, "horizon * max |reward|"),  # the return overflows, not beta * r
        (1e4, 10**6, 1e300, "horizon * beta * max |reward|"),
    ],
)
def test_overflowing_products_are_refused_in_float64(name, rewards, horizon, beta, product):
    with pytest.raises(ValueError, match=f"^{re.escape(product)} = "):
        ENTRY_POINTS[name](signed_grid(rewards), horizon, beta)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # from_outcomes' own
@pytest.mark.parametrize("name", ["solve", "soft_bellman"])
def test_stochastic_outcome_rewards_are_checked_not_their_mean(name):
    """Outcomes of +-1e308 average to a harmless expected reward; beta * r(s, a, s') is not."""
    next_states = np.array([[[0, 1], [1, 0]], [[1, 0], [0, 1]]])
    rewards = np.array([[[1e308, -1e308], [1.0, 2.0]], [[0.0, 1.0], [1e308, -1e308]]])
    mdp = pgm_rl.TabularMDP.from_outcomes(next_states, np.full((2, 2, 2), 0.5), rewards, 0)
    assert np.abs(mdp.expected_reward).max() < 10
    with pytest.raises(ValueError, match=r"^beta \* max \|reward\| = 1 \* 1e\+308"):
        getattr(pgm_rl.exact, name)(mdp, 3, 1.0)


def test_overflow_message_names_the_product_and_offers_no_float64_in_float64():
    with pytest.raises(ValueError) as error:
        pgm_rl.solve(pgm_rl.GridWorld.notebook(), 3, 1e305)
    message = str(error.value)
    assert "beta * max |reward| = 1e+305 * 1e+04" in message
    assert "overflows float64" in message and "smaller beta" in message
    assert "jax_enable_x64" not in message


def test_most_probable_path_checks_the_return_not_beta():
    env = signed_grid(1e307)
    with pytest.raises(ValueError, match=r"horizon [*] max [|]reward[|] = 5 [*] 1e[+]307"):
        most_probable_path(env, 5, 1.0)
    actions, _ = most_probable_path(pgm_rl.GridWorld.notebook(), 4, 1e305)  # beta unused
    assert actions.shape == (4,)


@pytest.mark.parametrize("horizon", [1, 3])
def test_just_below_the_limit_everything_stays_finite(horizon):
    magnitude = 0.999 * LIMIT_64 / horizon
    for grid in ([[magnitude, -magnitude], [-magnitude, magnitude]], [[magnitude] * 2] * 2):
        env = pgm_rl.GridWorld(grid, (1, 0))
        posterior = pgm_rl.solve(env, horizon, 1.0)
        policy = np.exp(np.asarray(posterior.log_policy))
        assert np.isfinite(posterior.log_z) and np.isfinite(posterior.expected_return)
        np.testing.assert_allclose(policy.sum(axis=-1), 1.0, atol=1e-9)
        np.testing.assert_allclose(np.asarray(posterior.state_marginals).sum(axis=1), 1.0)
        assert np.isfinite(model_log_likelihood(env, horizon, 1.0))
        result = run_smc(jax.random.key(1), env, horizon, 1.0, 32)
        assert np.isfinite(float(result.log_z)) and np.isfinite(float(result.log_z_se))
        assert np.isfinite(np.asarray(result.log_weights)).any()
        assert not np.isnan(np.asarray(result.log_weights)).any()
        assert most_probable_path(env, horizon, 1.0)[0].shape == (horizon,)


def test_cli_exact_refuses_overflowing_beta_in_one_line(capsys):
    code = cli.main(["exact", "--horizon", "3", "--beta", "1e305"])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert "nan" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "beta * max |reward|" in lines[0], err


F32_SCRIPT = """
import json
import jax
import numpy as np
assert not jax.config.jax_enable_x64
import pgm_rl
from numpyro.handlers import seed, trace
from pgm_rl.exact import most_probable_path
from pgm_rl.smc import run_smc

def grid(magnitude):
    return pgm_rl.GridWorld([[magnitude, -magnitude], [0.0, magnitude / 2]], (1, 0))

def model(env, horizon, beta):
    site = trace(seed(pgm_rl.trajectory_model, 0)).get_trace(env, horizon, beta)["optimality"]
    return float(site["fn"].log_prob(site["value"]))

calls = {
    "solve": lambda env, horizon, beta: pgm_rl.solve(env, horizon, beta).log_z,
    "model": model,
    "smc": lambda env, horizon, beta: float(
        run_smc(jax.random.key(0), env, horizon, beta, 16).log_z
    ),
    "map": lambda env, horizon, beta: float(most_probable_path(env, horizon, beta)[0][0]),
}
cases = {
    "rewards 1e39": (grid(1e39), 2, 1.0),
    "rewards 1e308": (grid(1e308), 1, 1.0),
    "beta 1e35": (pgm_rl.GridWorld.notebook(), 3, 1e35),
    "beta 1e300": (pgm_rl.GridWorld.notebook(), 3, 1e300),
    "just below": (grid(0.999 * float(np.finfo(np.float32).max) / 4 / 3), 3, 1.0),
}
out = {}
for case, args in cases.items():
    for name, call in calls.items():
        try:
            value = call(*args)
            out[f"{case}|{name}"] = "finite" if np.isfinite(value) else f"value {value}"
        except ValueError as error:
            out[f"{case}|{name}"] = "ValueError: " + str(error)
print(json.dumps(out))
"""


def run_float32(script):
    """Run ``script`` in a fresh interpreter without x64; its stdout."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    package_root = os.path.dirname(os.path.dirname(pgm_rl.__file__))
    env["PYTHONPATH"] = os.pathsep.join([package_root, env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_float32_overflow_is_refused_and_float64_suggested_where_it_helps():
    out = json.loads(run_float32(F32_SCRIPT).strip().splitlines()[-1])
    enable = 'jax.config.update("jax_enable_x64", True)'
    for name in ("solve", "model", "smc", "map"):
        # finite in float64, beyond float32: refused with the float64 suggestion
        assert out[f"rewards 1e39|{name}"].startswith("ValueError: max |reward| = 1e+39")
        assert enable in out[f"rewards 1e39|{name}"]
        # beyond float64's room too: refused, no suggestion that would not help
        assert out[f"rewards 1e308|{name}"].startswith("ValueError: max |reward|")
        assert enable not in out[f"rewards 1e308|{name}"]
        assert out[f"just below|{name}"] == "finite", out[f"just below|{name}"]
    for name in ("solve", "model", "smc"):
        assert out[f"beta 1e35|{name}"].startswith("ValueError: beta * max |reward| = 1e+35")
        assert "overflows float32" in out[f"beta 1e35|{name}"]
        assert enable in out[f"beta 1e35|{name}"]
        assert out[f"beta 1e300|{name}"].startswith("ValueError: beta = 1e+300")
        assert enable in out[f"beta 1e300|{name}"]  # 1e300 * 1e4 fits in float64
    assert out["beta 1e35|map"] == "finite"  # the MAP path does not scale by beta


# ----------------------------------------------------------------------------- item 5: sizes


@pytest.fixture
def one_mib(monkeypatch):
    """A 1 MiB memory limit, whatever this machine has.

    The sizes refused under it are small enough that code without the check runs them
    harmlessly (and the test fails); the issue's own sizes (GridWorld 40000x40000 or 1x10**8,
    10**11 particles) would exhaust a machine's memory there.
    """
    monkeypatch.setattr(_checks, "memory_limit", lambda: 2**20)


@pytest.mark.parametrize(
    ("name", "horizon"),
    [
        ("solve", 2**31 - 1),
        *[
            (name, horizon)
            for name in ("solve", "most_probable_path", "trajectory_model", "run_smc")
            for horizon in (10**11, 10**30)
        ],
    ],
)
def test_horizons_beyond_int32_are_refused(name, horizon):
    call = {**ENTRY_POINTS, "most_probable_path": most_probable_path}[name]
    with pytest.raises(ValueError, match="horizon must be at most 2147483646"):
        call(pgm_rl.GridWorld.notebook(), horizon, 1.0)


def test_int32_bounds_are_exact():
    """The boundaries themselves, on the pure checks (a run at these sizes would not fit)."""
    assert _checks.check_horizon(2**31 - 2) == 2**31 - 2
    with pytest.raises(ValueError, match="horizon must be at most 2147483646"):
        _checks.check_horizon(2**31 - 1)
    with pytest.raises(ValueError, match="num_particles must be at most 2147483647"):
        _checks.check_particles_fit(2**31, 1)
    with pytest.raises(ValueError, match=r"^num_particles=2147483647 needs about"):
        _checks.check_particles_fit(2**31 - 1, 10**4)


def test_most_probable_path_estimates_its_memory():
    with pytest.raises(ValueError, match=r"^horizon=1000000000 needs about .* GiB .* shorter"):
        most_probable_path(pgm_rl.GridWorld.notebook(), 10**9, 1.0)


def test_trajectory_model_estimates_its_memory(one_mib):
    with pytest.raises(ValueError, match=r"^horizon=100000 needs about .* GiB"):
        model_log_likelihood(pgm_rl.GridWorld.notebook(), 10**5, 1.0)


@pytest.mark.parametrize(
    ("num_particles", "match"),
    [
        (10**11, "num_particles must be at most 2147483647"),
        (10**5, r"^num_particles=100000 needs about .* GiB .* fewer particles"),
    ],
)
def test_run_smc_estimates_its_memory(one_mib, num_particles, match):
    with pytest.raises(ValueError, match=match):
        run_smc(jax.random.key(0), pgm_rl.GridWorld.notebook(), 3, 1.0, num_particles)


def test_cli_smc_refuses_too_many_particles_in_one_line(capsys, one_mib):
    code = cli.main(
        ["smc", "--horizon", "3", "--beta", "1", "--particles", "100000", "--runs", "1"]
    )
    _, err = capsys.readouterr()
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "num_particles=100000 needs about" in err and "Traceback" not in err


@pytest.mark.parametrize("shape", [(1, 10**5), (300, 300)])
def test_gridworld_estimates_its_memory_before_allocating(one_mib, shape):
    rewards = np.broadcast_to(np.float64(0.0), shape)  # no memory of its own
    label = f"<a {shape[0]}x{shape[1]} grid>"
    with pytest.raises(ValueError, match=rf"^rewards={re.escape(label)} needs about"):
        pgm_rl.GridWorld(rewards, (0, 0))


def test_exact_sample_memory_check_uses_the_shared_limit(one_mib):
    posterior = pgm_rl.solve(pgm_rl.GridWorld.notebook(), 10, 1.0)
    with pytest.raises(ValueError, match=r"^num_samples=10000 needs about"):
        posterior.sample(jax.random.key(0), 10**4)


# ----------------------------------------------------------------------------- item 6: holes


@pytest.mark.parametrize(
    ("beta", "error"),
    [
        (np.array("1.0"), TypeError),
        (np.array(1 + 0j), TypeError),
        (1 + 0j, TypeError),
        (np.bool_(True), TypeError),
        (10**400, ValueError),
        (-(10**400), ValueError),
    ],
)
@pytest.mark.parametrize("name", ["solve", "trajectory_model", "run_smc"])
def test_bad_beta_is_named(name, beta, error):
    with pytest.raises(error, match=r"^beta must be a finite real number"):
        ENTRY_POINTS[name](pgm_rl.GridWorld.notebook(), 3, beta)


def test_beta_as_0d_real_arrays_still_works():
    env = pgm_rl.GridWorld.notebook()
    reference = pgm_rl.solve(env, 3, 0.5).log_z
    for beta in (np.array(0.5), np.float32(0.5), jax.numpy.asarray(0.5)):
        assert pgm_rl.solve(env, 3, beta).log_z == pytest.approx(reference)


def test_string_actions_and_states_are_named():
    posterior = pgm_rl.solve(pgm_rl.GridWorld.notebook(), 3, 1.0)
    with pytest.raises(TypeError, match=r"^actions must be an integer array"):
        posterior.log_prob(np.array(["a", "b", "c"]))
    with pytest.raises(TypeError, match=r"^states must be an integer array"):
        posterior.path_probability(np.array(["a", "b", "c", "d"]))
    with pytest.raises(TypeError, match=r"^actions must be an integer array"):
        rollout(posterior.mdp, ["up", "up"])
    with pytest.raises(TypeError, match=r"^start_state must be an integer array"):
        rollout(posterior.mdp, [0, 1], start_state="a")


def test_bool_rewards_are_refused():
    with pytest.raises(
        TypeError, match=r"^rewards must be an array of finite real numbers, got bools"
    ):
        pgm_rl.GridWorld([[True, False], [False, True]], (0, 0))
    with pytest.raises(
        TypeError, match=r"^reward must be an array of finite real numbers, got bools"
    ):
        pgm_rl.TabularMDP([[0, 1], [1, 0]], np.ones((2, 2), bool), 0)
    pgm_rl.GridWorld([[1, 0], [0, 1]], (0, 0))  # ints still fine


@pytest.mark.parametrize(
    ("n_states", "error"), [(-1, ValueError), (0, ValueError), (2.5, TypeError)]
)
def test_empirical_state_marginals_names_n_states(n_states, error):
    with pytest.raises(error, match=r"^n_states must be a positive int"):
        empirical_state_marginals(np.zeros((2, 3), int), n_states)


@pytest.mark.parametrize("shape", [(0, 3), (2, 0, 3), (0, 5, 3)])
def test_to_datatree_refuses_zero_draws(shape):
    env = pgm_rl.GridWorld.notebook()
    with pytest.raises(ValueError, match="no draws"):
        to_datatree({"actions": np.zeros(shape, int)}, env, beta=1.0)


@pytest.mark.parametrize("seed_text", [str(2**32), str(2**64), str(10**30)])
@pytest.mark.parametrize("command", ["sample", "smc"])
def test_cli_seed_beyond_the_key_range_is_a_usage_error(capsys, command, seed_text):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--horizon", "3", "--seed", seed_text])
    _, err = capsys.readouterr()
    assert exit_.value.code == 2
    assert len(err.strip().splitlines()) == 1 and "--seed" in err and "2**32" in err, err
