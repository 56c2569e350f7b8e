"""Continuous-control benchmark: MPPI rollouts per second, the Pendulum-v1 swing-up in the real
Gymnasium environment, and (``--accuracy``) MPPI, SMC and NUTS against the exact LQ posterior.

Rows:

* rollouts/s: one MPPI planning call on the pendulum (horizon 15), batch N, pgm_rl's
  ``mppi`` against jax-mppi 0.3.0 (``jax_mppi.mppi.command``) and pytorch-mppi 0.9.1 on the same
  dynamics and batch, when they import (neither is a dependency of pgm_rl: install them in a
  throwaway environment, or put them on PYTHONPATH; a missing one is skipped with a note);
* swing-up: Pendulum-v1 (Gymnasium's ``env.step``) from hanging at rest, 200 steps, E episodes:
  pgm_rl's MPC with its default planner and with pytorch-mppi's pendulum settings (horizon 15,
  100 samples, lambda = 1 / beta = 1), and jax-mppi with the same settings; success = |angle| <
  0.3 over the last 50 steps; average episode cost (minus the sum of Gymnasium's rewards) and
  planning time per step;
* ``--accuracy``: the double integrator (``pgm-rl control --problem lq``) at T in {10, 50} and
  beta in {0.1, 1, 10}: MPPI (10^4 samples, 1 and 3 iterations) and SMC (10^4 particles), R runs
  each: median ESS and how many runs with ESS > 100 have log Z within 3 SE of exact; NUTS (4
  chains x 1000): the largest mean error in MCSE, the largest variance error, max R-hat.

    python benchmarks/bench_control.py             # 20 episodes, N = 1000 and 10000
    python benchmarks/bench_control.py --quick     # 5 episodes, N = 1000
    python benchmarks/bench_control.py --accuracy  # the exact-vs-sampler table (minutes)
"""

import argparse
import statistics
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from pgm_rl import control  # noqa: E402
from pgm_rl.cli.control import double_integrator  # noqa: E402
from pgm_rl.control.mppi import _mppi  # noqa: E402

PYTORCH_SETTINGS = {"horizon": 15, "num_samples": 100, "beta": 1.0}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 episodes, N = 1000 only")
    parser.add_argument("--accuracy", action="store_true", help="only the exact-vs-sampler table")
    parser.add_argument("--runs", type=int, default=20, help="--accuracy: runs per cell")
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per row (median)")
    return parser.parse_args()


def interleaved_times(calls, repeats):
    """Median seconds of each call in ``calls`` (``i -> array``), timed in alternation (a busy
    machine then slows them alike), after one untimed call each (the compilation)."""
    for call in calls:
        jax.block_until_ready(call(0))
    times = [[] for _ in calls]
    for i in range(repeats):
        for call, kept in zip(calls, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(call(i + 1))
            kept.append(time.perf_counter() - start)
    return [statistics.median(kept) for kept in times]


# ----------------------------------------------------------------------------- rollouts/s


def rollout_rows(batches, repeats):
    problem = control.pendulum()
    horizon = 15
    plan = jnp.zeros((horizon, 1))
    scale = jnp.full((horizon, 1), 2.0)
    print("\n## MPPI rollouts per second (pendulum, horizon 15, one planning call)\n")
    print("| batch N | pgm_rl mppi | jax-mppi 0.3.0 | ratio | pytorch-mppi 0.9.1 | ratio |")
    print("|---|---|---|---|---|---|")
    for n in batches:
        # what MPC compiles: only the control is used, so XLA keeps no trajectory arrays
        plan_only = jax.jit(lambda key, n=n: _mppi(problem, key, 1.0, plan, scale, n, 1).actions)
        calls = [lambda i, f=plan_only: f(jax.random.key(i))]
        others = [jax_mppi_call(problem, n, horizon), pytorch_mppi_call(n, horizon)]
        calls += [call for call, _ in others if call is not None]
        measured = iter(interleaved_times(calls, repeats))
        ours = next(measured)
        cells = [f"{n}", f"{n / ours:,.0f}/s ({ours * 1e3:.2f} ms)"]
        for call, why in others:
            if call is None:
                cells += [f"skipped ({why})", "-"]
            else:
                other = next(measured)
                cells += [f"{n / other:,.0f}/s ({other * 1e3:.2f} ms)", f"x{other / ours:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


def _jax_mppi_controller(problem, n, horizon, beta, key):
    from jax_mppi import mppi as jm

    config, state = jm.create(
        nx=2, nu=1, noise_sigma=jnp.array([[2.0]]), num_samples=n, horizon=horizon,
        lambda_=1.0 / beta, u_min=jnp.array([-2.0]), u_max=jnp.array([2.0]), key=key,
    )  # fmt: skip
    dynamics = problem.dynamics

    def running_cost(x, u):
        return -problem.reward(x, u, dynamics(x, u))

    command = jax.jit(
        lambda state, x: jm.command(config, state, x, dynamics, running_cost, None, True)
    )
    return command, state


def jax_mppi_call(problem, n, horizon):
    """``(i -> action, None)`` for jax-mppi's planning call, or ``(None, why)``."""
    try:
        command, state = _jax_mppi_controller(problem, n, horizon, 1.0, jax.random.key(0))
    except ImportError as error:
        return None, f"{error.name} not installed: pip install jax-mppi==0.3.0"
    x = problem.x0
    return (lambda i: command(state, x + 1e-9 * i)[0]), None


def pytorch_mppi_call(n, horizon):
    """``(i -> action, None)`` for pytorch-mppi's planning call, or ``(None, why)``."""
    try:
        import torch
        from pytorch_mppi import MPPI
    except ImportError as error:
        return None, f"{error.name} not installed: pip install pytorch-mppi==0.9.1"

    def dynamics(x, u):
        th, thdot = x[:, 0], x[:, 1]
        u = torch.clamp(u[:, 0], -2.0, 2.0)
        thdot = torch.clamp(thdot + (15.0 * torch.sin(th) + 3.0 * u) * 0.05, -8.0, 8.0)
        return torch.stack([th + thdot * 0.05, thdot], dim=1)

    def cost(x, u):
        th = (x[:, 0] + torch.pi) % (2 * torch.pi) - torch.pi
        return th**2 + 0.1 * x[:, 1] ** 2

    planner = MPPI(dynamics, cost, 2, torch.tensor([[4.0]]), num_samples=n, horizon=horizon,
                   lambda_=1.0, u_min=torch.tensor([-2.0]), u_max=torch.tensor([2.0]))  # fmt: skip
    x = torch.tensor([np.pi, 0.0])
    return (lambda i: planner.command(x).numpy()), None


# ----------------------------------------------------------------------------- swing-up


def swing_up_rows(episodes):
    import gymnasium

    print(f"\n## Pendulum-v1 swing-up from hanging in Gymnasium ({episodes} episodes, 200 steps)\n")
    print(
        "| planner | settings | upright | mean episode cost | ms per step (planning + env.step) |"
    )
    print("|---|---|---|---|---|")
    defaults = control.PLANNER_DEFAULTS["mppi"]
    rows = [
        ("pgm_rl mpc (mppi)", defaults, "ours"),
        ("pgm_rl mpc (mppi)", PYTORCH_SETTINGS, "ours"),
        ("jax-mppi 0.3.0", PYTORCH_SETTINGS, "jax_mppi"),
    ]
    for name, settings, which in rows:
        up, costs, seconds = 0, [], []
        for episode_index in range(episodes):
            env = gymnasium.make("Pendulum-v1")
            env.reset(seed=episode_index)
            env.unwrapped.state = np.array([np.pi, 0.0])
            key = jax.random.key(episode_index)
            try:
                angle, cost, per_step = _episode(which, env, key, settings)
            except ImportError as error:
                print(f"| {name} | - | skipped ({error.name} not installed) | - | - |")
                break
            finally:
                env.close()
            up += bool(np.all(np.abs(angle[-50:]) < 0.3))
            costs.append(cost)
            seconds.append(per_step)
        else:
            text = ", ".join(f"{k} {v}" for k, v in settings.items())
            print(f"| {name} | {text} | {up}/{episodes} | {np.mean(costs):.1f} "
                  f"| {1e3 * np.median(seconds):.2f} |", flush=True)  # fmt: skip


def _episode(which, env, key, settings):
    problem = control.pendulum()
    if which == "ours":
        start = time.perf_counter()
        episode = control.mpc(problem, 200, key, env=env, **settings)
        per_step = (time.perf_counter() - start) / len(episode.rewards)
        return np.asarray(episode.states)[:, 0], -float(np.sum(episode.rewards)), per_step
    command, state = _jax_mppi_controller(
        problem, settings["num_samples"], settings["horizon"], settings["beta"], key
    )
    read = jax.jit(problem.state_from_observation)
    obs = env.unwrapped._get_obs()
    angles, cost, start = [], 0.0, time.perf_counter()
    for _ in range(200):
        x = read(obs)
        angles.append(float(x[0]))
        u, state = command(state, x)
        obs, reward, _, _, _ = env.step(np.asarray(u, np.float32))
        cost -= float(reward)
    angles.append(float(read(obs)[0]))
    return np.array(angles), cost, (time.perf_counter() - start) / 200


# ----------------------------------------------------------------------------- accuracy


def accuracy_rows(runs):
    from arviz_stats.base import array_stats
    from numpyro.infer import MCMC, NUTS

    from pgm_rl.diagnostics.continuous import compare_to_gaussian, control_datatree

    problem = double_integrator()
    n = 10_000
    print(f"\n## Samplers against the exact LQ posterior (double integrator, {runs} runs)\n")
    print("| T | beta | exact log Z | MPPI: median ESS, runs ESS > 100 with \\|z\\| < 3 | "
          "MPPI x3 | SMC (median ESS, ancestors) | NUTS 4x1000: max \\|mean err\\| (MCSE), "
          "max \\|var ratio - 1\\|, max R-hat, s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for horizon in (10, 50):
        for beta in (0.1, 1.0, 10.0):
            exact = control.solve_lq(problem, horizon, beta)
            cells = [str(horizon), f"{beta:g}", f"{float(exact.log_z):.4f}"]
            samplers = (
                (control.mppi, {}),
                (control.mppi, {"iterations": 3}),
                (control.run_smc, {}),
            )
            for index, (sampler, extra) in enumerate(samplers):
                results = [
                    sampler(problem, horizon, beta, n, jax.random.key(seed), **extra)
                    for seed in range(runs)
                ]
                ess = np.array([float(r.ess) for r in results])
                z = np.array([(float(r.log_z) - float(exact.log_z)) / max(float(r.log_z_se),
                              1e-300) for r in results])  # fmt: skip
                good = ess > 100
                text = (f"{np.median(ess):.0f}, {int(np.sum(np.abs(z[good]) < 3))}/"
                        f"{int(good.sum())}")  # fmt: skip
                if index == 2:
                    ancestors = np.median([float(r.effective_ancestors) for r in results])
                    text += f", {ancestors:.0f}"
                cells.append(text)
            start = time.perf_counter()
            mcmc = MCMC(NUTS(control.control_model), num_warmup=1000, num_samples=1000,
                        num_chains=4, chain_method="sequential", progress_bar=False)  # fmt: skip
            mcmc.run(jax.random.key(0), problem, horizon, beta)
            seconds = time.perf_counter() - start
            dt = control_datatree(mcmc, problem)
            comparison = compare_to_gaussian(dt, exact)
            actions = np.moveaxis(np.asarray(dt["posterior"]["actions"]), (0, 1), (-2, -1))
            r_hat = float(np.max(array_stats.rhat(actions)))
            cells.append(
                f"{np.max(np.abs(comparison.mean_z)):.2f}, "
                f"{np.max(np.abs(comparison.variance_ratio - 1)):.3f}, {r_hat:.4f}, "
                f"{seconds:.0f}"
            )
            print("| " + " | ".join(cells) + " |", flush=True)


def main():
    args = parse_args()
    print(f"JAX {jax.__version__} on {jax.devices()[0].platform}, float64")
    if args.accuracy:
        accuracy_rows(args.runs)
        return
    rollout_rows([1000] if args.quick else [1000, 10_000], args.repeats)
    swing_up_rows(5 if args.quick else 20)


if __name__ == "__main__":
    main()
