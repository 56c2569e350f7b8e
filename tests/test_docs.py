"""What the documentation says is true: module docstrings, docs/benchmarks.md, ``make bench``."""

import inspect
import re
from pathlib import Path

import numpy as np
import pytest

import pgm_rl
from pgm_rl import plots

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(path.name for path in (ROOT / "benchmarks").glob("bench_*.py"))


def test_plots_docstring_says_what_each_function_takes():
    """Every public picture is listed; those listed as taking a DataTree take ``dt``."""
    doc = plots.__doc__
    assert "Every function takes a DataTree" not in doc
    functions = [name for name in plots.__all__ if inspect.isfunction(getattr(plots, name))]
    for name in functions:
        assert f":func:`{name}`" in doc, name
    tree_part = doc.split("a DataTree from", 1)[1].split("\n- ", 1)[0]
    listed = re.findall(r":func:`(\w+)`", tree_part)
    assert {"plot_occupancy", "plot_rank", "write_plots"} <= set(listed)
    for name in listed:
        first = next(iter(inspect.signature(getattr(plots, name)).parameters))
        assert first == "dt", f"{name} is listed as taking a DataTree but takes {first!r}"
    for name in set(functions) - set(listed):  # the others are listed elsewhere, not as trees
        first = next(iter(inspect.signature(getattr(plots, name)).parameters))
        assert first != "dt", name


def test_stochastic_mdp_message_does_not_deny_kernel_support():
    """Asking a stochastic MDP for next_state explains which code handles it, truthfully."""
    transition = np.full((2, 1, 2), 0.5)
    mdp = pgm_rl.TabularMDP.from_probabilities(transition, np.zeros((2, 1)), 0)
    with pytest.raises(AttributeError) as error:
        mdp.next_state  # noqa: B018
    message = str(error.value)
    assert "not supported by this kernel" not in message
    assert "kernels" in message and "take stochastic MDPs" in message
    assert "StepwiseMH" in message and "most_probable_path" in message
    import pgm_rl.worlds.tabular as kinds

    assert "every kernel except" in kinds.__doc__


def test_benchmarks_doc_covers_every_benchmark_with_registry_names():
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert len(BENCHMARKS) >= 6
    for name in BENCHMARKS:
        assert f"benchmarks/{name}" in text, name
    from pgm_rl.kernels import KERNELS

    # the kernels are named as the registry (and the command line) names them
    for name in ("trajectory-mh", "action-gibbs", "particle-gibbs", "discrete-hmc-gibbs"):
        assert name in KERNELS and name in text, name


def test_make_bench_runs_every_benchmark_quick():
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\nbench:", 1)[1].split("\n\n", 1)[0]
    for name in BENCHMARKS:
        assert re.search(rf"benchmarks/{name} --quick", target), name
