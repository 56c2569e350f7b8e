"""What ``sample``, ``compare`` and ``report`` print of a run: summary, distance to exact, problems."""

import math

import jax
import pandas as pd

from pgm_rl import diagnostics, exact
from pgm_rl.cli.problem import deterministic_instead, goal_states
from pgm_rl.worlds import describe_randomness, latent_sites


def print_summary(dt, env=None):
    """The convergence table; end rows at a goal cell (:func:`goal_states` of ``env``, else of
    the tree's grid) are marked "G"."""
    table = diagnostics.summary(dt)
    goals = set(goal_states(diagnostics.env_from_datatree(dt) if env is None else env))
    marks = {
        name: f"{name} G"
        for name, state in zip(table.index[1:], table.attrs["end_states"], strict=False)
        if state in goals
    }
    table = table.rename(index=marks)
    print(
        "summary (end[cell] = ending in that cell, for the cells where most draws end; G: a goal):"
    )
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(table.to_string(float_format=lambda x: f"{x:.4g}"))
    worst = float(table.attrs["worst_r_hat"])
    if math.isnan(worst):
        print("worst R-hat: none defined (nothing varies within the chains)")
    else:
        print(
            f"worst R-hat (return and state-occupancy indicators): {worst:.4g} "
            f"at {table.attrs['worst_r_hat_at']}"
        )


def print_comparison(comparison):
    """One line: the distance to the exact posterior, or to an importance-sampling reference
    (with its standard error and ESS)."""
    if "exact_expected_return" in comparison:
        label, value, noise = "exact", float(comparison["exact_expected_return"]), ""
    else:
        label, value = "reference", float(comparison["reference_expected_return"])
        noise = (
            f" (reference ± {float(comparison['reference_expected_return_se']):.2g}, "
            f"ESS {float(comparison['reference_ess']):.0f})"
        )
    print(
        f"vs {label}: mean TV {float(comparison['mean_tv']):.4f} (max {float(comparison['max_tv']):.4f}), "
        f"E[return] {float(comparison['expected_return']):.6g} vs {label} {value:.6g}: error "
        f"{float(comparison['expected_return_error']):+.4g} ± {float(comparison['expected_return_mcse']):.2g} (MCSE){noise}"
    )


def print_problems(lines, prefix=""):
    """One 'warning:' line per problem; returns how many were printed."""
    for line in lines:
        print(f"warning: {prefix}{line}", flush=True)
    return len(lines)


def budget(args):
    """The sampling budget options shared by ``sample`` and ``compare``."""
    return {
        "chains": args.chains,
        "warmup": args.warmup,
        "samples": args.samples,
        "seed": args.seed,
    }


def check_diagnostics_take(env, posterior=None):
    """Before any sampling: the run's ArviZ tree must take ``env``'s draws (tried on 2 exact draws).

    On a stochastic MDP the kernels may run while :func:`pgm_rl.diagnostics.to_datatree` cannot
    yet store the run; this finds out in milliseconds instead of after the whole run.
    """
    if not latent_sites(env):  # the actions alone fix every path: nothing can be refused
        return
    posterior = exact.solve(env, 1, 0.0) if posterior is None else posterior
    draws = posterior.sample(jax.random.key(0), 2)
    try:
        diagnostics.to_datatree(draws, env, posterior)
    except (AttributeError, NotImplementedError, TypeError, ValueError) as error:
        raise ValueError(
            "sample and compare store the run as an ArviZ tree (pgm_rl.diagnostics.to_datatree), "
            f"which does not take this MDP ({describe_randomness(env)}): {error}; use 'pgm-rl exact' or "
            f"'pgm-rl smc' here, or {deterministic_instead(env)}"
        ) from None
