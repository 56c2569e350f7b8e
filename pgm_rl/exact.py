"""Exact inference for the trajectory posterior by backward messages (soft value iteration).

With a uniform prior over A actions and likelihood exp(beta * r), the backward messages are

    V_T(s) = 0,   Q_t(s, a) = beta r(s, a) + V_{t+1}(s'(s, a)),   V_t(s) = logsumexp_a Q_t(s, a) - log A,

log Z = V_0(s_0) and the posterior policy is pi_t(a | s) = exp(Q_t(s, a) - log A - V_t(s)).
Values are carried as double-word sums (hi + lo) and action probabilities are computed from
differences to the per-state maximum, so the notebook's scale (beta * reward up to 1e8) stays
exact in float64 and accurate to ~1e-6 in float32.
"""

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from pgm_rl import _messages
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
from pgm_rl._transitions import PROBABILITY_TOLERANCE
from pgm_rl.dynamics import rollout
from pgm_rl.model import check_deterministic, check_env

__all__ = [
    "ExactPosterior",
    "PolicyEvaluation",
    "SoftBellmanPolicy",
    "evaluate_policy",
    "most_probable_path",
    "soft_bellman",
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
    messages : tuple of two arrays, shape (T + 1, S), or None
        For stochastic dynamics: the backward messages V_t(s) = log p(O_t.. | s_t = s) as a
        double-word pair (hi, lo); the posterior over next states,
        q_t(s' | s, a) ∝ p(s' | s, a) exp(beta r(s, a, s') + V_{t+1}(s')), is recomputed from
        them. None for deterministic dynamics.

    On an MDP with random dynamics or start this is the posterior over the whole trajectory:
    start state, actions and next states. It plans as if luck were on its side (Levine 2018,
    section 2.4): compare ``expected_return`` with
    ``evaluate_policy(env, posterior.policy, beta).expected_return`` and with
    :func:`soft_bellman`.
    """

    mdp: object
    horizon: int
    beta: float
    log_z: float
    log_policy: jax.Array
    state_marginals: jax.Array
    action_marginals: jax.Array
    expected_return: float
    messages: object = None

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
        if not self.mdp.is_deterministic:
            return _path_prob(self, states)
        return _path_probability(self.log_policy, self.mdp, states)

    def sample(self, key, num_samples):
        """Draw exact iid posterior trajectories.

        Returns a dict with ``"actions"`` (n, T) int, ``"states"`` (n, T + 1) int and
        ``"rewards"`` (n, T). With random dynamics or start, the start and the next states are
        drawn from the posterior too.
        """
        if not self.mdp.is_deterministic:
            return _draw(self, key, num_samples)
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

    def log_prob(self, actions, states=None):
        """Exact posterior log-probability of trajectories, (..., T) -> (...).

        ``states`` (..., T + 1) is required when the dynamics or the start are random (the
        joint probability of start, actions and next states). For a deterministic MDP it may be
        omitted (the log-probability of the action sequence); if given, a ``states`` that is not
        the rollout of ``actions`` has probability 0.
        """
        if states is not None or not self.mdp.is_deterministic:
            actions, states = _check_path_arrays(
                self, actions, states, need_states=not self.mdp.is_deterministic
            )
            return _joint_log_prob(self, actions, states)
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
    if not mdp.is_deterministic:
        return _solve_stochastic(mdp, horizon, beta)
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
    mdp = check_deterministic(check_env(env), "most_probable_path")
    horizon = check_horizon(horizon)
    check_beta(beta)
    check_no_overflow(mdp.outcome_rewards, horizon)
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
    check_no_overflow(mdp.outcome_rewards, horizon, beta)  # every outcome, not the mean
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
        "messages",
    ],
    meta_fields=["horizon"],
)


# ----------------------------------------------------------------------------- stochastic MDPs
# The exact posterior of an MDP with random dynamics or start, the soft-Bellman policy and the
# evaluation of any policy in the true dynamics; the arithmetic lives in pgm_rl._messages.


def _solve_stochastic(mdp, horizon, beta):
    """:func:`solve` for an MDP whose dynamics or start are random (checked arguments)."""
    dyn = _messages.sparse_dynamics(mdp, beta)
    if mdp.has_random_dynamics:
        log_policy, (v_hi, v_lo) = _messages.posterior_backward(*dyn.arrays, horizon)
        messages = (v_hi, v_lo)
        v0 = np.asarray(v_hi[0], np.float64) + np.asarray(v_lo[0], np.float64)
    else:  # deterministic dynamics, random start: the deterministic backward pass
        log_policy, (v_hi, v_lo) = _deterministic_backward(mdp, beta, horizon)
        messages = None
        v0 = np.asarray(v_hi, np.float64) + np.asarray(v_lo, np.float64)
    log_joint = dyn.log_p0 + v0  # log p0(s) + V_0(s), float64 on the host
    top = np.max(log_joint)
    log_z = float(top + np.log(np.sum(np.exp(log_joint - top))))
    mu0 = np.exp(log_joint - log_z)
    result = ExactPosterior(
        mdp=mdp,
        horizon=horizon,
        beta=beta,
        log_z=log_z,
        log_policy=log_policy,
        state_marginals=None,
        action_marginals=None,
        expected_return=None,
        messages=messages,
    )
    marginals, actions, step_returns, _, _ = _run_forward(result, mu0)
    return dataclasses.replace(
        result,
        state_marginals=marginals,
        action_marginals=actions,
        expected_return=math.fsum(np.asarray(step_returns, np.float64).tolist()),
    )


def _deterministic_backward(mdp, beta, horizon):
    """The double-word backward pass of deterministic dynamics -> log_policy, (v_hi, v_lo) (S,)."""
    reward = jnp.asarray(mdp.reward)
    scaled = beta * np.asarray(mdp.reward, dtype=np.float64)
    reward_hi = jnp.asarray(scaled, dtype=reward.dtype)
    reward_lo = jnp.asarray(scaled - np.asarray(reward_hi, dtype=np.float64), dtype=reward.dtype)
    return _backward(jnp.asarray(mdp.next_state), reward_hi, reward_lo, horizon)


def _process(result):
    """``(dynamics, posterior, v_hi, v_lo)`` of a result: how its trajectories move."""
    dyn = _messages.sparse_dynamics(result.mdp, result.beta)
    messages = getattr(result, "messages", None)
    posterior = messages is not None
    if posterior:
        v_hi, v_lo = messages
    else:  # unused by the jitted functions; the right leading length for their scans
        v_hi = v_lo = jnp.zeros((result.horizon + 1, 1), dyn.r_hi.dtype)
    return dyn, posterior, v_hi, v_lo


def _start_distribution(result):
    """The distribution of s_0 the result's trajectories start from, (S,)."""
    if isinstance(result, ExactPosterior):
        return result.state_marginals[0]
    return jnp.asarray(result.mdp.start_probs, result.log_policy.dtype)


def _run_forward(result, mu0, absorb=None):
    dyn, posterior, v_hi, v_lo = _process(result)
    mu0 = jnp.asarray(mu0, dyn.r_hi.dtype)
    if absorb is None:
        absorb = jnp.zeros(mu0.shape, bool)
    return _messages.forward(
        mu0, result.log_policy, *dyn.arrays, v_hi, v_lo, absorb, posterior=posterior
    )


def _check_path_arrays(result, actions, states, need_states):
    """Checked ``(actions (..., T), states (..., T + 1))``; states from a rollout if omitted."""
    horizon, mdp = result.horizon, result.mdp
    actions = check_index_array(actions, "actions", "action ids")
    if actions.ndim == 0 or actions.shape[-1] != horizon:
        raise ValueError(f"actions must have shape (..., {horizon}), got {actions.shape}")
    if states is None:
        if need_states:
            raise ValueError(
                "states is required: this MDP's dynamics or start are random, so the actions "
                "alone do not fix the trajectory; pass states (..., T + 1)"
            )
        states, _ = rollout(mdp, actions)  # checks the range of actions
        return actions, states
    states = check_index_array(states, "states", "state indices")
    if states.shape != (*actions.shape[:-1], horizon + 1):
        raise ValueError(
            f"states must have shape {(*actions.shape[:-1], horizon + 1)} to match actions "
            f"{actions.shape}, got {states.shape}"
        )
    _check_states(states, mdp.n_states)
    if actions.size and (int(actions.min()) < 0 or int(actions.max()) >= mdp.n_actions):
        raise ValueError(f"actions must lie in [0, {mdp.n_actions}), the action ids")
    return actions, states


def _joint_log_prob(result, actions, states):
    """log q(states, actions) of the result's trajectory distribution, (...)."""
    dyn, posterior, v_hi, v_lo = _process(result)
    with np.errstate(divide="ignore"):
        log_mu0 = jnp.log(_start_distribution(result))
    return _messages.log_prob(
        log_mu0,
        result.log_policy,
        dyn.ns,
        dyn.logp,
        dyn.r_hi,
        dyn.r_lo,
        v_hi,
        v_lo,
        actions,
        states,
        posterior=posterior,
    )


def _path_prob(result, states):
    dyn, posterior, v_hi, v_lo = _process(result)
    log_mu0 = jnp.log(_start_distribution(result))
    return jnp.exp(
        _messages.path_log_prob(
            log_mu0,
            result.log_policy,
            dyn.ns,
            dyn.logp,
            dyn.r_hi,
            dyn.r_lo,
            v_hi,
            v_lo,
            states,
            posterior=posterior,
        )
    )


def _draw(result, key, num_samples):
    check_key(key)
    num_samples = check_positive_int(num_samples, "num_samples")
    check_fits_in_memory(
        6 * num_samples * (result.horizon + 1) * itemsize(),
        "num_samples",
        num_samples,
        f"{num_samples} draws of horizon {result.horizon}",
        "draw fewer samples per call",
    )
    dyn, posterior, v_hi, v_lo = _process(result)
    actions, states, rewards = _messages.sample(
        key,
        jnp.asarray(_start_distribution(result), dyn.r_hi.dtype),
        result.log_policy,
        *dyn.arrays,
        v_hi,
        v_lo,
        num_samples=num_samples,
        posterior=posterior,
    )
    return {"actions": actions, "states": states, "rewards": rewards}


def _state_mask(mdp, cells):
    """A boolean (S,) mask of ``cells``: state indices, (row, col) pairs on a grid, or a mask."""
    n_states = mdp.n_states
    has_grid = hasattr(mdp, "state_of") and getattr(mdp, "shape", None) is not None
    if isinstance(cells, (bool, np.bool_, str, bytes)):
        raise TypeError(f"cells must be state indices or (row, col) cells, got {cells!r}")
    if isinstance(cells, (int, np.integer)):
        items = [cells]
    elif isinstance(cells, (np.ndarray, jax.Array)) and np.asarray(cells).dtype == bool:
        mask = np.asarray(cells)
        if mask.shape != (n_states,):
            raise ValueError(
                f"a boolean cells mask must have shape ({n_states},), got {mask.shape}"
            )
        return jnp.asarray(mask)
    elif (
        isinstance(cells, tuple)
        and len(cells) == 2
        and all(isinstance(c, (int, np.integer)) for c in cells)
        and has_grid
    ):
        items = [cells]  # one (row, col) cell
    else:
        try:
            items = (
                list(np.asarray(cells).tolist()) if isinstance(cells, np.ndarray) else list(cells)
            )
        except TypeError:
            raise TypeError(
                f"cells must be a state index, a sequence of state indices or (row, col) cells, "
                f"or a boolean (S,) mask; got {cells!r}"
            ) from None
    mask = np.zeros(n_states, bool)
    for item in items:
        if isinstance(item, (tuple, list)):
            if not has_grid:
                raise TypeError(
                    f"cells holds {item!r}, a (row, col) pair, but this MDP has no grid: pass "
                    "state indices"
                )
            mask[mdp.state_of(*item)] = True
        elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            if not 0 <= item < n_states:
                raise ValueError(
                    f"cells must lie in [0, {n_states}), the state indices, got {item}"
                )
            mask[int(item)] = True
        else:
            raise TypeError(
                f"cells must hold state indices (ints) or (row, col) cells, got {item!r}"
            )
    return jnp.asarray(mask)


def _reach(result, cells):
    mask = _state_mask(result.mdp, cells)
    *_, hits = _run_forward(result, _start_distribution(result), absorb=mask)
    return float(math.fsum(np.asarray(hits, np.float64).tolist()))


def _exact_reach_probability(self, cells):
    """Posterior probability of being in any of ``cells`` at least once in steps 0..T.

    Parameters
    ----------
    cells : int, sequence of int, (row, col), sequence of (row, col), or bool array (S,)
        States (or grid cells, on an MDP with a grid: a ``GridWorld`` or a Gymnasium grid map).
        A start inside ``cells`` counts as reaching them.

    Returns
    -------
    float
    """
    return _reach(self, cells)


ExactPosterior.reach_probability = _exact_reach_probability


@dataclass(frozen=True, eq=False, repr=False)
class PolicyEvaluation:
    """A (T, S, A) policy executed in the true dynamics from the true start distribution.

    A JAX pytree; ``horizon`` is static. Built by :func:`evaluate_policy`.

    Attributes
    ----------
    mdp : TabularMDP
    horizon : int
        T.
    beta : float
    log_policy : array, shape (T, S, A)
        log pi_t(a | s).
    state_marginals : array, shape (T + 1, S)
        Probability of being in state s at step t (step 0: the start distribution).
    action_marginals : array, shape (T, A)
    expected_return : float
        Expected sum of rewards (unscaled).
    elbo : float
        E_q[beta * return] - sum_t E_q[KL(pi_t(. | s_t) || uniform)], the evidence lower bound
        of the policy (<= log Z of :func:`solve`; largest for the :func:`soft_bellman` policy).
    """

    mdp: object
    horizon: int
    beta: float
    log_policy: jax.Array
    state_marginals: jax.Array
    action_marginals: jax.Array
    expected_return: float
    elbo: float

    def __repr__(self):
        horizon, n_states, n_actions = np.shape(self.log_policy)
        return (
            f"{type(self).__name__}(mdp={self.mdp!r}, horizon={horizon}, beta={self.beta:g}, "
            f"elbo={float(self.elbo):.10g}, expected_return={float(self.expected_return):.6g}, "
            f"log_policy: ({horizon}, {n_states}, {n_actions}), state_marginals: "
            f"({horizon + 1}, {n_states}))"
        )

    @cached_property
    def policy(self):
        """Action probabilities pi_t(a | s), shape (T, S, A)."""
        return jnp.exp(self.log_policy)

    def sample(self, key, num_samples):
        """Draw iid trajectories of the policy in the true dynamics.

        Returns a dict with ``"actions"`` (n, T) int, ``"states"`` (n, T + 1) int and
        ``"rewards"`` (n, T) (the reward of each outcome drawn).
        """
        return _draw(self, key, num_samples)

    def log_prob(self, actions, states=None):
        """Joint log-probability of trajectories, ``actions`` (..., T), ``states`` (..., T + 1).

        ``states`` is required when the dynamics or the start are random; for a deterministic
        MDP it defaults to the rollout of ``actions`` (a given ``states`` that is not the
        rollout has probability 0). Returns shape (...).
        """
        actions, states = _check_path_arrays(
            self, actions, states, need_states=not self.mdp.is_deterministic
        )
        return _joint_log_prob(self, actions, states)

    def path_probability(self, states):
        """Probability of the state path ``states`` (..., T + 1) -> (...), over all actions."""
        states = check_index_array(states, "states", "state indices")
        if states.ndim == 0 or states.shape[-1] != self.horizon + 1:
            raise ValueError(
                f"states must have shape (..., {self.horizon + 1}), got {states.shape}"
            )
        _check_states(states, self.mdp.n_states)
        return _path_prob(self, states)

    def reach_probability(self, cells):
        """Probability of being in any of ``cells`` at least once in steps 0..T.

        ``cells``: an int, a sequence of state indices, a (row, col) cell or a sequence of
        them (on an MDP with a grid), or a bool (S,) mask. A start inside ``cells`` counts.
        """
        return _reach(self, cells)


@dataclass(frozen=True, eq=False, repr=False)
class SoftBellmanPolicy(PolicyEvaluation):
    """The soft-Bellman (maximum-entropy) policy: the structured variational optimum.

    With the dynamics and the start distribution held fixed, it maximises
    ``E_q[beta * return] - sum_t E_q[KL(pi_t(. | s_t) || uniform)]`` over all (T, S, A) policies;
    ``elbo`` is that optimum (= log Z on deterministic MDPs with one start state, < log Z when
    the exact posterior would bend the dynamics). The marginals, return, samples and
    probabilities are those of the policy executed in the true dynamics. Same attributes and
    methods as :class:`PolicyEvaluation`.
    """


def soft_bellman(env, horizon, beta):
    """The soft-Bellman policy: soft value iteration with the true dynamics.

    ``V_T = 0``, ``Q_t(s, a) = E_{s'}[beta r(s, a, s') + V_{t+1}(s')]``,
    ``V_t(s) = log mean_a exp Q_t(s, a)``, ``pi_t(a | s) = exp(Q_t(s, a) - V_t(s)) / A`` and
    ``elbo = E_{s_0}[V_0(s_0)]``.

    Parameters
    ----------
    env : TabularMDP
    horizon : int
        Number of actions T >= 1.
    beta : float
        Inverse temperature >= 0.

    Returns
    -------
    SoftBellmanPolicy
    """
    mdp, horizon, beta = _check_problem(env, horizon, beta)
    if mdp.has_random_dynamics:
        dyn = _messages.sparse_dynamics(mdp, beta)
        log_policy, (v_hi, v_lo) = _messages.soft_backward(*dyn.arrays, horizon)
    else:  # the deterministic pass: bit for bit the posterior's policy
        log_policy, (v_hi, v_lo) = _deterministic_backward(mdp, beta, horizon)
    p0 = np.asarray(mdp.start_probs, np.float64)
    support = p0 > 0
    elbo = math.fsum(
        (p0[support] * np.asarray(v_hi, np.float64)[support]).tolist()
        + (p0[support] * np.asarray(v_lo, np.float64)[support]).tolist()
    )
    evaluation = _evaluate(mdp, horizon, beta, log_policy)
    return SoftBellmanPolicy(
        mdp=mdp,
        horizon=horizon,
        beta=beta,
        log_policy=log_policy,
        state_marginals=evaluation.state_marginals,
        action_marginals=evaluation.action_marginals,
        expected_return=evaluation.expected_return,
        elbo=elbo,
    )


def evaluate_policy(env, policy, beta):
    """Execute a (T, S, A) policy in the true dynamics: marginals, expected return, ELBO.

    Parameters
    ----------
    env : TabularMDP
    policy : array_like, shape (T, S, A)
        Action probabilities pi_t(a | s); every row ``policy[t, s]`` sums to 1 within 1e-6.
        E.g. ``solve(...).policy`` (to see what the optimistic posterior's policy achieves)
        or ``soft_bellman(...).policy``.
    beta : float
        Inverse temperature >= 0, for the ELBO.

    Returns
    -------
    PolicyEvaluation
    """
    mdp = check_env(env)
    beta = float(check_beta(beta))
    log_policy = _check_policy(policy, mdp)
    horizon = log_policy.shape[0]
    _check_problem(mdp, horizon, beta)
    return _evaluate(mdp, horizon, beta, log_policy)


def _check_policy(policy, mdp):
    """log of a checked (T, S, A) policy, in the working dtype."""
    if isinstance(policy, jax.core.Tracer):
        raise TypeError("policy must be a concrete array (evaluate_policy is not traceable)")
    try:
        array = np.asarray(policy)
    except ValueError:
        raise ValueError("policy must be a rectangular (T, S, A) array") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"policy must hold real probabilities, got dtype {array.dtype}")
    expected = (mdp.n_states, mdp.n_actions)
    if array.ndim != 3 or array.shape[1:] != expected or array.shape[0] < 1:
        raise ValueError(
            f"policy must have shape (T, S, A) = (T, {expected[0]}, {expected[1]}) with T >= 1, "
            f"got {array.shape}"
        )
    array = array.astype(np.float64)
    bad = ~(np.isfinite(array) & (array >= 0.0))
    if bad.any():
        t, s, a = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"policy must hold probabilities (no NaN, inf or negative entries): "
            f"policy[{t}, {s}, {a}] = {array[t, s, a]!r}"
        )
    sums = array.sum(axis=2)
    wrong = np.abs(sums - 1.0) > PROBABILITY_TOLERANCE
    if wrong.any():
        t, s = (int(i) for i in np.argwhere(wrong)[0])
        raise ValueError(
            f"policy rows must sum to 1 (tolerance {PROBABILITY_TOLERANCE:g}): policy[{t}, {s}] "
            f"(step {t}, state {s}) sums to {sums[t, s]!r}"
        )
    with np.errstate(divide="ignore"):
        log_policy = np.log(array / sums[..., None])
    return jnp.asarray(log_policy, _messages.working_dtype())


def _evaluate(mdp, horizon, beta, log_policy):
    result = PolicyEvaluation(
        mdp=mdp,
        horizon=horizon,
        beta=beta,
        log_policy=log_policy,
        state_marginals=None,
        action_marginals=None,
        expected_return=None,
        elbo=None,
    )
    marginals, actions, step_returns, step_kl, _ = _run_forward(result, mdp.start_probs)
    expected_return = math.fsum(np.asarray(step_returns, np.float64).tolist())
    kl = math.fsum(np.asarray(step_kl, np.float64).tolist())
    return dataclasses.replace(
        result,
        state_marginals=marginals,
        action_marginals=actions,
        expected_return=expected_return,
        elbo=beta * expected_return - kl,
    )


for _cls in (PolicyEvaluation, SoftBellmanPolicy):
    jax.tree_util.register_dataclass(
        _cls,
        data_fields=[
            "mdp",
            "beta",
            "log_policy",
            "state_marginals",
            "action_marginals",
            "expected_return",
            "elbo",
        ],
        meta_fields=["horizon"],
    )
