"""Bayesian inverse RL benchmark: SBC of the NUTS reward posterior, recovery on the notebook grid,
speed of the differentiable log Z.

Sections:

* SBC (Talts et al. 2018): 4x4 grid, F = 4 random features (sd 0.5), T = 8, N = 20, beta = 1,
  R replications with theta ~ Normal(0, 1), demonstrations from the exact posterior, one NUTS
  chain per replication, all replications in one vmapped program (``irl.sample_batched``);
  rank histograms, chi-square p-values per parameter (level 0.01), divergences, wall time per
  replication; a rank-ECDF-difference plot with 99% simultaneous bands saved as PNG.
* SBC power: the same with a wrong model (inference at beta = 1.5 on data made at beta = 1);
  the test must reject.
* Recovery on the notebook grid (6x6, start (5, 0), one-hot features F = 36, T = 20,
  beta = 0.05, prior_scale 20 so that beta * theta has sd 1): true theta from the prior,
  N in {5, 50, 500} demonstrations from the exact posterior, MCMC(NUTS(reward_model)):
  correlation of the posterior mean with the truth, coverage of the 90% intervals, mean
  posterior sd, cells never entered by any demonstration against their prior; NUTS ESS/s of
  theta and gradient evaluations/s (N = 50).
* Speed: one jitted ``jax.grad(irl.log_z)`` against one ``pgm_rl.solve`` on the notebook grid.
* Slippery FrozenLake (Gymnasium, if installed): one-hot features, demonstrations from the
  soft-Bellman policy run in the real Gymnasium environment, likelihood="soft_bellman".

    python benchmarks/bench_irl.py                 # R = 200
    python benchmarks/bench_irl.py --quick         # R = 40, N in {5, 50}
"""

import argparse
import os
import statistics
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import pgm_rl  # noqa: E402
from pgm_rl import irl  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="R = 40 and N in {5, 50}")
    parser.add_argument("--replications", type=int, default=None)
    parser.add_argument("--out", default="irl_sbc_ecdf.png", help="where the rank-ECDF plot goes")
    parser.add_argument("--skip", default="", help="comma-separated sections to skip")
    return parser.parse_args()


# ----------------------------------------------------------------------------- SBC


def ecdf_band(num_ranks, num_replications, level=0.99, num_sims=2000, seed=0):
    """Simultaneous band for the ECDF difference of uniform ranks (by simulation)."""
    rng = np.random.default_rng(seed)
    grid = np.arange(1, num_ranks + 1) / num_ranks
    sims = rng.integers(0, num_ranks, size=(num_sims, num_replications))
    ecdf = (sims[:, :, None] < np.arange(1, num_ranks + 1)).mean(axis=1)
    worst = np.abs(ecdf - grid).max(axis=1)
    return grid, float(np.quantile(worst, level))


def sbc(args):
    replications = args.replications or (40 if args.quick else 200)
    features = np.random.default_rng(0).normal(size=(16, 4)) * 0.5
    env = pgm_rl.GridWorld(np.zeros((4, 4)), (3, 0))
    start = time.perf_counter()
    result = irl.simulation_based_calibration(
        jax.random.key(0),
        env,
        features,
        horizon=8,
        num_demonstrations=20,
        num_replications=replications,
        num_warmup=300,
        thin=5,
        num_draws=99,
        target_accept_prob=0.9,
        max_tree_depth=6,
    )
    total = time.perf_counter() - start
    num_ranks = result.num_draws + 1
    grid, half_width = ecdf_band(num_ranks, replications)
    print(f"\n## SBC: 4x4 grid, F = 4, T = 8, N = 20, R = {replications}, L = {result.num_draws}")
    print(
        f"NUTS (vmapped over replications, 300 warmup + 495 steps, thin 5): {result.seconds:.1f} s, "
        f"{result.seconds / replications * 1e3:.0f} ms per replication; total with simulation "
        f"{total:.1f} s"
    )
    print(
        f"divergent transitions: {int(result.divergences.sum())} of {replications * 495} "
        f"({int((result.divergences > 0).sum())} replications)"
    )
    print("| parameter | rank histogram (10 bins) | chi-square p | max ECDF diff | 99% band |")
    print("|---|---|---|---|---|")
    for f in range(result.ranks.shape[1]):
        counts = np.bincount(result.ranks[:, f] * 10 // num_ranks, minlength=10)
        ecdf = (result.ranks[:, f][:, None] < np.arange(1, num_ranks + 1)).mean(axis=0)
        diff = np.abs(ecdf - grid).max()
        verdict = "ok" if result.p_values[f] > 0.01 and diff <= half_width else "FAIL"
        print(
            f"| theta[{f}] | {' '.join(map(str, counts))} | {result.p_values[f]:.3f} | "
            f"{diff:.3f} | {half_width:.3f} ({verdict}) |"
        )
    plot_ecdf(result, grid, half_width, args.out)
    print(f"rank-ECDF plot: {os.path.abspath(args.out)}")


def plot_ecdf(result, grid, half_width, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_ranks = result.num_draws + 1
    n_features = result.ranks.shape[1]
    fig, axes = plt.subplots(2, n_features, figsize=(3.2 * n_features, 5.5), squeeze=False)
    for f in range(n_features):
        ecdf = (result.ranks[:, f][:, None] < np.arange(1, num_ranks + 1)).mean(axis=0)
        ax = axes[0, f]
        ax.fill_between(grid, -half_width, half_width, color="0.85", label="99% band")
        ax.plot(grid, ecdf - grid, color="C0")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_title(f"theta[{f}]  p = {result.p_values[f]:.2f}")
        ax.set_xlabel("fractional rank")
        if f == 0:
            ax.set_ylabel("ECDF - uniform")
            ax.legend(loc="lower left", fontsize=7)
        ax = axes[1, f]
        ax.hist(result.ranks[:, f], bins=np.linspace(0, num_ranks, 11), color="C1")
        ax.axhline(len(result.ranks) / 10, color="k", lw=0.8, ls="--")
        ax.set_xlabel("rank of the true theta")
    fig.suptitle(
        f"SBC of NUTS on reward_model: R = {len(result.ranks)} replications, "
        f"L = {result.num_draws} thinned draws"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sbc_power(args):
    """The same SBC with a wrong model: demonstrations at beta = 1, inference at beta = 1.5."""
    from scipy import stats as scipy_stats

    replications = 40 if args.quick else 100
    features = np.random.default_rng(0).normal(size=(16, 4)) * 0.5
    env = pgm_rl.GridWorld(np.zeros((4, 4)), (3, 0))
    theta = np.asarray(jax.random.normal(jax.random.key(5), (replications, 4)))
    keys = jax.random.split(jax.random.key(6), replications)
    sets = [irl.simulate(keys[r], env, features, theta[r], 8, 20, 1.0) for r in range(replications)]
    demos = {k: np.stack([np.asarray(d[k]) for d in sets]) for k in ("actions", "states")}
    out = irl.sample_batched(
        jax.random.key(7),
        env,
        features,
        demos,
        1.5,
        num_warmup=300,
        num_samples=495,
        target_accept_prob=0.9,
        max_tree_depth=6,
    )
    draws = np.asarray(out["theta"])[:, 4::5]
    ranks = np.sum(draws < theta[:, None, :], axis=1)
    p_values = [
        scipy_stats.chisquare(np.bincount(ranks[:, f] // 10, minlength=10)).pvalue for f in range(4)
    ]
    print(
        f"\n## SBC power: demonstrations at beta = 1, inference at beta = 1.5 (R = {replications})"
    )
    print("chi-square p per parameter: " + ", ".join(f"{p:.2g}" for p in p_values))
    print(
        "rank histograms: "
        + "; ".join(
            " ".join(map(str, np.bincount(ranks[:, f] // 10, minlength=10))) for f in range(4)
        )
    )


# ----------------------------------------------------------------------------- recovery


def recovery(args):
    import arviz_stats
    from numpyro.infer import MCMC, NUTS

    env = pgm_rl.GridWorld.notebook()
    features = np.eye(36)
    horizon, beta, prior_scale = 20, 0.05, 20.0
    theta = np.asarray(jax.random.normal(jax.random.key(11), (36,))) * prior_scale
    sizes = (5, 50) if args.quick else (5, 50, 500)
    print(
        "\n## Recovery on the notebook grid: one-hot F = 36, T = 20, beta = 0.05, "
        "theta ~ Normal(0, 20) (beta * theta sd 1), demonstrations from the exact posterior"
    )
    print(
        "| N | corr(mean, truth) | 90% coverage | mean post. sd | cells never entered | "
        "their mean / sd (prior: 0 / 20) | divergences | ESS/s (min) | grad evals/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        demos = irl.simulate(jax.random.key(n), env, features, theta, horizon, n, beta)
        mcmc = MCMC(
            NUTS(irl.reward_model),
            num_warmup=500,
            num_samples=1000,
            num_chains=2,
            chain_method="vectorized",
            progress_bar=False,
        )
        run_args = (env, features, demos, beta, prior_scale)
        mcmc.warmup(jax.random.key(0), *run_args, extra_fields=("num_steps",))
        start = time.perf_counter()
        mcmc.run(jax.random.key(1), *run_args, extra_fields=("num_steps", "diverging"))
        post = np.asarray(mcmc.get_samples(group_by_chain=True)["theta"])
        seconds = time.perf_counter() - start  # includes one compile of the sampling loop
        extra = mcmc.get_extra_fields()
        flat = post.reshape(-1, 36)
        mean, sd = flat.mean(0), flat.std(0)
        low, high = np.quantile(flat, [0.05, 0.95], axis=0)
        coverage = np.mean((theta >= low) & (theta <= high))
        entered = np.zeros(36, bool)
        entered[np.asarray(demos["states"])[:, 1:].ravel()] = True
        unvisited = ~entered
        ess = arviz_stats.ess(post, chain_axis=0, draw_axis=1, method="bulk")
        grads = int(np.asarray(extra["num_steps"]).sum())
        print(
            f"| {n} | {np.corrcoef(mean, theta)[0, 1]:.3f} | {coverage:.2f} | {sd.mean():.2f} | "
            f"{int(unvisited.sum())} | "
            + (
                f"{mean[unvisited].mean():.1f} / {sd[unvisited].mean():.1f}"
                if unvisited.any()
                else "-"
            )
            + f" | {int(np.asarray(extra['diverging']).sum())} | {np.min(ess) / seconds:.0f} | "
            f"{grads / seconds:.0f} |"
        )


# ----------------------------------------------------------------------------- speed


def timed(fn, repeats=20):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed():
    env = pgm_rl.GridWorld.notebook()
    grad = jax.jit(jax.grad(lambda r: irl.log_z(env, r, 20, 1.0)))
    value = jax.jit(lambda r: irl.log_z(env, r, 20, 1.0))
    reward = jax.numpy.asarray(env.reward)
    t_solve = timed(lambda: pgm_rl.solve(env, 20, 1.0).log_z)
    t_grad = timed(lambda: grad(reward).block_until_ready())
    t_value = timed(lambda: value(reward).block_until_ready())
    print("\n## Speed on the notebook grid (T = 20, beta = 1), median of 20")
    print("| what | time | ratio to solve |")
    print("|---|---|---|")
    for name, t in (
        ("pgm_rl.solve(...).log_z", t_solve),
        ("jit(irl.log_z)", t_value),
        ("jit(jax.grad(irl.log_z))", t_grad),
    ):
        print(f"| {name} | {t * 1e6:.0f} us | {t / t_solve:.2f} |")


# ----------------------------------------------------------------------------- FrozenLake


def frozen_lake(args):
    try:
        import gymnasium
    except ImportError:
        print("\n## FrozenLake: gymnasium not installed, skipped")
        return
    from numpyro.infer import MCMC, NUTS

    env = pgm_rl.envs.from_gymnasium("FrozenLake-v1", is_slippery=True)
    features = np.eye(env.n_states)
    horizon, beta, n = 20, 20.0, 200 if args.quick else 1000
    policy = pgm_rl.soft_bellman(env, horizon, beta)
    # the reward of entering each cell (the goal pays 1 on entry)
    truth = np.zeros(env.n_states)
    np.maximum.at(
        truth, np.asarray(env.outcome_states).ravel(), np.asarray(env.outcome_rewards).ravel()
    )
    gym_env = gymnasium.make("FrozenLake-v1", is_slippery=True)
    rng = np.random.default_rng(0)
    actions = np.zeros((n, horizon), np.int64)
    states = np.zeros((n, horizon + 1), np.int64)
    probs = np.asarray(policy.policy)
    terminal = set(getattr(env, "terminal_states", ()))
    for i in range(n):
        s, _ = gym_env.reset(seed=int(rng.integers(2**31)))
        states[i, 0] = s
        done = False
        for t in range(horizon):
            a = int(rng.choice(env.n_actions, p=probs[t, s] / probs[t, s].sum()))
            if not done:
                s, _, terminated, _truncated, _ = gym_env.step(a)
                done = terminated or s in terminal
            actions[i, t], states[i, t + 1] = a, s
    demos = {"actions": actions, "states": states}
    mcmc = MCMC(
        NUTS(irl.reward_model),
        num_warmup=500,
        num_samples=1000,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    start = time.perf_counter()
    mcmc.run(
        jax.random.key(0),
        env,
        features,
        demos,
        beta,
        1.0,
        "soft_bellman",
        extra_fields=("diverging",),
    )
    seconds = time.perf_counter() - start
    mean = np.asarray(mcmc.get_samples()["theta"]).mean(0)
    sd = np.asarray(mcmc.get_samples()["theta"]).std(0)
    fit = irl.max_likelihood(env, features, demos, beta, "soft_bellman", prior_scale=1.0)
    print(
        f"\n## Slippery FrozenLake: {n} demonstrations in the real Gymnasium env, soft-Bellman "
        f"policy (T = {horizon}, beta = {beta}), one-hot features, likelihood='soft_bellman', "
        f"prior sd 1 ({seconds:.1f} s, {int(mcmc.get_extra_fields()['diverging'].sum())} "
        "divergences)"
    )
    print("posterior mean (sd) of each cell's reward, true reward in brackets:")
    desc = getattr(env, "desc", None)
    desc = None if desc is None else [np.asarray(row).astype(str).tolist() for row in desc]
    if desc is not None and isinstance(desc[0], str):
        desc = [list(row) for row in desc]
    for row in range(4):
        cells = []
        for col in range(4):
            s = 4 * row + col
            tag = desc[row][col] if desc is not None else ""
            cells.append(f"{tag} {mean[s]:+.2f} ({sd[s]:.2f}) [{truth[s]:g}]")
        print("  " + " | ".join(cells))
    goal = int(np.argmax(truth))
    print(
        f"goal cell {goal}: posterior mean {mean[goal]:+.2f}, rank {int((mean > mean[goal]).sum())} "
        f"of {env.n_states} (0 = highest); MAP theta at the goal {float(fit.theta[goal]):+.2f}"
    )


def main():
    args = parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"jax {jax.__version__}, {jax.devices()[0].platform}, float64")
    if "sbc" not in skip:
        sbc(args)
    if "power" not in skip:
        sbc_power(args)
    if "recovery" not in skip:
        recovery(args)
    if "speed" not in skip:
        speed()
    if "frozenlake" not in skip:
        frozen_lake(args)


if __name__ == "__main__":
    main()
