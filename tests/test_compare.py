"""pgm_rl.compare: running registered kernels, comparing them with exact, and the table."""

import math
import re
import warnings

import numpy as np
import pytest

import pgm_rl
from pgm_rl.compare import TABLE_COLUMNS, compare_kernels, format_table, run_kernel
from pgm_rl.kernels.registry import KERNELS

HORIZON, BETA = 3, 0.5
BUDGET = {"chains": 2, "warmup": 20, "samples": 40}


@pytest.fixture(scope="module")
def env():
    """A 2x3 grid: start (0, 0), a -5 trap at (1, 1), the +4 goal at (1, 2)."""
    return pgm_rl.GridWorld(np.array([[0.0, -1, -1], [-1, -5, 4]]), (0, 0))


def test_run_kernel_gives_chains_by_draws_and_the_records_extra_fields(env):
    mcmc, seconds = run_kernel("trajectory-mh", env, HORIZON, BETA, **BUDGET)
    samples = mcmc.get_samples(group_by_chain=True)
    assert samples["actions"].shape == (2, 40, HORIZON)
    assert samples["states"].shape == (2, 40, HORIZON + 1)
    assert set(KERNELS["trajectory-mh"].extra_fields) <= set(mcmc.get_extra_fields())
    assert seconds > 0


def test_run_kernel_under_jax_vmap_logs_two_lines_instead_of_numpyros_warning(env, monkeypatch):
    """NumPyro drops the progress bar (with a warning) for a callable chain_method such as
    jax.vmap, the built-in kernels' method: a cheap kernel stands in for them here."""
    record = KERNELS["trajectory-mh"]._replace(vmap_chains=True)
    monkeypatch.setitem(KERNELS, "trajectory-mh", record)
    lines = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mcmc, _ = run_kernel(
            "trajectory-mh", env, HORIZON, BETA, **BUDGET, progress_bar=True, log=lines.append
        )
    assert not [w for w in caught if "progress bar" in str(w.message)]
    assert len(lines) == 2 and "jax.vmap" in lines[0] and "done" in lines[1]
    assert mcmc.get_samples()["actions"].shape == (80, HORIZON)


def test_compare_kernels_rows_trees_and_comparisons(env):
    log = []
    rows, trees, comparisons = compare_kernels(
        ["trajectory-mh", "action-gibbs"], env, HORIZON, BETA, **BUDGET, log=log.append
    )
    assert [row["kernel"] for row in rows] == ["trajectory-mh", "action-gibbs", "exact iid"]
    assert list(trees) == list(comparisons) == ["trajectory-mh", "action-gibbs", "exact iid"]
    for row in rows:
        assert set(row) == {key for key, _ in TABLE_COLUMNS} | {
            "return_mcse",
            "max_r_hat_at",
            "disagrees",
        }
        # each row is its own run's comparison and wall time (was: wall_s > 0 and a TV in
        # [0, 1], which no row can fail)
        comparison = comparisons[row["kernel"]]
        assert row["wall_s"] == trees[row["kernel"]].attrs["wall_seconds"]
        assert row["ess_per_s"] == pytest.approx(float(comparison["ess_bulk"]) / row["wall_s"])
        assert row["mean_tv"] == float(comparison["mean_tv"])
        assert row["return_error"] == float(comparison["expected_return_error"])
        assert row["return_mcse"] == float(comparison["expected_return_mcse"])
        np.testing.assert_equal(row["max_r_hat"], float(comparison["max_r_hat"]))  # NaN too
        assert row["max_r_hat_at"] == comparison.attrs["max_r_hat_at"]
        assert row["disagrees"] == bool(comparison["disagrees"])
    assert not rows[-1]["disagrees"]  # exact iid draws agree with the exact posterior
    for name, dt in trees.items():
        assert dt.attrs["kernel"] == name
        assert dt["posterior"]["actions"].shape == (2, 40, HORIZON)
        assert comparisons[name]["tv"].shape == (HORIZON + 1,)
    assert len(log) == 2 and log[0].startswith("running trajectory-mh")


def test_compare_kernels_skips_a_kernel_whose_module_is_missing_or_refuses_it(env, monkeypatch):
    missing = KERNELS["action-gibbs"]._replace(kernel_class="pgm_rl.kernels.elsewhere.Missing")
    monkeypatch.setitem(KERNELS, "action-gibbs", missing)
    exact = pgm_rl.solve(env, HORIZON, BETA)
    log = []
    rows, _, _ = compare_kernels(
        ["action-gibbs", "trajectory-mh"], env, HORIZON, BETA, **BUDGET, exact=exact, log=log.append
    )
    assert [row["kernel"] for row in rows] == ["trajectory-mh", "exact iid"]
    assert "skipping kernel 'action-gibbs'" in log[0]
    with pytest.raises(ValueError, match="'action-gibbs' is not available"):
        compare_kernels(["action-gibbs"], env, HORIZON, BETA, exact=exact, skip_missing=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"name": 3}, TypeError, "name"),
        ({"name": "nope"}, ValueError, "name"),
        ({"chains": 0}, ValueError, "chains"),
        ({"warmup": -1}, ValueError, "warmup"),
        ({"samples": 1.5}, TypeError, "samples"),
        ({"seed": -1}, ValueError, "seed"),
        ({"horizon": 0}, ValueError, "horizon"),
        ({"beta": float("nan")}, ValueError, "beta"),
        ({"progress_bar": "yes"}, TypeError, "progress_bar"),
        ({"model": "trajectory_model"}, TypeError, "model"),
    ],
)
def test_run_kernel_names_the_bad_argument(env, kwargs, error, word):
    arguments = {"name": "trajectory-mh", "horizon": HORIZON, "beta": BETA, **kwargs}
    name, horizon, beta = (arguments.pop(key) for key in ("name", "horizon", "beta"))
    with pytest.raises(error, match=word):
        run_kernel(name, env, horizon, beta, **arguments)


@pytest.mark.parametrize(
    ("kwargs", "error", "word"),
    [
        ({"names": "trajectory-mh"}, TypeError, "names"),
        ({"names": []}, ValueError, "names"),
        ({"names": ["trajectory-mh", "bogus"]}, ValueError, "bogus"),
        ({"names": ["trajectory-mh", "trajectory-mh"]}, ValueError, "repeated"),
        ({"exact": "exact"}, TypeError, "exact"),
        ({"log": None}, TypeError, "log"),
    ],
)
def test_compare_kernels_names_the_bad_argument_before_running(env, kwargs, error, word):
    arguments = {"names": ["trajectory-mh"], **kwargs}
    with pytest.raises(error, match=word):
        compare_kernels(arguments.pop("names"), env, HORIZON, BETA, **arguments)


def test_compare_kernels_refuses_the_exact_posterior_of_another_problem(env):
    other = pgm_rl.solve(env, HORIZON + 1, BETA)
    with pytest.raises(ValueError, match="exact is for horizon=4"):
        compare_kernels(["trajectory-mh"], env, HORIZON, BETA, exact=other)


ROWS = [
    {
        "kernel": "trajectory-mh",
        "wall_s": 1.234,
        "ess_per_s": 56.78,
        "max_r_hat": 1.0041,
        "mean_tv": 0.0123,
        "return_error": -0.01234,
        "return_mcse": 0.0456,
    },
    {
        "kernel": "exact iid",
        "wall_s": 0.5,
        "ess_per_s": math.nan,
        "max_r_hat": math.nan,
        "mean_tv": 0.0,
        "return_error": 0.5,
        "return_mcse": 0.01,
    },
]


def test_format_table_aligns_columns_and_prints_nan():
    lines = format_table(ROWS).splitlines()
    assert len(lines) == 4 and set(lines[1]) == {"-", " "}
    # every column starts where its header does
    starts = [lines[0].index(label) for _, label in TABLE_COLUMNS]
    assert starts == [match.start() for match in re.finditer("-+", lines[1])]
    for line in lines[2:]:
        assert all(line[start - 2 : start] == "  " for start in starts[1:])
    assert lines[2].split() == [
        "trajectory-mh",
        "1.23",
        "56.8",
        "1.004",
        "0.012",
        "-0.01234",
        "±",
        "0.046",
    ]
    assert lines[3].split()[:5] == ["exact", "iid", "0.50", "nan", "nan"]


def test_format_table_markdown():
    lines = format_table(ROWS, markdown=True).splitlines()
    assert lines[0] == "| " + " | ".join(label for _, label in TABLE_COLUMNS) + " |"
    assert lines[1] == "|" + "---|" * len(TABLE_COLUMNS)
    assert lines[2].startswith("| trajectory-mh | 1.23 | 56.8 | 1.004 |")


@pytest.mark.parametrize(
    ("rows", "error", "word"),
    [
        ("trajectory-mh", TypeError, "rows"),
        ([("kernel", "x")], TypeError, r"rows\[0\]"),
        ([{"kernel": "x", "wall_s": 1.0}], ValueError, "ess_per_s"),
    ],
)
def test_format_table_names_the_bad_row(rows, error, word):
    with pytest.raises(error, match=word):
        format_table(rows)
