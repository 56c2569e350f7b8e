"""Gibbs over actions: one step is a sweep t = 0..T-1 redrawing a_t given all other actions.

Under a uniform action prior, p(a_t = a | a_{-t}) ∝ exp(beta * R(a_{0:t}, a, a_{t+1:T})), and
only the return from step t on depends on a. With ``G_t(s)`` the return of following the
current actions ``a_t..a_{T-1}`` from state s at time t (one backward pass over all states,
``G_T = 0``, ``G_t(s) = r(s, a_t) + G_{t+1}(s'(s, a_t))``), every candidate's return-to-go is
``r(s_t, a) + G_{t+1}(s'(s_t, a))``. A forward sweep only changes actions before t + 1, so
``G_{t+1}`` stays valid all sweep: all A candidates are scored at once in O(A), and a sweep
costs O(T (S + A)) rather than the O(T^2 A) of re-rolling every candidate suffix.

``proposal="gibbs"`` draws a_t from that full conditional (accept probability 1);
``proposal="mh"`` proposes a_t uniformly and accepts with the MH ratio
``beta * (return-to-go(a') - return-to-go(a_t))`` (the prior and proposal are uniform).
"""

import jax.numpy as jnp
from jax import lax, random

from pgm_rl._sampling import inverse_cdf_sample, positive_uniform
from pgm_rl.dynamics import log_values_to_go, returns_to_go
from pgm_rl.kernels.base import MHInfo, RegenerationState, TrajectoryKernel, mh_accept

__all__ = ["PROPOSALS", "ActionGibbs", "build_kernel"]

PROPOSALS = ("gibbs", "mh")


def build_kernel(mdp, horizon, proposal="gibbs"):
    """One systematic-scan sweep over the T actions, ``step(key, state, beta)``.

    ``state`` is a :class:`~pgm_rl.kernels.base.RegenerationState`; ``proposal`` is "gibbs"
    (exact full conditionals) or "mh" (uniform proposal, MH accept). The info's ``accept_prob``
    is the mean over the sweep's T updates (1 for exact Gibbs); ``is_accepted`` says whether
    any action changed.
    """
    proposal = check_proposal(proposal)
    if not getattr(mdp, "is_deterministic", True):
        return _build_stochastic(mdp, horizon, proposal)
    next_state = jnp.asarray(mdp.next_state)
    reward = jnp.asarray(mdp.reward)
    n_actions = mdp.n_actions

    def update(noise, action, logits):
        if proposal == "gibbs":  # noise: a Uniform(0, 1] draw for inverse-CDF sampling
            chosen = inverse_cdf_sample(noise, jnp.exp(logits - jnp.max(logits)))
            return chosen.astype(action.dtype), jnp.ones((), logits.dtype)
        proposal_key, accept_key = random.split(noise)  # noise: a PRNG key
        candidate = random.randint(proposal_key, (), 0, n_actions, action.dtype)
        chosen, info = mh_accept(accept_key, logits[candidate] - logits[action], candidate, action)
        return chosen, info.accept_prob

    def step(key, state, beta):
        g = returns_to_go(mdp, state.actions)  # (T + 1, S)

        def visit(carry, inputs):
            s, ret = carry
            noise, action, g_next = inputs
            logits = beta * (reward[s] + g_next[next_state[s]])  # (A,): all candidates
            action, accept_prob = update(noise, action, logits)
            return (next_state[s, action], ret + reward[s, action]), (action, accept_prob)

        if proposal == "gibbs":
            noise = positive_uniform(key, (horizon,), reward.dtype)
        else:
            noise = random.split(key, horizon)
        start = (jnp.asarray(mdp.start_state, next_state.dtype), jnp.zeros((), reward.dtype))
        (_, ret), (actions, accept_probs) = lax.scan(visit, start, (noise, state.actions, g[1:]))
        changed = jnp.any(actions != state.actions)
        return RegenerationState(actions, ret), MHInfo(jnp.mean(accept_probs), changed)

    return step


def _build_stochastic(mdp, horizon, proposal):
    """The sweep on a stochastic MDP: Gibbs on the pair ``(a_t, k_t)`` (action, outcome index).

    Given everything else (the past fixes ``s_t``; the future action and outcome indices are
    kept), ``p(a_t = a, k_t = k | rest) ∝ p(k | s_t, a) exp(beta r(s_t, a, k)) exp(L_{t+1}(s'))``
    with ``s' = outcome_states[s_t, a, k]`` and ``L`` from :func:`pgm_rl.dynamics.log_values_to_go`
    (beta times the return of the kept future from each state plus the log prior of its outcome
    indices, which changes with the state). ``L`` is computed once per sweep: a forward sweep
    only changes steps before t + 1. With a random start the sweep first redraws ``s_0`` from
    ``p(s_0 | rest) ∝ start_probs[s_0] exp(L_0(s_0))``. ``proposal="mh"``: a uniform proposal over
    the A * K pairs (and the S start states), MH accept.
    """
    out_states = jnp.asarray(mdp.outcome_states)
    out_probs = jnp.asarray(mdp.outcome_probs)
    out_rewards = jnp.asarray(mdp.outcome_rewards)
    n_outcomes = out_states.shape[2]
    random_start = mdp.has_random_start
    log_start = jnp.log(jnp.asarray(mdp.start_probs)) if random_start else None

    def update(key, current, logits):
        if proposal == "gibbs":
            u = positive_uniform(key, (), logits.dtype)
            chosen = inverse_cdf_sample(u, jnp.exp(logits - jnp.max(logits)))
            return chosen.astype(jnp.int32), jnp.ones((), logits.dtype)
        proposal_key, accept_key = random.split(key)
        candidate = random.randint(proposal_key, (), 0, logits.shape[0], jnp.int32)
        chosen, info = mh_accept(
            accept_key, logits[candidate] - logits[current], candidate, current
        )
        return chosen, info.accept_prob

    def step(key, state, beta):
        start_key, sweep_key = random.split(key)
        outcomes = jnp.zeros(horizon, jnp.int32) if state.outcomes is None else state.outcomes
        values = log_values_to_go(mdp, state.actions, outcomes, beta)  # (T + 1, S)
        start = mdp.start_state if state.start is None else state.start
        start_accept = jnp.ones((), values.dtype)
        if random_start:
            start, start_accept = update(start_key, state.start, log_start + values[0])

        def visit(carry, inputs):
            s, ret = carry
            noise_key, action, k, l_next = inputs
            logits = jnp.log(out_probs[s]) + beta * out_rewards[s] + l_next[out_states[s]]
            pair, accept_prob = update(noise_key, action * n_outcomes + k, logits.reshape(-1))
            action, k = pair // n_outcomes, pair % n_outcomes
            new_s = out_states[s, action, k]
            return (new_s, ret + out_rewards[s, action, k]), (action, k, accept_prob)

        init = (jnp.asarray(start, jnp.int32), jnp.zeros((), out_rewards.dtype))
        inputs = (random.split(sweep_key, horizon), state.actions, outcomes, values[1:])
        (_, ret), (actions, new_outcomes, accept_probs) = lax.scan(visit, init, inputs)
        changed = jnp.any(actions != state.actions) | jnp.any(new_outcomes != outcomes)
        if random_start:
            changed = changed | (start != state.start)
            accept_probs = jnp.concatenate([accept_probs, start_accept[None]])
        new_state = RegenerationState(
            actions,
            ret,
            None if state.outcomes is None else new_outcomes,
            start if random_start else None,
        )
        return new_state, MHInfo(jnp.mean(accept_probs), changed)

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

    def build_step(self, mdp, horizon):
        return build_kernel(mdp, horizon, self._proposal)
