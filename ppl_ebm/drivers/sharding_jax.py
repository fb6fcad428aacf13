"""Chains sharded over JAX devices: a ``jax.sharding.Mesh`` with one axis, ``"chains"``.

The chunk program of :mod:`ppl_ebm.drivers.run_jax` is the same program on one device or
many: its inputs are placed with a :class:`~jax.sharding.NamedSharding` that splits every
per-chain array along its leading axis (positions, gradients, per-chain step sizes and
running means, per-chain mass matrices) and replicates the rest (the PRNG key, the iteration,
a pooled mass matrix, the weights, the parameters); ``jit`` then partitions the program over
the mesh (GSPMD), inserting the collectives for whatever crosses chains (a pooled mass
matrix, a shared step size). As BlackJAX's ensemble samplers shard over a ``"chains"`` mesh.

Why the draws equal one device's: every random draw of the kernels is one call over the
global ``(chains, dim)`` shape from one key, and JAX's partitionable Threefry
(``jax_threefry_partitionable``, the default since JAX 0.5) makes the bits of each element
depend on its global index only, not on which device computes it. Per-chain arithmetic is
the same on every device; quantities reduced across chains (the pooled mass matrix, a shared
step size) are summed in another order over shards, so runs that use them agree to float
rounding, not bit for bit (tests/test_sharding_jax.py measures both).

Across processes (``jax.distributed.initialize``) the mesh spans every process's devices in
process order, so process ``i`` holds the chains of block ``i`` of
:func:`ppl_ebm.drivers.zarr_store.chain_blocks` and writes them to the run's store.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["AXIS", "chain_mesh", "local_rows", "place", "place_local_rows"]

AXIS = "chains"


def chain_mesh(num_chains: int) -> Mesh | None:
    """A mesh over every device (all processes'), or None when one device does (one device, a
    device chosen with ``device=``, or chains that do not split evenly: refused with a message
    across processes, run on one device within one)."""
    if jax.config.jax_default_device is not None:
        return None  # the caller chose a device for this call
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if len(devices) == 1:
        return None
    if num_chains % len(devices):
        if jax.process_count() > 1:
            raise ValueError(f"num_chains must be a multiple of the {len(devices)} devices of this multi-process "
                             f"run (each holds an equal block), got {num_chains}.")
        return None
    return Mesh(np.array(devices), (AXIS,))


def _sharding(mesh: Mesh, leaf, num_chains: int) -> NamedSharding:
    per_chain = getattr(leaf, "ndim", 0) >= 1 and leaf.shape[0] == num_chains and num_chains > 1
    return NamedSharding(mesh, PartitionSpec(AXIS) if per_chain else PartitionSpec())


def place(tree, mesh: Mesh, num_chains: int, replicate: bool = False):
    """``tree``'s per-chain leaves split over ``mesh``'s chains axis, the others (all of them
    with ``replicate``: weights and parameters) replicated.

    Single process: ``device_put``. Across processes every process holds the same global
    values (same seed, same arithmetic), so each builds the global array from its own rows
    (``make_array_from_callback``): nothing is sent between processes."""
    def one(leaf):
        if leaf is None:
            return None
        sharding = NamedSharding(mesh, PartitionSpec()) if replicate else _sharding(mesh, leaf, num_chains)
        if isinstance(leaf, jax.Array) and leaf.sharding.is_equivalent_to(sharding, leaf.ndim):
            return leaf  # placed already (the state a chunk returned)
        if jax.process_count() == 1:
            return jax.device_put(leaf, sharding)
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(leaf))
            built = jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])
            return jax.random.wrap_key_data(built, impl=jax.random.key_impl(leaf))
        values = np.asarray(leaf)
        return jax.make_array_from_callback(values.shape, sharding, lambda index: values[index])

    return jax.tree_util.tree_map(one, tree)


def local_rows(array, axis: int = 0) -> np.ndarray:
    """The chains (along ``axis``) of a chain-sharded global array that this process holds, in
    chain order, as numpy (all of them in one process)."""
    if jax.process_count() == 1 or getattr(array, "is_fully_addressable", True):
        return np.asarray(array)
    if array.is_fully_replicated:
        return np.asarray(array)
    unique = {}
    for shard in array.addressable_shards:  # several local devices may hold the same rows
        unique.setdefault(shard.index[axis].start or 0, shard.data)
    return np.concatenate([np.asarray(unique[start]) for start in sorted(unique)], axis=axis)


def place_local_rows(template, local, mesh: Mesh, num_chains: int):
    """Inverse of :func:`local_rows` for a resumed checkpoint: global arrays shaped like
    ``template`` (a placed tree) from this process's rows ``local`` (same tree of numpy).

    A replicated leaf (the iteration, the PRNG key) is built from this process's own saved copy,
    not ``device_put``, which requires equal values on every process: a process killed a chunk
    earlier than another resumes an iteration behind it, and its chains, computed from its rows
    only, catch up on their own (a run with no collective in its chunks, as per-chain kernels)."""
    def one(leaf, values):
        if leaf is None:
            return None
        sharding = leaf.sharding
        if jax.process_count() == 1:
            return jax.device_put(values, sharding)
        if leaf.is_fully_replicated:
            return jax.make_array_from_callback(leaf.shape, sharding, lambda index: values[index])
        offset = min(index[0].start or 0 for index in sharding.addressable_devices_indices_map(leaf.shape).values())
        return jax.make_array_from_callback(
            leaf.shape, sharding,
            lambda index: values[(slice((index[0].start or 0) - offset, (index[0].stop or leaf.shape[0]) - offset),
                                  *index[1:])])

    return jax.tree_util.tree_map(one, template, local)
