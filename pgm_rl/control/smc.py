"""Sequential Monte Carlo over the time steps of a continuous control problem: :func:`run_smc` and
:class:`ControlSMCResult`.

The continuous twin of :func:`pgm_rl.smc.run_smc`: N particles start at ``x0``; at step t each
draws its action from the proposal (by default the prior ``N(0, action_scale^2)``: the
bootstrap filter), its noise from its prior on stochastic dynamics, takes the step and
multiplies its weight by ``prior(u_t) / q_t(u_t) * exp(beta * r_t)``; the particles are
resampled (multinomially) whenever the ESS falls below ``ess_threshold * N``. The running
product of the mean incremental weights estimates Z without bias, and its standard error
comes from the genealogy (Lee and Whiteley 2018; see :mod:`pgm_rl.smc`):
``var(Z_hat) / Z^2 ~= 1 - (N / (N - 1))^(R + 1) (1 - sum_e m_e^2)``, with ``m_e`` the final
weight descending from initial particle e and R the number of resampling events.

Compared with MPPI (one importance-sampling step over whole trajectories), resampling lets
the particles that collected reward early multiply, so the weights degenerate more slowly in
the horizon; the price is path degeneracy (few distinct early actions), which
``effective_ancestors`` measures: below :data:`pgm_rl.smc.MIN_ANCESTORS` the SE is unreliable
(``saturated``).

``twist`` (see :mod:`pgm_rl.control.twist`) targets prior * exp(beta sum_{s<=t} r_s) *
exp(V_{t+1}(x_{t+1})) at step t with a quadratic value V (or a log-mean-exp mixture of
several) and proposes each step's latents (the
action, and the noise when stochastic) from the Gaussian that is optimal for that target under
a local linear-quadratic model; the incremental weight prior(v) exp(beta r_t + V_{t+1}(x') -
V_t(x)) / q(v | x) is exact for the true dynamics and reward, and log Z_hat starts at
V_0(x_0). On a linear-quadratic problem with its own value every weight is 1 (log Z exact,
ESS = N).
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax, random
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp
from jax.scipy.stats import norm

from pgm_rl._sampling import multinomial_resample
from pgm_rl.control._importance import (
    check_common,
    check_plan,
    check_sample_count,
    draw_noise,
    finite_rewards,
)
from pgm_rl.control.twist import TwistedValues, lq_twist
from pgm_rl.smc.result import MIN_ANCESTORS

__all__ = ["ControlSMCResult", "run_smc"]


class ControlSMCResult(NamedTuple):
    """The final particles of one :func:`run_smc` run (paths traced back through the ancestors).

    Attributes
    ----------
    trajectories : dict of arrays
        ``"actions"`` (N, T, du), ``"states"`` (N, T + 1, dx), ``"rewards"`` (N, T) and, on
        stochastic dynamics, ``"noise"`` (N, T, dx).
    log_weights : float array, shape (N,)
        Normalised final log weights.
    log_z, log_z_se : float scalars
        The log of the unbiased Z estimate and its genealogy standard error.
    ess : float scalar
        ESS of the final weights, in [1, N].
    num_resampling : int scalar
        Resampling events.
    effective_ancestors : float scalar
        ``1 / sum_e m_e^2``: how many initial particles effectively survive.
    """

    trajectories: dict
    log_weights: jax.Array
    log_z: jax.Array
    log_z_se: jax.Array
    ess: jax.Array
    num_resampling: jax.Array
    effective_ancestors: jax.Array

    @property
    def weights(self):
        """Normalised final weights, shape (N,)."""
        return jnp.exp(self.log_weights)

    @property
    def actions(self):
        """The weighted mean of the particles' actions, shape (T, du)."""
        return jnp.einsum("n,ntd->td", self.weights, self.trajectories["actions"])

    @property
    def saturated(self):
        """True when fewer than :data:`pgm_rl.smc.MIN_ANCESTORS` (20) initial particles
        effectively survive: ``log_z_se`` is then unreliable (see :mod:`pgm_rl.smc`)."""
        return bool(self.effective_ancestors < MIN_ANCESTORS)

    def resample(self, key, n):
        """``n`` equally weighted draws of :attr:`trajectories` (multinomial); a dict."""
        n = check_sample_count(n, "n", minimum=1)
        index = multinomial_resample(key, self.log_weights, n)
        return {name: value[index] for name, value in self.trajectories.items()}


def run_smc(
    problem,
    horizon,
    beta,
    num_particles,
    key,
    ess_threshold=0.5,
    proposal_mean=None,
    proposal_scale=None,
    twist=None,
):
    """Run SMC over the steps, with adaptive multinomial resampling, on the trajectory posterior.

    Parameters
    ----------
    problem : ControlProblem
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0.
    num_particles : int
        N >= 2.
    key : jax PRNG key
    ess_threshold : float, default 0.5
        Resample when ESS < ``ess_threshold * N``; in [0, 1] (0: never, plain importance
        sampling of the prior; 1: every step).
    proposal_mean, proposal_scale : array_like, shape (T, du), (du,) or scalar, optional
        A Gaussian proposal ``u_t ~ N(mean_t, scale_t^2)`` (e.g. an MPPI plan); default the
        prior (mean 0, ``action_scale``). The weights carry ``prior / q``, so the estimates stay
        exact whatever the proposal.
    twist : None, "lq", TwistedValues or list of TwistedValues, optional
        Twist the intermediate targets by a quadratic value V_t(x) and propose each step's
        latents (the action, and the noise when stochastic) from the Gaussian that is optimal
        for the twisted target of the next step under a local linear-quadratic model (see
        :mod:`pgm_rl.control.twist`). A list is a mixture twist log mean_m exp(V^m_t(x)), whose
        proposal picks mode m with probability ∝ exp(V^m_t(x)): one linearisation follows one
        mode of the posterior, and the mixture keeps the others (the pendulum's two swing-up
        directions: with one mode Z_hat / Z averaged 0.50 +- 0.01 over 400 runs at T = 10,
        with three 0.97 +- 0.016). ``"lq"`` is the mixture of :func:`~pgm_rl.control.lq_twist`
        from the nominals 0, +action_scale and -action_scale (constant actions). The weights
        carry ``prior(v) exp(beta r + psi_{t+1}(x')) / (q(v | x) exp(psi_t(x)))``, so log Z
        stays unbiased whatever the twist; with the exact value of a linear-quadratic problem
        every weight is 1. Not with ``proposal_mean``/``proposal_scale``.
    Returns
    -------
    ControlSMCResult

    Raises
    ------
    ValueError
        Bad arguments, or sampled rewards that are not finite (naming the first).
    """
    horizon, beta = check_common(problem, horizon, beta, key)
    num_particles = check_sample_count(num_particles, "num_particles")
    if isinstance(ess_threshold, bool) or not isinstance(ess_threshold, (int, float)):
        raise TypeError(f"ess_threshold must be a number in [0, 1], got {ess_threshold!r}")
    if not 0.0 <= ess_threshold <= 1.0:
        raise ValueError(f"ess_threshold must be a number in [0, 1], got {ess_threshold}")
    dtype = jnp.asarray(problem.x0).dtype
    du = problem.action_dim
    mean = check_plan(0.0 if proposal_mean is None else proposal_mean, horizon, du,
                      "proposal_mean", dtype)  # fmt: skip
    scale = problem.action_scale if proposal_scale is None else proposal_scale
    scale = check_plan(scale, horizon, du, "proposal_scale", dtype, positive=True)
    twist = _check_twist(twist, problem, horizon, beta, proposal_mean, proposal_scale)
    result = _smc(problem, key, beta, float(ess_threshold), mean, scale, num_particles, twist)
    finite_rewards(result.trajectories["rewards"], "smc")
    return result


def _check_twist(twist, problem, horizon, beta, proposal_mean, proposal_scale):
    """``twist`` as None or a :class:`TwistedValues` of the problem's shapes with a leading
    mode axis (M, ...): the modes of a mixture twist, stacked."""
    if twist is None:
        return None
    if proposal_mean is not None or proposal_scale is not None:
        raise ValueError(
            "twist replaces the proposal (its Gaussian steps are the proposal): pass twist or "
            "proposal_mean/proposal_scale, not both"
        )
    if isinstance(twist, str) and twist == "lq":
        scale = problem.action_scale
        twist = [lq_twist(problem, horizon, beta, nominal) for nominal in (0.0, scale, -scale)]
    twists = list(twist) if isinstance(twist, (list, tuple)) and not isinstance(
        twist, TwistedValues) else [twist]  # fmt: skip
    if not twists or not all(isinstance(mode, TwistedValues) for mode in twists):
        raise TypeError(
            'twist must be None, "lq", a pgm_rl.control.TwistedValues or a non-empty list of '
            f"them (a mixture), got {twist!r}"
        )
    dx = problem.state_dim
    dv = problem.action_dim + (dx if problem.is_stochastic else 0)
    shapes = {"P": (horizon + 1, dx, dx), "p": (horizon + 1, dx), "c": (horizon + 1,),
              "gains": (horizon, dv, dx), "offsets": (horizon, dv), "chol": (horizon, dv, dv)}  # fmt: skip
    for mode in twists:
        for name, shape in shapes.items():
            got = jnp.shape(getattr(mode, name))
            if got != shape:
                raise ValueError(
                    f"twist.{name} must have shape {shape} for this problem and horizon (dv = "
                    f"{dv} latents a step), got {got}"
                )
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *twists)


@partial(jax.jit, static_argnums=(6,))
def _smc(problem, key, beta, ess_threshold, mean, scale, num_particles, twist=None):
    """The forward pass (one ``lax.scan`` over the steps) and the trace back of the paths."""
    horizon = mean.shape[0]
    dtype = mean.dtype
    du = mean.shape[1]
    x0 = jnp.broadcast_to(problem.x0, (num_particles, problem.state_dim))
    uniform = jnp.full(num_particles, -jnp.log(num_particles), dtype)

    def propose(x, t, action_key, noise_key):
        """The step's action, noise and log(prior / proposal) of each particle."""
        if twist is None:
            eps = random.normal(action_key, (num_particles, du), dtype)
            u = mean[t] + scale[t] * eps
            ratio = norm.logpdf(u, 0.0, problem.action_scale) - norm.logpdf(eps) + jnp.log(scale[t])
            return u, draw_noise(problem, noise_key, (num_particles,)), ratio.sum(axis=1)
        # a mixture over the twist's modes m: pick m with probability pi_m(x) ∝ exp(V^m_t(x))
        # (the mass of mode m's local model), then v ~ N(K^m_t x + k^m_t, (H^m_t)^-1)
        mode_key, draw_key = random.split(action_key)
        log_pi = jax.nn.log_softmax(modes(t, x), axis=0)  # (M, N)
        pick = random.categorical(mode_key, log_pi, axis=0)  # (N,)
        centres = jnp.einsum("mvx,nx->mnv", twist.gains[:, t], x) + twist.offsets[:, t, None]
        L = twist.chol[:, t]  # (M, dv, dv)
        z = random.normal(draw_key, (num_particles, L.shape[1]), dtype)
        noise = jax.vmap(lambda L_n, z_n: solve_triangular(L_n.T, z_n, lower=False))(L[pick], z)
        v = centres[pick, jnp.arange(num_particles)] + noise
        whitened = jnp.einsum("mnv,mvw->mnw", v[None] - centres, L)  # L^T (v - centre)
        log_det = jnp.sum(jnp.log(jnp.diagonal(L, axis1=1, axis2=2)), axis=1)
        log_q = logsumexp(log_pi + norm.logpdf(whitened).sum(axis=2) + log_det[:, None], axis=0)
        u, w = v[:, :du], (v[:, du:] if problem.is_stochastic else None)
        log_p = norm.logpdf(u, 0.0, problem.action_scale).sum(axis=1)
        if w is not None:
            log_p = log_p + norm.logpdf(w, 0.0, problem.noise_scale).sum(axis=1)
        return u, w, log_p - log_q

    def modes(t, x):
        """V^m_t(x) of each mode, shape (M, N)."""
        return jax.vmap(lambda mode: TwistedValues(*mode).value(t, x))(tuple(twist))

    def psi(t, x):
        """The mixture twist log mean_m exp(V^m_t(x)), shape (N,)."""
        return logsumexp(modes(t, x), axis=0) - jnp.log(twist.P.shape[0])

    def forward(carry, inputs):
        x, log_w, log_z, eve, resampled = carry
        step_key, t = inputs
        action_key, noise_key, resample_key = random.split(step_key, 3)
        u, w, ratio = propose(x, t, action_key, noise_key)
        x_next, r = jax.vmap(problem.step)(x, u, w)
        log_w = log_w + ratio + beta * r
        if twist is not None:
            log_w = log_w + psi(t + 1, x_next) - psi(t, x)
        total = logsumexp(log_w)
        log_w = log_w - total
        ess = 1.0 / jnp.sum(jnp.exp(2.0 * log_w))
        resample = (ess < ess_threshold * num_particles) & (t < horizon - 1)
        ancestors = jnp.where(
            resample, multinomial_resample(resample_key, log_w, num_particles),
            jnp.arange(num_particles),
        )  # fmt: skip
        carry = (x_next[ancestors], jnp.where(resample, uniform, log_w), log_z + total,
                 eve[ancestors], resampled + resample)  # fmt: skip
        step = (ancestors, x_next, r, u, jnp.zeros((num_particles, 0), dtype) if w is None else w)
        return carry, step

    # the twisted targets' normalising constants start at exp(V_0(x_0)), not 1
    log_z0 = jnp.zeros((), dtype) if twist is None else psi(0, problem.x0[None])[0].astype(dtype)
    start = (x0, uniform, log_z0, jnp.arange(num_particles), jnp.zeros((), jnp.int32))
    inputs = (random.split(key, horizon), jnp.arange(horizon))
    (_, log_w, log_z, eve, resampled), steps = lax.scan(forward, start, inputs)

    def trace_back(index, step):
        ancestors, *arrays = step
        parent = ancestors[index]
        return parent, tuple(array[parent] for array in arrays)

    _, (entered, rewards, actions, noise) = lax.scan(
        trace_back, jnp.arange(num_particles), steps, reverse=True
    )
    states = jnp.concatenate([x0[None], entered]).swapaxes(0, 1)
    trajectories = {"actions": actions.swapaxes(0, 1), "states": states,
                    "rewards": rewards.T}  # fmt: skip
    if problem.is_stochastic:
        trajectories["noise"] = noise.swapaxes(0, 1)
    weights = jnp.exp(log_w)
    eve_mass = jax.ops.segment_sum(weights, eve, num_segments=num_particles)
    ancestor_square = jnp.clip(jnp.sum(eve_mass**2), 1.0 / num_particles, 1.0)
    growth = (num_particles / (num_particles - 1.0)) ** (resampled + 1)
    rel_var = jnp.clip(1.0 - growth * (1.0 - ancestor_square), 0.0, 1.0)
    ess = 1.0 / jnp.clip(jnp.sum(weights**2), 1.0 / num_particles, 1.0)
    return ControlSMCResult(
        trajectories, log_w, log_z, jnp.sqrt(rel_var), ess, resampled, 1.0 / ancestor_square
    )
