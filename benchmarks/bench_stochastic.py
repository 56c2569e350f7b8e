"""Stochastic-MDP benchmark: ``solve`` and ``soft_bellman`` time and memory, with ratios against
baselines run in the same process.

Rows:

* deterministic 100x100 grid: today's ``pgm_rl.solve`` against a frozen copy of the
  deterministic solve as it was before stochastic MDPs existed (the ratio must stay <= 1.10:
  deterministic MDPs must not pay for stochastic support);
* Taxi-v4 (500 states, 6 actions, random start over 300 states) when Gymnasium is installed;
* 100x100 slippery grid (slip 0.2, K = 3 outcomes per state-action): ``solve`` (the optimistic
  posterior) and ``soft_bellman``, against the deterministic solve of the same grid (the cost of
  stochastic dynamics) and against a plain NumPy sparse recursion (an independent check of
  log Z / ELBO, and a speed baseline).

Memory: the bytes of the dynamics as stored (sparse (S, A, K) arrays; the dense (S, A, S) table
a naive implementation would need is shown beside), the bytes of the outputs kept by the result,
and the process's peak resident memory after each row.

    python benchmarks/bench_stochastic.py            # T = 1000, as in the issue
    python benchmarks/bench_stochastic.py --quick    # T = 100, 30x30 grids
    python benchmarks/bench_stochastic.py --x64      # float64
"""

import argparse
import math
import resource
import statistics
import time
from functools import partial

import jax
import numpy as np


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="T = 100 and 30x30 grids")
    parser.add_argument("--x64", action="store_true", help="float64 (default: float32)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median)")
    parser.add_argument("--beta", type=float, default=1.0)
    return parser.parse_args()


# ----------------------------------------------------------------------------- frozen baseline
# The deterministic solve as it was before stochastic MDPs (pgm_rl.exact at 7b8ba00), verbatim
# in its arithmetic: the double-word backward pass and the scatter-add forward pass.


def _two_sum(a, b):
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


@partial(jax.jit, static_argnums=3)
def _frozen_backward(next_state, reward_hi, reward_lo, horizon):
    jnp, lax = jax.numpy, jax.lax
    n_states, n_actions = next_state.shape
    log_prior = -jnp.log(n_actions).astype(reward_hi.dtype)

    def step(log_v_next, _):
        v_hi, v_lo = log_v_next
        q_hi, err = _two_sum(reward_hi, v_hi[next_state])
        q_hi, q_lo = _two_sum(q_hi, reward_lo + v_lo[next_state] + err)
        m_hi = jnp.max(q_hi, axis=1, keepdims=True)
        diff = (q_hi - m_hi) + q_lo
        m_lo = jnp.max(diff, axis=1, keepdims=True)
        diff = diff - m_lo
        log_sum = jnp.log(jnp.sum(jnp.exp(diff), axis=1))
        new_hi, err = _two_sum(m_hi[:, 0], log_sum + log_prior)
        new_hi, new_lo = _two_sum(new_hi, m_lo[:, 0] + err)
        return (new_hi, new_lo), diff - log_sum[:, None]

    zeros = jnp.zeros(n_states, reward_hi.dtype)
    log_v0, log_policy = lax.scan(step, (zeros, zeros), None, length=horizon, reverse=True)
    return log_policy, log_v0


@jax.jit
def _frozen_forward(log_policy, next_state, reward, start_state):
    jnp, lax = jax.numpy, jax.lax
    mu0 = jnp.zeros(next_state.shape[0], log_policy.dtype).at[start_state].set(1.0)

    def step(mu, log_pi):
        joint = mu[:, None] * jnp.exp(log_pi)
        mu_next = jnp.zeros_like(mu).at[next_state].add(joint)
        return mu_next, (mu_next, joint.sum(axis=0), jnp.sum(joint * reward))

    _, (mus, action_marginals, step_returns) = lax.scan(step, mu0, log_policy)
    return jnp.concatenate([mu0[None], mus]), action_marginals, step_returns


def frozen_solve(env, horizon, beta):
    """log Z and the outputs of the pre-issue-10 deterministic solve."""
    jnp = jax.numpy
    next_state = jnp.asarray(env.next_state)
    reward = jnp.asarray(env.reward)
    scaled = beta * np.asarray(env.reward, dtype=np.float64)
    reward_hi = jnp.asarray(scaled, dtype=reward.dtype)
    reward_lo = jnp.asarray(scaled - np.asarray(reward_hi, dtype=np.float64), dtype=reward.dtype)
    log_policy, (v_hi, v_lo) = _frozen_backward(next_state, reward_hi, reward_lo, horizon)
    mus, actions, step_returns = _frozen_forward(log_policy, next_state, reward, env.start_state)
    log_z = float(v_hi[env.start_state]) + float(v_lo[env.start_state])
    return log_z, log_policy, mus, actions, math.fsum(np.asarray(step_returns).tolist())


# ----------------------------------------------------------------------------- NumPy baseline


def numpy_sparse(env, horizon, beta, kind, dtype):
    """Plain NumPy sparse recursion: log Z (posterior) or the ELBO (soft Bellman) at the start.

    Values are single-word (no double-word correction) and the policy is not stored.
    """
    ns = np.asarray(env.outcome_states)
    probs = np.asarray(env.outcome_probs, dtype)
    reward = (beta * np.asarray(env.outcome_rewards)).astype(dtype)
    with np.errstate(divide="ignore"):
        logp = np.log(probs)
        log_p0 = np.log(np.asarray(env.start_probs))
    value = np.zeros(env.n_states, dtype)
    log_prior = dtype(-math.log(env.n_actions))
    for _ in range(horizon):
        x = reward + value[ns]
        if kind == "posterior":
            y = x + logp
            m = y.max(axis=2, keepdims=True)
            q = (m + np.log(np.exp(y - m).sum(axis=2, keepdims=True)))[..., 0]
        else:
            q = (probs * x).sum(axis=2)
        m = q.max(axis=1, keepdims=True)
        value = (m + np.log(np.exp(q - m).sum(axis=1, keepdims=True)))[:, 0] + log_prior
    if kind == "posterior":
        y = log_p0 + value
        top = y.max()
        return float(top + np.log(np.exp(y - top).sum()))
    p0 = np.asarray(env.start_probs)
    return float(np.sum(p0[p0 > 0] * value[p0 > 0]))


# ----------------------------------------------------------------------------- harness


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def outputs(result):
    return (result.log_policy, result.state_marginals, result.action_marginals)


def nbytes(*arrays):
    return sum(int(np.asarray(a).nbytes) for a in jax.tree.leaves(arrays) if a is not None)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dynamics_bytes(env):
    if env.has_random_dynamics:
        return nbytes(env.outcome_states, env.outcome_probs, env.outcome_rewards, env.reward)
    return nbytes(env.next_state, env.reward)


def row(name, method, seconds, baseline_name, baseline_seconds, env, result, value, note=""):
    dense = 8 * env.n_states * env.n_actions * env.n_states
    stored = nbytes(outputs(result), getattr(result, "messages", None))
    ratio = seconds / baseline_seconds if baseline_seconds else float("nan")
    print(
        f"{name:<26} {method:<13} {seconds:8.3f} s  {baseline_name:<22} {baseline_seconds:8.3f} s"
        f"  x{ratio:5.2f}  {value:>14.6f}  dyn {dynamics_bytes(env) / 2**20:7.1f} MiB"
        f" (dense {dense / 2**20:9.1f})  out {stored / 2**20:8.1f} MiB"
        f"  rss {peak_rss_mib():7.0f} MiB {note}"
    )


def main():
    args = parse_args()
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import pgm_rl
    from pgm_rl import GridWorld

    dtype = np.float64 if args.x64 else np.float32
    horizon = 100 if args.quick else 1000
    side = 30 if args.quick else 100
    beta, repeats = args.beta, args.repeats
    rng = np.random.default_rng(0)
    rewards = rng.uniform(-2.0, 2.0, (side, side))
    start = (side - 1, 0)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].platform}, {np.dtype(dtype).name}, "
        f"T = {horizon}, beta = {beta}, median of {repeats}"
    )
    print(
        f"{'problem':<26} {'method':<13} {'time':>10}  {'baseline':<22} {'time':>10}  "
        f"{'ratio':>6}  {'log Z / ELBO':>14}  memory"
    )

    # 1. deterministic: today's solve against the frozen pre-issue-10 solve
    grid = GridWorld(rewards, start)
    name = f"{side}x{side} deterministic"
    jax.block_until_ready(outputs(pgm_rl.solve(grid, horizon, beta)))
    jax.block_until_ready(frozen_solve(grid, horizon, beta)[1:4])
    # interleave the two so that load on a shared machine hits both alike
    new_times, old_times = [], []
    for _ in range(repeats):
        new_times.append(median_time(lambda: outputs(pgm_rl.solve(grid, horizon, beta)), 1))
        old_times.append(median_time(lambda: frozen_solve(grid, horizon, beta)[1:4], 1))
    det_seconds = statistics.median(new_times)
    old_seconds = statistics.median(old_times)
    result = pgm_rl.solve(grid, horizon, beta)
    frozen_log_z = frozen_solve(grid, horizon, beta)[0]
    assert abs(result.log_z - frozen_log_z) <= 1e-6 * abs(frozen_log_z), (
        result.log_z,
        frozen_log_z,
    )
    row(
        name,
        "solve",
        det_seconds,
        "pre-issue-10 solve",
        old_seconds,
        grid,
        result,
        result.log_z,
        "(must be <= x1.10)",
    )
    soft_seconds = median_time(lambda: outputs(pgm_rl.soft_bellman(grid, horizon, beta)), repeats)
    soft = pgm_rl.soft_bellman(grid, horizon, beta)
    row(name, "soft_bellman", soft_seconds, "solve (same grid)", det_seconds, grid, soft, soft.elbo)

    # 2. Taxi-v4
    try:
        from pgm_rl.envs import from_gymnasium

        taxi = from_gymnasium("Taxi-v4")
    except ImportError:
        taxi = None
        print("Taxi-v4: skipped (pip install 'pgm_rl[gymnasium]')")
    if taxi is not None:
        for method, fn, kind in (
            ("solve", pgm_rl.solve, "posterior"),
            ("soft_bellman", pgm_rl.soft_bellman, "soft"),
        ):
            result = fn(taxi, horizon, beta)
            seconds = median_time(lambda fn=fn: outputs(fn(taxi, horizon, beta)), repeats)
            start_np = time.perf_counter()
            reference = numpy_sparse(taxi, horizon, beta, kind, dtype)
            numpy_seconds = time.perf_counter() - start_np
            value = result.log_z if kind == "posterior" else result.elbo
            row(
                "Taxi-v4 (random start)",
                method,
                seconds,
                "NumPy sparse",
                numpy_seconds,
                taxi,
                result,
                value,
                f"NumPy: {reference:.6f}",
            )

    # 3. slippery grid
    slippery = GridWorld(rewards, start, slip=0.2)
    name = f"{side}x{side} slippery (K={slippery.n_outcomes})"
    for method, fn, kind in (
        ("solve", pgm_rl.solve, "posterior"),
        ("soft_bellman", pgm_rl.soft_bellman, "soft"),
    ):
        result = fn(slippery, horizon, beta)
        jax.block_until_ready(outputs(result))
        seconds = median_time(lambda fn=fn: outputs(fn(slippery, horizon, beta)), repeats)
        value = result.log_z if kind == "posterior" else result.elbo
        row(name, method, seconds, "deterministic solve", det_seconds, slippery, result, value)
        start_np = time.perf_counter()
        reference = numpy_sparse(slippery, horizon, beta, kind, dtype)
        numpy_seconds = time.perf_counter() - start_np
        row(
            name,
            method,
            seconds,
            "NumPy sparse",
            numpy_seconds,
            slippery,
            result,
            value,
            f"NumPy: {reference:.6f}",
        )


if __name__ == "__main__":
    main()
