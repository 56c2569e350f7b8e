"""The ``pgm-rl`` command: exact answers, sampling, kernel comparisons, reports, SMC, IRL and fits.

``pgm-rl exact|sample|compare|report|smc|irl|fit|control``, each with ``--help``; ``pgm-rl
--version``.
The package parses and prints only; the work is done by :mod:`pgm_rl.compare`,
:mod:`pgm_rl.diagnostics`, :mod:`pgm_rl.plots`, :mod:`pgm_rl.smc`, :mod:`pgm_rl.exact`,
:mod:`pgm_rl.irl` and :mod:`pgm_rl.variational`. Its modules:

- :mod:`~pgm_rl.cli.program`: :func:`main`, the exit codes, Ctrl-C and SIGTERM;
- :mod:`~pgm_rl.cli.parser` and :mod:`~pgm_rl.cli.options`: the options and their types;
- :mod:`~pgm_rl.cli.outputs`: ``--out`` and ``--plots``, checked first and written last;
- :mod:`~pgm_rl.cli.problem`: the world from ``--grid`` / ``--env`` and how it is named;
- :mod:`~pgm_rl.cli.runs` and :mod:`~pgm_rl.cli.proposal`: what several commands share;
- :mod:`~pgm_rl.cli.devices`: ``--devices`` and ``--coordinator`` (``exact`` and ``sample``
  over several devices and processes, ``jax.distributed``);
- one module per command, each with ``run(args) -> exit code``: :mod:`~pgm_rl.cli.exact`,
  :mod:`~pgm_rl.cli.sample`, :mod:`~pgm_rl.cli.compare`, :mod:`~pgm_rl.cli.report`,
  :mod:`~pgm_rl.cli.smc`, :mod:`~pgm_rl.cli.irl`, :mod:`~pgm_rl.cli.fit`,
  :mod:`~pgm_rl.cli.control` (continuous control: :mod:`pgm_rl.control`). They import JAX,
  NumPyro and ArviZ and are imported only when their command runs, so ``pgm-rl --help``
  answers at once.

Exit codes: 0 done; 1 ``--strict`` and a problem was reported (a ``warning:`` line); 2 bad
input, reported as one line on stderr: the commands' own checks, the library's refusal of a
value (``ValueError``) and files that cannot be read or written (``OSError`` such as
``FileExistsError``); 130 interrupted (Ctrl-C) and 143 terminated (SIGTERM), each reported as
one line after the same clean-up (the ``pgm-rl`` program then ends at once, without the
interpreter's slow shutdown). Any other exception, e.g. a ``TypeError`` (every value the
command passes on is built by its parser, so a wrong type is a bug in pgm-rl), is raised with
its traceback.

Every output is checked before any work is done (:mod:`pgm_rl.cli.outputs`): ``--out`` and the
pictures must be regular files or missing, must not exist (``--overwrite`` replaces them), must
have names the filesystem takes and must be creatable where they go. An existing ``--plots``
folder is fine: the pictures that would be replaced are refused, all named in one line, except
that ``report`` redraws the pictures ``sample`` or ``report`` drew of the same run (each PNG
carries a digest of its run), which loses nothing; so ``sample --out run.nc --plots pics/``
then ``report run.nc --plots pics/`` works. A saved run given to ``report`` is checked against
its own data (:func:`pgm_rl.diagnostics.check_run`). Outputs are written only at the end, as a
whole, and a command that fails (or is interrupted) removes whatever it had created, so it
leaves nothing new.
"""

from pgm_rl.cli.parser import build_parser
from pgm_rl.cli.program import main

__all__ = ["build_parser", "main"]
