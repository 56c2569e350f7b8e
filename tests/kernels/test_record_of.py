"""``record_of(kernel)``: the registry record of a kernel built by hand, so that swapping kernels
in ``MCMC`` is one line (chain_method and the acceptance extra_fields come with it)."""

import jax
import pytest
from numpyro.infer import NUTS, DiscreteGibbs, DiscreteHMCGibbs

import pgm_rl
from pgm_rl.kernels import KERNELS, ParticleGibbs, record_of

MODEL = pgm_rl.trajectory_model


@pytest.mark.parametrize("name", list(KERNELS))
def test_every_record_is_found_from_its_kernel(name):
    kernel = KERNELS[name].make(MODEL)
    cls = type(kernel)
    assert KERNELS[name].kernel_class == f"{cls.__module__}.{cls.__qualname__}"
    assert record_of(kernel) is KERNELS[name]


def test_subclass_gets_its_base_record_and_unknown_kernels_are_refused():
    class MyParticleGibbs(ParticleGibbs):
        pass

    assert record_of(MyParticleGibbs(MODEL, num_particles=8)) is KERNELS["particle-gibbs"]
    with pytest.raises(ValueError, match=r"registered kernel.*DiscreteGibbs"):
        record_of(DiscreteGibbs(MODEL))
    with pytest.raises(ValueError, match=r"registered kernel.*str"):
        record_of("particle-gibbs")


def test_discrete_hmc_gibbs_record_says_how_to_run_it():
    """As the README wrote it, DiscreteHMCGibbs crashed twice: "vectorized" chains and
    ("accept_prob",). Its record gives jax.vmap and hmc_state.accept_prob (tests/test_readme.py
    runs it)."""
    record = record_of(DiscreteHMCGibbs(NUTS(MODEL)))
    assert record.chain_method is jax.vmap
    assert "hmc_state.accept_prob" in record.extra_fields
