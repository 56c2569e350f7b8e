"""The one definition of moving through a world, over outcomes, whatever is random in it.

A trajectory is fixed by its start state, its actions (T,) and its outcome indices (T,): from
``s_t`` taking ``a_t``, outcome ``k_t`` enters ``outcome_states[s_t, a_t, k_t]`` with reward
``outcome_rewards[s_t, a_t, k_t]`` and prior probability ``outcome_probs[s_t, a_t, k_t]`` (see
:mod:`pgm_rl.worlds.protocol`). On deterministic dynamics (K = 1) every outcome index is 0 and
its log prior 0; on a single start state the start is fixed and its log prior 0: the same code
moves through every kind of world. Only the defaults of :func:`rollout` and
:func:`returns_to_go` ask which parts are random (:func:`pgm_rl.worlds.latent_sites`).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pgm_rl._checks import check_index_array
from pgm_rl._sampling import positive_uniform
from pgm_rl.worlds.checks import latent_sites

__all__ = [
    "draw_start",
    "follow",
    "log_values_to_go",
    "returns_to_go",
    "rollout",
    "start_log_prob",
]


def rollout(mdp, actions, start_state=None, outcomes=None):
    """Follow ``actions`` and the outcome indices from the start state.

    Parameters
    ----------
    mdp : TabularMDP (or another :class:`~pgm_rl.worlds.World`)
    actions : int array, shape (..., T)
    start_state : int array, shape (...), optional
        Defaults to the single start state (required when the start is random).
    outcomes : int array, shape (..., T), optional
        ``outcomes[..., t]`` is the index ``k`` of the outcome of step t among
        ``mdp.outcome_states[s_t, a_t]`` (S, A, K), so the state entered is
        ``outcome_states[s_t, a_t, k]`` and the reward ``outcome_rewards[s_t, a_t, k]``.
        Required for stochastic dynamics; defaults to 0 (the only outcome) for deterministic
        dynamics.

    Returns
    -------
    states : int array, shape (..., T + 1), including the start state
    rewards : float array, shape (..., T); ``rewards[..., t]`` is the reward of action t

    Raises
    ------
    ValueError
        For an MDP with stochastic dynamics when ``outcomes`` is not given (actions alone do not
        fix the states), or with a random start when ``start_state`` is not given; for indices
        out of range.
    TypeError
        For non-integer actions, outcomes or start states.
    """
    outcomes = _outcomes_or_zeros(mdp, actions, outcomes, "rollout")
    start_state = _start_or_fixed(mdp, start_state)
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
    start_state = check_index_array(start_state, "start_state", "state indices")
    _check_indices(start_state, mdp.n_states, "start_state", "state indices")
    return _rollout(*_outcome_arrays(mdp), start_state, actions, outcomes)


@jax.jit  # compiled once per shape for eager calls (inlined under an outer jit)
def _rollout(out_states, out_probs, out_rewards, start, actions, outcomes):
    """:func:`rollout` after its checks: ``(states, rewards)``."""
    shape = jnp.broadcast_shapes(actions.shape, outcomes.shape)
    start = jnp.broadcast_to(start, shape[:-1])
    actions, outcomes = (jnp.broadcast_to(x, shape) for x in (actions, outcomes))
    return _follow(out_states, out_probs, out_rewards, start, actions, outcomes, None)[:2]


def _outcomes_or_zeros(mdp, actions, outcomes, what):
    """``outcomes``, or all 0 (shaped like ``actions``) where the dynamics are deterministic.

    Raises ``ValueError`` naming ``what`` when they are missing on stochastic dynamics.
    """
    if outcomes is not None:
        return outcomes
    if "outcomes" in latent_sites(mdp):
        raise ValueError(
            "this MDP's dynamics are stochastic (actions alone do not fix the states): pass "
            f"outcomes (..., T), the outcome index of each step, to {what}; or draw whole "
            "trajectories with pgm_rl.solve(...).sample or pgm_rl.soft_bellman(...).sample"
        )
    return jnp.zeros(np.shape(actions), jnp.int32)  # np: actions may still be a list here


def _start_or_fixed(mdp, start_state):
    """``start_state``, or the single start state; ``ValueError`` when the start is random."""
    if start_state is not None:
        return start_state
    if "start" in latent_sites(mdp):
        raise ValueError("this MDP has a random start: pass start_state to rollout")
    probs = mdp.start_probs
    xp = np if isinstance(probs, np.ndarray) else jnp  # concrete: a constant under jit
    return xp.argmax(probs).astype(np.int32)


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


def follow(mdp, start, actions, outcomes, noise=None, fresh=None):
    """Move through the dynamics, keeping some outcome indices and drawing the others.

    The one definition of a step: from ``s_t`` taking ``a_t``, outcome ``k_t`` enters
    ``outcome_states[s_t, a_t, k_t]`` with reward ``outcome_rewards[s_t, a_t, k_t]`` and prior
    probability ``outcome_probs[s_t, a_t, k_t]``. Where ``fresh[..., t]`` is true, ``k_t`` is
    drawn from ``outcome_probs[s_t, a_t]`` by inverse CDF with ``noise[..., t]`` in (0, 1]
    (given the state actually reached); elsewhere ``outcomes[..., t]`` is kept. Unchecked
    (traceable).

    Parameters
    ----------
    mdp : TabularMDP (or another :class:`~pgm_rl.worlds.World`)
    start : int array, shape (...)
    actions, outcomes : int arrays, shape (..., T)
    noise : float array, shape (..., T), optional
        Needed with ``fresh``.
    fresh : bool array, shape (..., T) or (T,), optional
        Default: keep every outcome (nothing is drawn).

    Returns
    -------
    states : int32 (..., T + 1)
    rewards : float (..., T)
    outcomes : int32 (..., T), the kept or drawn outcome indices
    log_probs : float (..., T), ``log outcome_probs[s_t, a_t, k_t]`` (-inf for an impossible one;
        0 throughout on deterministic dynamics)
    """
    actions = jnp.asarray(actions, jnp.int32)
    draws = None
    if fresh is not None:
        draws = tuple(jnp.broadcast_to(x, actions.shape) for x in (noise, fresh))
    return _follow(*_outcome_arrays(mdp), start, actions, outcomes, draws)


def _outcome_arrays(mdp):
    """``(outcome_states, outcome_probs, outcome_rewards)`` as JAX arrays."""
    return tuple(
        jnp.asarray(x) for x in (mdp.outcome_states, mdp.outcome_probs, mdp.outcome_rewards)
    )


def _follow(out_states, out_probs, out_rewards, start, actions, outcomes, draws):
    """:func:`follow` on the outcome arrays; ``draws`` is ``(noise, fresh)`` or None."""
    start = jnp.asarray(start, jnp.int32)
    outcomes = jnp.asarray(outcomes, jnp.int32)

    def step(state, inputs):
        action, k, draw = inputs
        if draw is not None:
            u, drawn_here = draw
            cdf = jnp.cumsum(out_probs[state, action], axis=-1)  # (..., K)
            drawn = jnp.sum(cdf[..., :-1] < (u * cdf[..., -1])[..., None], axis=-1)
            k = jnp.where(drawn_here, drawn.astype(jnp.int32), k)
        new_state = out_states[state, action, k]
        log_prob = jnp.log(out_probs[state, action, k])
        return new_state, (new_state, out_rewards[state, action, k], k, log_prob)

    moved = jax.tree.map(lambda x: jnp.moveaxis(x, -1, 0), (actions, outcomes, draws))
    _, (states, rewards, outcomes, log_probs) = lax.scan(step, start, moved)
    states = jnp.concatenate([start[None], states], axis=0)
    return tuple(jnp.moveaxis(x, 0, -1) for x in (states, rewards, outcomes, log_probs))


def draw_start(key, mdp, shape=()):
    """Start states drawn from ``mdp.start_probs`` (int32, ``shape``); the start state if fixed.

    Inverse CDF: one uniform per draw and a binary search, O(S + n log S) for n draws; a state of
    probability 0 is never drawn (so a one-hot start always gives its state).
    """
    cdf = jnp.cumsum(jnp.asarray(mdp.start_probs))
    u = positive_uniform(key, shape, cdf.dtype)
    return jnp.searchsorted(cdf, u * cdf[-1], side="left").astype(jnp.int32)


def start_log_prob(mdp, start):
    """``log start_probs[start]`` (0 for a fixed start)."""
    return jnp.log(jnp.asarray(mdp.start_probs)[start])


def returns_to_go(mdp, actions, outcomes=None):
    """Return of following ``actions[t:]`` (and ``outcomes[t:]``) from every state.

    Parameters
    ----------
    mdp : TabularMDP (or another :class:`~pgm_rl.worlds.World`)
    actions : int array, shape (T,)
    outcomes : int array, shape (T,), optional
        The outcome index of each step; required for stochastic dynamics, 0 by default.

    Returns
    -------
    float array, shape (T + 1, S): ``G[t, s]`` is the return of ``actions[t:]`` (with the given
    outcome indices) taken from state ``s`` at time t, with ``G[T] = 0``.
    """
    outcomes = _outcomes_or_zeros(mdp, actions, outcomes, "returns_to_go")
    return _to_go(mdp, actions, outcomes, lambda probs, rewards: rewards)


def log_values_to_go(mdp, actions, outcomes, beta):
    """Log weight of the fixed future ``(actions[t:], outcomes[t:])`` from every state.

    ``L[t, s] = sum_{u >= t} (log outcome_probs[s_u, a_u, k_u] + beta * outcome_rewards[s_u,
    a_u, k_u])`` along the path that starts in ``s`` at time t and follows the given action and
    outcome indices, with ``L[T] = 0``; ``-inf`` where that path takes an impossible outcome.
    ``beta`` times :func:`returns_to_go` plus the log prior of the outcomes (0 on deterministic
    dynamics; on stochastic ones it changes with the state the path starts from).

    Parameters
    ----------
    mdp : TabularMDP (or another :class:`~pgm_rl.worlds.World`)
    actions, outcomes : int arrays, shape (T,)
    beta : float

    Returns
    -------
    float array, shape (T + 1, S)
    """
    return _to_go(mdp, actions, outcomes, lambda probs, rewards: jnp.log(probs) + beta * rewards)


def _to_go(mdp, actions, outcomes, value):
    """``V[t, s] = value(p, r) + V[t + 1, s']`` along the fixed future, backwards; (T + 1, S).

    ``p``, ``r`` and ``s'`` are the prior probability, reward and state entered of step t's
    outcome from every state ``s`` (arrays (S,)).
    """
    out_states = jnp.asarray(mdp.outcome_states)
    out_probs = jnp.asarray(mdp.outcome_probs)
    out_rewards = jnp.asarray(mdp.outcome_rewards)

    def step(v_next, inputs):
        action, k = inputs
        v = value(out_probs[:, action, k], out_rewards[:, action, k])
        v = v + v_next[out_states[:, action, k]]
        return v, v

    v_end = jnp.zeros(out_states.shape[0], out_rewards.dtype)
    _, values = lax.scan(step, v_end, (jnp.asarray(actions), jnp.asarray(outcomes)), reverse=True)
    return jnp.concatenate([values, v_end[None]])
