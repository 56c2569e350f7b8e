"""Message passing over outcomes: every soft-value recursion of pgm_rl lives here.

Dynamics come as the (S, A, K) outcome arrays every world gives (``outcome_states``,
``outcome_probs`` with 0 marking padding, ``outcome_rewards``); a deterministic MDP is K = 1 with
probability 1 and needs no code of its own. Two families:

**Double-word passes** (:func:`posterior_backward`, :func:`soft_backward`, :func:`forward`), under
:func:`pgm_rl.solve`, :func:`pgm_rl.soft_bellman` and :func:`pgm_rl.evaluate_policy`.
``beta * reward`` is split on the host, in float64, into a working-precision pair ``r_hi + r_lo``
(:class:`SparseDynamics`) and values are carried as double-word sums ``hi + lo`` (Knuth's TwoSum),
so the notebook's scale (beta * reward ~ 1e8) stays exact in float64 and accurate to ~1e-6 in
float32. Not differentiable in the reward (the low word is split off on the host).

Exact posterior (it also "chooses" the next states and the start)::

    V_T = 0,  Q_t(s, a) = log sum_k p_k exp(beta r_k + V_{t+1}(s'_k)),
    V_t(s) = logsumexp_a Q_t(s, a) - log A,  log Z = logsumexp_s (log p0(s) + V_0(s)),
    pi_t(a | s) = exp(Q_t - log A - V_t),  q_t(k | s, a) = p_k exp(beta r_k + V_{t+1}(s'_k) - Q_t).

Both log-sum-exps are taken relative to their maximum in double-word arithmetic, so the terms
that matter (within ~700 of the maximum) are differenced exactly (Sterbenz). The maximum is that
of hi + lo, not of hi alone: entries tied in hi can differ in lo, and a difference taken to the
hi-argmax's pair could then be positive and overflow exp.

Soft Bellman (the dynamics held fixed): ``Q_t(s, a) = sum_k p_k (beta r_k + V_{t+1}(s'_k))``, taken
as ``m + sum_k p_k (x_k - m)`` with ``m`` the largest ``x_k``; an expectation of values that differ
by D between outcomes carries an absolute error of about ulp(D). On K = 1 both passes give the
same numbers bit for bit.

The forward pass pushes the start distribution through the policy and the (posterior or true)
outcome probabilities with one scatter-add over the (S, A, K) outcomes per step.

**Differentiable log-space passes** (:func:`trajectory_log_z`, :func:`soft_bellman_values`,
:func:`policy_values`, :func:`policy_elbo`, :func:`policy_marginals`), under inverse RL, the policy
fits and the SMC proposal values: plain ``jax.numpy`` in one word, written with
``jax.nn.logsumexp`` (every exponential is of a difference to a maximum, so nothing overflows at
any beta * reward), traceable and differentiable in the rewards, the policy and beta. In float64
the values V_t ~ beta * T * max|r| carry an absolute error of about 1e-16 * |V_t|.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "SparseDynamics",
    "backward_arrays",
    "forward",
    "forward_arrays",
    "forward_step",
    "outcome_log_posterior",
    "outcome_posterior",
    "policy_elbo",
    "policy_marginals",
    "policy_values",
    "posterior_backward",
    "posterior_step",
    "soft_arrays",
    "soft_backward",
    "soft_bellman_values",
    "soft_step",
    "sparse_dynamics",
    "start_posterior",
    "trajectory_log_z",
    "working_dtype",
]


def working_dtype():
    """float64 with ``jax_enable_x64``, else float32 (a NumPy dtype; no device work)."""
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))


class SparseDynamics:
    """The (S, A, K) arrays of a world in working precision (a plain holder, not a pytree).

    Attributes (NumPy arrays: the jitted functions take them without a dispatch each):
    ``ns`` int32, ``logp`` (-inf padding), ``r_hi``, ``r_lo`` (beta * reward as a double-word
    pair), ``reward`` (unscaled), ``log_p0`` (S,) (-inf off the start's support), ``beta``.
    """

    def __init__(self, mdp, beta):
        dtype = working_dtype()
        probs = np.asarray(mdp.outcome_probs, np.float64)
        rewards = np.asarray(mdp.outcome_rewards, np.float64)
        with np.errstate(divide="ignore"):
            logp = np.log(probs)
            self.log_p0 = np.log(np.asarray(mdp.start_probs, np.float64)).astype(dtype)
        scaled = beta * rewards
        r_hi = scaled.astype(dtype)
        self.ns = np.asarray(mdp.outcome_states, np.int32)
        self.logp = logp.astype(dtype)
        self.r_hi = r_hi
        self.r_lo = (scaled - r_hi.astype(np.float64)).astype(dtype)
        self.reward = rewards.astype(dtype)
        self.beta = beta
        self.n_outcomes = probs.shape[2]

    @property
    def arrays(self):
        """``(ns, logp, r_hi, r_lo, reward)``, the arguments of the jitted functions."""
        return self.ns, self.logp, self.r_hi, self.r_lo, self.reward


def sparse_dynamics(mdp, beta):
    """:class:`SparseDynamics` of a concrete world."""
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
    m_lo = jnp.max(diff, axis=-1, keepdims=True)  # max of hi + lo = m_hi + m_lo
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


def outcome_posterior(logp, r_hi, r_lo, v_hi, v_lo):
    """q(k | s, a) over the last axis (probabilities; one exp per outcome), given V_{t+1}.

    Parameters
    ----------
    logp, r_hi, r_lo : arrays, shape (..., K)
        Log probabilities (-inf padding) and the double-word ``beta * reward`` of the outcomes.
    v_hi, v_lo : arrays, shape (..., K)
        V_{t+1} at the outcomes' next states.

    Returns
    -------
    array, shape (..., K), summing to 1 over the last axis (0 on padding)
    """
    (x_hi, x_lo), valid = _outcome_terms(logp, r_hi, r_lo, v_hi, v_lo)
    x_hi = jnp.where(valid, x_hi, -jnp.inf)
    m_hi = jnp.max(x_hi, axis=-1, keepdims=True)
    diff = jnp.where(valid, (x_hi - m_hi) + x_lo, -jnp.inf)
    weights = jnp.exp(diff - jnp.max(diff, axis=-1, keepdims=True))
    return weights / jnp.sum(weights, axis=-1, keepdims=True)


def outcome_log_posterior(logp, r_hi, r_lo, v_hi, v_lo):
    """Normalised log q(k | s, a) over the last axis, (..., K); arguments as
    :func:`outcome_posterior`."""
    (x_hi, x_lo), valid = _outcome_terms(logp, r_hi, r_lo, v_hi, v_lo)
    return _logsumexp(x_hi, x_lo, valid)[2]


# ----------------------------------------------------------------------------- backward passes


def backward_arrays(ns, logp, r_hi, r_lo):
    """``(ns, logp, r_hi, r_lo)`` for :func:`posterior_step`: the K axis dropped when K = 1.

    The K = 1 fast path (measured: solve on a 30x30 grid, ``bench_stochastic``).
    """
    if ns.shape[2] == 1:
        return ns[..., 0], logp[..., 0], r_hi[..., 0], r_lo[..., 0]
    return ns, logp, r_hi, r_lo


def posterior_step(v_hi, v_lo, ns, logp, r_hi, r_lo):
    """One step of the posterior's backward pass: V_{t+1} -> V_t and log pi_t.

    Parameters
    ----------
    v_hi, v_lo : arrays, shape (S,)
        V_{t+1} as a double-word pair.
    ns, logp, r_hi, r_lo : arrays, shape (..., A, K), or (..., A) for K = 1
        From :func:`backward_arrays`; any leading rows (all S states, or the rows of a few).

    Returns
    -------
    new_hi, new_lo : arrays, shape (...,)
        V_t of those rows.
    log_pi : array, shape (..., A)
    """
    log_prior = -jnp.log(ns.shape[-1] if ns.ndim == 2 else ns.shape[-2]).astype(r_hi.dtype)
    if ns.ndim == 2:  # K = 1, log p = 0: the pair beta r + V(s') itself, bit for bit
        q_hi, err = _two_sum(r_hi, v_hi[ns])
        q_hi, q_lo = _two_sum(q_hi, r_lo + v_lo[ns] + err)
    else:
        (x_hi, x_lo), valid = _outcome_terms(logp, r_hi, r_lo, v_hi[ns], v_lo[ns])
        q_hi, q_lo, _ = _logsumexp(x_hi, x_lo, valid)  # (..., A)
    return _logsumexp(q_hi, q_lo, offset=log_prior)


@partial(jax.jit, static_argnums=5)
def posterior_backward(ns, logp, r_hi, r_lo, reward, horizon):
    """Backward messages of the exact posterior (:attr:`SparseDynamics.arrays`, T).

    Returns
    -------
    log_policy : array, shape (T, S, A)
    v : pair of arrays (v_hi, v_lo), each (T + 1, S)
        V_t = v_hi + v_lo; row T is 0.
    """
    del reward
    arrays = backward_arrays(ns, logp, r_hi, r_lo)

    def step(v_next, _):
        new_hi, new_lo, log_pi = posterior_step(*v_next, *arrays)
        return (new_hi, new_lo), (log_pi, new_hi, new_lo)

    zeros = jnp.zeros(ns.shape[0], r_hi.dtype)
    _, (log_policy, v_hi, v_lo) = lax.scan(step, (zeros, zeros), None, length=horizon, reverse=True)
    return log_policy, (
        jnp.concatenate([v_hi, zeros[None]]),
        jnp.concatenate([v_lo, zeros[None]]),
    )


def soft_arrays(ns, logp, r_hi, r_lo):
    """``(ns, valid, probs, r_hi, r_lo)`` for :func:`soft_step`."""
    valid = jnp.isfinite(logp)
    return ns, valid, jnp.where(valid, jnp.exp(logp), 0.0), r_hi, r_lo


def soft_step(v_hi, v_lo, ns, valid, probs, r_hi, r_lo):
    """One step of the soft Bellman backward pass: V_{t+1} -> V_t and log pi_t.

    Parameters
    ----------
    v_hi, v_lo : arrays, shape (S,)
        V_{t+1} as a double-word pair.
    ns, valid, probs, r_hi, r_lo : arrays, shape (..., A, K)
        From :func:`soft_arrays`.

    Returns
    -------
    new_hi, new_lo : arrays, shape (...,)
    log_pi : array, shape (..., A)
    """
    log_prior = -jnp.log(ns.shape[-2]).astype(r_hi.dtype)
    x_hi, err = _two_sum(r_hi, v_hi[ns])
    x_lo = r_lo + v_lo[ns] + err
    m_hi = jnp.max(jnp.where(valid, x_hi, -jnp.inf), axis=-1)
    diff = jnp.where(valid, (x_hi - m_hi[..., None]) + x_lo, 0.0)
    q_hi, q_lo = _two_sum(m_hi, jnp.sum(probs * diff, axis=-1))  # (..., A)
    return _logsumexp(q_hi, q_lo, offset=log_prior)


@partial(jax.jit, static_argnums=5)
def soft_backward(ns, logp, r_hi, r_lo, reward, horizon):
    """Soft Bellman backward pass with the dynamics held fixed (:attr:`SparseDynamics.arrays`, T).

    Returns
    -------
    log_policy : array, shape (T, S, A)
    v0 : pair of arrays (v_hi, v_lo), each (S,)
    """
    del reward
    arrays = soft_arrays(ns, logp, r_hi, r_lo)

    def step(v_next, _):
        new_hi, new_lo, log_pi = soft_step(*v_next, *arrays)
        return (new_hi, new_lo), log_pi

    zeros = jnp.zeros(ns.shape[0], r_hi.dtype)
    v0, log_policy = lax.scan(step, (zeros, zeros), None, length=horizon, reverse=True)
    return log_policy, v0


@jax.jit
def start_posterior(log_p0, v_hi, v_lo):
    """log Z and the posterior start distribution from the start's log probabilities and V_0.

    ``log Z = logsumexp_s (log p0(s) + V_0(s))`` in double words (the start is chosen like an
    outcome) and ``mu0(s) = p0(s) exp(V_0(s) - log Z)``.

    Parameters
    ----------
    log_p0 : array, shape (S,)
        -inf outside the start's support.
    v_hi, v_lo : arrays, shape (T + 1, S)
        The messages of :func:`posterior_backward` (row 0, V_0, is used).

    Returns
    -------
    log_z : pair of scalar arrays (hi, lo)
    mu0 : array, shape (S,)
    """
    zero = jnp.zeros((), v_hi.dtype)
    (x_hi, x_lo), valid = _outcome_terms(log_p0, zero, zero, v_hi[0], v_lo[0])
    z_hi, z_lo, log_mu0 = _logsumexp(x_hi, x_lo, valid)
    return (z_hi, z_lo), jnp.exp(log_mu0)


# ----------------------------------------------------------------------------- forward pass


def forward_arrays(ns, logp, r_hi, r_lo, reward):
    """``(ns, logp, probs, r_hi, r_lo, reward)`` for :func:`forward_step`: with K = 1 the K axis
    of ``ns``, ``logp`` and ``reward`` dropped (q = p = 1; measured ~1.5x faster)."""
    if ns.shape[2] == 1:
        ns, logp, reward = ns[..., 0], logp[..., 0], reward[..., 0]
    probs = jnp.where(jnp.isfinite(logp), jnp.exp(logp), 0.0)
    return ns, logp, probs, r_hi, r_lo, reward


def forward_step(mu, log_pi, v_hi_next, v_lo_next, arrays, absorb, posterior, kl=True):
    """One step of the forward pass: mu_t (S,) and log pi_t (S, A) -> mu_{t+1} and the step's
    action marginals (A,), expected reward, KL to the uniform policy and arrival in ``absorb``.

    ``arrays`` from :func:`forward_arrays`; ``v_hi_next``, ``v_lo_next`` (S,): V_{t+1} (read
    only when ``posterior`` and K > 1). ``absorb`` None and ``kl`` False skip their work (0
    for those outputs; measured: 100x100 grid, T = 1000, ~2.5x faster forward pass).
    """
    ns, logp, probs, r_hi, r_lo, reward = arrays
    log_n_actions = jnp.log(ns.shape[1]).astype(log_pi.dtype)
    pi = jnp.exp(log_pi)
    joint = mu[:, None] * pi  # (S, A)
    if ns.ndim == 2:
        flow = joint * probs  # (S, A)
    elif posterior:
        q = outcome_posterior(logp, r_hi, r_lo, v_hi_next[ns], v_lo_next[ns])
        flow = joint[..., None] * q  # (S, A, K)
    else:
        flow = joint[..., None] * probs
    mu_next = jnp.zeros_like(mu).at[ns].add(flow)
    zero = jnp.zeros((), mu.dtype)
    kl = jnp.sum(jnp.where(pi > 0, joint * (log_pi + log_n_actions), 0.0)) if kl else zero
    hit = zero
    if absorb is not None:
        hit = jnp.sum(jnp.where(absorb, mu_next, 0.0))
        mu_next = jnp.where(absorb, 0.0, mu_next)
    return mu_next, (joint.sum(axis=0), jnp.sum(flow * reward), kl, hit)


@partial(jax.jit, static_argnames=("posterior", "kl"))
def forward(mu0, log_policy, ns, logp, r_hi, r_lo, reward, v_hi, v_lo, absorb, posterior, kl=True):
    """Push ``mu0`` (S,) through the policy (T, S, A) and the outcome probabilities.

    ``posterior``: outcomes drawn from the posterior q_t (needs V, (T + 1, S) each); else from
    the true probabilities (``v_hi``/``v_lo`` ignored but for their leading length T + 1).
    States in ``absorb`` (S,) bool are removed on arrival (for reach probabilities; None for
    plain marginals, skipping that work: hits are then 0). ``kl`` False skips the step KL (0).

    Returns
    -------
    state_marginals : (T + 1, S)
    action_marginals : (T, A)
    step_returns : (T,), expected (unscaled) reward of each step
    step_kl : (T,), E_{s_t}[KL(pi_t(. | s_t) || uniform)]
    hits : (T + 1,), probability of arriving in ``absorb`` at each step
    """
    arrays = forward_arrays(ns, logp, r_hi, r_lo, reward)
    if absorb is None:
        hit0, mu_start = jnp.zeros((), mu0.dtype), mu0
    else:
        hit0 = jnp.sum(jnp.where(absorb, mu0, 0.0))
        mu_start = jnp.where(absorb, 0.0, mu0)

    def step(mu, inputs):
        mu_next, out = forward_step(mu, *inputs, arrays, absorb, posterior, kl)
        return mu_next, (mu_next, *out)

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


# ----------------------------------------------------------------------------- differentiable


def _expectation(probs, outcome_values):
    """``sum_k p_k x_k`` over the last axis (padding has probability 0)."""
    return jnp.sum(probs * outcome_values, axis=-1)


def trajectory_log_z(outcome_states, log_probs, log_start, scaled_rewards, horizon):
    """log Z of the trajectory posterior, differentiable in ``scaled_rewards``.

    ``V_T = 0``, ``V_t(s) = logsumexp_a logsumexp_k (log p_k + beta r_k + V_{t+1}(s'_k)) - log A``,
    ``log Z = logsumexp_s (log p0(s) + V_0(s))``.

    Parameters
    ----------
    outcome_states : int array, shape (S, A, K)
    log_probs : array, shape (S, A, K)
        Log outcome probabilities, -inf on padding.
    log_start : array, shape (S,)
        Log start probabilities (-inf outside the support).
    scaled_rewards : array, shape (S, A, K)
        beta * reward of each outcome.
    horizon : int
        T (static).

    Returns
    -------
    scalar array
    """
    n_actions = outcome_states.shape[1]
    log_a = jnp.log(n_actions).astype(scaled_rewards.dtype)
    valid = jnp.isfinite(log_probs)
    base = jnp.where(valid, log_probs + scaled_rewards, -jnp.inf)

    def step(v, _):
        q = jax.nn.logsumexp(jnp.where(valid, base + v[outcome_states], -jnp.inf), axis=-1)
        return jax.nn.logsumexp(q, axis=-1) - log_a, None

    zeros = jnp.zeros(outcome_states.shape[0], scaled_rewards.dtype)
    v0, _ = lax.scan(step, zeros, None, length=horizon)
    return jax.nn.logsumexp(log_start + v0)


def soft_bellman_values(outcome_states, outcome_probs, scaled_rewards, horizon):
    """The soft-Bellman log policy and V_0, differentiable in ``scaled_rewards``.

    ``V_T = 0``, ``Q_t(s, a) = E_k[beta r_k + V_{t+1}(s'_k)]``, ``V_t = logsumexp_a Q_t - log A``,
    ``log pi_t = Q_t - V_t - log A``.

    Parameters
    ----------
    outcome_states : int array, shape (S, A, K)
    outcome_probs : array, shape (S, A, K)
        0 on padding.
    scaled_rewards : array, shape (S, A, K)
        beta * reward of each outcome.
    horizon : int
        T (static).

    Returns
    -------
    log_policy : array, shape (T, S, A)
    v0 : array, shape (S,)
    """
    n_actions = outcome_states.shape[1]
    log_a = jnp.log(n_actions).astype(scaled_rewards.dtype)

    def step(v, _):
        q = _expectation(outcome_probs, scaled_rewards + v[outcome_states])  # (S, A)
        v_new = jax.nn.logsumexp(q, axis=-1) - log_a
        return v_new, q - v_new[:, None] - log_a

    zeros = jnp.zeros(outcome_states.shape[0], scaled_rewards.dtype)
    v0, log_policy = lax.scan(step, zeros, None, length=horizon, reverse=True)
    return log_policy, v0


def policy_values(log_policy, outcome_states, outcome_probs, outcome_rewards, beta):
    """Soft policy evaluation: the values of a given policy itself, differentiable.

    ``V_T = 0``, ``Q_t(s, a) = E_k[beta r_k + V_{t+1}(s'_k)]``,
    ``V_t(s) = sum_a pi_t(a | s) (Q_t(s, a) - log pi_t(a | s) - log A)``: the ELBO to go of the
    policy from state s at step t (= log Z to go when it is the posterior of a deterministic MDP).

    Parameters
    ----------
    log_policy : array, shape (T, S, A)
    outcome_states : int array, shape (S, A, K)
    outcome_probs : array, shape (S, A, K)
        0 on padding.
    outcome_rewards : array, shape (S, A, K)
        Unscaled.
    beta : float or scalar array (may be traced)

    Returns
    -------
    q : array, shape (T, S, A)
    v : array, shape (T + 1, S), with ``v[T] = 0``
    """
    mean_reward = _expectation(outcome_probs, outcome_rewards)  # (S, A)
    log_a = jnp.log(log_policy.shape[-1])

    def step(v_next, log_pi_t):
        q = beta * mean_reward + _expectation(outcome_probs, v_next[outcome_states])
        v = jnp.sum(jnp.exp(log_pi_t) * (q - log_pi_t - log_a), axis=-1)
        return v, (q, v)

    end = jnp.zeros(outcome_states.shape[0], log_policy.dtype)
    _, (q, v) = lax.scan(step, end, log_policy, reverse=True)
    return q, jnp.concatenate([v, end[None]])


def policy_elbo(log_policy, outcome_states, outcome_probs, outcome_rewards, start_probs, beta):
    """The ELBO of a policy run in the true dynamics, differentiable (= ``evaluate_policy``'s).

    ``sum_t E_{s_t, a_t}[beta E_k r_k - log pi_t(a_t | s_t) - log A]`` over the marginals of
    :func:`policy_marginals`.

    Parameters
    ----------
    log_policy : array, shape (T, S, A)
    outcome_states, outcome_probs, outcome_rewards : arrays, shape (S, A, K)
        As in :func:`policy_values`.
    start_probs : array, shape (S,)
    beta : float or scalar array (may be traced)

    Returns
    -------
    elbo : scalar array
    mus : array, shape (T, S)
        The state marginals of steps 0 .. T - 1.
    """
    mus = policy_marginals(log_policy, outcome_states, outcome_probs, start_probs)[:-1]
    mean_reward = _expectation(outcome_probs, outcome_rewards)  # (S, A)
    log_a = jnp.log(log_policy.shape[-1])
    joint = mus[..., None] * jnp.exp(log_policy)  # (T, S, A)
    gains = jnp.sum(joint * (beta * mean_reward - log_policy - log_a), axis=(1, 2))  # (T,)
    return jnp.sum(gains), mus


def policy_marginals(log_policy, outcome_states, outcome_probs, start_probs):
    """State marginals of a policy run in the true dynamics, differentiable.

    Parameters
    ----------
    log_policy : array, shape (T, S, A)
    outcome_states : int array, shape (S, A, K)
    outcome_probs : array, shape (S, A, K)
        0 on padding.
    start_probs : array, shape (S,)

    Returns
    -------
    array, shape (T + 1, S); row 0 is ``start_probs``
    """

    def step(mu, log_pi_t):
        joint = mu[:, None] * jnp.exp(log_pi_t)  # (S, A)
        mu_next = jnp.zeros_like(mu).at[outcome_states].add(joint[..., None] * outcome_probs)
        return mu_next, mu_next

    start_probs = jnp.asarray(start_probs, log_policy.dtype)
    _, mus = lax.scan(step, start_probs, log_policy)
    return jnp.concatenate([start_probs[None], mus])
