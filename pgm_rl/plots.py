"""Pictures of trajectory posteriors: where the agent goes, which paths it takes, how far from exact.

What each function takes:

- a DataTree from :func:`pgm_rl.diagnostics.to_datatree`: :func:`plot_occupancy`,
  :func:`plot_trajectories` (these two need a GridWorld's tree), :func:`plot_rank`,
  :func:`plot_trace` and :func:`write_plots`, which writes the standard set
  (:data:`PLOT_FILES`) into a folder;
- comparisons from :func:`pgm_rl.diagnostics.compare_to_exact`: :func:`plot_tv`;
- an environment whose states are the cells of a grid and exact or variational results:
  :func:`plot_env_occupancy` (an ``ExactPosterior`` and a ``SoftBellmanPolicy``),
  :func:`plot_policy_occupancy` (``PolicyEvaluation`` s), :func:`plot_policy` (a (T, S, A)
  log policy) and :func:`plot_reward_posterior` (per-cell posterior mean and sd of inverse RL);
- an array: :func:`plot_elbo_trace` (an ELBO per optimisation step).

Each returns the matplotlib ``Figure`` (an ArviZ ``PlotCollection`` for :func:`plot_rank` and
:func:`plot_trace`) and, given ``save``, writes it as PNG or SVG (chosen by the file
extension). :func:`episode_visits` is the per-cell number the occupancy pictures draw.
"""

import os

import arviz_plots as azp
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib import colors, patches, patheffects

from pgm_rl.diagnostics import best_state, trajectory_states
from pgm_rl.exact import ExactPosterior, PolicyEvaluation, evaluate_policy

__all__ = [
    "PLOT_FILES",
    "episode_visits",
    "plot_elbo_trace",
    "plot_env_occupancy",
    "plot_occupancy",
    "plot_policy",
    "plot_policy_occupancy",
    "plot_rank",
    "plot_reward_posterior",
    "plot_trace",
    "plot_trajectories",
    "plot_tv",
    "write_plots",
]

PLOT_FILES = ("occupancy.png", "trajectories.png", "rank.png", "trace.png")

DPI = 100
SAVE_FORMATS = (".png", ".svg")
_REWARD_CMAP = "RdYlGn"
_VISIT_CMAP = "magma"
_SD_CMAP = "Purples"
FIGSIZE_ARVIZ = (8.0, 3.5)
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
        image = ax.imshow(visits, cmap=_VISIT_CMAP, norm=norm)
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
        _cell_axes(ax, grid.shape)
        ax.set_title(f"{label}: expected visits per cell")
    fig.colorbar(image, ax=axes[1:], shrink=0.85, label="expected number of visits (steps 1..T)")
    fig.suptitle(f"Posterior occupancy  ({_problem_label(dt)})")
    return _finish(fig, save)


_HAZARDS = {"H": "hole", "C": "cliff"}


def episode_visits(result):
    """Expected visits per state of an episode that ends at the first terminal state, shape (S,).

    A non-terminal state counts every step 0..T spent in it; a terminal (absorbing) state
    counts once, on arrival, so its value is the probability of ending the episode there,
    as a Gymnasium episode (which stops at ``terminated``) would count it.

    Parameters
    ----------
    result : ExactPosterior or PolicyEvaluation
        From :func:`~pgm_rl.solve`, :func:`~pgm_rl.soft_bellman` or
        :func:`~pgm_rl.evaluate_policy`.
    """
    marginals = np.asarray(result.state_marginals, np.float64)  # (T + 1, S)
    visits = marginals.sum(axis=0)
    terminal = list(getattr(result.mdp, "terminal_states", ()))
    visits[terminal] = marginals[-1, terminal]
    return visits


def plot_env_occupancy(env, exact, soft, save=None, executed=True):
    """The exact posterior's occupancy beside the soft-Bellman policy's, on the environment's map.

    One panel each for the exact posterior (what it plans), its own policy executed in the
    true dynamics (with ``executed``) and the soft-Bellman policy, all on one colour scale:
    expected visits per cell in an episode that ends at a terminal state (a hole or the goal
    counts once, on arrival: the probability of ending there; :func:`episode_visits`). The map's
    letters are drawn in each cell (S start, G goal, H hole, C cliff), holes and cliffs
    hatched; the titles give log Z, the ELBOs and the probability of reaching the goal.

    Parameters
    ----------
    env : GymnasiumMDP or GridWorld
        An MDP whose states are the cells of a grid (``shape``; FrozenLake-v1, CliffWalking-v1,
        a GridWorld); ``desc`` (the map's letters) when it has one.
    exact : ExactPosterior
        ``pgm_rl.solve(env, T, beta)``.
    soft : SoftBellmanPolicy or PolicyEvaluation
        ``pgm_rl.soft_bellman(env, T, beta)`` (or any executed policy of horizon T).
    save : str or os.PathLike, optional
        ``.png`` or ``.svg`` file to write.
    executed : bool, default True
        Add the middle panel: ``evaluate_policy(env, exact.policy, beta)``.

    Returns
    -------
    matplotlib.figure.Figure
        Panels side by side (stacked for maps more than 1.5 times as wide as high), at 100 dpi.
    """
    shape = getattr(env, "shape", None)
    if shape is None or not hasattr(env, "n_states") or int(np.prod(shape)) != env.n_states:
        raise ValueError(
            "env must be an MDP whose states are the cells of a grid (shape (H, W)), e.g. "
            "from_gymnasium('FrozenLake-v1') or a GridWorld"
        )
    if not isinstance(exact, ExactPosterior):
        raise TypeError(f"exact must be a pgm_rl.ExactPosterior, got {type(exact).__name__}")
    if not isinstance(soft, PolicyEvaluation):
        raise TypeError(
            f"soft must be a pgm_rl.SoftBellmanPolicy (soft_bellman), got {type(soft).__name__}"
        )
    for name, result in (("exact", exact), ("soft", soft)):
        if result.mdp.n_states != env.n_states or result.mdp.n_actions != env.n_actions:
            raise ValueError(f"{name} was computed for another MDP than env")
    if soft.horizon != exact.horizon:
        raise ValueError(
            f"exact and soft must have one horizon, got T = {exact.horizon} and {soft.horizon}"
        )
    height, width = shape
    desc = getattr(env, "desc", None)
    goal = [
        row * width + col
        for row, line in enumerate(desc or ())
        for col, letter in enumerate(line)
        if letter == "G"
    ]
    panels = [("exact posterior: what it plans", exact, f"log Z = {exact.log_z:.4g}")]
    if executed:
        run = evaluate_policy(env, exact.policy, exact.beta)
        panels.append(("the posterior's policy, executed", run, f"its ELBO = {run.elbo:.4g}"))
    panels.append(("soft-Bellman policy", soft, f"ELBO* = {soft.elbo:.4g}"))
    visits = [episode_visits(result).reshape(height, width) for _, result, _ in panels]
    vmax = max(float(v.max()) for v in visits)
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
    stacked = width > 1.5 * height
    cell = 0.95 if max(height, width) <= 6 else 0.6
    if stacked:
        layout = (len(panels), 1)
        figsize = (max(width * cell, 6.0) + 1.6, len(panels) * (height * cell + 0.9) + 0.6)
    else:
        layout = (1, len(panels))
        figsize = (
            len(panels) * (max(width * cell, 3.2) + 0.4) + 1.4,
            max(height * cell, 3.2) + 1.7,
        )
    fig, axes = plt.subplots(*layout, figsize=figsize, dpi=DPI, layout="constrained", squeeze=False)
    axes = axes.ravel()
    fontsize = 9 if max(height, width) <= 6 else 7
    for ax, (label, result, bound), grid in zip(axes, panels, visits, strict=True):
        image = ax.imshow(grid, cmap=_VISIT_CMAP, norm=norm)
        _draw_map(ax, desc, grid, norm, fontsize)
        _cell_axes(ax, shape)
        ax.set_xlabel("")
        ax.set_ylabel("")
        line = f"P(reach goal) = {result.reach_probability(goal):.3g},  " if goal else ""
        line += f"E[return] = {result.expected_return:.3g}"
        ax.set_title(label, fontsize=10.5, fontweight="bold", loc="center", pad=31)
        ax.text(
            0.5,
            1.01,
            f"{bound}\n{line}",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=9,
        )
    fig.colorbar(
        image,
        ax=axes,
        shrink=0.85 if not stacked else 0.6,
        label="expected visits per cell\n(hole, cliff or goal: P(ending there))",
    )
    dynamics = "stochastic" if getattr(env, "has_random_dynamics", False) else "deterministic"
    name = getattr(env, "env_id", "grid world")
    fig.suptitle(
        f"{name} ({dynamics} dynamics), T = {exact.horizon}, beta = {exact.beta:g}: "
        "where the agent goes in an episode"
    )
    return _finish(fig, save)


def _draw_map(ax, desc, grid, norm, fontsize):
    """The map's letters (top left of each cell), values in the cells, hazards hatched."""
    _draw_letters(ax, desc, fontsize)
    for (row, col), value in np.ndenumerate(grid):
        if value >= 0.005:
            ax.text(
                col,
                row + 0.08,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="black" if norm(value) > 0.6 else "white",
            )


def _map_letters(env):
    """The letters of a grid environment's map: its ``desc`` (a Gymnasium map: S start, G goal,
    H hole, C cliff), else "S" at a GridWorld's start and "G" on its best cell; ``None`` when
    there is neither."""
    desc = getattr(env, "desc", None)
    if desc is not None:
        return tuple(desc)
    start = getattr(env, "start", None)
    if start is None or len(start) != 2:
        return None
    height, width = env.shape
    letters = [["."] * width for _ in range(height)]
    goal_row, goal_col = divmod(best_state(env), width)
    letters[goal_row][goal_col] = "G"
    letters[int(start[0])][int(start[1])] = "S"
    return tuple("".join(line) for line in letters)


def _draw_letters(ax, desc, fontsize):
    """The map's letters at the top left of each cell: S and G outlined, hazards hatched."""
    for row, line in enumerate(desc or ()):
        for col, letter in enumerate(line):
            if letter in _HAZARDS:
                ax.add_patch(
                    patches.Rectangle(
                        (col - 0.5, row - 0.5),
                        1.0,
                        1.0,
                        fill=False,
                        hatch="///",
                        ec="#7fb8ff",
                        lw=0.0,
                        alpha=0.55,
                    )
                )
            if letter in ("S", "G"):
                color = "deepskyblue" if letter == "S" else "gold"
                ax.add_patch(
                    patches.Rectangle(
                        (col - 0.45, row - 0.45), 0.9, 0.9, fill=False, ec=color, lw=2.5
                    )
                )
            if letter and letter not in (".", "F"):
                ax.text(
                    col - 0.38,
                    row - 0.3,
                    letter,
                    ha="left",
                    va="center",
                    fontsize=fontsize,
                    fontweight="bold",
                    color={"S": "deepskyblue", "G": "gold"}.get(letter, "#7fb8ff"),
                    path_effects=[patheffects.withStroke(linewidth=2, foreground="black")],
                )


def plot_reward_posterior(
    env, posterior_mean, posterior_sd, true_reward=None, visits=None, save=None, title=None
):
    """The reward posterior of inverse RL on the grid: (true reward,) posterior mean, posterior sd.

    The true reward (when known) and the posterior mean share one diverging colour scale,
    centred on 0, so their colours compare directly; the posterior sd has its own scale. Every
    cell is annotated with its value. Cells that no demonstration entered (``visits`` 0) are
    hatched. Their reward still meets the data through log Z: that no demonstration entered
    them is evidence that entering them does not pay, and it pulls their posterior below the
    prior, far below (a mean of -5 under a Normal(0, 1) prior) where the agent could easily
    have entered them. Only cells the agent cannot reach within the horizon keep the prior.

    Parameters
    ----------
    env : GridWorld or a Gymnasium grid map
        Anything with ``shape`` (H, W); its start cell is marked "S" when it has one.
    posterior_mean, posterior_sd : array, shape (S,) or (H, W)
        Per cell: the reward of entering the cell (``features @ theta`` for (S, F) features).
    true_reward : array, shape (S,) or (H, W), optional
        The reward the demonstrations came from; adds a panel and the correlation.
    visits : array, shape (S,) or (H, W), optional
        How often the demonstrations entered each cell.
    save : str or os.PathLike, optional
        ``.png`` or ``.svg`` file to write.
    title : str, optional
        Overall title (default: what the panels show).

    Returns
    -------
    matplotlib.figure.Figure
    """
    shape = getattr(env, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError("plot_reward_posterior needs an environment with a grid shape (H, W)")
    shape = tuple(int(n) for n in shape)

    def cells(values, name):
        if values is None:
            return None
        array = np.asarray(values, np.float64)
        if array.size != shape[0] * shape[1] or array.ndim not in (1, 2):
            raise ValueError(
                f"{name} must have shape (S,) = ({shape[0] * shape[1]},) or (H, W) = {shape}, "
                f"got {array.shape}"
            )
        if array.ndim == 2 and array.shape != shape:
            raise ValueError(f"{name} must have shape (H, W) = {shape}, got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must be finite")
        return array.reshape(shape)

    mean = cells(posterior_mean, "posterior_mean")
    sd = cells(posterior_sd, "posterior_sd")
    if np.any(sd < 0):
        raise ValueError("posterior_sd must be >= 0")
    truth = cells(true_reward, "true_reward")
    seen = cells(visits, "visits")
    bound = max(float(np.abs(mean).max()), 0.0 if truth is None else float(np.abs(truth).max()))
    shared = colors.Normalize(vmin=-bound, vmax=bound) if bound > 0 else colors.Normalize(-1, 1)
    spread = colors.Normalize(vmin=0.0, vmax=float(sd.max()) if sd.max() > 0 else 1.0)
    digits = 2 if bound < 10 else 1 if bound < 100 else 0
    fmt = f"{{:.{digits}f}}" if bound < 1e4 else "{:.3g}"
    sd_fmt = f"±{{:.{digits}f}}" if bound < 1e4 else "±{:.2g}"
    panels = []
    if truth is not None:
        panels.append(("true reward", truth, _REWARD_CMAP, shared, fmt))
    panels.append(("posterior mean reward", mean, _REWARD_CMAP, shared, fmt))
    panels.append(("posterior sd", sd, _SD_CMAP, spread, sd_fmt))
    side = min(4.4, max(3.0, 0.75 * shape[1] + 1.2))
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(side * len(panels) + 0.8, side * shape[0] / shape[1] + 0.7),
        dpi=DPI,
        layout="constrained",
    )
    axes = np.atleast_1d(axes)
    fontsize = 10 if max(shape) <= 6 else 8 if max(shape) <= 9 else 6
    for ax, (label, values, cmap, norm, fmt) in zip(axes, panels, strict=True):
        image = ax.imshow(values, cmap=cmap, norm=norm)
        colormap = image.get_cmap()
        for (row, col), value in np.ndenumerate(values):
            red, green, blue, _ = colormap(norm(value))
            dark = 0.299 * red + 0.587 * green + 0.114 * blue < 0.5
            ax.text(
                col,
                row,
                _no_minus_zero(fmt.format(value)),
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if dark else "black",
            )
        if seen is not None and label != "true reward":
            for row, col in zip(*np.nonzero(seen == 0), strict=True):
                ax.add_patch(
                    patches.Rectangle(
                        (col - 0.5, row - 0.5), 1, 1, fill=False, hatch="///", ec="0.45", lw=0
                    )
                )
        start = getattr(env, "start", None)
        if start is not None and len(start) == 2:
            ax.add_patch(
                patches.Rectangle(
                    (start[1] - 0.46, start[0] - 0.46),
                    0.92,
                    0.92,
                    fill=False,
                    ec="deepskyblue",
                    lw=2.5,
                )
            )
            ax.text(
                start[1] - 0.36,
                start[0] - 0.30,
                "S",
                fontsize=9,
                fontweight="bold",
                color="deepskyblue",
                path_effects=[patheffects.withStroke(linewidth=2, foreground="black")],
            )
        _cell_axes(ax, shape)
        ax.set_title(label, fontsize=11)
        if label != "true reward":  # one bar per scale: the mean's serves the truth too
            plt.colorbar(image, ax=ax, shrink=0.8)
    if title is None:
        title = "reward posterior"
        if truth is not None:
            corr = np.corrcoef(mean.ravel(), truth.ravel())[0, 1] if mean.std() > 0 else np.nan
            title += f": correlation of posterior mean with the truth {corr:.2f}"
        if seen is not None and np.any(seen == 0):
            title += (
                "\n(hatched: no demonstration entered the cell; being avoided is evidence too: "
                "it pulls the reward below the prior, unless the cell is out of reach)"
            )
    fig.suptitle(title, fontsize=11)
    return _finish(fig, save)


def _no_minus_zero(text):
    """'-0.00' -> '0.00' (a value that rounds to zero shown without a sign)."""
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text


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
    return _finish(fig, save)


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
    return _finish(fig, save)


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
    pc = _finish_collection(pc, title, "fractional rank of the return", None)
    ax = pc.get_viz("figure").axes[0]
    ax.set_ylabel("ECDF minus uniform")
    _save_collection(pc, save)
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
    pc = _finish_collection(pc, f"Return per draw ({_problem_label(dt)})", "draw", None)
    fig = pc.get_viz("figure")
    for ax in fig.axes:
        if ax.get_xlabel() == "draw" or not ax.get_ylabel():
            ax.set_ylabel("return")
    _save_collection(pc, save)
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
    image = ax.imshow(grid, cmap=_REWARD_CMAP, norm=norm, alpha=alpha)
    if annotate:
        for (row, col), value in np.ndenumerate(grid):
            ax.text(col, row, f"{value:g}", ha="center", va="center", fontsize=8)
    if colorbar:
        plt.colorbar(image, ax=ax, shrink=0.85, label="cell reward (symmetric log scale)")
    _mark_start_goal(ax, dt)
    _cell_axes(ax, grid.shape)


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


def _cell_axes(ax, shape):
    height, width = shape
    ax.set_xticks(np.arange(width))
    ax.set_yticks(np.arange(height))
    ax.set_xticks(np.arange(-0.5, width), minor=True)
    ax.set_yticks(np.arange(-0.5, height), minor=True)
    ax.grid(which="minor", color="white", lw=1.0)
    ax.tick_params(which="minor", length=0)
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_xlabel("column")
    ax.set_ylabel("row")


def _finish(fig, save):
    if save is not None:
        fig.savefig(_check_save_path(save), dpi=DPI)
    return fig


def _finish_collection(pc, title, xlabel, save):
    fig = pc.get_viz("figure")
    ax = fig.axes[0]
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    fig.set_layout_engine("constrained")
    _save_collection(pc, save)
    return pc


def _save_collection(pc, save):
    if save is not None:
        pc.get_viz("figure").savefig(_check_save_path(save), dpi=DPI)


def _check_save_path(path):
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() not in SAVE_FORMATS:
        raise ValueError(f"save must be a .png or .svg file name, got {path!r}")
    return path


# ----------------------------------------------------------------------------- variational policies

# (row, col) moves of the action names the grids use; "stay" is drawn as a ring.
_MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1), "stay": (0, 0)}


def plot_elbo_trace(elbo_trace, log_z=None, elbo_star=None, save=None):
    """The ELBO per optimisation step, with log Z and ELBO* as horizontal lines.

    Left: the ELBO on a symlog axis (the notebook's ELBOs span hundreds of nats). Right, when
    log Z or ELBO* is given: the gap to it (``reference - ELBO``, the KL to the posterior for
    log Z) on a symlog axis reaching down to 1e-12, so that convergence to machine precision
    reads well.

    Parameters
    ----------
    elbo_trace : array, shape (num_steps,)
        ``FittedPolicy.elbo_trace``.
    log_z, elbo_star : float, optional
    save : str, optional
        A .png or .svg path.

    Returns
    -------
    matplotlib.figure.Figure
    """
    trace = np.asarray(elbo_trace, np.float64)
    if trace.ndim != 1 or trace.size == 0:
        raise ValueError(f"elbo_trace must be a non-empty 1-D array, got shape {trace.shape}")
    references = {
        name: float(value)
        for name, value in (("log Z", log_z), ("ELBO*", elbo_star))
        if value is not None
    }
    for name, value in references.items():
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    steps = np.arange(1, trace.size + 1)
    ncols = 2 if references else 1
    fig, axes = plt.subplots(1, ncols, figsize=(5.0 * ncols, 3.6), layout="constrained")
    axes = np.atleast_1d(axes)
    ax = axes[0]
    ax.plot(steps, trace, color="C0", lw=1.2, label="ELBO")
    styles = {"log Z": ("C3", "--"), "ELBO*": ("C2", ":")}
    for name, value in references.items():
        color, style = styles[name]
        ax.axhline(value, color=color, ls=style, lw=1.2, label=f"{name} = {value:.6g}")
    scale = max(1.0, float(np.nanmin(np.abs(np.r_[trace[np.isfinite(trace)], 1.0]))) / 10)
    ax.set_yscale("symlog", linthresh=scale)
    shown = np.r_[trace[np.isfinite(trace)], list(references.values())]
    low, high = float(shown.min()), float(shown.max())
    ax.set_ylim(_symlog_pad(low, scale, -1), _symlog_pad(high, scale, +1))
    ax.set_xlabel("step")
    ax.set_ylabel("ELBO (symlog)")
    ax.set_title("ELBO per step", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    if references:
        ax = axes[1]
        for name, value in references.items():
            color, style = styles[name]
            ax.plot(steps, value - trace, color=color, lw=1.2, label=f"{name} - ELBO")
        ax.axhline(0.0, color="0.3", lw=0.8)
        ax.set_yscale("symlog", linthresh=1e-12)
        gaps = np.concatenate([value - trace for value in references.values()])
        gaps = gaps[np.isfinite(gaps)]
        top = max(float(gaps.max()), 1e-12) * 10
        bottom = min(float(gaps.min()), 0.0) * 10
        ax.set_ylim(bottom, top)
        ax.set_xlabel("step")
        ax.set_ylabel("gap (nats, symlog)")
        ax.set_title("gap to the bound (log Z - ELBO = KL(q || posterior))", fontsize=10)
        ax.legend(fontsize=8)
    if trace.size > 1:
        for ax in axes:
            ax.set_xscale("log")
            ax.set_xlim(1, trace.size)
        axes[0].set_xlabel("step (log scale)")
        if references:
            axes[1].set_xlabel("step (log scale)")
    return _finish(fig, save)


def _symlog_pad(value, linthresh, direction):
    """``value`` moved outwards (``direction`` +1 up, -1 down) by a margin that reads on a symlog
    axis: a factor 2 beyond the linear part, ``linthresh`` within it."""
    if direction * value > linthresh:
        return value * 2
    return value + direction * linthresh


def plot_policy(env, log_policy, time=0, save=None):
    """A policy on the grid at one time step: arrows by action probability.

    Each cell gets one arrow per move, its length and width growing with q_t(a | s); 'stay'
    (where the environment has it) is a ring whose size grows with its probability. Moves below
    probability 0.02 are not drawn. A GridWorld's cells are coloured by their reward, on a
    symmetric log scale when the rewards span more than two orders of magnitude (the notebook
    grid's -1 ... -100 beside +10000), else a linear one. The map is marked: S the start, G
    the goal (a GridWorld's best cell), holes (H) and cliffs (C) hatched, from a Gymnasium
    map's ``desc``.

    Parameters
    ----------
    env : GridWorld or a Gymnasium grid map (FrozenLake-v1, CliffWalking-v1)
        An MDP whose states are the cells of a grid (``shape``).
    log_policy : array, shape (T, S, A)
        log q_t(a | s), e.g. ``FittedPolicy.log_policy``.
    time : int, default 0
        The step t to draw, 0 <= t < T.
    save : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    shape = getattr(env, "shape", None)
    if shape is None or int(np.prod(shape)) != env.n_states:
        raise ValueError(
            "env must be an MDP whose states are the cells of a grid (shape (H, W)), e.g. a "
            f"GridWorld or FrozenLake-v1; got {type(env).__name__}"
        )
    log_policy = np.asarray(log_policy, np.float64)
    if log_policy.ndim != 3 or log_policy.shape[1:] != (env.n_states, env.n_actions):
        raise ValueError(
            f"log_policy must have shape (T, S, A) = (T, {env.n_states}, {env.n_actions}), got "
            f"{log_policy.shape}"
        )
    if isinstance(time, bool) or not isinstance(time, (int, np.integer)):
        raise TypeError(f"time must be an int, got {time!r}")
    if not 0 <= time < log_policy.shape[0]:
        raise ValueError(f"time must be in [0, {log_policy.shape[0]}), got {time}")
    names = getattr(env, "action_names", None)
    if names is None:
        from pgm_rl.envs import ACTION_NAMES

        names = ACTION_NAMES
    if len(names) != env.n_actions or any(name not in _MOVES for name in names):
        raise ValueError(f"plot_policy draws grid moves {tuple(_MOVES)}; the actions are {names}")
    probs = np.exp(log_policy[time])
    height, width = shape
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * width, 0.6 + 0.9 * height), layout="constrained")
    rewards = getattr(env, "rewards", None)
    if rewards is not None:
        grid = np.asarray(rewards, np.float64).reshape(height, width)
        norm, label = _reward_norm(grid)
        image = ax.imshow(grid, cmap=_REWARD_CMAP, norm=norm, alpha=0.55)
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    else:
        ax.imshow(np.zeros(shape), cmap="Greys", vmin=0, vmax=1)
    _draw_letters(ax, _map_letters(env), fontsize=9)
    for state in range(env.n_states):
        row, col = divmod(state, width)
        for action, name in enumerate(names):
            p = float(probs[state, action])
            if p < 0.02:
                continue
            d_row, d_col = _MOVES[name]
            if name == "stay":
                ax.add_patch(
                    patches.Circle(
                        (col, row),
                        0.08 + 0.22 * np.sqrt(p),
                        fill=False,
                        lw=0.6 + 1.6 * p,
                        color="k",
                    )
                )
                continue
            length = 0.45 * p
            ax.arrow(
                col,
                row,
                d_col * length,
                d_row * length,
                width=0.015 + 0.05 * p,
                head_width=0.06 + 0.12 * p,
                head_length=min(0.05 + 0.1 * p, length),
                length_includes_head=True,
                color="k",
                alpha=0.35 + 0.65 * p,
                lw=0,
            )
    _cell_axes(ax, shape)
    legend = "arrows by probability; ring: stay" if "stay" in names else "arrows by probability"
    ax.set_title(f"policy q_t(a | s) at t = {time} ({legend})", fontsize=10)
    return _finish(fig, save)


def _reward_norm(grid):
    """Colour scale of cell rewards, centred on 0: symmetric log when the largest nonzero
    magnitude is more than 100 times the median one, so that small rewards stay visible beside
    a large goal (linear up to the smallest nonzero magnitude, at most 4 decades below the
    largest: one colour step per decade); linear otherwise. Returns ``(norm, bar label)``."""
    magnitudes = np.abs(grid[grid != 0])
    if magnitudes.size == 0:
        return colors.Normalize(vmin=-1.0, vmax=1.0), "reward"
    bound = float(magnitudes.max())
    if bound > 100.0 * float(np.median(magnitudes)):
        linthresh = max(float(magnitudes.min()), 1e-4 * bound)
        norm = colors.SymLogNorm(linthresh=linthresh, vmin=-bound, vmax=bound, base=10)
        return norm, "reward (symmetric log scale)"
    return colors.Normalize(vmin=-bound, vmax=bound), "reward"


def plot_policy_occupancy(env, exact, policies, save=None, title=None, exact_subtitle=None):
    """Executed policies' occupancy beside the exact posterior's, on one colour scale.

    One panel for the exact posterior, then one per policy: expected visits per cell in steps
    0..T (:func:`episode_visits`), coloured on one (square-root) scale and written in each cell.

    Parameters
    ----------
    env : GridWorld or a Gymnasium grid map
        An MDP whose states are the cells of a grid (``shape``).
    exact : ExactPosterior
        ``pgm_rl.solve(env, T, beta)``.
    policies : sequence of (label, PolicyEvaluation, subtitle)
        E.g. ``("reverse KL", evaluate_policy(env, fitted.policy, beta), "KL(q||p) = 0.03")``;
        ``subtitle`` (may be ``""``) is written under the label.
    save : str or os.PathLike, optional
        ``.png`` or ``.svg`` file to write.
    title : str, optional
        The figure's title.
    exact_subtitle : str, optional
        Under the exact panel's label (default: its log Z).

    Returns
    -------
    matplotlib.figure.Figure
    """
    shape = getattr(env, "shape", None)
    if shape is None or not hasattr(env, "n_states") or int(np.prod(shape)) != env.n_states:
        raise ValueError(
            "env must be an MDP whose states are the cells of a grid (shape (H, W)), e.g. a "
            "GridWorld or FrozenLake-v1"
        )
    if not isinstance(exact, ExactPosterior):
        raise TypeError(f"exact must be a pgm_rl.ExactPosterior, got {type(exact).__name__}")
    if exact_subtitle is None:
        exact_subtitle = f"log Z = {float(exact.log_z):.4g}"
    panels = [("exact posterior", exact, str(exact_subtitle))]
    for item in policies:
        if not (isinstance(item, (tuple, list)) and len(item) == 3):
            raise TypeError("policies must be a sequence of (label, PolicyEvaluation, subtitle)")
        label, result, subtitle = item
        if not isinstance(result, PolicyEvaluation):
            raise TypeError(
                f"policies[{label!r}] must hold a PolicyEvaluation (evaluate_policy), got "
                f"{type(result).__name__}"
            )
        if result.mdp.n_states != env.n_states or result.horizon != exact.horizon:
            raise ValueError(f"policies[{label!r}] was evaluated on another MDP or horizon")
        panels.append((str(label), result, str(subtitle)))
    height, width = shape
    visits = [episode_visits(result).reshape(height, width) for _, result, _ in panels]
    vmax = max(float(v.max()) for v in visits)
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
    cell = 0.8 if max(height, width) <= 7 else 0.55
    figsize = (
        len(panels) * (max(width * cell, 3.2) + 0.3) + 1.4,
        max(height * cell, 3.0) + 1.9,
    )
    fig, axes = plt.subplots(
        1, len(panels), figsize=figsize, dpi=DPI, layout="constrained", squeeze=False
    )
    axes = axes.ravel()
    fontsize = 8 if max(height, width) <= 7 else 6
    desc = getattr(env, "desc", None)
    for ax, (label, _, subtitle), grid in zip(axes, panels, visits, strict=True):
        image = ax.imshow(grid, cmap=_VISIT_CMAP, norm=norm)
        _draw_map(ax, desc, grid, norm, fontsize)
        _cell_axes(ax, shape)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_title(
            label, fontsize=10.5, fontweight="bold", pad=8 + 11 * (subtitle.count("\n") + 1)
        )
        ax.text(0.5, 1.01, subtitle, transform=ax.transAxes, ha="center", va="bottom", fontsize=8.5)
    fig.colorbar(image, ax=axes, shrink=0.85, label="expected visits per cell (steps 0..T)")
    if title is not None:
        fig.suptitle(title)
    return _finish(fig, save)
