"""One record per kernel: what the CLI, the demo, the benchmarks, replica exchange and the tests read.

``KERNELS["action-gibbs"].make(model)`` builds the kernel; its record also says which
``chain_method`` it needs (NumPyro's Gibbs kernels and MixedHMC refuse ``"vectorized"``, so
they run their chains under ``jax.vmap``), which ``extra_fields`` record its acceptance rate,
and whether its pure ``step(key, state, beta)`` can serve as a replica-exchange rung.
``record_of(kernel)`` finds the record of a kernel built by hand, so swapping kernels is one
line::

    kernel = ParticleGibbs(trajectory_model, num_particles=64)  # or DiscreteHMCGibbs(NUTS(...))
    record = record_of(kernel)
    mcmc = MCMC(kernel, num_warmup=100, num_samples=100, chain_method=record.chain_method)
    mcmc.run(key, env, horizon, beta, extra_fields=record.extra_fields)
A kernel added here is automatically checked against exact inference by
``tests/kernels/test_registry.py``. Reading the registry imports no kernel, JAX or NumPyro (the
command line lists the kernels in its help at once); ``make`` imports what it builds.
"""

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["KERNELS", "KernelRecord", "make_kernel", "record_of"]


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
    kernel_class : str
        ``"module.ClassName"`` of the kernel ``make`` builds (the top-level kernel: NumPyro's
        ``DiscreteHMCGibbs`` for ``DiscreteHMCGibbs(NUTS(model))``); read by :func:`record_of`.
    """

    name: str
    make: Callable
    vmap_chains: bool
    extra_fields: tuple
    rung: bool
    builtin: bool
    targets_posterior: bool
    summary: str
    kernel_class: str

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
            "pgm_rl.kernels.trajectory_mh.TrajectoryMH",
        ),
        KernelRecord(
            "stepwise-mh", _stepwise_mh, False, _ACCEPT, False, False, False,
            "the notebook's per-step sampler (targets another distribution)",
            "pgm_rl.kernels.stepwise_mh.StepwiseMH",
        ),
        KernelRecord(
            "action-gibbs", _action_gibbs, False, _ACCEPT, True, False, True,
            "systematic-scan Gibbs over the actions, all candidates scored at once",
            "pgm_rl.kernels.action_gibbs.ActionGibbs",
        ),
        KernelRecord(
            "suffix-mh", _suffix_mh, False, _ACCEPT, True, False, True,
            "MH sweeps regenerating action suffixes from the prior",
            "pgm_rl.kernels.suffix_mh.SuffixMH",
        ),
        KernelRecord(
            "particle-gibbs", _particle_gibbs, False, _ACCEPT, True, False, True,
            "conditional SMC with ancestor sampling (256 particles)",
            "pgm_rl.kernels.particle_gibbs.ParticleGibbs",
        ),
        KernelRecord(
            "guided-particle-gibbs", _guided_particle_gibbs, False, _ACCEPT, False, False, True,
            "particle-gibbs proposing from soft_bellman at beta / 10 (importance-weighted)",
            "pgm_rl.kernels.particle_gibbs.GuidedParticleGibbs",
        ),
        KernelRecord(
            "replica-exchange", _replica_exchange, False,
            (*_ACCEPT, "kernel_state.swap_accept_prob"), False, False, True,
            "parallel tempering of suffix-mh over 6 inverse temperatures",
            "pgm_rl.kernels.replica_exchange.ReplicaExchange",
        ),
        KernelRecord(
            "discrete-hmc-gibbs", _discrete_hmc_gibbs, True,
            ("hmc_state.accept_prob", "hmc_state.diverging"), False, True, True,
            "NumPyro's DiscreteHMCGibbs(NUTS)",
            "numpyro.infer.hmc_gibbs.DiscreteHMCGibbs",
        ),
        KernelRecord(
            "mixed-hmc", _mixed_hmc, True, ("accept_prob", "hmc_state.diverging"),
            False, True, True,
            "NumPyro's MixedHMC(HMC)",
            "numpyro.infer.mixed_hmc.MixedHMC",
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


def record_of(kernel):
    """The :data:`KERNELS` record of a kernel instance: how to run it.

    Parameters
    ----------
    kernel : numpyro.infer.mcmc.MCMCKernel
        A registered kernel built by hand, e.g. ``ParticleGibbs(model, num_particles=64)`` or
        ``DiscreteHMCGibbs(NUTS(model))`` (a subclass gets its nearest registered base's record).

    Returns
    -------
    KernelRecord
        Pass ``record.chain_method`` to ``MCMC`` and ``record.extra_fields`` to ``MCMC.run``:
        the fields that record the acceptance rate (``"accept_prob"`` for pgm_rl's kernels,
        ``"hmc_state.accept_prob"`` for ``DiscreteHMCGibbs``), which
        :func:`pgm_rl.diagnostics.to_datatree` stores as ``sample_stats.acceptance_rate``.

    Raises
    ------
    ValueError
        When no record holds the kernel's class (e.g. NumPyro's ``DiscreteGibbs``).
    """
    by_class = {record.kernel_class: record for record in KERNELS.values()}
    for cls in type(kernel).__mro__:
        record = by_class.get(f"{cls.__module__}.{cls.__qualname__}")
        if record is not None:
            return record
    raise ValueError(
        f"kernel must be a registered kernel "
        f"({', '.join(sorted(name.rsplit('.', 1)[1] for name in by_class))}); got a "
        f"{type(kernel).__name__}: pass chain_method and extra_fields to MCMC yourself"
    )


def _record(name):
    if not isinstance(name, str) or name not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}; got {name!r}")
    return KERNELS[name]
