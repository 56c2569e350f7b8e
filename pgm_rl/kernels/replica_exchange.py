"""Replica exchange (parallel tempering) over a ladder of inverse temperatures.

Rung ``k`` runs a base kernel on the posterior at ``betas[k]`` (``betas[0]`` is the model's
beta, the target); after every step neighbouring rungs propose to swap their trajectories,
accepted with ``log u < (beta_k - beta_{k+1}) * (R_{k+1} - R_k)`` where ``R`` is the return.
Even steps try the pairs (0, 1), (2, 3), ...; odd steps (1, 2), (3, 4), ... (with two rungs
their one pair every step, so every step tries a pair). Each rung uses the same compiled pure
step with its beta as an argument (vmapped over the rungs).

Your own model's terms f (``log_factor``, :mod:`pgm_rl.kernels.base`): rung k targets
``prior exp(beta_k (R + f / beta))``, the model's whole likelihood ``exp(beta R + f)`` raised
to ``beta_k / beta`` (``log_factor.weight``), so the hottest rung is near the prior, where
prior proposals mix, and the target rung is the model. Every rung's kernel carries f; the swap
ratio gains ``(w_k - w_{k+1}) (f_{k+1} - f_k)`` with ``w = beta_k / beta``.
"""

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import random

from pgm_rl.kernels.base import MHInfo, TrajectoryKernel, init_from_params
from pgm_rl.kernels.base import init as init_rung
from pgm_rl.kernels.registry import KERNELS

__all__ = ["ReplicaExchange", "ReplicaExchangeState", "build_kernel", "init", "ladder"]

RUNGS = tuple(name for name, record in KERNELS.items() if record.rung)


class ReplicaExchangeState(NamedTuple):
    """``rungs``: the base kernel's :class:`~pgm_rl.kernels.base.RegenerationState` stacked over
    the K rungs (leading axis K); ``i``: step counter (its parity picks the swap pairs);
    ``swap_accept_prob``: mean swap acceptance probability over the pairs tried at the last
    step (``extra_fields=("kernel_state.swap_accept_prob",)`` records it). ``actions`` (T,),
    ``outcomes`` (T,), ``start`` (), ``states`` (T + 1,) and ``rewards`` (T,) are the target
    rung's (per chain)."""

    rungs: Any
    i: jax.Array
    swap_accept_prob: jax.Array

    @property
    def actions(self):
        return self.rungs.actions[0]

    @property
    def outcomes(self):
        return self.rungs.outcomes[0]

    @property
    def start(self):
        return self.rungs.start[0]

    @property
    def states(self):
        return self.rungs.states[0]

    @property
    def rewards(self):
        return self.rungs.rewards[0]


def ladder(beta, num_rungs, min_fraction=1e-3):
    """Geometric ladder ``beta * min_fraction ** (k / (K - 1))``, k = 0..K-1; shape (K,)."""
    return beta * np.geomspace(1.0, min_fraction, num_rungs)


def init(key, world, horizon, beta=None, betas=None, num_rungs=6, log_factor=None, **params):
    """Every rung drawn from the prior (:func:`pgm_rl.kernels.base.init`); K = ``len(betas)``,
    or ``num_rungs``."""
    num_rungs = _check_ladder(betas, num_rungs)
    keys = random.split(key, num_rungs)
    rungs = jax.vmap(lambda k: init_rung(k, world, horizon, log_factor=log_factor))(keys)
    return ReplicaExchangeState(rungs, jnp.array(0), jnp.zeros((), rungs.ret.dtype))


def build_kernel(
    world,
    horizon,
    base_kernel="suffix-mh",
    base_params=None,
    betas=None,
    num_rungs=6,
    log_factor=None,
):
    """``step(key, state, beta) -> (state, info)`` over the rungs.

    Parameters
    ----------
    world : TabularMDP
    horizon : int
    base_kernel : str or callable, default "suffix-mh"
        The kernel run on every rung: a registered rung kernel's name (its module's
        ``build_kernel(world, horizon, **base_params)``), or a pure ``step(key, state, beta)``.
    base_params : dict, optional
        The named base kernel's parameters.
    betas : array_like, shape (K,), optional
        The ladder, strictly decreasing and >= 0: rung k runs at ``beta * betas[k] / betas[0]``
        (``betas`` itself when ``beta == betas[0]``). Default: :func:`ladder` with
        ``num_rungs`` rungs.
    num_rungs : int, default 6
        K >= 2 for the default ladder.
    log_factor : TrajectoryFactor, optional
        The model's extra terms f (module docstring); a named base kernel is built with it, a
        step given as a function must have been built with it.
    """
    num_rungs = _check_ladder(betas, num_rungs)
    if betas is None:
        fractions = jnp.asarray(ladder(1.0, num_rungs))
    else:
        betas = np.asarray(betas, dtype=float)
        fractions = jnp.asarray(betas / betas[0])
    base_step = _base_step(world, horizon, base_kernel, base_params, log_factor)
    pair = jnp.arange(num_rungs - 1)

    def step(key, state, beta):
        betas = beta * fractions
        move_key, swap_key = random.split(key)
        rungs, infos = jax.vmap(base_step)(random.split(move_key, num_rungs), state.rungs, betas)
        accept_prob = infos.accept_prob[0]
        ret = rungs.ret
        log_ratio = (betas[:-1] - betas[1:]) * (ret[1:] - ret[:-1])
        if log_factor is not None:
            weights, log_f = log_factor.weight(betas), rungs.log_factor
            log_ratio = log_ratio + (weights[:-1] - weights[1:]) * (log_f[1:] - log_f[:-1])
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


def _base_step(world, horizon, base_kernel, base_params, log_factor):
    """The rung's pure step from a registered name (checked) or a step function."""
    if callable(base_kernel):
        if base_params:
            raise ValueError("base_params is for a base_kernel given by name")
        return base_kernel
    record = KERNELS[_check_base_name(base_kernel)]
    return record.build_kernel(world, horizon, log_factor, **(base_params or {}))


def _check_base_name(name):
    if not isinstance(name, str) or name not in RUNGS:
        raise ValueError(f"base_kernel must be one of {', '.join(RUNGS)}; got {name!r}")
    return name


def _check_ladder(betas, num_rungs):
    """The number of rungs K (checked ``num_rungs``, or ``len(betas)`` checked)."""
    if isinstance(num_rungs, bool) or not isinstance(num_rungs, numbers.Integral):
        raise TypeError(f"num_rungs must be an int >= 2, got {num_rungs!r}")
    if num_rungs < 2:
        raise ValueError(f"num_rungs must be an int >= 2, got {num_rungs}")
    if betas is None:
        return int(num_rungs)
    betas = np.asarray(betas, dtype=float)
    if betas.ndim != 1 or betas.shape[0] < 2:
        raise ValueError(f"betas must be a 1-D ladder of >= 2 values, got shape {betas.shape}")
    if not np.all(np.isfinite(betas)) or np.any(betas < 0) or np.any(np.diff(betas) >= 0):
        raise ValueError(f"betas must be finite, >= 0 and strictly decreasing, got {betas}")
    return betas.shape[0]


class ReplicaExchange(TrajectoryKernel):
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
    base_params : dict or None, default None
        The named base kernel's parameters, e.g. ``{"num_particles": 64}``.

    Notes
    -----
    ``accept_prob`` is the base kernel's at the target rung (``is_accepted`` in the info says
    whether any swap happened); record the swap rate with
    ``extra_fields=("kernel_state.swap_accept_prob",)``.
    """

    build_step = None  # not a rung itself

    def __init__(self, model, betas=None, base_kernel="suffix-mh", num_rungs=6, base_params=None):
        super().__init__(model)
        if isinstance(base_kernel, str):
            _check_base_name(base_kernel)
            if base_params is not None:
                KERNELS[base_kernel]._check_names(base_params)
        elif not callable(getattr(base_kernel, "build_step", None)):
            raise TypeError(
                f"base_kernel must be a kernel name ({', '.join(RUNGS)}) or a kernel object with "
                f"a pure step(key, state, beta) (e.g. SuffixMH(model)), got {base_kernel!r}"
            )
        elif base_params is not None:
            raise ValueError("base_params is for a base_kernel given by name")
        self.base_kernel = base_kernel
        self.base_params = None if base_params is None else dict(base_params)
        self.num_rungs = _check_ladder(betas, num_rungs)
        self.betas = None if betas is None else np.asarray(betas, dtype=float)

    def build_step_at(self, world, horizon, beta, log_factor=None):
        if self.betas is not None and not np.isclose(
            self.betas[0], float(beta), rtol=1e-12, atol=0.0
        ):
            raise ValueError(
                f"betas[0] must equal the model's beta {float(beta)} (the target), "
                f"got {self.betas[0]}"
            )
        rung = self.base_kernel
        if not isinstance(rung, str):
            rung = rung.build_step(world, horizon, log_factor)
        return build_kernel(
            world, horizon, rung, self.base_params, self.betas, self.num_rungs, log_factor
        )

    def init_kernel_state(self, key, world, horizon, beta, log_factor=None):
        return init(key, world, horizon, beta, self.betas, self.num_rungs, log_factor)

    def state_at(self, world, horizon, init_params, log_factor=None):
        start = init_from_params(world, init_params, log_factor)
        rungs = jax.tree.map(lambda x: jnp.stack([x] * self.num_rungs), start)
        return ReplicaExchangeState(rungs, jnp.array(0), jnp.zeros((), rungs.ret.dtype))

    def rescore_state(self, kernel_state, log_factor):
        """Every rung's f recomputed (a block of ``numpyro.infer.Gibbs``)."""
        rungs = jax.vmap(lambda rung: super(ReplicaExchange, self).rescore_state(rung, log_factor))
        return kernel_state._replace(rungs=rungs(kernel_state.rungs))

    def get_diagnostics_str(self, state):
        return (
            f"acc. prob={float(state.mean_accept_prob):.2f}, "
            f"swap prob={float(state.kernel_state.swap_accept_prob):.2f}"
        )
