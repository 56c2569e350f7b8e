"""How a reward machine's task gets done over time: the probability of having reached a terminal
machine state by each step, exact and from draws."""

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from pgm_rl.diagnostics import trajectory_states
from pgm_rl.plots.style import DPI, finish
from pgm_rl.worlds import RewardMachineMDP, satisfaction_probability

__all__ = ["plot_satisfaction"]


def plot_satisfaction(product, exact=None, samples=None, save=None):
    """P(the machine is in a terminal state by step t) against t = 0..T.

    Parameters
    ----------
    product : RewardMachineMDP
        From :func:`pgm_rl.envs.with_reward_machine`.
    exact : ExactPosterior or array (T + 1, S * U), optional
        The exact posterior of ``product`` (or its state marginals): a solid line.
    samples : xarray.DataTree or int array (chains, draws, T + 1), optional
        A run's tree (:func:`~pgm_rl.diagnostics.to_datatree` of ``product``) or its product
        states: the fraction of draws done by each step, pooled (dashed) and per chain (thin), so
        chains that disagree show.
    save : str or os.PathLike, optional
        ``.png`` or ``.svg`` file to write.

    Returns
    -------
    matplotlib.figure.Figure
        One panel, 6.4 x 3.8 in at 100 dpi; the probability axis reaches just above the largest
        value drawn (at most 1, at least 0.05), so that small probabilities read.

    Raises
    ------
    TypeError
        For a ``product`` that is not a RewardMachineMDP, or ``samples`` of another kind.
    ValueError
        When neither ``exact`` nor ``samples`` is given, or their horizons differ.
    """
    if not isinstance(product, RewardMachineMDP):
        raise TypeError(
            "product must be the result of pgm_rl.envs.with_reward_machine, got "
            f"{type(product).__name__}"
        )
    if exact is None and samples is None:
        raise ValueError("give exact (an ExactPosterior) or samples (draws' states), or both")
    curves = {}
    if exact is not None:
        curves["exact"] = satisfaction_probability(exact, product)
    per_chain = None
    if samples is not None:
        if isinstance(samples, xr.DataTree):
            samples = trajectory_states(samples).values
        states = np.asarray(samples)
        if states.dtype.kind not in "iu" or states.ndim not in (2, 3):
            raise TypeError(
                "samples must be a DataTree from to_datatree or int states (chains, draws, "
                f"T + 1) or (draws, T + 1), got {states.dtype} of shape {states.shape}"
            )
        states = states.reshape(-1, *states.shape[-2:])
        per_chain = np.stack([satisfaction_probability(chain, product) for chain in states])
        curves["sampled"] = satisfaction_probability(states, product)
    lengths = {len(curve) for curve in curves.values()}
    if len(lengths) > 1:
        raise ValueError(
            f"exact and samples have different horizons (T + 1 = {sorted(lengths)} steps)"
        )
    steps = np.arange(lengths.pop())
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=DPI, layout="constrained")
    if per_chain is not None and len(per_chain) > 1:
        for k, chain in enumerate(per_chain):
            ax.plot(
                steps,
                chain,
                color="C1",
                lw=0.8,
                alpha=0.45,
                label="each chain" if k == 0 else None,
            )
    if "sampled" in curves:
        draws = int(np.prod(np.shape(samples)[:-1]))
        ax.plot(
            steps,
            curves["sampled"],
            color="C1",
            lw=1.8,
            ls="--",
            marker="x",
            label=f"sampled ({draws} draws): {curves['sampled'][-1]:.3g} at T",
        )
    if "exact" in curves:
        label = f"exact: {curves['exact'][-1]:.3g} at T"
        ax.plot(steps, curves["exact"], color="C0", lw=2.0, marker="o", ms=4, label=label)
    top = max(float(np.max(curve)) for curve in curves.values())
    ax.set_ylim(-0.02 * min(1.0, 1.15 * top), min(1.02, max(0.05, 1.15 * top)))
    ax.set_xlim(0, max(steps[-1], 1))
    ax.set_xlabel("step t")
    ax.set_ylabel("P(task done by step t)")
    ax.set_title(
        f"P(machine in a terminal state {list(product.machine.terminal)} by step t), "
        f"T = {steps[-1]}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return finish(fig, save)
