"""The ``pgm-rl`` program: :func:`main` parses the command line, runs one command and turns
what happened into an exit code (see :mod:`pgm_rl.cli`)."""

import importlib
import os
import signal
import sys
import threading

from pgm_rl.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CommandError,
    one_line,
)
from pgm_rl.cli.parser import build_parser

__all__ = ["COMMANDS", "main"]

# Command -> the module that runs it (``run(args) -> exit code``). Imported only when its command
# runs: the command modules import JAX, NumPyro and ArviZ, which ``pgm-rl --help`` must not wait for.
COMMANDS = {
    name: f"pgm_rl.cli.{name}"
    for name in ("exact", "sample", "compare", "report", "smc", "irl", "fit", "control")
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
        Anything but bad input (``ValueError``, ``OSError``, the commands' own refusals), e.g.
        a ``TypeError``: a bug, shown with its traceback rather than as bad input.
    """
    prog = "pgm-rl"
    previous = _handle_sigterm()
    try:
        args = build_parser().parse_args(argv)
        prog = f"pgm-rl {args.command}"
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except (ValueError, OSError, CommandError) as error:  # bad input (pgm_rl.cli's docstring)
        print(f"{prog}: error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except _Terminated:
        print(f"{prog}: terminated (SIGTERM)", file=sys.stderr)
        return _exit_at_once(argv, EXIT_TERMINATED)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return _exit_at_once(argv, EXIT_INTERRUPTED)
    finally:
        if previous is not None:
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
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    return signal.signal(signal.SIGTERM, _on_sigterm)
