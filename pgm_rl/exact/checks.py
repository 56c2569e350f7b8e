"""Argument checks shared by the exact solvers (and by StepwiseMH's exact target)."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from pgm_rl._checks import (
    check_beta,
    check_fits_in_memory,
    check_horizon,
    check_no_overflow,
    itemsize,
)
from pgm_rl.exact.sharding import check_mesh, check_trimmed_fits, shard_dynamics
from pgm_rl.messages import sparse_dynamics, working_dtype
from pgm_rl.worlds import check_env
from pgm_rl.worlds.outcomes import PROBABILITY_TOLERANCE

__all__ = [
    "check_checkpoint",
    "check_checkpoint_fits",
    "check_fits",
    "check_policy",
    "check_problem",
    "check_states",
    "placed_problem",
    "state_mask",
]


def check_problem(env, horizon, beta, *, checkpoint=None, mesh=None):
    """Validated ``(mdp, horizon, float beta)`` whose arrays fit in memory and whose scaled
    rewards and totals fit in the working dtype.

    ``checkpoint``: None for callers without a checkpointed mode (the (T, S, A) arrays are
    counted), False for the full mode of :func:`~pgm_rl.exact.solve` /
    :func:`~pgm_rl.exact.soft_bellman` (the same count; the error suggests ``checkpoint=True``),
    True for the checkpointed mode (:func:`check_checkpoint_fits`). ``mesh``: the estimate is
    per process, divided by the number of processes whose devices the mesh spans.

    Raises ``TypeError``/``ValueError`` naming the argument (env, horizon or beta).
    """
    mdp = check_env(env)
    horizon = check_horizon(horizon)
    beta = float(check_beta(beta))
    check_no_overflow(mdp.outcome_rewards, horizon, beta)  # every outcome, not the mean
    shares = 1 if mesh is None else len({device.process_index for device in mesh.devices.flat})
    if checkpoint:
        check_checkpoint_fits(horizon, mdp.n_states, mdp.n_actions, mdp.n_outcomes, shares)
    else:
        advice = "use a shorter horizon or a smaller env"
        if checkpoint is not None:
            advice = "use checkpoint=True (memory O(S sqrt(T))), a shorter horizon or a smaller env"
        check_fits(horizon, mdp.n_states / shares, mdp.n_actions, copies=3, advice=advice)
    return mdp, horizon, beta


def placed_problem(env, horizon, beta, checkpoint, mesh):
    """The checks of :func:`~pgm_rl.exact.solve` and :func:`~pgm_rl.exact.soft_bellman`:
    ``(mdp, horizon, beta, checkpoint, dyn)``, with ``dyn`` the world's
    :class:`~pgm_rl.messages.SparseDynamics`, padded and placed over ``mesh``'s ``"states"``
    where a mesh is given (:func:`pgm_rl.exact.sharding.shard_dynamics`).

    Raises ``TypeError``/``ValueError`` naming the argument (env, horizon, beta, checkpoint or
    mesh), before anything large is allocated.
    """
    mesh = None if mesh is None else check_mesh(mesh)
    checkpoint = check_checkpoint(checkpoint)
    mdp, horizon, beta = check_problem(env, horizon, beta, checkpoint=checkpoint, mesh=mesh)
    if mesh is not None and not checkpoint:
        check_trimmed_fits(mdp, horizon, mesh)
    return mdp, horizon, beta, checkpoint, shard_dynamics(sparse_dynamics(mdp, beta), mesh)


def check_checkpoint(checkpoint):
    """``checkpoint`` as a bool, or ``TypeError`` naming it."""
    if not isinstance(checkpoint, (bool, np.bool_)):
        raise TypeError(f"checkpoint must be True or False, got {checkpoint!r}")
    return bool(checkpoint)


def check_fits(
    horizon, n_states, n_actions, copies, advice="use a shorter horizon or a smaller env"
):
    """Raise ``ValueError`` naming horizon if ``copies`` (T, S, A) float arrays would not fit."""
    check_fits_in_memory(
        copies * horizon * n_states * n_actions * itemsize(),
        "horizon",
        horizon,
        f"the (T, S, A) arrays of {round(n_states)} states x {n_actions} actions",
        advice,
    )


def check_checkpoint_fits(horizon, n_states, n_actions, n_outcomes, shares=1):
    """Raise ``ValueError`` naming horizon if the checkpointed mode would not fit: about
    ceil(sqrt(T)) + 1 checkpoints and 2 ceil(sqrt(T)) segment rows of V as pairs (S,) and a dozen
    (S, A, K) arrays (the dynamics and one step's work), divided over ``shares`` processes."""
    length = math.isqrt(horizon - 1) + 1
    words = 2 * (length + 1) + 4 * length + 12 * n_actions * n_outcomes
    check_fits_in_memory(
        words * n_states / shares * itemsize(),
        "horizon",
        horizon,
        f"the checkpointed messages of {n_states} states (V every {length} steps)",
        "use a smaller env",
    )


def check_states(states, n_states):
    """Raise unless ``states`` are integer state indices in [0, n_states)."""
    if not jnp.issubdtype(states.dtype, jnp.integer):
        raise TypeError(f"states must be an integer array of state indices, got {states.dtype}")
    if states.size and (int(states.min()) < 0 or int(states.max()) >= n_states):
        raise ValueError(f"states must lie in [0, {n_states}), the state indices")


def check_policy(policy, mdp):
    """log of a checked (T, S, A) ``policy`` of ``mdp``, in the working dtype."""
    if isinstance(policy, jax.core.Tracer):
        raise TypeError("policy must be a concrete array (evaluate_policy is not traceable)")
    try:
        array = np.asarray(policy)
    except ValueError:
        raise ValueError("policy must be a rectangular (T, S, A) array") from None
    if array.dtype.kind not in "iuf":
        raise TypeError(f"policy must hold real probabilities, got dtype {array.dtype}")
    expected = (mdp.n_states, mdp.n_actions)
    if array.ndim != 3 or array.shape[1:] != expected or array.shape[0] < 1:
        raise ValueError(
            f"policy must have shape (T, S, A) = (T, {expected[0]}, {expected[1]}) with T >= 1, "
            f"got {array.shape}"
        )
    array = array.astype(np.float64)
    bad = ~(np.isfinite(array) & (array >= 0.0))
    if bad.any():
        t, s, a = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"policy must hold probabilities (no NaN, inf or negative entries): "
            f"policy[{t}, {s}, {a}] = {array[t, s, a]!r}"
        )
    sums = array.sum(axis=2)
    wrong = np.abs(sums - 1.0) > PROBABILITY_TOLERANCE
    if wrong.any():
        t, s = (int(i) for i in np.argwhere(wrong)[0])
        raise ValueError(
            f"policy rows must sum to 1 (tolerance {PROBABILITY_TOLERANCE:g}): policy[{t}, {s}] "
            f"(step {t}, state {s}) sums to {sums[t, s]!r}"
        )
    with np.errstate(divide="ignore"):
        log_policy = np.log(array / sums[..., None])
    return jnp.asarray(log_policy, working_dtype())


def state_mask(mdp, cells):
    """A boolean (S,) mask of ``cells``: state indices, (row, col) pairs on a grid, or a mask."""
    n_states = mdp.n_states
    has_grid = hasattr(mdp, "state_of") and getattr(mdp, "shape", None) is not None
    if isinstance(cells, (bool, np.bool_, str, bytes)):
        raise TypeError(f"cells must be state indices or (row, col) cells, got {cells!r}")
    if isinstance(cells, (int, np.integer)):
        items = [cells]
    elif isinstance(cells, (np.ndarray, jax.Array)) and np.asarray(cells).dtype == bool:
        mask = np.asarray(cells)
        if mask.shape != (n_states,):
            raise ValueError(
                f"a boolean cells mask must have shape ({n_states},), got {mask.shape}"
            )
        return jnp.asarray(mask)
    elif (
        isinstance(cells, tuple)
        and len(cells) == 2
        and all(isinstance(c, (int, np.integer)) for c in cells)
        and has_grid
    ):
        items = [cells]  # one (row, col) cell
    else:
        try:
            items = (
                list(np.asarray(cells).tolist()) if isinstance(cells, np.ndarray) else list(cells)
            )
        except TypeError:
            raise TypeError(
                f"cells must be a state index, a sequence of state indices or (row, col) cells, "
                f"or a boolean (S,) mask; got {cells!r}"
            ) from None
    mask = np.zeros(n_states, bool)
    for item in items:
        if isinstance(item, (tuple, list)):
            if not has_grid:
                raise TypeError(
                    f"cells holds {item!r}, a (row, col) pair, but this MDP has no grid: pass "
                    "state indices"
                )
            mask[mdp.state_of(*item)] = True
        elif isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            if not 0 <= item < n_states:
                raise ValueError(
                    f"cells must lie in [0, {n_states}), the state indices, got {item}"
                )
            mask[int(item)] = True
        else:
            raise TypeError(
                f"cells must hold state indices (ints) or (row, col) cells, got {item!r}"
            )
    return jnp.asarray(mask)
