"""What the pgm-rl command reports as bad input, what it lets through as a bug, and how it ends
on Ctrl-C when run as the program."""

import signal
import subprocess
import sys
import time
import warnings

import pytest
from helpers import assert_one_line_error
from helpers import run_cli as run

from pgm_rl import cli

TINY = ["--horizon", "3", "--beta", "0.5"]


def test_a_bug_is_raised_with_its_traceback_not_reported_as_bad_input(capsys, monkeypatch):
    """A TypeError inside the work is a bug in pgm-rl (the parser builds every value passed on):
    was reported as bad input (one line, exit 2), which hid the guided-particle-gibbs bug."""
    import pgm_rl.exact

    # the library's refusal of a value is bad input: one line, exit 2
    assert_one_line_error(run(capsys, "exact", "--horizon", "3", "--beta", "1e308"), "beta")

    def broken(*args, **kwargs):
        raise TypeError("an internal call with the wrong arguments")

    monkeypatch.setattr(pgm_rl.exact, "solve", broken)
    with pytest.raises(TypeError, match="internal call"):
        cli.main(["exact", *TINY])


def test_a_foreign_hdf5_file_is_refused_in_one_line_without_warnings(capsys, tmp_path):
    """Was: h5netcdf's UserWarning about phony_dims (two lines) before the one-line error."""
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as handle:
        handle["x"] = [1, 2, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning would raise here instead of printing
        result = run(capsys, "report", str(path))
    assert_one_line_error(result, repr(str(path)), "'posterior' group is missing")


# pgm-rl as the program: main() reads the command line itself (SIGINT's default handler is
# restored: a shell running this test in the background may have left it ignored); the
# atexit line shows whether the interpreter's shutdown ran.
PROGRAM = (
    "import atexit, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "atexit.register(lambda: print('shutdown ran', file=sys.stderr)); "
    "sys.argv[0] = 'pgm-rl'; from pgm_rl.cli import main; sys.exit(main())"
)


def test_ctrl_c_ends_the_program_without_the_interpreters_shutdown(tmp_path):
    """After Ctrl-C and the clean-up, ``pgm-rl`` ends at once: the interpreter's shutdown (JAX's
    and the modules' teardown) took 2.2-4.4 s of the exit here (0.16-0.76 s without it)."""
    pics = tmp_path / "pics"
    argv = ["sample", "--kernel", "trajectory-mh", *TINY, "--no-progress", "--plots", str(pics)]
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, *argv, "--warmup", "0", "--samples", "200000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        first = process.stdout.readline()  # printed just before sampling starts
        assert first.startswith("trajectory-mh: grid 6x6"), first + process.stderr.read()
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] == "pgm-rl sample: interrupted"
    assert "shutdown ran" not in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no pictures folder, no staging folder left
