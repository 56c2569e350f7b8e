"""pgm_rl.irl: arguments refused by name before any work, the point estimate compiled once and
regularised by the model's prior by default."""

import jax
import numpy as np
import pytest

import pgm_rl
import pgm_rl.irl.calibration
from pgm_rl import irl


def _grid(seed=0):
    return pgm_rl.GridWorld(np.random.default_rng(seed).normal(size=(3, 3)), (1, 1))


def _demos(env, n=50, seed=0, horizon=4):
    return pgm_rl.solve(env, horizon, 1.0).sample(jax.random.key(seed), n)


@pytest.mark.parametrize("beta", [float("nan"), -1.0, float("inf")])
@pytest.mark.parametrize("function", [irl.log_z, irl.soft_bellman_elbo])
def test_log_z_refuses_a_bad_beta(function, beta):
    env = _grid()
    with pytest.raises(ValueError, match="beta must be a finite real number >= 0"):
        function(env, env.reward, 4, beta)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"tol": float("nan")}, ValueError, "tol must be a finite real number >= 0"),
        ({"tol": -1.0}, ValueError, "tol must be"),
        ({"tol": "small"}, TypeError, "tol must be a real number"),
        ({"init": [np.nan, 0.0]}, ValueError, "init must be finite"),
        ({"init": [0.0]}, ValueError, r"theta must have shape \(F,\) = \(2,\)"),
        ({"init": ["a", "b"]}, TypeError, "init must be a real array"),
        ({"max_steps": 2.7}, TypeError, "max_steps must be a positive int"),
        ({"max_steps": 0}, ValueError, "max_steps must be a positive int"),
        ({"prior_scale": 0.0}, ValueError, "prior_scale"),
    ],
)
def test_max_likelihood_names_the_bad_argument(kwargs, error, words):
    env = _grid()
    with pytest.raises(error, match=words):
        irl.max_likelihood(env, np.ones((9, 2)), _demos(env, 3), **kwargs)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"bins": 0}, ValueError, "bins must be a positive int"),
        ({"num_replications": -1}, ValueError, "num_replications must be a positive int"),
        ({"num_replications": 0}, ValueError, "num_replications must be a positive int"),
        ({"thin": 0}, ValueError, "thin must be a positive int"),
        ({"num_draws": 2.0}, TypeError, "num_draws must be a positive int"),
        ({"num_demonstrations": 0}, ValueError, "num_demonstrations must be a positive int"),
        ({"num_warmup": -1}, ValueError, "num_warmup must be an int >= 0"),
        ({"horizon": 0}, ValueError, "horizon"),
        ({"beta": -1.0}, ValueError, "beta"),
        ({"prior_scale": -1.0}, ValueError, "prior_scale"),
        ({"likelihood": "x"}, ValueError, "likelihood"),
    ],
)
def test_calibration_refuses_bad_arguments_before_any_work(monkeypatch, kwargs, error, words):
    def no_work(*args, **kwargs):
        raise AssertionError("simulated or sampled before checking the arguments")

    monkeypatch.setattr(pgm_rl.irl.calibration, "simulate", no_work)
    monkeypatch.setattr(pgm_rl.irl.calibration, "sample_batched", no_work)
    arguments = dict(
        horizon=3, num_demonstrations=5, num_replications=2, num_warmup=5, num_draws=9, bins=5
    )
    with pytest.raises(error, match=words):
        irl.simulation_based_calibration(
            jax.random.key(0), _grid(), np.ones((9, 1)), **{**arguments, **kwargs}
        )


# ----------------------------------------------------------------------------- point estimate


def _lowerings(call):
    """How many programs JAX lowers (traces and compiles, or loads from a cache) in call()."""
    event = "/jax/core/compile/jaxpr_to_mlir_module_duration"
    count = []

    def listener(name, duration, **kwargs):
        if name == event:
            count.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.block_until_ready(call())
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return len(count)


def _rare_cells_problem():
    """A grid whose rarely entered cells the unregularised MLE pushes off (|theta| 38.8)."""
    env = pgm_rl.GridWorld(np.random.default_rng(0).uniform(-2, 2, (3, 3)), (1, 1))
    return env, np.eye(9), _demos(env, 200, 1)


@pytest.mark.parametrize("prior_scale", [1.0, None])
def test_max_likelihood_compiles_once_per_shape(prior_scale):
    env, features, demos = _rare_cells_problem()
    first = irl.max_likelihood(env, features, demos, prior_scale=prior_scale)
    assert bool(first.converged)
    # new demonstrations of the same shape, another beta, tol and init: no new program
    other = _demos(env, 200, 2)
    again = _lowerings(
        lambda: (
            irl.max_likelihood(
                env,
                features,
                other,
                0.5,
                prior_scale=prior_scale,
                init=np.full(9, 0.1),
                tol=1e-7,
            ).theta
        )
    )
    assert again == 0


def test_max_likelihood_default_is_the_map_of_the_model_prior():
    env, features, demos = _rare_cells_problem()
    fit = irl.max_likelihood(env, features, demos)
    mle = irl.max_likelihood(env, features, demos, prior_scale=None)
    assert bool(fit.converged) and np.max(np.abs(fit.theta)) < 3
    # the unregularised MLE runs off on the rare cells (the issue: |theta| 29-612)
    assert np.max(np.abs(mle.theta)) > 20
    # the MAP of reward_model (prior Normal(0, 1)): grad log likelihood = theta there
    grad = jax.grad(irl.log_likelihood)(fit.theta, env, features, demos)
    np.testing.assert_allclose(grad, fit.theta, atol=1e-6 * 200 * 4)
