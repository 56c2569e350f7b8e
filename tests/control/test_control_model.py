"""control_model: its sites, its density (the exact posterior's, up to log Z), NumPyro's kernels."""

import arviz_stats
import jax
import numpy as np
import pytest
from numpyro.handlers import seed, trace
from numpyro.infer import HMC, MCMC, NUTS, SA, BarkerMH
from numpyro.infer.util import log_density

from pgm_rl.control import LinearQuadratic, control_model, pendulum, solve_lq
from pgm_rl.model import Trajectory


def double_integrator(noise_scale=None, dt=0.1):
    return LinearQuadratic(
        [[1.0, dt], [0.0, 1.0]],
        [[0.0], [dt]],
        np.eye(2),
        0.1 * np.eye(1),
        [1.0, 0.0],
        action_scale=2.0,
        noise_scale=noise_scale,
    )


def test_sites_and_shapes():
    problem = double_integrator(noise_scale=0.2)
    model_trace = trace(seed(control_model, 0)).get_trace(problem, 6, 0.5)
    assert model_trace["actions"]["value"].shape == (6, 1)
    assert model_trace["noise"]["value"].shape == (6, 2)
    assert model_trace["states"]["value"].shape == (7, 2)
    assert model_trace["rewards"]["value"].shape == (6,)
    assert model_trace["states"]["type"] == "deterministic"
    np.testing.assert_allclose(
        model_trace["optimality"]["fn"].log_factor, 0.5 * model_trace["rewards"]["value"].sum()
    )
    traj = seed(control_model, 0)(problem, 6, 0.5)
    assert isinstance(traj, Trajectory) and traj.outcomes.shape == (6, 2)
    deterministic = trace(seed(control_model, 0)).get_trace(double_integrator(), 6, 0.5)
    assert "noise" not in deterministic
    assert seed(control_model, 0)(double_integrator(), 6, 0.5).outcomes is None


@pytest.mark.parametrize("noise_scale", [None, 0.3])
def test_the_model_density_is_the_exact_posterior_times_z(noise_scale):
    problem, T, beta = double_integrator(noise_scale), 8, 2.0
    posterior = solve_lq(problem, T, beta)
    draws = posterior.sample(jax.random.key(0), 5)
    for i in range(5):
        latents = {"actions": draws["actions"][i]}
        if noise_scale is not None:
            latents["noise"] = draws["noise"][i]
        log_joint, _ = log_density(control_model, (problem, T, beta), {}, latents)
        exact = posterior.log_prob(draws["actions"][i], draws.get("noise", [None] * 5)[i])
        np.testing.assert_allclose(log_joint, exact + posterior.log_z, rtol=1e-10)


@pytest.mark.parametrize("kernel", [NUTS, HMC, BarkerMH, SA])
def test_numpyro_kernels_run_the_model(kernel):
    problem, T, beta = double_integrator(noise_scale=0.2), 5, 1.0
    mcmc = MCMC(kernel(control_model), num_warmup=100, num_samples=100, progress_bar=False)
    mcmc.run(jax.random.key(0), problem, T, beta)
    samples = mcmc.get_samples()
    assert samples["actions"].shape == (100, T, 1) and samples["noise"].shape == (100, T, 2)
    assert samples["states"].shape == (100, T + 1, 2)
    assert np.isfinite(samples["states"]).all()
    assert np.std(samples["actions"]) > 0  # it moved


def test_nuts_runs_nonlinear_dynamics():
    mcmc = MCMC(NUTS(control_model), num_warmup=50, num_samples=50, progress_bar=False)
    mcmc.run(jax.random.key(1), pendulum(), 10, 1.0)
    assert np.isfinite(mcmc.get_samples()["rewards"]).all()


def test_nuts_agrees_with_the_exact_posterior_on_a_short_horizon():
    """Fast check of the slow test's criterion: every action mean within 4 MCSE."""
    problem, T, beta = double_integrator(), 5, 1.0
    mcmc = MCMC(
        NUTS(control_model),
        num_warmup=300,
        num_samples=500,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(2), problem, T, beta)
    actions = np.asarray(mcmc.get_samples(group_by_chain=True)["actions"])[..., 0]
    exact = solve_lq(problem, T, beta)
    mcse = arviz_stats.mcse(actions, chain_axis=0, draw_axis=1)
    assert np.all(np.abs(actions.mean((0, 1)) - exact.mean[:, 0]) < 4 * mcse)


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        (("problem", 0, 1.0), ValueError, ["horizon", ">= 1"]),
        (("problem", 2.5, 1.0), TypeError, ["horizon"]),
        (("problem", 5, -0.5), ValueError, ["beta", ">= 0"]),
        (("a grid", 5, 1.0), TypeError, ["problem", "ControlProblem"]),
    ],
)
def test_bad_arguments_are_refused(args, error, words):
    args = tuple(double_integrator() if a == "problem" else a for a in args)
    with pytest.raises(error) as raised:
        seed(control_model, 0)(*args)
    for word in words:
        assert word in str(raised.value)


@pytest.mark.slow
@pytest.mark.parametrize("beta", [0.1, 1.0, 10.0])
def test_nuts_matches_the_exact_posterior_of_a_double_integrator(beta):
    """NUTS, 4 chains x 1000 (vectorised), T = 50: every action mean within 4 MCSE of exact,
    every variance within 15%, R-hat < 1.01."""
    problem, T = double_integrator(), 50
    mcmc = MCMC(
        NUTS(control_model),
        num_warmup=1000,
        num_samples=1000,
        num_chains=4,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(3), problem, T, beta)
    actions = np.asarray(mcmc.get_samples(group_by_chain=True)["actions"])[..., 0]  # (4, 1000, T)
    exact = solve_lq(problem, T, beta)
    mean, var = exact.mean[:, 0], exact.action_cov[:, 0, 0]
    mcse = np.asarray(arviz_stats.mcse(actions, chain_axis=0, draw_axis=1))
    z = np.abs(actions.mean((0, 1)) - mean) / mcse
    ratio = actions.var((0, 1)) / var
    r_hat = np.asarray(arviz_stats.rhat(actions, chain_axis=0, draw_axis=1))
    print(
        f"beta {beta}: max |z| {z.max():.2f}, variance ratio [{ratio.min():.3f}, "
        f"{ratio.max():.3f}], max R-hat {r_hat.max():.4f}"
    )
    assert z.max() < 4
    assert np.abs(ratio - 1).max() < 0.15
    assert r_hat.max() < 1.01
