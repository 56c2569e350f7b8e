"""Swing Gymnasium's Pendulum-v1 up from hanging by model-predictive control with MPPI.

The planner is importance sampling of the trajectory posterior of ``pgm_rl.control.pendulum()``
(the JAX copy of Pendulum-v1's equations); each step it acts through ``env.step`` of the real
environment and reads the state back from the observation. Prints the episode cost and whether
the pendulum stayed up (|angle| < 0.3) over the last 50 of 200 steps, and draws the episode.

Run: ``python examples/pendulum_swing_up.py [--out PICTURE.png] [--seed N]`` (default picture
``report/pendulum_swing_up.png``; about 20 s).
"""

import argparse
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import gymnasium  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from pgm_rl import control  # noqa: E402
from pgm_rl.plots.control import plot_episode  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("report", "pendulum_swing_up.png"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()

    env = gymnasium.make("Pendulum-v1")
    env.reset(seed=args.seed)
    env.unwrapped.state = np.array([np.pi, 0.0])  # hanging at rest (angle 0 is upright)
    start = time.perf_counter()
    episode = control.mpc(control.pendulum(), args.steps, jax.random.key(args.seed), env=env)
    seconds = time.perf_counter() - start
    env.close()

    angle = np.asarray(episode.states)[:, 0]  # read from the observations: in [-pi, pi]
    up = bool(np.all(np.abs(angle[-50:]) < 0.3))
    print(
        f"Pendulum-v1, MPPI MPC ({control.PLANNER_DEFAULTS['mppi']}): {len(episode.rewards)} "
        f"steps in {seconds:.1f} s, episode cost {-np.sum(episode.rewards):.1f}, upright over "
        f"the last 50 steps: {'yes' if up else 'no'}"
    )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    plot_episode(
        episode,
        names=["angle", "velocity"],
        upright=0.3,
        action_bound=2.0,  # Pendulum-v1's max torque
        save=args.out,
        title=f"Pendulum-v1 swing-up by MPPI MPC: cost {-np.sum(episode.rewards):.1f}",
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
