"""``pgm-rl sample``: run one kernel, print its diagnostics and its distance to exact inference
(``--no-reference``: without solving it, for very large problems)."""

from pgm_rl import compare, diagnostics, exact
from pgm_rl._checks import check_draws_fit, trajectory_draw_bytes
from pgm_rl.cli import devices, options
from pgm_rl.cli.common import EXIT_PROBLEMS
from pgm_rl.cli.machine import (
    draw_satisfaction,
    machine_pictures,
    problem_text,
    satisfaction_line,
    with_machine,
)
from pgm_rl.cli.outputs import Outputs, draw_plots
from pgm_rl.cli.problem import build_env, setup_jax
from pgm_rl.cli.proposal import load_proposal
from pgm_rl.cli.runs import (
    budget,
    check_diagnostics_take,
    print_comparison,
    print_problems,
    print_summary,
)
from pgm_rl.kernels import chains_mesh, shard_chains
from pgm_rl.kernels.registry import parse_kernel_args
from pgm_rl.worlds import RewardMachineMDP


def run(args):
    """Run ``pgm-rl sample`` with the parsed ``args``; the exit code."""
    kernel_params = parse_kernel_args(args.kernel, args.kernel_arg)
    if args.proposal is not None and args.kernel not in options.PROPOSAL_KERNELS:
        raise ValueError(
            "--proposal is for the kernels that take a proposal "
            f"({', '.join(options.PROPOSAL_KERNELS)}); --kernel {args.kernel} takes none"
        )
    place = devices.setup(args)
    if not place.leader:  # process 0 alone prints and writes
        args.out = args.plots = None
        args.progress = False
    env = with_machine(args, build_env(args))
    with place.printing(), Outputs(args, pictures=machine_pictures(args, env)) as outputs:
        return _sample(args, env, kernel_params, outputs, place)


def _sample(args, env, kernel_params, outputs, place):
    setup_jax()
    kept, diagnosed = (trajectory_draw_bytes(args.horizon, n) for n in (None, env.n_states))
    per_draw = 2 * kept + diagnosed  # the run (two copies), its tree and its diagnostics
    check_draws_fit(args.chains, args.samples, per_draw, "the run, its tree and diagnostics")
    if args.proposal is not None:
        kernel_params["proposal"], about = load_proposal(args.proposal, env, args.horizon)
    posterior = exact.solve(env, args.horizon, args.beta) if args.reference else None
    check_diagnostics_take(env, posterior)
    print(f"{args.kernel}: {problem_text(env, args)}", flush=True)
    if args.kernel_arg:
        print(f"kernel arguments: {', '.join(args.kernel_arg)}", flush=True)
    if args.proposal is not None:
        print(f"proposal: {about}", flush=True)
    mcmc, seconds = compare.run_kernel(
        args.kernel,
        env,
        args.horizon,
        args.beta,
        **budget(args),
        kernel_params=kernel_params,
        progress_bar=args.progress,
        log=lambda line: print(line, flush=True),
        chain_method=None if place.devices is None else shard_chains(chains_mesh(place.devices)),
    )
    if place.num_processes > 1:
        devices.gather_run(mcmc)
    dt = diagnostics.to_datatree(mcmc, env, posterior, reference=args.reference)
    dt.attrs.update(kernel=args.kernel, wall_seconds=seconds)
    if args.kernel_arg:
        dt.attrs["kernel_args"] = " ".join(args.kernel_arg)
    if args.proposal is not None:
        dt.attrs["proposal"] = str(args.proposal)
    print(f"wall time {seconds:.2f} s (JIT compilation included)")
    print_summary(dt, env)
    comparison = None
    if args.reference:
        comparison = diagnostics.compare_to_reference(dt)
        print_comparison(comparison)
    pictures = draw_plots(dt, outputs)
    if isinstance(env, RewardMachineMDP) and posterior is not None:  # --machine
        print(satisfaction_line(env, posterior, diagnostics.trajectory_states(dt).values))
        pictures += draw_satisfaction(env, posterior, dt, outputs)
    found = print_problems(diagnostics.problems(dt, comparison, reference=args.reference))
    outputs.commit(dt, pictures)
    return EXIT_PROBLEMS if args.strict and found else 0
