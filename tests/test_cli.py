"""The pgm-rl command.

In-process (``cli.main(argv)`` with ``capsys``): help, version, each subcommand on a tiny
problem, exit codes (0 done, 1 ``--strict`` with problems, 2 bad input in one line), outputs
refused before any work. In a subprocess only what needs a fresh interpreter or a signal:
``--help`` and ``import pgm_rl.exact`` load no JAX/ArviZ, and Ctrl-C during ``sample``.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers import assert_one_line_error
from helpers import run_cli as run

from pgm_rl.cli import options, problem
from pgm_rl.cli.common import ENV_OCCUPANCY_FILE
from pgm_rl.kernels.registry import KERNELS
from pgm_rl.plots import PLOT_FILES

COMMANDS = ("exact", "sample", "compare", "report", "smc")
TINY = ["--horizon", "3", "--beta", "0.5"]
RUN = ["--chains", "2", "--warmup", "20", "--samples", "40"]


@pytest.fixture
def tiny_grid(tmp_path):
    """2x3 cells: start (0, 0), a -5 trap at (1, 1), the +4 goal at (1, 2)."""
    path = tmp_path / "grid.csv"
    path.write_text("0,-1,-1\n-1,-5,4\n")
    return str(path)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_of_every_command(capsys, command):
    code, out, _ = run(capsys, *([command] if command else []), "--help")
    assert code == 0
    assert out.startswith("usage: pgm-rl")
    if command is None:
        assert all(name in out for name in COMMANDS)
    if command in ("exact", "sample", "compare", "smc"):
        assert "--horizon" in out and "--beta" in out
    if command in ("sample", "compare"):  # the kernel list comes from the registry
        for name, record in KERNELS.items():
            assert name in out and record.summary in out
    if command in ("sample", "compare", "report"):
        assert "--strict" in out


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("pgm-rl ") and out.split()[1][0].isdigit()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], ["COMMAND"]),
        (["sample", "--kernel", "nope", *TINY], ["--kernel", "nope", "action-gibbs"]),
        (["sample", "--kernel", "trajectory-mh", *TINY, "--samples", "-5"], ["--samples", "-5"]),
        (["exact", "--horizon", "0", "--beta", "1"], ["--horizon"]),
        (["exact", "--horizon", "3", "--beta", "nan"], ["--beta"]),
        (["exact", *TINY, "--start", "1;2"], ["--start", "ROW,COL"]),
        (["exact", *TINY, "--grid", "/no/such/grid.csv"], ["grid file", "/no/such/grid.csv"]),
        (["exact", *TINY, "--start", "9,9"], ["start", "outside"]),
        (["compare", *TINY, "--kernels", "trajectory-mh,bogus"], ["--kernels", "bogus"]),
        (["compare", *TINY, "--kernels", "suffix-mh,suffix-mh"], ["--kernels", "twice"]),
        (["compare", *TINY, "--kernels", ","], ["--kernels"]),
        (["report", "/no/such/run.nc"], ["/no/such/run.nc"]),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(capsys, args, words):
    assert_one_line_error(run(capsys, *args), *words)


def test_unreadable_grid_file(capsys, tmp_path):
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    assert_one_line_error(run(capsys, "exact", *TINY, "--grid", str(binary)), "grid file")


def test_report_refuses_a_file_that_is_not_a_run(capsys, tmp_path):
    path = tmp_path / "junk.nc"
    path.write_bytes(b"not netcdf")
    assert_one_line_error(run(capsys, "report", str(path)), "pgm-rl report: error")


def test_exact_at_the_notebooks_setting(capsys):
    code, out, err = run(capsys, "exact", "--horizon", "100", "--beta", "100")
    assert code == 0, err
    assert "log Z            = 90997237.9" in out
    assert "(0, 5)  p = 1" in out
    assert "right, up x5, right x4" in out  # 10 moves to the goal, then it stays
    assert "P(these cells) = 1" in out  # every action sequence of the MAP path, summed


def test_exact_on_a_grid_file(capsys, tiny_grid):
    code, out, err = run(capsys, "exact", "--grid", tiny_grid, "--start", "0,0", *TINY)
    assert code == 0, err
    assert "grid 2x3, start (0, 0)" in out
    # the MAP path heads for the +4 cell at (1, 2) avoiding the -5 cell at (1, 1)
    assert "(1,1)" not in out.split("cells:")[1]
    assert "(1,2)" in out.split("cells:")[1]


def test_sample_saves_and_report_reopens(capsys, tiny_grid, tmp_path):
    """--strict exits 1 exactly when diagnostics.problems printed a warning line."""
    out_file, pics = tmp_path / "run.nc", tmp_path / "pics"
    sample = ["sample", "--kernel", "trajectory-mh", "--grid", tiny_grid, *TINY, *RUN]
    code, out, err = run(
        capsys, *sample, "--no-progress", "--strict", "--out", str(out_file), "--plots", str(pics)
    )
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert code == (1 if warnings else 0), err
    assert "r_hat" in out and "vs exact: mean TV" in out
    assert "worst R-hat (return and state-occupancy indicators):" in out
    assert f"saved {out_file}" in out
    assert sorted(os.listdir(pics)) == sorted(PLOT_FILES)  # no staging folder or probe file left
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]

    # the README's walkthrough: report redraws the run's pictures into the same folder (was:
    # exit 2, "--plots 'pics/occupancy.png' exists")
    code, out, err = run(capsys, "report", str(out_file), "--strict", "--plots", str(pics))
    reported = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert code == (1 if reported else 0), err
    assert "trajectory-mh: T=3, beta=0.5, 2 chains x 40 draws" in out
    assert "vs exact: mean TV" in out
    # the same draws give the same R-hat lines
    assert [w for w in reported if "R-hat" in w] == [w for w in warnings if "R-hat" in w]
    assert sorted(os.listdir(pics)) == sorted(PLOT_FILES)
    assert out.count("(redrawn: the same run)") == len(PLOT_FILES)


@pytest.mark.parametrize("command", ["sample", "compare", "report"])
def test_existing_outputs_are_refused_before_any_work(
    capsys, tiny_grid, tmp_path, monkeypatch, command
):
    """The saved file and pictures stay byte-for-byte; nothing is solved or sampled."""
    import pgm_rl.cli.compare
    import pgm_rl.cli.report
    import pgm_rl.cli.sample  # (before the patches: a module imported under them keeps them)
    import pgm_rl.exact
    import pgm_rl.io

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(pgm_rl.exact, "solve", no_work)
    monkeypatch.setattr(pgm_rl.io, "load", no_work)
    saved = tmp_path / "run.nc"
    saved.write_bytes(b"a run the user saved")
    pics = tmp_path / "pics"
    pics.mkdir()
    picture = pics / ("tv.png" if command == "compare" else "rank.png")
    picture.write_bytes(b"a picture")
    args = {
        "sample": [
            "sample",
            "--kernel",
            "trajectory-mh",
            "--grid",
            tiny_grid,
            *TINY,
            "--plots",
            str(pics),
        ],
        "compare": [
            "compare",
            "--kernels",
            "trajectory-mh",
            "--grid",
            tiny_grid,
            *TINY,
            "--plots",
            str(pics),
        ],
        "report": ["report", str(saved), "--plots", str(pics)],
    }[command]
    assert_one_line_error(run(capsys, *args), "exists", "--overwrite", str(picture))
    assert picture.read_bytes() == b"a picture"
    if command == "sample":
        result = run(capsys, *args[:-2], "--out", str(saved))
        assert_one_line_error(result, "exists", "--overwrite", str(saved))
        assert saved.read_bytes() == b"a run the user saved"
        result = run(capsys, *args[:-2], "--plots", str(saved))
        assert_one_line_error(result, "--plots", "not a folder")


def test_compare_tabulates_and_strict_flags_a_kernel(capsys, tiny_grid, tmp_path, monkeypatch):
    """The table lists the kernels then exact iid; problems are printed per kernel (exact iid,
    the reference, is not judged) and --strict exits 1."""
    import pgm_rl.diagnostics

    def problems(dt, comparison=None):
        return ["disagrees with the exact posterior: mean TV 0.5 > threshold 0.1"] * (
            dt.attrs["kernel"] == "stepwise-mh"
        )

    monkeypatch.setattr(pgm_rl.diagnostics, "problems", problems)
    code, out, err = run(
        capsys,
        "compare",
        "--kernels",
        "trajectory-mh,stepwise-mh",
        "--grid",
        tiny_grid,
        *TINY,
        *RUN,
        "--plots",
        str(tmp_path),
        "--strict",
        "--no-progress",  # was: "unrecognized arguments"
    )
    assert code == 1, err
    table = out[out.index("kernel ") :].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["trajectory-mh", "stepwise-mh", "exact"]
    assert "warning: stepwise-mh: disagrees with the exact posterior" in out
    assert "warning: trajectory-mh" not in out
    assert {"tv.png", "occupancy_trajectory-mh.png", "occupancy_exact_iid.png"} <= set(
        os.listdir(tmp_path)
    )


def test_smc_pools_runs_and_warns_when_saturated(capsys, monkeypatch):
    import pgm_rl.smc

    code, out, err = run(capsys, "smc", *TINY, "--particles", "200", "--runs", "2")
    assert code == 0, err
    assert "exact log Z" in out and out.count("\nrun ") == 2
    assert "pooled over runs (log-mean-exp" in out
    assert "warning" not in out  # 200 particles at T = 3 keep many ancestors

    # a run whose standard error is not to be trusted (SMCResult.saturated)
    run_smc = pgm_rl.smc.run_smc

    class Saturated:
        saturated = True

        def __init__(self, result):
            self.result = result

        def __getattr__(self, name):
            return getattr(self.result, name)

    monkeypatch.setattr(pgm_rl.smc, "run_smc", lambda *a, **k: Saturated(run_smc(*a, **k)))
    code, out, err = run(capsys, "smc", *TINY, "--particles", "200", "--runs", "1")
    assert code == 0, err
    assert "warning: run 0: the genealogy has saturated" in out
    assert "--particles" in out and "Warning" not in err


# ------------------------------------------- issue 13 items 7 and 8: saved runs, output paths

GRID = [[0.0, -1.0, -1.0], [-1.0, -5.0, 4.0]]  # the tiny_grid fixture's cells


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """A run of the tiny grid as ``pgm-rl sample --out`` saves it, from exact iid draws (2
    chains of 40; no MCMC, so fast)."""
    return save_exact_run(tmp_path_factory.mktemp("saved") / "run.nc", seed=0)


def save_exact_run(path, seed):
    """Save 2 chains of 40 exact draws of the tiny grid (T = 3, beta 0.5) at ``path``."""
    import jax
    import numpy as np

    import pgm_rl
    from pgm_rl import io
    from pgm_rl.diagnostics import to_datatree

    env = pgm_rl.GridWorld(GRID, (0, 0))
    exact = pgm_rl.solve(env, 3, 0.5)
    actions = np.asarray(exact.sample(jax.random.key(seed), 80)["actions"]).reshape(2, 40, 3)
    dt = to_datatree({"actions": actions}, env, exact)
    dt.attrs.update(kernel="trajectory-mh", wall_seconds=0.5)
    io.save(dt, path)
    return str(path)


def tampered(saved_run, folder, change):
    """A copy of ``saved_run`` with ``change(dt)`` applied, written with xarray (h5netcdf)."""
    from pgm_rl import io

    dt = io.load(saved_run)
    change(dt)
    path = folder / "tampered.nc"
    dt.to_netcdf(path, engine="h5netcdf")
    return str(path)


def _drop(name):
    return lambda dt: dt.attrs.pop(name)


def _set(name, value):
    return lambda dt: dt.attrs.update({name: value})


def _shift_states(dt):
    posterior = dt["posterior"].to_dataset()
    dt["posterior"] = posterior.assign(states=(posterior["states"] + 1) % 6)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_drop("best_state"), ["'best_state'", "missing"]),  # was: exit 1, KeyError traceback
        (_set("horizon", 30), ["'horizon'", "30"]),  # was: exit 0, "T=30", rows dropped
        (_set("best_state", 999), ["'best_state'", "999"]),  # was: exit 0, a cell not there
        (_set("start_state", 4), ["'start_row'", "'start_state'"]),
        (_set("beta", "high"), ["'beta'"]),
        (_shift_states, ["'states'"]),
    ],
    ids=["no-best_state", "horizon-30", "best_state-999", "start", "beta", "states"],
)
def test_report_refuses_a_run_inconsistent_with_its_own_data(
    capsys, saved_run, tmp_path, change, words
):
    """One line naming the file and the attribute, exit 2, nothing printed, no pictures."""
    path = tampered(saved_run, tmp_path, change)
    result = run(capsys, "report", path, "--plots", str(tmp_path / "pics"))
    assert_one_line_error(result, "pgm-rl report: error", repr(path), *words)
    assert result[1] == ""
    assert not (tmp_path / "pics").exists()


def test_report_redraws_a_runs_pictures_but_not_another_runs(capsys, saved_run, tmp_path):
    """An existing --plots folder is fine; pictures pgm-rl drew of this same run are redrawn;
    those of another run and files that pgm-rl did not draw are refused, all named at once."""
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "notes.txt").write_text("mine")  # someone's file beside the pictures: untouched
    for _ in range(2):
        code, out, err = run(capsys, "report", saved_run, "--plots", str(pics))
        assert code == 0, err
    assert out.count("(redrawn: the same run)") == len(PLOT_FILES)
    assert sorted(os.listdir(pics)) == sorted([*PLOT_FILES, "notes.txt"])
    before = {name: (pics / name).read_bytes() for name in PLOT_FILES}
    other = save_exact_run(tmp_path / "other.nc", seed=1)
    result = run(capsys, "report", other, "--plots", str(pics))
    paths = [str(pics / name) for name in PLOT_FILES]
    assert_one_line_error(result, "pictures of another run", *paths, "--overwrite")
    assert result[1] == ""  # refused before the summary
    (pics / "rank.png").write_bytes(b"my own picture")  # not drawn by pgm-rl: never replaced
    result = run(capsys, "report", saved_run, "--plots", str(pics))
    assert_one_line_error(result, repr(str(pics / "rank.png")), "exists", "--overwrite")
    assert "trace.png" not in result[2]
    assert {name: (pics / name).read_bytes() for name in PLOT_FILES} == {
        **before,
        "rank.png": b"my own picture",
    }
    code, out, err = run(capsys, "report", other, "--plots", str(pics), "--overwrite")
    assert code == 0, err


def test_report_accepts_the_saved_run(capsys, saved_run, tmp_path):
    code, out, err = run(capsys, "report", saved_run)
    assert code == 0, err
    assert "trajectory-mh: T=3, beta=0.5, 2 chains x 40 draws" in out
    assert "end[cell=" in out and "ending in that cell" in out


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder no file can be created in. Root ignores permission bits, so as root it is a
    read-only tmpfs mount (skipped where mounting is not permitted)."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    try:
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=16k", "tmpfs", str(path)],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        mounted = None
    if mounted is None or mounted.returncode != 0:
        pytest.skip("root ignores permission bits and a read-only mount is not permitted here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True, timeout=30)


def test_outputs_that_cannot_be_written_are_refused_before_any_work(
    capsys, tiny_grid, tmp_path, read_only_dir, no_work
):
    """Each was found only after sampling before (a message naming a hidden temp file or
    "pass overwrite=True"); now at once, in the CLI's words, and nothing is created."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"x")
    pics = tmp_path / "pics"
    (pics / "rank.png").mkdir(parents=True)  # a picture's name taken by a folder
    sample = ["sample", "--kernel", "trajectory-mh", "--grid", tiny_grid, *TINY]
    cases = [
        (["--out", str(folder), "--overwrite"], ["--out", "is a folder"]),
        (["--out", str(folder)], ["--out", "is a folder"]),
        (["--out", str(tmp_path / "missing" / "run.nc")], ["--out", "does not exist"]),
        (["--out", str(a_file / "run.nc")], ["--out", "not a folder"]),
        (["--out", str(read_only_dir / "run.nc")], ["--out", str(read_only_dir)]),
        (["--plots", str(read_only_dir / "pics")], ["--plots", str(read_only_dir)]),
        (["--plots", str(read_only_dir)], ["--plots", str(read_only_dir)]),
        (["--plots", str(a_file / "pics")], ["--plots", "not a folder"]),
        (["--plots", str(a_file)], ["--plots", "not a folder"]),
        (["--plots", str(pics), "--overwrite"], ["--plots", "rank.png", "is a folder"]),
    ]
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    for given, words in cases:
        result = run(capsys, *sample, *given)
        assert_one_line_error(result, *words)
        assert "overwrite=True" not in result[2] and ".tmp" not in result[2]
    for command in (
        ["report", str(a_file), "--plots", str(read_only_dir)],
        ["compare", "--kernels", "trajectory-mh", "--grid", tiny_grid, *TINY, "--plots", "-"],
    ):
        command[-1] = str(read_only_dir)
        assert_one_line_error(run(capsys, *command), "--plots", str(read_only_dir))
    assert sorted(str(path) for path in tmp_path.rglob("*")) == before


@pytest.fixture
def fake_sampling(monkeypatch, saved_run):
    """``pgm-rl sample`` without MCMC: its tree is the saved run (the output handling, the
    summary, the comparison and the pictures are real)."""
    import pgm_rl.compare
    import pgm_rl.diagnostics
    from pgm_rl import io

    monkeypatch.setattr(pgm_rl.compare, "run_kernel", lambda *args, **kwargs: (None, 0.5))
    monkeypatch.setattr(pgm_rl.diagnostics, "to_datatree", lambda *a, **k: io.load(saved_run))


def _tree(folder):
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize(
    ("command", "existing_out"),
    [("sample", False), ("sample", True), ("report", False)],
    ids=["sample-new-out", "sample-out-overwritten", "report"],
)
def test_a_failure_after_the_work_leaves_nothing_new(
    capsys, tiny_grid, tmp_path, monkeypatch, fake_sampling, saved_run, command, existing_out
):
    """A full disk while drawing the last picture: one line naming --plots, exit 2; the new
    --out (written before the pictures, and left behind, before) and the pictures are gone, an
    --out to be overwritten is untouched, and no hidden staging file stays."""
    import errno

    import pgm_rl.plots.runs

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pgm_rl.plots.runs, "plot_trace", full_disk)  # the last of PLOT_FILES
    out, pics = tmp_path / "out" / "run.nc", tmp_path / "out" / "new" / "pics"
    out.parent.mkdir()
    if existing_out:
        out.write_bytes(b"the user's run")
    before = _tree(tmp_path)
    if command == "sample":
        argv = ["sample", "--kernel", "trajectory-mh", "--grid", tiny_grid, *TINY, "--out"]
        argv += [str(out), "--overwrite", "--plots", str(pics)]
    else:
        argv = ["report", saved_run, "--plots", str(pics)]
    assert_one_line_error(run(capsys, *argv), "--plots", str(pics), "No space left on device")
    assert _tree(tmp_path) == before
    if existing_out:
        assert out.read_bytes() == b"the user's run"


def test_an_out_created_during_the_run_is_not_replaced(
    capsys, tiny_grid, tmp_path, monkeypatch, fake_sampling
):
    """Another process creates --out while sampling: refused in the CLI's words (--overwrite,
    not the library's "overwrite=True"), the file is untouched and no picture is written."""
    import pgm_rl.diagnostics

    out, pics = tmp_path / "run.nc", tmp_path / "pics"
    problems = pgm_rl.diagnostics.problems

    def problems_and_a_rival(*args, **kwargs):
        out.write_bytes(b"someone else's run")
        return problems(*args, **kwargs)

    monkeypatch.setattr(pgm_rl.diagnostics, "problems", problems_and_a_rival)
    argv = ["sample", "--kernel", "trajectory-mh", "--grid", tiny_grid, *TINY, "--out", str(out)]
    result = run(capsys, *argv, "--plots", str(pics))
    assert_one_line_error(result, "--out", str(out), "exists", "--overwrite")
    assert "overwrite=True" not in result[2]
    assert out.read_bytes() == b"someone else's run"
    assert sorted(os.listdir(tmp_path)) == ["grid.csv", "run.nc"]


# ----------------------------------------------------------------------------- subprocesses

HEAVY = ("jax", "jaxlib", "numpyro", "arviz_base", "arviz_stats", "arviz_plots", "matplotlib")


def test_help_and_import_pgm_rl_exact_load_no_heavy_modules():
    """``pgm-rl --help`` imports none of JAX, NumPyro, ArviZ (so it answers at once), and
    ``import pgm_rl.exact`` imports no ArviZ: checked in a fresh interpreter."""
    code = textwrap.dedent(
        f"""
        import sys
        HEAVY = {HEAVY!r}

        def loaded(prefixes):
            return sorted({{m.split(".")[0] for m in sys.modules}} & set(prefixes))

        import pgm_rl, pgm_rl.cli
        try:
            pgm_rl.cli.main(["--help"])
        except SystemExit:
            pass
        print("help:", loaded(HEAVY))
        import pgm_rl.exact
        print("exact:", loaded([m for m in HEAVY if m.startswith("arviz")]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "help: []" in result.stdout
    assert "exact: []" in result.stdout


# pgm-rl's entry point, with Python's Ctrl-C handler installed even where the shell started
# this test with SIGINT ignored (background jobs), which Python would otherwise keep.
SIGINT_CHILD = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from pgm_rl.cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_ctrl_c_during_sample_prints_one_line_and_exits_130(tiny_grid):
    """SIGINT while ``pgm-rl sample`` runs: exit 130, one line, no traceback."""
    sample = ["sample", "--kernel", "trajectory-mh", "--grid", tiny_grid, *TINY]
    process = subprocess.Popen(
        [sys.executable, "-c", SIGINT_CHILD, *sample, "--warmup", "0", "--samples", "200000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()  # printed just before sampling starts
        assert first.startswith("trajectory-mh: grid 2x3"), first + process.stderr.read()
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Traceback" not in out
    assert err.count("interrupted") == 1
    assert err.strip().splitlines()[-1] == "pgm-rl sample: interrupted"


# ----------------------------------------------------------------------------- --env (Gymnasium)

SLIPPERY_LAKE = ["--env", "FrozenLake-v1", "--horizon", "20", "--beta", "5"]
PLAIN_LAKE = ["--env", "FrozenLake-v1", "--env-kwargs", "is_slippery=false"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("is_slippery=true", {"is_slippery": True}),
        ("is_slippery=False,map_name=8x8", {"is_slippery": False, "map_name": "8x8"}),
        (" a = 3 , b=2.5,c=none,d=1e-3,e=-4", {"a": 3, "b": 2.5, "c": None, "d": 1e-3, "e": -4}),
    ],
)
def test_env_kwargs_parse_values(text, expected):
    parsed = options.env_kwargs(text)
    assert parsed == expected
    assert all(type(parsed[key]) is type(value) for key, value in expected.items())


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--env", "FrozenLake-v1", "--grid", "notebook"], ["--grid", "not allowed", "--env"]),
        (["--env", "FrozenLake-v1", "--env-kwargs", "is_slippery"], ["--env-kwargs", "KEY=VALUE"]),
        (["--env", "FrozenLake-v1", "--env-kwargs", "=3"], ["--env-kwargs", "'=3'"]),
        (["--env", "FrozenLake-v1", "--env-kwargs", "a=1,a=2"], ["--env-kwargs", "twice"]),
        (["--env", "FrozenLake-v1", "--env-kwargs", "a="], ["--env-kwargs", "no value"]),
        (["--env", "FrozenLake-v1", "--env-kwargs", "a=1,,b=2"], ["--env-kwargs", "KEY=VALUE"]),
        (["--env-kwargs", "is_slippery=true"], ["--env-kwargs needs --env"]),
        (["--env", "FrozenLake-v1", "--start", "0,0"], ["--start", "--env"]),
        (["--env", "Nope-v1"], ["--env Nope-v1", "doesn't exist"]),
        (["--env", "CartPole-v1"], ["--env CartPole-v1", "Discrete"]),
        (["--env", "FrozenLake-v1", "--env-kwargs", "foo=1"], ["--env-kwargs foo=1", "foo"]),
        (["--env", "Taxi-v3"], ["--env Taxi-v3", "Taxi-v4"]),
        (  # was: a KeyError and 29 lines of traceback
            ["--env", "FrozenLake-v1", "--env-kwargs", "map_name=9x9"],
            ["--env-kwargs map_name=9x9", "map_name must be one of 4x4, 8x8", "'9x9'"],
        ),
    ],
)
def test_bad_env_arguments_give_one_line_and_exit_2(capsys, args, words):
    assert_one_line_error(run(capsys, "exact", *args, *TINY), *words)


@pytest.mark.parametrize("command", ["exact", "sample", "compare", "smc"])
def test_without_gymnasium_env_names_the_extra(capsys, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    extra = ["--kernel", "trajectory-mh"] if command == "sample" else []
    result = run(capsys, command, *extra, "--env", "FrozenLake-v1", *TINY)
    assert_one_line_error(result, "pgm_rl[gymnasium]", "--env FrozenLake-v1")


def test_exact_env_puts_the_posterior_beside_the_soft_bellman_policy(capsys):
    code, out, err = run(capsys, "exact", *SLIPPERY_LAKE)
    assert code == 0, err
    lines = out.splitlines()
    assert "FrozenLake-v1: 16 states, 4 actions, stochastic dynamics, start (0, 0) S" in lines[0]
    table = {line[:36].strip(): line[36:].split() for line in lines[3:]}
    # the numbers (tests/test_gymnasium.py checks them against the library)
    assert table["log Z | ELBO of the policy"] == ["1.041876", "0.008123972", "0.07954135"]
    assert table["expected return"] == ["0.651598", "0.0258292", "0.0193962"]
    assert table["P(reach the goal (3, 3) G)"] == ["0.6516", "0.02583", "0.0194"]
    assert table["(3, 3) G"] == ["0.6516", "0.02583", "0.0194"]
    assert set(table) >= {"(1, 1) H", "(1, 3) H", "(2, 3) H", "(3, 0) H"}
    ends = [table[label] for label in table if label.endswith((" G", " H", "the way)"))]
    for column in range(3):  # where each column ends: a distribution
        assert sum(float(row[column]) for row in ends) == pytest.approx(1.0, abs=1e-3)
    assert "log Z - ELBO* = 0.9623 nats" in lines[-1] and "dynamics were on its side" in lines[-1]


def test_exact_env_deterministic_coincide_and_top(capsys):
    argv = ["exact", "--env", "CliffWalking-v1", "--env-kwargs", "is_slippery=false", *TINY]
    code, out, err = run(capsys, *argv, "--horizon", "14")
    assert code == 0, err
    assert "deterministic dynamics, start (3, 0) S" in out
    assert "the posterior is the soft-Bellman policy (log Z - ELBO* = 0)" in out
    assert "most probable path: up, right x11, down" in out
    assert "(2,0)., (2,1)." in out and "(3,11)G" in out
    eight = ["--env", "FrozenLake-v1", "--env-kwargs", "map_name=8x8", "--horizon", "20"]
    code, out, err = run(capsys, "exact", *eight, "--beta", "5", "--top", "2")
    assert code == 0, err
    # the goal first, then the likeliest hole, then the other 9 of the 11 terminal states
    assert "(7, 7) G" in out and "(2, 3) H" in out and "9 other terminal states" in out


def test_exact_env_plots_the_map(capsys, tmp_path):
    pics = tmp_path / "pics"
    code, out, err = run(capsys, "exact", *PLAIN_LAKE, *TINY, "--plots", str(pics))
    assert code == 0, err
    assert (pics / ENV_OCCUPANCY_FILE).stat().st_size > 10_000
    assert f"wrote {pics / ENV_OCCUPANCY_FILE}" in out
    result = run(capsys, "exact", *PLAIN_LAKE, *TINY, "--plots", str(pics))
    assert_one_line_error(result, "exists", "--overwrite")
    assert_one_line_error(run(capsys, "exact", *TINY, "--plots", str(pics)), "--plots", "--env")
    result = run(capsys, "exact", "--env", "Taxi-v4", *TINY, "--plots", str(tmp_path / "taxi"))
    assert_one_line_error(result, "grid map", "Taxi-v4")
    assert not (tmp_path / "taxi").exists()


def test_sample_compare_and_smc_take_env(capsys, tmp_path):
    code, out, err = run(
        capsys, "sample", "--kernel", "trajectory-mh", *PLAIN_LAKE, *TINY, *RUN, "--no-progress",
        "--out", str(tmp_path / "run.nc"),
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith("trajectory-mh: FrozenLake-v1 (is_slippery=False): 16 states")
    assert "vs exact: mean TV" in out
    code, out, err = run(capsys, "report", str(tmp_path / "run.nc"))
    assert code == 0, err
    cliff = ["--env", "CliffWalking-v1", *TINY]
    code, out, err = run(
        capsys, "compare", "--kernels", "trajectory-mh", *cliff, *RUN, "--plots", str(tmp_path)
    )
    assert code == 0, err
    assert "compare: CliffWalking-v1: 48 states" in out and "exact iid" in out
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["tv.png"]  # no reward grid to draw
    code, out, err = run(capsys, "smc", *PLAIN_LAKE, *TINY, "--particles", "100", "--runs", "2")
    assert code == 0, err
    assert "smc: FrozenLake-v1 (is_slippery=False)" in out and "pooled over runs" in out


def test_stochastic_env_smc_sample_and_report_run(capsys, tmp_path):
    slippery = ["--env", "FrozenLake-v1", "--horizon", "6", "--beta", "1"]
    code, out, err = run(
        capsys, "smc", *slippery, "--particles", "300", "--runs", "2", "--seed", "1"
    )
    assert code == 0, err
    assert "stochastic dynamics" in out and "exact log Z = 0.0012577159" in out
    saved = str(tmp_path / "slippery.nc")
    sample = ["sample", "--kernel", "action-gibbs", "--no-progress", *slippery, *RUN]
    code, out, err = run(capsys, *sample, "--out", saved)
    assert code == 0, err
    assert "FrozenLake-v1: 16 states, 4 actions, stochastic dynamics" in out
    assert "vs exact: mean TV" in out and f"saved {saved}" in out
    code, out, err = run(capsys, "report", saved)
    assert code == 0, err
    assert "vs exact: mean TV" in out
    code, out, err = run(capsys, "compare", "--kernels", "action-gibbs", *slippery, *RUN)
    assert code == 0, err
    assert "action-gibbs" in out and "exact iid" in out


def test_sample_on_a_random_start_answers_before_sampling(capsys, monkeypatch):
    import pgm_rl.compare

    monkeypatch.setattr(pgm_rl.compare, "run_kernel", None)  # never reached
    result = run(capsys, "sample", "--kernel", "action-gibbs", "--env", "Taxi-v4", *TINY)
    assert_one_line_error(result, "to_datatree", "random start over 300 states", "pgm-rl exact")
    # Taxi has no is_slippery (gymnasium.make rejects it): another environment is advised
    advice = result[2].split("here, or ")[1]
    assert advice.startswith("an environment with deterministic dynamics and one start state")


def test_what_is_random_is_said():
    """Taxi's dynamics are deterministic, only its start is random (fit called it stochastic)."""
    pytest.importorskip("gymnasium")
    from pgm_rl.envs import from_gymnasium
    from pgm_rl.worlds import describe_randomness

    assert describe_randomness(from_gymnasium("Taxi-v4")) == "a random start over 300 states"
    lake = from_gymnasium("FrozenLake-v1", is_slippery=True)
    assert describe_randomness(lake) == "stochastic dynamics"
    advice = problem.deterministic_instead(lake)
    assert advice == "deterministic dynamics (--env-kwargs is_slippery=false)"
