"""Adapter benchmark: every kernel of ours through ``numpyro.infer.MCMC`` against its bare pure step.

For each registry kernel of pgm_rl (``pgm_rl.kernels.KERNELS``, NumPyro's built-ins excluded),
chain-steps/s of

- ``bare``: the kernel's pure ``step(key, state, beta)`` (the kernel contract,
  :mod:`pgm_rl.kernels.base`) in a ``jax.lax.scan``, vmapped over chains, jitted once, keeping
  every ``thinning``-th draw's actions (nothing else: no states, no rewards);
- ``MCMC``: the same kernel through ``numpyro.infer.MCMC`` (``chain_method`` from its record:
  ``"vectorized"``; ``thinning``), ``MCMC.run`` plus ``MCMC.get_samples()`` (actions, states,
  rewards) timed;

and their ratio (bare / MCMC: 1.00 means the adapter costs nothing). Then TrajectoryMH through
``MCMC`` against BlackJAX's ``irmh`` on the same target (prior proposals of the actions, log
density ``beta * R(actions)``; positions only, thinned alike) at several horizons, NumPyro's
``DiscreteHMCGibbs`` on the same model (chains under ``jax.vmap``, its record's
``chain_method``), and the speed check against the seed notebook: TrajectoryMH's chain-steps/s
at T = 100 over the torch loop's 84 steps/s (measured by the issue that introduced it; torch is
not a dependency, so the NumPy re-implementation's rate is printed too). Last, particle-steps/s
of ``pgm_rl.run_smc`` against BlackJAX's SMC with the same particles and resampling: both are
sequential in time (the intermediate targets are the prefixes of the trajectory, bootstrap
proposals from the uniform action prior, weights ``exp(beta r_t)``, multinomial resampling at
every step, the final particles' paths traced back), which is ``run_smc``'s algorithm; BlackJAX's
tempered SMC is another (a ladder of betas over whole trajectories, moved by MCMC), so it is
built from BlackJAX's generic ``smc.base.step``. Their log Z (mean and sd over the runs) must
agree; the exact one is printed too (bootstrap proposals at beta 100 miss the notebook grid's
goal, so both lie far below it).

Each variant is compiled by a first call; the timed calls are interleaved (variant A, B, C,
then again) and the best of ``--repeats`` is kept. A missing BlackJAX skips its rows (irmh and
SMC) with a message (``make bench-deps`` installs it).

    python benchmarks/bench_adapter.py            # T = 100, beta = 100, 4 chains, thinning 10
    python benchmarks/bench_adapter.py --quick    # fewer steps
"""

import argparse
import importlib.util
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from bench_kernels import time_notebook_loop
from jax import lax, random
from numpyro.infer import MCMC

import pgm_rl
from pgm_rl import dynamics
from pgm_rl.kernels import trajectory_mh
from pgm_rl.kernels.registry import KERNELS

OURS = tuple(name for name, record in KERNELS.items() if not record.builtin)
# Steps per chain (warm-up, kept-or-thinned) at T = 100 for a timed run of ~0.5 s or more;
# --quick divides them by 5. A step is one MCMC transition (a sweep for the Gibbs-type kernels).
STEPS = {
    "trajectory-mh": (5000, 50000),
    "stepwise-mh": (5000, 50000),
    "action-gibbs": (500, 5000),
    "suffix-mh": (200, 2000),
    "particle-gibbs": (50, 500),
    "guided-particle-gibbs": (50, 500),
    "replica-exchange": (50, 500),
    "discrete-hmc-gibbs": (100, 1000),
}
TORCH_NOTEBOOK_STEPS_PER_S = 84.0  # the seed notebook's torch loop at T = 100 (its issue)
# The NumPy re-implementation ran 931.5 steps/s in the run docs/benchmarks.md records (an unloaded
# machine), 11.1x the torch loop: the load-adjusted check divides by the NumPy rate of this run
# over 11.1, for a machine shared with other jobs.
NUMPY_OVER_TORCH = 931.5 / TORCH_NOTEBOOK_STEPS_PER_S
SPEED_CHECK = 6000.0


def pure_kernel(name, env, horizon, beta):
    """``(init(key) -> state, step(key, state) -> (state, info))``: the kernel's pure functions
    at ``beta`` (the contract's ``init`` / ``build_kernel``, as the adapter runs them)."""
    if name == "trajectory-mh":  # its adapter samples any model; the contract's step is this
        step = trajectory_mh.build_kernel(env, horizon)
        return (lambda key: trajectory_mh.init(key, env, horizon)), (
            lambda key, state: step(key, state, beta)
        )
    kernel = KERNELS[name].make(pgm_rl.trajectory_model)
    step = kernel.build_step_at(env, horizon, beta)
    return (lambda key: kernel.init_kernel_state(key, env, horizon, beta)), (
        lambda key, state: step(key, state, beta)
    )


def scan_runner(init, step, position, warmup, steps, thinning):
    """``keys (chains,) -> kept positions``: ``step`` in a ``lax.scan``, vmapped, jitted once;
    every ``thinning``-th state's ``position`` kept (the key handled as the adapter does)."""

    def one(carry, _):
        key, state = carry
        key, step_key = random.split(key)
        return (key, step(step_key, state)[0]), None

    def block(carry, _):
        carry, _ = lax.scan(one, carry, None, length=thinning)
        return carry, position(carry[1])

    def chain(key):
        key, init_key = random.split(key)
        carry = (key, init(init_key))
        carry, _ = lax.scan(one, carry, None, length=warmup)
        return lax.scan(block, carry, None, length=steps // thinning)[1]

    return jax.jit(jax.vmap(chain))


def bare_runner(name, env, horizon, beta, warmup, steps, thinning):
    init, step = pure_kernel(name, env, horizon, beta)
    return scan_runner(init, step, lambda state: state.actions, warmup, steps, thinning)


def mcmc_runner(name, env, horizon, beta, warmup, steps, args):
    """``keys -> samples``: ``MCMC.run`` and ``MCMC.get_samples()``, one MCMC object (its
    compiled loop is cached across calls)."""
    record = KERNELS[name]
    mcmc = MCMC(
        record.make(pgm_rl.trajectory_model),
        num_warmup=warmup,
        num_samples=steps,
        thinning=args.thinning,
        num_chains=args.chains,
        chain_method=record.chain_method,
        progress_bar=False,
    )

    def run(keys):
        mcmc.run(keys, env, horizon, beta)
        return mcmc.get_samples()

    return run


def blackjax_runner(env, horizon, beta, warmup, steps, thinning):
    """BlackJAX's ``irmh`` on the trajectory posterior over the actions: the prior (uniform
    actions) as the independent proposal, so the MH ratio is ``beta * (R' - R)``."""
    import blackjax

    def logdensity(actions):
        return beta * jnp.sum(pgm_rl.rollout(env, actions)[1])

    def proposal(key):
        return random.randint(key, (horizon,), 0, env.n_actions, jnp.int32)

    irmh = blackjax.irmh(logdensity, proposal)
    return scan_runner(
        lambda key: irmh.init(proposal(key)),
        irmh.step,
        lambda state: state.position,
        warmup,
        steps,
        thinning,
    )


# JAX's compilation events (tracing, lowering, XLA compilation): their time spans are taken out
# of a timed call. ``MCMC.run`` compiles its loop again on every call (its jitted loop body is a
# new object each time), so "net of compilation" needs this for the MCMC rows.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_SPANS = []


def _record_span(event, start, end, **kwargs):
    if event in COMPILE_EVENTS:
        _SPANS.append((start, end))


jax.monitoring.register_event_time_span_listener(_record_span)


def net_seconds(run, keys):
    """Wall time of ``run(keys)`` (to its results) less the union of the compilation spans in it
    (nested spans, an inner jit traced inside an outer one, counted once)."""
    _SPANS.clear()
    start = time.time()
    jax.block_until_ready(run(keys))
    elapsed = time.time() - start
    compiling, reached = 0.0, start
    for span_start, span_end in sorted(_SPANS):
        span_start = max(span_start, reached)
        if span_end > span_start:
            compiling += span_end - span_start
            reached = span_end
    return elapsed - compiling


def best_times(runners, keys, repeats):
    """Compile every runner with one call, then time them interleaved, net of compilation; the
    best of ``repeats``."""
    for run in runners.values():
        jax.block_until_ready(run(keys))
    best = dict.fromkeys(runners, float("inf"))
    for repeat in range(repeats):
        for label, run in runners.items():
            new_keys = random.split(random.key(repeat + 1), keys.shape[0])
            best[label] = min(best[label], net_seconds(run, new_keys))
    return best


def steps_of(name, horizon, args):
    warmup, steps = STEPS[name]
    scale = (5 if args.quick else 1) * max(horizon / 100, 0.2)
    warmup, steps = int(warmup / scale), int(steps / scale)
    return max(warmup, 1), max(steps // args.thinning, 1) * args.thinning


def adapter_table(env, args):
    print(
        f"\nadapter: notebook grid, T = {args.horizon}, beta = {args.beta}, {args.chains} chains, "
        f"thinning {args.thinning}; chain-steps/s, best of {args.repeats} interleaved"
    )
    header = f"{'kernel':24s} {'steps':>13s} {'bare':>11s} {'MCMC':>11s} {'bare/MCMC':>10s}"
    print(header)
    print("-" * len(header))
    keys = random.split(random.key(0), args.chains)
    rates = {}
    for name in args.kernels:
        warmup, steps = steps_of(name, args.horizon, args)
        runners = {
            "bare": bare_runner(name, env, args.horizon, args.beta, warmup, steps, args.thinning),
            "MCMC": mcmc_runner(name, env, args.horizon, args.beta, warmup, steps, args),
        }
        best = best_times(runners, keys, args.repeats)
        total = args.chains * (warmup + steps)
        bare, through = total / best["bare"], total / best["MCMC"]
        rates[name] = through
        print(
            f"{name:24s} {f'{warmup}+{steps}':>13s} {bare:11.4g} {through:11.4g} "
            f"{bare / through:10.3f}"
        )
    if "discrete-hmc-gibbs" in args.builtins:
        warmup, steps = steps_of("discrete-hmc-gibbs", args.horizon, args)
        run = mcmc_runner("discrete-hmc-gibbs", env, args.horizon, args.beta, warmup, steps, args)
        best = best_times({"MCMC": run}, keys, args.repeats)
        through = args.chains * (warmup + steps) / best["MCMC"]
        print(
            f"{'discrete-hmc-gibbs':24s} {f'{warmup}+{steps}':>13s} {'-':>11s} {through:11.4g}"
            f" {'-':>10s}   (NumPyro's, chains under jax.vmap; one step updates one site)"
        )
    return rates


def smc_runner(env, horizon, beta, num_particles):
    """``keys -> log Z per key``: one ``pgm_rl.run_smc`` per key (bootstrap proposals, resampling
    multinomially after every step but the last where the weights are not all equal:
    ``ess_threshold=1``; BlackJAX resamples before every move, the first on equal weights), the
    public call with its checks and its host-side report, as a user runs it."""

    def run(keys):
        with warnings.catch_warnings():  # a saturated genealogy at beta 100 is expected here
            warnings.simplefilter("ignore")
            return jnp.stack(
                [
                    pgm_rl.run_smc(key, env, horizon, beta, num_particles, ess_threshold=1.0).log_z
                    for key in keys
                ]
            )

    return run


def blackjax_smc_runner(env, horizon, beta, num_particles):
    """``keys -> log Z per key``: the same sequential-in-time SMC from BlackJAX's generic step
    (``blackjax.smc.base.step``, multinomial resampling before every move): a particle is its
    current state, moved by one step of the uniform action prior and the dynamics
    (``update_fn``), weighted by ``beta * r`` of that step (``weight_fn``); the paths of the
    final particles traced back through the recorded ancestors, as ``run_smc`` returns them."""
    from blackjax.smc import base as smc_base
    from blackjax.smc import resampling

    dtype = jnp.asarray(env.outcome_rewards).dtype
    no_outcome = jnp.zeros(1, jnp.int32)

    def move(key, particle, _):
        action_key, outcome_key = random.split(key)
        action = random.randint(action_key, (1,), 0, env.n_actions, jnp.int32)
        noise = 1.0 - random.uniform(outcome_key, (1,), dtype)  # in (0, 1]
        path, rewards, _, _ = dynamics.follow(
            env, particle["state"], action, no_outcome, noise, jnp.ones(1, bool)
        )
        return {"state": path[1], "action": action[0], "reward": rewards[0]}, None

    def update_fn(keys, particles, params):
        return jax.vmap(move, in_axes=(0, 0, None))(keys, particles, params)

    def weight_fn(particles):
        return beta * particles["reward"]

    @jax.jit
    def one(key):
        start_key, key = random.split(key)
        starts = dynamics.draw_start(start_key, env, (num_particles,))
        zeros = jnp.zeros(num_particles, dtype)
        particles = {"state": starts, "action": starts * 0, "reward": zeros}

        def body(state, step_key):
            state, info = smc_base.step(
                step_key, state, update_fn, weight_fn, resampling.multinomial
            )
            return state, (info.ancestors, state.particles, info.log_likelihood_increment)

        state, (ancestors, steps, increments) = lax.scan(
            body, smc_base.init(particles, None), random.split(key, horizon)
        )

        def trace_back(index, step_arrays):
            step_ancestors, step_particles = step_arrays
            return step_ancestors[index], jax.tree.map(lambda x: x[index], step_particles)

        first, path = lax.scan(
            trace_back, jnp.arange(num_particles), (ancestors, steps), reverse=True
        )
        states = jnp.concatenate([starts[first][None], path["state"]]).T
        return (states, path["reward"].T, path["action"].T, state.weights), jnp.sum(increments)

    return lambda keys: jnp.stack([one(key)[1] for key in keys])


def smc_table(env, args):
    """``run_smc`` against BlackJAX's SMC: particle-steps/s and log Z (mean and sd over keys)."""
    if importlib.util.find_spec("blackjax") is None:
        print(
            "\nBlackJAX is not installed: the SMC row is skipped "
            "(`make bench-deps` or `pip install blackjax` adds it)"
        )
        return
    import blackjax

    num_particles, runs = args.smc_particles, 4 if args.quick else 16
    print(
        f"\nrun_smc against BlackJAX {blackjax.__version__} SMC (sequential in time, bootstrap "
        f"proposals, multinomial resampling at every step), notebook grid, T = {args.horizon}, "
        f"beta = {args.beta}, {num_particles} particles, {runs} runs per call; "
        f"particle-steps/s, best of {args.repeats} interleaved"
    )
    header = f"{'':10s} {'run_smc':>11s} {'BlackJAX':>11s} {'ours/theirs':>12s}"
    print(header)
    print("-" * len(header))
    runners = {
        "ours": smc_runner(env, args.horizon, args.beta, num_particles),
        "theirs": blackjax_smc_runner(env, args.horizon, args.beta, num_particles),
    }
    keys = random.split(random.key(0), runs)
    best = best_times(runners, keys, args.repeats)
    total = runs * num_particles * args.horizon
    ours, theirs = total / best["ours"], total / best["theirs"]
    print(f"{'rate':10s} {ours:11.4g} {theirs:11.4g} {ours / theirs:12.3f}")
    log_z = {label: np.asarray(run(keys)) for label, run in runners.items()}
    exact = pgm_rl.solve(env, args.horizon, args.beta).log_z
    ours_z, theirs_z = log_z["ours"], log_z["theirs"]
    se = np.sqrt((ours_z.var(ddof=1) + theirs_z.var(ddof=1)) / runs)
    print(
        f"log Z over {runs} runs: run_smc {ours_z.mean():.6g} (sd {ours_z.std(ddof=1):.3g}), "
        f"BlackJAX {theirs_z.mean():.6g} (sd {theirs_z.std(ddof=1):.3g}), exact {exact:.6g}; "
        f"difference {ours_z.mean() - theirs_z.mean():.3g} = "
        f"{(ours_z.mean() - theirs_z.mean()) / se:.2f} standard errors"
    )


def blackjax_table(env, args):
    if not args.blackjax_horizons:
        return {}
    if importlib.util.find_spec("blackjax") is None:
        print(
            "\nBlackJAX is not installed: the irmh rows are skipped "
            "(`make bench-deps` or `pip install blackjax` adds it)"
        )
        return {}
    import blackjax

    print(
        f"\nTrajectoryMH through MCMC against BlackJAX {blackjax.__version__} irmh, notebook grid, "
        f"beta = {args.beta}, {args.chains} chains, thinning {args.thinning}; chain-steps/s, "
        f"best of {args.repeats} interleaved"
    )
    header = f"{'T':>6s} {'steps':>13s} {'TrajectoryMH':>13s} {'irmh':>11s} {'ours/irmh':>10s}"
    print(header)
    print("-" * len(header))
    keys = random.split(random.key(0), args.chains)
    rates = {}
    for horizon in args.blackjax_horizons:
        warmup, steps = steps_of("trajectory-mh", horizon, args)
        runners = {
            "ours": mcmc_runner("trajectory-mh", env, horizon, args.beta, warmup, steps, args),
            "irmh": blackjax_runner(env, horizon, args.beta, warmup, steps, args.thinning),
        }
        best = best_times(runners, keys, args.repeats)
        total = args.chains * (warmup + steps)
        ours, theirs = total / best["ours"], total / best["irmh"]
        rates[horizon] = ours
        print(
            f"{horizon:6d} {f'{warmup}+{steps}':>13s} {ours:13.4g} {theirs:11.4g} "
            f"{ours / theirs:10.3f}"
        )
    return rates


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--horizon", type=int, default=100)
    parser.add_argument("--beta", type=float, default=100.0)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--thinning", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kernels", nargs="+", default=list(OURS), choices=list(OURS))
    parser.add_argument(
        "--builtins", nargs="*", default=["discrete-hmc-gibbs"], choices=["discrete-hmc-gibbs"]
    )
    parser.add_argument("--blackjax-horizons", type=int, nargs="*", default=[20, 100, 1000])
    parser.add_argument("--smc-particles", type=int, default=1024)
    parser.add_argument("--no-smc", action="store_true", help="skip the run_smc row")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    env = pgm_rl.GridWorld.notebook()
    rates = adapter_table(env, args)
    blackjax_rates = blackjax_table(env, args)
    if not args.no_smc:
        smc_table(env, args)
    if "trajectory-mh" in rates and args.horizon == 100:
        numpy_rate = time_notebook_loop(100, 30 if args.quick else 100, 0)
        # both tables time TrajectoryMH through MCMC at T = 100 (when the horizon is 100)
        rate = max(rates["trajectory-mh"], blackjax_rates.get(100, 0.0))
        ratio = rate / TORCH_NOTEBOOK_STEPS_PER_S
        adjusted = rate / (numpy_rate / NUMPY_OVER_TORCH)
        print(
            f"\nspeed check against the seed notebook (T = 100): TrajectoryMH through MCMC "
            f"{rate:.4g} chain-steps/s = {ratio:,.0f}x the torch loop's "
            f"{TORCH_NOTEBOOK_STEPS_PER_S:g} steps/s; {rate / numpy_rate:,.0f}x its NumPy "
            f"re-implementation's {numpy_rate:.1f} steps/s measured in this run, so "
            f"{adjusted:,.0f}x the torch loop adjusted for load (NumPy / torch = "
            f"{NUMPY_OVER_TORCH:.1f} unloaded); "
            + ("above" if max(ratio, adjusted) > SPEED_CHECK else "BELOW")
            + f" {SPEED_CHECK:,.0f}x"
        )


if __name__ == "__main__":
    main()
