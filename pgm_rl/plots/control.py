"""Pictures of continuous control: the action posterior over time beside the exact band
(:func:`plot_action_band`) and a model-predictive control episode (:func:`plot_episode`)."""

import matplotlib.pyplot as plt
import numpy as np

from pgm_rl.plots.style import finish

__all__ = ["plot_action_band", "plot_episode"]

_EXACT = "black"
_SAMPLED = "tab:blue"


def plot_action_band(dt, posterior=None, action=0, ax=None, save=None, title=None):
    """The sampled actions' mean and 95% band over time, beside the exact band.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`pgm_rl.diagnostics.control_datatree`.
    posterior : GaussianPosterior, optional
        Draws its mean and mean +- 1.96 sd (dashed lines) over the sampled band.
    action : int, default 0
        The action coordinate drawn.
    ax : matplotlib Axes, optional
    save : str, optional
        A .png or .svg file name.
    title : str, optional
        Default: the sampler and beta of the tree (and the ESS of weighted draws).

    Returns
    -------
    matplotlib.figure.Figure
    """
    actions = dt["posterior"]["actions"].transpose("chain", "draw", "time", "action_dim")
    actions = np.asarray(actions)
    if not 0 <= action < actions.shape[-1]:
        raise ValueError(f"action must be in [0, {actions.shape[-1]}), got {action}")
    flat = actions.reshape(-1, *actions.shape[2:])[..., action]  # (draws, T)
    time = np.arange(flat.shape[1])
    fig, ax = _axes(ax, (7.0, 3.2))
    low, high = np.quantile(flat, [0.025, 0.975], axis=0)
    ax.fill_between(time, low, high, color=_SAMPLED, alpha=0.3, lw=0, label="sampled 95%")
    ax.plot(time, flat.mean(axis=0), color=_SAMPLED, lw=2, label="sampled mean")
    if posterior is not None:
        mean = np.asarray(posterior.mean)[:, action]
        sd = np.sqrt(np.asarray(posterior.action_cov)[:, action, action])
        ax.plot(time, mean, color=_EXACT, lw=1.2, label="exact mean")
        ax.plot(time, mean - 1.96 * sd, color=_EXACT, lw=1, ls="--", label="exact 95%")
        ax.plot(time, mean + 1.96 * sd, color=_EXACT, lw=1, ls="--")
    ax.set_xlabel("time step t")
    ax.set_ylabel(f"action u_t[{action}]")
    if title is None:
        beta = dt.attrs.get("beta")
        title = f"{dt.attrs.get('sampler', 'draws')}" + (
            "" if beta is None else f", beta = {beta:g}"
        )
        if "importance_ess" in dt.attrs:
            title += f", importance ESS {dt.attrs['importance_ess']:.0f}"
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.set_layout_engine("constrained")
    return finish(fig, save)


def plot_episode(episode, names=None, upright=None, save=None, title=None, action_bound=None):
    """An MPC episode: each state coordinate and the action over the steps.

    Parameters
    ----------
    episode : Episode
        From :func:`pgm_rl.control.mpc` (``states`` (S + 1, dx), ``actions`` (S, du),
        ``rewards`` (S,)).
    names : list of str, optional
        The state coordinates' names (default ``x[0]``, ``x[1]``, ...).
    upright : float, optional
        Shade ``|x[0]| < upright`` (e.g. 0.3 for the pendulum's success band around the top);
        ``x[0]`` is then an angle, drawn wrapped into [-pi, pi).
    save : str, optional
    title : str, optional
    action_bound : float, optional
        Where the environment clips the action (Pendulum-v1: 2): the planned action is drawn
        faint and what the environment applies, clipped to ``[-action_bound, action_bound]``,
        solid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    states = np.array(episode.states, dtype=float)
    if upright is not None:
        states[:, 0] = (states[:, 0] + np.pi) % (2 * np.pi) - np.pi
    actions = np.asarray(episode.actions)
    dx = states.shape[1]
    names = names or [f"x[{i}]" for i in range(dx)]
    fig, axes = plt.subplots(dx + 1, 1, figsize=(7.0, 1.6 * (dx + 1) + 0.6), sharex=True)
    steps = np.arange(states.shape[0])
    for i, ax in enumerate(axes[:-1]):
        if i == 0 and upright is not None:
            ax.axhspan(-upright, upright, color="tab:green", alpha=0.15, lw=0)
        ax.plot(steps, states[:, i], color="tab:blue", lw=1.5)
        ax.set_ylabel(names[i])
    time = np.arange(actions.shape[0])
    if action_bound is None:
        axes[-1].step(time, actions, where="post", color="tab:red", lw=1.2)
    else:
        axes[-1].step(time, actions, where="post", color="tab:red", lw=0.8, alpha=0.3,
                      label="planned")  # fmt: skip
        applied = np.clip(actions, -action_bound, action_bound)
        axes[-1].step(time, applied, where="post", color="tab:red", lw=1.2,
                      label=f"applied (clipped to ±{action_bound:g})")  # fmt: skip
        axes[-1].legend(loc="upper right", fontsize=8)
    axes[-1].set_ylabel("action")
    axes[-1].set_xlabel("step")
    cost = -float(np.sum(episode.rewards))
    axes[0].set_title(title or f"MPC episode: {actions.shape[0]} steps, cost {cost:.1f}",
                      fontsize=10)  # fmt: skip
    fig.set_layout_engine("constrained")
    return finish(fig, save)


def _axes(ax, figsize):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax
