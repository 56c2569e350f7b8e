"""Message passing on sparse stochastic dynamics: the arithmetic under solve, soft_bellman and
evaluate_policy for MDPs whose dynamics or start are random.

Dynamics come as the (S, A, K) outcome arrays of :class:`~pgm_rl.envs.TabularMDP`: next states
``ns``, log probabilities ``logp`` (-inf marks padding) and rewards. ``beta * reward`` is split on
the host, in float64, into a working-precision pair ``r_hi + r_lo``, and values are carried as
double-word sums ``hi + lo`` (Knuth's TwoSum), as in the deterministic backward pass.

Exact posterior (it also "chooses" the next states and the start)::

    V_T = 0,  Q_t(s, a) = log sum_k p_k exp(beta r_k + V_{t+1}(s'_k)),
    V_t(s) = logsumexp_a Q_t(s, a) - log A,  log Z = logsumexp_s (log p0(s) + V_0(s)),
    pi_t(a | s) = exp(Q_t - log A - V_t),  q_t(k | s, a) = p_k exp(beta r_k + V_{t+1}(s'_k) - Q_t).

Both log-sum-exps are taken relative to their maximum in double-word arithmetic, so the terms
that matter (within ~700 of the maximum) are differenced exactly (Sterbenz): the posterior keeps
the deterministic path's quality (exact at beta * reward ~ 1e8 in float64, ~1e-6 in float32).

Soft Bellman (the dynamics held fixed): ``Q_t(s, a) = sum_k p_k (beta r_k + V_{t+1}(s'_k))``, taken
as ``m + sum_k p_k (x_k - m)`` with ``m`` the largest ``x_k``; an expectation of values that differ
by D between outcomes carries an absolute error of about ulp(D) (1e-8 at D = 1e8 in float64; in
float32 only differences between outcomes far below 1e8 are resolved to O(1)).

The forward pass pushes the start distribution through the policy and the (posterior or true)
outcome probabilities with one scatter-add over the (S, A, K) outcomes per step.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from pgm_rl._sampling import inverse_cdf_sample, positive_uniform

__all__ = [
    "SparseDynamics",
    "forward",
    "log_prob",
    "path_log_prob",
    "posterior_backward",
    "sample",
    "soft_backward",
    "sparse_dynamics",
]


def working_dtype():
    """float64 with ``jax_enable_x64``, else float32."""
    return jnp.asarray(0.0).dtype


class SparseDynamics:
    """The (S, A, K) arrays of an MDP in working precision (a plain holder, not a pytree).

    Attributes: ``ns`` int32, ``logp`` (-inf padding), ``r_hi``, ``r_lo`` (beta * reward as a
    double-word pair), ``reward`` (unscaled), ``log_p0`` (S,) float64 NumPy (host), ``beta``.
    """

    def __init__(self, mdp, beta):
        dtype = working_dtype()
        probs = np.asarray(mdp.outcome_probs, np.float64)
        rewards = np.asarray(mdp.outcome_rewards, np.float64)
        with np.errstate(divide="ignore"):
            logp = np.log(probs)
            self.log_p0 = np.log(np.asarray(mdp.start_probs, np.float64))
        scaled = beta * rewards
        r_hi = scaled.astype(dtype)
        self.ns = jnp.asarray(mdp.outcome_states, jnp.int32)
        self.logp = jnp.asarray(logp, dtype)
        self.r_hi = jnp.asarray(r_hi)
        self.r_lo = jnp.asarray((scaled - r_hi.astype(np.float64)).astype(dtype))
        self.reward = jnp.asarray(rewards, dtype)
        self.beta = beta
        self.n_outcomes = probs.shape[2]

    @property
    def arrays(self):
        """``(ns, logp, r_hi, r_lo, reward)``, the arguments of the jitted functions."""
        return self.ns, self.logp, self.r_hi, self.r_lo, self.reward


def sparse_dynamics(mdp, beta):
    """:class:`SparseDynamics` of a concrete MDP."""
    return SparseDynamics(mdp, beta)


# ----------------------------------------------------------------------------- double words


def _two_sum(a, b):
    """Knuth's TwoSum: ``a + b = s + err`` exactly in floating point."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _logsumexp(hi, lo, valid=None, offset=0.0):
    """``log sum exp(hi + lo) + offset`` over the last axis as a pair, and the normalised log
    weights (same shape as ``hi``; -inf where not ``valid``)."""
    if valid is not None:
        hi = jnp.where(valid, hi, -jnp.inf)
    m_hi = jnp.max(hi, axis=-1, keepdims=True)
    diff = (hi - m_hi) + lo  # exact where it matters (Sterbenz)
    if valid is not None:
        diff = jnp.where(valid, diff, -jnp.inf)
    m_lo = jnp.max(diff, axis=-1, keepdims=True)
    diff = diff - m_lo  # <= 0, exactly 0 at the maximum
    log_sum = jnp.log(jnp.sum(jnp.exp(diff), axis=-1))
    out_hi, err = _two_sum(m_hi[..., 0], log_sum + offset)
    out_hi, out_lo = _two_sum(out_hi, m_lo[..., 0] + err)
    return out_hi, out_lo, diff - log_sum[..., None]


def _outcome_terms(logp, r_hi, r_lo, v_hi, v_lo):
    """``log p_k + beta r_k + V(s'_k)`` as a pair (-inf-free: padding gives 0 here)."""
    valid = jnp.isfinite(logp)
    safe_logp = jnp.where(valid, logp, 0.0)
    x_hi, e1 = _two_sum(r_hi, v_hi)
    x_hi, e2 = _two_sum(x_hi, safe_logp)
    return _two_sum(x_hi, r_lo + v_lo + e1 + e2), valid


def _outcome_posterior(logp, r_hi, r_lo, v_hi, v_lo):
    """q(k | s, a) over the last axis (probabilities; one exp per outcome), given V_{t+1}."""
    (x_hi, x_lo), valid = _outcome_terms(logp, r_hi, r_lo, v_hi, v_lo)
    x_hi = jnp.where(valid, x_hi, -jnp.inf)
    m_hi = jnp.max(x_hi, axis=-1, keepdims=True)
    diff = jnp.where(valid, (x_hi - m_hi) + x_lo, -jnp.inf)
    weights = jnp.exp(diff - jnp.max(diff, axis=-1, keepdims=True))
    return weights / jnp.sum(weights, axis=-1, keepdims=True)


def _outcome_log_posterior(logp, r_hi, r_lo, v_hi, v_lo):
    """Normalised log q(k | s, a) over the last axis, given V_{t+1} at the outcomes."""
    (x_hi, x_lo), valid = _outcome_terms(logp, r_hi, r_lo, v_hi, v_lo)
    return _logsumexp(x_hi, x_lo, valid)[2]


# ----------------------------------------------------------------------------- backward passes


@partial(jax.jit, static_argnums=5)
def posterior_backward(ns, logp, r_hi, r_lo, reward, horizon):
    """Backward messages of the exact posterior.

    Returns log_policy (T, S, A) and V as (v_hi, v_lo), each (T + 1, S) (row T is 0).
    """
    del reward
    n_states, n_actions, _ = ns.shape
    log_prior = -jnp.log(n_actions).astype(r_hi.dtype)

    def step(v_next, _):
        v_hi, v_lo = v_next
        (x_hi, x_lo), valid = _outcome_terms(logp, r_hi, r_lo, v_hi[ns], v_lo[ns])
        q_hi, q_lo, _ = _logsumexp(x_hi, x_lo, valid)  # (S, A)
        new_hi, new_lo, log_pi = _logsumexp(q_hi, q_lo, offset=log_prior)
        return (new_hi, new_lo), (log_pi, new_hi, new_lo)

    zeros = jnp.zeros(n_states, r_hi.dtype)
    _, (log_policy, v_hi, v_lo) = lax.scan(step, (zeros, zeros), None, length=horizon, reverse=True)
    return log_policy, (
        jnp.concatenate([v_hi, zeros[None]]),
        jnp.concatenate([v_lo, zeros[None]]),
    )


@partial(jax.jit, static_argnums=5)
def soft_backward(ns, logp, r_hi, r_lo, reward, horizon):
    """Soft Bellman backward pass with the dynamics held fixed.

    Returns log_policy (T, S, A) and V_0 as (v_hi, v_lo), each (S,).
    """
    del reward
    n_states, n_actions, _ = ns.shape
    log_prior = -jnp.log(n_actions).astype(r_hi.dtype)
    valid = jnp.isfinite(logp)
    probs = jnp.where(valid, jnp.exp(logp), 0.0)

    def step(v_next, _):
        v_hi, v_lo = v_next
        x_hi, err = _two_sum(r_hi, v_hi[ns])
        x_lo = r_lo + v_lo[ns] + err
        m_hi = jnp.max(jnp.where(valid, x_hi, -jnp.inf), axis=-1)
        diff = jnp.where(valid, (x_hi - m_hi[..., None]) + x_lo, 0.0)
        q_hi, q_lo = _two_sum(m_hi, jnp.sum(probs * diff, axis=-1))  # (S, A)
        new_hi, new_lo, log_pi = _logsumexp(q_hi, q_lo, offset=log_prior)
        return (new_hi, new_lo), log_pi

    zeros = jnp.zeros(n_states, r_hi.dtype)
    v0, log_policy = lax.scan(step, (zeros, zeros), None, length=horizon, reverse=True)
    return log_policy, v0


# ----------------------------------------------------------------------------- forward pass


@partial(jax.jit, static_argnames=("posterior",))
def forward(mu0, log_policy, ns, logp, r_hi, r_lo, reward, v_hi, v_lo, absorb, posterior):
    """Push ``mu0`` (S,) through the policy and the outcome probabilities.

    ``posterior``: outcomes drawn from the posterior q_t (needs V, (T + 1, S) each); else from
    the true probabilities (``v_hi``/``v_lo`` ignored). States in ``absorb`` (S,) bool are
    removed on arrival (for reach probabilities; all False for plain marginals).

    Returns
    -------
    state_marginals : (T + 1, S)
    action_marginals : (T, A)
    step_returns : (T,), expected (unscaled) reward of each step
    step_kl : (T,), E_{s_t}[KL(pi_t(. | s_t) || uniform)]
    hits : (T + 1,), probability of arriving in ``absorb`` at each step
    """
    n_actions = ns.shape[1]
    valid = jnp.isfinite(logp)
    probs = jnp.where(valid, jnp.exp(logp), 0.0)
    log_n_actions = jnp.log(n_actions).astype(log_policy.dtype)
    hit0 = jnp.sum(jnp.where(absorb, mu0, 0.0))
    mu_start = jnp.where(absorb, 0.0, mu0)

    def step(mu, inputs):
        log_pi, v_hi_next, v_lo_next = inputs
        pi = jnp.exp(log_pi)
        joint = mu[:, None] * pi  # (S, A)
        if posterior:
            q = _outcome_posterior(logp, r_hi, r_lo, v_hi_next[ns], v_lo_next[ns])
        else:
            q = probs
        flow = joint[..., None] * q  # (S, A, K)
        mu_next = jnp.zeros_like(mu).at[ns].add(flow)
        kl = jnp.sum(jnp.where(pi > 0, joint * (log_pi + log_n_actions), 0.0))
        hit = jnp.sum(jnp.where(absorb, mu_next, 0.0))
        mu_next = jnp.where(absorb, 0.0, mu_next)
        return mu_next, (mu_next, joint.sum(axis=0), jnp.sum(flow * reward), kl, hit)

    _, (mus, action_marginals, step_returns, step_kl, hits) = lax.scan(
        step, mu_start, (log_policy, v_hi[1:], v_lo[1:])
    )
    return (
        jnp.concatenate([mu_start[None], mus]),
        action_marginals,
        step_returns,
        step_kl,
        jnp.concatenate([hit0[None], hits]),
    )


# ----------------------------------------------------------------------------- sampling


@partial(jax.jit, static_argnames=("num_samples", "posterior"))
def sample(key, mu0, log_policy, ns, logp, r_hi, r_lo, reward, v_hi, v_lo, num_samples, posterior):
    """``num_samples`` iid trajectories: actions (n, T), states (n, T + 1), rewards (n, T).

    The start from ``mu0`` (S,), each action from pi_t(. | s_t), each outcome from q_t (posterior)
    or the true probabilities; one uniform per draw (inverse CDF), never a zero-probability one.
    """
    horizon = log_policy.shape[0]
    dtype = log_policy.dtype
    start_key, key = random.split(key)
    cdf = jnp.cumsum(mu0)
    u0 = positive_uniform(start_key, (num_samples,), dtype)
    starts = jnp.searchsorted(cdf, u0 * cdf[-1], side="right")
    starts = jnp.minimum(starts, mu0.shape[0] - 1).astype(ns.dtype)
    valid = jnp.isfinite(logp)
    probs = jnp.where(valid, jnp.exp(logp), 0.0)

    def one(key, s0):
        uniforms = positive_uniform(key, (horizon, 2), dtype)

        def step(state, inputs):
            u, log_pi, v_hi_next, v_lo_next = inputs
            action = inverse_cdf_sample(u[0], jnp.exp(log_pi[state]))
            targets = ns[state, action]
            if posterior:
                weights = _outcome_posterior(
                    logp[state, action],
                    r_hi[state, action],
                    r_lo[state, action],
                    v_hi_next[targets],
                    v_lo_next[targets],
                )
            else:
                weights = probs[state, action]
            k = inverse_cdf_sample(u[1], weights)
            new_state = targets[k]
            return new_state, (action, new_state, reward[state, action, k])

        _, (actions, states, rewards) = lax.scan(
            step, s0, (uniforms, log_policy, v_hi[1:], v_lo[1:])
        )
        return actions.astype(jnp.int32), jnp.concatenate([s0[None], states]), rewards

    return jax.vmap(one)(random.split(key, num_samples), starts)


# ----------------------------------------------------------------------------- probabilities


def _step_outcome_log_probs(logp, r_hi, r_lo, ns, v_hi, v_lo, here, actions, posterior):
    """log q_t (or log p) of the outcomes of (s_t, a_t): (..., T, K), and their states."""
    targets = ns[here, actions]  # (..., T, K)
    if not posterior:
        return logp[here, actions], targets
    time = jnp.arange(here.shape[-1])
    after = (time + 1)[:, None]
    log_q = _outcome_log_posterior(
        logp[here, actions],
        r_hi[here, actions],
        r_lo[here, actions],
        v_hi[after, targets],
        v_lo[after, targets],
    )
    return log_q, targets


@partial(jax.jit, static_argnames=("posterior",))
def log_prob(log_mu0, log_policy, ns, logp, r_hi, r_lo, v_hi, v_lo, actions, states, posterior):
    """Joint log-probability of (actions (..., T), states (..., T + 1)) -> (...)."""
    time = jnp.arange(actions.shape[-1])
    here, there = states[..., :-1], states[..., 1:]
    log_pi = log_policy[time, here, actions]
    log_q, targets = _step_outcome_log_probs(
        logp, r_hi, r_lo, ns, v_hi, v_lo, here, actions, posterior
    )
    match = jnp.logical_and(targets == there[..., None], jnp.isfinite(log_q))
    log_move = jax.nn.logsumexp(jnp.where(match, log_q, -jnp.inf), axis=-1)
    return log_mu0[states[..., 0]] + jnp.sum(log_pi + log_move, axis=-1)


@partial(jax.jit, static_argnames=("posterior",))
def path_log_prob(log_mu0, log_policy, ns, logp, r_hi, r_lo, v_hi, v_lo, states, posterior):
    """log P(state path) summing over actions and outcomes: states (..., T + 1) -> (...)."""
    n_actions = log_policy.shape[2]
    here, there = states[..., :-1], states[..., 1:]
    time = jnp.arange(here.shape[-1])
    all_actions = jnp.arange(n_actions)
    here_a = here[..., None]  # (..., T, 1) against actions (A,)
    targets = ns[here_a, all_actions]  # (..., T, A, K)
    if posterior:
        after = (time + 1)[:, None, None]
        log_q = _outcome_log_posterior(
            logp[here_a, all_actions],
            r_hi[here_a, all_actions],
            r_lo[here_a, all_actions],
            v_hi[after, targets],
            v_lo[after, targets],
        )
    else:
        log_q = logp[here_a, all_actions]
    log_pi = log_policy[time[:, None], here_a, all_actions]  # (..., T, A)
    match = jnp.logical_and(targets == there[..., None, None], jnp.isfinite(log_q))
    terms = jnp.where(match, log_pi[..., None] + log_q, -jnp.inf)
    log_step = jax.nn.logsumexp(terms, axis=(-2, -1))
    return log_mu0[states[..., 0]] + jnp.sum(log_step, axis=-1)
