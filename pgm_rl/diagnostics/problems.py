"""Every problem found with a run, in words: R-hat, stuck or copied chains, and its reference.

:func:`problems` reads :func:`~pgm_rl.diagnostics.summary` and
:func:`~pgm_rl.diagnostics.compare_to_reference`'s Dataset (given, or of the tree's reference).
"""

import numpy as np
import xarray as xr

from pgm_rl.diagnostics.continuous import GaussianComparison
from pgm_rl.diagnostics.convergence import (
    R_HAT_THRESHOLD,
    end_indicators,
    summary,
    where_label,
    worst_occupancy,
)
from pgm_rl.diagnostics.datatree import trajectory_states, tree_group
from pgm_rl.diagnostics.vs_exact import REFERENCE_Z
from pgm_rl.diagnostics.vs_reference import EXACT_REFERENCE, compare_to_reference, has_reference

__all__ = ["problems"]


def problems(dt, comparison=None, r_hat_threshold=R_HAT_THRESHOLD, *, reference=True):
    """Every problem found with a run, one human-readable line each (empty: none found).

    Parameters
    ----------
    dt : xarray.DataTree
        From :func:`to_datatree`.
    comparison : xarray.Dataset, optional
        From :func:`compare_to_reference` or :func:`compare_to_exact`; adds a line for each
        distance above its threshold. Default: the comparison with the tree's reference (its
        ``reference`` or ``exact`` group, which :func:`to_datatree` stores by default), when it
        has one and ``reference`` is True.
    r_hat_threshold : float, default 1.01
    reference : bool, default True
        False: no comparison unless ``comparison`` is given (it costs the reference's
        replicates, and for an ``exact`` group a :func:`pgm_rl.solve`: skip it for very large
        problems).

    Returns
    -------
    list of str
        - the worst R-hat over the return, the ``end[...]`` rows and the occupancy indicators when it
          is above ``r_hat_threshold``, naming where and giving the per-chain means;
        - chains that never move (every draw the same trajectory, or an acceptance rate of 0
          throughout where ``sample_stats`` records one) and chains identical to each other
          draw for draw (copies: the same seed): R-hat is NaN or meaningless for them, so
          they are named here; not when the tree's ``exact`` group says the posterior is
          one trajectory to within 1 / draws;
        - from the comparison: ``"disagrees with the exact posterior: mean TV X > threshold
          Y ..."`` (or ``"disagrees with the importance-sampling reference (ESS N of M): ..."``)
          for the mean TV, the max TV and the return error that exceed their thresholds, and
          the occupancy indicator furthest from its reference marginal when it is beyond
          ``occupancy_z_threshold``; one ``"not judged against ..."`` line instead when the
          reference's ESS is too small to judge.
    """
    if not isinstance(reference, bool):
        raise TypeError(f"reference must be True or False, got {reference!r}")
    if getattr(dt, "attrs", {}).get("kind") == "control":  # a continuous run
        return _control_problems(dt, comparison, r_hat_threshold)
    if comparison is None and reference and has_reference(dt):
        comparison = compare_to_reference(dt)
    table = summary(dt, r_hat_threshold)
    lines = _stuck_chains(dt)
    if table.attrs["flagged"]:
        where = table.attrs["worst_r_hat_at"]
        per_chain = _per_chain_means(dt, where)
        lines.append(
            f"R-hat {table.attrs['worst_r_hat']:.3f} > {table.attrs['r_hat_threshold']:g} at "
            f"{where}: the chains disagree (per-chain means {per_chain}); run longer or use a "
            "kernel that mixes better"
        )
    if comparison is not None:
        if not isinstance(comparison, xr.Dataset) or "tv_threshold" not in comparison:
            if not (isinstance(comparison, xr.Dataset) and "not_judged" in comparison.attrs):
                raise TypeError(
                    "comparison must be the xarray.Dataset of compare_to_reference or "
                    "compare_to_exact"
                )
            lines.append(comparison.attrs["not_judged"])
            return lines
        against = comparison.attrs.get("reference", EXACT_REFERENCE)
        n_tv, n_ret = int(comparison["n_ref_tv"]), int(comparison["n_ref_return"])
        checks = [
            ("mean TV", float(comparison["mean_tv"]), float(comparison["tv_threshold"]), n_tv),
            ("max TV", float(comparison["max_tv"]), float(comparison["max_tv_threshold"]), n_tv),
            (
                "|E[return] error|",
                abs(float(comparison["expected_return_error"])),
                float(comparison["return_error_threshold"]),
                n_ret,
            ),
        ]
        for label, value, threshold, n_ref in checks:
            if value > threshold:
                if against != EXACT_REFERENCE:
                    allows = "what the run's effective sizes and the reference's noise allow"
                elif label.startswith("|"):
                    allows = f"what {n_ref} exact iid draws reach"
                else:
                    allows = "what the run's effective sizes allow"
                lines.append(
                    f"disagrees with {against}: {label} {value:.4g} > threshold "
                    f"{threshold:.4g} ({allows}, mean + {REFERENCE_Z:g} sd)"
                )
        if "max_occupancy_z" in comparison:
            lines.extend(_occupancy_line(dt, comparison, against))
    return lines


def _control_problems(dt, comparison, r_hat_threshold):
    """:func:`problems` of a continuous run: the worst R-hat (return and action coordinates)
    and, given a :class:`GaussianComparison`, its disagreements."""
    table = summary(dt, r_hat_threshold)
    lines = []
    if table.attrs["flagged"]:
        where = table.attrs["worst_r_hat_at"]
        values = tree_group(dt, "posterior")["return"]
        if where != "return":  # "actions[t, d]"
            t, d = (int(i) for i in where[len("actions[") : -1].split(","))
            values = tree_group(dt, "posterior")["actions"].isel(time=t, action_dim=d)
        per_chain = ", ".join(f"{m:.3g}" for m in values.mean("draw").values)
        lines.append(
            f"R-hat {table.attrs['worst_r_hat']:.3f} > {table.attrs['r_hat_threshold']:g} at "
            f"{where}: the chains disagree (per-chain means {per_chain}); run longer"
        )
    if comparison is not None:
        if not isinstance(comparison, GaussianComparison):
            raise TypeError(
                "comparison of a continuous run must be the GaussianComparison of "
                "compare_to_reference(dt, solve_lq(...))"
            )
        if comparison.disagrees:
            lines.extend(comparison.lines()[1:])  # "... disagrees with the exact posterior ..."
    return lines


def _occupancy_line(dt, comparison, against):
    """The problem line of the occupancy indicator furthest from its reference marginal, if
    any."""
    z_max, threshold = (
        float(comparison["max_occupancy_z"]),
        float(comparison["occupancy_z_threshold"]),
    )
    if not z_max > threshold:
        return []
    z = comparison["occupancy_z"].values
    step, state = np.unravel_index(int(np.argmax(np.abs(z))), z.shape)
    sampled = float((trajectory_states(dt).sel(step=step) == state).mean())
    if "reference_state_marginals" in comparison:
        marginal = float(comparison["reference_state_marginals"][step, state])
        versus = f" vs reference {marginal:.4g}"
    elif "exact" in dt.children:
        versus = f" vs exact {float(dt['exact']['state_marginals'][step, state]):.4g}"
    else:
        versus = ""
    size = float(comparison["occupancy_ess"][step, state])
    return [
        f"disagrees with {against}: {where_label(dt, step, state)} sampled "
        f"{sampled:.4g}{versus}, z = {z[step, state]:.3g} beyond +-{threshold:.3g} at its "
        f"effective size {size:.0f} (family-wise {REFERENCE_Z:g} sd over the occupancy "
        "indicators)"
    ]


def _stuck_chains(dt):
    """Problem lines for chains that never move and chains that are copies of each other."""
    posterior = tree_group(dt, "posterior")
    paths = np.concatenate(
        [posterior["actions"].values, posterior["states"].values.astype(np.int64)], axis=-1
    )
    chains, draws = paths.shape[:2]
    moves = (paths != paths[:, :1]).any(axis=(1, 2))
    accepts = None
    if "sample_stats" in dt.children and "acceptance_rate" in dt["sample_stats"]:
        rate = dt["sample_stats"]["acceptance_rate"].values.reshape(chains, draws, -1)
        accepts = (rate > 0).any(axis=(1, 2))
        moves &= accepts
    lines = []
    if draws >= 2 and not moves.all() and not _single_trajectory(dt, chains * draws):
        still = np.flatnonzero(~moves)
        why = "every draw is the same trajectory"
        if accepts is not None and not accepts[still].any():
            why += " (acceptance rate 0 throughout)"
        lines.append(
            f"{_chain_list(still, chains)} never move{'s' if still.size == 1 else ''} "
            f"({draws} draws): {why}, so R-hat and ESS say nothing; the kernel is stuck "
            "(its proposal, step size or start) or cannot leave this trajectory"
        )
    if chains >= 2 and moves.any():
        flat = paths.reshape(chains, -1)
        _, first, group = np.unique(flat, axis=0, return_index=True, return_inverse=True)
        copies = [np.flatnonzero(group == g) for g in range(first.size)]
        for members in (m for m in copies if m.size > 1 and moves[m].all()):
            lines.append(
                f"{_chain_list(members, chains)} are identical draw for draw: copies of one "
                "chain (the same seed?), so they count as one and R-hat cannot compare them"
            )
    return lines


def _chain_list(indices, chains):
    if indices.size == chains and chains > 1:
        return f"all {chains} chains"
    names = ", ".join(str(int(i)) for i in indices)
    return f"chain {names}" if indices.size == 1 else f"chains {names}"


def _single_trajectory(dt, num_draws):
    """Whether the tree's exact posterior is one trajectory to within 1 / num_draws: the
    probability of any other action sequence, at most sum_t (1 - max_a P(a_t = a)), is
    below it (then identical draws are what a correct sampler gives)."""
    if "exact" not in dt.children:
        return False
    marginals = dt["exact"]["action_marginals"].values
    return bool((1.0 - marginals.max(axis=-1)).sum() * num_draws < 1.0)


def _per_chain_means(dt, row):
    posterior = tree_group(dt, "posterior")
    if row == "return":
        values = posterior["return"]
    elif row.startswith("end["):
        values = end_indicators(dt)[row]
    else:
        _, step, state = worst_occupancy(dt)
        values = trajectory_states(dt).sel(step=step) == state
    means = values.astype(float).mean("draw").values
    return ", ".join(f"{value:.3g}" for value in means)
