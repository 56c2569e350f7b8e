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

Your own model's terms f (``log_factor``, :mod:`pgm_rl.kernels.base`): the conditional above
is then that of the Markov part only, so each update becomes MH-within-Gibbs. "gibbs" proposes
the pair from that Markov conditional (independent of the current pair) and accepts with
``weight(beta) (f(new) - f(current))``, the Markov parts cancelling; "mh" adds the same term
to its ratio. f is evaluated once per update on the trajectory with the candidate in place:
T + 1 evaluations of O(T) per sweep.
"""

import jax.numpy as jnp
import numpy as np
from jax import lax, random

from pgm_rl._sampling import inverse_cdf_sample, positive_uniform
from pgm_rl.dynamics import log_values_to_go
from pgm_rl.kernels.base import (
    MHInfo,
    RegenerationState,
    TrajectoryKernel,
    factor_at,
    factor_change,
    init,
)

__all__ = ["PROPOSALS", "ActionGibbs", "build_kernel", "init"]

PROPOSALS = ("gibbs", "mh")


def build_kernel(world, horizon, proposal="gibbs", log_factor=None):
    """One systematic-scan sweep over the start and the T steps, ``step(key, state, beta)``.

    ``state`` is a :class:`~pgm_rl.kernels.base.RegenerationState`; ``proposal`` is "gibbs"
    (exact full conditionals) or "mh" (uniform proposal, MH accept); ``log_factor`` the
    model's extra terms f or None (then each update is MH-within-Gibbs, module docstring). The
    info's ``accept_prob`` is the mean over the sweep's T updates (and the start's, where the
    start is random: more than one possible start state); ``is_accepted`` says whether
    anything changed.
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

    def update(u, candidate, log_v, current, logits, log_f_change=None):
        """The index chosen among the candidates and the update's acceptance probability.

        Without f: Gibbs draws by inverse CDF at ``u``; MH accepts ``candidate`` if ``log_v``
        < the log ratio. With f (``log_f_change(index)``: the change of the weighted f if the
        update chose ``index``): Gibbs proposes the inverse-CDF draw, MH the candidate, and
        either is accepted if ``log_v`` < the log ratio, f's change included.
        """
        if proposal == "gibbs":
            drawn = inverse_cdf_sample(u, jnp.exp(logits - jnp.max(logits))).astype(jnp.int32)
            if log_f_change is None:
                return drawn, jnp.ones((), dtype)
            candidate, log_ratio = drawn, log_f_change(drawn)
        else:
            log_ratio = logits[candidate] - logits[current]
            if log_f_change is not None:
                log_ratio = log_ratio + log_f_change(candidate)
        log_ratio = jnp.where(jnp.isnan(log_ratio), -jnp.inf, log_ratio)
        return jnp.where(log_v < log_ratio, candidate, current), jnp.exp(
            jnp.minimum(log_ratio, 0.0)
        )

    def draws(key, shape, n_candidates):
        """Per update: a uniform (Gibbs), a candidate (MH) and a log uniform (MH, and Gibbs
        with f), drawn at once."""
        zeros = jnp.zeros(shape, jnp.int32)
        if proposal == "gibbs":
            log_v = zeros.astype(dtype)
            if log_factor is not None:
                log_v = jnp.log(random.uniform(random.fold_in(key, 1), shape, dtype))
            return positive_uniform(key, shape, dtype), zeros, log_v
        candidate_key, v_key = random.split(key)
        candidate = random.randint(candidate_key, shape, 0, n_candidates, jnp.int32)
        return jnp.ones(shape, dtype), candidate, jnp.log(random.uniform(v_key, shape, dtype))

    def weighted_f(beta, start, actions, outcomes, current):
        """The weighted change of f if the trajectory became ``(start, actions, outcomes)``."""
        return factor_change(
            log_factor, beta, factor_at(log_factor, start, actions, outcomes, dtype), current
        )

    def step(key, state, beta):
        start_key, sweep_key = random.split(key)
        values = log_values_to_go(world, state.actions, state.outcomes, beta)  # (T + 1, S)
        u, candidate, log_v = draws(start_key, (), n_starts)
        current = jnp.argmax(starts == state.start)  # the start's index among the candidates
        start_change = None
        if log_factor is not None:

            def start_change(index):
                return weighted_f(
                    beta, starts[index], state.actions, state.outcomes, state.log_factor
                )

        index, start_accept = update(
            u, candidate, log_v, current, log_start + values[0, starts], start_change
        )
        start = starts[index]
        log_f = state.log_factor
        if log_factor is not None:
            log_f = factor_at(log_factor, start, state.actions, state.outcomes, dtype)

        def visit(carry, inputs):
            s, ret, actions, outcomes, log_f = carry
            u, candidate, log_v, t, l_next = inputs
            action, k = actions[t], outcomes[t]
            logits = log_probs[s] + beta * out_rewards[s] + l_next[out_states[s]]  # (A, K)
            pair_change = None
            if log_factor is not None:

                def pair_change(pair):
                    new_actions = actions.at[t].set(pair // n_outcomes)
                    new_outcomes = outcomes.at[t].set(pair % n_outcomes)
                    return weighted_f(beta, start, new_actions, new_outcomes, log_f)

            pair, accept_prob = update(
                u, candidate, log_v, action * n_outcomes + k, logits.reshape(-1), pair_change
            )
            action, k = pair // n_outcomes, pair % n_outcomes
            actions, outcomes = actions.at[t].set(action), outcomes.at[t].set(k)
            if log_factor is not None:
                log_f = factor_at(log_factor, start, actions, outcomes, dtype)
            entered, reward = out_states[s, action, k], out_rewards[s, action, k]
            return (entered, ret + reward, actions, outcomes, log_f), (accept_prob, entered, reward)

        inputs = (*draws(sweep_key, (horizon,), n_pairs), jnp.arange(horizon), values[1:])
        init_carry = (start, jnp.zeros((), dtype), state.actions, state.outcomes, log_f)
        (_, ret, actions, outcomes, log_f), (accept_probs, entered, rewards) = lax.scan(
            visit, init_carry, inputs
        )
        states = jnp.concatenate([start[None], entered])  # the sweep's rollout, carried
        changed = (
            jnp.any(actions != state.actions)
            | jnp.any(outcomes != state.outcomes)
            | (start != state.start)
        )
        # the start's update counts where it is a choice (more than one possible start)
        accept_prob = (jnp.sum(accept_probs) + (n_starts > 1) * start_accept) / (
            horizon + (n_starts > 1)
        )
        new_state = RegenerationState(actions, ret, outcomes, start, log_f, states, rewards)
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

    def build_step(self, world, horizon, log_factor=None):
        return build_kernel(world, horizon, self._proposal, log_factor)
