"""The one definition of moving through a tabular MDP."""

import jax
import jax.numpy as jnp
from jax import lax

from pgm_rl._checks import check_index_array


def rollout(mdp, actions, start_state=None):
    """Follow ``actions`` from the start state.

    Parameters
    ----------
    mdp : TabularMDP
    actions : int array, shape (..., T)
    start_state : int array, shape (...), optional
        Defaults to ``mdp.start_state``.

    Returns
    -------
    states : int array, shape (..., T + 1), including the start state
    rewards : float array, shape (..., T); ``rewards[..., t]`` is the reward of action t

    Raises
    ------
    ValueError
        For an MDP with stochastic dynamics (actions alone do not fix the states), or with a
        random start when ``start_state`` is not given.
    """
    if getattr(mdp, "has_random_dynamics", False):
        raise ValueError(
            "rollout follows deterministic dynamics; this MDP's are stochastic (actions alone do "
            "not fix the states): draw trajectories with pgm_rl.solve(...).sample or "
            "pgm_rl.soft_bellman(...).sample"
        )
    if start_state is None and getattr(mdp, "has_random_start", False):
        raise ValueError("this MDP has a random start: pass start_state to rollout")
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
