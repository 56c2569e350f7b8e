"""The ``pgm-rl`` command: exact answers, sampling, kernel comparisons, reports, SMC and IRL.

``pgm-rl exact|sample|compare|report|smc|irl|fit``, each with ``--help``; ``pgm-rl --version``.
This module parses and prints only: the work is done by :mod:`pgm_rl.compare`,
:mod:`pgm_rl.diagnostics`, :mod:`pgm_rl.plots`, :mod:`pgm_rl.smc` and :mod:`pgm_rl.exact`, which
(with JAX, NumPyro and ArviZ) are imported inside the command functions, so ``pgm-rl --help``
answers at once.

Exit codes: 0 done; 1 ``--strict`` and a problem was reported (a ``warning:`` line); 2 bad
input, reported as one line on stderr: this module's own checks, the library's refusal of a
value (``ValueError``) and files that cannot be read or written (``OSError`` such as
``FileExistsError``); 130 interrupted (Ctrl-C) and 143 terminated (SIGTERM), each reported as
one line after the same clean-up (the ``pgm-rl`` program then ends at once, without the
interpreter's slow shutdown). Any other exception, e.g. a ``TypeError`` (every value the
command passes on is built by its parser, so a wrong type is a bug in pgm-rl), is raised with
its traceback.

Every output is checked before any work is done: ``--out`` and the pictures must be regular
files or missing (never folders, symbolic links, FIFOs or devices), must not exist
(``--overwrite`` replaces them; untouched until then), must have names the filesystem takes and
must be creatable where they go (a probe file is created and removed there, which catches
read-only filesystems). An existing ``--plots`` folder is fine: the pictures that would be
replaced are refused, all named in one line, except that ``report`` redraws the pictures
``sample`` or ``report`` drew of the same run (each PNG carries a digest of its run), which
loses nothing; so ``sample --out run.nc --plots pics/`` then ``report run.nc --plots pics/``
works. A saved run given to ``report`` is checked against its own data
(:func:`pgm_rl.diagnostics.check_run`). Outputs are written only at the end, as a whole: the
pictures are drawn into a hidden folder and moved into place after ``--out`` is saved, and a
command that fails (or is interrupted) removes whatever it had created, so it leaves nothing new.
"""

import argparse
import contextlib
import math
import os
import re
import shutil
import sys
import tempfile

__all__ = ["build_parser", "main"]

EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + 15  # SIGTERM
# The picture of ``exact --env ... --plots DIR``.
ENV_OCCUPANCY_FILE = "occupancy_env.png"
# The picture of ``irl --plots DIR``.
REWARD_POSTERIOR_FILE = "reward_posterior.png"
# The credible intervals of ``irl`` (the summary's eti columns and the coverage of the truth).
IRL_CI_PROB = 0.89
# The pictures of ``fit --plots DIR`` (the policy picture only on a grid map).
ELBO_TRACE_FILE = "elbo_trace.png"
POLICY_FILE = "policy.png"
# The kernels that take ``--proposal`` (a saved policy proposing the free particles).
PROPOSAL_KERNELS = ("particle-gibbs", "guided-particle-gibbs")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr with exit code 2.

    ``appendix``, a callable returning text, is called only when the help is shown (the
    kernel list reads the registry, which imports JAX).
    """

    def __init__(self, *args, appendix=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._appendix = appendix

    def format_help(self):
        text = super().format_help()
        return text if self._appendix is None else f"{text}\n{self._appendix()}\n"

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(message)}\n")


def _one_line(message):
    return " ".join(str(message).split())


def _version():
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pgm_rl")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown (not installed)"


# ----------------------------------------------------------------------------- argument types


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


def _seed(text):
    """An argparse type: a PRNG seed in [0, 2**32), the seeds every JAX mode keys alike."""
    value = _nonnegative_int(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be an int in [0, 2**32), got {value}")
    return value


def _beta(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _cell(text):
    try:
        row, col = (int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be ROW,COL (two ints), got {text!r}") from None
    return row, col


_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_kwargs(text):
    """An argparse type: ``key=value,...`` -> dict; values true/false, none, ints, floats, else str."""
    kwargs = {}
    for item in text.split(","):
        item = item.strip()
        key, equals, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not _KEY.fullmatch(key):
            raise argparse.ArgumentTypeError(
                f"must be KEY=VALUE pairs separated by commas (KEY a Python name), got {item!r} "
                f"in {text!r}"
            )
        if key in kwargs:
            raise argparse.ArgumentTypeError(f"gives {key!r} twice: {text!r}")
        if not value:
            raise argparse.ArgumentTypeError(f"gives {key!r} no value: {text!r}")
        kwargs[key] = _env_value(value)
    return kwargs


def _env_value(text):
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _kernel_name(text):
    """An argparse type: a name of the kernel registry (read only when the option is given)."""
    from pgm_rl.kernels.registry import KERNELS

    if text not in KERNELS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(KERNELS)}; got {text!r}")
    return text


def _kernel_names(text):
    """An argparse type: distinct comma-separated registry names, at least one."""
    from pgm_rl.kernels.registry import KERNELS

    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in KERNELS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"must be comma-separated names from {', '.join(KERNELS)}; got {text!r}"
        )
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"names a kernel twice: {text!r}")
    return names


def _kernel_list():
    """The registered kernels with their one-line summaries (shown by ``--help``)."""
    from pgm_rl.kernels.registry import KERNELS

    width = max(map(len, KERNELS))
    lines = ["kernels (from pgm_rl.kernels.registry; * = NumPyro's own):"]
    for name, record in KERNELS.items():
        mark = "*" if record.builtin else " "
        lines.append(f"  {name:<{width}} {mark} {record.summary}")
    return "\n".join(lines)


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
        type=_env_kwargs,
        metavar="KEY=VALUE,...",
        help="keyword arguments of gymnasium.make for --env, e.g. is_slippery=true,map_name=8x8 "
        "(true/false, ints, floats, none, else strings)",
    )
    parser.add_argument(
        "--start",
        type=_cell,
        metavar="ROW,COL",
        help="start cell of --grid (default: (5, 0) on the notebook grid, (0, 0) on a grid file)",
    )
    parser.add_argument(
        "--horizon",
        type=_positive_int,
        required=horizon_help is None,
        metavar="T",
        help=horizon_help or "number of actions T >= 1",
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
    parser.add_argument("--seed", type=_seed, default=0, help="PRNG seed in [0, 2**32) (default 0)")
    parser.add_argument("--plots", metavar="DIR", help="write the pictures (PNG) into DIR")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--strict", action="store_true", help=_STRICT_HELP)


_STRICT_HELP = (
    "exit with code 1 when a problem is reported (a 'warning:' line: an R-hat above 1.01, or "
    "a disagreement with the exact posterior)"
)


def build_parser():
    """The ``pgm-rl`` argument parser (building it imports neither JAX nor ArviZ).

    Returns
    -------
    argparse.ArgumentParser
        ``parse_args`` gives a namespace with ``command`` (one of :data:`COMMANDS`) and that
        command's options.
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
        type=_positive_int,
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

    sample = commands.add_parser(
        "sample",
        help="sample with one kernel and compare to exact",
        description="Run one MCMC kernel, print its diagnostics, any problems found and its "
        "distance to exact inference, save the run as netCDF and draw the pictures.",
        appendix=_kernel_list,
    )
    sample.add_argument(
        "--kernel", required=True, type=_kernel_name, metavar="NAME", help="the kernel (below)"
    )
    _problem_arguments(sample)
    _run_arguments(sample)
    sample.add_argument("--out", metavar="FILE.nc", help="save the run (netCDF) to FILE.nc")
    sample.add_argument("--proposal", metavar="POLICY.nc", help=_PROPOSAL_HELP)
    sample.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        help="no progress bar (NumPyro's, on stderr)",
    )

    compare = commands.add_parser(
        "compare",
        help="run several kernels and the exact sampler side by side",
        description="Run several kernels and exact iid sampling on one problem and print one "
        "table (wall time, ESS/s of the return, max R-hat, mean TV vs exact, return error) and "
        "any problems found.",
        appendix=_kernel_list,
    )
    compare.add_argument(
        "--kernels",
        type=_kernel_names,
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
        "--particles", type=_positive_int, default=1000, help="particles per run (default 1000)"
    )
    smc.add_argument("--runs", type=_positive_int, default=5, help="independent runs (default 5)")
    smc.add_argument("--seed", type=_seed, default=0, help="PRNG seed in [0, 2**32) (default 0)")
    smc.add_argument("--proposal", metavar="POLICY.nc", help=_PROPOSAL_HELP)
    _irl_parser(commands)
    _fit_parser(commands)
    return parser


_PROPOSAL_HELP = (
    "propose actions from a policy saved by 'pgm-rl fit --out' (same environment and horizon; "
    "the estimates stay exact, importance-weighted); sample: only with --kernel "
    + " or ".join(PROPOSAL_KERNELS)
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
        type=_positive_int,
        default=None,
        metavar="N",
        help="optimisation steps >= 1 (default 100 for 'exact', 1000 for 'score')",
    )
    fit.add_argument("--seed", type=_seed, default=0, help="PRNG seed in [0, 2**32) (default 0)")
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
        type=_positive_float,
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


# ----------------------------------------------------------------------------- shared helpers


def _setup_jax():
    """float64 everywhere; silence a harmless note NumPyro's discrete HMC kernels trigger."""
    import warnings

    import jax

    jax.config.update("jax_enable_x64", True)
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")


class _CommandError(Exception):
    """A failure reported as one line with exit code 2 (e.g. a missing optional extra)."""


def _env(args):
    """The problem's MDP: ``--grid`` (a GridWorld) or ``--env`` (a Gymnasium environment)."""
    if args.env is None:
        if args.env_kwargs is not None:
            raise ValueError("--env-kwargs needs --env (they are passed to gymnasium.make)")
        from pgm_rl.envs import GridWorld

        if args.grid is None or args.grid == "notebook":
            env = GridWorld.notebook()
            return env if args.start is None else GridWorld(env.rewards, args.start)
        return GridWorld.from_file(args.grid, (0, 0) if args.start is None else args.start)
    if args.start is not None:
        raise ValueError(
            "--start is for --grid; a Gymnasium environment (--env) has its own start distribution"
        )
    return _gymnasium_env(args.env, args.env_kwargs or {})


def _gymnasium_env(env_id, kwargs):
    """``from_gymnasium(env_id, **kwargs)``; every failure one line naming ``--env``."""
    import warnings

    from pgm_rl.envs import from_gymnasium

    where = f"--env {env_id}" + (f" --env-kwargs {_kwargs_text(kwargs)}" if kwargs else "")
    try:
        import gymnasium  # noqa: F401  (first: its import adds warning filters of its own)
    except ImportError:
        raise _CommandError(
            f"{where} needs Gymnasium, the optional extra pgm_rl[gymnasium]: pip install "
            "'pgm_rl[gymnasium]'"
        ) from None
    try:
        with warnings.catch_warnings():  # Gymnasium's own notes (versions, render modes)
            warnings.simplefilter("ignore")
            return from_gymnasium(env_id, **kwargs)
    except Exception as error:  # gymnasium.error.Error (an unknown id), TypeError, ValueError
        if isinstance(error, (TypeError, ValueError)) or type(error).__module__.startswith(
            "gymnasium"
        ):
            raise _CommandError(f"{where}: {error}") from None
        named = [key for key, value in kwargs.items() if error.args == (value,)]
        if isinstance(error, KeyError) and named:  # a value looked up in a table (map_name)
            raise _CommandError(f"{where}: {_unknown_value(env_id, named[0], kwargs)}") from None
        raise


def _unknown_value(env_id, key, kwargs):
    """Why ``key=kwargs[key]`` is refused, with the allowed values where Gymnasium lists them."""
    if env_id.startswith("FrozenLake") and key == "map_name":
        from gymnasium.envs.toy_text.frozen_lake import MAPS

        return f"map_name must be one of {', '.join(MAPS)}, got {kwargs[key]!r}"
    return f"{key}={kwargs[key]} is not a value {env_id} knows"


def _kwargs_text(kwargs):
    return ",".join(f"{key}={value}" for key, value in kwargs.items())


def _is_gymnasium(env):
    return hasattr(env, "env_id")


def _state_label(env, state):
    """'(row, col) L' on a map with letters, '(row, col)' on a grid, else 'state s'."""
    shape = getattr(env, "shape", None)
    if shape is None or not hasattr(env, "cell_of"):
        return f"state {state}"
    row, col = env.cell_of(int(state))
    desc = getattr(env, "desc", None)
    letter = f" {desc[row][col]}" if desc is not None else ""
    return f"({row}, {col}){letter}"


def _goal_states(env):
    """The states of the map's 'G' cells; on a grid without letters, the cells of the largest
    reward (all of them when several tie; ``best_state`` is the first); else none."""
    desc, shape = getattr(env, "desc", None), getattr(env, "shape", None)
    if shape is None:
        return []
    if desc is None:
        rewards = getattr(env, "rewards", None)
        if rewards is None:
            return []
        import numpy as np

        rewards = np.asarray(rewards)
        return [int(state) for state in np.flatnonzero(rewards.ravel() == rewards.max())]
    return [
        row * shape[1] + col
        for row, line in enumerate(desc)
        for col, c in enumerate(line)
        if c == "G"
    ]


def _problem_line(env, args):
    if not _is_gymnasium(env):
        return f"grid {env.shape[0]}x{env.shape[1]}, start {env.start}, T={args.horizon}, beta={args.beta:g}"
    kwargs = f" ({_kwargs_text(args.env_kwargs)})" if args.env_kwargs else ""
    dynamics = "stochastic" if env.has_random_dynamics else "deterministic"
    if env.has_random_start:
        start = f"random start over {int((env.start_probs > 0).sum())} states"
    else:
        start = f"start {_state_label(env, env.start_state)}"
    return (
        f"{env.env_id}{kwargs}: {env.n_states} states, {env.n_actions} actions, {dynamics} "
        f"dynamics, {start}, T={args.horizon}, beta={args.beta:g}"
    )


def _check_outputs(overwrite, out=None, folder=None, pictures=(), redraw=False):
    """Refuse, before any work, outputs this command could not write.

    ``out`` (``--out``) must be missing or a regular file (never a folder, a symbolic link, a
    FIFO or a device, even with ``--overwrite``), must not exist without ``--overwrite``, must
    have a name the filesystem takes (not empty, at most NAME_MAX bytes), and its folder must
    exist and take a new file; ``folder`` (``--plots``) must be a folder or be creatable, with
    its ``pictures`` (file names) checked as ``out``. "Takes a new file" is tried: a probe file
    is created and removed, which also catches a read-only filesystem and root-owned folders
    that permission bits miss.

    An existing ``folder`` is fine; the pictures this command would replace are refused all
    in one line, except (``redraw``, for ``report``) those pgm-rl drew from a run
    (:func:`_png_stamp`): their paths are returned, for :meth:`_Outputs.same_run` to accept
    once the run is read (redrawing the same run loses nothing).
    """
    from pgm_rl.io import _name_problem, _shown

    probed = set()
    if folder is not None:
        problem = "is empty: give a folder" if folder == "" else _name_problem(folder)
        if problem is not None:
            raise ValueError(f"--plots {_shown(folder)} {problem}")
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise NotADirectoryError(f"--plots {folder!r} exists and is not a folder")
        _check_writable(_existing_ancestor(folder), "--plots", folder, probed)
        paths = [os.path.join(folder, name) for name in pictures]
        for path in paths:
            _check_file("--plots", path, True)  # a name, a file, not a folder or a device
        taken = [path for path in paths if os.path.lexists(path) and not overwrite]
        stamped = [path for path in taken if redraw and _png_stamp(path) is not None]
        _refuse_existing([path for path in taken if path not in stamped])
    if out is not None:
        _check_file("--out", out, overwrite)
        parent = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(parent):
            raise FileNotFoundError(
                f"the folder of --out {out!r} does not exist or is not a folder"
            )
        _check_writable(parent, "--out", out, probed)
    return stamped if folder is not None else []


def _refuse_existing(paths, why=""):
    """A ``FileExistsError`` naming every picture in ``paths`` (none: nothing to refuse)."""
    if paths:
        shown = ", ".join(repr(path) for path in paths)
        them = "it" if len(paths) == 1 else "them"
        raise FileExistsError(
            f"--plots {shown} exist{'s' if len(paths) == 1 else ''}{why}; pass --overwrite to "
            f"replace {them} (or give another folder)"
        )


_STAMP = b"pgm-rl run"  # the PNG tEXt key of the run a picture of sample or report shows


def _png_stamp(path):
    """The run digest (:func:`_run_digest`) a picture drawn by pgm-rl carries, else None.

    Reads the PNG chunk headers up to the image end: any other file (not a PNG, or a PNG
    without the stamp, e.g. one edited and saved by another program) gives None.
    """
    import struct

    with open(path, "rb") as handle:
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
        while len(header := handle.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                return None
            if kind != b"tEXt":
                handle.seek(length + 4, os.SEEK_CUR)
                continue
            key, _, value = handle.read(length).partition(b"\0")
            if key == _STAMP:
                return value.decode("ascii", "replace")
            handle.seek(4, os.SEEK_CUR)
    return None


def _stamp_png(path, digest):
    """Add the tEXt chunk ``pgm-rl run: digest`` before the IEND chunk of the PNG ``path``."""
    import struct
    import zlib

    with open(path, "rb") as handle:
        data = handle.read()
    end = data.rindex(b"IEND") - 4  # the IEND chunk: length, type, CRC (12 bytes)
    body = b"tEXt" + _STAMP + b"\0" + digest.encode("ascii")
    chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
    with open(path, "wb") as handle:
        handle.write(data[:end] + chunk + data[end:])


def _run_digest(dt):
    """sha256 (hex) of a run's draws, problem and beta: equal for a run and its saved file."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256(repr((int(dt.attrs["horizon"]), float(dt.attrs["beta"]))).encode())
    for group in ("posterior", "constant_data"):
        for name in sorted(dt[group].data_vars):
            array = np.ascontiguousarray(dt[group][name].values)
            array = array.astype(np.int64 if array.dtype.kind in "biu" else np.float64)
            digest.update(f"{group}/{name}{array.shape}".encode())
            digest.update(array.tobytes())
    return digest.hexdigest()


def _check_file(option, path, overwrite):
    from pgm_rl.io import _name_problem, _node_kind, _shown

    problem = _name_problem(path)
    if problem is not None:
        raise ValueError(f"{option} {_shown(path)} {problem}")
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise IsADirectoryError(f"{option} {path!r} is a folder, not a file")
    kind = _node_kind(path)
    if kind is not None:
        raise ValueError(f"{option} {path!r} is {kind}: pgm-rl writes and replaces only files")
    if os.path.lexists(path) and not overwrite:
        raise FileExistsError(f"{option} {path!r} exists; pass --overwrite to replace it")


def _existing_ancestor(folder):
    """``folder`` or its nearest existing ancestor, which must be a folder."""
    path = os.path.abspath(folder)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise NotADirectoryError(f"--plots {folder!r} cannot be created: {path!r} is not a folder")
    return path


def _check_writable(directory, option, path, probed):
    """Create and remove a probe file in ``directory``; an ``OSError`` naming ``option``."""
    if directory in probed:
        return
    try:
        handle, probe = tempfile.mkstemp(prefix=".pgm-rl-probe-", dir=directory)
    except OSError as error:
        cause = error.strerror or str(error)
        raise type(error)(
            f"{option} {path!r} cannot be written: no new file can be created in {directory!r} "
            f"({cause})"
        ) from None
    os.close(handle)
    os.unlink(probe)
    probed.add(directory)


def _plot_names(folder):
    """The file names ``plots.write_plots`` may write (none without --plots)."""
    if folder is None:
        return []
    from pgm_rl.plots import PLOT_FILES  # (loads matplotlib: only with --plots)

    return list(PLOT_FILES)


class _Outputs:
    """This command's output files, checked before any work and written as a whole at the end.

    Entering checks them (:func:`_check_outputs`). Pictures are drawn into a hidden staging
    folder (:meth:`staging`) on the filesystem of ``--plots``; :meth:`commit` then saves
    ``--out`` (atomically, :func:`pgm_rl.io.save`) and moves the pictures into place. When
    anything fails (also Ctrl-C) the staging folder goes, and so does whatever this command had
    already created, so a failed command leaves nothing new behind. Files replaced with
    ``--overwrite`` are replaced only in :meth:`commit`, after all the work succeeded.
    """

    def __init__(self, args, pictures=None, redraw=False):
        self.out = getattr(args, "out", None)
        self.folder = args.plots
        self.overwrite = args.overwrite
        pictures = _plot_names(self.folder) if pictures is None else pictures
        # pgm-rl's pictures of some run (redraw): replaced only if same_run says it is this one
        self._stamped = _check_outputs(self.overwrite, self.out, self.folder, pictures, redraw)
        self._redrawn = set()
        self._staging = None
        self._staging_lock = None  # the open staging folder, locked (see pgm_rl.io)
        self._created = []

    def __enter__(self):
        return self

    def same_run(self, digest):
        """Accept the existing pictures that show the run of ``digest`` (:func:`_run_digest`):
        redrawing them loses nothing; refuse (before any drawing) those of another run."""
        other = [path for path in self._stamped if _png_stamp(path) != digest]
        _refuse_existing(other, " (pgm-rl's pictures of another run)")
        self._redrawn = set(self._stamped)

    def staging(self):
        """The hidden folder to draw the pictures into (made on first use)."""
        if self._staging is None:
            from pgm_rl.io import _new_staging_folder

            base = self.folder if os.path.isdir(self.folder) else _existing_ancestor(self.folder)
            self._staging, self._staging_lock = _new_staging_folder(base)
        return self._staging

    @contextlib.contextmanager
    def drawing(self):
        """``with outputs.drawing() as folder:`` draw into the staging folder ``folder``; a
        failure to write there (a full disk) is reported as one naming ``--plots``."""
        try:
            yield self.staging()
        except OSError as error:
            cause = error.strerror or str(error)
            raise type(error)(
                f"could not write the pictures of --plots {self.folder!r}: {cause}"
            ) from None

    def commit(self, dt=None, pictures=()):
        """Save ``dt`` to ``--out`` and move ``pictures`` (names in the staging folder) into
        ``--plots``; then print what was written."""
        lines = []
        if self.out is not None and dt is not None:
            from pgm_rl import io

            existed = os.path.lexists(self.out)
            try:
                io.save(dt, self.out, overwrite=self.overwrite)
            except FileExistsError:  # created by someone else while this command ran
                raise FileExistsError(
                    f"--out {self.out!r} exists (it appeared while this command ran); pass "
                    "--overwrite to replace it"
                ) from None
            if not existed:
                self._created.append(self.out)
            lines.append(f"saved {self.out}")
        if pictures:
            self._make_folder()
            for name in pictures:
                target = os.path.join(self.folder, name)
                existed = os.path.lexists(target)
                _check_file("--plots", target, True)  # still a regular file, if any
                if existed and not self.overwrite and target not in self._redrawn:
                    raise FileExistsError(
                        f"--plots {target!r} exists (it appeared while this command ran); pass "
                        "--overwrite to replace it"
                    )
                os.replace(os.path.join(self._staging, name), target)
                if not existed:
                    self._created.append(target)
                redrawn = " (redrawn: the same run)" if target in self._redrawn else ""
                lines.append(f"wrote {target}{redrawn}")
        for line in lines:
            print(line)

    def _make_folder(self):
        """Create ``--plots`` and its missing parents, remembering each for the clean-up."""
        missing = []
        path = os.path.abspath(self.folder)
        while not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for path in reversed(missing):
            os.mkdir(path)
            self._created.append(path)

    def __exit__(self, kind, error, traceback):
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            os.close(self._staging_lock)
        if kind is not None:  # a failure: take back what this command created
            for path in reversed(self._created):
                try:
                    if os.path.isdir(path) and not os.path.islink(path):
                        os.rmdir(path)
                    else:
                        os.unlink(path)
                except OSError:
                    pass
        return False


def _runs(items):
    """'up x3, right' style run-length text."""
    out = []
    for item in items:
        if out and out[-1][0] == item:
            out[-1][1] += 1
        else:
            out.append([item, 1])
    return ", ".join(name if count == 1 else f"{name} x{count}" for name, count in out)


def _print_summary(dt, env=None):
    """The convergence table; end rows at a goal cell (:func:`_goal_states` of ``env``, else of
    the tree's grid) are marked "G"."""
    import pandas as pd

    from pgm_rl.diagnostics import env_from_datatree, summary

    table = summary(dt)
    goals = set(_goal_states(env_from_datatree(dt) if env is None else env))
    marks = {
        name: f"{name} G"
        for name, state in zip(table.index[1:], table.attrs["end_states"], strict=False)
        if state in goals
    }
    table = table.rename(index=marks)
    print(
        "summary (end[cell] = ending in that cell, for the cells where most draws end; G: a goal):"
    )
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(table.to_string(float_format=lambda x: f"{x:.4g}"))
    worst = float(table.attrs["worst_r_hat"])
    if math.isnan(worst):
        print("worst R-hat: none defined (nothing varies within the chains)")
    else:
        print(
            f"worst R-hat (return and state-occupancy indicators): {worst:.4g} "
            f"at {table.attrs['worst_r_hat_at']}"
        )


def _print_comparison(comparison):
    print(
        f"vs exact: mean TV {float(comparison['mean_tv']):.4f} (max {float(comparison['max_tv']):.4f}), "
        f"E[return] {float(comparison['expected_return']):.6g} vs exact "
        f"{float(comparison['exact_expected_return']):.6g}: error "
        f"{float(comparison['expected_return_error']):+.4g} ± {float(comparison['expected_return_mcse']):.2g} (MCSE)"
    )


def _print_problems(lines, prefix=""):
    """One 'warning:' line per problem; returns how many were printed."""
    for line in lines:
        print(f"warning: {prefix}{line}", flush=True)
    return len(lines)


def _budget(args):
    """The sampling budget options shared by ``sample`` and ``compare``."""
    return {
        "chains": args.chains,
        "warmup": args.warmup,
        "samples": args.samples,
        "seed": args.seed,
    }


# ----------------------------------------------------------------------------- commands


def _cmd_exact(args):
    env = _env(args)
    if args.plots is not None and not _is_gymnasium(env):
        raise ValueError(
            "exact --plots draws a Gymnasium environment's map (posterior beside soft-Bellman "
            "occupancy): give --env"
        )
    if _is_gymnasium(env):
        pictures = [] if args.plots is None else [ENV_OCCUPANCY_FILE]
        with _Outputs(args, pictures) as outputs:
            return _exact_env(args, env, outputs)
    import numpy as np

    from pgm_rl.envs import ACTION_NAMES
    from pgm_rl.exact import most_probable_path, solve

    _setup_jax()
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
    path_return = float(np.asarray(env.reward)[states[:-1], actions].sum())
    # The cell path's probability sums over every action sequence giving it (e.g. "up" against
    # the top wall and "stay"), so it can be far larger than that of the one action sequence.
    print(
        f"most probable path (MAP action sequence, max-product pass): return {path_return:g}; "
        f"P(these actions) = {math.exp(float(exact.log_prob(actions))):.4g}, "
        f"P(these cells) = {float(exact.path_probability(states)):.4g}"
    )
    print(f"  actions: {_runs(ACTION_NAMES[a] for a in actions)}")
    print(f"  cells:   {_runs(str(env.cell_of(int(s))).replace(' ', '') for s in states)}")
    return 0


def _exact_env(args, env, outputs):
    """``exact --env``: the exact posterior beside the soft-Bellman policy, one table."""
    import numpy as np

    from pgm_rl.exact import evaluate_policy, most_probable_path, soft_bellman, solve

    _setup_jax()
    if args.plots is not None and getattr(env, "shape", None) is None:
        raise ValueError(f"exact --plots needs a grid map; {env.env_id} has none")
    post = solve(env, args.horizon, args.beta)
    soft = soft_bellman(env, args.horizon, args.beta)
    executed = evaluate_policy(env, post.policy, args.beta)
    columns = (post, executed, soft)
    print(f"exact posterior and soft-Bellman policy: {_problem_line(env, args)}")
    rows = [
        ("", ("posterior", "posterior's", "soft-Bellman")),
        ("", ("(planned)", "policy executed", "policy")),
        ("log Z | ELBO of the policy", _numbers((post.log_z, executed.elbo, soft.elbo), ".7g")),
        ("expected return", _numbers([c.expected_return for c in columns], ".6g")),
    ]
    goal = _goal_states(env)
    if goal:
        where = ", ".join(_state_label(env, s) for s in goal)
        reach = [c.reach_probability(goal) for c in columns]
        rows.append((f"P(reach the goal {where})", _numbers(reach, ".4g")))
    final = np.stack([np.asarray(c.state_marginals, np.float64)[-1] for c in columns])
    terminal = list(getattr(env, "terminal_states", ()))
    if terminal:
        order = sorted(terminal, key=lambda s: (s not in goal, -final[:, s].max(), s))
        shown = [s for s in order if s in goal or final[:, s].max() > 0][: args.top]
        rows.append(("P(end in a terminal state):", ("", "", "")))
        for state in shown:
            rows.append((f"  {_state_label(env, state)}", _numbers(final[:, state], ".4g")))
        rest = [s for s in terminal if s not in shown]
        if rest:
            rows.append(
                (f"  {len(rest)} other terminal states", _numbers(final[:, rest].sum(1), ".4g"))
            )
        elsewhere = np.clip(1.0 - final[:, terminal].sum(1), 0.0, 1.0)
        rows.append(("  none (still on the way)", _numbers(elsewhere, ".4g")))
    width = max(len(label) for label, _ in rows)
    for label, values in rows:
        print((f"{label:<{width}}  " + "".join(f"{value:>17}" for value in values)).rstrip())
    gap = post.log_z - soft.elbo
    if env.is_deterministic:
        print(
            "deterministic dynamics and one start state: the posterior is the soft-Bellman "
            f"policy (log Z - ELBO* = {gap:.3g})"
        )
        actions, states = most_probable_path(env, args.horizon, args.beta)
        names = env.action_names
        print(f"most probable path: {_runs(names[a] for a in actions)}")
        print(f"  states: {_runs(_state_label(env, s).replace(' ', '') for s in states)}")
    else:
        print(
            f"optimism (Levine 2018, 2.4): log Z - ELBO* = {gap:.4g} nats; the posterior plans "
            f"as if {_lucky(env)} on its side: it plans a return of "
            f"{post.expected_return:.6g}, its policy executed in the "
            f"true dynamics gets {executed.expected_return:.6g}, the soft-Bellman policy "
            f"{soft.expected_return:.6g}"
        )
    drawn = []
    if args.plots is not None:
        import matplotlib.pyplot as plt

        from pgm_rl.plots import plot_env_occupancy

        with outputs.drawing() as folder:
            plot_env_occupancy(env, post, soft, save=os.path.join(folder, ENV_OCCUPANCY_FILE))
            plt.close("all")
            drawn.append(ENV_OCCUPANCY_FILE)
    outputs.commit(pictures=drawn)
    return 0


def _lucky(env):
    chosen = [
        *(["the dynamics"] if env.has_random_dynamics else []),
        *(["the start"] if env.has_random_start else []),
    ]
    return " and ".join(chosen) + (" were" if env.has_random_dynamics else " was")


def _numbers(values, spec):
    return tuple(format(float(value), spec) for value in values)


def _cmd_sample(args):
    if args.proposal is not None and args.kernel not in PROPOSAL_KERNELS:
        raise ValueError(
            f"--proposal is for the kernels that take a proposal ({', '.join(PROPOSAL_KERNELS)}); "
            f"--kernel {args.kernel} takes none"
        )
    env = _env(args)
    with _Outputs(args) as outputs:
        return _sample(args, env, outputs)


def _sample(args, env, outputs):
    _setup_jax()
    from pgm_rl._checks import check_draws_fit, trajectory_draw_bytes
    from pgm_rl.compare import run_kernel
    from pgm_rl.diagnostics import compare_to_exact, problems, to_datatree
    from pgm_rl.exact import solve

    run, diagnosed = (trajectory_draw_bytes(args.horizon, n) for n in (None, env.n_states))
    per_draw = 2 * run + diagnosed  # the run (two copies), its tree and its diagnostics
    check_draws_fit(args.chains, args.samples, per_draw, "the run, its tree and diagnostics")
    proposal = None
    if args.proposal is not None:
        proposal, about = _load_proposal(args.proposal, env, args.horizon)
    exact = solve(env, args.horizon, args.beta)
    _check_diagnostics_take(env, exact)
    print(f"{args.kernel}: {_problem_line(env, args)}", flush=True)
    if proposal is None:
        mcmc, seconds = run_kernel(
            args.kernel,
            env,
            args.horizon,
            args.beta,
            **_budget(args),
            progress_bar=args.progress,
            log=lambda line: print(line, flush=True),
        )
    else:
        print(f"proposal: {about}", flush=True)
        mcmc, seconds = _run_with_proposal(args, env, proposal)
    dt = to_datatree(mcmc, env, exact)
    dt.attrs.update(kernel=args.kernel, wall_seconds=seconds)
    if args.proposal is not None:
        dt.attrs["proposal"] = str(args.proposal)
    print(f"wall time {seconds:.2f} s (JIT compilation included)")
    _print_summary(dt, env)
    comparison = compare_to_exact(dt)
    _print_comparison(comparison)
    found = _print_problems(problems(dt, comparison))
    outputs.commit(dt, _draw_plots(dt, outputs))
    return EXIT_PROBLEMS if args.strict and found else 0


def _check_diagnostics_take(env, exact=None):
    """Before any sampling: the run's ArviZ tree must take ``env``'s draws (tried on 2 exact draws).

    On a stochastic MDP the kernels may run while :func:`pgm_rl.diagnostics.to_datatree` cannot
    yet store the run; this finds out in milliseconds instead of after the whole run.
    """
    if env.is_deterministic:
        return
    import jax

    from pgm_rl.diagnostics import to_datatree
    from pgm_rl.exact import solve

    exact = solve(env, 1, 0.0) if exact is None else exact
    draws = exact.sample(jax.random.key(0), 2)
    try:
        to_datatree(draws, env, exact)
    except (AttributeError, NotImplementedError, TypeError, ValueError) as error:
        raise ValueError(
            "sample and compare store the run as an ArviZ tree (pgm_rl.diagnostics.to_datatree), "
            f"which does not take this MDP ({_randomness(env)}): {error}; use 'pgm-rl exact' or "
            f"'pgm-rl smc' here, or {_deterministic_instead(env)}"
        ) from None


def _randomness(env):
    """What is random in ``env``: its dynamics, its start or both (words)."""
    parts = ["stochastic dynamics"] if env.has_random_dynamics else []
    if env.has_random_start:
        parts.append(f"a random start over {int((env.start_probs > 0).sum())} states")
    return " and ".join(parts)


def _deterministic_instead(env):
    """Advice: the option that makes ``env`` deterministic, or environments that are."""
    if not env.has_random_start and _make_takes(env.env_id, "is_slippery"):
        return "deterministic dynamics (--env-kwargs is_slippery=false)"
    return (
        "an environment with deterministic dynamics and one start state (e.g. --env "
        "CliffWalking-v1, or --env FrozenLake-v1 --env-kwargs is_slippery=false)"
    )


def _make_takes(env_id, name):
    """Whether ``gymnasium.make(env_id)`` takes the keyword argument ``name``."""
    import inspect

    import gymnasium
    from gymnasium.envs.registration import load_env_creator

    entry_point = gymnasium.spec(env_id).entry_point
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    try:
        return name in inspect.signature(creator).parameters
    except (TypeError, ValueError):  # no signature to read
        return False


def _draw_plots(dt, outputs):
    """Draw the standard pictures into the staging folder; their names (none without --plots)."""
    if outputs.folder is None:
        return []
    from pgm_rl.plots import write_plots

    digest = _run_digest(dt)
    with outputs.drawing() as folder:
        paths = write_plots(dt, folder)
        for path in paths:  # what the picture shows: report may redraw it over itself
            _stamp_png(path, digest)
    return [os.path.basename(path) for path in paths]


def _cmd_compare(args):
    env = _env(args)
    names = args.kernels
    if names is None:
        from pgm_rl.kernels.registry import KERNELS

        names = list(KERNELS)
    occupancy = {name: f"occupancy_{name.replace(' ', '_')}.png" for name in [*names, "exact iid"]}
    if _is_gymnasium(env):  # the occupancy pictures draw a GridWorld's reward grid
        occupancy = {}
    pictures = [] if args.plots is None else ["tv.png", *occupancy.values()]
    with _Outputs(args, pictures) as outputs:
        return _compare(args, env, names, occupancy, outputs)


def _compare(args, env, names, occupancy, outputs):
    _setup_jax()
    from pgm_rl.compare import compare_kernels, format_table
    from pgm_rl.diagnostics import problems

    _check_diagnostics_take(env)
    print(f"compare: {_problem_line(env, args)}", flush=True)
    rows, trees, comparisons = compare_kernels(
        names,
        env,
        args.horizon,
        args.beta,
        **_budget(args),
        progress_bar=args.progress,
        skip_missing=args.kernels is None,
        log=lambda line: print(line, flush=True),
    )
    print(format_table(rows))
    found = sum(
        _print_problems(problems(dt, comparisons[name]), prefix=f"{name}: ")
        for name, dt in trees.items()
        if name != "exact iid"  # the reference the others are judged against
    )
    drawn = []
    if args.plots is not None:
        import matplotlib.pyplot as plt

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


def _cmd_report(args):
    with _Outputs(args, redraw=True) as outputs:
        return _report(args, outputs)


def _report(args, outputs):
    _setup_jax()
    from pgm_rl import io
    from pgm_rl.diagnostics import check_run, compare_to_exact, problems

    dt = io.load(args.file)
    other = _other_result(dt)
    if other is not None:
        raise ValueError(f"{args.file!r} is {other}")
    check_run(dt, source=repr(args.file))
    outputs.same_run(_run_digest(dt))
    print(
        f"{dt.attrs.get('kernel', dt.attrs.get('sampler', '?'))}: T={dt.attrs['horizon']}, "
        f"beta={dt.attrs['beta']:g}, {dt['posterior'].sizes['chain']} chains x "
        f"{dt['posterior'].sizes['draw']} draws"
    )
    _print_summary(dt)
    comparison = None
    if "exact" in dt.children:
        comparison = compare_to_exact(dt)
        _print_comparison(comparison)
    found = _print_problems(problems(dt, comparison))
    outputs.commit(pictures=_draw_plots(dt, outputs))
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


def _cmd_smc(args):
    env = _env(args)
    _setup_jax()
    import warnings

    import jax
    import numpy as np

    from pgm_rl.diagnostics import weighted_state_marginals
    from pgm_rl.exact import solve
    from pgm_rl.smc import (
        SMCProposalWarning,
        SMCSaturationWarning,
        log_z_problems,
        pool_log_z,
        run_smc,
        z_score,
    )

    proposal = None
    if args.proposal is not None:
        proposal, about = _load_proposal(args.proposal, env, args.horizon)
    exact = solve(env, args.horizon, args.beta)
    print(f"smc: {_problem_line(env, args)}, {args.particles} particles, {args.runs} runs")
    if proposal is not None:
        print(f"proposal: {about}")
        if np.isfinite(proposal.beta) and proposal.beta != args.beta:
            print(
                f"note: the proposal was fitted at beta={proposal.beta:g}, not at this run's "
                f"--beta {args.beta:g}; the estimate stays unbiased, but a proposal far from the "
                "target wastes the particles (a warning below says when it is meaningless)"
            )
    print(f"exact log Z = {exact.log_z:.8g}")
    marginals = np.asarray(exact.state_marginals)  # (T + 1, S)
    results = []
    for run, key in enumerate(jax.random.split(jax.random.key(args.seed), args.runs)):
        with warnings.catch_warnings():  # said below in one line
            warnings.simplefilter("ignore", SMCSaturationWarning)
            warnings.simplefilter("ignore", SMCProposalWarning)
            result = run_smc(key, env, args.horizon, args.beta, args.particles, proposal=proposal)
        log_z, se = float(result.log_z), float(result.log_z_se)
        weighted = weighted_state_marginals(result.states, result.log_weights, env.n_states)
        mean_tv = 0.5 * np.abs(weighted - marginals).sum(axis=1).mean()
        z = z_score(result, exact.log_z)
        z = f"{z:+.2f}" if abs(z) < 1e5 else f"{z:+.3g}"
        se_text = f"± {se:.3g}"
        if result.proposal_mismatch:
            se_text += " (meaningless: see the warning)"
        elif result.saturated:
            se_text += " (unreliable)"
        if result.log_z_rounding > se and not result.proposal_mismatch:
            se_text += f" (rounding ± {result.log_z_rounding:.3g})"
        print(
            f"run {run}: log Z = {log_z:.8g} {se_text}  (z = {z}), ESS {float(result.ess):.1f}, "
            f"mean TV of weighted marginals {mean_tv:.4f}",
            flush=True,
        )
        if result.proposal_mismatch:
            print(f"warning: run {run}: {result.problems()[0]}", flush=True)
        if result.saturated:
            print(
                f"warning: run {run}: the genealogy has saturated (too few surviving "
                f"ancestors), so '± {se:.3g}' is unreliable and log Z may be far off; use more "
                "--particles and judge the spread between runs",
                flush=True,
            )
        results.append(result)
    for line in log_z_problems(results, exact.log_z):
        print(f"warning: {line}")
    estimates = [float(result.log_z) for result in results]
    spread = np.std(estimates, ddof=1) if len(estimates) > 1 else float("nan")
    print(
        f"pooled over runs (log-mean-exp of the Z estimates): log Z = {pool_log_z(estimates):.8g} "
        f"(sd between runs {spread:.3g})"
    )
    return 0


def _cmd_irl(args):
    env = _env(args)
    if args.plots is not None and getattr(env, "shape", None) is None:
        raise ValueError(f"irl --plots draws the reward on a grid map; {env.env_id} has none")
    pictures = [] if args.plots is None else [REWARD_POSTERIOR_FILE]
    with _Outputs(args, pictures) as outputs:
        return _irl(args, env, outputs)


def _irl_features(spec, env):
    """``--features``: one-hot (S, S), or a .npy / CSV / whitespace-separated file (S, F)."""
    import numpy as np

    if spec == "onehot":
        return np.eye(env.n_states)
    if not os.path.isfile(spec):
        raise FileNotFoundError(
            f"--features {spec!r} is neither 'onehot' nor an existing file (.npy or CSV)"
        )
    try:
        if spec.endswith(".npy"):
            features = np.load(spec, allow_pickle=False)
        else:
            with open(spec) as handle:
                text = handle.read()
            delimiter = "," if "," in text else None
            features = np.loadtxt(spec, delimiter=delimiter, ndmin=2)
    except (OSError, ValueError) as error:
        raise ValueError(f"--features {spec!r} cannot be read as an array: {error}") from None
    if features.ndim != 2 or features.shape[0] != env.n_states:
        raise ValueError(
            f"--features {spec!r} must have shape (S, F) = ({env.n_states}, F), one row per "
            f"state; got {features.shape}"
        )
    return features


def _irl_demonstrations(args, env):
    """``--demos``: (dict of "actions" (N, T), "states" (N, T + 1); the true cell reward or
    None; a description)."""
    import jax
    import numpy as np

    from pgm_rl.envs import GridWorld

    spec = args.demos
    if spec.startswith("exact:"):
        try:
            count = _positive_int(spec[len("exact:") :])
        except argparse.ArgumentTypeError as error:
            raise ValueError(f"--demos {spec!r}: N {error}") from None
        if args.horizon is None:
            raise ValueError("--demos exact:N needs --horizon T (the length of each demonstration)")
        from pgm_rl.exact import soft_bellman, solve

        # the generator the likelihood assumes (as pgm_rl.irl.simulate): the trajectory
        # posterior, or the soft-Bellman policy run in the true dynamics
        key = jax.random.fold_in(jax.random.key(args.seed), 1)
        soft = args.likelihood == "soft-bellman"
        draws = (soft_bellman if soft else solve)(env, args.horizon, args.beta).sample(key, count)
        demos = {k: np.asarray(draws[k]) for k in ("actions", "states")}
        truth = np.asarray(env.rewards, np.float64).ravel() if isinstance(env, GridWorld) else None
        what = "soft-Bellman policy rollouts" if soft else "exact posterior draws"
        return demos, truth, f"{count} {what} of the environment's own reward"
    from pgm_rl import io
    from pgm_rl.diagnostics import env_from_datatree, trajectory_states

    dt = io.load(spec)
    try:
        actions = dt["posterior"]["actions"]
        states = trajectory_states(dt)
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"--demos {spec!r} holds no demonstrations ({_one_line(error)}): it needs a tree "
            "with posterior actions (chain, draw, time), as 'pgm-rl sample --out' writes"
        ) from None
    horizon = actions.sizes.get("time", actions.shape[-1])
    demos = {
        "actions": np.asarray(actions.values).reshape(-1, horizon),
        "states": np.asarray(states.values).reshape(-1, horizon + 1),
    }
    truth = None
    try:
        stored = env_from_datatree(dt)
        if isinstance(stored, GridWorld) and stored.shape == getattr(env, "shape", None):
            truth = np.asarray(stored.rewards, np.float64).ravel()
    except (KeyError, TypeError, ValueError):
        pass
    chains, draws = actions.shape[0], actions.shape[1]
    return demos, truth, f"{spec} ({_count(chains, 'chain')} x {draws} draws)"


def _count(number, noun):
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _irl(args, env, outputs):
    _setup_jax()
    import jax
    import numpy as np
    import pandas as pd

    import pgm_rl.diagnostics  # noqa: F401  (before arviz_base: the lazy-import workaround)
    from pgm_rl import irl

    likelihood = args.likelihood.replace("-", "_")
    features = _irl_features(args.features, env)
    demos, truth, source = _irl_demonstrations(args, env)
    n_demos, horizon = demos["actions"].shape
    if args.horizon is not None and args.horizon != horizon:
        raise ValueError(
            f"--horizon {args.horizon} does not match the demonstrations of --demos "
            f"{args.demos!r}, which have T = {horizon} actions"
        )
    try:
        irl.demonstration_statistics(env, features, demos)
    except (TypeError, ValueError) as error:
        what = "--features" if "features" in str(error) else f"--demos {args.demos!r}"
        raise ValueError(f"{what} does not fit the environment: {_one_line(error)}") from None
    if args.plots is not None and features.ndim != 2:
        raise ValueError("irl --plots draws the reward of each state: it needs (S, F) features")
    _check_irl_beta(args, features, n_demos, horizon)
    from pgm_rl._checks import check_draws_fit

    # theta (F) in the run and its tree, each state's reward (S) and its quantiles
    per_draw = 8 * (4 * features.shape[-1] + 3 * env.n_states)
    check_draws_fit(args.chains, args.samples, per_draw, "theta and each state's reward")
    args.horizon = horizon
    print(
        f"irl: {_problem_line(env, args)}; {n_demos} demonstrations from {source}; "
        f"features {args.features} (F = {features.shape[-1]}), likelihood {args.likelihood}, "
        f"prior Normal(0, {args.prior_scale:g})",
        flush=True,
    )
    import time

    from arviz_base import from_numpyro
    from numpyro.infer import MCMC, NUTS

    mcmc = MCMC(
        NUTS(irl.reward_model),
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method="vectorized",
        progress_bar=args.progress,
    )
    start = time.perf_counter()
    mcmc.run(
        jax.random.key(args.seed),
        env,
        features,
        demos,
        beta=args.beta,
        prior_scale=args.prior_scale,
        likelihood=likelihood,
        extra_fields=("diverging",),
    )
    seconds = time.perf_counter() - start
    print(
        f"NUTS: {_count(args.chains, 'chain')} x {args.samples} draws in {seconds:.2f} s "
        "(JIT included)"
    )
    dt = _irl_tree(from_numpyro(mcmc), args, env, features, demos, truth, likelihood)
    found = _print_irl_summary(dt, args, pd)
    theta = dt["posterior"]["theta"].values.reshape(-1, features.shape[-1])
    cells = None
    if features.ndim == 2:
        cells = theta @ features.T  # (draws, S): the reward of entering each state
        if truth is not None:
            tail = (1.0 - IRL_CI_PROB) / 2  # the table's equal-tailed intervals
            low, high = np.quantile(cells, [tail, 1.0 - tail], axis=0)
            mean = cells.mean(axis=0)
            corr = np.corrcoef(mean, truth)[0, 1] if mean.std() > 0 else float("nan")
            cover = np.mean((low <= truth) & (truth <= high))
            print(
                f"vs the true reward of each state: correlation of the posterior mean {corr:.3f}, "
                f"{IRL_CI_PROB:.0%} equal-tailed intervals (eti{IRL_CI_PROB * 100:.0f}) cover "
                f"{cover:.2f} of {truth.size} states"
            )
    drawn = []
    if args.plots is not None:
        import matplotlib.pyplot as plt

        from pgm_rl.plots import plot_reward_posterior

        visits = np.bincount(demos["states"][:, 1:].ravel(), minlength=env.n_states)
        with outputs.drawing() as folder:
            plot_reward_posterior(
                env,
                cells.mean(axis=0),
                cells.std(axis=0),
                true_reward=truth,
                visits=visits,
                save=os.path.join(folder, REWARD_POSTERIOR_FILE),
            )
            plt.close("all")
            drawn.append(REWARD_POSTERIOR_FILE)
    outputs.commit(dt, drawn)
    return EXIT_PROBLEMS if args.strict and found else 0


def _check_irl_beta(args, features, n_demos, horizon):
    """Refuse a beta at which NUTS cannot move theta in float64 (one line naming --beta).

    Moving one weight by one prior sd changes the log-likelihood by up to
    ``K = beta * N * T * max |features| * prior_scale`` nats (N demonstrations of T steps).
    Where the demonstrations stop being optimal the likelihood drops by that much within a
    width of theta of 1/K prior sds, and NUTS adapts its steps to that width; once
    ``K * eps > 1`` (eps the float64 spacing relative to 1) a step is below the spacing of
    theta, so the chains stay where they started (or K overflows).
    """
    import numpy as np

    eps = float(np.finfo(np.float64).eps)
    scale = n_demos * horizon * float(np.max(np.abs(features))) * args.prior_scale
    with np.errstate(over="ignore"):
        nats = np.float64(args.beta) * scale
    if nats * eps <= 1.0:
        return
    shown = f"{nats:.3g}" if np.isfinite(nats) else "more than 1.8e308"
    raise ValueError(
        f"--beta {args.beta:g} is too large for NUTS over the reward weights: beta * N * T * "
        f"max|features| * prior scale = {args.beta:.3g} * {n_demos} * {horizon} * "
        f"{float(np.max(np.abs(features))):.3g} * {args.prior_scale:g} = {shown} nats per prior "
        f"sd of a weight, so the steps NUTS needs are below float64's spacing of theta and the "
        f"chains cannot move; use --beta at most {1.0 / (eps * scale):.3g}"
    )


def _irl_tree(dt, args, env, features, demos, truth, likelihood):
    """The run's tree with the problem stored: features, demonstrations, true reward, attrs."""
    import xarray as xr

    feature_dims = ("state", "feature") if features.ndim == 2 else ("state", "action", "feature")
    data = {
        "features": (feature_dims, features),
        "demo_actions": (("demonstration", "time"), demos["actions"]),
        "demo_states": (("demonstration", "step"), demos["states"]),
    }
    if truth is not None:
        data["true_reward"] = (("state",), truth)
    dt["constant_data"] = xr.Dataset(data)
    dt.attrs.update(
        sampler="NUTS (pgm_rl.irl.reward_model)",
        horizon=int(demos["actions"].shape[1]),
        beta=float(args.beta),
        likelihood=likelihood,
        prior_scale=float(args.prior_scale),
        demonstrations=str(args.demos),
        num_demonstrations=int(demos["actions"].shape[0]),
        features=str(args.features),
        n_states=int(env.n_states),
    )
    return dt


def _print_irl_summary(dt, args, pd):
    """The ArviZ summary of theta, the divergences and one 'warning:' line per problem."""
    import arviz_stats

    table = arviz_stats.summary(dt, var_names=["theta"], ci_prob=IRL_CI_PROB, ci_kind="eti")
    print("summary of theta (reward weights; arviz_stats.summary):")
    with pd.option_context("display.width", 120, "display.max_columns", 20, "display.max_rows", 60):
        print(table.to_string(float_format=lambda x: f"{x:.4g}"))
    diverging = int(dt["sample_stats"]["diverging"].values.sum())
    total = args.chains * args.samples
    print(f"divergences: {diverging} of {total} transitions")
    lines = []
    if args.chains > 1 and "r_hat" in table:
        worst = float(table["r_hat"].max())
        if worst > 1.01:
            lines.append(
                f"worst R-hat of theta {worst:.4g} > 1.01 at {table['r_hat'].idxmax()}: run "
                "longer (--warmup, --samples)"
            )
    if diverging:
        lines.append(
            f"{diverging} divergent transitions: the posterior may be biased (try more --warmup "
            "or a smaller --prior-scale)"
        )
    return _print_problems(lines)


# ----------------------------------------------------------------------------- fit


def _env_text(env, args):
    """The problem line without T and beta: which environment a saved policy was fit on."""
    line = _problem_line(env, args)
    return line[: line.rfind(", T=")]


def _env_fingerprint(env):
    """sha256 of the MDP's dynamics, rewards and start distribution (hex)."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for array in (env.outcome_states, env.outcome_probs, env.outcome_rewards, env.start_probs):
        array = np.ascontiguousarray(np.asarray(array))
        array = array.astype(np.int64 if array.dtype.kind in "iu" else np.float64)
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _load_proposal(path, env, horizon):
    """A policy saved by ``fit --out``, checked against ``env`` and ``horizon``:
    ``(object with .log_policy (T, S, A), one line describing it)``; else a one-line error."""
    import types

    import numpy as np

    from pgm_rl import io
    from pgm_rl.smc import check_proposal

    what = f"--proposal {path!r}"
    dt = io.load(path)
    data = dt.to_dataset()
    if "log_policy" not in data:
        raise ValueError(
            f"{what} holds no policy (no log_policy variable); write one with 'pgm-rl fit --out'"
        )
    log_policy = np.asarray(data["log_policy"].values, np.float64)
    fitted_on = dt.attrs.get("env", "another environment")
    expected = (horizon, env.n_states, env.n_actions)
    if log_policy.ndim != 3 or log_policy.shape[1:] != expected[1:]:
        raise ValueError(
            f"{what} has shape {log_policy.shape}, not (T, S, A) = (T, {env.n_states}, "
            f"{env.n_actions}): it was fit on {fitted_on}, not on this environment"
        )
    if dt.attrs.get("env_fingerprint") != _env_fingerprint(env):
        raise ValueError(
            f"{what} was fit on {fitted_on}, not on this environment (its dynamics, rewards or "
            "start differ)"
        )
    if log_policy.shape[0] != horizon:
        raise ValueError(
            f"{what} was fit for horizon T={log_policy.shape[0]}, not --horizon {horizon}"
        )
    proposal = types.SimpleNamespace(
        log_policy=log_policy, beta=float(dt.attrs.get("beta", float("nan")))
    )
    try:
        check_proposal(proposal, env, horizon)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what}: {_one_line(error)}") from None
    attrs = dt.attrs
    about = (
        f"{path} ({attrs.get('objective', '?')} fit, {attrs.get('parametrization', '?')}, "
        f"beta={float(attrs.get('beta', float('nan'))):g}, ELBO "
        f"{float(attrs.get('elbo', float('nan'))):.6g})"
    )
    return proposal, about


def _run_with_proposal(args, env, proposal):
    """``run_kernel`` for a proposal kernel given ``proposal``: (mcmc, seconds)."""
    import time

    import jax
    from numpyro.infer import MCMC

    from pgm_rl.kernels.particle_gibbs import GuidedParticleGibbs, ParticleGibbs
    from pgm_rl.kernels.registry import KERNELS
    from pgm_rl.model import trajectory_model

    record = KERNELS[args.kernel]
    if args.kernel == "guided-particle-gibbs":  # the saved policy replaces its default guide
        kernel = GuidedParticleGibbs(trajectory_model, proposal=lambda mdp, T, beta: proposal)
    else:
        kernel = ParticleGibbs(trajectory_model, proposal=proposal)
    mcmc = MCMC(
        kernel,
        num_warmup=args.warmup,
        num_samples=args.samples,
        num_chains=args.chains,
        chain_method=record.chain_method,
        progress_bar=args.progress,
    )
    start = time.perf_counter()
    mcmc.run(
        jax.random.key(args.seed), env, args.horizon, args.beta, extra_fields=record.extra_fields
    )
    jax.block_until_ready(mcmc.get_samples())
    return mcmc, time.perf_counter() - start


def _on_grid_map(env):
    import numpy as np

    shape = getattr(env, "shape", None)
    return shape is not None and int(np.prod(shape)) == env.n_states


def _cmd_fit(args):
    env = _env(args)
    pictures = []
    if args.plots is not None:
        pictures = [ELBO_TRACE_FILE, *([POLICY_FILE] if _on_grid_map(env) else [])]
    with _Outputs(args, pictures) as outputs:
        return _fit(args, env, outputs)


def _fit_exact_with_progress(env, args, steps):
    """``fit_policy(objective="exact")`` in up to 20 jitted chunks, with a tqdm bar on stderr."""
    import jax.numpy as jnp
    from tqdm.auto import tqdm

    from pgm_rl import variational

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
    _setup_jax()
    import time

    import jax
    import numpy as np
    import xarray as xr

    from pgm_rl._checks import check_fit_memory
    from pgm_rl.exact import soft_bellman
    from pgm_rl.variational import fit_policy

    steps = args.steps if args.steps is not None else (100 if args.objective == "exact" else 1000)
    check_fit_memory(env, args.horizon, steps, args.objective)
    print(
        f"fit: {_problem_line(env, args)}; objective {args.objective}, {args.parametrization} "
        f"policy, {steps} steps",
        flush=True,
    )
    start = time.perf_counter()
    if args.objective == "exact":
        fitted = _fit_exact_with_progress(env, args, steps)
    else:
        fitted = fit_policy(
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
    if not env.is_deterministic:
        elbo_star = float(soft_bellman(env, args.horizon, args.beta).elbo)
        print(
            f"ELBO* (soft-Bellman, the best policy) = {elbo_star:.10g}; ELBO* - ELBO = "
            f"{elbo_star - fitted.elbo:.4g} ({_randomness(env)}: no policy reaches log Z)"
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
        "env": _env_text(env, args),
        "env_fingerprint": _env_fingerprint(env),
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
        import matplotlib.pyplot as plt

        from pgm_rl import plots

        with outputs.drawing() as folder:
            plots.plot_elbo_trace(
                trace, log_z=log_z, elbo_star=elbo_star, save=os.path.join(folder, ELBO_TRACE_FILE)
            )
            plt.close("all")
            drawn.append(ELBO_TRACE_FILE)
            if _on_grid_map(env):
                plots.plot_policy(
                    env, fitted.log_policy, time=0, save=os.path.join(folder, POLICY_FILE)
                )
                plt.close("all")
                drawn.append(POLICY_FILE)
    outputs.commit(dt, drawn)
    return 0


def _grid_action_names(n_actions):
    from pgm_rl.envs import ACTION_NAMES

    if n_actions == len(ACTION_NAMES):
        return ACTION_NAMES
    return tuple(f"action {a}" for a in range(n_actions))


COMMANDS = {
    "exact": _cmd_exact,
    "sample": _cmd_sample,
    "compare": _cmd_compare,
    "report": _cmd_report,
    "smc": _cmd_smc,
    "irl": _cmd_irl,
    "fit": _cmd_fit,
}


def main(argv=None):
    """Run ``pgm-rl`` with ``argv`` (default ``sys.argv[1:]``).

    Parameters
    ----------
    argv : list of str, optional

    Returns
    -------
    int
        The exit code: 0, 1 (``--strict`` and problems found), 2 (bad input, one line on
        stderr), 130 (Ctrl-C) or 143 (SIGTERM), each one line on stderr after the clean-up.
        ``--help``, ``--version`` and usage errors raise ``SystemExit`` (codes 0 and 2) as
        argparse does. Called in the main thread, it handles SIGTERM while it runs (unless
        SIGTERM was set to be ignored or handled already), as Ctrl-C: no temporary file or
        staging folder is left behind.

    Raises
    ------
    Exception
        Anything but bad input (``ValueError``, ``OSError``, this module's own refusals), e.g.
        a ``TypeError``: a bug, shown with its traceback rather than as bad input.
    """
    prog = "pgm-rl"
    previous = _handle_sigterm()
    try:
        args = build_parser().parse_args(argv)
        prog = f"pgm-rl {args.command}"
        return COMMANDS[args.command](args)
    except (ValueError, OSError, _CommandError) as error:  # bad input (the module docstring)
        print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except _Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        return _exit_at_once(argv, EXIT_TERMINATED)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return _exit_at_once(argv, EXIT_INTERRUPTED)
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGTERM, previous)


def _exit_at_once(argv, code):
    """``code``; but as the ``pgm-rl`` program (``argv`` None: the command line is the
    process's own), end the process now, everything of ours cleaned up: the interpreter's
    shutdown (JAX's and the modules' teardown, 1-3 s, longer on a busy machine) would
    otherwise delay the exit after Ctrl-C by as much."""
    if argv is not None:
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: every clean-up that Ctrl-C runs runs for it too."""


def _on_sigterm(signum, frame):
    raise _Terminated


def _handle_sigterm():
    """Raise :class:`_Terminated` on SIGTERM; the handler replaced, or None where SIGTERM is
    left alone (not the main thread, or SIGTERM ignored or handled by the caller)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)


if __name__ == "__main__":
    sys.exit(main())
