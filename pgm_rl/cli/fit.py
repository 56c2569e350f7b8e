"""``pgm-rl fit``: fit a variational policy (maximise its ELBO), print the trace, save it."""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from pgm_rl import exact, variational
from pgm_rl._checks import check_fit_memory
from pgm_rl.cli.common import ELBO_TRACE_FILE, POLICY_FILE
from pgm_rl.cli.outputs import Outputs
from pgm_rl.cli.problem import build_env, env_text, on_grid_map, problem_line, setup_jax
from pgm_rl.cli.proposal import env_fingerprint
from pgm_rl.worlds import ACTION_NAMES, describe_randomness


def run(args):
    """Run ``pgm-rl fit`` with the parsed ``args``; the exit code."""
    env = build_env(args)
    pictures = []
    if args.plots is not None:
        pictures = [ELBO_TRACE_FILE, *([POLICY_FILE] if on_grid_map(env) else [])]
    with Outputs(args, pictures) as outputs:
        return _fit(args, env, outputs)


def _fit_exact_with_progress(env, args, steps):
    """``fit_policy(objective="exact")`` in up to 20 jitted chunks, with a tqdm bar on stderr."""
    guide = variational.policy_guide(env, args.horizon, args.parametrization)
    chunk = -(-steps // 20)
    sizes = [chunk] * (steps // chunk) + ([steps % chunk] if steps % chunk else [])
    runners = {}
    params = state = None
    traces = []
    with tqdm(total=steps, desc="fit (exact ELBO)", disable=not args.progress) as bar:
        for size in sizes:
            if size not in runners:
                runners[size] = variational.exact_runner(guide, args.beta, size)
            run, init_params, init_state = runners[size]
            if params is None:
                params, state = init_params, init_state
            (params, state), trace = run(params, state)
            traces.append(trace)
            bar.update(size)
            bar.set_postfix(elbo=f"{float(trace[-1]):.6g}")
    trace = jnp.concatenate(traces)
    variational._check_trace(trace, "exact")
    return variational._finish(guide, params, trace, state, "exact", float(args.beta))


def _fit(args, env, outputs):
    setup_jax()
    steps = args.steps if args.steps is not None else (100 if args.objective == "exact" else 1000)
    check_fit_memory(env, args.horizon, steps, args.objective)
    print(
        f"fit: {problem_line(env, args)}; objective {args.objective}, {args.parametrization} "
        f"policy, {steps} steps",
        flush=True,
    )
    start = time.perf_counter()
    if args.objective == "exact":
        fitted = _fit_exact_with_progress(env, args, steps)
    else:
        fitted = variational.fit_policy(
            env,
            args.horizon,
            args.beta,
            parametrization=args.parametrization,
            objective="score",
            num_steps=steps,
            key=jax.random.key(args.seed),
            progress_bar=args.progress,
        )
    seconds = time.perf_counter() - start
    trace = np.asarray(fitted.elbo_trace, np.float64)
    label = "ELBO" if args.objective == "exact" else "ELBO estimate (one SVI step's)"
    print(f"{label} trace ({steps} steps, {seconds:.2f} s with JIT compilation):")
    for index in sorted(set(np.linspace(0, steps - 1, min(steps, 10)).round().astype(int))):
        print(f"  step {index + 1:>{len(str(steps))}}  {trace[index]:.10g}")
    print(f"final ELBO (exact evaluation of the policy) = {fitted.elbo:.10g}")
    log_z = None
    if fitted.kl_to_posterior is not None:
        log_z = fitted.elbo + fitted.kl_to_posterior
        print(
            f"log Z = {log_z:.10g}; KL(q || exact posterior) = log Z - ELBO = "
            f"{fitted.kl_to_posterior:.4g}"
        )
    elbo_star = None
    randomness = describe_randomness(env)
    if randomness:  # else ELBO* = log Z: the soft-Bellman policy is the posterior
        elbo_star = float(exact.soft_bellman(env, args.horizon, args.beta).elbo)
        print(
            f"ELBO* (soft-Bellman, the best policy) = {elbo_star:.10g}; ELBO* - ELBO = "
            f"{elbo_star - fitted.elbo:.4g} ({randomness}: no policy reaches log Z)"
        )
    horizon, n_states, n_actions = np.shape(fitted.log_policy)
    attrs = {
        "kind": "pgm_rl variational policy (pgm_rl.variational.fit_policy)",
        "horizon": int(horizon),
        "beta": float(args.beta),
        "objective": args.objective,
        "parametrization": args.parametrization,
        "steps": int(steps),
        "seed": int(args.seed),
        "elbo": float(fitted.elbo),
        "env": env_text(env, args),
        "env_fingerprint": env_fingerprint(env),
        "n_states": int(n_states),
        "n_actions": int(n_actions),
    }
    if log_z is not None:
        attrs.update(log_z=float(log_z), kl_to_posterior=float(fitted.kl_to_posterior))
    if elbo_star is not None:
        attrs["elbo_star"] = elbo_star
    data = xr.Dataset(
        {
            "log_policy": (("time", "state", "action"), np.asarray(fitted.log_policy, np.float64)),
            "elbo_trace": (("step",), trace),
        },
        coords={
            "time": np.arange(horizon),
            "state": np.arange(n_states),
            "action": list(getattr(env, "action_names", None) or _grid_action_names(n_actions)),
            "step": np.arange(1, steps + 1),
        },
        attrs=attrs,
    )
    dt = xr.DataTree(dataset=data)
    drawn = []
    if args.plots is not None:
        import matplotlib.pyplot as plt  # (slow to import: only with --plots)

        from pgm_rl import plots

        with outputs.drawing() as folder:
            plots.plot_elbo_trace(
                trace, log_z=log_z, elbo_star=elbo_star, save=os.path.join(folder, ELBO_TRACE_FILE)
            )
            plt.close("all")
            drawn.append(ELBO_TRACE_FILE)
            if on_grid_map(env):
                plots.plot_policy(
                    env, fitted.log_policy, time=0, save=os.path.join(folder, POLICY_FILE)
                )
                plt.close("all")
                drawn.append(POLICY_FILE)
    outputs.commit(dt, drawn)
    return 0


def _grid_action_names(n_actions):
    if n_actions == len(ACTION_NAMES):
        return ACTION_NAMES
    return tuple(f"action {a}" for a in range(n_actions))
