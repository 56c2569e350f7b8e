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

import arviz_stats
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
from _runner import chains_runner
from jax import random

import pgm_rl
from pgm_rl.envs import RewardMachine, machine_rewards, with_reward_machine
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


# "visit A, then B, avoid C" on the notebook grid: A pays 2, B 5; C before B costs 5 and ends
# in a sink that is not done.
MACHINE = RewardMachine(
    {(0, "A"): (1, 2.0), (1, "B"): (2, 5.0), (0, "C"): (3, -5.0), (1, "C"): (3, -5.0)},
    terminal=[2],
)


def notebook_task():
    env = pgm_rl.GridWorld.notebook()
    labels = [""] * env.n_states
    labels[env.state_of(2, 0)], labels[env.state_of(0, 3)] = "A", "B"
    labels[env.state_of(2, 2)] = "C"
    return env, tuple(labels)


def machine_model(env, horizon, beta, labels):
    traj = pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("task", beta * machine_rewards(MACHINE, labels, traj.states, env).sum())


def return_ess_and_tv(states, returns, exact_marginals, n_states):
    """ESS of the return (arviz-stats, chains x draws) and the mean TV of the state marginals."""
    ess = float(arviz_stats.ess(np.asarray(returns), method="bulk"))
    flat = np.asarray(states).reshape(-1, states.shape[-1])
    empirical = np.stack(
        [np.bincount(flat[:, t], minlength=n_states) / len(flat) for t in range(flat.shape[1])]
    )
    return ess, float(np.mean(0.5 * np.abs(empirical - exact_marginals).sum(axis=1)))


def machine_two_ways(args):
    env, labels = notebook_task()
    horizon, beta = args.horizon, 1.0
    product = with_reward_machine(env, MACHINE, labels)
    exact = pgm_rl.solve(product, horizon, beta)
    base = np.asarray(product.base_state(np.arange(product.n_states)))
    projected = np.stack(
        [np.bincount(base, w, env.n_states) for w in np.asarray(exact.state_marginals)]
    )
    print(f"\nA reward machine two ways (notebook grid, T = {horizon}, beta = {beta:g}, "
          f"{args.chains} chains x {args.draws} draws after {args.draws // 2} warm-up; ESS of "
          "the return, mean TV of the world's state marginals to the product's exact ones)")  # fmt: skip
    print(f"{'sampler':<46}{'seconds':>9}{'ESS':>9}{'ESS/s':>11}{'mean TV':>10}")
    kernel = KERNELS["guided-particle-gibbs"]
    for label, model, env_arg, extra in (
        ("guided-particle-gibbs, factor on the world", machine_model, env, (labels,)),
        ("guided-particle-gibbs, product MDP", pgm_rl.trajectory_model, product, ()),
    ):
        run = chains_runner(kernel.make(model), (env_arg, horizon, beta, *extra),
                            args.draws // 2, args.draws)  # fmt: skip
        jax.block_until_ready(run(random.split(random.key(0), args.chains)))
        start = time.perf_counter()
        samples = jax.block_until_ready(run(random.split(random.key(1), args.chains)))
        seconds = time.perf_counter() - start
        states = np.asarray(samples["states"])
        if env_arg is product:
            states = np.asarray(product.base_state(states))
        returns = beta * np.asarray(samples["rewards"]).sum(-1)
        if model is machine_model:  # the product's return: the world's plus the machine's
            returns = returns + np.asarray(machine_rewards(MACHINE, labels, states, env)).sum(-1)
        ess, tv = return_ess_and_tv(states, returns, projected, env.n_states)
        print(f"{label:<46}{seconds:>9.2f}{ess:>9.0f}{ess / seconds:>11.0f}{tv:>10.4f}")
    num = args.chains * args.draws
    jax.block_until_ready(exact.sample(random.key(0), num))
    start = time.perf_counter()
    exact = pgm_rl.solve(product, horizon, beta)
    draws = jax.block_until_ready(exact.sample(random.key(1), num))
    seconds = time.perf_counter() - start
    states = np.asarray(product.base_state(np.asarray(draws["states"])))
    returns = np.asarray(draws["rewards"]).sum(-1).reshape(args.chains, args.draws)
    ess, tv = return_ess_and_tv(states.reshape(args.chains, args.draws, -1), returns, projected,
                                env.n_states)  # fmt: skip
    print(f"{'exact iid on the product (solve + sample)':<46}{seconds:>9.2f}{ess:>9.0f}"
          f"{ess / seconds:>11.0f}{tv:>10.4f}")  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    parser.add_argument("--horizon", type=int, default=30)
    parser.add_argument("--chains", type=int, default=4)
    args = parser.parse_args()
    args.steps = 100 if args.quick else 400
    args.draws = 200 if args.quick else 1000
    factor_costs(args)
    machine_two_ways(args)


if __name__ == "__main__":
    main()
