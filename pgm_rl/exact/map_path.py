"""The most probable (MAP) trajectory of a deterministic MDP by a max-product backward pass."""

import jax.numpy as jnp
import numpy as np
from jax import lax

from pgm_rl._checks import check_beta, check_horizon, check_no_overflow
from pgm_rl.exact.checks import check_fits
from pgm_rl.worlds import check_env, require_deterministic

__all__ = ["most_probable_path"]


def most_probable_path(env, horizon, beta):
    """The MAP action sequence of the trajectory posterior, by a max-product backward pass.

    With the uniform action prior the posterior is proportional to exp(beta * return), so
    for beta > 0 the MAP trajectory maximises the return: V_T = 0,
    Q_t(s, a) = r(s, a) + V_{t+1}(s'(s, a)), V_t = max_a Q_t, then act greedily on Q from
    the start. Ties go to the lowest action id (at beta = 0 every path is a MAP path).

    Parameters
    ----------
    env : TabularMDP
        Deterministic dynamics and a single start state (others are refused).
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
        If the MDP has random dynamics or start, the (T, S, A) values would not fit in memory,
        or the largest return ``horizon * max |reward|`` overflows the working dtype.
    """
    mdp = require_deterministic(check_env(env), "most_probable_path")
    horizon = check_horizon(horizon)
    check_beta(beta)
    check_no_overflow(mdp.outcome_rewards, horizon)
    check_fits(horizon, mdp.n_states, mdp.n_actions, copies=2)
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
