"""``pgm-rl control``: each mode's output, its pictures, and one-line errors on bad input."""

import pytest
from helpers import assert_one_line_error, run_cli


def test_exact_prints_log_z_and_the_elbo(capsys):
    code, out, _ = run_cli(capsys, "control", "--mode", "exact", "--horizon", "20")
    assert code == 0
    assert "exact log Z = -9.4210419" in out
    assert "ELBO* (maximum-entropy LQR) = -9.4210419" in out


def test_mppi_prints_its_estimate_beside_exact(capsys):
    code, out, _ = run_cli(capsys, "control", "--mode", "mppi", "--samples", "2000")
    assert code == 0
    assert "mppi: 2000 samples: log Z = " in out and "(z = " in out and "ESS" in out


def test_strict_exits_1_when_the_ess_collapses(capsys):
    argv = ["control", "--mode", "mppi", "--horizon", "50", "--beta", "10", "--samples", "1000"]
    code, out, _ = run_cli(capsys, *argv, "--strict")
    assert code == 1
    assert "warning: ESS" in out and "choose_beta" in out
    assert run_cli(capsys, *argv)[0] == 0


def test_smc_and_its_picture(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "control", "--mode", "smc", "--samples", "1000",
                           "--plots", tmp_path)  # fmt: skip
    assert code == 0, out
    assert "smc: 1000 samples" in out
    assert (tmp_path / "action_band.png").exists()


def test_sample_with_nuts_compares_to_exact(capsys, tmp_path):
    code, out, err = run_cli(capsys, "control", "--mode", "sample", "--horizon", "5",
                             "--chains", "2", "--warmup", "200", "--samples", "300",
                             "--plots", tmp_path)  # fmt: skip
    assert code == 0, err
    assert "nuts: 2 chains x 300 draws: max R-hat" in out
    assert "vs exact: max |mean error|" in out
    assert (tmp_path / "action_band.png").exists()


def test_mpc_on_the_pendulum_in_gymnasium(capsys, tmp_path):
    code, out, err = run_cli(capsys, "control", "--mode", "mpc", "--problem", "pendulum",
                             "--gym", "--steps", "10", "--horizon", "10", "--samples", "100",
                             "--plots", tmp_path)  # fmt: skip
    assert code == 0, err
    assert "mpc in Gymnasium's Pendulum-v1: 10 steps, episode cost" in out
    assert (tmp_path / "episode.png").exists()


def test_help_names_the_modes(capsys):
    code, out, _ = run_cli(capsys, "control", "--help")
    assert code == 0
    for word in ("--mode", "exact", "mppi", "mpc", "--gym", "--problem"):
        assert word in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--mode", "exact", "--problem", "pendulum"], ["--mode exact", "--problem lq"]),
        (["--mode", "mppi", "--gym"], ["--gym"]),
        (["--mode", "exact", "--plots", "pics"], ["--plots"]),
        (["--mode", "smc", "--iterations", "3"], ["--iterations"]),
        (["--mode", "mppi", "--beta", "-1"], ["--beta"]),
        (["--mode", "mppi", "--samples", "1"], ["num_samples"]),
        (["--mode", "teleport"], ["--mode"]),
        (["--mode", "mppi", "--horizon", "0"], ["--horizon"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, words):
    assert_one_line_error(run_cli(capsys, "control", *argv), *words)


def test_smc_warns_when_its_genealogy_saturates(capsys):
    argv = ["control", "--mode", "smc", "--horizon", "50", "--beta", "10", "--strict"]
    code, out, _ = run_cli(capsys, *argv)
    assert code == 1
    assert "initial particles effectively survive" in out
