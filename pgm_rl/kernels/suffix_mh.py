"""Suffix and block regeneration: Metropolis-Hastings that redraws part of a trajectory.

A move picks a window ``[start, stop)`` independently of the current trajectory (a cut
``start`` and ``stop = T`` for a suffix move, or ``stop = start + block_size`` for a block
move), redraws the actions in it from the uniform prior and the outcome indices in it from the
dynamics, in order along the new path (and the start state, when the window holds step 0),
and keeps the others; one MCMC step is a sweep of moves over the cuts ``start = 0..T-1``.

The proposal is the prior on the window, so the MH log ratio is the likelihood ratio
``beta * (R' - R)`` plus the prior ratio of the outcome indices kept after the window: they
keep their values but are read from states that may have changed,
``sum_{t >= stop} (log p(k_t | s'_t, a'_t) - log p(k_t | s_t, a_t))`` (zero for a suffix move
and on deterministic dynamics, K = 1; ``-inf``, a rejection, where a kept index is impossible
from the new state).

Your own model's terms f (``log_factor``, :mod:`pgm_rl.kernels.base`): the proposal is
unchanged, f enters the acceptance, ``log_ratio += weight(beta) (f(proposal) - f(current))``:
one evaluation of f (a rollout and the user's terms, O(T)) per move, so T per sweep, O(T^2).

The pure functions take ``beta`` as an argument, so :mod:`pgm_rl.kernels.replica_exchange`
runs one chain per inverse temperature with the same compiled step.
"""

import numbers

import jax.numpy as jnp
from jax import lax, random

from pgm_rl.dynamics import draw_start, follow
from pgm_rl.kernels.base import (
    MHInfo,
    RegenerationState,
    TrajectoryKernel,
    factor_at,
    factor_change,
    init,
    mh_accept,
    with_rollout,
)

__all__ = ["SuffixMH", "build_kernel", "init", "regenerate", "regenerate_suffix"]


def regenerate(key, state, beta, start, stop, world, log_factor=None):
    """One MH step that redraws the window ``[start, stop)`` of ``state`` from the prior.

    ``start`` and ``stop`` may be traced ints; ``beta`` is the inverse temperature.
    ``state`` is a :class:`~pgm_rl.kernels.base.RegenerationState`; ``log_factor`` the
    model's f or None. Returns ``(RegenerationState, MHInfo)``.
    """
    log_probs = follow(world, state.start, state.actions, state.outcomes)[3]
    redraw_start = (start <= 0) & (stop > 0)
    (state, _), info = _regenerate(
        key, state, log_probs, beta, start, stop, world, redraw_start, log_factor
    )
    return state, info


def regenerate_suffix(key, state, beta, start, world, log_factor=None):
    """:func:`regenerate` of the suffix ``[start, T)``: no outcome is kept after the window, so
    the log prior of the kept ones is not needed (the whole trajectory at ``start = 0``)."""
    zeros = jnp.zeros(state.actions.shape, jnp.asarray(world.outcome_probs).dtype)
    horizon = state.actions.shape[-1]
    (state, _), info = _regenerate(
        key, state, zeros, beta, start, horizon, world, start <= 0, log_factor
    )
    return state, info


def _regenerate(key, state, log_probs, beta, start, stop, world, redraw_start, log_factor):
    """:func:`regenerate` given the log prior (T,) of the state's outcome indices (only those
    after the window are read; zeros serve a suffix move) and whether the start is redrawn
    (a bool, possibly traced). Returns ``((state, log_probs), MHInfo)``."""
    draw_key, accept_key = random.split(key)
    state = with_rollout(world, state)  # a state built by hand: its rollout, once
    horizon = state.actions.shape[-1]
    time = jnp.arange(horizon)
    window = (time >= start) & (time < stop)
    # One draw of 2T uniforms in [0, 1): the fresh actions (uniform over the A actions) and the
    # inverse-CDF noise of the fresh outcomes (in (0, 1]).
    u = random.uniform(draw_key, (2, horizon), jnp.asarray(world.outcome_probs).dtype)
    fresh = jnp.minimum(u[0] * world.n_actions, world.n_actions - 1).astype(jnp.int32)
    actions = jnp.where(window, fresh, state.actions)
    noise = 1.0 - u[1]
    new_start = state.start
    if redraw_start is not False:  # a start kept for sure (static False) costs nothing
        drawn = draw_start(random.fold_in(draw_key, 1), world)
        new_start = jnp.where(redraw_start, drawn, state.start)
    states, rewards, outcomes, new_log_probs = follow(
        world, new_start, actions, state.outcomes, noise, window
    )
    kept_after = jnp.sum(jnp.where(time >= stop, new_log_probs - log_probs, 0.0))
    ret = jnp.sum(rewards)
    log_f = factor_at(log_factor, new_start, actions, outcomes, ret.dtype)
    proposal = RegenerationState(actions, ret, outcomes, new_start, log_f, states, rewards)
    log_ratio = beta * (proposal.ret - state.ret) + kept_after
    log_ratio = log_ratio + factor_change(log_factor, beta, log_f, state.log_factor)
    return mh_accept(accept_key, log_ratio, (proposal, new_log_probs), (state, log_probs))


def build_kernel(world, horizon, block_size=None, log_factor=None):
    """One sweep of suffix (``block_size=None``) or block moves, ``step(key, state, beta)``.

    The sweep visits the cuts ``start = 0, 1, ..., T - 1`` in turn; each move redraws
    ``[start, T)`` (or ``[start, min(start + block_size, T))``) and is accepted or rejected on
    its own. The info's ``accept_prob`` is the mean over the sweep's T moves. ``log_factor``:
    the model's f (in each move's acceptance), or None.
    """
    block_size = check_block_size(block_size)

    def move(carry, inputs, beta, redraw_start):
        state, log_probs = carry
        move_key, start = inputs
        stop = horizon if block_size is None else jnp.minimum(start + block_size, horizon)
        return _regenerate(
            move_key, state, log_probs, beta, start, stop, world, redraw_start, log_factor
        )

    def step(key, state, beta):
        # A suffix move keeps no outcome after its window: the log prior of the kept ones is
        # only needed (and carried) for block moves.
        if block_size is None:
            log_probs = jnp.zeros(horizon, jnp.asarray(world.outcome_probs).dtype)
        else:
            log_probs = follow(world, state.start, state.actions, state.outcomes)[3]
        keys = random.split(key, horizon)
        # Only the first cut's window holds step 0 (and so redraws the start).
        carry, first = move((state, log_probs), (keys[0], 0), beta, True)
        (state, _), infos = lax.scan(
            lambda c, x: move(c, x, beta, False), carry, (keys[1:], jnp.arange(1, horizon))
        )
        accept = (first.accept_prob + jnp.sum(infos.accept_prob)) / horizon
        return state, MHInfo(accept, first.is_accepted | jnp.any(infos.is_accepted))

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
    """Metropolis-Hastings that regenerates a suffix (or a block) of the trajectory from the prior.

    One step is a sweep over the cuts ``start = 0..T-1``: at each, the actions (and outcomes)
    from ``start`` on (or in ``[start, start + block_size)``) are redrawn from the prior, the
    rest kept, and the proposal accepted in log space with the likelihood ratio. Far cheaper
    to accept than a whole new trajectory: a suffix of length ``T - start`` only has to be good
    on its own.

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

    def build_step(self, world, horizon, log_factor=None):
        return build_kernel(world, horizon, self.block_size, log_factor)
