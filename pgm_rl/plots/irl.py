"""The reward posterior of inverse RL on the grid: (true reward,) posterior mean, posterior sd."""

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors, patches, patheffects

from pgm_rl.plots.style import DPI, REWARD_CMAP, SD_CMAP, cell_axes, finish

__all__ = ["plot_reward_posterior"]


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
        panels.append(("true reward", truth, REWARD_CMAP, shared, fmt))
    panels.append(("posterior mean reward", mean, REWARD_CMAP, shared, fmt))
    panels.append(("posterior sd", sd, SD_CMAP, spread, sd_fmt))
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
        cell_axes(ax, shape)
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
    return finish(fig, save)


def _no_minus_zero(text):
    """'-0.00' -> '0.00' (a value that rounds to zero shown without a sign)."""
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text
