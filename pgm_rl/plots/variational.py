"""The ELBO of a policy fit per optimisation step, and its gap to log Z and ELBO*."""

import matplotlib.pyplot as plt
import numpy as np

from pgm_rl.plots.style import finish

__all__ = ["plot_elbo_trace"]


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
    return finish(fig, save)


def _symlog_pad(value, linthresh, direction):
    """``value`` moved outwards (``direction`` +1 up, -1 down) by a margin that reads on a symlog
    axis: a factor 2 beyond the linear part, ``linthresh`` within it."""
    if direction * value > linthresh:
        return value * 2
    return value + direction * linthresh
