"""Convergence of a run: R-hat and ESS of the return, the end states and the occupancy.

:func:`summary` (a :class:`SummaryTable`) and :func:`occupancy_r_hat`; the named indicators
(``return``, ``end[...]``, ``occupancy[...]``) are shared with
:func:`~pgm_rl.diagnostics.compare_to_exact` and :func:`~pgm_rl.diagnostics.problems`.
"""

import warnings

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr
from arviz_stats.base import array_stats

from pgm_rl.diagnostics.datatree import SAMPLE_DIMS, trajectory_states, tree_group
from pgm_rl.diagnostics.marginals import varying_indicators

__all__ = [
    "END_MASS",
    "MAX_END_ROWS",
    "R_HAT_THRESHOLD",
    "SUMMARY_COLUMNS",
    "SummaryTable",
    "end_indicators",
    "occupancy_r_hat",
    "summary",
    "where_label",
    "worst_occupancy",
]

SUMMARY_COLUMNS = ["mean", "sd", "ess_bulk", "ess_tail", "r_hat", "mcse_mean", "mcse_sd"]
R_HAT_THRESHOLD = 1.01
# summary's end rows: the fewest end states holding this fraction of the draws, at most this many
END_MASS = 0.9
MAX_END_ROWS = 5


def occupancy_r_hat(states, n_states):
    """Rank-normalised R-hat of every state-occupancy indicator ``1[states[t] == s]``.

    Parameters
    ----------
    states : int array, shape (chains, draws, T + 1)
    n_states : int

    Returns
    -------
    numpy.ndarray, shape (T + 1, S)
        R-hat of each indicator; NaN where the indicator is constant over all draws.

    Notes
    -----
    For a 0/1 variable the rank normalisation of arviz-stats is an affine map (the two values
    go to two z-scores) and folding gives the variable itself, its complement or a constant,
    so the rank-normalised R-hat equals the split R-hat; it is computed in one vectorised
    ``arviz_stats.base.array_stats.rhat(..., method="split")`` call (about 11x faster than
    ``method="rank"``, the same to 1e-15) over the indicators that vary.
    """
    indicators, (steps, cells) = varying_indicators(states, n_states)
    out = np.full((states.shape[-1], n_states), np.nan)
    if steps.size:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[steps, cells] = array_stats.rhat(
                indicators, chain_axis=1, draw_axis=2, method="split"
            )
    return out


def end_indicators(dt):
    """``return`` and one ``end[...]`` indicator per end state (:func:`_end_states`), each
    (chain, draw), as one Dataset."""
    posterior = tree_group(dt, "posterior")
    final = posterior["states"].isel(step=-1, drop=True)
    data = {"return": posterior["return"]}
    for state in _end_states(dt):
        data[where_label(dt, None, state, "end")] = (final == state).astype(float)
    return xr.Dataset(data)


def _end_states(dt):
    """The states where the draws end (step T), most frequent first: the fewest that hold
    ``END_MASS`` of the draws, at most ``MAX_END_ROWS``."""
    final = tree_group(dt, "posterior")["states"].isel(step=-1).values.ravel()
    counts = np.bincount(final)
    order = np.argsort(-counts, kind="stable")
    mass = np.cumsum(counts[order]) / final.size
    keep = min(int(np.searchsorted(mass, END_MASS)) + 1, MAX_END_ROWS)
    return [int(state) for state in order[:keep] if counts[state] > 0]


def where_label(dt, step, state, what="occupancy"):
    """``"occupancy[t=1, cell=(4, 1)]"`` on a grid, ``"occupancy[t=1, state=6]"`` otherwise;
    without ``step``: ``"end[cell=(4, 1)]"`` (``what="end"``)."""
    at = "" if step is None else f"t={int(step)}, "
    if "constant_data" in dt.children and "grid" in dt["constant_data"]:
        width = dt["constant_data"]["grid"].shape[1]
        row, col = divmod(int(state), width)
        return f"{what}[{at}cell=({row}, {col})]"
    return f"{what}[{at}state={int(state)}]"


def worst_occupancy(dt):
    """(r_hat, step, state) of the occupancy indicator with the largest R-hat, or None."""
    states = trajectory_states(dt).values
    n_states = tree_group(dt, "constant_data").sizes["state"]
    r_hat = occupancy_r_hat(states, n_states)
    if np.isnan(r_hat).all():  # nothing varies, or R-hat undefined (one chain, < 4 draws)
        return None
    step, state = np.unravel_index(np.nanargmax(r_hat), r_hat.shape)
    return float(r_hat[step, state]), int(step), int(state)


def summary(dt, r_hat_threshold=R_HAT_THRESHOLD):
    """Convergence summary: the return, where the draws end, and the worst-mixing occupancy.

    Through :func:`arviz_stats.summary`: mean, sd, bulk and tail ESS, R-hat and the MCSE of
    the mean and sd, for

    - ``"return"``;
    - ``"end[cell=(r, c)]"`` (``"end[state=s]"`` off a grid): the indicator of ending (step
      T) in that cell, for the cells where the draws end, most frequent first: the fewest
      that hold 90% of the draws, at most 5 (with several goals, the ones the posterior
      reaches; no row for a cell no draw ends in);
    - one row for the state-occupancy indicator ``1[states[t] == s]`` (over all steps t and
      states s where it varies) with the largest rank-normalised R-hat, named after where it
      occurs, e.g. ``"occupancy[t=1, cell=(4, 1)]"`` (``"occupancy[t=1, state=6]"`` off a
      grid). Chains that sit on different routes with the same return have a return R-hat
      near 1 but are caught here. When no indicator has an R-hat (every draw takes the same
      path, or one chain only) the row is ``"occupancy[no R-hat]"`` with NaN statistics.

    Indicators that are constant over all draws have NaN ESS and R-hat.

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.
    r_hat_threshold : float, default 1.01
        R-hat above it is flagged (``table.attrs["flagged"]``).

    A continuous run (:func:`control_datatree`) gets one row for ``"return"`` and one per action
    coordinate ``actions[t, d]`` instead.

    Returns
    -------
    SummaryTable
        A :class:`pandas.DataFrame` that prints all its columns (no ``...``): one row per
        quantity (``"return"``, the ``end[...]`` rows, then the occupancy row), columns
        ``mean, sd, ess_bulk, ess_tail, r_hat, mcse_mean, mcse_sd``.
        ``table.attrs``: ``end_states`` (list of int, the states of the ``end`` rows, in
        order), ``worst_r_hat`` (float, the largest R-hat of all the rows and of
        every varying occupancy indicator; NaN when none is defined), ``worst_r_hat_at``
        (str, the row it occurs in), ``r_hat_threshold`` and ``flagged`` (bool,
        ``worst_r_hat > r_hat_threshold``).
    """
    r_hat_threshold = _check_threshold(r_hat_threshold)
    if getattr(dt, "attrs", {}).get("kind") == "control":  # a continuous run
        return _control_summary(dt, r_hat_threshold)
    data = end_indicators(dt)
    worst = worst_occupancy(dt)
    if worst is None:
        name = "occupancy[no R-hat]"
        occupancy = xr.zeros_like(data["return"])
    else:
        _, step, state = worst
        name = where_label(dt, step, state)
        occupancy = (trajectory_states(dt).sel(step=step) == state).astype(float)
    data[name] = occupancy.drop_vars("step", errors="ignore")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = azs.summary(data, kind="all", round_to="none", sample_dims=SAMPLE_DIMS)
    table = SummaryTable(table[SUMMARY_COLUMNS])
    if worst is None:
        table.loc[name] = np.nan
    return _flag(table, r_hat_threshold, end_states=_end_states(dt))


def _control_summary(dt, r_hat_threshold):
    """:func:`summary` of a continuous run (:func:`control_datatree`): the return and every
    action coordinate ``actions[t, d]``."""
    posterior = tree_group(dt, "posterior")
    data = xr.Dataset({"return": posterior["return"], "actions": posterior["actions"]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = azs.summary(data, kind="all", round_to="none", sample_dims=SAMPLE_DIMS)
    return _flag(SummaryTable(table[SUMMARY_COLUMNS]), r_hat_threshold)


def _flag(table, r_hat_threshold, **attrs):
    """``table`` with its worst R-hat, where it is, and whether it is flagged, in its attrs."""
    r_hat = table["r_hat"].astype(float)
    if r_hat.notna().any():
        worst_at = str(r_hat.idxmax())
        worst_value = float(r_hat.max())
    else:
        worst_at, worst_value = "", float("nan")
    table.attrs.update(
        **attrs,
        worst_r_hat=worst_value,
        worst_r_hat_at=worst_at,
        r_hat_threshold=r_hat_threshold,
        flagged=bool(worst_value > r_hat_threshold),
    )
    return table


class SummaryTable(pd.DataFrame):
    """The table of :func:`summary`: a :class:`pandas.DataFrame` whose printed form shows every
    column (pandas' default width hides R-hat and ESS behind ``...``)."""

    @property
    def _constructor(self):
        return SummaryTable

    def __repr__(self):
        with pd.option_context(
            "display.max_columns", None, "display.width", None, "display.expand_frame_repr", False
        ):
            return super().__repr__()

    def __str__(self):
        return self.__repr__()


def _check_threshold(value):
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1.0:
        raise ValueError(f"r_hat_threshold must be a number >= 1, got {value!r}")
    return float(value)
