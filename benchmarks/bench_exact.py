"""Exact-inference benchmark: ``pgm_rl.solve`` time and memory against grid size S and horizon T.

For each random grid (rewards uniform in [-2, 2]) and horizon, prints the median wall time of
``solve`` after compilation (``jax.block_until_ready`` on every output), the share of it spent
in the backward messages (``pgm_rl.messages.posterior_backward``) and the forward marginals
(``pgm_rl.messages.forward``), the bytes of
the stored arrays (``log_policy`` (T, S, A) and ``state_marginals`` (T + 1, S)), and the ratio
against a baseline run in the same process: a plain NumPy backward-forward pass (max-shifted
logsumexp, ``np.add.at`` scatter) in the same precision, whose ``log Z`` is also compared.

    python benchmarks/bench_exact.py              # 10x10, 30x30, 100x100; T = 10, 100, 1000
    python benchmarks/bench_exact.py --quick      # 10x10, 30x30; T = 10, 100
    python benchmarks/bench_exact.py --x64        # float64 instead of JAX's default float32

The issue's target: a 100x100 grid with T = 1000 solves in under 1 s on a 2-core CPU.
"""

import argparse
import math
import os
import statistics
import time
from functools import partial

import jax
import numpy as np


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (a few seconds)")
    parser.add_argument("--x64", action="store_true", help="float64 (default: float32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--beta", type=float, default=1.0, help="inverse temperature")
    return parser.parse_args()


def numpy_baseline(env, horizon, beta, dtype):
    """Plain NumPy backward messages and forward state marginals -> (log_z, log_policy, mu)."""
    reward = (beta * env.reward).astype(dtype)
    next_state = env.next_state
    log_prior = dtype(-math.log(env.n_actions))
    value = np.zeros(env.n_states, dtype)
    log_policy = np.empty((horizon, env.n_states, env.n_actions), dtype)
    for t in reversed(range(horizon)):
        q = reward + value[next_state]
        m = q.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(q - m).sum(axis=1, keepdims=True))
        log_policy[t] = q - m - log_sum
        value = (m + log_sum)[:, 0] + log_prior
    mu = np.zeros((horizon + 1, env.n_states), dtype)
    mu[0, env.start_state] = 1
    for t in range(horizon):
        np.add.at(mu[t + 1], next_state, mu[t][:, None] * np.exp(log_policy[t]))
    return float(value[env.start_state]), log_policy, mu


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_case(pgm_rl, messages, env, horizon, beta, repeats, dtype):
    posterior = pgm_rl.solve(env, horizon, beta)  # compile
    outputs = lambda p: (p.log_policy, p.state_marginals, p.action_marginals)  # noqa: E731
    jax.block_until_ready(outputs(posterior))
    solve_s = median_time(lambda: outputs(pgm_rl.solve(env, horizon, beta)), repeats)

    dyn = messages.sparse_dynamics(env, beta)
    backward = partial(messages.posterior_backward, *dyn.arrays, horizon)
    log_policy, (v_hi, v_lo) = jax.block_until_ready(backward())
    backward_s = median_time(backward, repeats)
    mu0 = posterior.state_marginals[0]
    no_absorb = np.zeros(env.n_states, bool)
    forward = partial(
        messages.forward, mu0, log_policy, *dyn.arrays, v_hi, v_lo, no_absorb, posterior=True
    )
    jax.block_until_ready(forward())
    forward_s = median_time(forward, repeats)

    start = time.perf_counter()
    ref_log_z, _, _ = numpy_baseline(env, horizon, beta, dtype)
    numpy_s = time.perf_counter() - start
    memory = posterior.log_policy.nbytes + posterior.state_marginals.nbytes
    return {
        "solve_s": solve_s,
        "backward_s": backward_s,
        "forward_s": forward_s,
        "numpy_s": numpy_s,
        "memory": memory,
        "dlogz": abs(posterior.log_z - ref_log_z) / max(1.0, abs(ref_log_z)),
    }


def main():
    args = parse_args()
    jax.config.update("jax_enable_x64", args.x64)
    import pgm_rl
    from pgm_rl import messages

    dtype = np.float64 if args.x64 else np.float32
    sides = (10, 30) if args.quick else (10, 30, 100)
    horizons = (10, 100) if args.quick else (10, 100, 1000)
    repeats = 3 if args.quick else args.repeats
    print(
        f"pgm_rl.solve, {np.dtype(dtype).name}, beta={args.beta}, median of {repeats} runs after "
        f"compilation; jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPU cores"
    )
    header = (
        f"{'grid':>8} {'S':>6} {'T':>5} {'solve ms':>9} {'backward':>9} {'forward':>9} "
        f"{'MiB stored':>10} {'numpy ms':>9} {'speed-up':>8} {'rel dlogZ':>9}"
    )
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for side in sides:
        env = pgm_rl.GridWorld(rng.uniform(-2, 2, (side, side)), (side - 1, 0))
        for horizon in horizons:
            row = bench_case(pgm_rl, messages, env, horizon, args.beta, repeats, dtype)
            print(
                f"{side:>4}x{side:<3} {env.n_states:>6} {horizon:>5} {1e3 * row['solve_s']:>9.2f} "
                f"{1e3 * row['backward_s']:>9.2f} {1e3 * row['forward_s']:>9.2f} "
                f"{row['memory'] / 2**20:>10.1f} {1e3 * row['numpy_s']:>9.1f} "
                f"{row['numpy_s'] / row['solve_s']:>7.1f}x {row['dlogz']:>9.1e}"
            )
    if not args.quick:
        print("target: 100x100, T = 1000 in < 1 s (see the last row)")


if __name__ == "__main__":
    main()
