"""One record per kernel: what the CLI, the demo, the benchmarks, replica exchange and the tests read.

``KERNELS["action-gibbs"].make(model)`` builds the kernel; its record also says which
``chain_method`` it needs (NumPyro's Gibbs kernels and MixedHMC refuse ``"vectorized"``, so
they run their chains under ``jax.vmap``), which ``extra_fields`` record its acceptance rate,
and whether its pure ``step(key, state, beta)`` can serve as a replica-exchange rung.
A kernel added here is automatically checked against exact inference by
``tests/kernels/test_registry.py``. Reading the registry imports no kernel, JAX or NumPyro (the
command line lists the kernels in its help at once); ``make`` imports what it builds.
"""

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["KERNELS", "KernelRecord", "make_kernel"]


class KernelRecord(NamedTuple):
    """How to build and run one kernel.

    Attributes
    ----------
    name : str
        The command-line name, e.g. ``"action-gibbs"``.
    make : callable
        ``make(model) -> numpyro.infer.mcmc.MCMCKernel`` with the default settings.
    vmap_chains : bool
        Run the chains under ``jax.vmap`` (NumPyro's Gibbs kernels and MixedHMC refuse
        ``"vectorized"``); :attr:`chain_method` is what to pass to ``MCMC``.
    extra_fields : tuple of str
        ``MCMC.run(extra_fields=...)`` that records the acceptance rate (and divergences).
    rung : bool
        Whether the kernel has a pure ``build_step(mdp, horizon) -> step(key, state, beta)``
        over :class:`~pgm_rl.kernels.base.RegenerationState`, usable by replica exchange.
    builtin : bool
        NumPyro's own kernel (not pgm_rl's).
    targets_posterior : bool
        ``False`` for the notebook's per-step sampler, which targets another distribution.
    summary : str
        One line for help texts.
    """

    name: str
    make: Callable
    vmap_chains: bool
    extra_fields: tuple
    rung: bool
    builtin: bool
    targets_posterior: bool
    summary: str

    @property
    def chain_method(self):
        """``jax.vmap`` or ``"vectorized"``: the ``chain_method`` argument of ``MCMC``."""
        if self.vmap_chains:
            import jax

            return jax.vmap
        return "vectorized"


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


def _guided_particle_gibbs(model):
    from pgm_rl.kernels.particle_gibbs import GuidedParticleGibbs

    return GuidedParticleGibbs(model)


def _replica_exchange(model):
    from pgm_rl.kernels.replica_exchange import ReplicaExchange

    return ReplicaExchange(model)


def _discrete_hmc_gibbs(model):
    from numpyro.infer import NUTS, DiscreteHMCGibbs

    return DiscreteHMCGibbs(NUTS(model))


def _mixed_hmc(model):
    from numpyro.infer import HMC, MixedHMC

    return MixedHMC(HMC(model, trajectory_length=1.2), num_discrete_updates=20)


_ACCEPT = ("accept_prob",)
KERNELS = {
    record.name: record
    for record in (
        KernelRecord(
            "trajectory-mh", _trajectory_mh, False, _ACCEPT, True, False, True,
            "the notebook's sampler: independence MH with whole prior rollouts",
        ),
        KernelRecord(
            "stepwise-mh", _stepwise_mh, False, _ACCEPT, False, False, False,
            "the notebook's per-step sampler (targets another distribution)",
        ),
        KernelRecord(
            "action-gibbs", _action_gibbs, False, _ACCEPT, True, False, True,
            "systematic-scan Gibbs over the actions, all candidates scored at once",
        ),
        KernelRecord(
            "suffix-mh", _suffix_mh, False, _ACCEPT, True, False, True,
            "MH sweeps regenerating action suffixes from the prior",
        ),
        KernelRecord(
            "particle-gibbs", _particle_gibbs, False, _ACCEPT, True, False, True,
            "conditional SMC with ancestor sampling (256 particles)",
        ),
        KernelRecord(
            "guided-particle-gibbs", _guided_particle_gibbs, False, _ACCEPT, False, False, True,
            "particle-gibbs proposing from soft_bellman at beta / 10 (importance-weighted)",
        ),
        KernelRecord(
            "replica-exchange", _replica_exchange, False,
            (*_ACCEPT, "kernel_state.swap_accept_prob"), False, False, True,
            "parallel tempering of suffix-mh over 6 inverse temperatures",
        ),
        KernelRecord(
            "discrete-hmc-gibbs", _discrete_hmc_gibbs, True,
            ("hmc_state.accept_prob", "hmc_state.diverging"), False, True, True,
            "NumPyro's DiscreteHMCGibbs(NUTS)",
        ),
        KernelRecord(
            "mixed-hmc", _mixed_hmc, True, ("accept_prob", "hmc_state.diverging"),
            False, True, True,
            "NumPyro's MixedHMC(HMC)",
        ),
    )
}  # fmt: skip


def make_kernel(name, model=None):
    """The kernel registered as ``name`` (a key of :data:`KERNELS`) on ``model``.

    ``model`` defaults to :func:`pgm_rl.trajectory_model`.
    """
    record = _record(name)
    if model is None:
        from pgm_rl.model import trajectory_model

        model = trajectory_model
    return record.make(model)


def _record(name):
    if not isinstance(name, str) or name not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {name!r}")
    return KERNELS[name]
