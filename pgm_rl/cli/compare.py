"""``pgm-rl compare``: several kernels and exact iid sampling on one problem, one table."""

import os

from pgm_rl import compare, diagnostics
from pgm_rl.cli.common import EXIT_PROBLEMS
from pgm_rl.cli.outputs import Outputs
from pgm_rl.cli.problem import build_env, is_gymnasium, problem_line, setup_jax
from pgm_rl.cli.runs import budget, check_diagnostics_take, print_problems
from pgm_rl.kernels.registry import KERNELS


def run(args):
    """Run ``pgm-rl compare`` with the parsed ``args``; the exit code."""
    env = build_env(args)
    names = args.kernels
    if names is None:
        names = list(KERNELS)
    occupancy = {name: f"occupancy_{name.replace(' ', '_')}.png" for name in [*names, "exact iid"]}
    if is_gymnasium(env):  # the occupancy pictures draw a GridWorld's reward grid
        occupancy = {}
    pictures = [] if args.plots is None else ["tv.png", *occupancy.values()]
    with Outputs(args, pictures) as outputs:
        return _compare(args, env, names, occupancy, outputs)


def _compare(args, env, names, occupancy, outputs):
    setup_jax()
    check_diagnostics_take(env)
    print(f"compare: {problem_line(env, args)}", flush=True)
    rows, trees, comparisons = compare.compare_kernels(
        names,
        env,
        args.horizon,
        args.beta,
        **budget(args),
        progress_bar=args.progress,
        skip_missing=args.kernels is None,
        log=lambda line: print(line, flush=True),
    )
    print(compare.format_table(rows))
    found = sum(
        print_problems(diagnostics.problems(dt, comparisons[name]), prefix=f"{name}: ")
        for name, dt in trees.items()
        if name != "exact iid"  # the reference the others are judged against
    )
    drawn = []
    if args.plots is not None:
        import matplotlib.pyplot as plt  # (slow to import: only with --plots)

        from pgm_rl import plots

        with outputs.drawing() as folder:
            plots.plot_tv(comparisons, save=os.path.join(folder, "tv.png"))
            plt.close("all")
            drawn.append("tv.png")
            for name, dt in trees.items():
                if name not in occupancy:
                    continue
                plots.plot_occupancy(dt, save=os.path.join(folder, occupancy[name]))
                plt.close("all")
                drawn.append(occupancy[name])
    outputs.commit(pictures=drawn)
    return EXIT_PROBLEMS if args.strict and found else 0
