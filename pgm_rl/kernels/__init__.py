"""MCMC kernels for trajectory posteriors, each usable through ``numpyro.infer.MCMC``.

Every kernel has a record in :data:`pgm_rl.kernels.registry.KERNELS`.
"""

from pgm_rl.kernels.action_gibbs import ActionGibbs
from pgm_rl.kernels.base import (
    MHInfo,
    PureKernelAdapter,
    RegenerationState,
    SamplerState,
    TrajectoryKernel,
    mh_accept,
)
from pgm_rl.kernels.particle_gibbs import ParticleGibbs
from pgm_rl.kernels.registry import KERNELS, KernelRecord, make_kernel
from pgm_rl.kernels.replica_exchange import ReplicaExchange
from pgm_rl.kernels.stepwise_mh import StepwiseMH
from pgm_rl.kernels.suffix_mh import SuffixMH
from pgm_rl.kernels.trajectory_mh import TrajectoryMH

__all__ = [
    "KERNELS",
    "ActionGibbs",
    "KernelRecord",
    "MHInfo",
    "ParticleGibbs",
    "PureKernelAdapter",
    "RegenerationState",
    "ReplicaExchange",
    "SamplerState",
    "StepwiseMH",
    "SuffixMH",
    "TrajectoryKernel",
    "TrajectoryMH",
    "make_kernel",
    "mh_accept",
]
