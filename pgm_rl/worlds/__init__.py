"""Worlds: what every model, solver, kernel and SMC run needs to know about an environment.

See :mod:`pgm_rl.worlds.protocol` for the protocol a world gives (start distribution, outcomes
of each state-action pair, their rewards and prior probabilities), and
:mod:`pgm_rl.worlds.checks` for the argument checks every public function shares.
"""

from pgm_rl.worlds.checks import check_env, describe_randomness, require_deterministic

__all__ = ["check_env", "describe_randomness", "require_deterministic"]
