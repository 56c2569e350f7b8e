"""Exact inference: the trajectory posterior, the soft-Bellman policy, policy evaluation and
the most probable path.

Modules: :mod:`~pgm_rl.exact.posterior` (:func:`solve`, :class:`ExactPosterior`),
:mod:`~pgm_rl.exact.policy` (:func:`soft_bellman`, :func:`evaluate_policy`),
:mod:`~pgm_rl.exact.map_path` (:func:`most_probable_path`),
:mod:`~pgm_rl.exact.trajectories` (draws and probabilities shared by the results),
:mod:`~pgm_rl.exact.checkpointed` (``checkpoint=True``: V every ~sqrt(T) steps),
:mod:`~pgm_rl.exact.sharding` (states split over devices: :func:`states_mesh`) and
:mod:`~pgm_rl.exact.checks`. The recursions themselves are in :mod:`pgm_rl.messages`.
"""

from pgm_rl.exact.checkpointed import CheckpointedPosterior, CheckpointedSoftBellman
from pgm_rl.exact.map_path import most_probable_path
from pgm_rl.exact.policy import PolicyEvaluation, SoftBellmanPolicy, evaluate_policy, soft_bellman
from pgm_rl.exact.posterior import ExactPosterior, solve
from pgm_rl.exact.sharding import states_mesh

__all__ = [
    "CheckpointedPosterior",
    "CheckpointedSoftBellman",
    "ExactPosterior",
    "PolicyEvaluation",
    "SoftBellmanPolicy",
    "evaluate_policy",
    "most_probable_path",
    "soft_bellman",
    "solve",
    "states_mesh",
]
