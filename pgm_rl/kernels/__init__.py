"""MCMC kernels for trajectory posteriors, each usable through ``numpyro.infer.MCMC``."""

from pgm_rl.kernels.action_gibbs import ActionGibbs
from pgm_rl.kernels.base import MHInfo, PureKernelAdapter, SamplerState, mh_accept
from pgm_rl.kernels.particle_gibbs import ParticleGibbs
from pgm_rl.kernels.replica_exchange import ReplicaExchange
from pgm_rl.kernels.stepwise_mh import StepwiseMH
from pgm_rl.kernels.suffix_mh import SuffixMH
from pgm_rl.kernels.trajectory_mh import TrajectoryMH

__all__ = [
    "ActionGibbs",
    "MHInfo",
    "ParticleGibbs",
    "PureKernelAdapter",
    "ReplicaExchange",
    "SamplerState",
    "StepwiseMH",
    "SuffixMH",
    "TrajectoryMH",
    "mh_accept",
]
