"""States sharded over devices: the mesh, the padded and placed dynamics, the trimmed results.

``solve(..., mesh=mesh)`` and ``soft_bellman(..., mesh=mesh)`` take a :class:`jax.sharding.Mesh`
with an axis named ``"states"`` (:func:`states_mesh` builds a 1-D one). The (S, A, K) outcome
arrays and the start's log probabilities (S,) are padded to a multiple of the axis size with
unreachable padding states (a self loop of probability 1 and reward 0, start probability 0) and
placed with ``NamedSharding(mesh, P("states"))``; the jitted passes of :mod:`pgm_rl.messages` then
run unchanged, GSPMD propagating the sharding: V_t, Q_t and the policy stay split over the
states, and the next-state gathers ``V[ns]`` become an all-gather of V_{t+1} per step. A padding
state keeps V = 0 and probability 0, so it changes nothing; every result is trimmed back to S.

Shardings of the results: the (T, S, A) and (T + 1, S) arrays stay split over ``"states"`` when S
is a multiple of the axis size (nothing padded, nothing trimmed). Otherwise the trimmed arrays are
replicated on every device (JAX shards an axis only in equal parts; :func:`check_trimmed_fits`
refuses the solve where those copies would not fit): for problems that need the memory split,
choose S a multiple of the device count, or ``checkpoint=True``. ``log_z``,
``expected_return`` and ``elbo`` are Python floats computed from replicated reductions, so they
work under ``jax.distributed`` with several processes too; there the array attributes are global
arrays of which each process holds its own devices' shards (read them with
``jax.experimental.multihost_utils.process_allgather``), and the result's methods (``sample``,
``log_prob``, ``reach_probability``) need the arrays on one process.
"""

import copy
from functools import partial

import jax
import numpy as np
from jax import lax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from pgm_rl._checks import check_fits_in_memory, itemsize
from pgm_rl._mesh import check_axis_mesh, one_axis_mesh, place_from_host

__all__ = [
    "STATES_AXIS",
    "check_mesh",
    "check_trimmed_fits",
    "replicated",
    "shard_dynamics",
    "states_mesh",
    "trim",
]

STATES_AXIS = "states"


def check_mesh(mesh):
    """``mesh`` if it is a :class:`jax.sharding.Mesh` with an axis ``"states"``.

    Raises
    ------
    TypeError
        If ``mesh`` is not a Mesh.
    ValueError
        If it has no ``"states"`` axis (the message names its axes).
    """
    return check_axis_mesh(mesh, STATES_AXIS, "the states", "pgm_rl.exact.states_mesh()")


def check_trimmed_fits(mdp, horizon, mesh):
    """Refuse (``ValueError`` naming mesh) a full-mode solve whose trimmed results would be
    replicated and would not fit: when S is not a multiple of the ``"states"`` axis size, each
    of this process's devices of ``mesh`` keeps a whole (T, S, A) policy and three (T + 1, S)
    arrays (JAX shards an axis only in equal parts)."""
    size = mesh.shape[STATES_AXIS]
    if mdp.n_states % size == 0:
        return
    local = sum(device.process_index == jax.process_index() for device in mesh.devices.flat)
    per_copy = (horizon * mdp.n_actions + 3 * (horizon + 1)) * mdp.n_states * itemsize()
    check_fits_in_memory(
        local * per_copy,
        "mesh",
        f"<{size} devices on the 'states' axis>",
        f"the results trimmed to {mdp.n_states} states (not a multiple of {size}), replicated "
        f"on each of {local} devices",
        f"use a world whose number of states is a multiple of {size}, or checkpoint=True",
    )


def states_mesh(devices=None):
    """A 1-D mesh with the axis ``"states"`` (``AxisType.Auto``) over ``devices``.

    Parameters
    ----------
    devices : sequence of jax.Device, optional
        Default: every device, ``jax.devices()`` (every process's under ``jax.distributed``).

    Returns
    -------
    jax.sharding.Mesh
    """
    return one_axis_mesh(devices, STATES_AXIS)


def shard_dynamics(dyn, mesh):
    """:class:`~pgm_rl.messages.SparseDynamics` padded and placed over ``mesh``'s states.

    Parameters
    ----------
    dyn : SparseDynamics
        Of S states.
    mesh : jax.sharding.Mesh or None
        None returns ``dyn`` itself. Axes that are not ``AxisType.Auto`` (``jax.make_mesh``
        makes ``Explicit`` ones) are used as Auto: the passes' gathers need GSPMD's propagation.

    Returns
    -------
    SparseDynamics
        A copy whose ``ns``, ``logp``, ``r_hi``, ``r_lo``, ``reward`` (S', A, K) and ``log_p0``
        (S',) are global arrays sharded over ``"states"``, S' the smallest multiple of the axis
        size >= S; padding state s >= S loops to itself with probability 1 and reward 0 and has
        start probability 0. Extra attributes ``mesh`` and ``n_states`` (S).
    """
    if mesh is None:
        return dyn
    check_mesh(mesh)
    if any(kind != AxisType.Auto for kind in mesh.axis_types):  # e.g. jax.make_mesh's Explicit
        mesh = Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * mesh.devices.ndim)
    n_states = dyn.ns.shape[0]
    padded = -(-n_states // mesh.shape[STATES_AXIS]) * mesh.shape[STATES_AXIS]
    extra = padded - n_states

    def pad(array, fill):
        return np.concatenate([array, np.full((extra, *array.shape[1:]), fill, array.dtype)])

    ns = pad(dyn.ns, 0)
    ns[n_states:] = np.arange(n_states, padded, dtype=ns.dtype)[:, None, None]
    logp = pad(dyn.logp, -np.inf)
    logp[n_states:, :, 0] = 0.0
    sharding = NamedSharding(mesh, P(STATES_AXIS))
    out = copy.copy(dyn)
    out.ns = place_from_host(ns, sharding)
    out.logp = place_from_host(logp, sharding)
    out.r_hi = place_from_host(pad(dyn.r_hi, 0.0), sharding)
    out.r_lo = place_from_host(pad(dyn.r_lo, 0.0), sharding)
    out.reward = place_from_host(pad(dyn.reward, 0.0), sharding)
    out.log_p0 = place_from_host(pad(dyn.log_p0, -np.inf), sharding)
    out.mesh = mesh
    out.n_states = n_states
    return out


@partial(jax.jit, static_argnums=(0, 1))
def _trim(n_states, axis, array):
    return lax.slice_in_dim(array, 0, n_states, axis=axis)


def trim(dyn, array, axis=1):
    """``array`` cut back to the S real states along ``axis`` (a no-op without padding).

    Parameters
    ----------
    dyn : SparseDynamics
        As returned by :func:`shard_dynamics` (unpadded dynamics return ``array`` itself).
    array : array, S' along ``axis``
    axis : int

    Returns
    -------
    array, S along ``axis``
    """
    n_states = getattr(dyn, "n_states", None)
    if n_states is None or array.shape[axis] == n_states:
        return array
    return _trim(n_states, axis, array)


@partial(jax.jit, static_argnums=0)
def _replicate(mesh, arrays):
    return lax.with_sharding_constraint(arrays, NamedSharding(mesh, P()))


def replicated(dyn, *arrays):
    """``arrays`` replicated on every device of ``dyn``'s mesh (readable on every process);
    the arrays themselves for unsharded dynamics."""
    mesh = getattr(dyn, "mesh", None)
    return arrays if mesh is None else _replicate(mesh, arrays)
