"""The passes of :mod:`pgm_rl.control.lq` (see its docstring for the recursions): jitted,
``lax.scan`` over the steps, no checks (the public functions check)."""

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_solve, solve_triangular

LOG_2PI = math.log(2 * math.pi)


def latent_map(problem, joint):
    """``(E (dx, dv), prior variances (dv,))`` of a step's latents: the action, and the noise
    where ``joint`` and the problem is stochastic."""
    if joint and problem.is_stochastic:
        E = jnp.concatenate([problem.B, jnp.eye(problem.state_dim, dtype=problem.B.dtype)], 1)
        return E, jnp.concatenate([problem.action_scale**2, problem.noise_scale**2])
    return problem.B, problem.action_scale**2


@functools.partial(jax.jit, static_argnames=("horizon", "joint"))
def riccati(problem, horizon, beta, joint):
    """The backward pass.

    Parameters
    ----------
    problem : LinearQuadratic
    horizon : int
    beta : scalar
    joint : bool
        True: the posterior over the actions and (when stochastic) the noise; False: the
        soft-Bellman policy over the actions, the noise averaged under its prior.

    Returns
    -------
    gains : array (T, dv, dx)
        K_t.
    chol : array (T, dv, dv)
        Lower Cholesky factors of the precisions H_t.
    proper : array (T,) bool
        Whether H_t is positive definite.
    value : scalar
        V_0(x_0): log Z (joint) or the policy's ELBO (not joint).
    """
    A, Q, R = problem.A, problem.Q, problem.R
    dx, du = problem.B.shape
    E, prior_var = latent_map(problem, joint)
    # H_t in the prior's scale, sd H_t sd = I + sd (beta R + E^T M E) sd: its log determinant,
    # log det(prior covariance H_t), comes without cancelling two large terms (float32).
    sd = jnp.sqrt(prior_var)
    cost = jnp.zeros((E.shape[1],) * 2, A.dtype).at[:du, :du].set(beta * R)
    eye = jnp.eye(E.shape[1], dtype=A.dtype)
    averaged = None if joint or not problem.is_stochastic else problem.noise_scale**2

    def back(P, _):
        M = beta * Q + P
        scaled = eye + sd[:, None] * (cost + E.T @ M @ E) * sd[None, :]
        L_scaled = jnp.linalg.cholesky(0.5 * (scaled + scaled.T))
        L = L_scaled / sd[:, None]  # H_t = L L^T
        EMA = E.T @ M @ A
        G = cho_solve((L, True), EMA)
        P_next = A.T @ M @ A - EMA.T @ G
        c_step = -jnp.sum(jnp.log(jnp.diag(L_scaled)))  # c_t - c_{t+1}
        if averaged is not None:
            c_step = c_step - 0.5 * jnp.sum(jnp.diag(M) * averaged)
        proper = jnp.all(jnp.isfinite(L_scaled)) & jnp.all(jnp.diag(L_scaled) > 0)
        return 0.5 * (P_next + P_next.T), (-G, L, proper, c_step)

    start = jnp.zeros((dx, dx), A.dtype)
    P0, (gains, chol, proper, c_steps) = jax.lax.scan(back, start, None, horizon, reverse=True)
    # summed afterwards (pairwise), not carried through the scan: fewer float32 roundings
    c0 = jnp.sum(c_steps)
    x0 = problem.x0
    return gains, chol, proper, c0 - 0.5 * x0 @ P0 @ x0


@jax.jit
def forward(problem, gains, chol, extra_var):
    """The forward pass: marginal moments of the latents and states under x_{t+1} = A x_t +
    E v_t (+ w_t ~ N(0, diag(extra_var)) where ``extra_var`` is not None).

    Returns
    -------
    latent_mean : (T, dv)
    latent_cov : (T, dv, dv)
        Marginal covariance of each step's latents.
    state_mean : (T + 1, dx)
    state_cov : (T + 1, dx, dx)
    step_cov : (T, dv, dv)
        H_t^{-1}, the covariance of v_t given x_t.
    """
    A = problem.A
    dx, dv = A.shape[0], gains.shape[1]
    E = latent_map(problem, dv > problem.action_dim)[0]
    eye = jnp.eye(dv, dtype=A.dtype)

    def step(carry, inputs):
        m, S = carry
        K, L = inputs
        H_inv = cho_solve((L, True), eye)
        F = A + E @ K
        S_next = F @ S @ F.T + E @ H_inv @ E.T
        if extra_var is not None:
            S_next = S_next + jnp.diag(extra_var)
        S_next = 0.5 * (S_next + S_next.T)
        v_cov = K @ S @ K.T + H_inv
        return (F @ m, S_next), (K @ m, 0.5 * (v_cov + v_cov.T), F @ m, S_next, H_inv)

    start = (problem.x0, jnp.zeros((dx, dx), A.dtype))
    _, (v_mean, v_cov, m, S, H_inv) = jax.lax.scan(step, start, (gains, chol))
    state_mean = jnp.concatenate([problem.x0[None], m])
    state_cov = jnp.concatenate([start[1][None], S])
    return v_mean, v_cov, state_mean, state_cov, H_inv


@jax.jit
def joint_covariance(problem, gains, step_cov, state_cov):
    """The covariance (T dv, T dv) of all the latents, O(T^2): Cov(v_t, v_s) = K_t Cov(x_t, v_s)
    for s < t, Cov(x_{t+1}, v_s) = (A + E K_t) Cov(x_t, v_s), Cov(x_{t+1}, v_t) =
    (A + E K_t) S_t K_t^T + E H_t^{-1}."""
    A = problem.A
    T, dv, dx = gains.shape
    E = latent_map(problem, dv > problem.action_dim)[0]

    def row(C, inputs):
        t, K, H_inv, S = inputs
        F = A + E @ K
        rows = jnp.einsum("ax,sxb->sab", K, C).at[t].set(K @ S @ K.T + H_inv)
        C = jnp.einsum("xy,syb->sxb", F, C).at[t].set(F @ S @ K.T + E @ H_inv)
        return C, rows

    inputs = (jnp.arange(T), gains, step_cov, state_cov[:-1])
    _, rows = jax.lax.scan(row, jnp.zeros((T, dx, dv), A.dtype), inputs)  # rows[t, s], s <= t
    lower = jnp.arange(T)[:, None] >= jnp.arange(T)[None, :]
    full = jnp.where(lower[:, :, None, None], rows, jnp.transpose(rows, (1, 0, 3, 2)))
    return jnp.transpose(full, (0, 2, 1, 3)).reshape(T * dv, T * dv)


@functools.partial(jax.jit, static_argnames=("n", "joint"))
def sample_chain(problem, gains, chol, key, n, joint):
    """``n`` trajectories: v_t = K_t x_t + L_t^{-T} z_t; the noise is a latent where ``joint``,
    else drawn from its prior (the policy under the true dynamics).

    Returns
    -------
    dict
        ``"actions"`` (n, T, du), ``"states"`` (n, T + 1, dx), ``"rewards"`` (n, T), and
        ``"noise"`` (n, T, dx) on a stochastic problem.
    """
    T, dv, dx = gains.shape
    du = problem.action_dim
    E = latent_map(problem, joint)[0]
    key_latent, key_noise = jax.random.split(key)
    z = jax.random.normal(key_latent, (T, n, dv), problem.A.dtype)
    prior_noise = problem.is_stochastic and not joint
    w = (
        jax.random.normal(key_noise, (T, n, dx), problem.A.dtype) * problem.noise_scale
        if prior_noise
        else jnp.zeros((T, n, 0), problem.A.dtype)
    )

    def step(x, inputs):
        K, L, z_t, w_t = inputs
        v = x @ K.T + solve_triangular(L.T, z_t.T, lower=False).T
        x_next = x @ problem.A.T + v @ E.T
        if prior_noise:
            x_next = x_next + w_t
            v = jnp.concatenate([v, w_t], axis=1)
        return x_next, v

    x0 = jnp.broadcast_to(problem.x0, (n, dx))
    _, v = jax.lax.scan(step, x0, (gains, chol, z, w))
    v = jnp.swapaxes(v, 0, 1)  # (n, T, dv)
    actions = v[..., :du]
    noise = v[..., du:] if problem.is_stochastic else None
    states, rewards = jax.vmap(problem.rollout)(actions, noise)
    draws = {"actions": actions, "states": states, "rewards": rewards}
    if noise is not None:
        draws["noise"] = noise
    return draws


@jax.jit
def policy_elbo(problem, beta, chol, action_mean, action_cov, state_mean, state_cov):
    """E[beta * return + log prior(u) - log pi(u | x)] from the executed moments (exact)."""
    Q, R = problem.Q, problem.R
    var = problem.action_scale**2
    du = problem.action_dim
    m, S = state_mean[1:], state_cov[1:]
    reward = -0.5 * (
        jnp.einsum("ti,ij,tj->", m, Q, m)
        + jnp.einsum("ij,tji->", Q, S)
        + jnp.einsum("ti,ij,tj->", action_mean, R, action_mean)
        + jnp.einsum("ij,tji->", R, action_cov)
    )
    second = action_mean**2 + jnp.diagonal(action_cov, axis1=1, axis2=2)
    log_prior = -0.5 * jnp.sum(second / var) - 0.5 * action_mean.shape[0] * jnp.sum(
        LOG_2PI + jnp.log(var)
    )
    entropy = action_mean.shape[0] * 0.5 * du * (1.0 + LOG_2PI) - jnp.sum(
        jnp.log(jnp.diagonal(chol, axis1=1, axis2=2))
    )
    return beta * reward + log_prior + entropy
