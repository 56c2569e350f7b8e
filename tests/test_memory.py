"""Memory estimates before allocating (issue 17, section 3): the limit honours ulimit -v and
cgroups, and draws, fit steps, fit horizons and run trees are refused in one line beforehand.

Where the real limit would need huge sizes, ``pgm_rl._checks.memory_limit`` is monkeypatched to
1 MiB: the sizes refused under it are small enough that code without the check runs them
harmlessly (and the test fails).
"""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli

import pgm_rl
from pgm_rl import _checks
from pgm_rl.compare import compare_kernels, run_kernel
from pgm_rl.diagnostics import to_datatree
from pgm_rl.variational import fit_policy


@pytest.fixture
def one_mib(monkeypatch):
    monkeypatch.setattr(_checks, "memory_limit", lambda: 2**20)


# ----------------------------------------------------------------------------- the limit

RLIMIT_SCRIPT = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
from pgm_rl import _checks
print(_checks.memory_limit(), _checks._memory_limit()[1], sep="|")
"""


def test_the_limit_is_half_of_a_real_address_space_limit():
    """Before: half of the physical memory whatever ``ulimit -v`` said (11.8 GiB here under a
    6 GiB cap, where an allocation of a few GiB then aborted the process)."""
    result = subprocess.run(
        [sys.executable, "-c", RLIMIT_SCRIPT], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    limit, source = result.stdout.strip().split("|")
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert int(limit) == min(3 * 2**30, physical // 2)
    if physical > 6 * 2**30:
        assert source == "the address-space limit set by ulimit -v"


def _cgroup_files(tmp_path, proc, files):
    (tmp_path / "proc").write_text(proc)
    for relative, text in files.items():
        path = tmp_path / "cg" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("proc", "files", "expected"),
    [
        # v2: the process's own cgroup says "max", a parent holds the limit
        (
            "0::/user.slice/job\n",
            {"user.slice/job/memory.max": "max\n", "user.slice/memory.max": "1073741824\n"},
            2**30,
        ),
        # v2 in a container (cgroup namespace): the limit sits at the mount's root
        ("0::/\n", {"memory.max": "536870912\n"}, 2**29),
        # v1 (hybrid: the v2 line has no memory.max); "unlimited" is a huge number
        (
            "4:memory:/process_api/abc\n0::/\n",
            {
                "memory/process_api/abc/memory.limit_in_bytes": "2147483648\n",
                "memory/memory.limit_in_bytes": "9223372036854771712\n",
            },
            2**31,
        ),
        ("0::/\n", {"memory.max": "max\n"}, None),
        ("garbage\n", {}, None),
    ],
)
def test_cgroup_limits_are_read(tmp_path, monkeypatch, proc, files, expected):
    _cgroup_files(tmp_path, proc, files)
    monkeypatch.setattr(_checks, "_PROC_CGROUP", str(tmp_path / "proc"))
    monkeypatch.setattr(_checks, "_CGROUP_ROOT", str(tmp_path / "cg"))
    assert _checks._cgroup_memory_limit() == expected
    if expected is not None:
        assert _checks.memory_limit() <= expected // 2
        with pytest.raises(ValueError, match=r"GiB \(half of the cgroup memory limit\)"):
            _checks.check_fits_in_memory(expected, "x", 1, "y", "z")


def test_no_cgroup_file_means_no_cgroup_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(_checks, "_PROC_CGROUP", str(tmp_path / "missing"))
    assert _checks._cgroup_memory_limit() is None


# ----------------------------------------------------------------------------- the library


def test_fit_policy_estimates_steps_horizon_and_particles(one_mib):
    """Before: ``fit --steps 10**12`` asked XLA for 400 GB (a JAX traceback), ``--horizon
    10**7`` for 14.4 GB; the largest part of the estimate is named."""
    env = pgm_rl.GridWorld.notebook()
    with pytest.raises(ValueError, match=r"^num_steps=100000 needs about .* GiB .* fewer steps"):
        fit_policy(env, 3, 1.0, num_steps=10**5)
    with pytest.raises(ValueError, match=r"^horizon=1000 needs about .* shorter horizon"):
        fit_policy(env, 1000, 1.0, num_steps=10)
    with pytest.raises(ValueError, match=r"^num_particles=10000 needs about"):
        fit_policy(
            env, 3, 1.0, objective="score", num_steps=2, key=jax.random.key(0), num_particles=10**4
        )


def test_run_kernel_and_compare_kernels_estimate_their_draws(one_mib):
    env = pgm_rl.GridWorld.notebook()
    with pytest.raises(ValueError, match=r"^samples=5000 needs about .* 4 chains x 5000 draws"):
        run_kernel("action-gibbs", env, 3, 1.0, warmup=0, samples=5000)
    with pytest.raises(ValueError, match=r"^samples=2000 needs about .*2 runs kept"):
        compare_kernels(["action-gibbs"], env, 3, 1.0, warmup=0, samples=2000)


def test_to_datatree_estimates_the_tree_before_copying(one_mib):
    """Before: 4 x 3e6 draws were copied whatever the memory (SIGABRT under a 6 GiB cap)."""
    env = pgm_rl.GridWorld.notebook()
    actions = np.zeros((4, 3000, 10), dtype=np.int32)
    with pytest.raises(ValueError, match=r"^source=<4 x 3000 draws of T=10> needs about"):
        to_datatree({"actions": actions}, env, beta=1.0)
    small = to_datatree({"actions": actions[:, :10]}, env, beta=1.0)
    assert small["posterior"].sizes["draw"] == 10


def test_the_estimates_stand_for_the_real_sizes_of_the_issue():
    """The issue's own sizes against this machine's real limit (cheap: refused at once)."""
    env = pgm_rl.GridWorld.notebook()
    limit = _checks.memory_limit()
    assert 4 * 10**9 * _checks.trajectory_draw_bytes(5) > limit
    with pytest.raises(ValueError, match=r"^num_steps=1000000000000 needs about"):
        _checks.check_fit_memory(env, 5, 10**12)
    if limit < 100 * 2**30:
        with pytest.raises(ValueError, match=r"^horizon=10000000 needs about"):
            _checks.check_fit_memory(env, 10**7, 100)


# ----------------------------------------------------------------------------- the command


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (
            ["sample", "--kernel", "action-gibbs", "--samples", "1000"],
            ["samples=1000 needs about", "GiB", "at most", "fewer samples"],
        ),
        (["compare", "--kernels", "action-gibbs", "--samples", "1000"], ["samples=1000"]),
        (["irl", "--demos", "exact:5", "--samples", "20000"], ["samples=20000 needs about"]),
        (["fit", "--steps", "100000"], ["num_steps=100000 needs about", "fewer steps"]),
        (["fit", "--steps", "3", "--horizon", "1000"], ["horizon=1000 needs about"]),
    ],
)
def test_cli_refuses_what_would_not_fit_in_one_line_before_the_work(
    capsys, one_mib, monkeypatch, argv, words
):
    """Before: JAX tracebacks ("Out of memory allocating 80000000000 bytes") after seconds of
    work, or a run still going at 240 s."""
    from numpyro.infer import MCMC

    def never(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(MCMC, "run", never)
    if "--horizon" not in argv:
        argv = [*argv, "--horizon", "3"]
    result = run_cli(capsys, *argv, "--beta", "1")
    assert_one_line_error(result, *words)
