"""Chains sharded over devices: a mesh with a ``"chains"`` axis and NumPyro's ``chain_method``.

``MCMC(kernel, num_chains=N, chain_method=shard_chains(mesh))`` runs the N chains vectorised
(``jax.vmap``) within a device and split across the devices of the mesh's axis ``"chains"``:
the chains' keys (and initial states and values, where given) are placed with
``NamedSharding(mesh, P("chains"))`` and the whole run is one jitted program whose outputs keep
that sharding, so each device runs N / D chains. A chain count that is no multiple of the axis
size D is padded with copies of the first chain, which are dropped from every output.

Every chain runs the same program on its own key whatever the device count, so the draws are
the same on one device and on many (``tests/kernels/test_chains_sharded.py`` checks every
registry kernel): the actions, states and outcomes exactly; float draws (acceptance
probabilities) to rounding, as XLA compiles a device's batch of N / D chains apart from one of N
and may sum in another order (as it may for N and N / D chains on one device; so an accept test
within rounding of its threshold could go the other way: not seen in the tests or in
``benchmarks/bench_chains.py``). This works for every registry kernel, NumPyro's Gibbs kernels
and MixedHMC included (it is ``jax.vmap`` plus a sharding, the method their records use), and
``pgm_rl.diagnostics.to_datatree`` reads such a run. The mesh's axis must be ``AxisType.Auto``
(:func:`chains_mesh` builds one): explicit axes reject the kernels' gathers.

Under ``jax.distributed`` with several processes, the mesh of every process's devices
(``chains_mesh()``) makes the draws global arrays of which each process holds its own devices'
chains; read them on one process with ``jax.experimental.multihost_utils.process_allgather``.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from pgm_rl._mesh import check_axis_mesh, one_axis_mesh, place_from_host

__all__ = ["CHAINS_AXIS", "chains_mesh", "check_chains_mesh", "shard_chains"]

CHAINS_AXIS = "chains"


def check_chains_mesh(mesh):
    """``mesh`` if it is a :class:`jax.sharding.Mesh` with an axis ``"chains"``.

    Raises
    ------
    TypeError
        If ``mesh`` is not a Mesh.
    ValueError
        If it has no ``"chains"`` axis (the message names its axes).
    """
    return check_axis_mesh(mesh, CHAINS_AXIS, "the chains", "pgm_rl.kernels.chains_mesh()")


def chains_mesh(devices=None):
    """A 1-D mesh with the axis ``"chains"`` (``AxisType.Auto``) over ``devices``.

    Parameters
    ----------
    devices : sequence of jax.Device, optional
        Default: every device, ``jax.devices()`` (every process's under ``jax.distributed``).

    Returns
    -------
    jax.sharding.Mesh

    Raises
    ------
    TypeError
        If ``devices`` is empty or holds something other than devices.
    """
    return one_axis_mesh(devices, CHAINS_AXIS)


def shard_chains(mesh):
    """The ``chain_method`` of ``numpyro.infer.MCMC`` that shards the chains over ``mesh``.

    Parameters
    ----------
    mesh : jax.sharding.Mesh
        With an axis ``"chains"`` (:func:`chains_mesh`); the chains are split over that axis
        (D devices) and replicated over any other.

    Returns
    -------
    callable
        ``chain_method(fn)(map_args)``, as NumPyro calls it: ``map_args`` are the chains' keys
        (N, ...) and their initial states and values (None or leading axis N); the outputs are
        the draws (N, draws, ...) and last states (N, ...), sharded over ``"chains"`` (N padded
        to a multiple of D with copies of chain 0 while running; the padding is dropped, the
        trimmed arrays laid out as JAX slices them).

    Raises
    ------
    TypeError
        If ``mesh`` is not a Mesh.
    ValueError
        If it has no ``"chains"`` axis.

    Examples
    --------
    One line changes against a run on one device (``progress_bar=False``: NumPyro shows none
    for a callable ``chain_method``)::

        mcmc = MCMC(kernel, num_warmup=500, num_samples=1000, num_chains=4096,
                    chain_method=shard_chains(chains_mesh()), progress_bar=False)
        mcmc.run(jax.random.key(0), env, horizon, beta)
    """
    return _ShardedChains(check_chains_mesh(mesh))


class _ShardedChains:
    """``shard_chains(mesh)``: the callable NumPyro calls, holding the mesh (and saying so)."""

    def __init__(self, mesh):
        self.mesh = mesh

    def __repr__(self):
        return f"shard_chains(<Mesh {dict(self.mesh.shape)}>)"

    def __call__(self, fn):
        sharding = NamedSharding(self.mesh, P(CHAINS_AXIS))
        num_devices = self.mesh.shape[CHAINS_AXIS]
        mapped = jax.jit(jax.vmap(fn), out_shardings=sharding)

        def run(map_args):
            num_chains = _num_chains(map_args)
            padding = -num_chains % num_devices
            placed = jax.tree.map(lambda x: _pad_and_place(x, padding, sharding), map_args)
            out = mapped(placed)
            if padding == 0:
                return out
            return jax.tree.map(lambda x: x[:num_chains], out)

        return run


def _num_chains(map_args):
    """The common leading axis of the arrays in ``map_args``."""
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(map_args)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            "the chains' keys, initial states and initial values must share one leading axis "
            f"(num_chains) to shard over the devices, got leading sizes {sorted(map(str, sizes))}"
        )
    return sizes.pop()


def _pad_and_place(x, padding, sharding):
    """``x`` with ``padding`` copies of ``x[0]`` appended, placed with ``sharding``."""
    x = jnp.asarray(x) if not isinstance(x, jax.Array) else x
    if padding:
        x = jnp.concatenate([x, jnp.repeat(x[:1], padding, axis=0)])
    if sharding.is_fully_addressable or not x.is_fully_addressable:
        return jax.device_put(x, sharding)
    # Several processes, each with the same inputs: each places its own devices' part.
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = place_from_host(np.asarray(jax.random.key_data(x)), sharding)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return place_from_host(np.asarray(x), sharding)
