"""Exact inference for the trajectory posterior by backward messages (soft value iteration).

With a uniform prior over A actions and likelihood exp(beta * r), the backward messages are

    V_T(s) = 0,   Q_t(s, a) = beta r(s, a) + V_{t+1}(s'(s, a)),   V_t(s) = logsumexp_a Q_t(s, a) - log A,

log Z = V_0(s_0) and the posterior policy is pi_t(a | s) = exp(Q_t(s, a) - log A - V_t(s)).
Values are carried as double-word sums (hi + lo) and action probabilities are computed from
differences to the per-state maximum, so the notebook's scale (beta * reward up to 1e8) stays
exact in float64 and accurate to ~1e-6 in float32.
"""

import math
from dataclasses import dataclass
from functools import cached_property, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from pgm_rl._checks import (
    check_beta,
    check_fits_in_memory,
    check_horizon,
    check_index_array,
    check_key,
    check_no_overflow,
    check_positive_int,
    itemsize,
)
from pgm_rl._sampling import inverse_cdf_sample, positive_uniform
from pgm_rl.dynamics import rollout
from pgm_rl.model import check_env

__all__ = [
    "ExactPosterior",
    "most_probable_path",
    "solve",
]


@dataclass(frozen=True, eq=False, repr=False)
class ExactPosterior:
    """The exact trajectory posterior of one problem (a JAX pytree; ``horizon`` is static).

    Attributes
    ----------
    mdp : TabularMDP
    horizon : int
        T.
    beta : float
    log_z : float
        Log normaliser, log E_prior[exp(beta * sum of rewards)].
    log_policy : array, shape (T, S, A)
        Log posterior action probabilities log pi_t(a | s).
    state_marginals : array, shape (T + 1, S)
        Posterior probability of being in state s at step t (step 0 is the start).
    action_marginals : array, shape (T, A)
        Posterior probability of taking action a at time t.
    expected_return : float
        Posterior expectation of the sum of rewards (unscaled by beta).
    """

    mdp: object
    horizon: int
    beta: float
    log_z: float
    log_policy: jax.Array
    state_marginals: jax.Array
    action_marginals: jax.Array
    expected_return: float

    def __repr__(self):
        horizon, n_states, n_actions = np.shape(self.log_policy)
        return (
            f"ExactPosterior(mdp={self.mdp!r}, horizon={horizon}, beta={self.beta:g}, "
            f"log_z={float(self.log_z):.10g}, expected_return={float(self.expected_return):.6g}, "
            f"log_policy: ({horizon}, {n_states}, {n_actions}), state_marginals: "
            f"({horizon + 1}, {n_states}), action_marginals: ({horizon}, {n_actions}))"
        )

    @cached_property
    def policy(self):
        """Posterior action probabilities pi_t(a | s), shape (T, S, A)."""
        return jnp.exp(self.log_policy)

    def path_probability(self, states):
        """Posterior probability of the state path ``states``, shape (..., T + 1) -> (...).

        Sums over every action sequence that makes the path (e.g. "up" against the top wall
        and "stay" both keep the agent in place), so it can be far larger than the probability
        of any one action sequence (:meth:`log_prob`). 0 for a path that does not start at the
        start state or makes an impossible move.
        """
        states = check_index_array(states, "states", "state indices")
        if states.ndim == 0 or states.shape[-1] != self.horizon + 1:
            raise ValueError(
                f"states must have shape (..., {self.horizon + 1}), got {states.shape}"
            )
        _check_states(states, self.mdp.n_states)
        return _path_probability(self.log_policy, self.mdp, states)

    def sample(self, key, num_samples):
        """Draw exact iid posterior trajectories.

        Returns a dict with ``"actions"`` (n, T) int, ``"states"`` (n, T + 1) int and
        ``"rewards"`` (n, T).
        """
        check_key(key)
        num_samples = check_positive_int(num_samples, "num_samples")
        # actions, states, rewards and one uniform per draw and step (with slack)
        check_fits_in_memory(
            5 * num_samples * (self.horizon + 1) * itemsize(),
            "num_samples",
            num_samples,
            f"{num_samples} draws of horizon {self.horizon}",
            "draw fewer samples per call",
        )
        actions, states, rewards = _sample(key, self.log_policy, self.mdp, num_samples)
        return {"actions": actions, "states": states, "rewards": rewards}

    def log_prob(self, actions):
        """Exact posterior log-probability of action sequences, (..., T) -> (...)."""
        actions = check_index_array(actions, "actions", "action ids")
        if actions.ndim == 0 or actions.shape[-1] != self.horizon:
            raise ValueError(f"actions must have shape (..., {self.horizon}), got {actions.shape}")
        states, _ = rollout(self.mdp, actions)  # checks dtype and range
        return _log_prob(self.log_policy, states, actions)


def solve(env, horizon, beta):
    """Solve the trajectory posterior exactly.

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0.

    Returns
    -------
    ExactPosterior

    Raises
    ------
    ValueError
        If the (T, S, A) arrays would not fit in memory, or ``beta * max |reward|`` or a
        horizon's total overflows the working dtype (float32 unless ``jax_enable_x64``;
        the message says when float64 would hold it).
    """
    mdp, horizon, beta = _check_problem(env, horizon, beta)
    next_state = jnp.asarray(mdp.next_state)
    reward = jnp.asarray(mdp.reward)
    # beta * reward in float64 on the host, split into a working-precision pair hi + lo.
    scaled = beta * np.asarray(mdp.reward, dtype=np.float64)
    reward_hi = jnp.asarray(scaled, dtype=reward.dtype)
    reward_lo = jnp.asarray(scaled - np.asarray(reward_hi, dtype=np.float64), dtype=reward.dtype)
    log_policy, (v_hi, v_lo) = _backward(next_state, reward_hi, reward_lo, horizon)
    state_marginals, action_marginals, step_returns = _forward(log_policy, mdp)
    log_z = float(v_hi[mdp.start_state]) + float(v_lo[mdp.start_state])
    return ExactPosterior(
        mdp=mdp,
        horizon=horizon,
        beta=beta,
        log_z=log_z,
        log_policy=log_policy,
        state_marginals=state_marginals,
        action_marginals=action_marginals,
        expected_return=math.fsum(np.asarray(step_returns, dtype=np.float64).tolist()),
    )


def most_probable_path(env, horizon, beta):
    """The MAP action sequence of the trajectory posterior, by a max-product backward pass.

    With the uniform action prior the posterior is proportional to exp(beta * return), so
    for beta > 0 the MAP trajectory maximises the return: V_T = 0,
    Q_t(s, a) = r(s, a) + V_{t+1}(s'(s, a)), V_t = max_a Q_t, then act greedily on Q from
    the start. Ties go to the lowest action id (at beta = 0 every path is a MAP path).

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T, 1 <= T <= 2**31 - 2, with the (T, S, A) values fitting in memory.
    beta : float
        Inverse temperature >= 0 (it does not change the MAP path for beta > 0).

    Returns
    -------
    actions : int array, shape (T,)
    states : int array, shape (T + 1,)

    Raises
    ------
    ValueError
        If the (T, S, A) values would not fit in memory, or the largest return
        ``horizon * max |reward|`` overflows the working dtype.
    """
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    check_beta(beta)
    check_no_overflow(mdp.reward, horizon)
    _check_fits(horizon, mdp.n_states, mdp.n_actions, copies=2)
    next_state = jnp.asarray(mdp.next_state)
    reward = jnp.asarray(mdp.reward)

    def backward(value, _):
        q = reward + value[next_state]  # (S, A)
        return q.max(axis=1), q

    _, q_values = lax.scan(
        backward, jnp.zeros(mdp.n_states, reward.dtype), None, length=horizon, reverse=True
    )

    def forward(state, q):
        action = jnp.argmax(q[state])
        new_state = next_state[state, action]
        return new_state, (action, new_state)

    start = jnp.asarray(mdp.start_state, next_state.dtype)
    _, (actions, states) = lax.scan(forward, start, q_values)
    return np.asarray(actions), np.concatenate([[mdp.start_state], np.asarray(states)])


def _check_problem(env, horizon, beta):
    """Validated ``(mdp, horizon, float beta)`` whose (T, S, A) arrays fit in memory and whose
    scaled rewards and totals fit in the working dtype."""
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    beta = float(check_beta(beta))
    check_no_overflow(mdp.reward, horizon, beta)
    _check_fits(horizon, mdp.n_states, mdp.n_actions, copies=3)
    return mdp, horizon, beta


def _check_fits(horizon, n_states, n_actions, copies):
    """Raise ``ValueError`` naming horizon if ``copies`` (T, S, A) float arrays would not fit."""
    check_fits_in_memory(
        copies * horizon * n_states * n_actions * itemsize(),
        "horizon",
        horizon,
        f"the (T, S, A) arrays of {n_states} states x {n_actions} actions",
        "use a shorter horizon or a smaller env",
    )


def _two_sum(a, b):
    """Knuth's TwoSum: ``a + b = s + err`` exactly in floating point."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


@partial(jax.jit, static_argnums=3)
def _backward(next_state, reward_hi, reward_lo, horizon):
    """Backward messages in double-word arithmetic (value = hi + lo).

    At the notebook's scale V_t reaches 1e8 while the policy depends on O(1) differences of
    neighbouring values, which float32 alone cannot hold; carrying each value as an unevaluated
    sum hi + lo keeps those differences exact to ~1e-7 in float32 (and is harmless in float64).

    Returns log_policy (T, S, A) and V_0 as (hi, lo), each (S,).
    """
    n_states, n_actions = next_state.shape
    log_prior = -jnp.log(n_actions).astype(reward_hi.dtype)

    def step(log_v_next, _):
        v_hi, v_lo = log_v_next
        q_hi, err = _two_sum(reward_hi, v_hi[next_state])  # (S, A)
        q_hi, q_lo = _two_sum(q_hi, reward_lo + v_lo[next_state] + err)
        # The maximum of hi + lo, not of hi alone: actions tied in hi can differ in lo, and a
        # difference taken to the hi-argmax's pair could then be positive and overflow exp.
        m_hi = jnp.max(q_hi, axis=1, keepdims=True)
        diff = (q_hi - m_hi) + q_lo  # Q - max hi: exact where it matters (Sterbenz)
        m_lo = jnp.max(diff, axis=1, keepdims=True)  # max Q = m_hi + m_lo
        diff = diff - m_lo  # Q - max Q <= 0, exactly 0 at the maximum
        log_sum = jnp.log(jnp.sum(jnp.exp(diff), axis=1))  # (S,), in [0, log A]
        new_hi, err = _two_sum(m_hi[:, 0], log_sum + log_prior)
        new_hi, new_lo = _two_sum(new_hi, m_lo[:, 0] + err)
        return (new_hi, new_lo), diff - log_sum[:, None]

    zeros = jnp.zeros(n_states, reward_hi.dtype)
    log_v0, log_policy = lax.scan(step, (zeros, zeros), None, length=horizon, reverse=True)
    return log_policy, log_v0


@jax.jit
def _forward(log_policy, mdp):
    """Forward marginals: states (T + 1, S), actions (T, A), expected reward per step (T,)."""
    next_state, reward = mdp.next_state, mdp.reward
    mu0 = jnp.zeros(mdp.n_states, log_policy.dtype).at[mdp.start_state].set(1.0)

    def step(mu, log_pi):
        joint = mu[:, None] * jnp.exp(log_pi)  # (S, A)
        mu_next = jnp.zeros_like(mu).at[next_state].add(joint)
        return mu_next, (mu_next, joint.sum(axis=0), jnp.sum(joint * reward))

    _, (mus, action_marginals, step_returns) = lax.scan(step, mu0, log_policy)
    return jnp.concatenate([mu0[None], mus]), action_marginals, step_returns


@partial(jax.jit, static_argnums=3)
def _sample(key, log_policy, mdp, num_samples):
    """``num_samples`` iid trajectories: actions (n, T), states (n, T + 1), rewards (n, T)."""
    next_state, reward = mdp.next_state, mdp.reward

    def one(key):
        uniforms = positive_uniform(key, log_policy.shape[:1], log_policy.dtype)

        def step(state, inputs):
            u, log_pi = inputs
            action = inverse_cdf_sample(u, jnp.exp(log_pi[state]))
            new_state = next_state[state, action]
            return new_state, (action, new_state, reward[state, action])

        s0 = jnp.asarray(mdp.start_state, next_state.dtype)
        _, (actions, states, rewards) = lax.scan(step, s0, (uniforms, log_policy))
        return actions, jnp.concatenate([s0[None], states]), rewards

    return jax.vmap(one)(random.split(key, num_samples))


@jax.jit
def _path_probability(log_policy, mdp, states):
    """Sum over the actions making each move: states (..., T + 1) -> (...)."""
    time = jnp.arange(states.shape[-1] - 1)
    here, there = states[..., :-1], states[..., 1:]
    makes_move = mdp.next_state[here] == there[..., None]  # (..., T, A)
    step_probs = jnp.sum(jnp.exp(log_policy[time, here]) * makes_move, axis=-1)
    at_start = states[..., 0] == mdp.start_state
    return jnp.where(at_start, jnp.prod(step_probs, axis=-1), 0.0)


def _check_states(states, n_states):
    """Raise unless ``states`` are integer state indices in [0, n_states)."""
    if not jnp.issubdtype(states.dtype, jnp.integer):
        raise TypeError(f"states must be an integer array of state indices, got {states.dtype}")
    if states.size and (int(states.min()) < 0 or int(states.max()) >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}), the state indices")


@jax.jit
def _log_prob(log_policy, states, actions):
    """Sum over t of log pi_t(a_t | s_t): states (..., T + 1), actions (..., T) -> (...)."""
    time = jnp.arange(actions.shape[-1])
    return log_policy[time, states[..., :-1], actions].sum(axis=-1)


jax.tree_util.register_dataclass(
    ExactPosterior,
    data_fields=[
        "mdp",
        "beta",
        "log_z",
        "log_policy",
        "state_marginals",
        "action_marginals",
        "expected_return",
    ],
    meta_fields=["horizon"],
)
