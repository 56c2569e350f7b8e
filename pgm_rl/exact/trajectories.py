"""What an exact trajectory distribution offers: draws, probabilities and reach probabilities.

:class:`TrajectoryDistribution` is shared by :class:`~pgm_rl.exact.ExactPosterior` (start and
outcomes from the posterior, given its backward messages) and
:class:`~pgm_rl.exact.PolicyEvaluation` (start and outcomes from the world itself). A trajectory
is a start, T actions from the (T, S, A) policy and T outcomes among the (S, A, K) outcomes of the
world; a deterministic world is K = 1 with one start and needs no code of its own.
"""

import math
from functools import cached_property, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax, random

from pgm_rl._checks import (
    check_fits_in_memory,
    check_index_array,
    check_key,
    check_positive_int,
    itemsize,
)
from pgm_rl._sampling import inverse_cdf_sample, positive_uniform
from pgm_rl.dynamics import rollout
from pgm_rl.exact.checks import check_states, state_mask
from pgm_rl.messages import forward, outcome_log_posterior, outcome_posterior, sparse_dynamics
from pgm_rl.worlds import describe_randomness

__all__ = [
    "TrajectoryDistribution",
    "draw_step",
    "run_forward",
    "start_draws",
    "step_uniforms",
]


class TrajectoryDistribution:
    """Methods shared by the exact results (a mixin of frozen dataclasses with ``mdp``,
    ``horizon``, ``beta`` and ``log_policy`` (T, S, A)).

    Subclasses say where trajectories start (:meth:`start_distribution`) and, for a posterior,
    the backward messages that bend the outcomes (:meth:`outcome_messages`).
    """

    def start_distribution(self):
        """The distribution of s_0, (S,)."""
        return jnp.asarray(self.mdp.start_probs, self.log_policy.dtype)

    def outcome_messages(self):
        """``(v_hi, v_lo)`` (T + 1, S) each, when outcomes follow the posterior; else None."""
        return None

    @cached_property
    def policy(self):
        """Action probabilities pi_t(a | s), shape (T, S, A)."""
        return jnp.exp(self.log_policy)

    def sample(self, key, num_samples):
        """Draw exact iid trajectories.

        Returns a dict with ``"actions"`` (n, T) int, ``"states"`` (n, T + 1) int and
        ``"rewards"`` (n, T) (the reward of each outcome drawn). With random dynamics or start,
        the start and the next states are drawn too (from the posterior, for a posterior).
        """
        check_key(key)
        num_samples = check_positive_int(num_samples, "num_samples")
        check_fits_in_memory(
            6 * num_samples * (self.horizon + 1) * itemsize(),
            "num_samples",
            num_samples,
            f"{num_samples} draws of horizon {self.horizon}",
            "draw fewer samples per call",
        )
        dyn, posterior, v_hi, v_lo = _process(self)
        actions, states, rewards = _sample(
            key,
            jnp.asarray(self.start_distribution(), dyn.r_hi.dtype),
            self.log_policy,
            *dyn.arrays,
            v_hi,
            v_lo,
            num_samples=num_samples,
            posterior=posterior,
        )
        return {"actions": actions, "states": states, "rewards": rewards}

    def log_prob(self, actions, states=None):
        """Joint log-probability of trajectories, ``actions`` (..., T) -> (...).

        ``states`` (..., T + 1) is required when the dynamics or the start are random (the
        joint probability of start, actions and next states). For a deterministic MDP it may be
        omitted (the log-probability of the action sequence); if given, a ``states`` that is not
        the rollout of ``actions`` has probability 0.
        """
        actions, states = _check_path_arrays(self, actions, states)
        dyn, posterior, v_hi, v_lo = _process(self)
        log_mu0 = jnp.log(self.start_distribution())
        return _log_prob(
            log_mu0,
            self.log_policy,
            dyn.ns,
            dyn.logp,
            dyn.r_hi,
            dyn.r_lo,
            v_hi,
            v_lo,
            actions,
            states,
            posterior=posterior,
        )

    def path_probability(self, states):
        """Probability of the state path ``states``, shape (..., T + 1) -> (...).

        Sums over every action sequence (and outcome) that makes the path (e.g. "up" against
        the top wall and "stay" both keep the agent in place), so it can be far larger than the
        probability of any one action sequence (:meth:`log_prob`). 0 for a path that starts
        where no trajectory starts or makes an impossible move.
        """
        states = check_index_array(states, "states", "state indices")
        if states.ndim == 0 or states.shape[-1] != self.horizon + 1:
            raise ValueError(
                f"states must have shape (..., {self.horizon + 1}), got {states.shape}"
            )
        check_states(states, self.mdp.n_states)
        dyn, posterior, v_hi, v_lo = _process(self)
        log_mu0 = jnp.log(self.start_distribution())
        log_p = _path_log_prob(
            log_mu0,
            self.log_policy,
            dyn.ns,
            dyn.logp,
            dyn.r_hi,
            dyn.r_lo,
            v_hi,
            v_lo,
            states,
            posterior=posterior,
        )
        return jnp.exp(log_p)

    def reach_probability(self, cells):
        """Probability of being in any of ``cells`` at least once in steps 0..T.

        Parameters
        ----------
        cells : int, sequence of int, (row, col), sequence of (row, col), or bool array (S,)
            States (or grid cells, on an MDP with a grid: a ``GridWorld`` or a Gymnasium grid
            map). A start inside ``cells`` counts as reaching them.

        Returns
        -------
        float
        """
        mask = state_mask(self.mdp, cells)
        *_, hits = run_forward(self, self.start_distribution(), absorb=mask)
        return float(math.fsum(np.asarray(hits, np.float64).tolist()))


def _process(result):
    """``(dynamics, posterior, v_hi, v_lo)`` of a result: how its trajectories move."""
    dyn = sparse_dynamics(result.mdp, result.beta)
    messages = result.outcome_messages()
    posterior = messages is not None
    if posterior:
        v_hi, v_lo = messages
    else:  # unused by the jitted functions; the right leading length for their scans
        v_hi = v_lo = jnp.zeros((result.horizon + 1, 1), dyn.r_hi.dtype)
    return dyn, posterior, v_hi, v_lo


def run_forward(result, mu0, absorb=None):
    """:func:`pgm_rl.messages.forward` of a result from ``mu0`` (S,): state marginals
    (T + 1, S), action marginals (T, A), step returns (T,), step KL (T,), hits (T + 1,)."""
    dyn, posterior, v_hi, v_lo = _process(result)
    mu0 = jnp.asarray(mu0, dyn.r_hi.dtype)
    if absorb is None:
        absorb = jnp.zeros(mu0.shape, bool)
    return forward(mu0, result.log_policy, *dyn.arrays, v_hi, v_lo, absorb, posterior=posterior)


def _check_path_arrays(result, actions, states):
    """Checked ``(actions (..., T), states (..., T + 1))``; states from a rollout if omitted
    (only where nothing is random: actions alone fix the trajectory)."""
    horizon, mdp = result.horizon, result.mdp
    actions = check_index_array(actions, "actions", "action ids")
    if actions.ndim == 0 or actions.shape[-1] != horizon:
        raise ValueError(f"actions must have shape (..., {horizon}), got {actions.shape}")
    if states is None:
        if describe_randomness(mdp):
            raise ValueError(
                "states is required: this MDP's dynamics or start are random, so the actions "
                "alone do not fix the trajectory; pass states (..., T + 1)"
            )
        states, _ = rollout(mdp, actions)  # checks the range of actions
        return actions, states
    states = check_index_array(states, "states", "state indices")
    if states.shape != (*actions.shape[:-1], horizon + 1):
        raise ValueError(
            f"states must have shape {(*actions.shape[:-1], horizon + 1)} to match actions "
            f"{actions.shape}, got {states.shape}"
        )
    check_states(states, mdp.n_states)
    if actions.size and (int(actions.min()) < 0 or int(actions.max()) >= mdp.n_actions):
        raise ValueError(f"actions must lie in [0, {mdp.n_actions}), the action ids")
    return actions, states


# ----------------------------------------------------------------------------- jitted kernels


def start_draws(key, mu0, num_samples, dtype):
    """The start states of ``num_samples`` draws from ``mu0`` (S,), int32 (num_samples,): their
    uniforms from their own key (``fold_in``), so that the stream of the actions is the same
    whatever the start distribution."""
    cdf = jnp.cumsum(mu0)
    u0 = positive_uniform(random.fold_in(key, num_samples), (num_samples,), dtype)
    starts = jnp.searchsorted(cdf, u0 * cdf[-1], side="right")
    return jnp.minimum(starts, mu0.shape[0] - 1).astype(jnp.int32)


def step_uniforms(key, num_samples, horizon, one_outcome, dtype):
    """The uniforms of ``num_samples`` draws: (n, T) with K = 1, else (n, T, 2) (action,
    outcome); draw i's from ``random.split(key, n)[i]``."""
    shape = (horizon,) if one_outcome else (horizon, 2)
    return jax.vmap(lambda k: positive_uniform(k, shape, dtype))(random.split(key, num_samples))


def draw_step(state, u, log_pi, ns, logp, r_hi, r_lo, reward, v_hi_next, v_lo_next, posterior):
    """One step of one draw: the action from ``log_pi`` (A,), log pi_t(. | state), then the
    outcome from q_t (posterior, given V_{t+1} (S,)) or the true probabilities.

    ``u``: the step's uniform (K = 1) or its pair (action, outcome). Returns ``(next state,
    action, reward)``.
    """
    one_outcome = ns.shape[2] == 1
    action = inverse_cdf_sample(u if one_outcome else u[0], jnp.exp(log_pi))
    targets = ns[state, action]
    if one_outcome:
        return targets[0], action, reward[state, action, 0]
    if posterior:
        weights = outcome_posterior(
            logp[state, action],
            r_hi[state, action],
            r_lo[state, action],
            v_hi_next[targets],
            v_lo_next[targets],
        )
    else:
        weights = jnp.where(jnp.isfinite(logp[state, action]), jnp.exp(logp[state, action]), 0.0)
    k = inverse_cdf_sample(u[1], weights)
    return targets[k], action, reward[state, action, k]


@partial(jax.jit, static_argnames=("num_samples", "posterior"))
def _sample(key, mu0, log_policy, ns, logp, r_hi, r_lo, reward, v_hi, v_lo, num_samples, posterior):
    """``num_samples`` iid trajectories: actions (n, T), states (n, T + 1), rewards (n, T).

    The start from ``mu0`` (S,) (:func:`start_draws`), each action from pi_t(. | s_t), each
    outcome from q_t (posterior) or the true probabilities (:func:`draw_step`); one uniform per
    draw (inverse CDF, :func:`step_uniforms`), never a zero-probability one. With K = 1 there is
    no outcome to draw, hence no uniform for it.
    """
    horizon = log_policy.shape[0]
    dtype = log_policy.dtype
    starts = start_draws(key, mu0, num_samples, dtype)
    uniforms = step_uniforms(key, num_samples, horizon, ns.shape[2] == 1, dtype)

    def one(uniforms, s0):
        def step(state, inputs):
            u, log_pi, v_hi_next, v_lo_next = inputs
            new_state, action, gain = draw_step(
                state,
                u,
                log_pi[state],
                ns,
                logp,
                r_hi,
                r_lo,
                reward,
                v_hi_next,
                v_lo_next,
                posterior,
            )
            return new_state, (action, new_state, gain)

        _, (actions, states, rewards) = lax.scan(
            step, s0, (uniforms, log_policy, v_hi[1:], v_lo[1:])
        )
        return actions.astype(jnp.int32), jnp.concatenate([s0[None], states]), rewards

    return jax.vmap(one)(uniforms, starts)


@partial(jax.jit, static_argnames=("posterior",))
def _log_prob(log_mu0, log_policy, ns, logp, r_hi, r_lo, v_hi, v_lo, actions, states, posterior):
    """Joint log-probability of (actions (..., T), states (..., T + 1)) -> (...)."""
    time = jnp.arange(actions.shape[-1])
    here, there = states[..., :-1], states[..., 1:]
    log_pi = log_policy[time, here, actions]
    targets = ns[here, actions]  # (..., T, K)
    if posterior:
        after = (time + 1)[:, None]
        log_q = outcome_log_posterior(
            logp[here, actions],
            r_hi[here, actions],
            r_lo[here, actions],
            v_hi[after, targets],
            v_lo[after, targets],
        )
    else:
        log_q = logp[here, actions]
    match = jnp.logical_and(targets == there[..., None], jnp.isfinite(log_q))
    log_move = jax.nn.logsumexp(jnp.where(match, log_q, -jnp.inf), axis=-1)
    return log_mu0[states[..., 0]] + jnp.sum(log_pi + log_move, axis=-1)


@partial(jax.jit, static_argnames=("posterior",))
def _path_log_prob(log_mu0, log_policy, ns, logp, r_hi, r_lo, v_hi, v_lo, states, posterior):
    """log P(state path) summing over actions and outcomes: states (..., T + 1) -> (...)."""
    n_actions = log_policy.shape[2]
    here, there = states[..., :-1], states[..., 1:]
    time = jnp.arange(here.shape[-1])
    all_actions = jnp.arange(n_actions)
    here_a = here[..., None]  # (..., T, 1) against actions (A,)
    targets = ns[here_a, all_actions]  # (..., T, A, K)
    if posterior:
        after = (time + 1)[:, None, None]
        log_q = outcome_log_posterior(
            logp[here_a, all_actions],
            r_hi[here_a, all_actions],
            r_lo[here_a, all_actions],
            v_hi[after, targets],
            v_lo[after, targets],
        )
    else:
        log_q = logp[here_a, all_actions]
    log_pi = log_policy[time[:, None], here_a, all_actions]  # (..., T, A)
    match = jnp.logical_and(targets == there[..., None, None], jnp.isfinite(log_q))
    terms = jnp.where(match, log_pi[..., None] + log_q, -jnp.inf)
    log_step = jax.nn.logsumexp(terms, axis=(-2, -1))
    return log_mu0[states[..., 0]] + jnp.sum(log_step, axis=-1)
