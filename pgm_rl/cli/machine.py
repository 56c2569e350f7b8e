"""``--machine FILE --labels FILE``: a grid times a reward machine, and what is printed of it.

The machine file is the text format of the reward machines reference code
(:func:`pgm_rl.envs.load_reward_machine`); the labels file gives the event of each cell, one
line per grid row and one character per cell (``.`` or a space: none), e.g. for a 3x4 grid::

    ...A
    .C..
    B...

:func:`with_machine` builds the product (:func:`pgm_rl.envs.with_reward_machine`), and
:func:`satisfaction_line` prints the probability that the task is done by step T, exact and
sampled.
"""

import os
import warnings

from pgm_rl.cli.problem import problem_line
from pgm_rl.worlds import (
    RewardMachineMDP,
    load_reward_machine,
    satisfaction_probability,
    with_reward_machine,
)

__all__ = [
    "SATISFACTION_FILE",
    "draw_satisfaction",
    "machine_pictures",
    "problem_text",
    "read_labels",
    "satisfaction_line",
    "with_machine",
]

SATISFACTION_FILE = "satisfaction.png"
_NONE = ".\t "


def read_labels(path, shape):
    """The event of each cell from the labels file ``path``, a tuple of H * W str.

    Raises ``ValueError`` naming ``--labels`` and the row for a missing file, a row count other
    than H or a row of other than W characters.
    """
    if not os.path.isfile(path):
        raise ValueError(f"--labels {path!r} does not exist or is not a file")
    try:
        with open(path) as handle:
            rows = handle.read().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--labels {path!r} cannot be read: {error}") from None
    while rows and not rows[-1].strip():
        rows.pop()
    height, width = shape
    if len(rows) != height:
        raise ValueError(
            f"--labels {path!r} has {len(rows)} rows, the grid has {height}: one row per grid row"
        )
    for number, row in enumerate(rows, 1):
        if len(row) != width:
            raise ValueError(
                f"--labels {path!r} row {number} has {len(row)} characters, the grid has {width} "
                "columns: one character per cell ('.' for none)"
            )
    return tuple("" if c in _NONE else c for row in rows for c in row)


def with_machine(args, env):
    """``env`` times the machine of ``--machine`` over the labels of ``--labels`` (``env`` itself
    without them); warnings of the construction are printed as ``warning:`` lines."""
    machine_file, labels_file = getattr(args, "machine", None), getattr(args, "labels", None)
    if machine_file is None and labels_file is None:
        return env
    if machine_file is None or labels_file is None:
        given, missing = (
            ("--machine", "--labels") if labels_file is None else ("--labels", "--machine")
        )
        raise ValueError(f"{given} needs {missing} (the machine reads the labels of the cells)")
    if getattr(env, "shape", None) is None or getattr(args, "env", None) is not None:
        raise ValueError("--machine and --labels are for grids (--grid), not --env")
    labels = read_labels(labels_file, env.shape)
    machine = load_reward_machine(machine_file, events=sorted(set(labels) - {""}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            product = with_reward_machine(env, machine, labels)
        except ValueError as error:
            raise ValueError(
                f"--machine {machine_file!r} with --labels {labels_file!r}: {error}"
            ) from None
    for warning in caught:
        print(f"warning: {warning.message}", flush=True)
    return product


def problem_text(env, args):
    """:func:`~pgm_rl.cli.problem.problem_line`, with the machine after the grid for a product."""
    if not isinstance(env, RewardMachineMDP):
        return problem_line(env, args)
    head, tail = problem_line(env.base, args).rsplit(", T=", 1)
    return (
        f"{head} x reward machine of {env.n_machine_states} states, terminal "
        f"{list(env.machine.terminal)} ({env.n_states} product states), T={tail}"
    )


def machine_pictures(args, env):
    """The pictures ``sample --plots`` writes for a product (the standard ones and
    :data:`SATISFACTION_FILE`); None (the standard ones) otherwise."""
    if args.plots is None or not isinstance(env, RewardMachineMDP):
        return None
    from pgm_rl.plots import PLOT_FILES  # (loads matplotlib: only with --plots)

    return [*PLOT_FILES, SATISFACTION_FILE]


def draw_satisfaction(env, posterior, dt, outputs):
    """Draw :data:`SATISFACTION_FILE` into the staging folder; its name in a list (none without
    --plots)."""
    if outputs.folder is None:
        return []
    import matplotlib.pyplot as plt  # (only with --plots)

    from pgm_rl.plots import plot_satisfaction

    with outputs.drawing() as folder:
        plot_satisfaction(env, posterior, dt, save=os.path.join(folder, SATISFACTION_FILE))
        plt.close("all")
    return [SATISFACTION_FILE]


def satisfaction_line(env, posterior, states):
    """One line: P(task done by step T), exact and from the draws' states (..., T + 1)."""
    exact = satisfaction_probability(posterior, env)[-1]
    sampled = satisfaction_probability(states, env)[-1]
    return (
        f"reward machine: P(task done by step T) exact {exact:.4f}, sampled {sampled:.4f} "
        f"(terminal machine states {list(env.machine.terminal)})"
    )
