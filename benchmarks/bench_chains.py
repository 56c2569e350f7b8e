"""Chains benchmark: 4096 TrajectoryMH chains sharded over 8 virtual CPU devices against one device.

The same ``numpyro.infer.MCMC`` run (TrajectoryMH on the notebook grid, T = 100) three ways:
``chain_method="vectorized"`` (its registry record's, on the first CPU device),
``shard_chains(chains_mesh(...))`` over 1 CPU device and over 8 virtual CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``, set here before JAX starts). It checks
that the three give the same draws for the same key (actions and states exactly; the float
draws, rewards and acceptance, to rounding: XLA compiles the batch of N / D chains of a device
apart from one of N, and may sum in another order) and prints chain-steps/s (chains x (warm-up + samples) / s, net of compilation,
the best of ``--repeats`` interleaved calls) and the ratios to the vectorized run.

Virtual CPU devices share the same cores, so on CPU this shows the overhead of sharding, not a
speed-up; on several real devices each holds and runs N / D of the chains.

    python benchmarks/bench_chains.py            # 4096 chains, 100 + 400 steps, thinning 50
    python benchmarks/bench_chains.py --quick    # 20 + 100 steps
"""

import os

# Before JAX starts: 8 virtual CPU devices.
os.environ["XLA_FLAGS"] = " ".join(
    filter(None, [os.environ.get("XLA_FLAGS"), "--xla_force_host_platform_device_count=8"])
)

import argparse

import jax
import numpy as np
from bench_adapter import net_seconds
from jax import random
from numpyro.infer import MCMC

import pgm_rl
from pgm_rl.kernels import KERNELS, chains_mesh, shard_chains

RECORD = KERNELS["trajectory-mh"]


def mcmc_runner(chain_method, args):
    """``keys -> (draws, acceptance)``: ``MCMC.run`` of TrajectoryMH with ``chain_method``."""
    warmup, samples = (20, 100) if args.quick else (args.warmup, args.samples)
    mcmc = MCMC(
        RECORD.make(pgm_rl.trajectory_model),
        num_warmup=warmup,
        num_samples=samples,
        thinning=args.thinning,
        num_chains=args.chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    env = pgm_rl.GridWorld.notebook()

    def run(keys):
        mcmc.run(keys, env, args.horizon, args.beta, extra_fields=RECORD.extra_fields)
        return mcmc.get_samples(group_by_chain=True), mcmc.get_extra_fields(group_by_chain=True)

    return run, args.chains * (warmup + samples)


def compare(found, reference):
    """The largest difference of the float draws (rewards, acceptance) from ``reference``'s,
    after asserting that the integer ones (actions, states) are equal."""
    found, reference = jax.tree.leaves(found), jax.tree.leaves(reference)
    largest = 0.0
    for a, b in zip(found, reference, strict=True):
        if np.issubdtype(a.dtype, np.floating):
            largest = max(largest, float(np.max(np.abs(a - b))))
        else:
            assert np.array_equal(a, b), "integer draws differ from the vectorized run's"
    return largest


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--chains", type=int, default=4096)
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--beta", type=float, default=0.05)  # as bench_kernels.py
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--thinning", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    cpus = jax.devices("cpu")
    if len(cpus) < 8:
        raise SystemExit(f"needs 8 CPU devices, got {len(cpus)}: XLA_FLAGS was set too late")
    print(f"jax {jax.__version__}, {len(cpus)} CPU devices on {os.cpu_count()} cores")
    methods = {
        "vectorized": RECORD.chain_method,
        "sharded, 1 device": shard_chains(chains_mesh(cpus[:1])),
        "sharded, 8 devices": shard_chains(chains_mesh(cpus[:8])),
    }
    with jax.default_device(cpus[0]):
        runners = {label: mcmc_runner(method, args) for label, method in methods.items()}
        # the first call compiles; its draws must agree
        keys = random.split(random.key(0), args.chains)
        draws = {label: jax.device_get(run(keys)) for label, (run, _) in runners.items()}
        float_diffs = {label: compare(found, draws["vectorized"]) for label, found in draws.items()}
        best = dict.fromkeys(runners, float("inf"))
        for repeat in range(args.repeats):
            new_keys = random.split(random.key(repeat + 1), args.chains)
            for label, (run, _) in runners.items():
                best[label] = min(best[label], net_seconds(run, new_keys))
    steps = next(iter(runners.values()))[1]
    print(
        f"\nTrajectoryMH on the notebook grid, T = {args.horizon}, beta = {args.beta}, "
        f"{args.chains} chains x {steps // args.chains} steps (thinning {args.thinning}); "
        "actions and states the same all three ways: yes"
    )
    print(
        f"{'chain_method':22s} {'seconds':>9s} {'chain-steps/s':>14s} {'x vectorized':>13s} "
        f"{'max float diff':>15s}"
    )
    for label, seconds in best.items():
        ratio = best["vectorized"] / seconds
        print(
            f"{label:22s} {seconds:9.3f} {steps / seconds:14.4g} {ratio:13.3f} "
            f"{float_diffs[label]:15.3g}"
        )
    print(
        "float draws (rewards, acceptance) differ where XLA sums a batch of N / D chains in "
        "another order than one of N (float32 rounding of the log-likelihoods)"
    )
    print(
        "virtual CPU devices share the machine's cores: this shows the overhead of sharding, "
        "not a speed-up"
    )


if __name__ == "__main__":
    main()
