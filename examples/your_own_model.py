"""Your own model (``make demo``): a trajectory-level term, its reference, and a reward machine
two ways.

1. A revisit penalty added to the trajectory model with ``numpyro.factor``, sampled by SuffixMH
   and ActionGibbs, each judged against the model's reference (importance sampling from the
   exact posterior of the Markov part, weights exp(f)).
2. "Visit A, then B, avoid C" on the notebook grid (T = 30, beta = 1): exactly, as the product
   MDP; by GuidedParticleGibbs on the world's own model with the machine as a factor; compared
   on the world's state marginals. The satisfaction picture shows P(task done by step t).

Writes ``<out>/satisfaction.png`` (default ``report/``). Run: ``python examples/your_own_model.py
[--out DIR]``.
"""

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import numpyro  # noqa: E402
from numpyro.infer import MCMC  # noqa: E402

import pgm_rl  # noqa: E402
from pgm_rl import diagnostics  # noqa: E402
from pgm_rl.envs import (  # noqa: E402
    RewardMachine,
    machine_rewards,
    satisfaction_probability,
    with_reward_machine,
)
from pgm_rl.kernels import KERNELS  # noqa: E402
from pgm_rl.plots import plot_satisfaction  # noqa: E402

GRID = pgm_rl.GridWorld([[0.0, 0.0, 0.0, 2.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], (2, 0))
MACHINE = RewardMachine(
    {(0, "A"): (1, 2.0), (1, "B"): (2, 5.0), (0, "C"): (3, -5.0), (1, "C"): (3, -5.0)},
    terminal=[2],
)


def revisits(states):
    same = states[:, None] == states[None, :]
    return jnp.sum(jnp.any(jnp.triu(same, 1), axis=0))


def revisit_model(env, horizon, beta):
    traj = pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("revisits", -1.0 * revisits(traj.states))


def machine_model(env, horizon, beta, labels):
    traj = pgm_rl.trajectory_model(env, horizon, beta)
    numpyro.factor("task", beta * machine_rewards(MACHINE, labels, traj.states, env).sum())


def run(kernel, model, args, chains=4, warmup=300, samples=1000, seed=0):
    mcmc = MCMC(kernel.make(model), num_warmup=warmup, num_samples=samples, num_chains=chains,
                chain_method=kernel.chain_method, progress_bar=False)  # fmt: skip
    start = time.perf_counter()
    mcmc.run(jax.random.key(seed), *args)
    return mcmc, time.perf_counter() - start


def revisit_penalty():
    print("=== a revisit penalty on a 3x4 grid, T = 6, beta = 1 ===")
    reference = diagnostics.reference(revisit_model, GRID, 6, 1.0, num_samples=8192)
    print(f"reference: {reference.describe()}")
    for name in ("suffix-mh", "action-gibbs"):
        mcmc, seconds = run(KERNELS[name], revisit_model, (GRID, 6, 1.0))
        dt = diagnostics.to_datatree(mcmc, GRID, reference=reference)
        found = diagnostics.problems(dt)
        verdict = "agrees with its reference" if not found else "; ".join(found)
        print(f"{name}: {seconds:.1f} s, E[return] {float(dt['posterior']['return'].mean()):.3f}"
              f" (reference {reference.expected_return:.3f}): {verdict}")  # fmt: skip


def reward_machine(out):
    print("\n=== 'visit A, then B, avoid C' on the notebook grid, T = 30, beta = 1 ===")
    env = pgm_rl.GridWorld.notebook()
    labels = [""] * env.n_states
    labels[env.state_of(2, 0)], labels[env.state_of(0, 3)] = "A", "B"
    labels[env.state_of(2, 2)] = "C"
    labels = tuple(labels)
    product = with_reward_machine(env, MACHINE, labels)
    exact = pgm_rl.solve(product, 30, 1.0)
    done = satisfaction_probability(exact, product)
    print(f"exact (product MDP, {product.n_states} states): P(task done by step 30) = "
          f"{done[-1]:.4f}, log Z = {float(exact.log_z):.4f}")  # fmt: skip
    base = np.asarray(product.base_state(np.arange(product.n_states)))
    projected = np.stack([np.bincount(base, w, env.n_states) for w in exact.state_marginals])
    guided = KERNELS["guided-particle-gibbs"]
    mcmc, seconds = run(guided, machine_model, (env, 30, 1.0, labels), samples=500)
    states = np.asarray(mcmc.get_samples()["states"])
    sampled = np.stack([np.bincount(states[:, t], minlength=env.n_states) / len(states)
                        for t in range(31)])  # fmt: skip
    tv = 0.5 * np.abs(sampled - projected).sum(axis=1)
    print(f"guided-particle-gibbs on the world's model + the machine as a factor ({seconds:.1f} s):"
          f" mean TV {tv.mean():.4f}, max TV {tv.max():.4f} to the product's exact marginals")  # fmt: skip
    mcmc, seconds = run(guided, pgm_rl.trajectory_model, (product, 30, 1.0), samples=500)
    dt = diagnostics.to_datatree(mcmc, product, exact)
    print(f"guided-particle-gibbs on the product ({seconds:.1f} s): "
          f"{'; '.join(diagnostics.problems(dt)) or 'agrees with exact'}")  # fmt: skip
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "satisfaction.png")
    plot_satisfaction(product, exact, dt, save=path)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="report")
    args = parser.parse_args()
    revisit_penalty()
    reward_machine(args.out)


if __name__ == "__main__":
    main()
