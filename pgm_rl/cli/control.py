"""``pgm-rl control``: continuous control on the double integrator or the pendulum.

Modes: ``exact`` (the Gaussian posterior of the linear-quadratic problem), ``sample`` (a NumPyro
kernel on :func:`pgm_rl.control.control_model`), ``mppi`` and ``smc`` (log Z with its standard
error), ``mpc`` (an episode of model-predictive control, in the model or in Gymnasium).
"""

import os

import jax
import numpy as np

from pgm_rl.cli.common import (
    CONTROL_BAND_FILE,
    CONTROL_EPISODE_FILE,
    EXIT_PROBLEMS,
    CommandError,
)
from pgm_rl.cli.outputs import Outputs
from pgm_rl.cli.problem import setup_jax

# The pendulum's success (the test): |angle| < UPRIGHT over the last SETTLE steps.
UPRIGHT = 0.3
SETTLE = 50
R_HAT_LIMIT = 1.01


def double_integrator(dt=0.1, x0=(1.0, 0.0)):
    """The linear-quadratic double integrator of ``--problem lq``: position and velocity,
    ``x' = A x + B u`` with step ``dt``, reward ``-1/2 (|x'|^2 + 0.1 u^2)``, from ``x0``."""
    from pgm_rl.control import LinearQuadratic

    A = np.array([[1.0, dt], [0.0, 1.0]])
    B = np.array([[0.5 * dt * dt], [dt]])
    return LinearQuadratic(A, B, np.eye(2), 0.1 * np.eye(1), x0)


def run(args):
    """Run ``pgm-rl control`` with the parsed ``args``; the exit code."""
    if args.mode == "exact" and args.problem != "lq":
        raise ValueError(
            "--mode exact needs --problem lq: the posterior is Gaussian (exact) only for "
            "linear-quadratic problems; use --mode sample, mppi or smc for the pendulum"
        )
    if args.gym and not (args.mode == "mpc" and args.problem == "pendulum"):
        raise ValueError("--gym is for --mode mpc --problem pendulum (Gymnasium's Pendulum-v1)")
    if args.samples is not None and args.mode == "exact":
        raise ValueError("--samples is not used by --mode exact")
    picture = {"exact": None, "mpc": CONTROL_EPISODE_FILE}.get(args.mode, CONTROL_BAND_FILE)
    if picture is None and args.plots is not None:
        raise ValueError("--plots: --mode exact draws no picture")
    with Outputs(args, [] if args.plots is None else [picture]) as outputs:
        setup_jax()
        from pgm_rl import control

        problem = double_integrator() if args.problem == "lq" else control.pendulum()
        name = "double integrator (LQ)" if args.problem == "lq" else "Pendulum-v1 from hanging"
        print(f"control: {name}, mode {args.mode}, horizon {args.horizon}, beta {args.beta:g}")
        exact = None
        if args.problem == "lq" and args.mode != "mpc":
            exact = control.solve_lq(problem, args.horizon, args.beta)
            print(f"exact log Z = {float(exact.log_z):.8g}")
        key = jax.random.key(args.seed)
        found, draw = _MODES[args.mode](args, control, problem, exact, key)
        drawn = []
        if args.plots is not None:
            import matplotlib.pyplot as plt  # (slow to import: only with --plots)

            with outputs.drawing() as folder:
                draw(os.path.join(folder, picture))
                plt.close("all")
                drawn.append(picture)
        outputs.commit(pictures=drawn)
    return EXIT_PROBLEMS if args.strict and found else 0


def _exact(args, control, problem, exact, key):
    policy = control.soft_bellman_lq(problem, args.horizon, args.beta)
    first = np.asarray(exact.mean)[0]
    sd = np.sqrt(np.diag(np.asarray(exact.action_cov)[0]))
    print(f"ELBO* (maximum-entropy LQR) = {float(policy.elbo):.8g} (equals log Z: deterministic)")
    print(f"first action: posterior mean {_vector(first)}, sd {_vector(sd)}")
    return 0, None


def _sample(args, control, problem, exact, key):
    from arviz_stats.base import array_stats
    from numpyro.infer import HMC, MCMC, NUTS, SA, BarkerMH

    from pgm_rl.diagnostics.continuous import compare_to_gaussian, control_datatree

    kernel = {"nuts": NUTS, "hmc": HMC, "barker": BarkerMH, "sa": SA}[args.kernel]
    samples = 1000 if args.samples is None else args.samples
    mcmc = MCMC(kernel(control.control_model), num_warmup=args.warmup, num_samples=samples,
                num_chains=args.chains, chain_method="vectorized",
                progress_bar=False)  # fmt: skip
    mcmc.run(key, problem, args.horizon, args.beta)
    dt = control_datatree(mcmc, problem)
    actions = np.moveaxis(np.asarray(dt["posterior"]["actions"]), (0, 1), (-2, -1))
    r_hat = float(np.max(array_stats.rhat(actions))) if args.chains > 1 else float("nan")
    ess = float(np.min(array_stats.ess(actions, method="bulk")))
    divergences = int(np.asarray(dt["sample_stats"]["diverging"]).sum()) if (
        "sample_stats" in dt.children and "diverging" in dt["sample_stats"]) else 0  # fmt: skip
    print(f"{args.kernel}: {args.chains} chains x {samples} draws: max R-hat {r_hat:.4f}, min bulk "
          f"ESS {ess:.0f}, divergences {divergences}")  # fmt: skip
    found = 0
    if r_hat > R_HAT_LIMIT:
        print(f"warning: max R-hat {r_hat:.4f} > {R_HAT_LIMIT}: the chains disagree")
        found += 1
    if exact is not None:
        comparison = compare_to_gaussian(dt, exact)
        print(f"vs exact: {comparison.lines()[0]}")
        for line in comparison.lines()[1:]:
            print(f"warning: {line}")
        found += comparison.disagrees
    return found, _band(dt, exact)


def _weighted(args, control, problem, exact, key):
    from pgm_rl.diagnostics.continuous import control_datatree

    samples = 10000 if args.samples is None else args.samples
    if args.mode == "mppi":
        result = control.mppi(problem, args.horizon, args.beta, samples, key,
                              iterations=args.iterations)  # fmt: skip
    else:
        if args.iterations != 1:
            raise ValueError("--iterations is for --mode mppi and mpc")
        result = control.run_smc(problem, args.horizon, args.beta, samples, key)
    log_z, se, ess = float(result.log_z), float(result.log_z_se), float(result.ess)
    line = f"{args.mode}: {samples} samples: log Z = {log_z:.8g} ± {se:.3g}, ESS {ess:.1f}"
    found = 0
    if exact is not None:
        line += f" (z = {(log_z - float(exact.log_z)) / se:+.2f})" if se > 0 else ""
    print(line)
    if ess < 100:
        print(
            f"warning: ESS {ess:.1f} < 100: the weights sit on a few samples, so log Z and its "
            "standard error are unreliable; use more samples or a smaller --beta "
            "(pgm_rl.control.choose_beta finds the largest beta this budget supports)"
        )
        found += 1
    if args.mode == "smc" and result.saturated:
        print(
            f"warning: only {float(result.effective_ancestors):.1f} initial particles "
            "effectively survive (< 20): the standard error of log Z is unreliable; use more "
            "--samples or a smaller --beta"
        )
        found += 1
    print(f"first action (weighted mean): {_vector(np.asarray(result.actions)[0])}")
    dt = control_datatree(result, problem, beta=args.beta, sampler=args.mode)
    return found, _band(dt, exact)


def _mpc(args, control, problem, exact, key):
    options = {"horizon": args.horizon, "beta": args.beta, "iterations": args.iterations}
    if args.samples is not None:
        options["num_samples"] = args.samples
    env = _pendulum_env(args.seed) if args.gym else None
    try:
        episode = control.mpc(problem, args.steps, key, env=env, **options)
    finally:
        if env is not None:
            env.close()
    cost = -float(np.sum(episode.rewards))
    where = "in Gymnasium's Pendulum-v1" if args.gym else "in the model"
    print(f"mpc {where}: {len(episode.rewards)} steps, episode cost {cost:.2f}")
    found = 0
    if args.problem == "pendulum":
        angle = (np.asarray(episode.states)[:, 0] + np.pi) % (2 * np.pi) - np.pi
        tail = np.abs(angle[-SETTLE:])
        up = len(angle) > SETTLE and bool(np.all(tail < UPRIGHT))
        print(f"upright (|angle| < {UPRIGHT} for the last {SETTLE} steps): {'yes' if up else 'no'}"
              f" (largest |angle| there {tail.max():.3f})")  # fmt: skip
        if not up:
            print("warning: the pendulum did not stay up")
            found += 1
    else:
        print(f"final state {_vector(np.asarray(episode.states)[-1])}")

    def draw(path):
        from pgm_rl.plots.control import plot_episode

        names = ["angle", "velocity"] if args.problem == "pendulum" else ["position", "velocity"]
        upright = UPRIGHT if args.problem == "pendulum" else None
        bound = 2.0 if args.problem == "pendulum" else None  # Pendulum-v1's max torque
        plot_episode(episode, names=names, upright=upright, save=path, action_bound=bound)

    return found, draw


def _pendulum_env(seed):
    try:
        import gymnasium
    except ImportError:
        raise CommandError(
            "--gym needs Gymnasium, the optional extra pgm_rl[gymnasium]: pip install "
            "'pgm_rl[gymnasium]'"
        ) from None
    env = gymnasium.make("Pendulum-v1")
    env.reset(seed=seed)
    env.unwrapped.state = np.array([np.pi, 0.0])
    return env


def _band(dt, exact):
    def draw(path):
        from pgm_rl.plots.control import plot_action_band

        plot_action_band(dt, exact, save=path)

    return draw


def _vector(values):
    return "[" + ", ".join(f"{value:.4g}" for value in np.ravel(values)) + "]"


_MODES = {"exact": _exact, "sample": _sample, "mppi": _weighted, "smc": _weighted, "mpc": _mpc}
