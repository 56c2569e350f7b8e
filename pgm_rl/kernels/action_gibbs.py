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

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax, random

from pgm_rl.dynamics import returns_to_go
from pgm_rl._sampling import inverse_cdf_sample, positive_uniform
from pgm_rl.kernels.base import PureKernelAdapter, mh_accept
from pgm_rl.model import trajectory_problem

PROPOSALS = ("gibbs", "mh")


class ActionGibbsState(NamedTuple):
    """``actions``: (T,) int, the current action sequence."""

    actions: jax.Array


class ActionGibbsInfo(NamedTuple):
    """``accept_prob``: mean over the sweep's T updates (1 for exact Gibbs), scalar."""

    accept_prob: jax.Array


def init(actions):
    """Start at ``actions`` (T,)."""
    return ActionGibbsState(jnp.asarray(actions))


def build_kernel(mdp, beta, proposal="gibbs"):
    """One systematic-scan sweep over the T actions; ``proposal`` is "gibbs" or "mh"."""
    proposal = check_proposal(proposal)
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

    def step(key, state):
        g = returns_to_go(mdp, state.actions)  # (T + 1, S)

        def visit(s, inputs):
            noise, action, g_next = inputs
            logits = beta * (reward[s] + g_next[next_state[s]])  # (A,): all candidates
            action, accept_prob = update(noise, action, logits)
            return next_state[s, action], (action, accept_prob)

        horizon = state.actions.shape[0]
        if proposal == "gibbs":
            noise = positive_uniform(key, (horizon,), reward.dtype)
        else:
            noise = random.split(key, horizon)
        s0 = jnp.asarray(mdp.start_state, next_state.dtype)
        _, (actions, accept_probs) = lax.scan(visit, s0, (noise, state.actions, g[1:]))
        return ActionGibbsState(actions.astype(state.actions.dtype)), ActionGibbsInfo(
            jnp.mean(accept_probs)
        )

    return step


def check_proposal(proposal):
    """Return ``proposal`` if it is one of :data:`PROPOSALS`, else raise ``ValueError``."""
    if not isinstance(proposal, str) or proposal not in PROPOSALS:
        raise ValueError(
            f"proposal must be one of {', '.join(map(repr, PROPOSALS))}; got {proposal!r}"
        )
    return proposal


class ActionGibbs(PureKernelAdapter):
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

    def build(self, model_args, model_kwargs):
        mdp, horizon, beta = trajectory_problem(self._model, model_args, model_kwargs)

        def init_fn(key, init_params):
            if init_params is None:
                return init(random.randint(key, (horizon,), 0, mdp.n_actions))
            return init(init_params["actions"])

        step = build_kernel(mdp, beta, self._proposal)
        return init_fn, step, lambda state: {"actions": state.actions}
