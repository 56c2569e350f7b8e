"""Statistical checks of pgm_rl.irl (slow): SBC of the NUTS posterior, a non-identified direction,
vectorised NUTS over data sets."""

import jax
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

import pgm_rl
from pgm_rl import irl

pytestmark = pytest.mark.slow


def sbc_problem():
    """The issue's SBC setting: 4x4 grid, F = 4 random features (sd 0.5), T = 8, N = 20."""
    features = np.random.default_rng(0).normal(size=(16, 4)) * 0.5
    return pgm_rl.GridWorld(np.zeros((4, 4)), (3, 0)), features


def test_simulation_based_calibration_200_replications():
    env, features = sbc_problem()
    result = irl.simulation_based_calibration(
        jax.random.key(0),
        env,
        features,
        horizon=8,
        num_demonstrations=20,
        num_replications=200,
        num_warmup=300,
        thin=5,
        num_draws=99,
        target_accept_prob=0.9,
        max_tree_depth=6,
    )
    assert result.ranks.shape == (200, 4)
    # Uniform ranks alone pass a sampler that ignores the data (prior draws rank uniformly too):
    # the data must narrow the posterior. Laplace approximations at this size give a posterior
    # sd of 0.2-1.0 per replication, 0.40-0.59 on average per weight; prior draws give 1.0.
    posterior_sd = result.posterior.std(axis=1).mean(axis=0)  # (F,), averaged over replications
    assert np.all(posterior_sd < 0.8), posterior_sd
    # chi-square on 10 bins of the ranks, level 0.01 for every parameter
    assert np.all(result.p_values > 0.01), result.p_values
    # divergences: at most a handful of the 200 * 495 transitions
    assert result.divergences.sum() <= 0.001 * 200 * 495, result.divergences.sum()


def test_constant_feature_posterior_equals_prior():
    """Adding c to every reward shifts log Z by beta * T * c: the constant feature's weight is
    not identified, so its posterior is the prior Normal(0, 2), sampled without divergences."""
    env = pgm_rl.GridWorld(np.zeros((4, 4)), (3, 0))
    rng = np.random.default_rng(1)
    features = np.concatenate([rng.normal(size=(16, 1)), np.ones((16, 1))], axis=1)
    demos = irl.simulate(jax.random.key(2), env, features, [1.0, 0.0], 8, 20)
    mcmc = MCMC(
        NUTS(irl.reward_model),
        num_warmup=500,
        num_samples=2000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(3), env, features, demos, prior_scale=2.0, extra_fields=("diverging",))
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    constant = np.asarray(mcmc.get_samples()["theta"][:, 1])
    import arviz_stats

    draws = constant.reshape(4, -1)
    ess = float(arviz_stats.ess(draws, chain_axis=0, draw_axis=1))
    assert abs(constant.mean()) < 4 * 2.0 / np.sqrt(ess)
    assert constant.std() == pytest.approx(2.0, rel=4 / np.sqrt(2 * ess) + 0.02)
    # the identified weight is learned: its posterior is much narrower than the prior
    assert np.asarray(mcmc.get_samples()["theta"][:, 0]).std() < 1.0


def test_sample_batched_matches_mcmc_on_the_model():
    """The vmapped functional NUTS and MCMC(NUTS(reward_model)) target the same posterior."""
    env, features = sbc_problem()
    sets = [irl.simulate(jax.random.key(s), env, features, [1, -1, 0.5, 0], 8, 20) for s in (0, 1)]
    demos = {k: np.stack([np.asarray(d[k]) for d in sets]) for k in ("actions", "states")}
    batched = irl.sample_batched(jax.random.key(0), env, features, demos, num_samples=3000)
    assert batched["theta"].shape == (2, 3000, 4)
    for r in range(2):
        mcmc = MCMC(NUTS(irl.reward_model), num_warmup=500, num_samples=3000, progress_bar=False)
        mcmc.run(jax.random.key(r), env, features, {k: v[r] for k, v in demos.items()})
        reference = np.asarray(mcmc.get_samples()["theta"])
        mine = np.asarray(batched["theta"][r])
        np.testing.assert_allclose(mine.mean(0), reference.mean(0), atol=0.1)
        np.testing.assert_allclose(mine.std(0), reference.std(0), rtol=0.15)


def test_recovery_on_the_notebook_grid():
    """One-hot rewards on the notebook grid (F = 36, T = 20, beta = 0.05), theta from the prior
    Normal(0, 20): the posterior mean tracks the truth, 90% intervals cover it, and the
    posterior sd shrinks from N = 50 to N = 500 demonstrations."""
    env = pgm_rl.GridWorld.notebook()
    features = np.eye(36)
    theta = np.asarray(jax.random.normal(jax.random.key(11), (36,))) * 20.0
    results = {}
    for n in (50, 500):
        demos = irl.simulate(jax.random.key(n), env, features, theta, 20, n, 0.05)
        mcmc = MCMC(NUTS(irl.reward_model), num_warmup=400, num_samples=600, progress_bar=False)
        mcmc.run(jax.random.key(0), env, features, demos, 0.05, 20.0, extra_fields=("diverging",))
        assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
        draws = np.asarray(mcmc.get_samples()["theta"])
        low, high = np.quantile(draws, [0.05, 0.95], axis=0)
        results[n] = (
            np.corrcoef(draws.mean(0), theta)[0, 1],
            np.mean((theta >= low) & (theta <= high)),
            draws.std(0).mean(),
        )
    (corr50, cover50, sd50), (corr500, cover500, sd500) = results[50], results[500]
    assert corr500 > 0.75 and corr500 > corr50
    assert cover50 >= 0.7 and cover500 >= 0.75  # 36 correlated cells: binomial sd ~ 0.05
    assert sd500 < 0.8 * sd50 < 0.8 * 20.0
