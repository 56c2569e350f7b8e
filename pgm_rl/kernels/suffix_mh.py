"""Suffix and block regeneration: Metropolis-Hastings that redraws part of the action sequence.

A move picks a window ``[start, stop)`` independently of the current trajectory (a cut
``start`` and ``stop = T`` for a suffix move, or ``stop = start + block_size`` for a block
move), redraws the actions in it from the uniform prior and keeps the others; one MCMC step
is a sweep of moves over the cuts ``start = 0..T-1``. The proposal is
the prior on the window, so the MH log ratio is the likelihood ratio
``beta * (return(new) - return(old))``. For a suffix move only the suffix's rewards change;
for a block move the states after the window shift, so the full return is recomputed.

The pure functions take ``beta`` as an argument, so :mod:`pgm_rl.kernels.replica_exchange`
runs one chain per inverse temperature with the same compiled step.
"""

import numbers

import jax.numpy as jnp
from jax import lax, random

from pgm_rl._sampling import positive_uniform
from pgm_rl.dynamics import draw_start, follow, rollout
from pgm_rl.kernels.base import MHInfo, RegenerationState, TrajectoryKernel, init_state, mh_accept

__all__ = ["SuffixMH", "build_kernel", "regenerate"]


def regenerate(key, state, beta, start, stop, mdp):
    """One MH step that redraws ``state.actions[start:stop]`` from the prior.

    ``start`` and ``stop`` may be traced ints; ``beta`` is the inverse temperature.
    ``state`` is a :class:`~pgm_rl.kernels.base.RegenerationState`.
    Returns ``(RegenerationState, MHInfo)``.
    """
    if not getattr(mdp, "is_deterministic", True):
        return _regenerate_stochastic(key, state, beta, start, stop, mdp)
    proposal_key, accept_key = random.split(key)
    horizon = state.actions.shape[-1]
    fresh = random.randint(proposal_key, (horizon,), 0, mdp.n_actions, jnp.int32)
    time = jnp.arange(horizon)
    window = (time >= start) & (time < stop)
    proposal = init_state(mdp, jnp.where(window, fresh, state.actions))
    return mh_accept(accept_key, beta * (proposal.ret - state.ret), proposal, state)


def _regenerate_stochastic(key, state, beta, start, stop, mdp):
    """:func:`regenerate` on a stochastic MDP: the window's actions AND outcome indices (and the
    start state, when the window holds step 0 and the start is random) are redrawn from the
    prior, in order along the new path.

    The outcome indices kept after the window keep their values, but the states they are read
    from may change, and with them their prior probabilities: the MH log ratio is
    ``beta * (R' - R) + sum_{t >= stop} (log p(k_t | s'_t, a_t) - log p(k_t | s_t, a_t))``
    (zero extra term for a suffix move; ``-inf``, a rejection, where a kept index is impossible
    from the new state).
    """
    proposal_key, accept_key = random.split(key)
    action_key, noise_key, start_key = random.split(proposal_key, 3)
    horizon = state.actions.shape[-1]
    fresh = random.randint(action_key, (horizon,), 0, mdp.n_actions, jnp.int32)
    time = jnp.arange(horizon)
    window = (time >= start) & (time < stop)
    actions = jnp.where(window, fresh, state.actions)
    old_start = mdp.start_state if state.start is None else state.start
    new_start = old_start
    if state.start is not None:
        redraw = (start <= 0) & (stop > 0)
        new_start = jnp.where(redraw, draw_start(start_key, mdp), state.start)
    if state.outcomes is None:  # random start, deterministic dynamics
        _, rewards = rollout(mdp, actions, new_start)
        proposal = RegenerationState(actions, jnp.sum(rewards), None, new_start)
        return mh_accept(accept_key, beta * (proposal.ret - state.ret), proposal, state)
    dtype = jnp.asarray(mdp.outcome_probs).dtype
    noise = positive_uniform(noise_key, (horizon,), dtype)
    _, rewards, outcomes, log_probs = follow(mdp, new_start, actions, state.outcomes, noise, window)
    _, _, _, old_log_probs = follow(mdp, old_start, state.actions, state.outcomes)
    kept_after = jnp.sum(jnp.where(time >= stop, log_probs - old_log_probs, 0.0))
    proposal = RegenerationState(
        actions, jnp.sum(rewards), outcomes, None if state.start is None else new_start
    )
    log_ratio = beta * (proposal.ret - state.ret) + kept_after
    return mh_accept(accept_key, log_ratio, proposal, state)


def build_kernel(mdp, horizon, block_size=None):
    """One sweep of suffix (``block_size=None``) or block moves, ``step(key, state, beta)``.

    The sweep visits the cuts ``start = 0, 1, ..., T - 1`` in turn; each move redraws
    ``[start, T)`` (or ``[start, min(start + block_size, T))``) and is accepted or rejected on
    its own. The info's ``accept_prob`` is the mean over the sweep's T moves.
    """

    def step(key, state, beta):
        def move(state, inputs):
            move_key, start = inputs
            stop = horizon if block_size is None else jnp.minimum(start + block_size, horizon)
            return regenerate(move_key, state, beta, start, stop, mdp)

        inputs = (random.split(key, horizon), jnp.arange(horizon))
        state, infos = lax.scan(move, state, inputs)
        return state, MHInfo(jnp.mean(infos.accept_prob), jnp.any(infos.is_accepted))

    return step


def check_block_size(block_size):
    """Return ``block_size`` (``None`` or an int >= 1) or raise naming it."""
    if block_size is None:
        return None
    if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise TypeError(
            f"block_size must be None (suffix moves) or an int >= 1, got {block_size!r}"
        )
    if block_size < 1:
        raise ValueError(f"block_size must be None (suffix moves) or an int >= 1, got {block_size}")
    return int(block_size)


class SuffixMH(TrajectoryKernel):
    """Metropolis-Hastings that regenerates a suffix (or a block) of the actions from the prior.

    One step is a sweep over the cuts ``start = 0..T-1``: at each, the actions from ``start``
    on (or in ``[start, start + block_size)``) are redrawn from the prior, the rest kept, and
    the proposal accepted in log space with the likelihood ratio. Far cheaper to accept than a
    whole new trajectory: a suffix of length ``T - start`` only has to be good on its own.

    Parameters
    ----------
    model : callable
        A model built on :func:`pgm_rl.trajectory_model`.
    block_size : int or None, default None
        ``None``: suffix moves. An int ``k``: block moves redrawing ``k`` actions (fewer at the
        end), keeping the later actions (their states shift).

    Examples
    --------
    >>> mcmc = MCMC(SuffixMH(pgm_rl.trajectory_model), num_warmup=500, num_samples=2000)
    >>> mcmc.run(jax.random.key(0), env, horizon, beta, extra_fields=("accept_prob",))
    """

    def __init__(self, model, block_size=None):
        super().__init__(model)
        self.block_size = check_block_size(block_size)

    def build_step(self, mdp, horizon):
        return build_kernel(mdp, horizon, self.block_size)
