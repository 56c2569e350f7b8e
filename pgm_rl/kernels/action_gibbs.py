"""Gibbs over the steps of a trajectory: one step is a sweep t = 0..T-1 redrawing the pair
``(a_t, k_t)`` (action, outcome index) given everything else, after the start.

Given everything else (the past fixes ``s_t``; the future actions and outcome indices are
kept), ``p(a_t = a, k_t = k | rest) ∝ p(k | s_t, a) exp(beta r(s_t, a, k)) exp(L_{t+1}(s'))``
with ``s' = outcome_states[s_t, a, k]`` and ``L`` from :func:`pgm_rl.dynamics.log_values_to_go`
(beta times the return of the kept future from each state plus the log prior of its outcome
indices, which changes with the state; on deterministic dynamics, K = 1, the return to go
alone). ``L`` is computed once per sweep (one backward pass over all states): a forward sweep
only changes steps before t + 1, so ``L_{t+1}`` stays valid all sweep and all A * K candidates
are scored at once: a sweep costs O(T (S + A K)) rather than the O(T^2 A K) of re-rolling every
candidate suffix. The sweep first redraws ``s_0`` from
``p(s_0 | rest) ∝ start_probs[s_0] exp(L_0(s_0))`` (the start itself on a single start state).

``proposal="gibbs"`` draws each from its full conditional (accept probability 1);
``proposal="mh"`` proposes uniformly over the A * K pairs (and the possible start states) and
accepts with the MH ratio of the conditionals (the prior and proposal are uniform).
"""

import jax.numpy as jnp
import numpy as np
from jax import lax, random

from pgm_rl._sampling import inverse_cdf_sample, positive_uniform
from pgm_rl.dynamics import log_values_to_go
from pgm_rl.kernels.base import MHInfo, RegenerationState, TrajectoryKernel, init

__all__ = ["PROPOSALS", "ActionGibbs", "build_kernel", "init"]

PROPOSALS = ("gibbs", "mh")


def build_kernel(world, horizon, proposal="gibbs"):
    """One systematic-scan sweep over the start and the T steps, ``step(key, state, beta)``.

    ``state`` is a :class:`~pgm_rl.kernels.base.RegenerationState`; ``proposal`` is "gibbs"
    (exact full conditionals) or "mh" (uniform proposal, MH accept). The info's ``accept_prob``
    is the mean over the sweep's T updates (and the start's, where the start is random: more
    than one possible start state); ``is_accepted`` says whether anything changed.
    """
    proposal = check_proposal(proposal)
    out_states = jnp.asarray(world.outcome_states)
    log_probs = jnp.log(jnp.asarray(world.outcome_probs))
    out_rewards = jnp.asarray(world.outcome_rewards)
    n_pairs = out_states.shape[1] * out_states.shape[2]  # A * K
    n_outcomes = out_states.shape[2]
    # The start's candidates: the states of positive start probability (one for a single start).
    start_probs = np.asarray(world.start_probs)
    starts = jnp.asarray(np.flatnonzero(start_probs > 0), jnp.int32)
    log_start = jnp.log(jnp.asarray(start_probs[start_probs > 0]))
    n_starts = int(starts.shape[0])
    dtype = out_rewards.dtype

    def update(u, candidate, log_v, current, logits):
        """Gibbs: inverse CDF at ``u``; MH: accept ``candidate`` if ``log_v`` < the log ratio."""
        if proposal == "gibbs":
            chosen = inverse_cdf_sample(u, jnp.exp(logits - jnp.max(logits)))
            return chosen.astype(jnp.int32), jnp.ones((), dtype)
        log_ratio = logits[candidate] - logits[current]
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        return jnp.where(log_v < log_ratio, candidate, current), jnp.exp(
            jnp.minimum(log_ratio, 0.0)
        )

    def draws(key, shape, n_candidates):
        """One uniform (Gibbs) or a candidate and a log uniform (MH) per update, drawn at once."""
        if proposal == "gibbs":
            zeros = jnp.zeros(shape, jnp.int32)
            return positive_uniform(key, shape, dtype), zeros, zeros.astype(dtype)
        candidate_key, v_key = random.split(key)
        candidate = random.randint(candidate_key, shape, 0, n_candidates, jnp.int32)
        return jnp.ones(shape, dtype), candidate, jnp.log(random.uniform(v_key, shape, dtype))

    def step(key, state, beta):
        start_key, sweep_key = random.split(key)
        values = log_values_to_go(world, state.actions, state.outcomes, beta)  # (T + 1, S)
        u, candidate, log_v = draws(start_key, (), n_starts)
        current = jnp.argmax(starts == state.start)  # the start's index among the candidates
        index, start_accept = update(u, candidate, log_v, current, log_start + values[0, starts])
        start = starts[index]

        def visit(carry, inputs):
            s, ret = carry
            u, candidate, log_v, action, k, l_next = inputs
            logits = log_probs[s] + beta * out_rewards[s] + l_next[out_states[s]]  # (A, K)
            pair, accept_prob = update(
                u, candidate, log_v, action * n_outcomes + k, logits.reshape(-1)
            )
            action, k = pair // n_outcomes, pair % n_outcomes
            return (out_states[s, action, k], ret + out_rewards[s, action, k]), (
                action,
                k,
                accept_prob,
            )

        inputs = (*draws(sweep_key, (horizon,), n_pairs), state.actions, state.outcomes, values[1:])
        init_carry = (start, jnp.zeros((), dtype))
        (_, ret), (actions, outcomes, accept_probs) = lax.scan(visit, init_carry, inputs)
        changed = (
            jnp.any(actions != state.actions)
            | jnp.any(outcomes != state.outcomes)
            | (start != state.start)
        )
        # the start's update counts where it is a choice (more than one possible start)
        accept_prob = (jnp.sum(accept_probs) + (n_starts > 1) * start_accept) / (
            horizon + (n_starts > 1)
        )
        new_state = RegenerationState(actions, ret, outcomes, start)
        return new_state, MHInfo(accept_prob, changed)

    return step


def check_proposal(proposal):
    """Return ``proposal`` if it is one of :data:`PROPOSALS`, else raise ``ValueError``."""
    if not isinstance(proposal, str) or proposal not in PROPOSALS:
        raise ValueError(
            f"proposal must be one of {', '.join(map(repr, PROPOSALS))}; got {proposal!r}"
        )
    return proposal


class ActionGibbs(TrajectoryKernel):
    """Systematic-scan Gibbs over the actions of :func:`pgm_rl.trajectory_model`.

    One MCMC step is one sweep t = 0..T-1; each a_t is redrawn from its exact full
    conditional (``proposal="gibbs"``) or updated by MH-within-Gibbs with a uniform
    proposal (``proposal="mh"``). All candidates are scored at once, vectorised.

    Parameters
    ----------
    model : callable
        A model built on :func:`pgm_rl.trajectory_model`.
    proposal : {"gibbs", "mh"}, default "gibbs"

    Examples
    --------
    >>> mcmc = MCMC(ActionGibbs(pgm_rl.trajectory_model), num_warmup=200, num_samples=1000)
    >>> mcmc.run(jax.random.key(0), env, horizon, beta)
    """

    def __init__(self, model, proposal="gibbs"):
        super().__init__(model)
        self._proposal = check_proposal(proposal)

    @property
    def proposal(self):
        """``"gibbs"`` or ``"mh"``."""
        return self._proposal

    def build_step(self, world, horizon):
        return build_kernel(world, horizon, self._proposal)
