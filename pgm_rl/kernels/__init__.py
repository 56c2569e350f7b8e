"""MCMC kernels for trajectory posteriors, each usable through ``numpyro.infer.MCMC``."""

from pgm_rl.kernels.base import MHInfo, PureKernelAdapter, SamplerState, mh_accept
from pgm_rl.kernels.trajectory_mh import TrajectoryMH

__all__ = ["MHInfo", "PureKernelAdapter", "SamplerState", "TrajectoryMH", "mh_accept"]
