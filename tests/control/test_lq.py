"""The exact linear-quadratic posterior and maximum-entropy policy against a dense computation."""

import json

import jax
import numpy as np
import pytest
import scipy.linalg
from helpers import run_float32_script
from scipy.stats import multivariate_normal

from pgm_rl.control import LinearQuadratic, pendulum, soft_bellman_lq, solve_lq
from pgm_rl.control.lq_passes import riccati


def random_lq(seed, dx, du, radius, noisy):
    """A random problem whose A has spectral radius ``radius`` (> 1: unstable)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(dx, dx))
    A *= radius / np.abs(np.linalg.eigvals(A)).max()
    Q_root, R_root = rng.normal(size=(dx, dx)), rng.normal(size=(du, du))
    return LinearQuadratic(
        A,
        rng.normal(size=(dx, du)),
        Q_root @ Q_root.T,
        R_root @ R_root.T + 0.1 * np.eye(du),
        rng.normal(size=dx),
        action_scale=rng.uniform(0.5, 2.0, du),
        noise_scale=rng.uniform(0.1, 1.0, dx) if noisy else None,
    )


def dense_posterior(problem, horizon, beta):
    """The posterior over all the latents at once: x = F x0 + G v, the quadratic form in closed
    form, one Cholesky of the (T dv, T dv) precision. log Z is the log target at the mean plus
    the Gaussian normaliser (no cancellation of large terms on unstable systems)."""
    A, B, Q, R = (np.asarray(m) for m in (problem.A, problem.B, problem.Q, problem.R))
    dx, du = B.shape
    T, x0 = horizon, np.asarray(problem.x0)
    variances = [np.asarray(problem.action_scale) ** 2]
    E = B
    if problem.is_stochastic:
        E = np.hstack([B, np.eye(dx)])
        variances.append(np.asarray(problem.noise_scale) ** 2)
    dv, var = E.shape[1], np.tile(np.concatenate(variances), T)
    powers = [np.eye(dx)]
    for _ in range(T):
        powers.append(A @ powers[-1])
    F = np.vstack(powers[1:])
    G = np.zeros((T * dx, T * dv))
    for t in range(T):
        for s in range(t + 1):
            G[t * dx : (t + 1) * dx, s * dv : (s + 1) * dv] = powers[t - s] @ E
    Q_all = np.kron(np.eye(T), Q)
    R_step = np.zeros((dv, dv))
    R_step[:du, :du] = R
    R_all = np.kron(np.eye(T), R_step)
    precision = np.diag(1 / var) + beta * R_all + beta * G.T @ Q_all @ G
    factor = scipy.linalg.cho_factor(precision, lower=True)
    mean = scipy.linalg.cho_solve(factor, -beta * G.T @ Q_all @ F @ x0)
    cov = scipy.linalg.cho_solve(factor, np.eye(T * dv))
    x = F @ x0 + G @ mean
    log_target = -0.5 * np.sum(mean**2 / var + np.log(2 * np.pi * var)) - 0.5 * beta * (
        x @ Q_all @ x + mean @ R_all @ mean
    )
    log_z = log_target + 0.5 * T * dv * np.log(2 * np.pi) - np.sum(np.log(np.diag(factor[0])))
    return log_z, mean.reshape(T, dv), cov


CASES = {
    # name: (seed, dx, du, T, spectral radius, noisy, beta)
    "scalar one step": (0, 1, 1, 1, 0.5, False, 2.0),
    "stable 4x2 T=40": (1, 4, 2, 40, 0.9, False, 0.7),
    "unstable 6x3 T=100": (2, 6, 3, 100, 1.03, False, 0.7),
    "noisy stable 3x1 T=30": (3, 3, 1, 30, 0.8, True, 1.5),
    "noisy unstable 6x3 T=100": (4, 6, 3, 100, 1.03, True, 0.7),
    "noisy unstable 2x2 beta 10": (5, 2, 2, 25, 1.2, True, 10.0),
}


@pytest.mark.parametrize("case", CASES)
def test_solve_lq_equals_the_dense_gaussian(case):
    seed, dx, du, T, radius, noisy, beta = CASES[case]
    problem = random_lq(seed, dx, du, radius, noisy)
    posterior = solve_lq(problem, T, beta)
    log_z, mean, cov = dense_posterior(problem, T, beta)
    # 1e-9: relative for log Z (|log Z| reaches ~650), absolute for the moments (scale ~0.5).
    # The dense answer loses about cond(cov) * 1e-17 (cond 2e7 at radius 1.03, T = 100; at
    # radius 1.05 its error reaches 1e-9, where the two differ by that much).
    assert abs(float(posterior.log_z) - log_z) <= 1e-9 * max(1.0, abs(log_z))
    np.testing.assert_allclose(posterior.joint_mean, mean, rtol=0, atol=1e-9)
    np.testing.assert_allclose(posterior.joint_cov, cov, rtol=0, atol=1e-9)
    np.testing.assert_allclose(posterior.mean, mean[:, :du], rtol=0, atol=1e-9)
    blocks = cov.reshape(T, dx + du if noisy else du, T, -1)
    np.testing.assert_allclose(
        posterior.cov, blocks[:, :du, :, :du].reshape(T * du, T * du), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        posterior.action_cov, np.einsum("tatb->tab", blocks[:, :du, :, :du]), atol=1e-9
    )
    if noisy:
        np.testing.assert_allclose(posterior.noise_mean, mean[:, du:], rtol=0, atol=1e-9)
    else:
        assert posterior.noise_mean is None
    # log_prob is the dense Gaussian's density
    draws = posterior.sample(jax.random.key(seed), 7)
    latents = np.concatenate([draws["actions"], *([draws["noise"]] if noisy else [])], -1)
    expected = multivariate_normal(mean.reshape(-1), cov).logpdf(latents.reshape(7, -1))
    got = posterior.log_prob(draws["actions"], draws.get("noise"))
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max())
    # the states and rewards of the draws are their rollouts
    states, rewards = jax.vmap(problem.rollout)(draws["actions"], draws.get("noise"))
    np.testing.assert_allclose(draws["states"], states, atol=1e-12)
    np.testing.assert_allclose(draws["rewards"], rewards, atol=1e-12)


def test_state_moments_and_draws_match_the_posterior():
    problem = random_lq(7, 3, 2, 1.1, True)
    T, beta, n = 15, 1.0, 4000
    posterior = solve_lq(problem, T, beta)
    draws = posterior.sample(jax.random.key(0), n)
    assert draws["actions"].shape == (n, T, 2) and draws["noise"].shape == (n, T, 3)
    assert draws["states"].shape == (n, T + 1, 3) and draws["rewards"].shape == (n, T)
    # state moments: the dense map x = F x0 + G v of the dense posterior
    states = np.asarray(draws["states"])
    sd = np.sqrt(np.diagonal(np.asarray(posterior.state_cov), axis1=1, axis2=2))  # (T+1, dx)
    z = (states.mean(0) - np.asarray(posterior.state_mean))[1:] / (sd[1:] / np.sqrt(n))
    assert np.abs(z).max() < 4.5
    ratio = states.var(0)[1:] / sd[1:] ** 2
    assert np.abs(ratio - 1).max() < 5 * np.sqrt(2 / n) * 1.5  # 5 sd of a variance estimate
    # the marginal action moments
    actions = np.asarray(draws["actions"])
    a_sd = np.sqrt(np.diagonal(np.asarray(posterior.action_cov), axis1=1, axis2=2))
    assert np.abs((actions.mean(0) - posterior.mean) / (a_sd / np.sqrt(n))).max() < 4.5


def test_beta_zero_gives_the_prior():
    problem = random_lq(8, 2, 2, 0.9, True)
    posterior = solve_lq(problem, 5, 0.0)
    assert abs(float(posterior.log_z)) < 1e-12
    np.testing.assert_allclose(posterior.joint_mean, 0.0, atol=1e-12)
    prior_var = np.tile(np.concatenate([problem.action_scale**2, problem.noise_scale**2]), 5)
    np.testing.assert_allclose(posterior.joint_cov, np.diag(prior_var), atol=1e-12)


def test_soft_bellman_policy_elbo_equals_log_z_on_deterministic_problems():
    problem = random_lq(9, 4, 2, 1.05, False)
    posterior, policy = solve_lq(problem, 30, 0.8), soft_bellman_lq(problem, 30, 0.8)
    assert abs(float(policy.elbo) - float(posterior.log_z)) < 1e-9 * abs(float(posterior.log_z))
    # the policy is the posterior's conditional, and runs the posterior's state moments
    np.testing.assert_allclose(policy.gains, posterior.gains, atol=1e-10)
    np.testing.assert_allclose(policy.cov, posterior.step_cov, atol=1e-10)
    np.testing.assert_allclose(policy.state_mean, posterior.state_mean, atol=1e-10)
    np.testing.assert_allclose(policy.state_cov, posterior.state_cov, atol=1e-10)
    np.testing.assert_allclose(policy.offsets, 0.0)


def noisy_double_integrator(noise=0.3):
    dt = 0.1
    return LinearQuadratic(
        [[1.0, dt], [0.0, 1.0]],
        [[0.0], [dt]],
        np.eye(2),
        0.1 * np.eye(1),
        [1.0, 0.0],
        action_scale=2.0,
        noise_scale=noise,
    )


def test_noisy_problems_are_optimistic_log_z_above_the_policy_elbo():
    problem, T, beta = noisy_double_integrator(), 50, 1.0
    log_z = float(solve_lq(problem, T, beta).log_z)
    policy = soft_bellman_lq(problem, T, beta)
    elbo = float(policy.elbo)
    assert log_z > elbo + 1.0  # the optimism gap (44.3 nats here)
    # the soft value V_0(x_0) of the backward pass is the ELBO of the forward moments
    assert abs(float(riccati(problem, T, beta, joint=False)[3]) - elbo) < 1e-9 * abs(elbo)
    # the ELBO is E[beta R + log prior - log pi] of the policy's episodes (Monte Carlo, 4 SE)
    draws = policy.sample(jax.random.key(1), 20000)
    prior = multivariate_normal(np.zeros(1), problem.action_scale**2)
    terms = (
        beta * np.asarray(draws["rewards"]).sum(-1)
        + prior.logpdf(np.asarray(draws["actions"])).sum(-1)
        - np.asarray(policy.log_prob(draws["actions"], draws["states"]))
    )
    assert abs(terms.mean() - elbo) < 4 * terms.std() / np.sqrt(terms.size)
    # the noise of the policy's episodes is the prior's (not chosen)
    assert abs(np.asarray(draws["noise"]).std() / 0.3 - 1) < 0.02


def test_an_improper_posterior_is_explained_not_nan():
    problem = LinearQuadratic(
        np.eye(2), np.eye(2), np.diag([1.0, -1.0]), np.eye(2), [1.0, 1.0], allow_indefinite=True
    )
    assert np.isfinite(float(solve_lq(problem, 5, 0.05).log_z))  # the prior still wins
    for solver in (solve_lq, soft_bellman_lq):
        with pytest.raises(
            ValueError, match=r"improper at beta = 5\.0.*step \d.*not positive definite"
        ):
            solver(problem, 5, 5.0)


@pytest.mark.parametrize(
    ("args", "error", "words"),
    [
        ((None, 5, 1.0), TypeError, ["LinearQuadratic"]),
        (("problem", 0, 1.0), ValueError, ["horizon", ">= 1"]),
        (("problem", 5, -1.0), ValueError, ["beta", ">= 0"]),
        (("problem", 5, np.nan), ValueError, ["beta"]),
    ],
)
def test_bad_arguments_are_refused(args, error, words):
    problem = noisy_double_integrator()
    args = tuple(problem if a == "problem" else a for a in args)
    for solver in (solve_lq, soft_bellman_lq):
        with pytest.raises(error) as raised:
            solver(*args)
        for word in words:
            assert word in str(raised.value)
    with pytest.raises(TypeError, match="LinearQuadratic"):
        solve_lq(pendulum(), 5, 1.0)


def test_log_prob_and_sample_arguments_are_checked():
    posterior = solve_lq(noisy_double_integrator(), 4, 1.0)
    with pytest.raises(ValueError, match="noise is needed"):
        posterior.log_prob(np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"actions must have shape \(\.\.\., 4, 1\)"):
        posterior.log_prob(np.zeros((5, 1)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="noise must have shape"):
        posterior.log_prob(np.zeros((4, 1)), np.zeros((4, 3)))
    with pytest.raises(TypeError, match="n must be a positive int"):
        posterior.sample(jax.random.key(0), 2.5)
    with pytest.raises(TypeError, match="key"):
        posterior.sample(0, 2)
    assert posterior.log_prob(np.zeros((3, 4, 1)), np.zeros((3, 4, 2))).shape == (3,)


FLOAT32_SCRIPT = """
import json, sys
import numpy as np
import jax
from pgm_rl.control import LinearQuadratic, solve_lq, soft_bellman_lq
assert not jax.config.jax_enable_x64
spec = json.loads(sys.argv[1])
problem = LinearQuadratic(*spec["matrices"], spec["x0"], noise_scale=spec["noise"])
posterior = solve_lq(problem, spec["T"], spec["beta"])
policy = soft_bellman_lq(problem, spec["T"], spec["beta"])
draws = posterior.sample(jax.random.key(0), 3)
print(json.dumps({
    "dtype": str(posterior.mean.dtype),
    "log_z": float(posterior.log_z),
    "elbo": float(policy.elbo),
    "mean": np.asarray(posterior.mean).tolist(),
    "action_var": np.asarray(posterior.action_cov)[:, 0, 0].tolist(),
    "state_mean": np.asarray(posterior.state_mean).tolist(),
    "finite_draws": bool(np.isfinite(np.asarray(draws["states"])).all()),
}))
"""


def test_float32_is_sound_at_horizon_1000(tmp_path):
    """T = 1000 in float32 (JAX's default) agrees with float64 to float32's precision."""
    A = [[1.0, 0.05], [0.0, 1.0]]
    B, Q, R = [[0.0], [0.05]], [[1.0, 0.0], [0.0, 0.1]], [[0.01]]
    spec = {"matrices": [A, B, Q, R], "x0": [1.0, -0.5], "noise": 0.05, "T": 1000, "beta": 3.0}
    out = run_float32_script(FLOAT32_SCRIPT, tmp_path, json.dumps(spec))
    problem = LinearQuadratic(A, B, Q, R, spec["x0"], noise_scale=spec["noise"])
    posterior, policy = solve_lq(problem, 1000, 3.0), soft_bellman_lq(problem, 1000, 3.0)
    assert out["dtype"] == "float32" and out["finite_draws"]
    assert abs(out["log_z"] - float(posterior.log_z)) < 1e-5 * abs(float(posterior.log_z))
    assert abs(out["elbo"] - float(policy.elbo)) < 1e-5 * abs(float(policy.elbo))
    np.testing.assert_allclose(out["mean"], posterior.mean, atol=1e-4)
    np.testing.assert_allclose(out["action_var"], posterior.action_cov[:, 0, 0], rtol=1e-4)
    np.testing.assert_allclose(out["state_mean"], posterior.state_mean, atol=1e-5)
