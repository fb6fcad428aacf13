"""Which chains this process owns when a run spans several processes, and how they wait.

A process belongs to a multi-process run when its launcher set one up before ``sample()``:
``torchrun`` plus ``torch.distributed.init_process_group`` (torch backend), or
``jax.distributed.initialize`` (JAX backend). Each process then owns one contiguous block of
the chains (:func:`ppl_ebm.drivers.zarr_store.chain_blocks`) and writes it to the run's one
Zarr store; a single process owns them all. The launcher's own barrier orders the store's
creation: no transport of ours.
"""

from __future__ import annotations

from collections.abc import Callable

from ppl_ebm.drivers.zarr_store import ChainBlock, chain_blocks

__all__ = ["process_block", "process_count"]


def _torch_group() -> tuple[int, int] | None:
    try:
        import torch.distributed as dist
    except ImportError:  # a torch build without distributed support
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return dist.get_rank(), dist.get_world_size()


def _jax_group() -> tuple[int, int] | None:
    import jax

    return (jax.process_index(), jax.process_count()) if jax.process_count() > 1 else None


def process_count(backend: str) -> int:
    """Processes of the run this process belongs to (1 without a launcher)."""
    group = _torch_group() if backend == "torch" else _jax_group()
    return 1 if group is None else group[1]


def process_block(num_chains: int, backend: str) -> tuple[ChainBlock, Callable[[], None] | None]:
    """This process's :class:`ChainBlock` and the launcher's barrier (None for one process)."""
    group = _torch_group() if backend == "torch" else _jax_group()
    if group is None:
        return ChainBlock(0, num_chains), None
    index, count = group  # num_chains >= count: checked where sample() validates its arguments
    start, stop = chain_blocks(num_chains, count)[index]
    if backend == "torch":
        import torch.distributed as dist

        return ChainBlock(start, stop, index, count), dist.barrier
    from jax.experimental import multihost_utils

    return ChainBlock(start, stop, index, count), lambda: multihost_utils.sync_global_devices("ppl_ebm store")
