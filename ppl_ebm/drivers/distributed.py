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

__all__ = ["check_resumed_steps", "process_block", "process_count", "warmup_collectives"]


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


def warmup_collectives(sampler, mass, num_chains: int) -> tuple[str, ...]:
    """What ``sampler``'s warmup reduces over all processes' chains, in the resume check's words,
    either backend: the mass matrix when the run pools it (the sampler's ``pooled_mass`` of the
    run's chain count; ``mass`` None: no matrix), the shared step size when MALA steps adapt one
    (``per_chain_step_size=False``; ULA has no adaptation, i-SIR alone no MALA step). Sampling
    reduces nothing across processes in either backend."""
    names = ["mass matrix"] if mass is not None and sampler.pooled_mass(num_chains) else []
    isir_alone = getattr(sampler, "mala_steps", 0) is None  # ISIRSampler without MALA steps
    if not isir_alone and getattr(sampler, "step_size_adaptation", None) is not None \
            and not getattr(sampler, "per_chain_step_size", True):
        names.append("shared step size")
    return tuple(names)


def check_resumed_steps(steps: list[int], num_warmup: int, collectives, unit: str = "process") -> None:
    """Refuse a resume whose processes' checkpoints (``steps`` in process order, gathered by every
    process) differ while warmup is unfinished on one of them and warmup reduces ``collectives``
    over all processes: the process behind would pair its sums with other steps' of the one ahead,
    then wait forever for sums that one never sends. Every process raises the same error.
    ``unit``: what the launcher calls a process (torchrun: "rank")."""
    plural = {"process": "processes", "rank": "ranks"}[unit]
    if len(set(steps)) > 1 and min(steps) < num_warmup and collectives:
        raise ValueError(
            f"The {plural}' checkpoints are at different steps {steps} ({unit} order) and warmup "
            f"({num_warmup} steps) is unfinished on some: its {' and '.join(collectives)} pools all "
            f"{plural}' chains, so this run cannot resume. Start it again into a new output (or delete the "
            "store).")
