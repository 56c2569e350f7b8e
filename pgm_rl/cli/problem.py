"""The problem of a command: the world built from ``--grid`` / ``--env``, and its words.

:func:`build_env` turns the options into a :class:`~pgm_rl.worlds.TabularMDP` (a
:class:`~pgm_rl.worlds.GridWorld`, or a Gymnasium toy-text environment); the rest names what the
commands print: states, goals, the one-line description of the problem.
"""

import inspect
import warnings

import jax
import numpy as np

from pgm_rl.cli.common import CommandError
from pgm_rl.worlds import GridWorld, from_gymnasium, latent_sites


def setup_jax():
    """float64 everywhere; silence a harmless note NumPyro's discrete HMC kernels trigger."""
    jax.config.update("jax_enable_x64", True)
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")


def build_env(args):
    """The problem's MDP: ``--grid`` (a GridWorld) or ``--env`` (a Gymnasium environment)."""
    if args.env is None:
        if args.env_kwargs is not None:
            raise ValueError("--env-kwargs needs --env (they are passed to gymnasium.make)")
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
    where = f"--env {env_id}" + (f" --env-kwargs {kwargs_text(kwargs)}" if kwargs else "")
    try:
        import gymnasium  # noqa: F401  (first: its import adds warning filters of its own)
    except ImportError:
        raise CommandError(
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
            raise CommandError(f"{where}: {error}") from None
        named = [key for key, value in kwargs.items() if error.args == (value,)]
        if isinstance(error, KeyError) and named:  # a value looked up in a table (map_name)
            raise CommandError(f"{where}: {_unknown_value(env_id, named[0], kwargs)}") from None
        raise


def _unknown_value(env_id, key, kwargs):
    """Why ``key=kwargs[key]`` is refused, with the allowed values where Gymnasium lists them."""
    if env_id.startswith("FrozenLake") and key == "map_name":
        from gymnasium.envs.toy_text.frozen_lake import MAPS  # (an optional extra)

        return f"map_name must be one of {', '.join(MAPS)}, got {kwargs[key]!r}"
    return f"{key}={kwargs[key]} is not a value {env_id} knows"


def kwargs_text(kwargs):
    """``--env-kwargs`` as given: ``key=value,...``."""
    return ",".join(f"{key}={value}" for key, value in kwargs.items())


def is_gymnasium(env):
    """Whether ``env`` came from ``--env`` (a Gymnasium environment) rather than ``--grid``."""
    return hasattr(env, "env_id")


def state_label(env, state):
    """'(row, col) L' on a map with letters, '(row, col)' on a grid, else 'state s'."""
    shape = getattr(env, "shape", None)
    if shape is None or not hasattr(env, "cell_of"):
        return f"state {state}"
    row, col = env.cell_of(int(state))
    desc = getattr(env, "desc", None)
    letter = f" {desc[row][col]}" if desc is not None else ""
    return f"({row}, {col}){letter}"


def goal_states(env):
    """The states of the map's 'G' cells; on a grid without letters, the cells of the largest
    reward (all of them when several tie; ``best_state`` is the first); else none."""
    desc, shape = getattr(env, "desc", None), getattr(env, "shape", None)
    if shape is None:
        return []
    if desc is None:
        rewards = getattr(env, "rewards", None)
        if rewards is None:
            return []
        rewards = np.asarray(rewards)
        return [int(state) for state in np.flatnonzero(rewards.ravel() == rewards.max())]
    return [
        row * shape[1] + col
        for row, line in enumerate(desc)
        for col, c in enumerate(line)
        if c == "G"
    ]


def problem_line(env, args):
    """One line: the world (a Gymnasium environment: its size and what is random), T and beta."""
    if not is_gymnasium(env):
        return f"grid {env.shape[0]}x{env.shape[1]}, start {env.start}, T={args.horizon}, beta={args.beta:g}"
    kwargs = f" ({kwargs_text(args.env_kwargs)})" if args.env_kwargs else ""
    dynamics = "stochastic" if "the dynamics" in random_parts(env) else "deterministic"
    starts = start_states(env)
    if starts.size > 1:
        start = f"random start over {starts.size} states"
    else:
        start = f"start {state_label(env, int(starts[0]))}"
    return (
        f"{env.env_id}{kwargs}: {env.n_states} states, {env.n_actions} actions, {dynamics} "
        f"dynamics, {start}, T={args.horizon}, beta={args.beta:g}"
    )


def start_states(env):
    """The states ``env`` may start in (start probability > 0), shape (N,)."""
    return np.flatnonzero(np.asarray(env.start_probs) > 0)


def random_parts(env):
    """What ``env`` draws at random, in words: none, ``"the dynamics"``, ``"the start"`` or both."""
    words = {"outcomes": "the dynamics", "start": "the start"}
    return tuple(words[site] for site in ("outcomes", "start") if site in latent_sites(env))


def env_text(env, args):
    """The problem line without T and beta: which environment a saved policy was fit on."""
    line = problem_line(env, args)
    return line[: line.rfind(", T=")]


def on_grid_map(env):
    """Whether every state of ``env`` is a cell of its map (the policy picture needs one)."""
    shape = getattr(env, "shape", None)
    return shape is not None and int(np.prod(shape)) == env.n_states


def deterministic_instead(env):
    """Advice: the option that makes ``env`` deterministic, or environments that are."""
    if start_states(env).size == 1 and _make_takes(env.env_id, "is_slippery"):
        return "deterministic dynamics (--env-kwargs is_slippery=false)"
    return (
        "an environment with deterministic dynamics and one start state (e.g. --env "
        "CliffWalking-v1, or --env FrozenLake-v1 --env-kwargs is_slippery=false)"
    )


def _make_takes(env_id, name):
    """Whether ``gymnasium.make(env_id)`` takes the keyword argument ``name``."""
    import gymnasium  # (an optional extra: only for --env)
    from gymnasium.envs.registration import load_env_creator

    entry_point = gymnasium.spec(env_id).entry_point
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    try:
        return name in inspect.signature(creator).parameters
    except (TypeError, ValueError):  # no signature to read
        return False
