"""One-axis device meshes, their checks and placing host arrays on them (states and chains)."""

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

__all__ = ["check_axis_mesh", "one_axis_mesh", "place_from_host"]


def one_axis_mesh(devices, axis):
    """A 1-D mesh with the axis named ``axis`` (``AxisType.Auto``) over ``devices``.

    Parameters
    ----------
    devices : sequence of jax.Device or None
        None: every device, ``jax.devices()`` (every process's under ``jax.distributed``).
    axis : str

    Returns
    -------
    jax.sharding.Mesh

    Raises
    ------
    TypeError
        If ``devices`` is empty or holds something other than devices.
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices or not all(isinstance(device, jax.Device) for device in devices):
        raise TypeError(f"devices must be a non-empty sequence of jax.Device, got {devices!r}")
    return Mesh(np.asarray(devices), (axis,), axis_types=(AxisType.Auto,))


def check_axis_mesh(mesh, axis, what, builder):
    """``mesh`` if it is a :class:`jax.sharding.Mesh` with an axis named ``axis``.

    ``what`` (e.g. "the states") and ``builder`` (e.g. "pgm_rl.exact.states_mesh()") go into
    the messages.

    Raises
    ------
    TypeError
        If ``mesh`` is not a Mesh.
    ValueError
        If it has no axis ``axis`` (the message names its axes).
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh with an axis named {axis!r} (e.g. {builder}), "
            f"got {type(mesh).__name__}"
        )
    if axis not in mesh.axis_names:
        raise ValueError(
            f"mesh must have an axis named {axis!r} to split {what} over, got a mesh with axes "
            f"{tuple(mesh.axis_names)} (build one with {builder})"
        )
    return mesh


def place_from_host(array, sharding):
    """``array`` (NumPy, the same on every process) as a global array with ``sharding``: each
    process places its own devices' parts."""
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])
