"""Large problems in bounded memory: ``solve(..., checkpoint=True)`` and the full mode's cost.

(a) A 1000 x 1000 grid (10**6 states), T = 1000, float32, ``checkpoint=True``: ``log_z``,
``marginals_at([0, 500, 1000])`` and 100 exact draws, each stage's wall time (first call, so
with its compilation) and the process's peak RSS (``resource.getrusage``; the case runs in a
subprocess of its own). The issue's target: peak RSS <= 3 GB.

(b) A 100 x 100 grid, T = 1000, float32: the full mode's ``solve`` (its policy and marginals)
against a naive single-word log-space scan written here (``jax.nn.logsumexp`` backward keeping
the (T, S, A) policy, scatter-add forward keeping the (T + 1, S) marginals), and the
checkpointed mode's ``log_z`` + ``marginals_at([0, T/2, T])``, median of the timed runs after
compilation, same process. The issue's target: the full mode at most 1.0x the naive scan.

    python benchmarks/bench_large.py            # (a) 1000x1000 and (b) 100x100, T = 1000
    python benchmarks/bench_large.py --quick    # (a) 100x100, T = 100; (b) 30x30, T = 100
    python benchmarks/bench_large.py --skip-large   # (b) only
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import pgm_rl


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes only (seconds)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--skip-large", action="store_true", help="(b) only (it takes seconds)")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # "large:SIDE:T" in a subprocess
    return parser.parse_args()


def grid(side):
    rng = np.random.default_rng(0)
    return pgm_rl.GridWorld(rng.uniform(-2, 2, (side, side)), (side - 1, 0))


def large_case(side, horizon):
    """(a) in this process: stage times and peak RSS, as JSON on stdout."""
    times = {}
    start = time.perf_counter()
    env = grid(side)
    times["world_s"] = time.perf_counter() - start
    start = time.perf_counter()
    kept = pgm_rl.solve(env, horizon, 1.0, checkpoint=True)
    times["log_z_s"] = time.perf_counter() - start
    start = time.perf_counter()
    rows = jax.block_until_ready(kept.marginals_at([0, horizon // 2, horizon]))
    times["marginals_s"] = time.perf_counter() - start
    start = time.perf_counter()
    draws = jax.block_until_ready(kept.sample(jax.random.key(0), 100))
    times["samples_s"] = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    out = {
        "log_z": kept.log_z,
        "mass": [float(r.sum()) for r in rows],
        "draw_states": list(draws["states"].shape),
        "peak_rss": peak,
        "dtype": str(rows.dtype),
        **times,
    }
    json.dump(out, sys.stdout)


def run_large(side, horizon):
    cmd = [sys.executable, __file__, "--case", f"large:{side}:{horizon}"]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    row = json.loads(run.stdout)
    print(
        f"(a) {side}x{side} ({side * side} states), T = {horizon}, {row['dtype']}, "
        f"checkpoint=True: log Z {row['log_z']:.6g}; world {row['world_s']:.1f} s, log_z "
        f"{row['log_z_s']:.1f} s, marginals_at([0, {horizon // 2}, {horizon}]) "
        f"{row['marginals_s']:.1f} s (masses {', '.join(f'{m:.6f}' for m in row['mass'])}), "
        f"100 draws {row['samples_s']:.1f} s; peak RSS {row['peak_rss'] / 2**30:.2f} GiB "
        f"({'<=' if row['peak_rss'] <= 3e9 else '>'} 3 GB)"
    )


@partial(jax.jit, static_argnums=3)
def naive_scan(next_state, scaled_reward, mu0, horizon):
    """Single-word log space: the (T, S, A) policy and (T + 1, S) marginals, and V_0."""
    log_a = jnp.log(next_state.shape[1]).astype(scaled_reward.dtype)

    def back(v, _):
        q = scaled_reward + v[next_state]
        v_new = jax.nn.logsumexp(q, axis=1) - log_a
        return v_new, q - v_new[:, None] - log_a

    zeros = jnp.zeros(next_state.shape[0], scaled_reward.dtype)
    v0, log_policy = lax.scan(back, zeros, None, length=horizon, reverse=True)

    def fwd(mu, log_pi):
        mu_next = jnp.zeros_like(mu).at[next_state].add(mu[:, None] * jnp.exp(log_pi))
        return mu_next, mu_next

    _, mus = lax.scan(fwd, mu0, log_policy)
    return v0, log_policy, jnp.concatenate([mu0[None], mus])


def median_time(fn, repeats):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_ratio(side, horizon, repeats):
    env = grid(side)
    next_state = jnp.asarray(env.next_state, jnp.int32)
    reward = jnp.asarray(env.reward, jnp.float32)
    mu0 = jnp.zeros(env.n_states, jnp.float32).at[env.start_state].set(1.0)
    naive_s = median_time(lambda: naive_scan(next_state, reward, mu0, horizon), repeats)

    def full():
        post = pgm_rl.solve(env, horizon, 1.0)
        return post.log_policy, post.state_marginals, post.action_marginals

    full_s = median_time(full, repeats)

    def kept():
        post = pgm_rl.solve(env, horizon, 1.0, checkpoint=True)
        return post.marginals_at([0, horizon // 2, horizon])

    kept_s = median_time(kept, repeats)
    post = pgm_rl.solve(env, horizon, 1.0)
    v0, log_policy, mus = naive_scan(next_state, reward, mu0, horizon)
    dlogz = abs(float(v0[env.start_state]) - post.log_z) / max(1.0, abs(post.log_z))
    dmu = float(np.max(np.abs(np.asarray(mus) - np.asarray(post.state_marginals))))
    dpi = float(np.max(np.abs(np.exp(np.asarray(log_policy)) - np.asarray(post.policy))))
    print(
        f"(b) {side}x{side}, T = {horizon}, float32, median of {repeats}: naive log-space scan "
        f"{1e3 * naive_s:.0f} ms; full solve {1e3 * full_s:.0f} ms ({full_s / naive_s:.2f}x "
        f"naive); checkpoint log_z + marginals_at(3 steps) {1e3 * kept_s:.0f} ms "
        f"({kept_s / full_s:.2f}x full); naive vs full: rel dlogZ {dlogz:.1e}, max dpi {dpi:.1e}, "
        f"max dmu {dmu:.1e}"
    )


def main():
    args = parse_args()
    if args.case:
        _, side, horizon = args.case.split(":")
        large_case(int(side), int(horizon))
        return
    print(
        f"jax {jax.__version__} on {jax.default_backend()}, {os.cpu_count()} CPU cores, "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    if not args.skip_large:
        run_large(*((100, 100) if args.quick else (1000, 1000)))
    run_ratio(*((30, 100, 3) if args.quick else (100, 1000, args.repeats)))


if __name__ == "__main__":
    main()
