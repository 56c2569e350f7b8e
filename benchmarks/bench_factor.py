"""Your own model (issue 18): what a trajectory-level term costs each kernel, and what a reward
machine costs as a factor against the product MDP.

Table 1: seconds per MCMC step (one sweep) of every registry kernel of pgm_rl on the notebook
grid (4 chains, vmapped, jitted once, timed on a second call), on the plain trajectory model
and on the same model plus a revisit penalty ``numpyro.factor`` (a whole-path term), and their
ratio: the cost of evaluating f where each kernel needs it (the count per sweep is in the
second column).

Table 2 (with ``pgm_rl.envs.with_reward_machine``): "visit A, then B, avoid C" on the notebook
grid, T = 30, beta = 1: GuidedParticleGibbs on the base model with the machine as a factor, and
on the product MDP; ESS/s of the return (arviz-stats) and the mean TV of the base-state
marginals to the product's exact ones; exact iid draws on the product as the ceiling.

    python benchmarks/bench_factor.py            # T = 30
    python benchmarks/bench_factor.py --quick
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpyro
from _runner import chains_runner
from jax import random

import pgm_rl
from pgm_rl.kernels.registry import KERNELS

KERNEL_SETTINGS = {
    "trajectory-mh": {},
    "action-gibbs": {},
    "suffix-mh": {},
    "particle-gibbs": {"num_particles": 64},
    "guided-particle-gibbs": {"num_particles": 64},
    "replica-exchange": {"num_rungs": 4},
}


def evaluations_per_sweep(name, horizon, params):
    """How many times the kernel evaluates f in one MCMC step."""
    particles = params.get("num_particles", 256)
    return {
        "trajectory-mh": "1",
        "action-gibbs": f"T + 1 = {horizon + 1}",
        "suffix-mh": f"T = {horizon}",
        "particle-gibbs": f"N (T + 1) = {particles * (horizon + 1)}",
        "guided-particle-gibbs": f"N (T + 1) = {particles * (horizon + 1)}",
        "replica-exchange": f"K T = {params.get('num_rungs', 6) * horizon} (suffix-mh rungs)",
    }[name]


def revisits(states):
    """How many of the path's states (T + 1,) were entered before (O(T^2) comparisons)."""
    same = states[:, None] == states[None, :]
    return jnp.sum(jnp.any(jnp.triu(same, 1), axis=0))


def revisit_model(env, horizon, beta):
    traj = pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("revisits", -0.5 * revisits(traj.states))


def seconds_per_step(model, name, params, args_tuple, chains, steps, seed=0):
    run = chains_runner(KERNELS[name].make(model, **params), args_tuple, steps // 2, steps // 2)
    jax.block_until_ready(run(random.split(random.key(seed), chains)))
    best = float("inf")
    for repeat in range(2):
        start = time.perf_counter()
        jax.block_until_ready(run(random.split(random.key(seed + 1 + repeat), chains)))
        best = min(best, time.perf_counter() - start)
    return best / steps


def factor_costs(args):
    env = pgm_rl.GridWorld.notebook()
    model_args = (env, args.horizon, 1.0)
    print(f"\nCost of a trajectory-level term (notebook grid, T = {args.horizon}, beta = 1, "
          f"{args.chains} chains, best of 2)")  # fmt: skip
    header = f"{'kernel':<24}{'f evaluations / step':<34}{'plain ms':>10}{'factor ms':>11}"
    print(header + f"{'ratio':>8}")
    for name, params in KERNEL_SETTINGS.items():
        plain = seconds_per_step(pgm_rl.trajectory_model, name, params, model_args,
                                 args.chains, args.steps)  # fmt: skip
        factor = seconds_per_step(revisit_model, name, params, model_args, args.chains, args.steps)
        print(
            f"{name:<24}{evaluations_per_sweep(name, args.horizon, params):<34}"
            f"{1e3 * plain:>10.3f}{1e3 * factor:>11.3f}{factor / plain:>8.2f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()
    args.steps = 100 if args.quick else 400
    factor_costs(args)


if __name__ == "__main__":
    main()
