"""MCMC kernels for trajectory posteriors, each usable through ``numpyro.infer.MCMC``.

Every kernel module follows one contract (:mod:`pgm_rl.kernels.base`):
``init(key, world, horizon, beta, **params) -> state`` and
``build_kernel(world, horizon, **params) -> step(key, state, beta) -> (state, info)``.

Every kernel has a record in :data:`pgm_rl.kernels.registry.KERNELS`. The names below are
imported lazily, on first use, so reading the registry loads no kernel, JAX or NumPyro.
``shard_chains(chains_mesh())`` is the ``chain_method`` that splits the chains over devices.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "KERNELS": "pgm_rl.kernels.registry",
    "ActionGibbs": "pgm_rl.kernels.action_gibbs",
    "GuidedParticleGibbs": "pgm_rl.kernels.particle_gibbs",
    "KernelParam": "pgm_rl.kernels.registry",
    "KernelRecord": "pgm_rl.kernels.registry",
    "MHInfo": "pgm_rl.kernels.base",
    "ParticleGibbs": "pgm_rl.kernels.particle_gibbs",
    "PureKernelAdapter": "pgm_rl.kernels.base",
    "RegenerationState": "pgm_rl.kernels.base",
    "ReplicaExchange": "pgm_rl.kernels.replica_exchange",
    "SamplerState": "pgm_rl.kernels.base",
    "StepwiseMH": "pgm_rl.kernels.stepwise_mh",
    "SuffixMH": "pgm_rl.kernels.suffix_mh",
    "TrajectoryKernel": "pgm_rl.kernels.base",
    "TrajectoryMH": "pgm_rl.kernels.trajectory_mh",
    "chains_mesh": "pgm_rl.kernels.sharding",
    "make_kernel": "pgm_rl.kernels.registry",
    "mh_accept": "pgm_rl.kernels.base",
    "parse_kernel_args": "pgm_rl.kernels.registry",
    "record_of": "pgm_rl.kernels.registry",
    "shard_chains": "pgm_rl.kernels.sharding",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    """Import the module behind a public name on first use and cache the name here."""
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pgm_rl.kernels' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted({*globals(), *__all__})
