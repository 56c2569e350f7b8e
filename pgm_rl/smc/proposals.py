"""The proposal's side of an SMC step: drawing the actions, and how far the proposal is from the
step's locally optimal one (``SMCResult.proposal_ess``; see :func:`pgm_rl.smc.run_smc`).

The proposal check and its soft value (the twist) are shared with particle Gibbs:
:func:`pgm_rl.particles.check_proposal`, :func:`pgm_rl.particles.proposal_values`.
"""

import jax.numpy as jnp
from jax import random
from jax.scipy.special import logsumexp

__all__ = ["inflation", "proposal_mismatch", "propose"]


def proposal_mismatch(log_q, world, beta, values):
    """``log(1 + chi2(pi_t(. | s) || q_t(. | s)))``, shape (T, S): how far the proposal ``log_q``
    (T, S, A) is from the step's locally optimal proposal.

    ``pi_t(a | s)`` is proportional to ``prior(a) E_{s'}[exp(beta r(s, a, s') + psi_{t+1}(s'))]``
    with ``psi = values`` (T + 1, S), the twist: the distribution of the action that makes the
    step's twisted incremental weights constant (``pi = q`` when q is the posterior). Drawing
    the action from q instead multiplies the variance of the incremental weights at state s by
    ``1 + chi2 = sum_a pi(a) ** 2 / q(a)``, so N particles at s are worth about
    ``N / (1 + chi2)``. The expectation over ``s'`` runs over the world's outcome arrays
    (S, A, K).
    """
    ns = jnp.asarray(world.outcome_states)
    probs = jnp.asarray(world.outcome_probs)
    rewards = jnp.asarray(world.outcome_rewards)
    reach = logsumexp(beta * rewards + values[1:][:, ns], b=probs, axis=-1)  # (T, S, A)
    log_pi = reach - logsumexp(reach, axis=-1, keepdims=True)
    return logsumexp(2.0 * log_pi - log_q, axis=-1)


def inflation(mismatch, t, states, log_w):
    """``log sum_i W_i (1 + chi2_t(s_i))``: the factor by which the proposal's step t inflates
    the variance of the normalised weights ``log_w`` (N,) of the particles in ``states`` (N,)
    (see :func:`proposal_mismatch`); 0 for bootstrap proposals (``mismatch=None``)."""
    if mismatch is None:
        return jnp.zeros((), log_w.dtype)
    return logsumexp(log_w + mismatch[t][states])


def propose(key, states, t, n_actions, log_proposal):
    """Actions (N,) int32 for particles in ``states`` (N,) at step t, and the log importance
    ratio prior / proposal of each (0 for bootstrap proposals, ``log_proposal=None``)."""
    if log_proposal is None:
        actions = random.randint(key, states.shape, 0, n_actions, jnp.int32)
        return actions, jnp.zeros(states.shape)
    log_q = log_proposal[t][states]  # (N, A)
    actions = random.categorical(key, log_q).astype(jnp.int32)
    log_q_taken = jnp.take_along_axis(log_q, actions[:, None], axis=-1)[:, 0]
    return actions, -jnp.log(n_actions) - log_q_taken
