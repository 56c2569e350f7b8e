"""``pgm-rl irl``: NUTS over the reward weights given demonstrations (Bayesian inverse RL)."""

import argparse
import os
import time

import jax
import numpy as np
import pandas as pd
import xarray as xr
from numpyro import infer

from pgm_rl import diagnostics, exact, io, irl
from pgm_rl._checks import check_draws_fit
from pgm_rl.cli.common import EXIT_PROBLEMS, REWARD_POSTERIOR_FILE, one_line
from pgm_rl.cli.options import positive_int
from pgm_rl.cli.outputs import Outputs
from pgm_rl.cli.problem import build_env, problem_line, setup_jax
from pgm_rl.cli.runs import print_problems
from pgm_rl.worlds import GridWorld

# The credible intervals of ``irl`` (the summary's eti columns and the coverage of the truth).
IRL_CI_PROB = 0.89


def run(args):
    """Run ``pgm-rl irl`` with the parsed ``args``; the exit code."""
    env = build_env(args)
    if args.plots is not None and getattr(env, "shape", None) is None:
        raise ValueError(f"irl --plots draws the reward on a grid map; {env.env_id} has none")
    pictures = [] if args.plots is None else [REWARD_POSTERIOR_FILE]
    with Outputs(args, pictures) as outputs:
        return _irl(args, env, outputs)


def _irl_features(spec, env):
    """``--features``: one-hot (S, S), or a .npy / CSV / whitespace-separated file (S, F)."""
    if spec == "onehot":
        return np.eye(env.n_states)
    if not os.path.isfile(spec):
        raise FileNotFoundError(
            f"--features {spec!r} is neither 'onehot' nor an existing file (.npy or CSV)"
        )
    try:
        if spec.endswith(".npy"):
            features = np.load(spec, allow_pickle=False)
        else:
            with open(spec) as handle:
                text = handle.read()
            delimiter = "," if "," in text else None
            features = np.loadtxt(spec, delimiter=delimiter, ndmin=2)
    except (OSError, ValueError) as error:
        raise ValueError(f"--features {spec!r} cannot be read as an array: {error}") from None
    if features.ndim != 2 or features.shape[0] != env.n_states:
        raise ValueError(
            f"--features {spec!r} must have shape (S, F) = ({env.n_states}, F), one row per "
            f"state; got {features.shape}"
        )
    return features


def _irl_demonstrations(args, env):
    """``--demos``: (dict of "actions" (N, T), "states" (N, T + 1); the true cell reward or
    None; a description)."""
    spec = args.demos
    if spec.startswith("exact:"):
        try:
            count = positive_int(spec[len("exact:") :])
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"--demos {spec!r}: N {error}") from None
        if args.horizon is None:
            raise ValueError("--demos exact:N needs --horizon T (the length of each demonstration)")
        # the generator the likelihood assumes (as pgm_rl.irl.simulate): the trajectory
        # posterior, or the soft-Bellman policy run in the true dynamics
        key = jax.random.fold_in(jax.random.key(args.seed), 1)
        soft = args.likelihood == "soft-bellman"
        draws = (exact.soft_bellman if soft else exact.solve)(env, args.horizon, args.beta).sample(
            key, count
        )
        demos = {k: np.asarray(draws[k]) for k in ("actions", "states")}
        truth = np.asarray(env.rewards, np.float64).ravel() if isinstance(env, GridWorld) else None
        what = "soft-Bellman policy rollouts" if soft else "exact posterior draws"
        return demos, truth, f"{count} {what} of the environment's own reward"
    dt = io.load(spec)
    try:
        actions = dt["posterior"]["actions"]
        states = diagnostics.trajectory_states(dt)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"--demos {spec!r} holds no demonstrations ({one_line(error)}): it needs a tree "
            "with posterior actions (chain, draw, time), as 'pgm-rl sample --out' writes"
        ) from None
    horizon = actions.sizes.get("time", actions.shape[-1])
    demos = {
        "actions": np.asarray(actions.values).reshape(-1, horizon),
        "states": np.asarray(states.values).reshape(-1, horizon + 1),
    }
    truth = None
    try:
        stored = diagnostics.env_from_datatree(dt)
        if isinstance(stored, GridWorld) and stored.shape == getattr(env, "shape", None):
            truth = np.asarray(stored.rewards, np.float64).ravel()
    except (KeyError, TypeError, ValueError):
        pass
    chains, draws = actions.shape[0], actions.shape[1]
    return demos, truth, f"{spec} ({_count(chains, 'chain')} x {draws} draws)"


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _irl(args, env, outputs):
    setup_jax()
    likelihood = args.likelihood.replace("-", "_")
    features = _irl_features(args.features, env)
    demos, truth, source = _irl_demonstrations(args, env)
    n_demos, horizon = demos["actions"].shape
    if args.horizon is not None and args.horizon != horizon:
        raise ValueError(
            f"--horizon {args.horizon} does not match the demonstrations of --demos "
            f"{args.demos!r}, which have T = {horizon} actions"
        )
    try:
        irl.demonstration_statistics(env, features, demos)
    except (TypeError, ValueError) as error:
        what = "--features" if "features" in str(error) else f"--demos {args.demos!r}"
        raise ValueError(f"{what} does not fit the environment: {one_line(error)}") from None
    if args.plots is not None and features.ndim != 2:
        raise ValueError("irl --plots draws the reward of each state: it needs (S, F) features")
    _check_irl_beta(args, features, n_demos, horizon)
    # theta (F) in the run and its tree, each state's reward (S) and its quantiles
    per_draw = 8 * (4 * features.shape[-1] + 3 * env.n_states)
    check_draws_fit(args.chains, args.samples, per_draw, "theta and each state's reward")
    args.horizon = horizon
    print(
        f"irl: {problem_line(env, args)}; {n_demos} demonstrations from {source}; "
        f"features {args.features} (F = {features.shape[-1]}), likelihood {args.likelihood}, "
        f"prior Normal(0, {args.prior_scale:g})",
        flush=True,
    )
    mcmc = infer.MCMC(
        infer.NUTS(irl.reward_model),
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method="vectorized",
        progress_bar=args.progress,
    )
    start = time.perf_counter()
    mcmc.run(
        jax.random.key(args.seed),
        env,
        features,
        demos,
        beta=args.beta,
        prior_scale=args.prior_scale,
        likelihood=likelihood,
        extra_fields=("diverging",),
    )
    seconds = time.perf_counter() - start
    print(
        f"NUTS: {_count(args.chains, 'chain')} x {args.samples} draws in {seconds:.2f} s "
        "(JIT included)"
    )
    # (arviz_base after numpyro.infer: see pgm_rl.diagnostics._restore_numpyro_initialization)
    from arviz_base import from_numpyro

    dt = _irl_tree(from_numpyro(mcmc), args, env, features, demos, truth, likelihood)
    found = _print_irl_summary(dt, args)
    theta = dt["posterior"]["theta"].values.reshape(-1, features.shape[-1])
    cells = None
    if features.ndim == 2:
        cells = theta @ features.T  # (draws, S): the reward of entering each state
        if truth is not None:
            tail = (1.0 - IRL_CI_PROB) / 2  # the table's equal-tailed intervals
            low, high = np.quantile(cells, [tail, 1.0 - tail], axis=0)
            mean = cells.mean(axis=0)
            corr = np.corrcoef(mean, truth)[0, 1] if mean.std() > 0 else float("nan")
            cover = np.mean((low <= truth) & (truth <= high))
            print(
                f"vs the true reward of each state: correlation of the posterior mean {corr:.3f}, "
                f"{IRL_CI_PROB:.0%} equal-tailed intervals (eti{IRL_CI_PROB * 100:.0f}) cover "
                f"{cover:.2f} of {truth.size} states"
            )
    drawn = []
    if args.plots is not None:
        import matplotlib.pyplot as plt  # (slow to import: only with --plots)

        from pgm_rl.plots import plot_reward_posterior

        visits = np.bincount(demos["states"][:, 1:].ravel(), minlength=env.n_states)
        with outputs.drawing() as folder:
            plot_reward_posterior(
                env,
                cells.mean(axis=0),
                cells.std(axis=0),
                true_reward=truth,
                visits=visits,
                save=os.path.join(folder, REWARD_POSTERIOR_FILE),
            )
            plt.close("all")
            drawn.append(REWARD_POSTERIOR_FILE)
    outputs.commit(dt, drawn)
    return EXIT_PROBLEMS if args.strict and found else 0


def _check_irl_beta(args, features, n_demos, horizon):
    """Refuse a beta at which NUTS cannot move theta in float64 (one line naming --beta).

    Moving one weight by one prior sd changes the log-likelihood by up to
    ``K = beta * N * T * max |features| * prior_scale`` nats (N demonstrations of T steps).
    Where the demonstrations stop being optimal the likelihood drops by that much within a
    width of theta of 1/K prior sds, and NUTS adapts its steps to that width; once
    ``K * eps > 1`` (eps the float64 spacing relative to 1) a step is below the spacing of
    theta, so the chains stay where they started (or K overflows).
    """
    eps = float(np.finfo(np.float64).eps)
    scale = n_demos * horizon * float(np.max(np.abs(features))) * args.prior_scale
    with np.errstate(over="ignore"):
        nats = np.float64(args.beta) * scale
    if nats * eps <= 1.0:
        return
    shown = f"{nats:.3g}" if np.isfinite(nats) else "more than 1.8e308"
    raise ValueError(
        f"--beta {args.beta:g} is too large for NUTS over the reward weights: beta * N * T * "
        f"max|features| * prior scale = {args.beta:.3g} * {n_demos} * {horizon} * "
        f"{float(np.max(np.abs(features))):.3g} * {args.prior_scale:g} = {shown} nats per prior "
        f"sd of a weight, so the steps NUTS needs are below float64's spacing of theta and the "
        f"chains cannot move; use --beta at most {1.0 / (eps * scale):.3g}"
    )


def _irl_tree(dt, args, env, features, demos, truth, likelihood):
    """The run's tree with the problem stored: features, demonstrations, true reward, attrs."""
    feature_dims = ("state", "feature") if features.ndim == 2 else ("state", "action", "feature")
    data = {
        "features": (feature_dims, features),
        "demo_actions": (("demonstration", "time"), demos["actions"]),
        "demo_states": (("demonstration", "step"), demos["states"]),
    }
    if truth is not None:
        data["true_reward"] = (("state",), truth)
    dt["constant_data"] = xr.Dataset(data)
    dt.attrs.update(
        sampler="NUTS (pgm_rl.irl.reward_model)",
        horizon=int(demos["actions"].shape[1]),
        beta=float(args.beta),
        likelihood=likelihood,
        prior_scale=float(args.prior_scale),
        demonstrations=str(args.demos),
        num_demonstrations=int(demos["actions"].shape[0]),
        features=str(args.features),
        n_states=int(env.n_states),
    )
    return dt


def _print_irl_summary(dt, args):
    """The ArviZ summary of theta, the divergences and one 'warning:' line per problem."""
    import arviz_stats  # (after numpyro.infer: see from_numpyro in _irl)

    table = arviz_stats.summary(dt, var_names=["theta"], ci_prob=IRL_CI_PROB, ci_kind="eti")
    print("summary of theta (reward weights; arviz_stats.summary):")
    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.max_rows", 60):
        print(table.to_string(float_format=lambda x: f"{x:.4g}"))
    diverging = int(dt["sample_stats"]["diverging"].values.sum())
    total = args.chains * args.samples
    print(f"divergences: {diverging} of {total} transitions")
    lines = []
    if args.chains > 1 and "r_hat" in table:
        worst = float(table["r_hat"].max())
        if worst > 1.01:
            lines.append(
                f"worst R-hat of theta {worst:.4g} > 1.01 at {table['r_hat'].idxmax()}: run "
                "longer (--warmup, --samples)"
            )
    if diverging:
        lines.append(
            f"{diverging} divergent transitions: the posterior may be biased (try more --warmup "
            "or a smaller --prior-scale)"
        )
    return print_problems(lines)
