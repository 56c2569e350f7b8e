"""Bayesian inverse RL (pgm_rl.irl): differentiable log Z, likelihoods, the NUTS model, MLE.

Fast tests only; the statistical ones (SBC, posterior = prior in a non-identified direction)
are in tests/test_irl_calibration.py, marked slow.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import MCMC, NUTS, Predictive
from numpyro.infer.util import potential_energy

import pgm_rl
from pgm_rl import irl


def _grid(seed=0, shape=(3, 3), start=(1, 1), **kwargs):
    rng = np.random.default_rng(seed)
    return pgm_rl.GridWorld(rng.normal(size=shape), start, **kwargs)


def _directional_fd(f, x, directions, h=1e-5):
    """Central finite differences of ``f`` at ``x`` along each of ``directions``."""
    f = jax.jit(f)
    x = jnp.asarray(x)
    return np.array([(float(f(x + h * v)) - float(f(x - h * v))) / (2 * h) for v in directions])


def _demos(env, horizon, beta, n, seed=0):
    return pgm_rl.solve(env, horizon, beta).sample(jax.random.key(seed), n)


STOCHASTIC = dict(slip=0.2, terminal=[(2, 2)])


# ----------------------------------------------------------------------------- log Z, ELBO


@pytest.mark.parametrize("kwargs", [{}, STOCHASTIC], ids=["deterministic", "slippery"])
def test_log_z_and_elbo_match_exact(kwargs):
    env = _grid(1, start=(0, 0), **kwargs)
    for beta in (0.0, 0.7, 3.0):
        reward = env.outcome_rewards
        assert float(irl.log_z(env, reward, 5, beta)) == pytest.approx(
            pgm_rl.solve(env, 5, beta).log_z, rel=1e-12, abs=1e-12
        )
        assert float(irl.soft_bellman_elbo(env, reward, 5, beta)) == pytest.approx(
            pgm_rl.soft_bellman(env, 5, beta).elbo, rel=1e-12, abs=1e-12
        )


@pytest.mark.parametrize("kwargs", [{}, STOCHASTIC], ids=["deterministic", "slippery"])
def test_gradients_match_finite_differences(kwargs):
    env = _grid(2, start=(0, 0), **kwargs)
    rng = np.random.default_rng(3)
    reward = rng.normal(size=env.outcome_states.shape)
    valid = np.asarray(env.outcome_probs) > 0
    # random directions and a few coordinate directions (single outcome rewards)
    directions = list(rng.normal(size=(3, *reward.shape)) * valid)
    for index in np.argwhere(valid)[:: max(1, valid.sum() // 4)]:
        e = np.zeros(reward.shape)
        e[tuple(index)] = 1.0
        directions.append(e)
    for fn in (irl.log_z, irl.soft_bellman_elbo):

        def f(r, fn=fn):
            return fn(env, r, 4, 0.8)

        grad = np.asarray(jax.grad(f)(jnp.asarray(reward)))
        fd = _directional_fd(f, reward, directions)
        np.testing.assert_allclose([np.sum(grad * v) for v in directions], fd, atol=1e-6, rtol=0)
        assert np.all(grad[~valid] == 0)  # padding outcomes do not exist


def test_grad_log_z_is_sound_at_large_scale():
    """At the notebook's scale (beta * reward up to 1e7 per step) the gradient of log Z is
    beta times the posterior's expected (state, action) counts, which solve computes with
    its double-word pass."""
    env = pgm_rl.GridWorld.notebook()
    horizon = 20
    for beta in (1.0, 1e3):
        grad = np.asarray(jax.grad(lambda r, b=beta: irl.log_z(env, r, horizon, b))(env.reward))
        exact = pgm_rl.solve(env, horizon, beta)
        counts = np.einsum(
            "ts,tsa->sa", np.asarray(exact.state_marginals[:-1]), np.asarray(exact.policy)
        )
        assert np.all(np.isfinite(grad))
        np.testing.assert_allclose(grad / beta, counts, atol=1e-6)
        log_z = float(irl.log_z(env, env.reward, horizon, beta))
        assert log_z == pytest.approx(exact.log_z, rel=1e-13)


# ----------------------------------------------------------------------------- likelihoods


@pytest.mark.parametrize("kwargs", [{}, STOCHASTIC], ids=["deterministic", "slippery"])
def test_likelihoods_match_exact_log_probs(kwargs):
    """trajectory: sum_n log q(tau_n) of the exact posterior with reward features @ theta;
    soft_bellman: sum_n log of the soft-Bellman policy's trajectory probability."""
    env = _grid(4, start=(0, 0), **kwargs)
    rng = np.random.default_rng(5)
    features = rng.normal(size=(env.n_states, 3))
    theta = rng.normal(size=3)
    truth = pgm_rl.GridWorld(
        (features @ theta).reshape(env.shape), env.start, **kwargs
    )  # reward of the state entered, 0 after a terminal cell: the grid convention
    demos = _demos(truth, 5, 0.9, 7)
    exact = pgm_rl.solve(truth, 5, 0.9)
    soft = pgm_rl.soft_bellman(truth, 5, 0.9)
    got = irl.log_likelihood(theta, env, features, demos, 0.9)
    assert float(got) == pytest.approx(float(exact.log_prob(**demos_args(demos)).sum()), rel=1e-10)
    got = irl.log_likelihood(theta, env, features, demos, 0.9, "soft_bellman")
    assert float(got) == pytest.approx(float(soft.log_prob(**demos_args(demos)).sum()), rel=1e-10)


def demos_args(demos):
    return {"actions": demos["actions"], "states": demos["states"]}


@pytest.mark.parametrize("per_action", [False, True], ids=["(S, F)", "(S, A, F)"])
def test_gradient_is_empirical_minus_model_feature_expectations(per_action):
    env = _grid(6)
    rng = np.random.default_rng(7)
    shape = (env.n_states, env.n_actions, 3) if per_action else (env.n_states, 3)
    features = rng.normal(size=shape)
    theta = rng.normal(size=3)
    beta, horizon, n = 0.6, 5, 11
    demos = _demos(env, horizon, beta, n)
    grad = jax.grad(irl.log_likelihood)(jnp.asarray(theta), env, features, demos, beta)
    # independently: the exact posterior of r_theta, its marginals and policy
    if per_action:
        reward = features @ theta
        phi_steps = features[demos["states"][:, :-1], demos["actions"]]
    else:
        reward = (features @ theta)[np.asarray(env.next_state)]
        phi_steps = features[demos["states"][:, 1:]]
    mdp = pgm_rl.TabularMDP(env.next_state, reward, env.start_state)
    exact = pgm_rl.solve(mdp, horizon, beta)
    joint = np.einsum("ts,tsa->sa", exact.state_marginals[:-1], exact.policy)  # (S, A)
    step_features = features if per_action else features[np.asarray(env.next_state)]
    model = np.einsum("sa,saf->f", joint, step_features)
    empirical = np.asarray(phi_steps).sum(axis=(0, 1))
    np.testing.assert_allclose(grad, beta * (empirical - n * model), atol=1e-9)
    np.testing.assert_allclose(
        irl.feature_expectations(theta, env, features, horizon, beta), model, atol=1e-12
    )


def test_constant_feature_is_not_identified_and_unreachable_cells_have_zero_gradient():
    env = pgm_rl.GridWorld(np.zeros((6, 6)), (5, 0))
    features = np.concatenate([np.eye(36), np.ones((36, 1))], axis=1)
    demos = _demos(env, 3, 1.0, 9)
    theta = np.random.default_rng(8).normal(size=37)
    grad = np.asarray(jax.grad(irl.log_likelihood)(jnp.asarray(theta), env, features, demos))
    assert abs(grad[-1]) < 1e-9  # adding c to every reward shifts log Z by beta * T * c
    rows, cols = np.divmod(np.arange(36), 6)
    unreachable = (5 - rows) + cols > 3  # more than T = 3 moves from (5, 0)
    assert np.all(grad[:36][unreachable] == 0)
    assert np.all(grad[:36][~unreachable] != 0)


def test_deterministic_trajectory_and_soft_bellman_likelihoods_agree():
    env = _grid(9)
    features = np.random.default_rng(9).normal(size=(9, 2))
    demos = _demos(env, 4, 1.0, 5)
    theta = jnp.asarray([0.3, -1.2])
    a = irl.log_likelihood(theta, env, features, demos)
    b = irl.log_likelihood(theta, env, features, demos, likelihood="soft_bellman")
    assert float(a) == pytest.approx(float(b), rel=1e-12)


# ----------------------------------------------------------------------------- the model


@pytest.mark.slow
def test_reward_model_sites_nuts_predictive_arviz():
    import arviz_base

    env = _grid(10)
    rng = np.random.default_rng(10)
    features = rng.normal(size=(9, 2))
    demos = _demos(env, 4, 1.0, 10)
    args = (env, features, demos)
    mcmc = MCMC(
        NUTS(irl.reward_model),
        num_warmup=100,
        num_samples=100,
        num_chains=2,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(0), *args, beta=1.0, prior_scale=2.0, extra_fields=("diverging",))
    samples = mcmc.get_samples()
    assert samples["theta"].shape == (200, 2)
    assert samples["reward"].shape == (200, 9, 5)
    np.testing.assert_allclose(
        samples["reward"], np.einsum("nf,saf->nsa", samples["theta"], features[env.next_state])
    )
    assert int(mcmc.get_extra_fields()["diverging"].sum()) == 0
    dt = arviz_base.from_numpyro(mcmc)
    assert dt.posterior["theta"].shape == (2, 100, 2)
    import arviz_stats

    table = arviz_stats.summary(dt, var_names=["theta"])
    assert list(table.index) == ["theta[0]", "theta[1]"] and "r_hat" in table.columns
    prior = Predictive(irl.reward_model, num_samples=5)(jax.random.key(1), *args)
    assert prior["theta"].shape == (5, 2) and prior["reward"].shape == (5, 9, 5)
    # the model's log density is the prior plus log_likelihood
    theta = jnp.asarray([0.4, -0.2])
    pe = potential_energy(irl.reward_model, args, {"prior_scale": 2.0}, {"theta": theta})
    expected = -(
        irl.log_likelihood(theta, *args)
        - 0.5 * jnp.sum((theta / 2.0) ** 2)
        - 2 * np.log(2.0 * np.sqrt(2 * np.pi))
    )
    assert float(pe) == pytest.approx(float(expected), rel=1e-12)


# ----------------------------------------------------------------------------- MLE


def test_max_likelihood_is_a_stationary_point_and_recovers_theta():
    env = _grid(12)
    rng = np.random.default_rng(12)
    features = rng.normal(size=(9, 2))
    theta = np.array([0.8, -0.5])
    truth = pgm_rl.GridWorld((features @ theta).reshape(3, 3), env.start)
    demos = _demos(truth, 6, 1.0, 2000)
    fit = irl.max_likelihood(env, features, demos, 1.0, prior_scale=None)  # the plain MLE
    assert bool(fit.converged)
    grad = jax.grad(irl.log_likelihood)(fit.theta, env, features, demos)
    assert np.max(np.abs(grad)) < 1e-3 * 2000 * 6
    np.testing.assert_allclose(fit.theta, theta, atol=0.1)
    assert fit.reward.shape == (9, 5)
    # MAP shrinks towards 0
    fit_map = irl.max_likelihood(env, features, demos, 1.0, prior_scale=0.01)
    assert np.all(np.abs(fit_map.theta) < np.abs(fit.theta))


@pytest.mark.slow
def test_max_likelihood_on_slippery_grid_soft_bellman():
    env = _grid(13, start=(0, 0), slip=0.2)
    features = np.random.default_rng(13).normal(size=(9, 2))
    theta = np.array([-0.6, 0.9])
    truth = pgm_rl.GridWorld((features @ theta).reshape(3, 3), (0, 0), slip=0.2)
    demos = pgm_rl.soft_bellman(truth, 6, 1.0).sample(jax.random.key(1), 3000)
    fit = irl.max_likelihood(env, features, demos, 1.0, "soft_bellman", prior_scale=None)
    assert bool(fit.converged)
    np.testing.assert_allclose(fit.theta, theta, atol=0.1)


# ----------------------------------------------------------------------------- bad input


def _bad_cases(env, features, demos):
    a, s = np.asarray(demos["actions"]), np.asarray(demos["states"])
    return [
        ("demonstrations", "not a dict", TypeError, "demonstrations must be a dict"),
        ("demonstrations", {"actions": a}, ValueError, "lacks"),
        ("demonstrations", {"actions": a[0], "states": s[0]}, ValueError, "shape \\(N, T\\)"),
        ("demonstrations", {"actions": a, "states": s[:, :-1]}, ValueError, "horizon T"),
        ("demonstrations", {"actions": a + 0.0, "states": s}, TypeError, "'actions'.*integer"),
        ("demonstrations", {"actions": a, "states": s + 0.5}, TypeError, "'states'.*integer"),
        ("demonstrations", {"actions": a + 5, "states": s}, ValueError, "'actions'.*lie in"),
        ("demonstrations", {"actions": a, "states": s - 9}, ValueError, "'states'.*lie in"),
        ("features", features[:4], ValueError, "features must have shape"),
        ("features", features * np.nan, ValueError, "features must be finite"),
        ("features", features > 0, TypeError, "features must be a real"),
        ("prior_scale", 0.0, ValueError, "prior_scale"),
        ("prior_scale", -1.0, ValueError, "prior_scale"),
        ("prior_scale", "big", TypeError, "prior_scale"),
        ("prior_scale", np.ones(3), ValueError, "prior_scale must be a float or an array"),
        ("likelihood", "soft-bellmen", ValueError, "likelihood must be one of"),
        ("beta", -1.0, ValueError, "beta"),
        ("env", "grid", TypeError, "env must be"),
    ]


def test_bad_input_is_refused_by_name():
    from numpyro.handlers import seed, trace

    env = _grid(14)
    features = np.random.default_rng(14).normal(size=(9, 2))
    demos = _demos(env, 4, 1.0, 3)
    base = {
        "env": env,
        "features": features,
        "demonstrations": demos,
        "beta": 1.0,
        "prior_scale": 1.0,
        "likelihood": "trajectory",
    }
    for name, value, error, match in _bad_cases(env, features, demos):
        kwargs = {**base, name: value}
        with pytest.raises(error, match=match):
            trace(seed(irl.reward_model, 0)).get_trace(**kwargs)


def test_impossible_moves_and_starts_name_the_demonstration_and_step():
    env = _grid(15, start=(0, 0))
    features = np.ones((9, 1))
    actions = np.array([[3, 3, 1], [1, 1, 3]])  # right, right, down / down, down, right
    states = np.array([[0, 1, 2, 5], [0, 3, 6, 7]])
    irl.log_likelihood([0.1], env, features, {"actions": actions, "states": states})
    bad = states.copy()
    bad[1, 2] = 4  # down from 3 cannot reach 4
    with pytest.raises(ValueError, match=r"demonstration 1 .* step 1"):
        irl.log_likelihood([0.1], env, features, {"actions": actions, "states": bad})
    bad = states.copy()
    bad[0, 0] = 1
    with pytest.raises(ValueError, match=r"\[0, 0\] = 1 is not a possible start"):
        irl.reward_model(env, features, {"actions": actions, "states": bad})
    with pytest.raises(ValueError, match="theta must have shape"):
        irl.log_likelihood([0.1, 0.2], env, features, {"actions": actions, "states": states})
    # slippery: a perpendicular slip is possible, a move against the dice is not
    slippery = _grid(15, start=(0, 0), slip=0.2)
    irl.log_likelihood(
        [0.1], slippery, features, {"actions": np.array([[3]]), "states": np.array([[0, 3]])}
    )
    with pytest.raises(ValueError, match="demonstration 0 makes an impossible move at step 0"):
        irl.log_likelihood(
            [0.1], slippery, features, {"actions": np.array([[3]]), "states": np.array([[0, 4]])}
        )
