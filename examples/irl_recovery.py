"""Learning rewards from demonstrations: the NUTS reward posterior recovers the true rewards.

A 5x5 grid whose cell rewards are drawn from the prior (Normal(0, 1), one-hot features: one
reward per cell, the reward of the cell entered), N = 200 exact demonstrations of T = 8 steps
from the trajectory posterior at beta = 1 (``pgm_rl.solve``), then NUTS on
``pgm_rl.irl.reward_model`` (2 chains). Prints the correlation of the posterior mean with the
truth, the coverage of the 90% intervals, R-hat and divergences, and draws the true reward
beside the posterior mean and sd (``pgm_rl.plots.plot_reward_posterior``) into OUT.

    python examples/irl_recovery.py --out report        # about 20 s on 2 cores
"""

import argparse
import os
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from numpyro.infer import MCMC, NUTS  # noqa: E402

import pgm_rl  # noqa: E402
from pgm_rl import irl  # noqa: E402
from pgm_rl.diagnostics import empirical_state_marginals  # noqa: E402, F401  (import order)
from pgm_rl.envs import GridWorld  # noqa: E402
from pgm_rl.plots import plot_reward_posterior  # noqa: E402

SHAPE, START, HORIZON, BETA, N, PRIOR_SCALE = (5, 5), (4, 0), 8, 1.0, 200, 1.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="report", help="folder for irl_recovery.png")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--demonstrations", type=int, default=N, help=f"N (default {N})")
    args = parser.parse_args()
    key_reward, key_demos, key_nuts = jax.random.split(jax.random.key(args.seed), 3)

    truth = np.asarray(jax.random.normal(key_reward, SHAPE)) * PRIOR_SCALE
    env = GridWorld(truth, START)
    demos = pgm_rl.solve(env, HORIZON, BETA).sample(key_demos, args.demonstrations)
    features = np.eye(env.n_states)  # one-hot: theta[s] is the reward of entering cell s
    visits = np.bincount(np.asarray(demos["states"])[:, 1:].ravel(), minlength=env.n_states)
    print(
        f"true rewards ~ Normal(0, {PRIOR_SCALE:g}) on a {SHAPE[0]}x{SHAPE[1]} grid, "
        f"{args.demonstrations} exact demonstrations (T = {HORIZON}, beta = {BETA:g}); "
        f"{int((visits == 0).sum())} cells never entered"
    )

    start = time.perf_counter()
    mcmc = MCMC(
        NUTS(irl.reward_model),
        num_warmup=500,
        num_samples=1000,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(key_nuts, env, features, demos, BETA, PRIOR_SCALE, extra_fields=("diverging",))
    seconds = time.perf_counter() - start
    theta = np.asarray(mcmc.get_samples(group_by_chain=True)["theta"])  # (chain, draw, S)
    draws = theta.reshape(-1, env.n_states)
    mean, sd = draws.mean(0), draws.std(0)
    low, high = np.quantile(draws, [0.05, 0.95], axis=0)
    truth_flat = truth.ravel()
    corr = np.corrcoef(mean, truth_flat)[0, 1]
    coverage = np.mean((low <= truth_flat) & (truth_flat <= high))
    from arviz_stats.base import array_stats

    r_hat = float(np.max(array_stats.rhat(theta, chain_axis=0, draw_axis=1)))
    divergences = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    print(f"NUTS: 2 chains x 1000 draws in {seconds:.1f} s (compilation included)")
    print(f"max R-hat of theta {r_hat:.3f}; divergences {divergences}")
    print(f"correlation of the posterior mean with the true rewards: {corr:.3f}")
    print(f"90% intervals covering the true reward: {coverage:.2f} ({env.n_states} cells)")
    print(
        f"mean posterior sd: {sd[visits > 0].mean():.2f} in entered cells, "
        f"{sd[visits == 0].mean() if (visits == 0).any() else float('nan'):.2f} in cells never "
        f"entered (prior sd {PRIOR_SCALE:g})"
    )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "irl_recovery.png")
    plot_reward_posterior(env, mean, sd, true_reward=truth, visits=visits, save=path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
