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

from pgm_rl.kernels.base import MHInfo, TrajectoryKernel, init_state, mh_accept

__all__ = ["SuffixMH", "build_kernel", "regenerate"]


def regenerate(key, state, beta, start, stop, mdp):
    """One MH step that redraws ``state.actions[start:stop]`` from the prior.

    ``start`` and ``stop`` may be traced ints; ``beta`` is the inverse temperature.
    ``state`` is a :class:`~pgm_rl.kernels.base.RegenerationState`.
    Returns ``(RegenerationState, MHInfo)``.
    """
    proposal_key, accept_key = random.split(key)
    horizon = state.actions.shape[-1]
    fresh = random.randint(proposal_key, (horizon,), 0, mdp.n_actions, jnp.int32)
    time = jnp.arange(horizon)
    window = (time >= start) & (time < stop)
    proposal = init_state(mdp, jnp.where(window, fresh, state.actions))
    return mh_accept(accept_key, beta * (proposal.ret - state.ret), proposal, state)


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
