"""Replica exchange (parallel tempering) over a ladder of inverse temperatures.

Rung ``k`` runs a base kernel on the posterior at ``betas[k]`` (``betas[0]`` is the model's
beta, the target); after every step neighbouring rungs propose to swap their trajectories,
accepted with ``log u < (beta_k - beta_{k+1}) * (R_{k+1} - R_k)`` where ``R`` is the return.
Even steps try the pairs (0, 1), (2, 3), ...; odd steps (1, 2), (3, 4), ... (with two rungs
their one pair every step, so every step tries a pair). Each rung uses the same compiled pure
step with its beta as an argument (vmapped over the rungs).
"""

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import random

from pgm_rl.kernels.base import (
    MHInfo,
    PureKernelAdapter,
    init_from_params,
    init_from_prior,
    position,
)
from pgm_rl.model import trajectory_problem

__all__ = ["ReplicaExchange", "ReplicaExchangeState", "build_kernel", "ladder"]


class ReplicaExchangeState(NamedTuple):
    """``rungs``: the base kernel's :class:`~pgm_rl.kernels.base.RegenerationState` stacked over
    the K rungs (leading axis K); ``i``: step counter (its parity picks the swap pairs);
    ``swap_accept_prob``: mean swap acceptance probability over the pairs tried at the last
    step (``extra_fields=("kernel_state.swap_accept_prob",)`` records it)."""

    rungs: Any
    i: jax.Array
    swap_accept_prob: jax.Array


def ladder(beta, num_rungs, min_fraction=1e-3):
    """Geometric ladder ``beta * min_fraction ** (k / (K - 1))``, k = 0..K-1; shape (K,)."""
    return beta * np.geomspace(1.0, min_fraction, num_rungs)


def build_kernel(base_step, betas):
    """``step(key, state) -> (state, info)`` over the rungs; ``betas`` (K,) decreasing."""
    betas = jnp.asarray(betas)
    num_rungs = betas.shape[0]
    pair = jnp.arange(num_rungs - 1)

    def step(key, state):
        move_key, swap_key = random.split(key)
        rungs, infos = jax.vmap(base_step)(random.split(move_key, num_rungs), state.rungs, betas)
        accept_prob = infos.accept_prob[0]
        ret = rungs.ret
        log_ratio = (betas[:-1] - betas[1:]) * (ret[1:] - ret[:-1])
        tried = (pair % 2 == state.i % 2) | (num_rungs == 2)  # two rungs: no odd pairs
        log_u = jnp.log(random.uniform(swap_key, (num_rungs - 1,), ret.dtype))
        swapped = (tried & (log_u < log_ratio)).astype(jnp.int32)
        zeros = jnp.zeros(1, jnp.int32)
        perm = jnp.arange(num_rungs) + jnp.concatenate([swapped, zeros])
        perm = perm - jnp.concatenate([zeros, swapped])
        rungs = jax.tree.map(lambda x: x[perm], rungs)
        swap_prob = jnp.exp(jnp.minimum(log_ratio, 0.0))
        swap_accept = jnp.sum(jnp.where(tried, swap_prob, 0.0)) / jnp.sum(tried)
        info = MHInfo(accept_prob, jnp.any(perm != jnp.arange(num_rungs)))
        return ReplicaExchangeState(rungs, state.i + 1, swap_accept), info

    return step


class ReplicaExchange(PureKernelAdapter):
    """Parallel tempering over inverse temperatures; ``get_samples()`` is the target chain.

    Parameters
    ----------
    model : callable
        A model built on :func:`pgm_rl.trajectory_model`; its beta is the target.
    betas : array_like or None, default None
        The ladder, shape (K,), strictly decreasing, ``betas[0]`` equal to the model's beta,
        all >= 0. ``None``: :func:`ladder` with ``num_rungs`` rungs from beta down to beta / 1000.
    base_kernel : str or kernel, default "suffix-mh"
        The kernel run on every rung: the name of a registered kernel that can serve as a rung
        (:data:`pgm_rl.kernels.registry.KERNELS` records with ``rung=True``: "trajectory-mh",
        "action-gibbs", "suffix-mh", "particle-gibbs") or such a kernel object itself, e.g.
        ``ParticleGibbs(model, num_particles=64)``.
    num_rungs : int, default 6
        Number of rungs K >= 2 of the default ladder (ignored when ``betas`` is given).

    Notes
    -----
    ``accept_prob`` is the base kernel's at the target rung (``is_accepted`` in the info says
    whether any swap happened); record the swap rate with
    ``extra_fields=("kernel_state.swap_accept_prob",)``.
    """

    def __init__(self, model, betas=None, base_kernel="suffix-mh", num_rungs=6):
        super().__init__(model)
        self.base_kernel = _rung_kernel(base_kernel, model)
        if isinstance(num_rungs, bool) or not isinstance(num_rungs, numbers.Integral):
            raise TypeError(f"num_rungs must be an int >= 2, got {num_rungs!r}")
        if num_rungs < 2:
            raise ValueError(f"num_rungs must be an int >= 2, got {num_rungs}")
        if betas is not None:
            betas = np.asarray(betas, dtype=float)
            if betas.ndim != 1 or betas.shape[0] < 2:
                raise ValueError(
                    f"betas must be a 1-D ladder of >= 2 values, got shape {betas.shape}"
                )
            if not np.all(np.isfinite(betas)) or np.any(betas < 0) or np.any(np.diff(betas) >= 0):
                raise ValueError(f"betas must be finite, >= 0 and strictly decreasing, got {betas}")
        self.betas = betas
        self.num_rungs = int(num_rungs)

    def build(self, model_args, model_kwargs):
        mdp, horizon, beta = trajectory_problem(
            self._model, model_args, model_kwargs, kernel="ReplicaExchange"
        )
        if self.betas is None:
            betas = ladder(float(beta), self.num_rungs)
        elif not np.isclose(self.betas[0], float(beta), rtol=1e-12, atol=0.0):
            raise ValueError(
                f"betas[0] must equal the model's beta {float(beta)} (the target), got {self.betas[0]}"
            )
        else:
            betas = self.betas
        step = build_kernel(self.base_kernel.build_step(mdp, horizon), betas)

        def init_fn(key, init_params):
            keys = random.split(key, len(betas))
            if init_params is None:
                rungs = jax.vmap(lambda k: init_from_prior(k, mdp, horizon))(keys)
            else:
                start = init_from_params(mdp, init_params)
                rungs = jax.tree.map(lambda x: jnp.stack([x] * len(betas)), start)
            zero = jnp.zeros((), rungs.ret.dtype)
            return ReplicaExchangeState(rungs, jnp.array(0), zero)

        return init_fn, step, lambda state: position(jax.tree.map(lambda x: x[0], state.rungs))

    def get_diagnostics_str(self, state):
        return (
            f"acc. prob={float(state.mean_accept_prob):.2f}, "
            f"swap prob={float(state.kernel_state.swap_accept_prob):.2f}"
        )


def _rung_kernel(base_kernel, model):
    """The kernel object run on each rung, from a registered name or a kernel object."""
    from pgm_rl.kernels.registry import KERNELS

    rungs = [name for name, record in KERNELS.items() if record.rung]
    if isinstance(base_kernel, str):
        if base_kernel not in rungs:
            raise ValueError(f"base_kernel must be one of {', '.join(rungs)}; got {base_kernel!r}")
        return KERNELS[base_kernel].make(model)
    if not callable(getattr(base_kernel, "build_step", None)):
        raise TypeError(
            f"base_kernel must be a kernel name ({', '.join(rungs)}) or a kernel object with a "
            f"pure step(key, state, beta) (e.g. SuffixMH(model)), got {base_kernel!r}"
        )
    return base_kernel
