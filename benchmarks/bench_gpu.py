"""GPU check: ``solve`` at 10^6 and 10^7 states and the chains' throughput, against the CPU.

Prepared for a machine with a GPU (issue 20, item 5), one short script:

* ``solve(..., checkpoint=True)`` on random grids of 10^6 and 10^7 states (float32, T = 100):
  log Z and the marginals at T on the GPU (first call, with compilation, and a second call) and
  on the CPU (one call), with the differences;
* TrajectoryMH and ParticleGibbs through ``MCMC`` on the notebook grid (T = 100, beta = 0.05,
  4096 and 256 chains): chain-steps/s on the GPU and on the CPU (second call, net of
  compilation), each device's posterior mean return against the exact one, in units of its
  Monte Carlo standard error (ArviZ's ``ess``; TrajectoryMH's independence proposals rarely
  accept here, and the column says so), and the fraction of the CPU's actions equal to the
  GPU's for the same key (1 unless float rounding flips an accept test).

Without a GPU it says so and runs the same code with the CPU in the GPU's place (a smoke run of
the script, not a measurement); ``--quick`` shrinks every size.

    python benchmarks/bench_gpu.py            # on the GPU machine (about 5 minutes on an H100)
    python benchmarks/bench_gpu.py --quick    # 10^4 states, 64 chains
"""

import argparse
import math
import time

import jax
import numpy as np

import pgm_rl
from pgm_rl.compare import run_kernel

CHAINS_BETA = 0.05  # as benchmarks/bench_kernels.py: a posterior the chains can mix on


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    parser.add_argument("--horizon", type=int, default=100, help="T of the solves (100)")
    return parser.parse_args()


def devices():
    """``(accelerator, cpu, name)``: the first GPU (else the CPU) and the first CPU device."""
    cpu = jax.devices("cpu")[0]
    try:
        gpu = jax.devices("gpu")[0]
    except RuntimeError:
        return cpu, cpu, "no GPU: the CPU stands in for it (a smoke run, not a measurement)"
    return gpu, cpu, getattr(gpu, "device_kind", str(gpu))


def random_grid(side, seed=0):
    """A side x side grid, rewards uniform in [-2, 2], start in the bottom-left corner."""
    rewards = np.random.default_rng(seed).uniform(-2.0, 2.0, (side, side)).astype(np.float32)
    return pgm_rl.GridWorld(rewards, (side - 1, 0))


def timed_solve(env, horizon, device):
    """``(seconds, log_z, marginals at T)`` of ``solve(..., checkpoint=True)`` on ``device``."""
    with jax.default_device(device):
        start = time.perf_counter()
        posterior = pgm_rl.solve(env, horizon, 1.0, checkpoint=True)
        ends = np.asarray(posterior.marginals_at([horizon])[0], np.float64)
        return time.perf_counter() - start, posterior.log_z, ends


def solve_rows(sides, horizon, gpu, cpu):
    """Print one row per grid: GPU first and second call, CPU, and the differences."""
    print(f"solve(..., checkpoint=True), float32, T = {horizon}, beta = 1")
    print(
        f"{'states':>10} {'GPU 1st s':>10} {'GPU 2nd s':>10} {'CPU s':>9} {'CPU/GPU':>8} "
        f"{'log Z':>14} {'|d log Z|':>10} {'max |d marginals|':>18}"
    )
    for side in sides:
        env = random_grid(side)
        first, log_z, ends = timed_solve(env, horizon, gpu)
        second, _, _ = timed_solve(env, horizon, gpu)
        on_cpu, cpu_log_z, cpu_ends = timed_solve(env, horizon, cpu)
        print(
            f"{side * side:>10} {first:>10.2f} {second:>10.2f} {on_cpu:>9.2f} "
            f"{on_cpu / second:>8.1f} {log_z:>14.6f} {abs(log_z - cpu_log_z):>10.2e} "
            f"{np.max(np.abs(ends - cpu_ends)):>18.2e}"
        )


def chain_rows(cases, horizon, gpu, cpu):
    """Print one row per (kernel, device): chain-steps/s and the mean return's error in MCSE."""
    from arviz_stats.base import array_stats  # the ESS of the returns, for the MCSE

    env = pgm_rl.GridWorld.notebook()
    exact_return = pgm_rl.solve(env, horizon, CHAINS_BETA).expected_return
    print(
        f"chains on the notebook grid, T = {horizon}, beta = {CHAINS_BETA}, "
        f"exact E[return] {exact_return:.4f}"
    )
    print(
        f"{'kernel':<16} {'device':<6} {'chains':>7} {'steps':>6} {'chain-steps/s':>14} "
        f"{'E[return]':>10} {'MCSE':>8} {'error/MCSE':>10} {'actions = GPU':>14}"
    )
    for name, chains, warmup, samples in cases:
        actions = {}
        for label, device in (("GPU", gpu), ("CPU", cpu)):
            with jax.default_device(device):
                kwargs = dict(chains=chains, warmup=warmup, samples=samples)
                run_kernel(name, env, horizon, CHAINS_BETA, **kwargs)  # compiles
                mcmc, seconds = run_kernel(name, env, horizon, CHAINS_BETA, **kwargs)
            draws = mcmc.get_samples(group_by_chain=True)
            actions[label] = np.asarray(draws["actions"])
            returns = np.asarray(draws["rewards"], np.float64).sum(axis=-1)
            ess = float(array_stats.ess(returns, method="mean"))
            mean = float(returns.mean())
            mcse = float(returns.std()) / math.sqrt(max(ess, 1.0))
            gap = mean - exact_return
            error = gap / mcse if mcse > 0 else math.copysign(math.inf, gap)
            rate = chains * (warmup + samples) / seconds
            print(
                f"{name:<16} {label:<6} {chains:>7} {warmup + samples:>6} {rate:>14.3g} "
                f"{mean:>10.4f} {mcse:>8.4f} {error:>10.2f} "
                f"{np.mean(actions[label] == actions['GPU']):>14.4f}"
            )


def main():
    args = parse_args()
    gpu, cpu, name = devices()
    print(f"jax {jax.__version__}; accelerator: {name}; CPU: {cpu}")
    sides = (100,) if args.quick else (1000, 3163)  # 10^4; 10^6 and ~10^7 states
    horizon = 20 if args.quick else args.horizon
    solve_rows(sides, horizon, gpu, cpu)
    cases = (
        [("trajectory-mh", 64, 20, 50), ("particle-gibbs", 8, 5, 10)]
        if args.quick
        else [("trajectory-mh", 4096, 500, 1000), ("particle-gibbs", 256, 50, 200)]
    )
    chain_rows(cases, 20 if args.quick else 100, gpu, cpu)


if __name__ == "__main__":
    main()
