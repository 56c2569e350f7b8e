"""The pgm-rl command, run as a subprocess: help, each subcommand on a tiny problem, bad arguments."""

import os
import subprocess
import sys

import pytest

COMMANDS = ("exact", "sample", "compare", "report", "smc")
TINY = ["--horizon", "3", "--beta", "0.5"]
RUN = ["--chains", "2", "--warmup", "20", "--samples", "40"]


def pgm_rl(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "pgm_rl.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
        timeout=300,
    )


def assert_usage_error(result, *words):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture
def tiny_grid(tmp_path):
    path = tmp_path / "grid.csv"
    path.write_text("0,-1,-1\n-1,-5,4\n")
    return str(path)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(command):
    result = pgm_rl(*([command] if command else []), "--help")
    assert result.returncode == 0
    assert "usage: pgm-rl" in result.stdout
    if command in ("exact", "sample", "compare", "smc"):
        assert "--horizon" in result.stdout and "--beta" in result.stdout


def test_exact_notebook_scale():
    result = pgm_rl("exact", "--horizon", "100", "--beta", "100")
    assert result.returncode == 0, result.stderr
    assert "log Z            = 90997237.9" in result.stdout
    assert "(0, 5)  p = 1" in result.stdout
    assert "right, up x5, right x4" in result.stdout  # 10 moves to the goal, then it stays


def test_exact_on_a_grid_file(tiny_grid):
    result = pgm_rl("exact", "--grid", tiny_grid, "--start", "0,0", *TINY)
    assert result.returncode == 0, result.stderr
    assert "grid 2x3, start (0, 0)" in result.stdout
    # the MAP path heads for the +4 cell at (1, 2) avoiding the -5 cell: right, down, stay/wall
    assert "cells:   (0,0), (0,1), (1,1)" not in result.stdout
    assert "(1,2)" in result.stdout


def test_sample_then_report(tiny_grid, tmp_path):
    out = tmp_path / "run.nc"
    result = pgm_rl(
        "sample",
        "--kernel",
        "trajectory-mh",
        "--grid",
        tiny_grid,
        *TINY,
        *RUN,
        "--out",
        str(out),
        "--plots",
        str(tmp_path / "pics"),
    )
    assert result.returncode == 0, result.stderr
    assert "r_hat" in result.stdout and "vs exact: mean TV" in result.stdout
    assert out.stat().st_size > 0
    assert sorted(os.listdir(tmp_path / "pics")) == [
        "occupancy.png",
        "rank.png",
        "trace.png",
        "trajectories.png",
    ]
    before = out.read_bytes()
    again = pgm_rl(
        "sample", "--kernel", "trajectory-mh", "--grid", tiny_grid, *TINY, *RUN, "--out", str(out)
    )
    assert_usage_error(again, "exists", "--overwrite")
    assert out.read_bytes() == before
    report = pgm_rl("report", str(out), "--plots", str(tmp_path / "again"))
    assert report.returncode == 0, report.stderr
    assert "trajectory-mh: T=3, beta=0.5, 2 chains x 40 draws" in report.stdout
    assert "vs exact: mean TV" in report.stdout
    assert len(os.listdir(tmp_path / "again")) == 4


def test_compare(tiny_grid, tmp_path):
    result = pgm_rl(
        "compare",
        "--kernels",
        "trajectory-mh,stepwise-mh",
        "--grid",
        tiny_grid,
        *TINY,
        *RUN,
        "--plots",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    table = result.stdout[result.stdout.index("kernel ") :].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["trajectory-mh", "stepwise-mh", "exact"]
    assert "tv.png" in os.listdir(tmp_path)


def test_smc():
    pytest.importorskip("pgm_rl.smc")
    result = pgm_rl("smc", *TINY, "--particles", "200", "--runs", "2")
    assert result.returncode == 0, result.stderr
    assert "exact log Z" in result.stdout and result.stdout.count("run ") == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["sample", "--kernel", "nope", *TINY], ["--kernel", "nope"]),
        (["sample", "--kernel", "trajectory-mh", *TINY, "--samples", "-5"], ["--samples", "-5"]),
        (["exact", "--horizon", "0", "--beta", "1"], ["--horizon"]),
        (["exact", "--horizon", "3", "--beta", "nan"], ["--beta"]),
        (["exact", *TINY, "--grid", "/no/such/grid.csv"], ["grid file", "/no/such/grid.csv"]),
        (["exact", *TINY, "--start", "9,9"], ["start", "outside"]),
        (["compare", *TINY, "--kernels", "trajectory-mh,bogus"], ["--kernels"]),
        (["report", "/no/such/run.nc"], ["/no/such/run.nc"]),
    ],
)
def test_bad_arguments(args, words):
    assert_usage_error(pgm_rl(*args), *words)


def test_unreadable_grid_file(tmp_path):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    assert_usage_error(pgm_rl("exact", *TINY, "--grid", str(binary)), "grid file")


def test_report_refuses_a_non_run(tmp_path):
    path = tmp_path / "junk.nc"
    path.write_bytes(b"not netcdf")
    assert_usage_error(pgm_rl("report", str(path)), "pgm-rl report: error")
