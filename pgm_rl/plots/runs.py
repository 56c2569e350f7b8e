"""Pictures of a run's DataTree: occupancy and paths on the grid, rank, trace, TV to exact.

Each takes a tree from :func:`pgm_rl.diagnostics.to_datatree` (:func:`plot_tv` the
comparisons of :func:`pgm_rl.diagnostics.compare_to_exact`); :func:`write_plots` writes the
standard set :data:`PLOT_FILES` into a folder.
"""

import os

import arviz_plots as azp
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib import colors, patches, patheffects

from pgm_rl.diagnostics import trajectory_states
from pgm_rl.exact import ExactPosterior
from pgm_rl.plots.style import (
    DPI,
    FIGSIZE_ARVIZ,
    REWARD_CMAP,
    VISIT_CMAP,
    cell_axes,
    finish,
    finish_collection,
    save_collection,
)

__all__ = [
    "PLOT_FILES",
    "plot_occupancy",
    "plot_rank",
    "plot_trace",
    "plot_trajectories",
    "plot_tv",
    "write_plots",
]

PLOT_FILES = ("occupancy.png", "trajectories.png", "rank.png", "trace.png")
# What plot_rank's picture can and cannot show, written under its title.
_RANK_CAVEAT = (
    "shows whether the chains agree with each other, not whether they are right:\n"
    "chains that all miss the same mode look clean (compare with exact: compare_to_exact)"
)


def plot_occupancy(dt, exact=None, save=None):
    """Expected visits per cell over steps 1..T: the grid's rewards, sampled, and exact beside it.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`~pgm_rl.diagnostics.to_datatree`, for a GridWorld.
    exact : ExactPosterior, optional
        Defaults to the tree's ``exact`` group; without either the exact panel is left out.
    save : str or os.PathLike, optional
        ``.png`` or ``.svg`` file to write.

    Returns
    -------
    matplotlib.figure.Figure
        Figure of 3 panels (2 without exact), 4.6 in high, 4.4 in wide per panel, at 100 dpi.
    """
    grid = _grid(dt)
    height, width = grid.shape
    states = trajectory_states(dt).values  # (chains, draws, T + 1)
    counts = np.zeros(height * width)
    np.add.at(counts, states[..., 1:].reshape(-1), 1.0)
    sampled = (counts / np.prod(states.shape[:2])).reshape(height, width)
    marginals = _exact_marginals(dt, exact)
    panels = [("sampled", sampled)]
    if marginals is not None:
        panels.append(("exact", marginals[1:].sum(axis=0).reshape(height, width)))
    vmax = max(panel.max() for _, panel in panels)
    fig, axes = plt.subplots(
        1, 1 + len(panels), figsize=(4.4 * (1 + len(panels)), 4.6), dpi=DPI, layout="constrained"
    )
    _draw_rewards(axes[0], dt, grid, annotate=True, colorbar=True)
    axes[0].set_title("cell rewards")
    norm = colors.Normalize(vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
    for ax, (label, visits) in zip(axes[1:], panels, strict=True):
        image = ax.imshow(visits, cmap=VISIT_CMAP, norm=norm)
        for row in range(height):
            for col in range(width):
                value = visits[row, col]
                if value >= 0.005:
                    ax.text(
                        col,
                        row,
                        f"{value:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="black" if norm(value) > 0.6 else "white",
                    )
        _mark_start_goal(ax, dt)
        cell_axes(ax, grid.shape)
        ax.set_title(f"{label}: expected visits per cell")
    fig.colorbar(image, ax=axes[1:], shrink=0.85, label="expected number of visits (steps 1..T)")
    fig.suptitle(f"Posterior occupancy  ({_problem_label(dt)})")
    return finish(fig, save)


def plot_trajectories(dt, top=5, save=None):
    """The ``top`` most frequent sampled cell paths drawn over the reward grid.

    Paths are grouped by their sequence of cells (different actions can give the same cells,
    e.g. "up" against the top wall and "stay"); each is drawn slightly offset, with arrows,
    a line width growing with its frequency and its share of the draws in the legend; a ring
    whose area grows with the square root of the number of steps marks a cell held for
    several steps ("stay", or a move against a wall).

    Parameters
    ----------
    dt : xarray.DataTree
        For a GridWorld.
    top : int, default 5
    save : str or os.PathLike, optional

    Returns
    -------
    matplotlib.figure.Figure
        7.5 x 7 in at 100 dpi.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be a positive int, got {top!r}")
    grid = _grid(dt)
    width = grid.shape[1]
    states = trajectory_states(dt).values  # (chains, draws, T + 1)
    paths, counts = np.unique(states.reshape(-1, states.shape[-1]), axis=0, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:top]
    total = counts.sum()
    fig, ax = plt.subplots(figsize=(7.5, 7.0), dpi=DPI, layout="constrained")
    _draw_rewards(ax, dt, grid, annotate=False, colorbar=True, alpha=0.55)
    palette = plt.get_cmap("tab10")
    for rank, index in enumerate(order):
        rows, cols = np.divmod(paths[index], width)
        offset = 0.12 * (rank - (len(order) - 1) / 2)
        x, y = cols + offset, rows + offset
        share = counts[index] / total
        color = palette(rank % 10)
        ret = float(grid.reshape(-1)[paths[index][1:]].sum())
        ax.plot(
            x,
            y,
            "-o",
            color=color,
            lw=1.5 + 6.0 * share,
            ms=3.5,
            alpha=0.9,
            label=f"#{rank + 1}: {100 * share:.1f}% of draws, return {ret:g}",
        )
        dx, dy = np.diff(x), np.diff(y)
        moving = (dx != 0) | (dy != 0)
        mid_x, mid_y = x[:-1] + dx / 2, y[:-1] + dy / 2
        ax.quiver(
            mid_x[moving],
            mid_y[moving],
            dx[moving],
            dy[moving],
            color=color,
            angles="xy",
            scale_units="xy",
            scale=4.0,
            width=0.006,
            headwidth=4.5,
            headlength=5,
            pivot="mid",
        )
        cells, dwell = np.unique(paths[index], return_counts=True)
        stays = dwell > 1  # a cell held for several steps: a ring growing as sqrt(count)
        cell_rows, cell_cols = np.divmod(cells[stays], width)
        ax.scatter(
            cell_cols + offset,
            cell_rows + offset,
            s=50.0 * np.sqrt(dwell[stays]),
            facecolors="none",
            edgecolors=color,
            linewidths=1.8,
        )
    fig.legend(loc="outside lower center", fontsize=8, ncol=1, frameon=False)
    ax.set_title(
        f"{min(top, len(paths))} most frequent of {len(paths)} distinct sampled paths\n"
        f"({_problem_label(dt)}, {total} draws)"
    )
    return finish(fig, save)


def plot_tv(comparisons, save=None):
    """TV distance to the exact state marginals at each step, one line per kernel.

    Parameters
    ----------
    comparisons : mapping of str to xarray.Dataset
        Kernel name -> output of :func:`~pgm_rl.diagnostics.compare_to_exact`.
    save : str or os.PathLike, optional

    Returns
    -------
    matplotlib.figure.Figure
        8 x 4.5 in at 100 dpi.
    """
    if not hasattr(comparisons, "items") or not comparisons:
        raise ValueError(
            "comparisons must be a non-empty mapping of kernel name -> compare_to_exact"
        )
    fig, ax = plt.subplots(figsize=(8.0, 4.5), dpi=DPI, layout="constrained")
    markers = "os^Dv<>pP*"
    for i, (name, comparison) in enumerate(comparisons.items()):
        tv = comparison["tv"]
        ax.plot(
            tv["step"].values,
            tv.values,
            marker=markers[i % len(markers)],
            ms=4,
            lw=1.5,
            label=f"{name}  (mean {float(comparison['mean_tv']):.3f})",
        )
    ax.set_xlabel("step t")
    ax.set_ylabel("TV distance of state marginals")
    ax.set_ylim(0.0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Distance to the exact posterior, step by step (0 = exact, 1 = disjoint)")
    return finish(fig, save)


def plot_rank(dt, save=None, seed=0):
    """ArviZ rank plot of the return (rank-ECDF per chain minus uniform), ties broken at random.

    The return of a discrete problem takes few values, so most draws are tied. ArviZ ranks
    tied values by their position (chain 0 first), which makes even exact iid draws fail the
    rank-ECDF test (p = 0.00). Here every draw gets a random tie-breaker (a fixed ``seed``)
    before ranking: draws of equal return get ranks in random order, so chains that agree
    look uniform and chains that disagree on the return still stand out.

    What it cannot show: it compares the chains with each other, not with the posterior.
    Chains that all miss the same mode agree and look clean (TrajectoryMH on the notebook grid
    at T = 10, beta = 0.05: p = 0.18 at a mean TV of 0.88 to the exact posterior); only
    :func:`pgm_rl.diagnostics.compare_to_exact` catches that. The picture says so under its
    title.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`~pgm_rl.diagnostics.to_datatree`.
    save : str or os.PathLike, optional
    seed : int, default 0
        Seed of the tie-breaking draws.

    Returns
    -------
    arviz_plots.PlotCollection
        8 x 3.5 in at 100 dpi; x: fractional rank, y: ECDF minus uniform, one line per chain
        with a chain legend, and ArviZ's multi-chain uniformity test (its p-value shown); a
        single chain gets the simultaneous envelope instead.
    """
    _check_tree(dt)
    returns = dt["posterior"]["return"]
    if returns.sizes.get("chain", 0) * returns.sizes.get("draw", 0) < 2:
        raise ValueError("plot_rank needs at least 2 draws")
    values = returns.transpose("chain", "draw").values
    tie_breaker = np.random.default_rng(seed).random(values.shape)
    order = np.lexsort((tie_breaker.ravel(), values.ravel()))
    ranks = np.empty(values.size)
    ranks[order] = np.arange(1, values.size + 1)
    ranked = xr.DataArray(
        ranks.reshape(values.shape),
        dims=("chain", "draw"),
        coords={"chain": returns["chain"].values, "draw": returns["draw"].values},
    )
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"return": ranked})})
    pc = azp.plot_rank(
        tree,
        backend="matplotlib",
        figure_kwargs={"figsize": FIGSIZE_ARVIZ},
        aes={"color": ["chain"]},
        # the multi-chain test needs 2 chains; one chain gets the simultaneous envelope
        method="mtc_c" if ranked.sizes["chain"] >= 2 else "envelope",
    )
    pc.add_legend("chain", title="chain")
    title = (
        f"Rank ECDF of the return per chain, minus uniform\n"
        f"(ties broken at random; {_problem_label(dt)})\n"
        f"{_RANK_CAVEAT}"
    )
    pc = finish_collection(pc, title, "fractional rank of the return", None)
    ax = pc.get_viz("figure").axes[0]
    ax.set_ylabel("ECDF minus uniform")
    save_collection(pc, save)
    return pc


def plot_trace(dt, save=None):
    """ArviZ trace plot of the return, one line per chain; returns a PlotCollection."""
    _check_tree(dt)
    pc = azp.plot_trace(
        dt,
        var_names=["return"],
        backend="matplotlib",
        figure_kwargs={"figsize": FIGSIZE_ARVIZ},
        visuals={"trace": {"linewidth": 0.7, "alpha": 0.8}},
    )
    pc = finish_collection(pc, f"Return per draw ({_problem_label(dt)})", "draw", None)
    fig = pc.get_viz("figure")
    for ax in fig.axes:
        if ax.get_xlabel() == "draw" or not ax.get_ylabel():
            ax.set_ylabel("return")
    save_collection(pc, save)
    return pc


def write_plots(dt, folder, exact=None):
    """Write :data:`PLOT_FILES` for ``dt`` into ``folder`` (grid pictures only for a GridWorld).

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`~pgm_rl.diagnostics.to_datatree`.
    folder : str or os.PathLike
        Created if missing; existing files of the same names are replaced.
    exact : ExactPosterior, optional
        For the occupancy picture (defaults to the tree's ``exact`` group).

    Returns
    -------
    list of str
        The paths written, in :data:`PLOT_FILES` order.
    """
    _check_tree(dt)
    os.makedirs(folder, exist_ok=True)
    has_grid = "constant_data" in dt.children and "grid" in dt["constant_data"]
    jobs = [
        ("occupancy.png", lambda path: plot_occupancy(dt, exact, save=path), has_grid),
        ("trajectories.png", lambda path: plot_trajectories(dt, save=path), has_grid),
        ("rank.png", lambda path: plot_rank(dt, save=path), True),
        ("trace.png", lambda path: plot_trace(dt, save=path), True),
    ]
    written = []
    for filename, draw, wanted in jobs:
        if wanted:
            path = os.path.join(folder, filename)
            draw(path)
            plt.close("all")
            written.append(path)
    return written


def _check_tree(dt):
    if not isinstance(dt, xr.DataTree) or "posterior" not in dt.children:
        raise TypeError("dt must be an xarray.DataTree from pgm_rl.diagnostics.to_datatree")


def _grid(dt):
    _check_tree(dt)
    if "constant_data" not in dt.children or "grid" not in dt["constant_data"]:
        raise ValueError("this picture needs a GridWorld's tree (dt has no constant_data grid)")
    return dt["constant_data"]["grid"].values


def _exact_marginals(dt, exact):
    if exact is not None:
        if not isinstance(exact, ExactPosterior):
            raise TypeError(f"exact must be a pgm_rl.ExactPosterior, got {type(exact).__name__}")
        return np.asarray(exact.state_marginals)
    if "exact" in dt.children:
        return dt["exact"]["state_marginals"].values
    return None


def _problem_label(dt):
    return f"{dt.attrs.get('sampler', '?')}, T={dt.attrs['horizon']}, beta={dt.attrs['beta']:g}"


def _draw_rewards(ax, dt, grid, annotate, colorbar, alpha=1.0):
    bound = max(float(np.abs(grid).max()), 1.0)
    norm = colors.SymLogNorm(linthresh=1.0, vmin=-bound, vmax=bound, base=10)
    image = ax.imshow(grid, cmap=REWARD_CMAP, norm=norm, alpha=alpha)
    if annotate:
        for (row, col), value in np.ndenumerate(grid):
            ax.text(col, row, f"{value:g}", ha="center", va="center", fontsize=8)
    if colorbar:
        plt.colorbar(image, ax=ax, shrink=0.85, label="cell reward (symmetric log scale)")
    _mark_start_goal(ax, dt)
    cell_axes(ax, grid.shape)


def _mark_start_goal(ax, dt):
    """Outline the start cell (blue, "S") and the goal cell (gold, "G") without hiding the centre."""
    width = dt["constant_data"]["grid"].shape[1]
    for state, color, letter in (
        (dt.attrs["start_state"], "deepskyblue", "S"),
        (dt.attrs["best_state"], "gold", "G"),
    ):
        row, col = divmod(int(state), width)
        ax.add_patch(
            patches.Rectangle((col - 0.46, row - 0.46), 0.92, 0.92, fill=False, ec=color, lw=3.0)
        )
        ax.text(
            col - 0.36,
            row - 0.34,
            letter,
            ha="left",
            va="center",
            fontsize=9,
            fontweight="bold",
            color=color,
            path_effects=[patheffects.withStroke(linewidth=2, foreground="black")],
        )
