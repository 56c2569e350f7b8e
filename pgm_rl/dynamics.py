"""The one definition of moving through a tabular MDP."""

import jax
import jax.numpy as jnp
from jax import lax, random

from pgm_rl._checks import check_index_array


def rollout(mdp, actions, start_state=None, outcomes=None):
    """Follow ``actions`` (and, for stochastic dynamics, the outcome indices) from the start state.

    Parameters
    ----------
    mdp : TabularMDP
    actions : int array, shape (..., T)
    start_state : int array, shape (...), optional
        Defaults to ``mdp.start_state`` (required when the start is random).
    outcomes : int array, shape (..., T), optional
        For stochastic dynamics (required there): ``outcomes[..., t]`` is the index ``k`` of the
        outcome of step t among ``mdp.outcome_states[s_t, a_t]`` (S, A, K), so the state entered
        is ``outcome_states[s_t, a_t, k]`` and the reward ``outcome_rewards[s_t, a_t, k]``.
        Ignored (may be omitted) for deterministic dynamics.

    Returns
    -------
    states : int array, shape (..., T + 1), including the start state
    rewards : float array, shape (..., T); ``rewards[..., t]`` is the reward of action t

    Raises
    ------
    ValueError
        For an MDP with stochastic dynamics when ``outcomes`` is not given (actions alone do not
        fix the states), or with a random start when ``start_state`` is not given.
    """
    random_dynamics = getattr(mdp, "has_random_dynamics", False)
    if random_dynamics and outcomes is None:
        raise ValueError(
            "this MDP's dynamics are stochastic (actions alone do not fix the states): pass "
            "outcomes (..., T), the outcome index of each step, to rollout; or draw whole "
            "trajectories with pgm_rl.solve(...).sample or pgm_rl.soft_bellman(...).sample"
        )
    if start_state is None and getattr(mdp, "has_random_start", False):
        raise ValueError("this MDP has a random start: pass start_state to rollout")
    if random_dynamics:
        return _rollout_outcomes(mdp, actions, start_state, outcomes)
    next_state = jnp.asarray(mdp.next_state)
    reward = jnp.asarray(mdp.reward)
    actions = check_index_array(actions, "actions", "action ids")
    if actions.ndim == 0:
        raise ValueError(f"actions must have shape (..., T), got a scalar {actions!r}")
    _check_indices(actions, mdp.n_actions, "actions", "action ids")
    if start_state is not None:
        start_state = check_index_array(start_state, "start_state", "state indices")
        _check_indices(start_state, mdp.n_states, "start_state", "state indices")
    if start_state is None:
        start_state = mdp.start_state
    s0 = jnp.broadcast_to(jnp.asarray(start_state, next_state.dtype), actions.shape[:-1])

    def step(state, action):
        new_state = next_state[state, action]
        return new_state, (new_state, reward[state, action])

    _, (states, rewards) = lax.scan(step, s0, jnp.moveaxis(actions, -1, 0))
    states = jnp.concatenate([s0[None], states], axis=0)
    return jnp.moveaxis(states, 0, -1), jnp.moveaxis(rewards, 0, -1)


def returns_to_go(mdp, actions):
    """Return of following ``actions[t:]`` from every state.

    Parameters
    ----------
    mdp : TabularMDP
    actions : int array, shape (T,)

    Returns
    -------
    float array, shape (T + 1, S): ``G[t, s]`` is the return of ``actions[t:]`` taken from
    state ``s`` at time t, with ``G[T] = 0``.
    """
    next_state = jnp.asarray(mdp.next_state)
    reward = jnp.asarray(mdp.reward)

    def step(g_next, action):
        g = reward[:, action] + g_next[next_state[:, action]]
        return g, g

    g_end = jnp.zeros(next_state.shape[0], reward.dtype)
    _, g = lax.scan(step, g_end, actions, reverse=True)
    return jnp.concatenate([g, g_end[None]])


def _check_indices(values, size, name, what):
    """Raise unless ``values`` are integers in [0, size); traced values pass unchecked.

    JAX clamps out-of-range gathers silently, so concrete input is checked here.
    """
    if not jnp.issubdtype(values.dtype, jnp.integer):
        raise TypeError(f"{name} must be an integer array of {what}, got dtype {values.dtype}")
    if isinstance(values, jax.core.Tracer) or values.size == 0:
        return
    if int(values.min()) < 0 or int(values.max()) >= size:
        raise ValueError(f"{name} must lie in [0, {size}), the {what}")


# ---------------------------------------------------------------- stochastic dynamics
# A trajectory of a stochastic MDP is fixed by its start state, its actions and its outcome
# indices k_t (which of the K listed outcomes of (s_t, a_t) happened): everything below moves
# with ``follow``, the one step of stochastic dynamics.


def _rollout_outcomes(mdp, actions, start_state, outcomes):
    """:func:`rollout` for stochastic dynamics, checked (see there)."""
    actions = check_index_array(actions, "actions", "action ids")
    if actions.ndim == 0:
        raise ValueError(f"actions must have shape (..., T), got a scalar {actions!r}")
    _check_indices(actions, mdp.n_actions, "actions", "action ids")
    outcomes = check_index_array(outcomes, "outcomes", "outcome indices")
    if outcomes.shape[-1:] != actions.shape[-1:]:
        raise ValueError(
            f"outcomes must have shape (..., T) like actions {actions.shape}, got {outcomes.shape}"
        )
    _check_indices(outcomes, mdp.n_outcomes, "outcomes", "outcome indices")
    if start_state is None:
        start_state = mdp.start_state
    else:
        start_state = check_index_array(start_state, "start_state", "state indices")
        _check_indices(start_state, mdp.n_states, "start_state", "state indices")
    shape = jnp.broadcast_shapes(actions.shape, outcomes.shape)
    start = jnp.broadcast_to(jnp.asarray(start_state, jnp.int32), shape[:-1])
    states, rewards, _, _ = follow(
        mdp, start, jnp.broadcast_to(actions, shape), jnp.broadcast_to(outcomes, shape)
    )
    return states, rewards


def follow(mdp, start, actions, outcomes, noise=None, fresh=None):
    """Move through stochastic dynamics, keeping some outcome indices and drawing the others.

    The one definition of a stochastic step: from ``s_t`` taking ``a_t``, outcome ``k_t``
    enters ``outcome_states[s_t, a_t, k_t]`` with reward ``outcome_rewards[s_t, a_t, k_t]``
    and prior probability ``outcome_probs[s_t, a_t, k_t]``. Where ``fresh[..., t]`` is true,
    ``k_t`` is drawn from ``outcome_probs[s_t, a_t]`` by inverse CDF with ``noise[..., t]`` in
    (0, 1] (given the state actually reached); elsewhere ``outcomes[..., t]`` is kept. Unchecked
    (traceable).

    Parameters
    ----------
    mdp : TabularMDP
    start : int array, shape (...)
    actions, outcomes : int arrays, shape (..., T)
    noise : float array, shape (..., T), optional
    fresh : bool array, shape (..., T) or (T,), optional
        Default: keep every outcome.

    Returns
    -------
    states : int32 (..., T + 1)
    rewards : float (..., T)
    outcomes : int32 (..., T), the kept or drawn outcome indices
    log_probs : float (..., T), ``log outcome_probs[s_t, a_t, k_t]`` (-inf for an impossible one)
    """
    out_states = jnp.asarray(mdp.outcome_states)
    out_probs = jnp.asarray(mdp.outcome_probs)
    out_rewards = jnp.asarray(mdp.outcome_rewards)
    actions = jnp.asarray(actions, jnp.int32)
    outcomes = jnp.asarray(outcomes, jnp.int32)
    start = jnp.asarray(start, jnp.int32)
    horizon = actions.shape[-1]
    if fresh is None:
        fresh = jnp.zeros(horizon, bool)
        noise = jnp.ones(horizon, out_probs.dtype)
    fresh = jnp.broadcast_to(fresh, actions.shape)
    noise = jnp.broadcast_to(noise, actions.shape)

    def step(state, inputs):
        action, kept, u, draw = inputs
        probs = out_probs[state, action]  # (..., K)
        cdf = jnp.cumsum(probs, axis=-1)
        drawn = jnp.sum(cdf[..., :-1] < (u * cdf[..., -1])[..., None], axis=-1).astype(jnp.int32)
        k = jnp.where(draw, drawn, kept)
        prob = jnp.take_along_axis(probs, k[..., None], axis=-1)[..., 0]
        new_state = out_states[state, action, k]
        return new_state, (new_state, out_rewards[state, action, k], k, jnp.log(prob))

    inputs = tuple(jnp.moveaxis(x, -1, 0) for x in (actions, outcomes, noise, fresh))
    _, (states, rewards, outcomes, log_probs) = lax.scan(step, start, inputs)
    states = jnp.concatenate([start[None], states], axis=0)
    return tuple(jnp.moveaxis(x, 0, -1) for x in (states, rewards, outcomes, log_probs))


def draw_start(key, mdp, shape=()):
    """Start states drawn from ``mdp.start_probs`` (int32, ``shape``); the start state if fixed."""
    if not getattr(mdp, "has_random_start", False):
        return jnp.full(shape, mdp.start_state, jnp.int32)
    logits = jnp.log(jnp.asarray(mdp.start_probs))
    return random.categorical(key, logits, shape=shape).astype(jnp.int32)


def start_log_prob(mdp, start):
    """``log start_probs[start]`` (0 for a fixed start)."""
    if not getattr(mdp, "has_random_start", False):
        return jnp.zeros(jnp.shape(start))
    return jnp.log(jnp.asarray(mdp.start_probs)[start])


def log_values_to_go(mdp, actions, outcomes, beta):
    """Log weight of the fixed future ``(actions[t:], outcomes[t:])`` from every state.

    ``L[t, s] = sum_{u >= t} (log outcome_probs[s_u, a_u, k_u] + beta * outcome_rewards[s_u,
    a_u, k_u])`` along the path that starts in ``s`` at time t and follows the given action and
    outcome indices, with ``L[T] = 0``; ``-inf`` where that path takes an impossible outcome.
    The stochastic counterpart of :func:`returns_to_go` (there the prior of the future is the
    same from every state; here the outcome indices' probabilities change with the state).

    Parameters
    ----------
    mdp : TabularMDP (stochastic dynamics)
    actions, outcomes : int arrays, shape (T,)
    beta : float

    Returns
    -------
    float array, shape (T + 1, S)
    """
    out_states = jnp.asarray(mdp.outcome_states)
    out_probs = jnp.asarray(mdp.outcome_probs)
    out_rewards = jnp.asarray(mdp.outcome_rewards)

    def step(l_next, inputs):
        action, k = inputs
        entered = out_states[:, action, k]
        value = jnp.log(out_probs[:, action, k]) + beta * out_rewards[:, action, k]
        value = value + l_next[entered]
        return value, value

    l_end = jnp.zeros(out_states.shape[0], out_rewards.dtype)
    _, values = lax.scan(step, l_end, (actions, outcomes), reverse=True)
    return jnp.concatenate([values, l_end[None]])
