"""Argument checks shared by every function that takes a world, and the words that describe one.

The only place outside the world's own class that reads its kind (random dynamics, random
start): :func:`latent_sites` (which random parts a trajectory has beyond its actions: the
latent sites of the model and the inputs of a rollout that cannot default), used by
:func:`require_deterministic` (for the code whose mathematics needs one start state and
deterministic steps) and :func:`describe_randomness` (for messages).
"""

from pgm_rl.worlds.tabular import NOT_SUPPORTED, TabularMDP

__all__ = ["check_env", "describe_randomness", "latent_sites", "require_deterministic"]


def check_env(env):
    """Return ``env`` if it is a :class:`~pgm_rl.worlds.tabular.TabularMDP`, else raise ``TypeError``."""
    if not isinstance(env, TabularMDP):
        raise TypeError(
            f"env must be a pgm_rl.TabularMDP (e.g. a GridWorld), got {type(env).__name__}"
        )
    return env


def latent_sites(world):
    """The random parts of a trajectory of ``world`` besides its actions, a tuple of names.

    ``"start"`` when the start is random (``start_probs`` has more than one state),
    ``"outcomes"`` when the dynamics are (K > 1), in that order. These are the latent sites of
    :func:`~pgm_rl.trajectory_model` besides ``"actions"``, and the inputs that
    :func:`~pgm_rl.dynamics.rollout` needs: elsewhere the start is the single start state and
    every outcome index is 0 (log prior 0), so they default.
    """
    flags = (("start", world.has_random_start), ("outcomes", world.has_random_dynamics))
    return tuple(name for name, random in flags if random)


def describe_randomness(world):
    """What is random in ``world`` in words ("" when nothing is).

    ``"stochastic dynamics"``, ``"a random start over N states"`` or both joined by "and".
    """
    latents = latent_sites(world)
    parts = ["stochastic dynamics"] if "outcomes" in latents else []
    if "start" in latents:
        parts.append(f"a random start over {int((world.start_probs > 0).sum())} states")
    return " and ".join(parts)


def require_deterministic(world, what):
    """Return ``world`` if its dynamics and start are deterministic, else raise ``ValueError``.

    For code whose mathematics needs one start state and deterministic steps (StepwiseMH, the
    most probable path): a stochastic world is refused, naming ``what`` and what to use instead.
    """
    randomness = describe_randomness(world)
    if randomness:
        raise ValueError(f"{what} got a TabularMDP with {randomness}: {NOT_SUPPORTED}")
    return world
