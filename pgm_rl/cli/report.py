"""``pgm-rl report``: re-open a run saved by ``sample --out``; its summary, comparison to
exact, problems and (with ``--plots``) its pictures redrawn."""

from pgm_rl import diagnostics, io
from pgm_rl.cli.common import EXIT_PROBLEMS
from pgm_rl.cli.outputs import Outputs, draw_plots, run_digest
from pgm_rl.cli.problem import setup_jax
from pgm_rl.cli.runs import print_comparison, print_problems, print_summary


def run(args):
    """Run ``pgm-rl report`` with the parsed ``args``; the exit code."""
    with Outputs(args, redraw=True) as outputs:
        return _report(args, outputs)


def _report(args, outputs):
    setup_jax()
    dt = io.load(args.file)
    other = _other_result(dt)
    if other is not None:
        raise ValueError(f"{args.file!r} is {other}")
    diagnostics.check_run(dt, source=repr(args.file))
    outputs.same_run(run_digest(dt))
    print(
        f"{dt.attrs.get('kernel', dt.attrs.get('sampler', '?'))}: T={dt.attrs['horizon']}, "
        f"beta={dt.attrs['beta']:g}, {dt['posterior'].sizes['chain']} chains x "
        f"{dt['posterior'].sizes['draw']} draws"
    )
    print_summary(dt)
    comparison = None
    if "exact" in dt.children or "reference" in dt.children:
        comparison = diagnostics.compare_to_reference(dt)
        print_comparison(comparison)
    found = print_problems(diagnostics.problems(dt, comparison))
    outputs.commit(pictures=draw_plots(dt, outputs))
    return EXIT_PROBLEMS if args.strict and found else 0


def _other_result(dt):
    """What a tree written by ``fit --out`` or ``irl --out`` is (a sentence), else None."""
    if "log_policy" in dt.data_vars:
        return (
            "a 'pgm-rl fit' result (a variational policy), not an MCMC run: give it to 'pgm-rl "
            "smc --proposal' or 'pgm-rl sample --proposal'"
        )
    if "posterior" in dt.children and "theta" in dt["posterior"].data_vars:
        return (
            "a 'pgm-rl irl' result (the posterior of the reward weights theta), not an MCMC run "
            "of trajectories: read it with pgm_rl.io.load and arviz_stats.summary"
        )
    return None
