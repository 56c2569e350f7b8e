"""Occupancy maps of exact and executed policies on a grid environment's map.

:func:`plot_env_occupancy` (the exact posterior beside the soft-Bellman policy),
:func:`plot_policy_occupancy` (executed policies beside the exact posterior) and the number they
draw, :func:`episode_visits`; the map's letters (:func:`draw_letters`) are shared with
:func:`pgm_rl.plots.plot_policy`.
"""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors, patches, patheffects

from pgm_rl.diagnostics import best_state
from pgm_rl.exact import ExactPosterior, PolicyEvaluation, evaluate_policy
from pgm_rl.plots.style import DPI, VISIT_CMAP, cell_axes, finish
from pgm_rl.worlds import describe_randomness

__all__ = [
    "draw_letters",
    "episode_visits",
    "map_letters",
    "plot_env_occupancy",
    "plot_policy_occupancy",
]

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
        image = ax.imshow(grid, cmap=VISIT_CMAP, norm=norm)
        _draw_map(ax, desc, grid, norm, fontsize)
        cell_axes(ax, shape)
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
    randomness = describe_randomness(env) or "deterministic dynamics"
    name = getattr(env, "env_id", "grid world")
    fig.suptitle(
        f"{name} ({randomness}), T = {exact.horizon}, beta = {exact.beta:g}: "
        "where the agent goes in an episode"
    )
    return finish(fig, save)


def _draw_map(ax, desc, grid, norm, fontsize):
    """The map's letters (top left of each cell), values in the cells, hazards hatched."""
    draw_letters(ax, desc, fontsize)
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


def map_letters(env):
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


def draw_letters(ax, desc, fontsize):
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
        image = ax.imshow(grid, cmap=VISIT_CMAP, norm=norm)
        _draw_map(ax, desc, grid, norm, fontsize)
        cell_axes(ax, shape)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.set_title(
            label, fontsize=10.5, fontweight="bold", pad=8 + 11 * (subtitle.count("\n") + 1)
        )
        ax.text(0.5, 1.01, subtitle, transform=ax.transAxes, ha="center", va="bottom", fontsize=8.5)
    fig.colorbar(image, ax=axes, shrink=0.85, label="expected visits per cell (steps 0..T)")
    if title is not None:
        fig.suptitle(title)
    return finish(fig, save)
