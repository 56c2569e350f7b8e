"""What :func:`~pgm_rl.control.solve_lq` and :func:`~pgm_rl.control.soft_bellman_lq` return."""

import functools

import jax
import jax.numpy as jnp

from pgm_rl._checks import check_fits_in_memory, check_key, check_positive_int, itemsize
from pgm_rl.control.lq_passes import LOG_2PI, joint_covariance, latent_map, sample_chain


def _check_draws(problem, horizon, n):
    n = check_positive_int(n, "n")
    per_draw = (horizon + 1) * (2 * problem.state_dim + problem.action_dim + 1) * itemsize()
    check_fits_in_memory(3 * n * per_draw, "n", n, f"{n} trajectories", "draw fewer at a time")
    return n


class GaussianPosterior:
    """The exact Gaussian trajectory posterior of a linear-quadratic problem.

    The latents of step t are v_t = u_t (du,), or (u_t, w_t) (du + dx,) on a stochastic
    problem (the optimistic posterior chooses the noise too). Under the posterior they form a
    linear-Gaussian chain: v_t | x_t ~ N(K_t x_t, H_t^{-1}), x_{t+1} = A x_t + E v_t.

    Attributes
    ----------
    problem : LinearQuadratic
    horizon : int
    beta : float
    log_z : scalar array
        log E_prior[exp(beta * return)].
    mean : array (T, du)
        Posterior mean of the actions.
    action_cov : array (T, du, du)
        Marginal covariance of each step's action.
    cov : array (T du, T du)
        Covariance of all the actions (row t du + i is u_t[i]); computed on first use, O(T^2).
    state_mean : array (T + 1, dx)
    state_cov : array (T + 1, dx, dx)
        Posterior moments of the states (x_0 fixed: zero covariance).
    noise_mean : array (T, dx) or None
        Posterior mean of the noise (None on deterministic problems).
    joint_mean : array (T, dv)
        Posterior mean of each step's latents (actions, then noise).
    joint_cov : array (T dv, T dv)
        Covariance of all the latents (computed on first use).
    gains : array (T, dv, dx)
        K_t.
    step_cov : array (T, dv, dv)
        H_t^{-1}, the covariance of v_t given x_t.
    """

    def __init__(self, problem, horizon, beta, log_z, gains, chol, *moments):
        latent_mean, latent_cov, state_mean, state_cov, step_cov = moments
        du = problem.action_dim
        self.problem, self.horizon, self.beta, self.log_z = problem, horizon, beta, log_z
        self.gains, self.step_cov, self._chol = gains, step_cov, chol
        self.joint_mean = latent_mean
        self.mean = latent_mean[:, :du]
        self.action_cov = latent_cov[:, :du, :du]
        self.noise_mean = latent_mean[:, du:] if problem.is_stochastic else None
        self.state_mean, self.state_cov = state_mean, state_cov

    def __repr__(self):
        return (
            f"GaussianPosterior(horizon={self.horizon}, beta={self.beta}, "
            f"log_z={float(self.log_z):.6g})"
        )

    @functools.cached_property
    def joint_cov(self):
        size = self.horizon * self.gains.shape[1]
        check_fits_in_memory(
            4 * size**2 * itemsize(),
            "horizon",
            self.horizon,
            "the full covariance of the latents",
            "use action_cov (per step) or a shorter horizon",
        )
        return joint_covariance(self.problem, self.gains, self.step_cov, self.state_cov)

    @property
    def cov(self):
        T, dv = self.joint_mean.shape
        du = self.problem.action_dim
        if dv == du:
            return self.joint_cov
        blocks = self.joint_cov.reshape(T, dv, T, dv)[:, :du, :, :du]
        return blocks.reshape(T * du, T * du)

    def sample(self, key, n):
        """``n`` exact posterior draws (a scan over the steps, vectorised over the draws).

        Parameters
        ----------
        key : jax.random.key
        n : int

        Returns
        -------
        dict
            ``"actions"`` (n, T, du), ``"states"`` (n, T + 1, dx), ``"rewards"`` (n, T), and
            ``"noise"`` (n, T, dx) on a stochastic problem.
        """
        check_key(key)
        n = _check_draws(self.problem, self.horizon, n)
        return sample_chain(self.problem, self.gains, self._chol, key, n, joint=True)

    def log_prob(self, actions, noise=None):
        """The posterior log density of trajectories.

        Parameters
        ----------
        actions : array (..., T, du)
        noise : array (..., T, dx)
            Required on a stochastic problem (the posterior is over actions and noise).

        Returns
        -------
        array (...,)
        """
        problem, T = self.problem, self.horizon
        actions = jnp.asarray(actions, problem.A.dtype)
        if actions.shape[-2:] != (T, problem.action_dim):
            raise ValueError(
                f"actions must have shape (..., {T}, {problem.action_dim}), got {actions.shape}"
            )
        if problem.is_stochastic:
            if noise is None:
                raise ValueError(
                    "noise is needed on a stochastic problem: the posterior is over the actions "
                    "and the noise (pass the draws' 'noise')"
                )
            noise = jnp.asarray(noise, problem.A.dtype)
            if noise.shape != (*actions.shape[:-1], problem.state_dim):
                raise ValueError(
                    f"noise must have shape {(*actions.shape[:-1], problem.state_dim)} like the "
                    f"actions, got {noise.shape}"
                )
            latents = jnp.concatenate([actions, noise], axis=-1)
        elif noise is not None:
            raise ValueError("noise must be None on a deterministic problem")
        else:
            latents = actions
        batch = latents.shape[:-2]
        flat = latents.reshape((-1, *latents.shape[-2:]))
        return _chain_log_prob(problem, self.gains, self._chol, flat).reshape(batch)


@jax.jit
def _chain_log_prob(problem, gains, chol, latents):
    """sum_t log N(v_t; K_t x_t, H_t^{-1}) for latents (n, T, dv)."""
    E = latent_map(problem, gains.shape[1] > problem.action_dim)[0]
    log_det = jnp.sum(jnp.log(jnp.diagonal(chol, axis1=1, axis2=2)))

    def step(x, inputs):
        K, L, v = inputs
        eps = v - x @ K.T
        white = eps @ L  # L^T eps: eps^T H eps = |L^T eps|^2
        return x @ problem.A.T + v @ E.T, -0.5 * jnp.sum(white**2, axis=-1)

    x0 = jnp.broadcast_to(problem.x0, (latents.shape[0], problem.state_dim))
    _, quad = jax.lax.scan(step, x0, (gains, chol, jnp.swapaxes(latents, 0, 1)))
    T, dv = latents.shape[1:]
    return jnp.sum(quad, axis=0) + log_det - 0.5 * T * dv * LOG_2PI


class LinearGaussianPolicy:
    """The maximum-entropy LQR policy u_t ~ N(K_t x_t + k_t, Sigma_t) and its executed moments.

    Attributes
    ----------
    problem : LinearQuadratic
    horizon : int
    beta : float
    gains : array (T, du, dx)
        K_t.
    offsets : array (T, du)
        k_t (zero: the rewards have no linear terms and the prior is centred).
    cov : array (T, du, du)
        Sigma_t.
    elbo : scalar array
        E[beta * return + log prior(u) - log pi(u | x)] under the true dynamics (the noise
        from its prior); equals log Z on deterministic problems, is below it on noisy ones.
    action_mean, action_cov : arrays (T, du), (T, du, du)
        Marginal moments of the executed actions.
    state_mean, state_cov : arrays (T + 1, dx), (T + 1, dx, dx)
        Marginal moments of the executed states.
    """

    def __init__(self, problem, horizon, beta, elbo, gains, chol, *moments):
        action_mean, action_cov, state_mean, state_cov, step_cov = moments
        self.problem, self.horizon, self.beta, self.elbo = problem, horizon, beta, elbo
        self.gains, self.cov, self._chol = gains, step_cov, chol
        self.offsets = jnp.zeros_like(action_mean)
        self.action_mean, self.action_cov = action_mean, action_cov
        self.state_mean, self.state_cov = state_mean, state_cov

    def __repr__(self):
        return (
            f"LinearGaussianPolicy(horizon={self.horizon}, beta={self.beta}, "
            f"elbo={float(self.elbo):.6g})"
        )

    def sample(self, key, n):
        """``n`` episodes of the policy in the true dynamics (the noise from its prior).

        Returns
        -------
        dict
            ``"actions"`` (n, T, du), ``"states"`` (n, T + 1, dx), ``"rewards"`` (n, T), and
            ``"noise"`` (n, T, dx) on a stochastic problem.
        """
        check_key(key)
        n = _check_draws(self.problem, self.horizon, n)
        return sample_chain(self.problem, self.gains, self._chol, key, n, joint=False)

    def log_prob(self, actions, states):
        """sum_t log pi_t(u_t | x_t) of episodes: actions (..., T, du), states (..., T + 1, dx)
        (the last state unused); returns (...,)."""
        actions = jnp.asarray(actions, self.problem.A.dtype)
        states = jnp.asarray(states, self.problem.A.dtype)
        eps = actions - jnp.einsum("tax,...tx->...ta", self.gains, states[..., :-1, :])
        white = jnp.einsum("...ta,tab->...tb", eps, self._chol)
        log_det = jnp.sum(jnp.log(jnp.diagonal(self._chol, axis1=1, axis2=2)))
        T, du = self.gains.shape[:2]
        return -0.5 * jnp.sum(white**2, axis=(-2, -1)) + log_det - 0.5 * T * du * LOG_2PI
