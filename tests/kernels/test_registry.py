"""Every registered kernel against exact inference: a kernel added to the registry cannot skip it.

Tolerances come from the effective sample size: the mean TV of the state marginals must lie
within 2x what ``n_eff`` iid draws give (``helpers.expected_tv``), with ``n_eff`` the median bulk
ESS of the occupancy indicators, the chains must agree (R-hat < 1.05) and ``n_eff`` must be
large enough for the check to mean something.
"""

import jax
import numpy as np
import pytest
from conftest import random_grid
from helpers import expected_tv, occupancy_ess, run_mcmc
from numpyro.infer.mcmc import MCMCKernel

import pgm_rl
from pgm_rl.diagnostics import empirical_state_marginals, tv_distance
from pgm_rl.kernels import KERNELS, make_kernel
from pgm_rl.kernels.stepwise_mh import stepwise_target

# A non-degenerate problem: random rewards in [-2, 2] on a 3x3 grid, T = 5.
ENV, HORIZON, BETA = random_grid(1), 5, 0.5
MIN_ESS = 150


def target_of(record):
    if record.targets_posterior:
        return pgm_rl.solve(ENV, HORIZON, BETA)
    return stepwise_target(ENV, HORIZON, BETA)


def params():
    return list(_params())


def _params():
    for name, record in KERNELS.items():
        marks = [pytest.mark.slow] if record.builtin else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", params())
def test_registered_kernel_matches_exact(name):
    record = KERNELS[name]
    mcmc = run_mcmc(
        record.make(pgm_rl.trajectory_model),
        ENV,
        HORIZON,
        BETA,
        warmup=300,
        draws=1500,
        chain_method=record.chain_method,
        extra_fields=record.extra_fields,
    )
    states = np.asarray(mcmc.get_samples(group_by_chain=True)["states"])
    target = target_of(record)
    tv = tv_distance(empirical_state_marginals(states, ENV.n_states), target.state_marginals)
    ess, r_hat = occupancy_ess(states, ENV.n_states)
    assert r_hat < 1.05, f"{name}: chains disagree (max R-hat {r_hat:.3f})"
    assert ess >= MIN_ESS, f"{name}: median ESS {ess:.0f} too small to check against exact"
    bound = 2.0 * expected_tv(target.state_marginals, ess)
    assert tv.mean() <= bound, f"{name}: mean TV {tv.mean():.4f} > {bound:.4f} (ESS {ess:.0f})"
    fields = mcmc.get_extra_fields()
    for field in record.extra_fields:
        assert field in fields


# Stochastic dynamics: slippery FrozenLake 4x4 (random outcomes, terminal holes and goal).
STOCHASTIC_ENV, STOCHASTIC_HORIZON, STOCHASTIC_BETA = (
    pgm_rl.envs.from_gymnasium("FrozenLake-v1"),
    6,
    2.0,
)


# Default run: the kernels with their own stochastic conditionals; the rest in the slow run
# (each kernel's stochastic step is also checked by tests/kernels/test_stochastic_kernels.py).
STOCHASTIC_DEFAULT = ("action-gibbs", "suffix-mh")


def stochastic_params():
    for name, record in KERNELS.items():
        if record.targets_posterior:
            slow = name not in STOCHASTIC_DEFAULT
            yield pytest.param(name, marks=[pytest.mark.slow] if slow else [], id=name)


@pytest.mark.parametrize("name", list(stochastic_params()))
def test_registered_kernel_matches_exact_on_frozen_lake(name):
    """Every kernel that targets the posterior samples the stochastic one: start, actions and
    outcomes (the optimistic posterior of Levine 2018, section 2.4)."""
    record = KERNELS[name]
    env = STOCHASTIC_ENV
    mcmc = run_mcmc(
        record.make(pgm_rl.trajectory_model),
        env,
        STOCHASTIC_HORIZON,
        STOCHASTIC_BETA,
        warmup=300,
        draws=1500,
        chain_method=record.chain_method,
        extra_fields=record.extra_fields,
    )
    samples = mcmc.get_samples(group_by_chain=True)
    assert "outcomes" in samples
    states = np.asarray(samples["states"])
    target = pgm_rl.solve(env, STOCHASTIC_HORIZON, STOCHASTIC_BETA)
    tv = tv_distance(empirical_state_marginals(states, env.n_states), target.state_marginals)
    ess, r_hat = occupancy_ess(states, env.n_states)
    assert r_hat < 1.05, f"{name}: chains disagree (max R-hat {r_hat:.3f})"
    assert ess >= MIN_ESS, f"{name}: median ESS {ess:.0f} too small to check against exact"
    bound = 2.0 * expected_tv(target.state_marginals, ess)
    assert tv.mean() <= bound, f"{name}: mean TV {tv.mean():.4f} > {bound:.4f} (ESS {ess:.0f})"


def test_kernels_not_targeting_the_posterior_refuse_stochastic_mdps():
    for record in KERNELS.values():
        if not record.targets_posterior:
            with pytest.raises(ValueError, match="deterministic dynamics"):
                run_mcmc(record.make(pgm_rl.trajectory_model), STOCHASTIC_ENV, 3, 1.0,
                         warmup=1, draws=1, chains=1)  # fmt: skip


@pytest.mark.parametrize("name", list(KERNELS))
def test_record_is_consistent(name):
    record = KERNELS[name]
    assert record.name == name and record.summary
    kernel = make_kernel(name)
    assert isinstance(kernel, MCMCKernel)
    assert kernel.model is pgm_rl.trajectory_model
    assert callable(getattr(kernel, "build_step", None)) == record.rung
    assert record.chain_method == ("vectorized" if not record.vmap_chains else jax.vmap)
    assert not record.vmap_chains or record.builtin


def test_make_kernel_rejects_unknown_names():
    with pytest.raises(ValueError, match="kernel must be one of trajectory-mh"):
        make_kernel("nuts")
    with pytest.raises(ValueError, match="kernel must be one of"):
        make_kernel(None)


def test_stepwise_mh_misses_the_posterior():
    """The one registered kernel that targets something else is far from the posterior."""
    exact = pgm_rl.solve(ENV, HORIZON, BETA)
    target = stepwise_target(ENV, HORIZON, BETA)
    assert tv_distance(target.state_marginals, exact.state_marginals).mean() > 0.1
