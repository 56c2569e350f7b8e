"""Gymnasium toy-text environments (defined in :mod:`pgm_rl.worlds.gymnasium`, kept importable
from here)."""

from pgm_rl.worlds.gymnasium import GymnasiumMDP, from_gymnasium

__all__ = ["GymnasiumMDP", "from_gymnasium"]
