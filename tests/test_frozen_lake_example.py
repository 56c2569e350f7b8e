"""examples/frozen_lake.py: predicted success rates agree with Gymnasium's own env.step.

The soft-Bellman policy and the exact posterior's policy are each run for 2000 episodes in the
real FrozenLake-v1 (slippery 4x4, T = 20, beta = 5); the success rate achieved must lie within
4 binomial standard errors of ``evaluate_policy(...).reach_probability(goal)``, while the
posterior's own plan (what it believes it will achieve) lies far outside.
"""

import importlib.util
import os

import pytest

pytest.importorskip("gymnasium")

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "frozen_lake.py")


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("frozen_lake_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_success_rates_in_the_real_environment_agree(example):
    result = example.frozen_lake(episodes=2000, seed=0)
    assert result["log_z"] == pytest.approx(1.0419, abs=1e-4)
    assert result["elbo"] == pytest.approx(0.0795, abs=1e-4)
    assert result["planned"] == pytest.approx(0.652, abs=1e-3)
    for name, row in result["policies"].items():
        assert abs(row["achieved"] - row["predicted"]) < 4 * row["se"], name
    posterior = result["policies"]["posterior's policy"]
    assert posterior["predicted"] == pytest.approx(0.0258, abs=1e-4)
    assert result["policies"]["soft-Bellman policy"]["predicted"] == pytest.approx(0.0194, abs=1e-4)
    # the plan is optimistic: executed for real, the posterior's policy is nowhere near it
    assert result["planned"] - posterior["achieved"] > 50 * posterior["se"]


def test_main_prints_and_draws(example, tmp_path, capsys):
    example.main(["--out", str(tmp_path), "--episodes", "50", "--seed", "3"])
    out = capsys.readouterr().out
    assert (
        "log Z (exact posterior)    = 1.0419" in out
        and "ELBO* (soft-Bellman)       = 0.0795" in out
    )
    assert out.count("binomial SE") == 2
    assert (tmp_path / example.PICTURE).stat().st_size > 10_000
