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
    variables = set(tree["posterior"].data_vars)
    for plot in (azp.plot_rank, azp.plot_trace):
        axes = plot(tree, backend="matplotlib").get_viz("figure").axes
        titled = [ax for ax in axes if ax.get_title()]  # a panel per variable and step
        assert {ax.get_title().split("\n")[0] for ax in titled} == variables
        assert all(len(ax.lines) >= tree["posterior"].sizes["chain"] for ax in titled)


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


# ----------------------------------------------------------------------------- Gymnasium maps


@pytest.fixture(scope="module")
def lake():
    pytest.importorskip("gymnasium")
    env = pgm_rl.envs.from_gymnasium("FrozenLake-v1", is_slippery=True)
    return env, pgm_rl.solve(env, 20, 5.0), pgm_rl.soft_bellman(env, 20, 5.0)


def test_episode_visits_count_a_terminal_state_once(lake):
    env, exact, soft = lake
    for result in (exact, soft):
        visits = plots.episode_visits(result)
        marginals = np.asarray(result.state_marginals)
        terminal = list(env.terminal_states)
        np.testing.assert_allclose(visits[terminal], marginals[-1, terminal])
        assert visits[15] == pytest.approx(result.reach_probability(15))  # the goal
        # an episode of T steps: T + 1 states, one per step, until it ends
        lengths = marginals[:, [s for s in range(16) if s not in terminal]].sum()
        assert visits.sum() == pytest.approx(lengths + marginals[-1, terminal].sum())


def test_env_occupancy_on_the_lake(lake, tmp_path):
    env, exact, soft = lake
    path = tmp_path / "lake.png"
    fig = plots.plot_env_occupancy(env, exact, soft, save=path)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3 and len(fig.axes) == 4  # three maps and the colour bar
    titles = [ax.get_title() for ax in panels]
    assert titles == [
        "exact posterior: what it plans",
        "the posterior's policy, executed",
        "soft-Bellman policy",
    ]
    captions = [
        text.get_text() for ax in panels[:3] for text in ax.texts if "\n" in text.get_text()
    ]
    assert "log Z = 1.042" in captions[0] and "P(reach goal) = 0.652" in captions[0]
    assert "ELBO = 0.008124" in captions[1] and "P(reach goal) = 0.0258" in captions[1]
    assert "ELBO* = 0.07954" in captions[2] and "P(reach goal) = 0.0194" in captions[2]
    letters = {text.get_text() for text in panels[0].texts}
    assert {"S", "H", "G", "0.65"} <= letters  # the map, and the goal's P(ending there)
    limits = {tuple(ax.images[0].get_clim()) for ax in panels[:3]}
    assert len(limits) == 1  # one colour scale
    height, width = _png_shape(path)
    assert width > 2.2 * height
    fig = plots.plot_env_occupancy(env, exact, soft, executed=False)
    assert len([ax for ax in fig.axes if ax.images]) == 2


def test_env_occupancy_stacks_a_wide_map():
    pytest.importorskip("gymnasium")
    env = pgm_rl.envs.from_gymnasium("CliffWalking-v1", is_slippery=True)
    exact, soft = pgm_rl.solve(env, 8, 1.0), pgm_rl.soft_bellman(env, 8, 1.0)
    fig = plots.plot_env_occupancy(env, exact, soft)
    maps = [ax for ax in fig.axes if ax.images][:3]
    assert [ax.get_position().y0 for ax in maps] == sorted(
        (ax.get_position().y0 for ax in maps), reverse=True
    )
    assert "C" in {text.get_text() for text in maps[0].texts}


def test_env_occupancy_bad_input(lake):
    env, exact, soft = lake
    with pytest.raises(TypeError, match="exact must be"):
        plots.plot_env_occupancy(env, soft, soft)
    with pytest.raises(TypeError, match="soft must be"):
        plots.plot_env_occupancy(env, exact, exact)
    with pytest.raises(ValueError, match="one horizon"):
        plots.plot_env_occupancy(env, exact, pgm_rl.soft_bellman(env, 5, 5.0))
    taxi = pgm_rl.envs.from_gymnasium("Taxi-v4")
    with pytest.raises(ValueError, match="cells of a grid"):
        plots.plot_env_occupancy(taxi, exact, soft)
    other = pgm_rl.envs.from_gymnasium("CliffWalking-v1")
    with pytest.raises(ValueError, match="another MDP"):
        plots.plot_env_occupancy(other, exact, soft)
    with pytest.raises(ValueError, match=r"\.png or \.svg"):
        plots.plot_env_occupancy(env, exact, soft, save="lake.jpg")
