"""Kernels by command-line name: ``make_kernel("action-gibbs")`` -> an ``MCMCKernel``.

Also says which ``chain_method`` each kernel needs: NumPyro's Gibbs kernels and MixedHMC
refuse ``"vectorized"``, so they run their chains under ``jax.vmap`` instead.
"""

import jax

from pgm_rl.model import trajectory_model


def _trajectory_mh(model):
    from pgm_rl.kernels.trajectory_mh import TrajectoryMH

    return TrajectoryMH(model)


def _stepwise_mh(model):
    from pgm_rl.kernels.stepwise_mh import StepwiseMH

    return StepwiseMH(model)


def _action_gibbs(model):
    from pgm_rl.kernels.action_gibbs import ActionGibbs

    return ActionGibbs(model)


def _suffix_mh(model):
    from pgm_rl.kernels.suffix_mh import SuffixMH

    return SuffixMH(model)


def _particle_gibbs(model):
    from pgm_rl.kernels.particle_gibbs import ParticleGibbs

    return ParticleGibbs(model)


def _replica_exchange(model):
    from pgm_rl.kernels.replica_exchange import ReplicaExchange

    return ReplicaExchange(model)


def _discrete_hmc_gibbs(model):
    from numpyro.infer import NUTS, DiscreteHMCGibbs

    return DiscreteHMCGibbs(NUTS(model))


def _mixed_hmc(model):
    from numpyro.infer import HMC, MixedHMC

    return MixedHMC(HMC(model, trajectory_length=1.2), num_discrete_updates=20)


KERNELS = {
    "trajectory-mh": _trajectory_mh,
    "stepwise-mh": _stepwise_mh,
    "action-gibbs": _action_gibbs,
    "suffix-mh": _suffix_mh,
    "particle-gibbs": _particle_gibbs,
    "replica-exchange": _replica_exchange,
    "discrete-hmc-gibbs": _discrete_hmc_gibbs,
    "mixed-hmc": _mixed_hmc,
}
BUILTIN_KERNELS = ("discrete-hmc-gibbs", "mixed-hmc")


def make_kernel(name, model=trajectory_model):
    """The kernel registered as ``name`` (one of :data:`KERNELS`) on ``model``."""
    if name not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {name!r}")
    return KERNELS[name](model)


def chain_method_for(name):
    """``"vectorized"`` for pgm_rl kernels, ``jax.vmap`` for NumPyro's Gibbs kernels and MixedHMC."""
    if name not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {name!r}")
    return jax.vmap if name in BUILTIN_KERNELS else "vectorized"
