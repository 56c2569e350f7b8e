"""``pgm-rl fit`` and the saved policy as ``--proposal`` of ``smc`` and ``sample``.

In-process (``cli.main(argv)`` with ``capsys``) on tiny problems: the notebook grid at T = 3 and
slippery FrozenLake at T = 3.
"""

import os

import numpy as np
import pytest
import xarray as xr
from helpers import assert_one_line_error
from helpers import run_cli as run

from pgm_rl import cli, io
from pgm_rl.cli.common import ELBO_TRACE_FILE, POLICY_FILE
from pgm_rl.cli.options import PROPOSAL_KERNELS

TINY = ["--horizon", "3", "--beta", "0.5"]
QUIET = ["--no-progress"]


@pytest.fixture(scope="module")
def policy_file(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("fit") / "policy.nc")
    assert cli.main(["fit", *TINY, "--steps", "5", "--out", path, *QUIET]) == 0
    return path


def test_fit_exact_prints_trace_kl_and_saves_policy_and_plots(tmp_path, capsys):
    out_file, folder = str(tmp_path / "q.nc"), str(tmp_path / "plots")
    code, out, err = run(
        capsys, "fit", *TINY, "--steps", "6", "--out", out_file, "--plots", folder, *QUIET
    )
    assert code == 0, err
    assert "ELBO trace (6 steps" in out
    assert "final ELBO" in out and "log Z =" in out and "KL(q || exact posterior)" in out
    assert "ELBO*" not in out  # deterministic: ELBO* = log Z
    kl = float(out.split("log Z - ELBO = ")[1].split()[0])
    assert abs(kl) < 1e-9  # soft policy iteration is exact in T = 3 steps
    dt = io.load(out_file)
    assert dt["log_policy"].dims == ("time", "state", "action")
    assert dt["log_policy"].shape == (3, 36, 5)
    assert dt["elbo_trace"].shape == (6,)
    for name in ("horizon", "beta", "objective", "parametrization", "env", "env_fingerprint"):
        assert name in dt.attrs
    assert dt.attrs["horizon"] == 3 and dt.attrs["objective"] == "exact"
    np.testing.assert_allclose(np.exp(dt["log_policy"].values).sum(-1), 1.0, atol=1e-12)
    assert sorted(os.listdir(folder)) == sorted([ELBO_TRACE_FILE, POLICY_FILE])


def test_fit_score_stationary(capsys):
    code, out, err = run(
        capsys,
        "fit",
        *TINY,
        "--objective",
        "score",
        "--parametrization",
        "stationary",
        "--steps",
        "10",
        *QUIET,
    )
    assert code == 0, err
    assert "ELBO estimate" in out and "KL(q || exact posterior)" in out


def test_fit_stochastic_reports_elbo_star(capsys):
    pytest.importorskip("gymnasium")
    code, out, err = run(
        capsys,
        "fit",
        "--env",
        "FrozenLake-v1",
        "--env-kwargs",
        "is_slippery=true",
        *TINY,
        "--steps",
        "5",
        *QUIET,
    )
    assert code == 0, err
    assert "(stochastic dynamics: no policy reaches log Z)" in out
    star = float(out.split("ELBO* (soft-Bellman, the best policy) = ")[1].split(";")[0])
    elbo = float(out.split("final ELBO (exact evaluation of the policy) = ")[1].split()[0])
    assert elbo <= star + 1e-12 and star - elbo < 1e-9


def test_smc_with_proposal(policy_file, capsys):
    code, out, err = run(
        capsys, "smc", *TINY, "--proposal", policy_file, "--runs", "2", "--particles", "50"
    )
    assert code == 0, err
    assert "proposal: " in out and "exact fit" in out
    exact = float(out.split("exact log Z = ")[1].split()[0])
    first = float(out.split("run 0: log Z = ")[1].split()[0])
    assert abs(first - exact) < 1e-6  # the exact posterior as proposal: every weight equal


@pytest.mark.parametrize("kernel", PROPOSAL_KERNELS)
def test_sample_with_proposal(policy_file, tmp_path, capsys, kernel):
    """Fit, then sample with the policy (guided-particle-gibbs was: "GuidedParticleGibbs needs
    proposal, a callable", exit 2, whatever the file)."""
    out_file = str(tmp_path / "run.nc")
    code, out, err = run(
        capsys,
        "sample",
        "--kernel",
        kernel,
        *TINY,
        "--proposal",
        policy_file,
        "--chains",
        "2",
        "--warmup",
        "10",
        "--samples",
        "30",
        "--out",
        out_file,
        *QUIET,
    )
    assert code == 0, err
    assert "proposal: " in out and "vs exact: mean TV" in out
    assert io.load(out_file).attrs["proposal"] == policy_file
    assert io.load(out_file).attrs["kernel"] == kernel


def test_report_says_a_policy_file_is_not_a_run(policy_file, capsys):
    result = run(capsys, "report", policy_file)  # was: "the 'posterior' group is missing"
    assert_one_line_error(result, repr(policy_file), "'pgm-rl fit' result", "--proposal")


def test_proposal_with_a_kernel_that_takes_none(policy_file, capsys):
    result = run(
        capsys, "sample", "--kernel", "action-gibbs", *TINY, "--proposal", policy_file, *QUIET
    )
    assert_one_line_error(result, "--proposal", "action-gibbs", "takes none")


def test_proposal_of_another_horizon(policy_file, capsys):
    result = run(capsys, "smc", "--horizon", "4", "--beta", "0.5", "--proposal", policy_file)
    assert_one_line_error(result, "horizon T=3", "--horizon 4")


def test_proposal_of_another_env(policy_file, capsys):
    # same shape, another start cell
    result = run(capsys, "smc", *TINY, "--start", "0,0", "--proposal", policy_file)
    assert_one_line_error(result, "was fit on grid 6x6, start (5, 0)", "not on this environment")


def test_proposal_of_the_wrong_shape(policy_file, tmp_path, capsys):
    grid = tmp_path / "grid.csv"
    grid.write_text("0,0,1\n0,0,0\n")
    result = run(capsys, "smc", "--grid", str(grid), *TINY, "--proposal", policy_file)
    assert_one_line_error(result, "has shape (3, 36, 5)", "(T, 6, 5)")


def test_proposal_file_without_a_policy(tmp_path, capsys):
    path = str(tmp_path / "other.nc")
    io.save(xr.DataTree(dataset=xr.Dataset({"x": ("a", np.arange(3.0))})), path)
    result = run(capsys, "smc", *TINY, "--proposal", path)
    assert_one_line_error(result, "holds no policy")


def test_proposal_file_missing(tmp_path, capsys):
    result = run(capsys, "smc", *TINY, "--proposal", str(tmp_path / "none.nc"))
    assert_one_line_error(result, "does not exist")


@pytest.mark.parametrize("steps", ["0", "-3", "x"])
def test_fit_steps_not_positive(steps, capsys):
    assert_one_line_error(run(capsys, "fit", *TINY, "--steps", steps), "--steps")


def test_fit_refuses_existing_out_before_any_work(tmp_path, capsys):
    path = tmp_path / "q.nc"
    path.write_text("keep")
    result = run(capsys, "fit", *TINY, "--out", str(path))
    assert_one_line_error(result, "exists", "--overwrite")
    assert path.read_text() == "keep"
    assert result[1] == ""  # nothing ran
