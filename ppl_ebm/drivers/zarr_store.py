"""A run's draws in one Zarr store that xarray and ArviZ open without ppl_ebm.

``sample(..., draws_dir="run.zarr")`` (a path ending in ``.zarr``) writes here instead of the
``draws.npy`` store of :mod:`ppl_ebm.drivers.draw_store`; both resume the same way. Several
processes (``torchrun`` ranks, JAX processes) share one store, each writing only its own
block of chains, so no two processes ever touch the same file.

Layout (Zarr format 2: every Zarr reader, zarr-python 2 and 3, xarray and ArviZ 0.23's
``InferenceData.from_zarr`` with zarr-python 2, opens it; format 3 readers need zarr-python 3,
and consolidated metadata is not yet part of format 3)::

    run.zarr/
      .zgroup .zattrs .zmetadata  root group; attrs["ppl_ebm"] = format, settings, chain layout
      posterior/                the ArviZ group: xarray.open_zarr(path, group="posterior")
        z                       (chain, draw, z_dim) float32, NaN where not yet written
        chain, draw, z_dim      coordinates
        attrs                   sampler, backend, seed, options, target fingerprint, ...
      _checkpoints/process<i>.npz   process i's kernel state at its last finished chunk

Chunks are ``(chains of one process, draws of one driver chunk, <= 16 dims)``: a process's
chunk of draws is whole Zarr chunks (no read-modify-write), a process never shares a chunk
with another, and a diagnostic reading a few dimensions of all chains reads each chunk once.
No compression: float32 draws of a continuous target compress by a few percent at most, and
the write sits in the sampling loop. The metadata is consolidated into ``.zmetadata``
once, at creation, so readers never list ``_checkpoints`` (not Zarr) and a
store on a network file system opens in one read.

Order of writes (why a kill is safe): as in the npy store, a chunk's draws are written first,
then the process's checkpoint is replaced in one ``os.replace``; a resumed process starts at
its last checkpoint and writes the same draws again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ppl_ebm.drivers.draw_store import (
    _damaged, _write_failed, chunk_draws, differing_settings, load_checkpoint, save_checkpoint,
)

__all__ = ["ChainBlock", "ZarrDrawStore", "chain_blocks", "is_zarr_path", "open_draws"]

# Bumped when the layout changes; an older store is refused with a message, never misread.
_FORMAT = 1
#: Dimensions per chunk: diagnostics read blocks of dimensions of every chain.
CHUNK_DIMS = 16


def is_zarr_path(path: str | os.PathLike) -> bool:
    """``draws_dir`` names a Zarr store (``*.zarr``) rather than an npy store directory."""
    return Path(path).suffix == ".zarr"


class ChainBlock(NamedTuple):
    """The chains ``start:stop`` that process ``index`` of ``count`` owns and writes."""

    start: int
    stop: int
    index: int = 0
    count: int = 1


def chain_blocks(num_chains: int, count: int) -> list[tuple[int, int]]:
    """Contiguous equal blocks (the last may be shorter), one per process, in process order."""
    size = -(-num_chains // count)
    return [(min(i * size, num_chains), min((i + 1) * size, num_chains)) for i in range(count)]


class _BlockView:
    """``array[start:stop, :num_draws]`` of a Zarr array without reading it: a ``(chain, draw,
    dim)`` array-like (shape, dtype, basic slicing, ``numpy.asarray``) that reads only what is
    indexed, so a store larger than memory streams through the diagnostics."""

    def __init__(self, array, start: int, stop: int, num_draws: int | None = None):
        self.array, self.start, self.stop = array, start, stop
        self.num_draws = array.shape[1] if num_draws is None else num_draws
        self.shape = (stop - start, self.num_draws, *array.shape[2:])
        self.dtype = np.dtype(array.dtype)
        self.itemsize = self.dtype.itemsize
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index):
        index = index if isinstance(index, tuple) else (index,)
        index = index + (slice(None),) * (self.ndim - len(index))
        chains, draws = index[0], index[1]
        if not (isinstance(chains, slice) and isinstance(draws, slice)):
            return np.asarray(self)[index]  # fancy indexing: small selections only (tests, plots)
        first, last, step = chains.indices(self.shape[0])
        chains = slice(self.start + first, self.start + max(first, last), step)
        return self.array[(chains, slice(*draws.indices(self.num_draws)), *index[2:])]

    def __array__(self, dtype=None, copy=None):
        values = self.array[self.start : self.stop, : self.num_draws]
        return values if dtype is None else values.astype(dtype)


class ZarrDrawStore:
    """One process's view of a run's Zarr store: its block of chains and its checkpoint.

    Use :meth:`open`; ``sample(..., draws_dir="run.zarr")`` does.
    """

    resumable = True

    def __init__(self, path: Path, block: ChainBlock):
        import zarr

        self.directory = path
        self.block = block
        self.state_path = path / "_checkpoints" / f"process{block.index}.npz"
        try:
            group = zarr.open_group(path, mode="r+")
            self.variable = group.attrs["ppl_ebm"]["variable"]
            self._array = group["posterior"][self.variable]
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise _damaged(path / ".zattrs", error) from None

    @classmethod
    def open(cls, path: str | os.PathLike, settings: dict[str, Any], shape: tuple[int, int, int], *,
             variable: str = "z", block: ChainBlock | None = None, attributes: dict[str, Any] | None = None,
             barrier: Callable[[], None] | None = None) -> "ZarrDrawStore":
        """Create the store (process 0), or reopen it when ``settings`` and the chain layout
        match the run already there; ``barrier`` (the launcher's: ``torch.distributed.barrier``,
        JAX's ``sync_global_devices``) makes the other processes wait for process 0's creation.

        ``shape`` is the whole run's ``(num_chains, num_draws, dim)``; ``block`` this process's
        chains (default: all, one process); ``attributes`` go to the posterior group for readers
        (sampler, seed, options, ...)."""
        path = Path(path)
        num_chains, num_draws, dim = shape
        block = ChainBlock(0, num_chains) if block is None else block
        layout = {"processes": block.count, "blocks": [list(b) for b in chain_blocks(num_chains, block.count)]}
        if (block.start, block.stop) != tuple(layout["blocks"][block.index]):
            raise ValueError(f"process {block.index} of {block.count} owns chains {layout['blocks'][block.index]}, "
                             f"not {block.start}:{block.stop}.")
        meta = {"format": _FORMAT, "shape": list(shape), "variable": variable, "layout": layout,
                "settings": json.loads(json.dumps(settings))}
        if block.index == 0:
            if (path / ".zgroup").exists():
                _check_same_run(path, meta)
            else:
                _create(path, meta, shape, block, variable, attributes or {})
        if barrier is not None:
            barrier()
        if block.index != 0:
            _check_same_run(path, meta)
        return cls(path, block)

    def write(self, start: int, block: np.ndarray) -> None:
        """Write ``block`` (draws, this process's chains, dim) as draws ``start ...``."""
        count = block.shape[0]
        try:
            self._array[self.block.start : self.block.stop, start : start + count] = np.swapaxes(block, 0, 1)
        except OSError as error:
            raise _write_failed(self.directory / "posterior" / self.variable, error) from error

    def checkpoint(self, state: dict[str, np.ndarray], progress: dict[str, float]) -> None:
        """Replace this process's saved state (see :func:`~ppl_ebm.drivers.draw_store.save_checkpoint`)."""
        save_checkpoint(self.state_path, state, progress)

    def load_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, float]] | None:
        return load_checkpoint(self.state_path)

    def draws(self) -> _BlockView:
        """This process's chains ``(chain, draw, dim)``, read from the store only when indexed."""
        return _BlockView(self._array, self.block.start, self.block.stop)


def _check_same_run(path: Path, meta: dict) -> None:
    import zarr

    try:
        previous = zarr.open_group(path, mode="r").attrs.asdict().get("ppl_ebm")
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise _damaged(path / ".zattrs", error) from None
    if not isinstance(previous, dict):
        raise ValueError(f"{path} is a Zarr store not written by ppl_ebm; pass a new draws_dir.")
    if previous.get("format") != _FORMAT:
        raise ValueError(f"{path} holds a run stored in Zarr layout {previous.get('format')!r}, written by another "
                         f"version of ppl_ebm (this one writes {_FORMAT}); pass a new draws_dir.")
    if previous == meta:
        return
    differ = differing_settings(previous.get("settings", {}), meta["settings"])
    if previous.get("layout") != meta["layout"]:
        differ.append(f"chain layout (stored: {previous.get('layout')}, this run: {meta['layout']})")
    raise ValueError(f"{path} holds a different run (differs in: {', '.join(differ) or 'shape/format'}). "
                     "Resume it with the same settings and number of processes, or pass a new draws_dir.")


def _create(path: Path, meta: dict, shape: tuple[int, int, int], block: ChainBlock, variable: str,
            attributes: dict[str, Any]) -> None:
    import zarr

    from ppl_ebm.drivers.memory import check_disk
    from ppl_ebm.validation import check_output_dir

    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ValueError(f"draws_dir {path} exists and is not a ppl_ebm Zarr store; pass a new or empty path.")
    check_output_dir(path, "draws_dir")
    num_chains, num_draws, dim = shape
    check_disk(path, 4 * num_chains * num_draws * dim)
    chains_per_chunk = -(-num_chains // block.count)
    draws_per_chunk = min(num_draws, chunk_draws(max(1, meta["settings"].get("thinning", 1)), chains_per_chunk, dim))
    dim_name = f"{variable}_dim"
    root = zarr.open_group(path, mode="w", zarr_format=2, attributes={"ppl_ebm": meta})
    posterior = root.create_group("posterior", attributes=attributes)
    # Zarr 2 names an array's dimensions in the attribute xarray reads (_ARRAY_DIMENSIONS).
    posterior.create_array(
        variable, shape=shape, dtype="float32", fill_value=np.nan, compressors=None,
        chunks=(chains_per_chunk, draws_per_chunk, min(dim, CHUNK_DIMS)),
        attributes={"_ARRAY_DIMENSIONS": ["chain", "draw", dim_name],
                    "description": attributes.get("description", "")},
    )
    for name, size in (("chain", num_chains), ("draw", num_draws), (dim_name, dim)):
        coordinate = posterior.create_array(name, shape=(size,), dtype="int64", fill_value=None,
                                            attributes={"_ARRAY_DIMENSIONS": [name]})
        coordinate[:] = np.arange(size)
    zarr.consolidate_metadata(path)
    (path / "_checkpoints").mkdir()


def open_draws(path: str | os.PathLike) -> tuple[Any, dict, int]:
    """A finished or running store's draws, read lazily: ``(zarr array (chain, draw, dim),
    the run's ppl_ebm metadata, draws finished by every process)``. The last is the fewest
    any process has checkpointed, so a running store's diagnostics read only finished draws."""
    import zarr

    path = Path(path)
    if not (path / ".zgroup").exists():
        raise ValueError(f"store {path} is not a ppl_ebm Zarr store (no .zgroup); pass the path given as draws_dir.")
    try:
        group = zarr.open_group(path, mode="r")
        meta = group.attrs.asdict()["ppl_ebm"]
        array = group["posterior"][meta["variable"]]
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise _damaged(path / ".zattrs", error) from None
    settings = meta["settings"]
    thinning = int(settings.get("thinning", 1))
    warmup = int(settings.get("num_warmup", 0))
    finished = array.shape[1]
    for index in range(meta["layout"]["processes"]):
        saved = load_checkpoint(path / "_checkpoints" / f"process{index}.npz")
        iteration = 0 if saved is None else int(saved[1]["iteration"])
        finished = min(finished, max(0, iteration - warmup) // thinning)
    return array, meta, finished
