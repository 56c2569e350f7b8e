"""pgm_rl.plots: every picture renders headless to a PNG of the expected size (and SVG)."""

import matplotlib

matplotlib.use("Agg")

import jax
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import random_grid

import pgm_rl
from pgm_rl import plots
from pgm_rl.diagnostics import compare_to_exact, to_datatree

HORIZON, BETA = 6, 0.8


@pytest.fixture(scope="module")
def problem():
    env = random_grid(4, (4, 5))
    exact = pgm_rl.solve(env, HORIZON, BETA)
    draws = exact.sample(jax.random.key(1), 400)
    tree = to_datatree(
        {"actions": np.asarray(draws["actions"]).reshape(2, 200, HORIZON)}, env, exact
    )
    return env, exact, tree


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _png_shape(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    # not a blank canvas: many distinct colours
    assert len(np.unique(image.reshape(-1, image.shape[2]), axis=0)) > 50
    return image.shape[:2]


def test_occupancy(problem, tmp_path):
    _, exact, tree = problem
    path = tmp_path / "occupancy.png"
    fig = plots.plot_occupancy(tree, save=path)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert _png_shape(path) == (460, 1320)  # 3 panels of 4.4 x 4.6 in at 100 dpi
    assert len([ax for ax in fig.axes if ax.get_images()]) == 3
    no_exact = tree.copy()
    del no_exact["exact"]
    plots.plot_occupancy(no_exact, save=tmp_path / "two.png")
    assert _png_shape(tmp_path / "two.png") == (460, 880)
    plots.plot_occupancy(no_exact, exact, save=tmp_path / "given.png")
    assert _png_shape(tmp_path / "given.png") == (460, 1320)


def test_trajectories(problem, tmp_path):
    _, _, tree = problem
    path = tmp_path / "paths.png"
    fig = plots.plot_trajectories(tree, top=3, save=path)
    assert _png_shape(path) == (700, 750)
    labels = [text.get_text() for text in fig.legends[0].get_texts()]
    assert len(labels) == 3 and all("% of draws" in label for label in labels)
    shares = [float(label.split(": ")[1].split("%")[0]) for label in labels]
    assert shares == sorted(shares, reverse=True)


def test_tv(problem, tmp_path):
    _, exact, tree = problem
    comparisons = {"exact iid": compare_to_exact(tree), "again": compare_to_exact(tree, exact)}
    fig = plots.plot_tv(comparisons, save=tmp_path / "tv.png")
    assert _png_shape(tmp_path / "tv.png") == (450, 800)
    assert len(fig.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="comparisons"):
        plots.plot_tv({})


@pytest.mark.parametrize("plot", [plots.plot_rank, plots.plot_trace])
def test_arviz_plots(problem, tmp_path, plot):
    _, _, tree = problem
    path = tmp_path / "arviz.png"
    collection = plot(tree, save=path)
    fig = collection.get_viz("figure")
    assert fig is not None
    assert _png_shape(path) == (350, 800)
    ax = fig.axes[0]
    assert ax.get_xlabel() and ax.get_ylabel()
    if plot is plots.plot_rank:
        labels = [text.get_text() for text in fig.legends[0].get_texts()]
        assert labels == ["0", "1"]  # one entry per chain


def _rank_p_value(collection):
    texts = [t.get_text() for ax in collection.get_viz("figure").axes for t in ax.texts]
    (text,) = [t for t in texts if t.startswith("p=")]
    return float(text[2:].split("(")[0])


def test_rank_plot_breaks_ties_at_random(tmp_path):
    """Exact iid draws with a heavily tied return (a few distinct values): ArviZ's positional
    tie-breaking shows p = 0.00; ranks with random tie-breaking look converged."""
    import arviz_plots as azp

    env = pgm_rl.GridWorld([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]], (0, 0))
    exact = pgm_rl.solve(env, 4, 0.5)
    draws = exact.sample(jax.random.key(5), 4000)
    tree = to_datatree({"actions": np.asarray(draws["actions"]).reshape(4, 1000, 4)}, env, exact)
    assert np.unique(tree["posterior"]["return"].values).size <= 5
    plain = azp.plot_rank(tree, var_names=["return"], backend="matplotlib")
    assert _rank_p_value(plain) < 0.01
    assert _rank_p_value(plots.plot_rank(tree)) > 0.01


def test_plain_arviz_plots_run_on_the_tree(problem):
    """The tree works with ArviZ's own functions as an ArviZ user calls them (the constant
    start state used to crash plot_rank)."""
    import arviz_plots as azp

    _, _, tree = problem
    azp.plot_rank(tree, backend="matplotlib")
    azp.plot_trace(tree, backend="matplotlib")


def test_write_plots(problem, tmp_path):
    env, _, tree = problem
    written = plots.write_plots(tree, tmp_path / "out")
    assert [p.rsplit("/", 1)[1] for p in written] == list(plots.PLOT_FILES)
    for path in written:
        _png_shape(path)
    mdp = pgm_rl.TabularMDP(env.next_state, env.reward, 0)
    tabular = to_datatree(pgm_rl.solve(mdp, 3, 1.0).sample(jax.random.key(0), 20), mdp, beta=1.0)
    written = plots.write_plots(tabular, tmp_path / "tabular")
    assert [p.rsplit("/", 1)[1] for p in written] == ["rank.png", "trace.png"]


def test_svg_and_bad_paths(problem, tmp_path):
    _, _, tree = problem
    plots.plot_trajectories(tree, save=tmp_path / "paths.svg")
    assert (tmp_path / "paths.svg").read_text().lstrip().startswith("<?xml")
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plots.plot_trajectories(tree, save=tmp_path / "paths.jpg")
    with pytest.raises(ValueError, match="top"):
        plots.plot_trajectories(tree, top=0)


def test_grid_pictures_need_a_grid(problem):
    env, _, _ = problem
    mdp = pgm_rl.TabularMDP(env.next_state, env.reward, 0)
    tree = to_datatree(pgm_rl.solve(mdp, 3, 1.0).sample(jax.random.key(0), 20), mdp, beta=1.0)
    with pytest.raises(ValueError, match="GridWorld"):
        plots.plot_occupancy(tree)
    with pytest.raises(ValueError, match="GridWorld"):
        plots.plot_trajectories(tree)
    with pytest.raises(TypeError, match="DataTree"):
        plots.plot_rank({"posterior": 1})
