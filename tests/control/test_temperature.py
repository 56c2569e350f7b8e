"""choose_beta: the largest beta whose MPPI ESS stays above the target, found exactly for the
drawn samples (the ESS is monotone in beta for fixed draws)."""

import jax
import numpy as np
import pytest

from pgm_rl.cli.control import double_integrator
from pgm_rl.control import BetaChoice, choose_beta, mppi, solve_lq


def test_the_chosen_beta_sits_at_the_target_ess_and_its_log_z_is_right():
    problem = double_integrator()
    choice = choose_beta(problem, 20, 10_000, jax.random.key(0), target_ess=200.0)
    assert isinstance(choice, BetaChoice) and choice.status == "found"
    np.testing.assert_allclose(choice.ess, 200.0, rtol=1e-6)
    # the same draws as mppi with the same key: its ESS at that beta is the chosen one
    result = mppi(problem, 20, choice.beta, 10_000, jax.random.key(0))
    np.testing.assert_allclose(float(result.ess), choice.ess, rtol=1e-6)
    np.testing.assert_allclose(float(result.log_z), choice.log_z, rtol=1e-9)
    exact = solve_lq(problem, 20, choice.beta)
    assert abs(choice.log_z - float(exact.log_z)) < 3 * choice.log_z_se
    # and just above it the ESS falls below the target
    above = mppi(problem, 20, choice.beta * 1.01, 10_000, jax.random.key(0))
    assert float(above.ess) < 200.0


def test_the_ess_curve_falls_with_beta():
    choice = choose_beta(double_integrator(), 20, 1000, jax.random.key(1))
    ess = choice.grid["ess"]
    assert ess.shape == (25,) and np.all(np.diff(ess) <= 1e-9 * ess[:-1])


def test_the_ends_of_the_range_are_reported():
    problem = double_integrator()
    upper = choose_beta(problem, 5, 1000, jax.random.key(2), beta_range=(1e-3, 1e-2))
    assert upper.status == "upper" and upper.beta == pytest.approx(1e-2)
    lower = choose_beta(problem, 5, 1000, jax.random.key(2), target_ess=900,
                        beta_range=(100.0, 1000.0))  # fmt: skip
    assert lower.status == "lower" and lower.beta == pytest.approx(100.0)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"target_ess": 0.5}, ["target_ess"]),
        ({"target_ess": 5000.0}, ["target_ess"]),
        ({"beta_range": (1.0, 0.1)}, ["beta_range"]),
        ({"beta_range": (0.0, 1.0)}, ["beta_range"]),
        ({"num_samples": 1}, ["num_samples"]),
    ],
)
def test_bad_input_is_refused(change, words):
    arguments = {"problem": double_integrator(), "horizon": 5, "num_samples": 1000,
                 "key": jax.random.key(0)}  # fmt: skip
    arguments.update(change)
    with pytest.raises((ValueError, TypeError)) as error:
        choose_beta(**arguments)
    for word in words:
        assert word in str(error.value)
