"""A policy on the grid at one time step: arrows by action probability."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors, patches

from pgm_rl.plots.maps import draw_letters, map_letters
from pgm_rl.plots.style import REWARD_CMAP, cell_axes, finish
from pgm_rl.worlds import ACTION_NAMES

__all__ = ["plot_policy"]

# (row, col) moves of the action names the grids use; "stay" is drawn as a ring.
_MOVES = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1), "stay": (0, 0)}


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
        image = ax.imshow(grid, cmap=REWARD_CMAP, norm=norm, alpha=0.55)
        fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    else:
        ax.imshow(np.zeros(shape), cmap="Greys", vmin=0, vmax=1)
    draw_letters(ax, map_letters(env), fontsize=9)
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
    cell_axes(ax, shape)
    legend = "arrows by probability; ring: stay" if "stay" in names else "arrows by probability"
    ax.set_title(f"policy q_t(a | s) at t = {time} ({legend})", fontsize=10)
    return finish(fig, save)


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
