"""Variational policies: the guide, fit_policy ("exact" natural gradient and "score"), bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import random_grid
from numpyro.infer import SVI, Predictive, TraceGraph_ELBO

import pgm_rl
from pgm_rl.variational import PolicyGradientELBO, fit_policy, policy_elbo, policy_guide
from pgm_rl.variational.elbo import _dynamics, _euclidean_gradient


def slippery_grid():
    rng = np.random.default_rng(3)
    return pgm_rl.GridWorld(rng.uniform(-2, 2, (3, 3)), (0, 0), slip=0.2)


def test_guide_sites_and_predictive():
    env, horizon = random_grid(0), 4
    guide = policy_guide(env, horizon)
    params = {"policy_logits": guide.init_params()}
    draws = Predictive(
        pgm_rl.trajectory_model,
        guide=guide,
        params=params,
        num_samples=50,
        return_sites=["actions", "states", "rewards"],
    )(jax.random.key(0), env, horizon, 1.0)
    assert draws["actions"].shape == (50, horizon) and draws["states"].shape == (50, horizon + 1)
    states, _ = pgm_rl.rollout(env, draws["actions"])
    np.testing.assert_array_equal(states, draws["states"])
    assert len(np.unique(np.asarray(draws["actions"]))) > 1


def test_guide_on_stochastic_mdp_draws_outcomes_from_the_dynamics():
    env, horizon = slippery_grid(), 3
    guide = policy_guide(env, horizon, "stationary")
    draws = Predictive(
        pgm_rl.trajectory_model,
        guide=guide,
        params={"policy_logits": guide.init_params()},
        num_samples=4000,
        return_sites=["actions", "outcomes", "states"],
    )(jax.random.key(1), env, horizon, 1.0)
    assert draws["outcomes"].shape == (4000, horizon)
    # uniform policy in the true dynamics: the state marginals of evaluate_policy
    uniform = np.full((horizon, env.n_states, env.n_actions), 1.0 / env.n_actions)
    exact = np.asarray(pgm_rl.evaluate_policy(env, uniform, 1.0).state_marginals)
    counts = np.stack(
        [np.bincount(draws["states"][:, t], minlength=env.n_states) for t in range(horizon + 1)]
    )
    assert np.abs(counts / 4000 - exact).max() < 0.04


def test_guide_log_density_is_log_q():
    env, horizon = random_grid(2), 3
    guide = policy_guide(env, horizon)
    logits = jax.random.normal(jax.random.key(0), guide.param_shape)
    from numpyro.handlers import seed, substitute, trace

    tr = trace(seed(substitute(guide, {"policy_logits": logits}), 0)).get_trace(env, horizon, 1.0)
    actions = tr["actions"]["value"]
    states, _ = pgm_rl.rollout(env, actions)
    log_pi = jax.nn.log_softmax(logits, -1)
    expected = sum(float(log_pi[t, states[t], actions[t]]) for t in range(horizon))
    assert float(jnp.sum(tr["actions"]["fn"].log_prob(actions))) == pytest.approx(expected)


@pytest.mark.parametrize("env", [random_grid(4), slippery_grid()], ids=["det", "slippery"])
def test_forward_elbo_equals_evaluate_policy(env):
    horizon, beta = 4, 0.7
    logits = jax.random.normal(jax.random.key(1), (horizon, env.n_states, env.n_actions))
    log_pi = jax.nn.log_softmax(logits, -1)
    ns, probs, rewards, mu0 = _dynamics(env)
    ours = float(policy_elbo(log_pi, ns, probs, rewards, mu0, beta)[0])
    theirs = pgm_rl.evaluate_policy(env, np.exp(np.asarray(log_pi)), beta).elbo
    assert ours == pytest.approx(theirs, abs=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_fit_reaches_the_posterior_on_random_grids(seed):
    rng = np.random.default_rng(seed)
    env = pgm_rl.GridWorld(rng.uniform(-2, 2, (5, 5)), (0, 0))
    fit = fit_policy(env, 20, 1.0, num_steps=40)
    assert -1e-9 <= fit.kl_to_posterior <= 1e-3
    assert fit.log_policy.shape == (20, 25, 5) and fit.elbo_trace.shape == (40,)


def test_exact_fit_on_the_notebook_grid_where_adam_stalls():
    env = pgm_rl.GridWorld.notebook()
    fit = fit_policy(env, 20, 0.05, num_steps=60)
    assert fit.kl_to_posterior <= 0.05
    # a smaller mirror-descent step converges too (geometrically), no special step needed
    slow = fit_policy(env, 20, 0.05, num_steps=150, optimizer=optax.sgd(0.5))
    assert slow.kl_to_posterior <= 0.05
    # the Euclidean gradient with Adam is what stalls (the 0.43 nats)
    adam = fit_policy(env, 20, 0.05, num_steps=300, natural_gradient=False)
    assert adam.kl_to_posterior > 0.1


def test_euclidean_gradient_is_the_gradient_of_evaluate_policy():
    env, horizon, beta = random_grid(5), 3, 0.8
    params = jax.random.normal(jax.random.key(2), (horizon, env.n_states, env.n_actions))
    grad, _ = _euclidean_gradient(params, "time-indexed", None, horizon, _dynamics(env), beta)
    eps, (t, s, a) = 1e-6, (1, 4, 2)

    def elbo(p):
        pol = np.exp(np.asarray(jax.nn.log_softmax(p, -1)))
        return pgm_rl.evaluate_policy(env, pol, beta).elbo

    numeric = (elbo(params.at[t, s, a].add(eps)) - elbo(params.at[t, s, a].add(-eps))) / (2 * eps)
    assert -float(grad[t, s, a]) == pytest.approx(numeric, rel=1e-5, abs=1e-8)


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "name, horizon, beta, parametrization",
    [
        ("FrozenLake-v1", 20, 5.0, "time-indexed"),
        ("FrozenLake-v1", 20, 5.0, "stationary"),
        pytest.param("FrozenLake-v1", 20, 5.0, "features", marks=SLOW),
        pytest.param("CliffWalking-v1", 20, 1.0, "time-indexed", marks=SLOW),
        pytest.param("CliffWalking-v1", 20, 1.0, "stationary", marks=SLOW),
        pytest.param("CliffWalking-v1", 20, 1.0, "features", marks=SLOW),
    ],
)
def test_stochastic_fits_reach_soft_bellman_and_never_exceed_it(
    name, horizon, beta, parametrization
):
    pytest.importorskip("gymnasium")
    env = pgm_rl.envs.from_gymnasium(name, is_slippery=True)
    best = pgm_rl.soft_bellman(env, horizon, beta).elbo
    features = np.eye(env.n_states) if parametrization == "features" else None
    fit = fit_policy(
        env, horizon, beta, parametrization=parametrization, num_steps=60, features=features
    )
    trace = np.asarray(fit.elbo_trace)
    assert fit.elbo <= best + 1e-9 and trace.max() <= best + 1e-9
    if parametrization == "time-indexed":
        assert fit.elbo >= best - 1e-3
    else:  # a stationary policy cannot match the time-indexed optimum; it improves on uniform
        assert fit.elbo > trace[0] and np.all(np.diff(trace) > -1e-9)
    assert fit.kl_to_posterior >= best - fit.elbo - 1e-9  # log Z >= ELBO* on stochastic MDPs


def test_features_with_one_hot_states_equal_stationary():
    env = random_grid(6, (4, 4))
    a = fit_policy(env, 8, 1.0, parametrization="stationary", num_steps=100)
    b = fit_policy(env, 8, 1.0, parametrization="features", features=np.eye(16), num_steps=100)
    assert a.elbo == pytest.approx(b.elbo, abs=1e-6)
    # fewer features than states: a smaller family, still improving on the prior
    c = fit_policy(
        env, 8, 1.0, parametrization="features", features=np.eye(16)[:, :5], num_steps=100
    )
    assert c.guide.param_shape == (5, 5) and c.elbo_trace[0] < c.elbo <= b.elbo + 1e-9


def test_score_fit_with_svi():
    env = random_grid(7, (3, 3))
    fit = fit_policy(
        env, 5, 1.0, objective="score", num_steps=200, key=jax.random.key(0), num_particles=32
    )
    assert fit.kl_to_posterior <= 0.1 and fit.elbo_trace.shape == (200,)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_score_fit_reaches_the_posterior_on_random_grids(seed):
    rng = np.random.default_rng(seed)
    env = pgm_rl.GridWorld(rng.uniform(-2, 2, (5, 5)), (0, 0))
    fit = fit_policy(env, 20, 1.0, objective="score", num_steps=1000, key=jax.random.key(seed))
    assert 0.0 <= fit.kl_to_posterior <= 0.1


@pytest.mark.slow
def test_tracegraph_elbo_gradient_is_unbiased():
    env, horizon = random_grid(0, (2, 2)), 3
    guide = policy_guide(env, horizon)
    params = jax.random.normal(jax.random.key(3), guide.param_shape) * 0.5
    exact = -_euclidean_gradient(params, "time-indexed", None, horizon, _dynamics(env), 1.0)[0]
    for elbo in (TraceGraph_ELBO(num_particles=20000), PolicyGradientELBO(num_particles=20000)):
        grad = jax.grad(
            lambda p, elbo=elbo: (
                -elbo.loss(
                    jax.random.key(0),
                    {"policy_logits": p},
                    pgm_rl.trajectory_model,
                    guide,
                    env,
                    horizon,
                    1.0,
                )
            )
        )(params)
        np.testing.assert_allclose(grad[0, env.start_state], exact[0, env.start_state], atol=0.03)


@pytest.mark.slow
def test_svi_runs_with_the_guide_on_a_stochastic_mdp():
    env, horizon = slippery_grid(), 3
    guide = policy_guide(env, horizon)
    svi = SVI(pgm_rl.trajectory_model, guide, optax.adam(0.05), TraceGraph_ELBO(num_particles=8))
    result = svi.run(jax.random.key(0), 3, env, horizon, 1.0, progress_bar=False)
    assert np.isfinite(result.losses).all()


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"parametrization": "tabular"}, ValueError, "parametrization"),
        ({"objective": "mean-field"}, ValueError, "objective"),
        ({"num_steps": 0}, ValueError, "num_steps"),
        ({"num_steps": 2.5}, TypeError, "num_steps"),
        ({"parametrization": "features"}, ValueError, "features"),
        ({"parametrization": "features", "features": np.eye(3)}, ValueError, "features"),
        ({"features": np.eye(9)}, ValueError, "features"),
        ({"optimizer": "adam"}, TypeError, "optimizer"),
        ({"objective": "score"}, ValueError, "key"),
    ],
)
def test_bad_input(kwargs, error, words):
    kwargs = {"num_steps": 5, **kwargs}
    with pytest.raises(error, match=words):
        fit_policy(random_grid(0), 3, 1.0, **kwargs)


def test_divergence_names_the_step_and_the_last_finite_elbo():
    def update(updates, state, params=None):
        poison = jnp.where(state >= 3, jnp.nan, 0.0)
        return jax.tree.map(lambda u: -0.1 * u + poison, updates), state + 1

    nan_at_step_3 = optax.GradientTransformation(lambda p: jnp.zeros((), jnp.int32), update)
    with pytest.raises(FloatingPointError, match=r"step 4 \(last finite ELBO: "):
        fit_policy(random_grid(0), 3, 1.0, num_steps=10, optimizer=nan_at_step_3)


def test_fit_policy_to_samples_forward_kl():
    from pgm_rl.variational import fit_policy_to_samples

    env = random_grid(8, (3, 3))
    post = pgm_rl.solve(env, 6, 1.0)
    draws = post.sample(jax.random.key(0), 20000)
    fit = fit_policy_to_samples(env, draws, beta=1.0)
    assert 0.0 <= fit.kl_to_posterior <= 0.01
    assert np.all(np.asarray(fit.policy) > 0)  # Dirichlet smoothing: full support
    # states are optional on deterministic MDPs; the stationary fit is a smaller family
    fit_actions_only = fit_policy_to_samples(env, {"actions": draws["actions"]}, beta=1.0)
    np.testing.assert_allclose(fit_actions_only.log_policy, fit.log_policy)
    stationary = fit_policy_to_samples(env, draws, "stationary", beta=1.0)
    assert stationary.log_policy.shape == (6, 9, 5) and stationary.elbo <= fit.elbo + 1e-9
    features = fit_policy_to_samples(
        env, draws, "features", features=np.eye(9), beta=1.0, num_steps=300
    )
    assert features.elbo == pytest.approx(stationary.elbo, abs=0.02)


@pytest.mark.parametrize(
    "samples, kwargs, error, words",
    [
        ([1, 2], {}, TypeError, "samples"),
        ({"actions": np.zeros((2, 3))}, {}, TypeError, r"'actions'\] must be an integer array"),
        ({"actions": np.full((2, 3), 7)}, {}, ValueError, "actions"),
        ({"actions": np.zeros((2, 3), int)}, {"prior_counts": 0.0}, ValueError, "prior_counts"),
        ({"actions": np.zeros((2, 3), int)}, {"parametrization": "x"}, ValueError, "parametriz"),
    ],
)
def test_fit_policy_to_samples_bad_input(samples, kwargs, error, words):
    from pgm_rl.variational import fit_policy_to_samples

    with pytest.raises(error, match=words):
        fit_policy_to_samples(random_grid(0), samples, **kwargs)


@pytest.mark.slow
def test_score_fit_on_slippery_frozen_lake_approaches_soft_bellman():
    pytest.importorskip("gymnasium")
    env = pgm_rl.envs.from_gymnasium("FrozenLake-v1", is_slippery=True)
    best = pgm_rl.soft_bellman(env, 10, 5.0).elbo
    fit = fit_policy(env, 10, 5.0, objective="score", num_steps=500, key=jax.random.key(0))
    assert best - 0.1 <= fit.elbo <= best + 1e-9
