"""Stochastic MDPs for the kernel tests and how to read exact draws as kernel states."""

import jax
import jax.numpy as jnp
import numpy as np

import pgm_rl
from pgm_rl.kernels.base import init_state

# A 3x3 slippery grid (two terminal cells) and one with a random start too (same dynamics).
_REWARDS = np.array([[-0.5, 0.3, 1.0], [0.2, -2.0, 0.4], [0.0, 0.6, -1.0]])
SLIPPERY = pgm_rl.GridWorld(_REWARDS, (0, 0), slip=0.2, terminal=[(0, 2), (1, 1)])
RANDOM_START = pgm_rl.TabularMDP.from_outcomes(
    SLIPPERY.outcome_states,
    SLIPPERY.outcome_probs,
    SLIPPERY.outcome_rewards,
    np.array([0.5, 0.0, 0.0, 0.3, 0.0, 0.0, 0.2, 0.0, 0.0]),
)


def outcome_indices(env, draws):
    """The outcome index of each step of exact draws (dict with actions, states, rewards).

    An outcome is identified by its next state and reward (entries equal in both are merged
    when an MDP is built), so the index is the one listed entry matching both.
    """
    actions = np.asarray(draws["actions"])
    states = np.asarray(draws["states"])
    rewards = np.asarray(draws["rewards"])
    s, a = states[:, :-1], actions
    out_states = np.asarray(env.outcome_states)[s, a]  # (n, T, K)
    out_rewards = np.asarray(env.outcome_rewards)[s, a]
    out_probs = np.asarray(env.outcome_probs)[s, a]
    match = (
        (out_states == states[:, 1:, None])
        & np.isclose(out_rewards, rewards[..., None], rtol=0, atol=1e-9)
        & (out_probs > 0)
    )
    assert np.all(match.sum(axis=-1) == 1), "every exact step must match one outcome"
    return np.argmax(match, axis=-1).astype(np.int32)


def states_from_draws(env, draws):
    """Kernel states (:class:`RegenerationState`, batched) at exact draws."""
    outcomes = jnp.asarray(outcome_indices(env, draws))
    start = jnp.asarray(draws["states"][:, 0], jnp.int32)
    actions = jnp.asarray(draws["actions"], jnp.int32)
    return jax.vmap(lambda a, k, s0: init_state(env, a, k, s0))(actions, outcomes, start)


def state_paths(env, kernel_states):
    """States (n, T + 1) of batched kernel states (the one rollout)."""
    return np.asarray(
        pgm_rl.rollout(env, kernel_states.actions, kernel_states.start, kernel_states.outcomes)[0]
    )
