"""Argument checks shared by every function that takes a world, and the words that describe one.

The only places outside the world's own class that read its kind (random dynamics, random
start): :func:`require_deterministic` (for the code whose mathematics needs one start state and
deterministic steps) and :func:`describe_randomness` (for messages).
"""

from pgm_rl.envs import TabularMDP

__all__ = ["check_env", "describe_randomness", "require_deterministic"]

# What handles stochastic worlds, for the refusals of the code that does not.
_NOT_SUPPORTED = (
    "this code handles deterministic dynamics and a single start state only (as do StepwiseMH "
    "and most_probable_path); trajectory_model, the other kernels, run_smc, solve, "
    "soft_bellman and evaluate_policy take stochastic MDPs"
)


def check_env(env):
    """Return ``env`` if it is a :class:`~pgm_rl.envs.TabularMDP`, else raise ``TypeError``."""
    if not isinstance(env, TabularMDP):
        raise TypeError(
            f"env must be a pgm_rl.TabularMDP (e.g. a GridWorld), got {type(env).__name__}"
        )
    return env


def describe_randomness(world):
    """What is random in ``world`` in words ("" when nothing is).

    ``"stochastic dynamics"``, ``"a random start over N states"`` or both joined by "and".
    """
    parts = ["stochastic dynamics"] if world.has_random_dynamics else []
    if world.has_random_start:
        parts.append(f"a random start over {int((world.start_probs > 0).sum())} states")
    return " and ".join(parts)


def require_deterministic(world, what):
    """Return ``world`` if its dynamics and start are deterministic, else raise ``ValueError``.

    For code whose mathematics needs one start state and deterministic steps (StepwiseMH, the
    most probable path): a stochastic world is refused, naming ``what`` and what to use instead.
    """
    randomness = describe_randomness(world)
    if randomness:
        raise ValueError(f"{what} got a TabularMDP with {randomness}: {_NOT_SUPPORTED}")
    return world
