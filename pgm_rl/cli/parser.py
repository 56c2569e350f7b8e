"""The ``pgm-rl`` argument parser: every command's options and help.

Building it imports neither JAX nor ArviZ (nor any command module), so ``pgm-rl --help``
answers at once.
"""

import argparse
from importlib.metadata import PackageNotFoundError, version

from pgm_rl.cli import devices, options
from pgm_rl.cli.common import (
    CONTROL_BAND_FILE,
    CONTROL_EPISODE_FILE,
    ELBO_TRACE_FILE,
    ENV_OCCUPANCY_FILE,
    EXIT_USAGE,
    POLICY_FILE,
    REWARD_POSTERIOR_FILE,
    one_line,
)

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr with exit code 2.

    ``appendix``, a callable returning text, is called only when the help is shown.
    """

    def __init__(self, *args, appendix=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._appendix = appendix

    def format_help(self):
        text = super().format_help()
        return text if self._appendix is None else f"{text}\n{self._appendix()}\n"

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {one_line(message)}\n")


def _version():
    try:
        return version("pgm_rl")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


# ----------------------------------------------------------------------------- the parser


def _problem_arguments(parser, horizon_help=None):
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--grid",
        help="'notebook' (the seed notebook's 6x6 grid, the default) or a CSV / "
        "whitespace-separated file of cell rewards",
    )
    where.add_argument(
        "--env",
        metavar="ID",
        help="a Gymnasium toy-text environment instead of a grid, e.g. FrozenLake-v1, "
        "CliffWalking-v1, Taxi-v4 (needs the extra pgm_rl[gymnasium])",
    )
    parser.add_argument(
        "--env-kwargs",
        type=options.env_kwargs,
        metavar="KEY=VALUE,...",
        help="keyword arguments of gymnasium.make for --env, e.g. is_slippery=true,map_name=8x8 "
        "(true/false, ints, floats, none, else strings)",
    )
    parser.add_argument(
        "--start",
        type=options.cell,
        metavar="ROW,COL",
        help="start cell of --grid (default: (5, 0) on the notebook grid, (0, 0) on a grid file)",
    )
    parser.add_argument(
        "--horizon",
        type=options.positive_int,
        required=horizon_help is None,
        metavar="T",
        help=horizon_help or "number of actions T >= 1",
    )
    parser.add_argument(
        "--beta",
        type=options.inverse_temperature,
        required=True,
        metavar="B",
        help="inverse temperature >= 0",
    )


def _run_arguments(parser):
    parser.add_argument("--chains", type=options.positive_int, default=4, help="chains (default 4)")
    parser.add_argument(
        "--warmup",
        type=options.nonnegative_int,
        default=500,
        help="warm-up steps per chain (default 500)",
    )
    parser.add_argument(
        "--samples", type=options.positive_int, default=1000, help="draws per chain (default 1000)"
    )
    parser.add_argument(
        "--seed", type=options.prng_seed, default=0, help="PRNG seed in [0, 2**32) (default 0)"
    )
    parser.add_argument("--plots", metavar="DIR", help="write the pictures (PNG) into DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--strict", action="store_true", help=_STRICT_HELP)


def _reference_argument(parser, what="no comparison with it, no 'disagrees' warnings"):
    parser.add_argument(
        "--no-reference",
        dest="reference",
        action="store_false",
        help="for very large problems: do not solve the exact posterior, the reference every "
        f"run is judged by ({what})",
    )


_STRICT_HELP = (
    "exit with code 1 when a problem is reported (a 'warning:' line: an R-hat above 1.01, or "
    "a disagreement with the exact posterior)"
)


def build_parser():
    """The ``pgm-rl`` argument parser (building it imports neither JAX nor ArviZ).

    Returns
    -------
    argparse.ArgumentParser
        ``parse_args`` gives a namespace with ``command`` (one of
        :data:`pgm_rl.cli.program.COMMANDS`) and that command's options.
    """
    parser = _Parser(
        prog="pgm-rl",
        description="Control as inference on tabular environments: exact posteriors, MCMC "
        "kernels, diagnostics and pictures.",
        epilog="Run 'pgm-rl COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"pgm-rl {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    exact = commands.add_parser(
        "exact",
        help="solve the trajectory posterior exactly",
        description="Exact inference: log Z, expected return, where the agent ends, and the "
        "most probable (MAP) path. With --env: the exact posterior beside the soft-Bellman "
        "policy (log Z vs ELBO*, planned vs executed return, where each ends).",
    )
    _problem_arguments(exact)
    exact.add_argument(
        "--top",
        type=options.positive_int,
        default=5,
        help="how many end cells (with --env: terminal states) to list (default 5)",
    )
    exact.add_argument(
        "--plots",
        metavar="DIR",
        help=f"with --env on a grid map: write {ENV_OCCUPANCY_FILE} (posterior beside "
        "soft-Bellman occupancy) into DIR",
    )
    exact.add_argument("--overwrite", action="store_true", help="replace an existing picture")
    devices.add_arguments(exact, checkpoint=True)

    sample = commands.add_parser(
        "sample",
        help="sample with one kernel and compare to exact",
        description="Run one MCMC kernel, print its diagnostics, any problems found and its "
        "distance to exact inference, save the run as netCDF and draw the pictures.",
        appendix=lambda: options.kernel_list(params=True),
    )
    sample.add_argument(
        "--kernel",
        required=True,
        type=options.kernel_name,
        metavar="NAME",
        help="the kernel (below)",
    )
    sample.add_argument(
        "--kernel-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a parameter of the kernel, e.g. --kernel particle-gibbs --kernel-arg "
        "num_particles=1024 (repeatable; each kernel's parameters are listed below)",
    )
    _problem_arguments(sample)
    _run_arguments(sample)
    sample.add_argument("--out", metavar="FILE.nc", help="save the run (netCDF) to FILE.nc")
    sample.add_argument("--proposal", metavar="POLICY.nc", help=_PROPOSAL_HELP)
    sample.add_argument(
        "--machine",
        metavar="FILE",
        help="a reward machine in the text format of the reward_machines reference code "
        "(Icarte et al. 2018): line 1 the initial state, line 2 the list of terminal states, "
        "then one transition a line, (u1, u2, 'formula', ConstantRewardFunction(r)), with "
        "formulas over the labels' letters ('e&!n', '!a|b'); a label no formula of a state "
        "accepts sends the machine to an absorbing sink that never counts as done. Needs "
        "--labels and --grid: the run is on the product of grid and machine (the reward of a "
        "step is the cell's plus the machine's), and prints P(task done by step T), exact and "
        "sampled (with --plots also satisfaction.png)",
    )
    sample.add_argument(
        "--labels",
        metavar="FILE",
        help="the event of each grid cell for --machine: one line per grid row, one character "
        "per cell, '.' (or a space) for none, e.g. '..A' then '.C.' then 'B..' on a 3x3 grid; "
        "the event of a step is the label of the cell entered",
    )
    sample.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (NumPyro's, on stderr)",
    )
    _reference_argument(sample)
    devices.add_arguments(sample)

    compare = commands.add_parser(
        "compare",
        help="run several kernels and the exact sampler side by side",
        description="Run several kernels and exact iid sampling on one problem and print one "
        "table (wall time, ESS/s of the return, max R-hat, mean TV vs exact, return error) and "
        "any problems found.",
        appendix=options.kernel_list,
    )
    compare.add_argument(
        "--kernels",
        type=options.kernel_names,
        metavar="NAME,...",
        help="comma-separated kernel names (default: every registered kernel whose module imports)",
    )
    _problem_arguments(compare)
    _run_arguments(compare)
    compare.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bars (NumPyro's, one per kernel, on stderr)",
    )

    report = commands.add_parser(
        "report",
        help="re-open a saved run and redraw its summary and pictures",
        description="Load a run saved by 'pgm-rl sample --out' and print its summary, its "
        "comparison to exact, any problems found and (with --plots) redraw its pictures.",
    )
    report.add_argument("file", metavar="FILE.nc", help="a netCDF file written by pgm-rl")
    report.add_argument(
        "--plots",
        metavar="DIR",
        help="write the pictures (PNG) into DIR (it may hold the pictures sample or report drew "
        "of this same run: they are redrawn)",
    )
    report.add_argument("--overwrite", action="store_true", help="replace existing pictures")
    report.add_argument("--strict", action="store_true", help=_STRICT_HELP)

    smc = commands.add_parser(
        "smc",
        help="estimate log Z by sequential Monte Carlo",
        description="Run SMC over trajectories several times; print each log Z estimate with "
        "its standard error beside the exact log Z (warning when the standard error is "
        "unreliable), then the runs pooled by log-mean-exp.",
    )
    _problem_arguments(smc)
    smc.add_argument(
        "--particles",
        type=options.positive_int,
        default=1000,
        help="particles per run (default 1000)",
    )
    smc.add_argument(
        "--runs", type=options.positive_int, default=5, help="independent runs (default 5)"
    )
    smc.add_argument(
        "--seed", type=options.prng_seed, default=0, help="PRNG seed in [0, 2**32) (default 0)"
    )
    smc.add_argument("--proposal", metavar="POLICY.nc", help=_PROPOSAL_HELP)
    _reference_argument(smc, "no exact log Z, z-scores or TVs beside the runs")
    _irl_parser(commands)
    _fit_parser(commands)
    _control_parser(commands)
    return parser


def _control_parser(commands):
    control = commands.add_parser(
        "control",
        help="continuous control: the exact LQ posterior, NUTS, MPPI, SMC, MPC",
        description="Continuous control as inference on the linear-quadratic double integrator "
        "(--problem lq) or Gymnasium's Pendulum-v1 (--problem pendulum, hanging at the start). "
        "--mode exact: the exact Gaussian posterior (lq only): log Z, ELBO* of the "
        "maximum-entropy LQR; sample: an MCMC kernel on pgm_rl.control.control_model, with "
        "diagnostics and (lq) the comparison to exact; mppi / smc: log Z by importance "
        "sampling / SMC with its standard error and ESS (lq: beside the exact log Z); mpc: "
        "model-predictive control for --steps steps (--gym: in the real Gymnasium environment).",
    )
    control.add_argument(
        "--problem", choices=("lq", "pendulum"), default="lq", help="the problem (default lq)"
    )
    control.add_argument(
        "--mode",
        choices=("exact", "sample", "mppi", "smc", "mpc"),
        required=True,
        help="what to run (above)",
    )
    control.add_argument(
        "--horizon", type=options.positive_int, default=20, metavar="T",
        help="number of actions T >= 1 (default 20; mpc: the planning horizon)",
    )  # fmt: skip
    control.add_argument(
        "--beta", type=options.inverse_temperature, default=1.0, metavar="B",
        help="inverse temperature >= 0 (default 1)",
    )  # fmt: skip
    control.add_argument(
        "--kernel", choices=("nuts", "hmc", "barker", "sa"), default="nuts",
        help="sample: NumPyro's kernel (default nuts)",
    )  # fmt: skip
    control.add_argument("--chains", type=options.positive_int, default=4,
                         help="sample: chains (default 4)")  # fmt: skip
    control.add_argument("--warmup", type=options.nonnegative_int, default=500,
                         help="sample: warm-up steps per chain (default 500)")  # fmt: skip
    control.add_argument(
        "--samples", type=options.positive_int, default=None, metavar="N",
        help="sample: draws per chain (default 1000); mppi, smc, mpc: trajectories per plan "
        "(default 10000 for mppi and smc, 300 for mpc)",
    )  # fmt: skip
    control.add_argument(
        "--iterations", type=options.positive_int, default=1,
        help="mppi, mpc: proposal adaptations + 1 (default 1)",
    )  # fmt: skip
    control.add_argument("--steps", type=options.positive_int, default=200,
                         help="mpc: steps of the episode (default 200)")  # fmt: skip
    control.add_argument(
        "--gym", action="store_true",
        help="mpc with --problem pendulum: act in Gymnasium's Pendulum-v1 (needs the extra "
        "pgm_rl[gymnasium])",
    )  # fmt: skip
    control.add_argument(
        "--seed", type=options.prng_seed, default=0, help="PRNG seed in [0, 2**32) (default 0)"
    )
    control.add_argument(
        "--plots", metavar="DIR",
        help=f"write {CONTROL_BAND_FILE} (sample, mppi, smc) or {CONTROL_EPISODE_FILE} (mpc) "
        "into DIR",
    )  # fmt: skip
    control.add_argument("--overwrite", action="store_true", help="replace existing pictures")
    control.add_argument("--strict", action="store_true", help=_STRICT_HELP)


_PROPOSAL_HELP = (
    "propose actions from a policy saved by 'pgm-rl fit --out' (same environment and horizon; "
    "the estimates stay exact, importance-weighted); sample: only with --kernel "
    + " or ".join(options.PROPOSAL_KERNELS)
)


def _fit_parser(commands):
    fit = commands.add_parser(
        "fit",
        help="fit a variational policy (maximise the ELBO) and save it",
        description="Fit a policy q_t(a | s) to the trajectory posterior by maximising its "
        "ELBO (pgm_rl.variational.fit_policy): 'exact' (the analytic ELBO, natural-gradient "
        "steps = soft policy iteration) or 'score' (NumPyro SVI, score-function gradients). "
        "Prints the ELBO trace, the final ELBO, log Z and KL(q || posterior) where exact "
        "inference applies, ELBO* (the soft-Bellman optimum) where the dynamics or the start "
        "are random; saves the policy as netCDF for 'pgm-rl smc --proposal' and 'pgm-rl "
        "sample --kernel particle-gibbs --proposal'.",
    )
    _problem_arguments(fit)
    fit.add_argument(
        "--objective",
        choices=("exact", "score"),
        default="exact",
        help="'exact' (default): analytic ELBO, natural gradient; 'score': NumPyro SVI",
    )
    fit.add_argument(
        "--parametrization",
        choices=("time-indexed", "stationary"),
        default="time-indexed",
        help="logits per (t, s, a) (default) or per (s, a)",
    )
    fit.add_argument(
        "--steps",
        type=options.positive_int,
        default=None,
        metavar="N",
        help="optimisation steps >= 1 (default 100 for 'exact', 1000 for 'score')",
    )
    fit.add_argument(
        "--seed", type=options.prng_seed, default=0, help="PRNG seed in [0, 2**32) (default 0)"
    )
    fit.add_argument("--out", metavar="POLICY.nc", help="save the policy (netCDF) to POLICY.nc")
    fit.add_argument(
        "--plots",
        metavar="DIR",
        help=f"write {ELBO_TRACE_FILE} and (on a grid map) {POLICY_FILE} into DIR",
    )
    fit.add_argument("--overwrite", action="store_true", help="replace existing output files")
    fit.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar (stderr)"
    )


def _irl_parser(commands):
    irl = commands.add_parser(
        "irl",
        help="learn the reward from demonstrations (NUTS over reward weights)",
        description="Bayesian inverse RL: NUTS samples the posterior of the reward weights theta "
        "(r = features @ theta, theta ~ Normal(0, prior scale)) given demonstrations, through "
        "the exact, differentiable log Z (pgm_rl.irl.reward_model). Prints the ArviZ summary of "
        "theta (R-hat, ESS) and the divergences; saves the run as netCDF; with --plots draws "
        f"{REWARD_POSTERIOR_FILE} (posterior mean and sd of each cell's reward, beside the true "
        "reward where known).",
    )
    _problem_arguments(
        irl,
        horizon_help="number of actions T: needed by --demos exact:N, otherwise read from the "
        "demonstrations (and checked against them when given)",
    )
    irl.add_argument(
        "--demos",
        required=True,
        metavar="FILE.nc|exact:N",
        help="the demonstrations: a netCDF file written by 'pgm-rl sample --out' or "
        "pgm_rl.io.save of a to_datatree tree (every chain x draw is one demonstration), or "
        "exact:N for N exact posterior draws of the environment's own reward at --horizon and "
        "--beta (with --likelihood soft-bellman: N rollouts of its soft-Bellman policy), a demo "
        "whose true reward is known",
    )
    irl.add_argument(
        "--features",
        default="onehot",
        metavar="onehot|FILE",
        help="'onehot' (default: one weight per state, the reward of entering it) or a .npy or "
        "CSV file of shape (S, F), the features of each state",
    )
    irl.add_argument(
        "--likelihood",
        choices=("trajectory", "soft-bellman"),
        default="trajectory",
        help="'trajectory' (default): the exact trajectory likelihood exp(beta R) / Z; "
        "'soft-bellman': the maximum-causal-entropy likelihood of the soft-Bellman policy (for "
        "stochastic dynamics)",
    )
    irl.add_argument(
        "--prior-scale",
        type=options.positive_float,
        default=1.0,
        metavar="S",
        help="sd of the Normal prior of each reward weight (default 1)",
    )
    _run_arguments(irl)
    irl.add_argument("--out", metavar="FILE.nc", help="save the posterior (netCDF) to FILE.nc")
    irl.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (NumPyro's, on stderr)",
    )
