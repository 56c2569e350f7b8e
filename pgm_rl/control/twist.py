"""Quadratic twists for continuous SMC: the LQ value of a local linear-quadratic model
(iLQR-style), :func:`lq_twist` and :class:`TwistedValues`.

Around a nominal trajectory (x̄_t, ū_t) the dynamics are linearised, x' ≈ a_t + A_t x + E_t v
(v the step's latents: the action, and the noise when stochastic, E_t = [B_t, I] or B_t), and
the reward is quadratised in (x, u, x') with its Hessian's positive eigenvalues set to 0 (so the
local model is concave and every step's precision positive definite). The backward pass of
:mod:`pgm_rl.control.lq`, with time-varying matrices and linear terms, gives the soft value
V_t(x) = -1/2 x^T P_t x + p_t^T x + c_t of the local model (V_T = 0) and, for each step, the
Gaussian v_t | x_t ~ N(K_t x_t + k_t, H_t^{-1}) ∝ prior(v) exp(beta r~_t + V_{t+1}(x')): the
locally optimal proposal given the twist of the next step. With ``iterations`` > 0 the nominal
takes iLQR steps (a backtracking line search on beta * return + log prior(u) along the
proposal's mean feedback policy, noise 0) and the model is rebuilt; the twist only has to be
good, the SMC weights correct it.

On a :class:`~pgm_rl.control.LinearQuadratic` problem (Q positive semi-definite) the local model
is the problem itself, V_0(x_0) is :func:`~pgm_rl.control.solve_lq`'s log Z and the proposal is
its posterior step: every twisted SMC weight is 1.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import cho_solve

from pgm_rl.control._importance import check_common, check_plan, log_prior

__all__ = ["TwistedValues", "lq_twist"]


class TwistedValues(NamedTuple):
    """A quadratic twist and its Gaussian proposals (from :func:`lq_twist`).

    Attributes
    ----------
    P : float array, shape (T + 1, dx, dx)
        Positive semi-definite curvature of the values; ``P[T] = 0``.
    p : float array, shape (T + 1, dx)
        Linear terms; ``p[T] = 0``.
    c : float array, shape (T + 1,)
        Constants; ``c[T] = 0``. The twist is V_t(x) = -1/2 x^T P_t x + p_t^T x + c_t.
    gains, offsets : float arrays, shapes (T, dv, dx), (T, dv)
        The proposal mean K_t x + k_t of the step's latents v_t (dv = du, or du + dx with noise).
    chol : float array, shape (T, dv, dv)
        Lower Cholesky factor L_t of the proposal precision H_t = L_t L_t^T.
    nominal_states : float array, shape (T + 1, dx)
    nominal_actions : float array, shape (T, du)
        The trajectory the local model was built around.
    """

    P: jax.Array
    p: jax.Array
    c: jax.Array
    gains: jax.Array
    offsets: jax.Array
    chol: jax.Array
    nominal_states: jax.Array
    nominal_actions: jax.Array

    def value(self, t, x):
        """V_t(x) for states ``x`` of shape (..., dx); a float array of shape (...)."""
        return -0.5 * jnp.einsum("...i,ij,...j->...", x, self.P[t], x) + x @ self.p[t] + self.c[t]


def lq_twist(problem, horizon, beta, nominal=None, iterations=3):
    """The LQ value of a linearisation of ``problem`` as an SMC twist (iLQR-style).

    Parameters
    ----------
    problem : ControlProblem
    horizon : int
        T >= 1.
    beta : float
        Inverse temperature >= 0.
    nominal : array_like, shape (T, du) or (du,) or scalar, optional
        The nominal actions (e.g. an MPPI plan); default zeros (the prior mean).
    iterations : int, default 3
        iLQR steps of the nominal (each keeps the nominal unless it raises
        beta * return + log prior(u)), the model rebuilt after each (>= 0; irrelevant for a
        linear-quadratic problem, where the model is exact).

    Returns
    -------
    TwistedValues

    Raises
    ------
    TypeError, ValueError
        Bad arguments (naming them), or a model that is not finite (the dynamics or reward are
        not differentiable there, or overflow).
    """
    horizon, beta = check_common(problem, horizon, beta, jax.random.key(0))
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise TypeError(f"iterations must be an int >= 0, got {iterations!r}")
    if iterations < 0:
        raise ValueError(f"iterations must be an int >= 0, got {iterations}")
    dtype = jnp.asarray(problem.x0).dtype
    nominal = check_plan(0.0 if nominal is None else nominal, horizon, problem.action_dim,
                         "nominal", dtype)  # fmt: skip
    twist = _iterate(problem, beta, nominal, iterations)
    if not all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in twist):
        raise ValueError(
            "lq_twist: the local linear-quadratic model is not finite (the dynamics or reward "
            "overflow or are not differentiable along the nominal trajectory); pass another "
            "nominal or use twist=None"
        )
    return twist


@partial(jax.jit, static_argnums=(3,))
def _iterate(problem, beta, actions, iterations):
    def improve(_, twist):
        return _build(problem, beta, _line_search(problem, beta, twist))

    first = _build(problem, beta, actions)
    return jax.lax.fori_loop(0, iterations, improve, first)


STEPS = 0.5 ** np.arange(8)  # the line search's step sizes 1, 1/2, ..., 1/128


def _line_search(problem, beta, twist):
    """iLQR's step: the actions u_t = ū_t + alpha (K_t x̄_t + k_t - ū_t) + K_t (x_t - x̄_t) on
    the true dynamics (noise 0), for the alpha in :data:`STEPS` (and 0: no change) that
    maximises beta * return + log prior(u)."""
    du = problem.action_dim
    K = twist.gains[:, :du]
    shift = jnp.einsum("tvx,tx->tv", K, twist.nominal_states[:-1]) + twist.offsets[:, :du]
    shift = shift - twist.nominal_actions

    def rollout(alpha):
        def one(x, inputs):
            K_t, x_bar, u_bar, d = inputs
            u = u_bar + alpha * d + K_t @ (x - x_bar)
            x_next, r = problem.step(x, u)
            return x_next, (u, r)

        inputs = (K, twist.nominal_states[:-1], twist.nominal_actions, shift)
        u, r = jax.lax.scan(one, problem.x0, inputs)[1]
        objective = beta * jnp.sum(r) + log_prior(problem, u)
        return u, jnp.where(jnp.isfinite(objective), objective, -jnp.inf)

    candidates, objectives = jax.vmap(rollout)(jnp.asarray(STEPS, shift.dtype))
    current = beta * jnp.sum(problem.rollout(twist.nominal_actions)[1])
    current = current + log_prior(problem, twist.nominal_actions)
    best = jnp.argmax(objectives)
    return jnp.where(objectives[best] > current, candidates[best], twist.nominal_actions)


def _local_model(problem, x, u):
    """``(a, A, B, r, g, H)``: the step's linearisation x' ≈ a + A x + B u and the reward's
    value, gradient and (negative semi-definite) Hessian in y = (x, u, x') at (x, u, f(x, u))."""
    x_next = problem.step(x, u)[0]
    A, B = jax.jacfwd(problem.dynamics, argnums=(0, 1))(x, u)
    A, B = A.astype(x.dtype), B.astype(x.dtype)
    y = jnp.concatenate([x, u, x_next])
    dx, du = x.shape[0], u.shape[0]

    def reward(y):
        return jnp.asarray(problem.reward(y[:dx], y[dx : dx + du], y[dx + du :])).astype(x.dtype)

    g = jax.grad(reward)(y)
    hessian = jax.hessian(reward)(y)
    eigenvalues, vectors = jnp.linalg.eigh(0.5 * (hessian + hessian.T))
    concave = (vectors * jnp.minimum(eigenvalues, 0.0)) @ vectors.T
    return x_next - A @ x - B @ u, A, B, reward(y), g, concave


def _build(problem, beta, actions):
    """The twist of the local model around the rollout of ``actions`` (T, du)."""
    dtype = actions.dtype
    states = problem.rollout(actions)[0]
    a, A, B, r_bar, g, Hr = jax.vmap(partial(_local_model, problem))(states[:-1], actions)
    dx, du = problem.state_dim, problem.action_dim
    if problem.is_stochastic:
        E = jnp.concatenate([B, jnp.broadcast_to(jnp.eye(dx, dtype=dtype), A.shape)], axis=2)
        prior_var = jnp.concatenate([problem.action_scale**2, problem.noise_scale**2])
    else:
        E, prior_var = B, problem.action_scale**2
    dv = E.shape[2]
    sd = jnp.sqrt(prior_var)
    eye_v = jnp.eye(dv, dtype=dtype)
    select = jnp.concatenate(
        [jnp.zeros((du, dx), dtype), jnp.eye(du, dv, dtype=dtype)], axis=1
    )  # u = select @ z, z = (x, v)

    def back(carry, inputs):
        P, p, c = carry
        a_t, A_t, E_t, r_t, g_t, H_t, x_bar, u_bar = inputs
        D = jnp.concatenate([A_t, E_t], axis=1)  # x' = a + D z
        C = jnp.concatenate([jnp.eye(dx, dx + dv, dtype=dtype), select, D])  # y = C z + d
        e = jnp.concatenate([-x_bar, -u_bar, -(A_t @ x_bar + E_t[:, :du] @ u_bar)])
        G = beta * C.T @ H_t @ C - D.T @ P @ D
        lin = beta * C.T @ (g_t + H_t @ e) + D.T @ (p - P @ a_t)
        const = beta * (r_t + g_t @ e + 0.5 * e @ H_t @ e) + c + p @ a_t - 0.5 * a_t @ P @ a_t
        Gxx, Gxv, Gvv = G[:dx, :dx], G[:dx, dx:], G[dx:, dx:]
        scaled = eye_v - sd[:, None] * Gvv * sd[None, :]  # sd H sd, H = prior precision - Gvv
        L_scaled = jnp.linalg.cholesky(0.5 * (scaled + scaled.T))
        L = L_scaled / sd[:, None]
        K = cho_solve((L, True), Gxv.T)
        k = cho_solve((L, True), lin[dx:])
        P_t = -(Gxx + Gxv @ K)
        p_t = lin[:dx] + Gxv @ k
        c_t = const + 0.5 * lin[dx:] @ k - jnp.sum(jnp.log(jnp.diag(L_scaled)))
        return (0.5 * (P_t + P_t.T), p_t, c_t), (P_t, p_t, c_t, K, k, L)

    end = (jnp.zeros((dx, dx), dtype), jnp.zeros(dx, dtype), jnp.zeros((), dtype))
    inputs = (a, A, E, r_bar, g, Hr, states[:-1], actions)
    _, (P, p, c, K, k, L) = jax.lax.scan(back, end, inputs, reverse=True)
    P = jnp.concatenate([0.5 * (P + P.transpose(0, 2, 1)), end[0][None]])
    return TwistedValues(P, jnp.concatenate([p, end[1][None]]),
                         jnp.concatenate([c, end[2][None]]), K, k, L, states,
                         actions)  # fmt: skip
