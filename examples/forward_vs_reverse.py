"""Reverse-KL (SVI, mode-seeking) against forward-KL (fit to samples, mass-covering) policies.

The two-corridor grid (5x7, reward = column index, a wall of -10 in rows 1-3, columns 1-5, the
top corridor 1 worse at (0, 3), start (2, 0), T = 10, beta = 1): the posterior splits between
the top and the bottom corridor. ``fit_policy`` maximises the ELBO, i.e. minimises KL(q || p);
``fit_policy_to_samples`` on 20000 exact posterior draws is the maximum-likelihood fit, i.e.
minimises KL(p || q). Both with a stationary policy q(a | s) (a time-indexed one represents the
posterior exactly; its numbers are printed too). Prints KL(q || p) = log Z - ELBO, KL(p || q)
(exact, by the chain rule over the posterior's state marginals) and P(top corridor), and draws
the occupancies beside the exact posterior's into OUT/forward_vs_reverse.png.

    python examples/forward_vs_reverse.py --out report      # about 10 s on 2 cores
"""

import argparse
import os

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import pgm_rl  # noqa: E402
from pgm_rl.plots import plot_policy_occupancy  # noqa: E402
from pgm_rl.variational import fit_policy, fit_policy_to_samples  # noqa: E402

HORIZON, BETA, DRAWS = 10, 1.0, 20000
TOP = [(0, col) for col in range(1, 6)]  # the top corridor (above the wall)


def corridors():
    grid = np.tile(np.arange(7.0), (5, 1))
    grid[1:4, 1:6] = -10.0
    grid[0, 3] -= 1.0
    return pgm_rl.GridWorld(grid, (2, 0))


def kl_forward(post, evaluation):
    """KL(p || q) over trajectories: sum_t E_p[KL(p_t(. | s_t) || q_t(. | s_t))] (same dynamics)."""
    pi = np.asarray(post.policy)
    log_p, log_q = np.asarray(post.log_policy), np.asarray(evaluation.log_policy)
    per_state = np.where(pi > 0, pi * (log_p - log_q), 0.0).sum(-1)  # (T, S)
    return float((np.asarray(post.state_marginals)[:-1] * per_state).sum())


def compare(env, post, draws, parametrization):
    rows = {}
    fits = {
        "reverse KL (fit_policy)": fit_policy(
            env, HORIZON, BETA, parametrization=parametrization, num_steps=500
        ),
        "forward KL (fit_policy_to_samples)": fit_policy_to_samples(
            env, draws, parametrization=parametrization, beta=BETA
        ),
    }
    for name, fitted in fits.items():
        evaluation = pgm_rl.evaluate_policy(env, fitted.policy, BETA)
        rows[name] = (
            evaluation,
            float(post.log_z - evaluation.elbo),
            kl_forward(post, evaluation),
            float(evaluation.reach_probability(TOP)),
        )
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="report", help="folder for forward_vs_reverse.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    env = corridors()
    post = pgm_rl.solve(env, HORIZON, BETA)
    draws = post.sample(jax.random.key(args.seed), DRAWS)
    p_top = float(post.reach_probability(TOP))
    print(
        f"two corridors, T = {HORIZON}, beta = {BETA:g}: log Z = {float(post.log_z):.6g}, ", end=""
    )
    print(f"exact P(top corridor) = {p_top:.4f}")
    results = {}
    for parametrization in ("stationary", "time-indexed"):
        results[parametrization] = compare(env, post, draws, parametrization)
        for name, (_, kl_qp, kl_pq, top) in results[parametrization].items():
            print(
                f"  {parametrization:12s} {name:36s} KL(q||p) = {kl_qp:.4f}  "
                f"KL(p||q) = {kl_pq:.4f}  P(top) = {top:.4f}"
            )
    panels = [
        (
            name.split(" (")[0] + ", stationary q",
            evaluation,
            f"KL(q||p) = {kl_qp:.3f}, KL(p||q) = {kl_pq:.3f}\nP(top corridor) = {top:.3f}",
        )
        for name, (evaluation, kl_qp, kl_pq, top) in results["stationary"].items()
    ]
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "forward_vs_reverse.png")
    plot_policy_occupancy(
        env,
        post,
        panels,
        save=path,
        exact_subtitle=f"log Z = {float(post.log_z):.4g}\nP(top corridor) = {p_top:.3f}",
        title=f"two corridors, T = {HORIZON}, beta = {BETA:g}: exact P(top corridor) = {p_top:.3f}",
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
