"""The one definition of moving through a tabular MDP."""

import jax.numpy as jnp
from jax import lax


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
    """
    next_state = jnp.asarray(mdp.next_state)
    reward = jnp.asarray(mdp.reward)
    actions = jnp.asarray(actions)
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
