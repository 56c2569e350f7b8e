"""What ``--out`` / ``--plots`` may be, and what SIGTERM leaves behind (issue 17, section 2).

Before: ``--overwrite`` put a regular file in place of a FIFO or a symbolic link (as root, of
``/dev/null``); names of 230-255 bytes failed after the work (the temporary file's name was
longer), longer names and ``--out ''`` too; SIGTERM left the temporary file and the staging
folder behind.
"""

import os
import signal
import stat
import subprocess
import sys
import types

import pytest
from helpers import assert_one_line_error, run_cli

from pgm_rl.cli.outputs import Outputs

GRID = ["--horizon", "2", "--beta", "1"]
# every command that takes --out or --plots, with options that make it run on a small problem
COMMANDS = {
    "sample": ["sample", "--kernel", "trajectory-mh", *GRID, "--warmup", "0", "--samples", "5"],
    "compare": ["compare", "--kernels", "trajectory-mh", *GRID, "--samples", "5"],
    "irl": ["irl", "--demos", "exact:3", *GRID, "--samples", "5"],
    "fit": ["fit", *GRID, "--steps", "2"],
    "report": ["report", "run.nc"],
}
TAKES_OUT = ("sample", "irl", "fit")


def _listing(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize("command", TAKES_OUT)
def test_out_that_is_not_a_regular_file_is_refused_even_with_overwrite(
    capsys, tmp_path, monkeypatch, no_work, command
):
    monkeypatch.chdir(tmp_path)
    os.mkfifo("fifo.nc")
    with open("target.nc", "wb") as handle:
        handle.write(b"precious")
    os.symlink("target.nc", "link.nc")
    before = _listing(tmp_path)
    for name, kind in [("fifo.nc", "is a FIFO"), ("link.nc", "is a symbolic link")]:
        result = run_cli(capsys, *COMMANDS[command], "--out", name, "--overwrite")
        assert_one_line_error(result, "--out", name, kind, "only files")
    assert stat.S_ISFIFO(os.lstat("fifo.nc").st_mode)
    assert os.readlink("link.nc") == "target.nc"
    assert _listing(tmp_path) == before


def test_a_picture_that_is_not_a_regular_file_is_refused(capsys, tmp_path, no_work):
    pics = tmp_path / "pics"
    pics.mkdir()
    os.mkfifo(pics / "elbo_trace.png")
    result = run_cli(capsys, *COMMANDS["fit"], "--plots", pics, "--overwrite")
    assert_one_line_error(result, "--plots", "elbo_trace.png", "is a FIFO")
    assert stat.S_ISFIFO(os.lstat(pics / "elbo_trace.png").st_mode)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_names_no_filesystem_takes_are_refused_before_the_work(
    capsys, tmp_path, monkeypatch, no_work, command
):
    """Before: "could not save ...: File name too long" or "No such file or directory" after
    the whole run (5.2 s into a fit); ``--plots ''`` wrote the pictures into the current
    folder."""
    monkeypatch.chdir(tmp_path)
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    long_name = "r" * (name_max - 2) + ".nc"
    cases = [
        (["--plots", ""], ["--plots", "is empty"]),
        (["--plots", os.path.join("p" * (name_max + 1), "pics")], ["--plots", "bytes"]),
    ]
    if command in TAKES_OUT:
        cases += [
            (["--out", ""], ["--out", "is empty"]),
            (["--out", long_name], ["--out", f"name of {name_max + 1} bytes", f"{name_max}"]),
        ]
    for options, words in cases:
        assert_one_line_error(run_cli(capsys, *COMMANDS[command], *options), *words)
    assert _listing(tmp_path) == []


def test_an_out_name_of_the_longest_length_is_saved(capsys, tmp_path):
    """255 bytes (NAME_MAX): the temporary file's name no longer grows with the target's."""
    name_max = os.pathconf(tmp_path, "PC_NAME_MAX")
    out = tmp_path / ("r" * (name_max - 3) + ".nc")
    code, _, err = run_cli(capsys, *COMMANDS["fit"], "--out", out, "--no-progress")
    assert code == 0, err
    assert _listing(tmp_path) == [out.name]


def test_the_staging_folder_of_a_killed_command_is_removed_by_the_next(tmp_path):
    """A staging folder named for a dead process (SIGKILL) goes when the next command stages
    its pictures there; before, staging folders had no pid and stayed forever."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    orphan = tmp_path / f".pgm-rl-pictures-{child.pid}-k1lled00"
    orphan.mkdir()
    (orphan / "rank.png").write_bytes(b"half a picture")
    args = types.SimpleNamespace(out=None, plots=str(tmp_path / "pics"), overwrite=False)
    with Outputs(args, pictures=["a.png"]) as outputs:
        staging = outputs.staging()
        assert os.path.basename(staging).startswith(f".pgm-rl-pictures-{os.getpid()}-")
        assert _listing(tmp_path) == [os.path.basename(staging)]
    assert _listing(tmp_path) == []


# ``pgm-rl fit`` with a stand-in for the fit (the real one only adds imports and seconds): it
# stages a picture and saves a small tree; SIGTERM comes once the temporary file is written.
TERM_SCRIPT = """
import os, sys, time
import numpy as np
import xarray as xr
import pgm_rl.cli.fit
from pgm_rl import cli
from pgm_rl.cli.common import ELBO_TRACE_FILE
def fit(args, env, outputs):
    with outputs.drawing() as folder:
        with open(os.path.join(folder, ELBO_TRACE_FILE), "wb") as handle:
            handle.write(b"a picture")
    tree = xr.DataTree(xr.Dataset({"x": ("n", np.arange(100_000.0))}))
    outputs.commit(tree, [ELBO_TRACE_FILE])
def fsync(fd):
    print("written", flush=True)
    time.sleep(120)
pgm_rl.cli.fit._fit = fit
os.fsync = fsync
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_cleans_up_like_ctrl_c(tmp_path):
    """Before: exit -15, leaving .t.nc.pgm-rl-PID-*.tmp and .pgm-rl-pictures-* behind."""
    argv = [*COMMANDS["fit"], "--out", "t.nc", "--plots", "pics", "--no-progress"]
    child = subprocess.Popen(
        [sys.executable, "-c", TERM_SCRIPT, *argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in child.stdout:
            if line.strip() == "written":
                break
        staged = _listing(tmp_path)
        child.send_signal(signal.SIGTERM)
        code = child.wait(timeout=60)
    finally:
        child.kill()
        child.wait()
    err = child.stderr.read()
    assert any(name.endswith(".tmp") for name in staged), (staged, err)
    assert any(name.startswith(".pgm-rl-pictures-") for name in staged), staged
    assert code == 143, err
    assert err.strip().splitlines() == ["pgm-rl fit: terminated (SIGTERM)"], err
    assert _listing(tmp_path) == []
