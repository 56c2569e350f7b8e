"""The ``pgm-rl`` command: exact answers, sampling, kernel comparisons, reports and SMC.

``pgm-rl exact|sample|compare|report|smc``, each with ``--help``. Bad arguments and library
errors (``ValueError``, ``TypeError``, ``OSError`` such as ``FileExistsError``) print one line
on stderr and exit with code 2; outputs that exist are refused (``--overwrite`` replaces them)
before any work is done, so they stay byte-for-byte untouched.
"""

import argparse
import math
import os
import sys
import time
import warnings

import jax
import numpy as np

from pgm_rl.envs import ACTION_NAMES, GridWorld
from pgm_rl.kernels.registry import KERNELS, chain_method_for, make_kernel

__all__ = [
    "EXTRA_FIELDS",
    "compare_kernels",
    "format_table",
    "main",
    "run_kernel",
    "write_plots",
]

# Kernel state fields recorded as sample_stats (NumPyro extra_fields) for each kernel.
EXTRA_FIELDS = {
    "discrete-hmc-gibbs": ("hmc_state.accept_prob", "hmc_state.diverging"),
    "mixed-hmc": ("accept_prob", "hmc_state.diverging"),
}
DEFAULT_EXTRA_FIELDS = ("accept_prob",)
PLOT_FILES = ("occupancy.png", "trajectories.png", "rank.png", "trace.png")
TABLE_COLUMNS = (
    ("kernel", "kernel"),
    ("wall_s", "wall s (incl. compile)"),
    ("ess_per_s", "ESS/s of return"),
    ("max_r_hat", "max R-hat"),
    ("mean_tv", "mean TV vs exact"),
    ("return_error", "E[return] error ± MCSE"),
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr with exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_one_line(message)}\n")


def _one_line(message):
    return " ".join(str(message).split())


# ----------------------------------------------------------------------------- library helpers


def run_kernel(
    name, env, horizon, beta, *, chains=4, warmup=500, samples=1000, seed=0, progress_bar=False
):
    """Run the registered kernel ``name`` on :func:`pgm_rl.trajectory_model` through NumPyro's MCMC.

    Parameters
    ----------
    name : str
        One of :data:`pgm_rl.kernels.registry.KERNELS`.
    env : TabularMDP
    horizon : int
    beta : float
    chains, warmup, samples, seed : int
        ``chains`` chains (run vectorized, or under ``jax.vmap`` for NumPyro's discrete
        kernels), ``warmup`` + ``samples`` steps each, PRNG key ``jax.random.key(seed)``.
    progress_bar : bool

    Returns
    -------
    mcmc : numpyro.infer.MCMC
        Finished, with the acceptance fields of :data:`EXTRA_FIELDS` recorded.
    seconds : float
        Wall-clock time of the run, JIT compilation included.
    """
    from numpyro.infer import MCMC

    mcmc = MCMC(
        make_kernel(name),
        num_warmup=warmup,
        num_samples=samples,
        num_chains=chains,
        chain_method=chain_method_for(name),
        progress_bar=progress_bar,
    )
    start = time.perf_counter()
    mcmc.run(
        jax.random.key(seed),
        env,
        horizon,
        beta,
        extra_fields=EXTRA_FIELDS.get(name, DEFAULT_EXTRA_FIELDS),
    )
    jax.block_until_ready(mcmc.get_samples())
    return mcmc, time.perf_counter() - start


def compare_kernels(
    names,
    env,
    horizon,
    beta,
    *,
    chains=4,
    warmup=500,
    samples=1000,
    seed=0,
    progress_bar=False,
    skip_missing=True,
    exact=None,
    log=print,
):
    """Run several kernels and the exact iid sampler on one problem and compare them to exact.

    Parameters
    ----------
    names : sequence of str
        Registered kernel names.
    env, horizon, beta
        The problem.
    chains, warmup, samples, seed, progress_bar
        As in :func:`run_kernel`, the same for every kernel.
    skip_missing : bool
        Skip (with a note through ``log``) a kernel whose module cannot be imported; otherwise
        raise ``ValueError``.
    exact : ExactPosterior, optional
        Solved here when not given.
    log : callable

    Returns
    -------
    rows : list of dict
        One per kernel plus ``"exact iid"`` (keys of :data:`TABLE_COLUMNS` and ``return_mcse``).
    trees : dict of str to xarray.DataTree
    comparisons : dict of str to xarray.Dataset
        From :func:`pgm_rl.diagnostics.compare_to_exact`.
    """
    from pgm_rl.diagnostics import compare_to_exact, to_datatree
    from pgm_rl.exact import solve

    if exact is None:
        exact = solve(env, horizon, beta)
    trees = {}
    seconds = {}
    for name in names:
        try:
            make_kernel(name)
        except ImportError as error:
            if not skip_missing:
                raise ValueError(f"kernel {name!r} is not available: {error}") from None
            log(f"note: skipping kernel {name!r}, its module is not available ({error})")
            continue
        log(f"running {name}: {chains} chains x ({warmup} warmup + {samples} draws)")
        mcmc, seconds[name] = run_kernel(
            name,
            env,
            horizon,
            beta,
            chains=chains,
            warmup=warmup,
            samples=samples,
            seed=seed,
            progress_bar=progress_bar,
        )
        trees[name] = to_datatree(mcmc, env, exact)
        trees[name].attrs.update(kernel=name, wall_seconds=seconds[name])
    start = time.perf_counter()
    draws = exact.sample(jax.random.key(seed), chains * samples)
    actions = np.asarray(draws["actions"]).reshape(chains, samples, horizon)
    seconds["exact iid"] = time.perf_counter() - start
    trees["exact iid"] = to_datatree({"actions": actions}, env, exact)
    trees["exact iid"].attrs.update(
        sampler="exact iid", kernel="exact iid", wall_seconds=seconds["exact iid"]
    )
    comparisons = {name: compare_to_exact(dt) for name, dt in trees.items()}
    rows = []
    for name, comparison in comparisons.items():
        rows.append(
            {
                "kernel": name,
                "wall_s": seconds[name],
                "ess_per_s": float(comparison["ess_bulk"]) / seconds[name],
                "max_r_hat": float(comparison["max_r_hat"]),
                "mean_tv": float(comparison["mean_tv"]),
                "return_error": float(comparison["expected_return_error"]),
                "return_mcse": float(comparison["expected_return_mcse"]),
            }
        )
    return rows, trees, comparisons


def format_table(rows, markdown=False):
    """Format :func:`compare_kernels` rows as an aligned text table or a Markdown table."""
    header = [label for _, label in TABLE_COLUMNS]
    body = []
    for row in rows:
        body.append(
            [
                row["kernel"],
                f"{row['wall_s']:.2f}",
                _number(row["ess_per_s"], "{:.1f}"),
                _number(row["max_r_hat"], "{:.3f}"),
                f"{row['mean_tv']:.3f}",
                f"{row['return_error']:+.4g} ± {row['return_mcse']:.2g}",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in [header, *body]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def _number(value, fmt):
    return "nan" if not math.isfinite(value) else fmt.format(value)


def write_plots(dt, folder, exact=None):
    """Write :data:`PLOT_FILES` for ``dt`` into ``folder`` (grid pictures only for a GridWorld).

    Returns the list of paths written.
    """
    import matplotlib.pyplot as plt

    from pgm_rl import plots

    os.makedirs(folder, exist_ok=True)
    has_grid = "grid" in dt["constant_data"]
    jobs = [
        ("occupancy.png", lambda path: plots.plot_occupancy(dt, exact, save=path), has_grid),
        ("trajectories.png", lambda path: plots.plot_trajectories(dt, save=path), has_grid),
        ("rank.png", lambda path: plots.plot_rank(dt, save=path), True),
        ("trace.png", lambda path: plots.plot_trace(dt, save=path), True),
    ]
    written = []
    for filename, draw, wanted in jobs:
        if wanted:
            path = os.path.join(folder, filename)
            draw(path)
            plt.close("all")
            written.append(path)
    return written


# ----------------------------------------------------------------------------- argument parsing


def _int_at_least(minimum):
    """An argparse type: an int >= ``minimum``."""

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an int >= {minimum}, got {value}")
        return value

    return parse


_nonnegative_int = _int_at_least(0)
_positive_int = _int_at_least(1)


def _beta(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _cell(text):
    try:
        row, col = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be ROW,COL (two ints), got {text!r}") from None
    return row, col


def _problem_arguments(parser):
    parser.add_argument(
        "--grid",
        default="notebook",
        help="'notebook' (the seed notebook's 6x6 grid, default) or a CSV / whitespace-separated "
        "file of cell rewards",
    )
    parser.add_argument(
        "--start",
        type=_cell,
        metavar="ROW,COL",
        help="start cell (default: (5, 0) on the notebook grid, (0, 0) on a grid file)",
    )
    parser.add_argument(
        "--horizon", type=_positive_int, required=True, metavar="T", help="number of actions T >= 1"
    )
    parser.add_argument(
        "--beta", type=_beta, required=True, metavar="B", help="inverse temperature >= 0"
    )


def _run_arguments(parser):
    parser.add_argument("--chains", type=_positive_int, default=4, help="chains (default 4)")
    parser.add_argument(
        "--warmup", type=_nonnegative_int, default=500, help="warm-up steps per chain (default 500)"
    )
    parser.add_argument(
        "--samples", type=_positive_int, default=1000, help="draws per chain (default 1000)"
    )
    parser.add_argument("--seed", type=_nonnegative_int, default=0, help="PRNG seed (default 0)")
    parser.add_argument("--plots", metavar="DIR", help="write the pictures (PNG) into DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def build_parser():
    """The ``pgm-rl`` argument parser."""
    parser = _Parser(
        prog="pgm-rl",
        description="Control as inference on tabular environments: exact posteriors, MCMC "
        "kernels, diagnostics and pictures.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    exact = commands.add_parser(
        "exact",
        help="solve the trajectory posterior exactly",
        description="Exact inference: log Z, expected return, where the agent ends, and the "
        "most probable (MAP) path.",
    )
    _problem_arguments(exact)
    exact.add_argument(
        "--top", type=_positive_int, default=5, help="how many end cells to list (default 5)"
    )

    sample = commands.add_parser(
        "sample",
        help="sample with one kernel and compare to exact",
        description="Run one MCMC kernel, print its diagnostics and its distance to exact "
        "inference, save the run as netCDF and draw the pictures.",
    )
    sample.add_argument("--kernel", required=True, choices=list(KERNELS), help="the kernel")
    _problem_arguments(sample)
    _run_arguments(sample)
    sample.add_argument("--out", metavar="FILE.nc", help="save the run (netCDF) to FILE.nc")

    compare = commands.add_parser(
        "compare",
        help="run several kernels and the exact sampler side by side",
        description="Run several kernels and exact iid sampling on one problem and print one "
        "table: wall time, ESS/s of the return, max R-hat, mean TV vs exact, return error.",
    )
    compare.add_argument(
        "--kernels",
        default=",".join(KERNELS),
        help=f"comma-separated kernel names (default: all available of {','.join(KERNELS)})",
    )
    _problem_arguments(compare)
    _run_arguments(compare)

    report = commands.add_parser(
        "report",
        help="re-open a saved run and redraw its summary and pictures",
        description="Load a run saved by 'pgm-rl sample --out' and print its summary, its "
        "comparison to exact and (with --plots) redraw its pictures.",
    )
    report.add_argument("file", metavar="FILE.nc", help="a netCDF file written by pgm-rl")
    report.add_argument("--plots", metavar="DIR", help="write the pictures (PNG) into DIR")
    report.add_argument("--overwrite", action="store_true", help="replace existing pictures")

    smc = commands.add_parser(
        "smc",
        help="estimate log Z by sequential Monte Carlo",
        description="Run SMC over trajectories several times; print each log Z estimate with "
        "its standard error beside the exact log Z.",
    )
    _problem_arguments(smc)
    smc.add_argument(
        "--particles", type=_positive_int, default=1000, help="particles per run (default 1000)"
    )
    smc.add_argument("--runs", type=_positive_int, default=5, help="independent runs (default 5)")
    smc.add_argument("--seed", type=_nonnegative_int, default=0, help="PRNG seed (default 0)")
    return parser


# ----------------------------------------------------------------------------- commands


def _env(args):
    if args.grid == "notebook":
        env = GridWorld.notebook()
        return env if args.start is None else GridWorld(env.rewards, args.start)
    return GridWorld.from_file(args.grid, (0, 0) if args.start is None else args.start)


def _problem_line(env, args):
    return f"grid {env.shape[0]}x{env.shape[1]}, start {env.start}, T={args.horizon}, beta={args.beta:g}"


def _check_outputs(paths, overwrite):
    """Refuse existing outputs before any work (FileExistsError names the first)."""
    if overwrite:
        return
    for path in paths:
        if path is not None and os.path.lexists(path):
            raise FileExistsError(f"{path!r} exists; pass --overwrite to replace it")


def _plot_paths(folder, names):
    return [] if folder is None else [os.path.join(folder, name) for name in names]


def _cmd_exact(args):
    from pgm_rl.exact import most_probable_path, solve

    env = _env(args)
    exact = solve(env, args.horizon, args.beta)
    final = np.asarray(exact.state_marginals)[-1]
    print(f"exact posterior: {_problem_line(env, args)}")
    print(f"log Z            = {exact.log_z:.10g}")
    print(f"expected return  = {exact.expected_return:.6g}")
    print(f"where the agent ends (at most {args.top} cells of probability > 0 at step T):")
    for state in np.argsort(-final, kind="stable")[: args.top]:
        if final[state] == 0:
            break
        print(f"  {env.cell_of(int(state))}  p = {final[state]:.4g}")
    actions, states = most_probable_path(env, args.horizon, args.beta)
    log_p = float(exact.log_prob(actions))
    path_return = float(np.asarray(env.reward)[states[:-1], actions].sum())
    # The cell path's probability sums over every action sequence giving it (e.g. "up" against
    # the top wall and "stay"), so it can be far larger than that of the one action sequence.
    steps = np.arange(args.horizon)
    same_cells = np.asarray(env.next_state)[states[:-1]] == states[1:, None]  # (T, A)
    step_probs = (np.asarray(exact.policy)[steps, states[:-1]] * same_cells).sum(axis=1)
    print(
        f"most probable path (MAP action sequence, max-product pass): return {path_return:g}; "
        f"P(these actions) = {math.exp(log_p):.4g}, P(these cells) = {np.prod(step_probs):.4g}"
    )
    print(f"  actions: {_runs(ACTION_NAMES[a] for a in actions)}")
    print(f"  cells:   {_runs(str(env.cell_of(int(s))).replace(' ', '') for s in states)}")
    return 0


def _runs(items):
    """'up x3, right' style run-length text."""
    out = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1][1] += 1
        else:
            out.append([item, 1])
    return ", ".join(name if count == 1 else f"{name} x{count}" for name, count in out)


def _print_summary(dt):
    from pgm_rl.diagnostics import summary

    table = summary(dt)
    horizon = dt.attrs["horizon"]
    if horizon > 12:  # the return and every (T // 10)-th step
        keep = ["return"] + [
            f"at_best[{t}]" for t in range(horizon // 10, horizon + 1, horizon // 10)
        ]
        table = table.loc[[name for name in keep if name in table.index]]
    print(f"summary (at_best[t] = being at the best cell {dt.attrs['best_state']} at step t):")
    with _pandas_options():
        print(table.to_string(float_format=lambda x: f"{x:.4g}"))


def _print_comparison(comparison):
    print(
        f"vs exact: mean TV {float(comparison['mean_tv']):.4f} (max {float(comparison['max_tv']):.4f}), "
        f"E[return] {float(comparison['expected_return']):.6g} vs exact "
        f"{float(comparison['exact_expected_return']):.6g}: error "
        f"{float(comparison['expected_return_error']):+.4g} ± {float(comparison['expected_return_mcse']):.2g} (MCSE)"
    )


def _pandas_options():
    import pandas as pd

    return pd.option_context("display.width", 120, "display.max_columns", 20)


def _cmd_sample(args):
    from pgm_rl import io
    from pgm_rl.diagnostics import compare_to_exact, to_datatree
    from pgm_rl.exact import solve

    env = _env(args)
    _check_outputs([args.out, *_plot_paths(args.plots, PLOT_FILES)], args.overwrite)
    if args.out is not None and not os.path.isdir(os.path.dirname(os.path.abspath(args.out))):
        raise FileNotFoundError(f"the folder of --out {args.out!r} does not exist")
    exact = solve(env, args.horizon, args.beta)
    print(f"{args.kernel}: {_problem_line(env, args)}")
    mcmc, seconds = run_kernel(
        args.kernel,
        env,
        args.horizon,
        args.beta,
        **_budget(args),
        progress_bar=True,
    )
    dt = to_datatree(mcmc, env, exact)
    dt.attrs.update(kernel=args.kernel, wall_seconds=seconds)
    print(f"wall time {seconds:.2f} s (JIT compilation included)")
    _print_summary(dt)
    _print_comparison(compare_to_exact(dt))
    if args.out is not None:
        io.save(dt, args.out, overwrite=args.overwrite)
        print(f"saved {args.out}")
    if args.plots is not None:
        for path in write_plots(dt, args.plots):
            print(f"wrote {path}")
    return 0


def _budget(args):
    """The sampling budget options shared by ``sample`` and ``compare``."""
    return {
        "chains": args.chains,
        "warmup": args.warmup,
        "samples": args.samples,
        "seed": args.seed,
    }


def _cmd_compare(args):
    from pgm_rl import plots

    names = [name.strip() for name in args.kernels.split(",") if name.strip()]
    unknown = [name for name in names if name not in KERNELS]
    if unknown or not names:
        raise ValueError(f"--kernels must be names from {', '.join(KERNELS)}; got {args.kernels!r}")
    env = _env(args)
    tv_path = None if args.plots is None else os.path.join(args.plots, "tv.png")
    occupancy_names = [f"occupancy_{name}.png" for name in [*names, "exact_iid"]]
    _check_outputs([tv_path, *_plot_paths(args.plots, occupancy_names)], args.overwrite)
    explicit = args.kernels != ",".join(KERNELS)
    print(f"compare: {_problem_line(env, args)}")
    rows, trees, comparisons = compare_kernels(
        names,
        env,
        args.horizon,
        args.beta,
        **_budget(args),
        progress_bar=False,
        skip_missing=not explicit,
        log=lambda message: print(message, flush=True),
    )
    print(format_table(rows))
    if args.plots is not None:
        os.makedirs(args.plots, exist_ok=True)
        plots.plot_tv(comparisons, save=tv_path)
        print(f"wrote {tv_path}")
        for name, dt in trees.items():
            path = os.path.join(args.plots, f"occupancy_{name.replace(' ', '_')}.png")
            plots.plot_occupancy(dt, save=path)
            print(f"wrote {path}")
    return 0


def _cmd_report(args):
    from pgm_rl import io
    from pgm_rl.diagnostics import compare_to_exact

    _check_outputs(_plot_paths(args.plots, PLOT_FILES), args.overwrite)
    dt = io.load(args.file)
    if "posterior" not in dt.children or "horizon" not in dt.attrs:
        raise ValueError(f"{args.file!r} is not a run saved by pgm-rl (no posterior / horizon)")
    print(
        f"{dt.attrs.get('kernel', dt.attrs.get('sampler', '?'))}: T={dt.attrs['horizon']}, "
        f"beta={dt.attrs['beta']:g}, {dt['posterior'].sizes['chain']} chains x "
        f"{dt['posterior'].sizes['draw']} draws"
    )
    _print_summary(dt)
    if "exact" in dt.children:
        _print_comparison(compare_to_exact(dt))
    if args.plots is not None:
        for path in write_plots(dt, args.plots):
            print(f"wrote {path}")
    return 0


def _cmd_smc(args):
    from pgm_rl.exact import solve

    try:
        from pgm_rl.smc import run_smc
    except ImportError as error:
        raise ValueError(f"SMC is not available: {error}") from None
    env = _env(args)
    exact = solve(env, args.horizon, args.beta)
    print(f"smc: {_problem_line(env, args)}, {args.particles} particles, {args.runs} runs")
    print(f"exact log Z = {exact.log_z:.8g}")
    marginals = np.asarray(exact.state_marginals)
    estimates = []
    for run, key in enumerate(jax.random.split(jax.random.key(args.seed), args.runs)):
        result = run_smc(key, env, args.horizon, args.beta, args.particles)
        log_z, se = float(result.log_z), float(result.log_z_se)
        weights = np.exp(np.asarray(result.log_weights, dtype=float))
        states = np.asarray(result.states)
        weighted = np.zeros_like(marginals)
        np.add.at(weighted, (np.arange(states.shape[1])[None, :], states), weights[:, None])
        mean_tv = 0.5 * np.abs(weighted / weights.sum() - marginals).sum(axis=1).mean()
        z = (log_z - exact.log_z) / se if se > 0 else float("nan")
        print(
            f"run {run}: log Z = {log_z:.8g} ± {se:.3g}  (z = {z:+.2f}), ESS {float(result.ess):.1f}, "
            f"mean TV of weighted marginals {mean_tv:.4f}"
        )
        estimates.append(log_z)
    spread = np.std(estimates, ddof=1) if len(estimates) > 1 else float("nan")
    print(f"mean over runs: log Z = {np.mean(estimates):.8g} (sd between runs {spread:.3g})")
    return 0


COMMANDS = {
    "exact": _cmd_exact,
    "sample": _cmd_sample,
    "compare": _cmd_compare,
    "report": _cmd_report,
    "smc": _cmd_smc,
}


def main(argv=None):
    """Entry point of ``pgm-rl``; returns the exit code (0, or 2 for bad arguments)."""
    jax.config.update("jax_enable_x64", True)
    # NumPyro's discrete HMC kernels trigger a harmless JAX note on every run.
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ValueError, TypeError, OSError) as error:
        print(f"pgm-rl {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
