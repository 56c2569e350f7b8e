"""Slippery FrozenLake: the exact posterior's optimism, checked in the real Gymnasium environment.

On FrozenLake-v1 4x4 (slippery: a move goes where it was meant with probability 1/3, else to
one of the two perpendicular directions), with beta = 5 and T = 20:

1. exact inference (``pgm_rl.solve``) gives log Z and the posterior's plan, which "chooses" where
   the ice sends it (Levine 2018, section 2.4), so it plans to reach the goal far too often;
2. the soft-Bellman policy (``pgm_rl.soft_bellman``) keeps the true dynamics: its ELBO* < log Z;
3. both policies are then run in the real environment (``gymnasium.make`` and ``env.step``,
   2000 episodes each, fixed seeds) and the success rate achieved is printed beside the one
   predicted by ``evaluate_policy(...).reach_probability(goal)``, with its binomial standard
   error.

Writes ``<out>/frozen_lake_occupancy.png`` (default ``report/``): the posterior's occupancy on the
map beside that of its own policy executed and of the soft-Bellman policy.
Run: ``python examples/frozen_lake.py [--out DIR] [--episodes N] [--seed S]``. Needs the extra
``pgm_rl[gymnasium]``.
"""

import argparse
import math
import os

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import gymnasium as gym  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import pgm_rl  # noqa: E402
from pgm_rl import plots  # noqa: E402

ENV_ID, MAKE_KWARGS = "FrozenLake-v1", {"is_slippery": True, "map_name": "4x4"}
HORIZON, BETA = 20, 5.0
PICTURE = "frozen_lake_occupancy.png"


def run_episodes(env, policy, episodes, seed):
    """Run a (T, S, A) policy in a Gymnasium environment with ``env.step``.

    Episode ``i`` resets with seed ``seed + i`` and draws its actions from a generator seeded
    with ``(seed, i)``; it ends when the environment says ``terminated`` or after T steps.

    Returns
    -------
    numpy.ndarray of bool, shape (episodes,)
        Whether the episode ended on the goal (a terminating reward > 0).
    """
    policy = np.asarray(policy, np.float64)
    horizon = policy.shape[0]
    success = np.zeros(episodes, bool)
    for episode in range(episodes):
        rng = np.random.default_rng((seed, episode))
        state, _ = env.reset(seed=seed + episode)
        for t in range(horizon):
            probs = policy[t, state]
            action = int(rng.choice(probs.size, p=probs / probs.sum()))
            state, reward, terminated, truncated, _ = env.step(action)
            if terminated:
                success[episode] = reward > 0
                break
            if truncated:
                break
    return success


def frozen_lake(episodes=2000, seed=0):
    """Solve, evaluate and run both policies; a dict of everything the example prints."""
    mdp = pgm_rl.envs.from_gymnasium(ENV_ID, **MAKE_KWARGS)
    width = mdp.shape[1]
    goal = [s for s in range(mdp.n_states) if mdp.desc[s // width][s % width] == "G"]
    exact = pgm_rl.solve(mdp, HORIZON, BETA)
    soft = pgm_rl.soft_bellman(mdp, HORIZON, BETA)
    executed = pgm_rl.evaluate_policy(mdp, exact.policy, BETA)
    env = gym.make(ENV_ID, **MAKE_KWARGS)
    policies = {}
    for offset, (name, result) in enumerate(
        (("soft-Bellman policy", soft), ("posterior's policy", executed))
    ):
        predicted = result.reach_probability(goal)
        achieved = run_episodes(env, result.policy, episodes, seed + offset * episodes).mean()
        policies[name] = {
            "predicted": predicted,
            "achieved": float(achieved),
            "se": math.sqrt(predicted * (1.0 - predicted) / episodes),
        }
    env.close()
    return {
        "mdp": mdp,
        "exact": exact,
        "soft": soft,
        "executed": executed,
        "log_z": exact.log_z,
        "elbo": soft.elbo,
        "planned": exact.reach_probability(goal),
        "policies": policies,
        "episodes": episodes,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="report", help="folder of the picture (default report/)")
    parser.add_argument("--episodes", type=int, default=2000, help="episodes per policy (2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episodes (default 0)")
    args = parser.parse_args(argv)
    result = frozen_lake(args.episodes, args.seed)
    print(f"{ENV_ID} 4x4, slippery, T = {HORIZON}, beta = {BETA:g}")
    print(f"  log Z (exact posterior)    = {result['log_z']:.4f}")
    print(f"  ELBO* (soft-Bellman)       = {result['elbo']:.4f}")
    print(f"  the posterior plans to reach the goal with P = {result['planned']:.3f}")
    posterior, soft = (
        result["policies"]["posterior's policy"],
        result["policies"]["soft-Bellman policy"],
    )
    print(
        f"  its policy, executed in the true dynamics, reaches it with P = "
        f"{posterior['predicted']:.3f}; the soft-Bellman policy with P = {soft['predicted']:.3f}"
    )
    print(f"in the real environment (gymnasium env.step, {result['episodes']} episodes each):")
    for name, row in result["policies"].items():
        z = (row["achieved"] - row["predicted"]) / row["se"] if row["se"] > 0 else 0.0
        print(
            f"  {name:<20} success rate {row['achieved']:.4f}, predicted "
            f"{row['predicted']:.4f} ± {row['se']:.4f} (binomial SE; z = {z:+.2f})"
        )
    print(
        f"the posterior planned {result['planned']:.3f}; its own policy achieved "
        f"{posterior['achieved']:.4f} in the real environment: the optimism of the exact posterior"
    )
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, PICTURE)
    plots.plot_env_occupancy(result["mdp"], result["exact"], result["soft"], save=path)
    plt.close("all")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
