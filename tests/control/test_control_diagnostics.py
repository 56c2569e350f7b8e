"""Continuous runs as DataTrees, judged against the exact Gaussian posterior, and their
pictures."""

import jax
import matplotlib
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS

from pgm_rl.cli.control import double_integrator
from pgm_rl.control import LinearQuadratic, control_model, mpc, mppi, solve_lq
from pgm_rl.diagnostics.continuous import compare_to_gaussian, control_datatree
from pgm_rl.plots.control import plot_action_band, plot_episode

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def problem():
    return double_integrator()


def test_exact_draws_agree_with_the_exact_posterior(problem):
    exact = solve_lq(problem, 10, 1.0)
    dt = control_datatree(exact.sample(jax.random.key(0), 4000), problem, beta=1.0)
    posterior = dt["posterior"]
    assert posterior["actions"].dims == ("chain", "draw", "time", "action_dim")
    assert posterior["states"].dims == ("chain", "draw", "step", "state_dim")
    assert posterior["actions"].shape == (1, 4000, 10, 1)
    assert list(posterior["step"].values) == list(range(1, 11))
    assert dt.attrs["x0"] == [1.0, 0.0] and dt.attrs["kind"] == "control"
    comparison = compare_to_gaussian(dt, exact)
    assert not comparison.disagrees
    assert np.max(np.abs(comparison.mean_z)) < 4
    assert np.all(np.abs(comparison.variance_ratio - 1) < 4 * np.sqrt(2 / comparison.ess))
    # KL of the moment-matched Gaussian: of the order its sampling error alone
    assert comparison.kl < 3 * comparison.expected_kl


def test_a_wrong_sampler_disagrees(problem):
    """Draws whose mean is off by a fifth of a standard deviation, and draws twice too wide."""
    exact = solve_lq(problem, 10, 1.0)
    draws = exact.sample(jax.random.key(1), 4000)
    sd = np.sqrt(np.asarray(exact.action_cov)[:, 0, 0])
    shifted = {"actions": np.asarray(draws["actions"]) + 0.2 * sd[:, None]}
    comparison = compare_to_gaussian(control_datatree(shifted, problem, beta=1.0), exact)
    assert comparison.disagrees and "mean" in " ".join(comparison.lines())
    mean = np.asarray(exact.mean)
    wide = {"actions": mean + 2.0 * (np.asarray(draws["actions"]) - mean)}
    comparison = compare_to_gaussian(control_datatree(wide, problem, beta=1.0), exact)
    assert comparison.disagrees and np.all(comparison.variance_ratio > 3)
    assert comparison.kl > 10 * comparison.expected_kl


def test_nuts_run_converts_with_its_sample_stats(problem):
    mcmc = MCMC(NUTS(control_model), num_warmup=200, num_samples=300, num_chains=2,
                chain_method="sequential", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(2), problem, 5, 1.0)
    dt = control_datatree(mcmc, problem)
    assert dt.attrs["beta"] == 1.0 and dt.attrs["sampler"] == "NUTS"
    assert dt["posterior"]["actions"].shape == (2, 300, 5, 1)
    assert "diverging" in dt["sample_stats"]
    assert not compare_to_gaussian(dt, solve_lq(problem, 5, 1.0)).disagrees


def test_weighted_draws_count_their_importance_ess(problem):
    """MPPI's 10^4 draws at ESS ~ 360 (T = 10, beta = 10) resampled into one chain: the
    comparison divides by the importance ESS, not by the 10^4 copies."""
    result = mppi(problem, 10, 10.0, 10_000, jax.random.key(3))
    dt = control_datatree(result, problem, beta=10.0)
    assert dt["posterior"]["actions"].shape == (1, 10_000, 10, 1)
    assert dt.attrs["importance_ess"] == pytest.approx(float(result.ess))
    comparison = compare_to_gaussian(dt, solve_lq(problem, 10, 10.0))
    assert comparison.ess < float(result.ess)
    assert not comparison.disagrees


def test_stochastic_draws_need_their_noise(problem):
    noisy = LinearQuadratic(problem.A, problem.B, problem.Q, problem.R, problem.x0,
                            noise_scale=0.1)  # fmt: skip
    exact = solve_lq(noisy, 5, 1.0)
    draws = exact.sample(jax.random.key(4), 100)
    with pytest.raises(ValueError, match="noise"):
        control_datatree({"actions": draws["actions"]}, noisy)
    dt = control_datatree(draws, noisy, beta=1.0)
    assert dt["posterior"]["noise"].dims == ("chain", "draw", "time", "state_dim")


def test_mismatched_posterior_is_refused(problem):
    dt = control_datatree(solve_lq(problem, 5, 1.0).sample(jax.random.key(5), 50), problem,
                          beta=1.0)  # fmt: skip
    with pytest.raises(ValueError, match="beta"):
        compare_to_gaussian(dt, solve_lq(problem, 5, 2.0))
    with pytest.raises(ValueError, match="horizon"):
        compare_to_gaussian(dt, solve_lq(problem, 6, 1.0))


def test_pictures_are_written(problem, tmp_path):
    exact = solve_lq(problem, 10, 1.0)
    dt = control_datatree(exact.sample(jax.random.key(6), 500), problem, beta=1.0)
    figure = plot_action_band(dt, exact, save=tmp_path / "band.png")
    assert len(figure.axes[0].lines) == 4  # sampled mean, exact mean and its two 95% lines
    episode = mpc(problem, 20, jax.random.key(7), horizon=10, num_samples=100)
    plot_episode(episode, names=["position", "velocity"], save=tmp_path / "episode.png")
    assert (tmp_path / "band.png").stat().st_size > 0
    assert (tmp_path / "episode.png").stat().st_size > 0


def test_compare_to_reference_takes_a_gaussian_posterior(problem):
    """The one comparison entry point of pgm_rl.diagnostics routes a continuous run to
    compare_to_gaussian."""
    from pgm_rl.diagnostics import compare_to_reference

    exact = solve_lq(problem, 10, 1.0)
    draws = exact.sample(jax.random.key(1), 4000)
    dt = control_datatree(draws, problem, beta=1.0)
    routed, direct = compare_to_reference(dt, exact), compare_to_gaussian(dt, exact)
    np.testing.assert_array_equal(routed.mean_z, direct.mean_z)
    assert not routed.disagrees


def test_plot_episode_shows_the_applied_action_where_the_environment_clips():
    episode = mpc(double_integrator(), 5, jax.random.key(0), horizon=5, num_samples=50)
    episode = episode._replace(actions=np.asarray(episode.actions) * 0 + np.array([[3.0]]))
    fig = plot_episode(episode, action_bound=2.0)
    planned, applied = fig.axes[-1].lines[:2]
    assert np.max(planned.get_ydata()) == 3.0 and np.max(applied.get_ydata()) == 2.0


def test_to_datatree_summary_and_problems_take_a_continuous_run(problem):
    """The library's one entry point: to_datatree(mcmc, problem) is control_datatree; summary
    has the return and every action coordinate; problems names a wrong run's disagreements."""
    from pgm_rl.diagnostics import problems, summary, to_datatree

    mcmc = MCMC(NUTS(control_model), num_warmup=200, num_samples=300, num_chains=2,
                chain_method="vectorized", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.key(0), problem, 4, 1.0)
    dt = to_datatree(mcmc, problem)
    assert dt.attrs["kind"] == "control"
    table = summary(dt)
    assert list(table.index) == ["return"] + [f"actions[{t}, 0]" for t in range(4)]
    assert np.all(table["r_hat"] < 1.05)
    exact = solve_lq(problem, 4, 1.0)
    draws = exact.sample(jax.random.key(1), 4000)
    shifted = {"actions": np.asarray(draws["actions"]) + 0.3}
    wrong = control_datatree(shifted, problem, beta=1.0)
    found = problems(wrong, compare_to_gaussian(wrong, exact))
    assert any("mean of" in line and "disagrees" in line for line in found), found
    assert problems(control_datatree(draws, problem, beta=1.0), compare_to_gaussian(
        control_datatree(draws, problem, beta=1.0), exact)) == []  # fmt: skip
