"""What every part of ``pgm-rl`` shares: exit codes, the picture names, one-line errors.

Light on purpose (the standard library only): the parser imports it, and ``pgm-rl --help``
must answer without JAX.
"""

EXIT_PROBLEMS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 128 + 15  # SIGTERM
# The picture of ``exact --env ... --plots DIR``.
ENV_OCCUPANCY_FILE = "occupancy_env.png"
# The picture of ``irl --plots DIR``.
REWARD_POSTERIOR_FILE = "reward_posterior.png"
# The pictures of ``fit --plots DIR`` (the policy picture only on a grid map).
ELBO_TRACE_FILE = "elbo_trace.png"
POLICY_FILE = "policy.png"
# The pictures of ``control --plots DIR``.
CONTROL_BAND_FILE = "action_band.png"
CONTROL_EPISODE_FILE = "episode.png"


class CommandError(Exception):
    """A failure reported as one line with exit code 2 (e.g. a missing optional extra)."""


def one_line(message):
    """``message`` as one line: its words joined by single spaces."""
    return " ".join(str(message).split())
