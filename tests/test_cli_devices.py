"""``pgm-rl exact`` and ``pgm-rl sample`` over devices and processes (pgm_rl/cli/devices.py).

The argument checks run in this process (JAX already started, one CPU device). The runs over
several devices need the device count set before JAX starts, so they run in fresh interpreters:
ONE subprocess in the default run (an unreachable coordinator, then ``exact --devices 4``), the
two-process runs slow-marked.
"""

import json
import os
import socket
import subprocess
import sys
import time

import jax
import pytest
from helpers import assert_one_line_error
from helpers import run_cli as run

import pgm_rl
from pgm_rl.cli import build_parser

TINY = ["--horizon", "6", "--beta", "1"]
SAMPLE = ["sample", "--kernel", "trajectory-mh", *TINY, "--chains", "4", "--warmup", "20"]
SAMPLE += ["--samples", "30", "--no-progress"]


@pytest.fixture(autouse=True)
def _jax_started():
    """JAX's backend is up (one CPU device) before any command runs here, so no ``--devices``
    below can change this test process's device count."""
    jax.devices()


def _env(devices=None):
    """The environment of a child ``pgm-rl``: this package, CPU, ``devices`` virtual devices."""
    env = {key: value for key, value in os.environ.items() if key != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(pgm_rl.__file__)), env.get("PYTHONPATH", "")]
    )
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _free_port():
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _pgm_rl(*argv):
    return [sys.executable, "-m", "pgm_rl.cli", *map(str, argv)]


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--num-processes", "2"], ["--coordinator", "--process-id", "go together"]),
        (["--coordinator", "localhost:1234", "--process-id", "0"], ["missing --num-processes"]),
        (
            ["--coordinator", "localhost:1234", "--num-processes", "2", "--process-id", "2"],
            ["--process-id", "0..1"],
        ),
        (
            ["--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
            ["HOST:PORT"],
        ),
        (
            ["--coordinator", "localhost:0", "--num-processes", "1", "--process-id", "0"],
            ["1..65535"],
        ),
        (["--coordinator", ":1234", "--num-processes", "1", "--process-id", "0"], ["HOST:PORT"]),
        (
            ["--coordinator", "h:1", "--num-processes", "0", "--process-id", "0"],
            ["--num-processes"],
        ),
        (["--devices", "0"], ["--devices", ">= 1"]),
        (["--devices", "many"], ["--devices"]),
        (["--coordinator-timeout", "5"], ["--coordinator-timeout", "--coordinator"]),
        # JAX has started in this process (one CPU device): neither can act any more
        (["--devices", "64"], ["--devices 64", "1 cpu device"]),
        (
            ["--coordinator", "localhost:1234", "--num-processes", "1", "--process-id", "0"],
            ["--coordinator", "before JAX starts"],
        ),
    ],
)
@pytest.mark.parametrize("command", ["exact", "sample"])
def test_bad_device_and_process_options_are_one_line_errors(capsys, command, argv, words):
    """Before: none of these options existed (argparse's "unrecognized arguments")."""
    prefix = ["exact", *TINY] if command == "exact" else SAMPLE
    assert_one_line_error(run(capsys, *prefix, *argv), *words)


def test_large_problem_options_have_help_and_env_is_refused(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, flags in [("exact", ["--checkpoint"]), ("sample", [])]:
        options = {
            flag: action.help
            for action in commands[name]._actions
            for flag in action.option_strings
        }
        for flag in [*flags, "--devices", "--coordinator", "--num-processes", "--process-id"]:
            assert options.get(flag), (name, flag)
        assert "--coordinator-timeout" in options
    assert "--checkpoint" not in {f for a in commands["sample"]._actions for f in a.option_strings}
    for extra in (["--devices", "2"], ["--checkpoint"]):
        result = run(capsys, "exact", "--env", "FrozenLake-v1", *TINY, *extra)
        assert_one_line_error(result, "--env", "--devices N > 1", "--checkpoint")


CHILD = r"""
import contextlib, io, json, sys, time
from pgm_rl import cli

def pgm_rl(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(list(argv))
        except SystemExit as exit_:
            code = exit_.code
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}

port, tiny = sys.argv[1], sys.argv[2:]
# nobody listens at the port: process 1 gives up after --coordinator-timeout, before JAX starts
start = time.monotonic()
lost = pgm_rl("exact", *tiny, "--coordinator", f"localhost:{port}", "--num-processes", "2",
              "--process-id", "1", "--coordinator-timeout", "1")
lost["seconds"] = time.monotonic() - start
four = pgm_rl("exact", *tiny, "--devices", "4")
bounded = pgm_rl("exact", *tiny, "--devices", "4", "--checkpoint")
import jax
print(json.dumps({"lost": lost, "four": four, "bounded": bounded, "devices": len(jax.devices())}))
"""


def _checkpointed(text):
    """What ``exact --checkpoint`` prints of the full output: all but the MAP path."""
    return text[: text.index("most probable path")]


def test_exact_over_four_devices_prints_what_one_device_prints(capsys):
    """``exact --devices 4`` (36 states split over 4 virtual CPU devices) prints exactly what the
    one-device run prints, with ``--checkpoint`` too (bounded memory: all but the MAP path); a
    coordinator nobody answers at is one line within the timeout. Before: --devices,
    --coordinator and --checkpoint were unrecognized arguments (exit 2)."""
    code, one, err = run(capsys, "exact", *TINY)
    assert code == 0, err
    code, bounded, err = run(capsys, "exact", *TINY, "--checkpoint")
    assert code == 0, err
    assert bounded.startswith(_checkpointed(one))
    assert bounded[len(_checkpointed(one)) :].startswith("most probable path: not computed")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(_free_port()), *TINY],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert_one_line_error(
        (result["lost"]["code"], "", result["lost"]["err"]),
        "--coordinator localhost:",
        "nothing answered within 1 s",
        "--process-id 0",
    )
    assert result["lost"]["seconds"] < 10
    assert result["devices"] == 4
    assert result["four"]["code"] == 0, result["four"]["err"]
    assert result["four"]["out"] == one
    assert result["bounded"]["code"] == 0, result["bounded"]["err"]
    assert result["bounded"]["out"] == bounded
    assert "log Z" in one and "most probable path" in one


def _without_time(text):
    return [line for line in text.splitlines() if not line.startswith("wall time")]


def _launch(argv, processes, devices_each):
    """Start ``pgm-rl argv`` as ``processes`` processes of one run on localhost (each with
    ``devices_each`` virtual CPU devices); their ``(exit code, stdout, stderr)``."""
    port = _free_port()
    children = [
        subprocess.Popen(
            _pgm_rl(
                *argv,
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                processes,
                "--process-id",
                index,
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(devices_each),
        )
        for index in range(processes)
    ]
    try:
        outputs = [child.communicate(timeout=400) for child in children]
        return [
            (child.returncode, *output) for child, output in zip(children, outputs, strict=True)
        ]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()


@pytest.mark.slow
def test_exact_over_two_processes_of_four_devices_each_prints_the_single_process_answer(capsys):
    """Two processes (jax.distributed, gloo) x 4 virtual CPU devices: the states of the 6x6 grid
    split over 8 devices; process 0 prints exactly the single-process output (log Z to its 10
    digits, the end cells, the MAP path), process 1 prints nothing; with --checkpoint too."""
    code, one, err = run(capsys, "exact", *TINY)
    assert code == 0, err
    code, bounded, err = run(capsys, "exact", *TINY, "--checkpoint")
    assert code == 0, err
    for extra, expected in [([], one), (["--checkpoint"], bounded)]:
        (code0, out0, err0), (code1, out1, err1) = _launch(["exact", *TINY, *extra], 2, 4)
        assert code0 == 0 and code1 == 0, (err0[-2000:], err1[-2000:])
        assert out0 == expected
        assert out1 == ""


@pytest.mark.slow
def test_a_process_whose_peers_never_come_gives_up_in_one_line():
    """Process 0 of 2 alone: JAX would abort with a stack trace after its timeout; pgm-rl says
    which processes to start, within --coordinator-timeout."""
    start = time.monotonic()
    child = subprocess.run(
        _pgm_rl(
            "exact",
            *TINY,
            "--coordinator",
            f"localhost:{_free_port()}",
            "--num-processes",
            2,
            "--process-id",
            0,
            "--coordinator-timeout",
            2,
        ),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert time.monotonic() - start < 60
    assert_one_line_error(
        (child.returncode, child.stdout, child.stderr), "not all 2 processes joined within 2 s"
    )


@pytest.mark.slow
def test_sample_over_four_devices_prints_the_single_device_draws(capsys):
    """``sample --devices 4``: the 6 chains split over 4 virtual CPU devices (padded to 8) through
    shard_chains, the same draws as one device, so the same summary (the wall time aside)."""
    code, one, err = run(capsys, *SAMPLE, "--chains", 6)
    assert code == 0, err
    child = subprocess.run(
        _pgm_rl(*SAMPLE, "--chains", 6, "--devices", 4),
        capture_output=True,
        text=True,
        env=_env(),
        timeout=400,
        check=False,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert _without_time(child.stdout) == _without_time(one)
    assert "worst R-hat" in one


@pytest.mark.slow
def test_sample_over_two_processes_prints_the_single_process_draws(capsys):
    """The chains split over 2 processes x 2 devices: the same draws as on one device, so the
    same summary (the wall time aside); process 1 prints nothing."""
    code, one, err = run(capsys, *SAMPLE)
    assert code == 0, err
    (code0, out0, err0), (code1, out1, err1) = _launch(SAMPLE, 2, 2)
    assert code0 == 0 and code1 == 0, (err0[-2000:], err1[-2000:])
    assert _without_time(out0) == _without_time(one)
    assert out1 == ""
