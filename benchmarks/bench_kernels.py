"""Kernel benchmark: the notebook's loops against pgm_rl's kernels, NumPyro's built-ins and exact.

Prints one table per case (notebook grid, 4 chains): MH steps/s, ESS/s of the return
(arviz-stats), R-hat of the return, mean TV of the state marginals to the exact posterior after a
fixed budget of draws, and ratios against the notebook baseline and the best built-in, all
measured in this run. Chains run under ``jax.vmap`` (vectorized), jitted once and timed on a
second call with new keys (``MCMC.run`` recompiles on every call).

The baseline is the notebook's full-trajectory loop as written, in NumPy (float32, like torch's
default): torch is not a dependency of pgm_rl; the output says whether it is installed.

    python benchmarks/bench_kernels.py            # T = 6, 20, 100
    python benchmarks/bench_kernels.py --quick    # fewer draws
"""

import argparse
import importlib.util
import time
import warnings

import arviz_stats
import jax
import numpy as np
from _runner import chains_runner
from jax import random

import pgm_rl
from pgm_rl.diagnostics import empirical_state_marginals, tv_distance
from pgm_rl.envs import ACTION_MOVES
from pgm_rl.kernels.registry import KERNELS

# Registry kernels plus other settings of their parameters: label -> make(model).
VARIANTS = {"action-gibbs(mh)": lambda model: KERNELS["action-gibbs"].make(model, proposal="mh")}
CANDIDATES = {**{name: record.make for name, record in KERNELS.items()}, **VARIANTS}
# The notebook's samplers, what improves on them cheaply, and NumPyro's built-ins; the
# kernels for hard posteriors are in bench_hard.py.
DEFAULT = (
    "trajectory-mh",
    "stepwise-mh",
    "action-gibbs",
    "action-gibbs(mh)",
    *(name for name, record in KERNELS.items() if record.builtin),
)
BUILTINS = tuple(name for name, record in KERNELS.items() if record.builtin)
OFF_POSTERIOR = tuple(name for name, record in KERNELS.items() if not record.targets_posterior)


def notebook_full_trajectory_loop(grid, start, horizon, iterations, rng):
    """The notebook's ``sample_optimal_trajectory`` loop as written, in NumPy float32.

    One Python-level rollout per iteration (an action drawn per time step), the reward shaping
    ``r * 100`` per reward, ``log(exp(r) / 2)`` per reward, ``min(0.0, new - old)`` and an
    accept test; kept verbatim in structure, overflow and ``nan`` behaviour included.
    """
    grid = np.asarray(grid, dtype=np.float32)
    height, width = grid.shape

    def simulate_trajectory():
        row, col = start
        states = np.zeros((2, horizon), np.float32)
        actions = np.zeros(horizon, np.float32)
        rewards = np.zeros(horizon, np.float32)
        for t in range(horizon):
            probabilities = np.ones(5, np.float32) / 5
            action = rng.choice(5, p=probabilities)
            row = min(max(row + ACTION_MOVES[action, 0], 0), height - 1)
            col = min(max(col + ACTION_MOVES[action, 1], 0), width - 1)
            states[:, t] = row, col
            actions[t] = action
            rewards[t] = grid[row, col]
        return states, actions, rewards

    def log_joint_pdf(action_size, rewards):
        return sum(
            np.array([np.log(np.float32(np.exp(r) * np.float32(1 / action_size))) for r in rewards])
        )

    state_samples = np.zeros((2, horizon, iterations), np.float32)
    action_samples = np.zeros((1, horizon, iterations), np.float32)
    states, actions, rewards = simulate_trajectory()
    current = log_joint_pdf(2, rewards)
    state_samples[:, :, 0] = states
    action_samples[:, :, 0] = actions
    for i in range(1, iterations):
        states, actions, rewards = simulate_trajectory()
        rewards = np.array([r * np.float32(100) for r in rewards], np.float32)
        new = log_joint_pdf(2, rewards)
        ratio = np.float32(min(0.0, new - current))
        if rng.uniform() <= np.exp(ratio):
            current = new
            state_samples[:, :, i] = states
            action_samples[:, :, i] = actions
        else:
            state_samples[:, :, i] = state_samples[:, :, i - 1]
            action_samples[:, :, i] = action_samples[:, :, i - 1]
    return state_samples, action_samples


def time_notebook_loop(horizon, iterations, seed):
    """MH steps/s of the notebook's full-trajectory loop (NumPy re-implementation)."""
    env = pgm_rl.GridWorld.notebook()
    rng = np.random.default_rng(seed)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        start = time.perf_counter()
        notebook_full_trajectory_loop(env.rewards, env.start, horizon, iterations, rng)
        elapsed = time.perf_counter() - start
    return iterations / elapsed


def measure_kernel(name, env, horizon, beta, exact, args, seed):
    """Compile with one call, time a second (new keys); returns a row dict."""
    run = chains_runner(
        CANDIDATES[name](pgm_rl.trajectory_model), (env, horizon, beta), args.warmup, args.draws
    )
    jax.block_until_ready(run(random.split(random.key(seed), args.chains)))
    start = time.perf_counter()
    samples = jax.block_until_ready(run(random.split(random.key(seed + 1), args.chains)))
    elapsed = time.perf_counter() - start
    return summarise(name, samples, exact, elapsed, args.chains * (args.warmup + args.draws))


def measure_exact(env, horizon, beta, args, seed):
    num = args.chains * args.draws
    exact = pgm_rl.solve(env, horizon, beta)
    jax.block_until_ready(exact.sample(jax.random.key(seed), num))
    start = time.perf_counter()
    exact = pgm_rl.solve(env, horizon, beta)
    samples = jax.block_until_ready(exact.sample(jax.random.key(seed + 1), num))
    elapsed = time.perf_counter() - start
    samples = {k: v.reshape(args.chains, args.draws, -1) for k, v in samples.items()}
    return exact, summarise("exact iid (ceiling)", samples, exact, elapsed, None)


def summarise(name, samples, exact, elapsed, num_steps):
    returns = np.asarray(samples["rewards"], dtype=float).sum(axis=-1)  # (chains, draws)
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        ess = float(arviz_stats.ess(returns))
        rhat = float(arviz_stats.rhat(returns))
    states = empirical_state_marginals(samples["states"], exact.mdp.n_states)
    return {
        "name": name,
        "seconds": elapsed,
        "steps_per_s": None if num_steps is None else num_steps / elapsed,
        "ess_per_s": (ess if np.isfinite(ess) else 0.0) / elapsed,
        "rhat": rhat,
        "tv": float(tv_distance(states, exact.state_marginals).mean()),
        "mean_return": float(returns.mean()),
        "stuck": bool(np.all(returns.std(axis=1) == 0)),
    }


def print_table(horizon, beta, rows, exact, notebook_steps):
    best_builtin = max(
        (row["ess_per_s"] for row in rows if row["name"] in BUILTINS and not row["stuck"]),
        default=float("nan"),
    )
    print(
        f"\nnotebook grid, T = {horizon}, beta = {beta}; exact mean return {exact.expected_return:.6g}"
    )
    header = (
        f"{'kernel':24s} {'steps/s':>11s} {'x notebook':>11s} {'ESS/s':>10s} "
        f"{'x best built-in':>15s} {'R-hat':>8s} {'mean TV':>8s} {'mean return':>12s} {'time s':>7s}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        steps = row["steps_per_s"]
        steps_text = "-" if steps is None else f"{steps:11.4g}"
        ratio_text = "-" if steps is None else f"{steps / notebook_steps:11.4g}"
        builtin_ratio = row["ess_per_s"] / best_builtin if best_builtin > 0 else float("nan")
        # every chain's return constant: ESS and R-hat say nothing about mixing
        ess_text = "(stuck)" if row["stuck"] else f"{row['ess_per_s']:10.4g}"
        ratio_builtin_text = "-" if row["stuck"] else f"{builtin_ratio:15.3g}"
        rhat_text = "inf" if row["stuck"] else f"{row['rhat']:8.3f}"
        print(
            f"{row['name'] + ('*' if row['name'] in OFF_POSTERIOR else ''):24s} {steps_text:>11s} {ratio_text:>11s} {ess_text:>10s} "
            f"{ratio_builtin_text:>15s} {rhat_text:>8s} {row['tv']:8.3f} "
            f"{row['mean_return']:12.6g} {row['seconds']:7.2f}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws (a smoke run)")
    parser.add_argument("--horizons", type=int, nargs="+", default=[6, 20, 100])
    parser.add_argument("--beta", type=float, default=0.05)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kernels",
        nargs="+",
        default=list(DEFAULT),
        choices=list(CANDIDATES),
        help="registry names (pgm_rl.kernels.registry) and variants (default: %(default)s)",
    )
    parser.add_argument("--warmup", type=int, help="warm-up steps per chain (default 1000)")
    parser.add_argument("--draws", type=int, help="draws per chain (default 2000)")
    args = parser.parse_args(argv)
    warmup, draws = (200, 500) if args.quick else (1000, 2000)
    args.warmup = warmup if args.warmup is None else args.warmup
    args.draws = draws if args.draws is None else args.draws
    notebook_iterations = 100 if args.quick else 300

    has_torch = importlib.util.find_spec("torch") is not None
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    print(
        "baseline: the notebook's full-trajectory MH loop, "
        + (
            "torch is installed but the loop runs in NumPy float32"
            if has_torch
            else "re-implemented in NumPy float32 (torch is not installed)"
        )
    )
    notebook_steps = time_notebook_loop(100, notebook_iterations, args.seed)
    print(
        f"notebook loop, T = 100: {notebook_steps:.1f} MH steps/s (the issue measured ~84 for torch)"
    )
    print(
        f"budget per kernel: {args.chains} chains x ({args.warmup} warmup + {args.draws} draws); "
        "a step is one MCMC transition (action-gibbs: a sweep of T updates; mixed-hmc: 20 discrete "
        "updates). * targets another distribution than the posterior (stepwise-mh: "
        "pgm_rl.kernels.stepwise_mh.stepwise_target); its TV is to the posterior."
    )
    env = pgm_rl.GridWorld.notebook()
    for horizon in args.horizons:
        exact, exact_row = measure_exact(env, horizon, args.beta, args, args.seed)
        rows = [
            measure_kernel(name, env, horizon, args.beta, exact, args, args.seed)
            for name in args.kernels
        ]
        print_table(horizon, args.beta, [*rows, exact_row], exact, notebook_steps)


if __name__ == "__main__":
    main()
