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
        <site>                  a model's run (draws ``u``): each site in its support,
                                (chain, draw, <site>_dim_0, ...), written after sampling
                                chunk by chunk (see ``write_site``), with its coordinates
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
its last checkpoint and writes the same draws again. A model's sites are a function of the
draws: every call that returns the run maps them again from the stored draws, so a resumed
(or killed-while-mapping) run's sites are rewritten whole; nothing records them as done.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ppl_ebm.drivers.draw_store import (
    _damaged, _write_failed, chunk_draws, differing_settings, load_checkpoint, save_checkpoint,
)

__all__ = ["ChainBlock", "ZarrDrawStore", "chain_blocks", "is_zarr_path", "open_draws", "site_names_problem"]

# Bumped when the layout changes; an older store is refused with a message, never misread.
_FORMAT = 1
#: Dimensions per chunk: diagnostics read blocks of dimensions of every chain.
CHUNK_DIMS = 16


#: A site name that is one plain Zarr key (no ``/``, which would nest groups).
_SITE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def site_dims(name: str, ndim: int) -> list[str]:
    """A site's dimension names as ArviZ names them by default: ``chain, draw, <name>_dim_<i>``."""
    return ["chain", "draw", *(f"{name}_dim_{axis}" for axis in range(ndim))]


def site_names_problem(variable: str, sites: dict[str, tuple[tuple[int, ...], str]]) -> str | None:
    """Why ``sites`` cannot sit beside the draws ``variable`` in the posterior group (a name that
    is not one Zarr key, or that another array or dimension already uses), or None."""
    taken = {variable, "chain", "draw", f"{variable}_dim"}
    for name, (shape, _) in sites.items():
        if not _SITE_NAME.fullmatch(name):
            return f"site {name!r} is not a plain Zarr array name"
        names = [name, *site_dims(name, len(shape))[2:]]
        clash = taken.intersection(names)
        if clash:
            return f"site {name!r} would share the name {sorted(clash)[0]!r} with another array of the posterior group"
        taken.update(names)
    return None


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
            self._posterior = group["posterior"]
            self._array = self._posterior[self.variable]
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise _damaged(path / ".zattrs", error) from None
        self._sites: dict[str, Any] = {}

    @classmethod
    def open(cls, path: str | os.PathLike, settings: dict[str, Any], shape: tuple[int, int, int], *,
             variable: str = "z", block: ChainBlock | None = None, attributes: dict[str, Any] | None = None,
             barrier: Callable[[], None] | None = None,
             sites: dict[str, tuple[tuple[int, ...], str]] | None = None) -> "ZarrDrawStore":
        """Create the store (process 0), or reopen it when ``settings`` and the chain layout
        match the run already there; ``barrier`` (the launcher's: ``torch.distributed.barrier``,
        JAX's ``sync_global_devices``) makes the other processes wait for process 0's creation.

        ``shape`` is the whole run's ``(num_chains, num_draws, dim)``; ``block`` this process's
        chains (default: all, one process); ``attributes`` go to the posterior group for readers
        (sampler, seed, options, ...). ``sites`` (a model's run: name -> (shape of one draw,
        dtype), names checked by :func:`site_names_problem`) makes process 0 create one array per
        site beside the draws (or keep the ones a previous session of the run made), which
        :meth:`write_site` fills after sampling. The sites are not part of the resume check:
        they are a function of the target, which the settings' fingerprint covers."""
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
            if sites:
                _ensure_sites(path, shape, sites)
        if barrier is not None:
            barrier()
        if block.index != 0:
            _check_same_run(path, meta)
        store = cls(path, block)
        if sites:
            store._open_sites(sites)
        return store

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

    # A model's sites, mapped from the stored draws after sampling (``sampling._stream_sites``).

    @property
    def sites(self) -> tuple[str, ...]:
        """The sites this store holds beside the draws (none for a latent EBM's ``z``)."""
        return tuple(self._sites)

    @property
    def read_draws(self) -> int:
        """Draws per :meth:`read`: one Zarr chunk's, so each read and site write is whole chunks."""
        return int(self._array.chunks[1])

    def read(self, start: int, count: int) -> np.ndarray:
        """This process's chains' draws ``start:start + count``, ``(chain, draw, dim)``, read now."""
        return self._array[self.block.start : self.block.stop, start : start + count]

    def write_site(self, name: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` (this process's chains, draws, *site shape) as draws ``start ...``."""
        try:
            self._sites[name][self.block.start : self.block.stop, start : start + values.shape[1]] = values
        except OSError as error:
            raise _write_failed(self.directory / "posterior" / name, error) from error

    def site_views(self) -> dict[str, _BlockView]:
        """Each site's draws of this process's chains ``(chain, draw, *shape)``, read when indexed."""
        return {name: _BlockView(array, self.block.start, self.block.stop) for name, array in self._sites.items()}

    def _open_sites(self, sites: dict[str, tuple[tuple[int, ...], str]]) -> None:
        # The store was opened after process 0 made the arrays (and after the barrier): they are listed.
        try:
            self._sites = {name: self._posterior[name] for name in sites}
        except (OSError, KeyError, ValueError, TypeError) as error:
            raise _damaged(self.directory / "posterior" / ".zattrs", error) from None


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


def _ensure_sites(path: Path, shape: tuple[int, int, int], sites: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Process 0: one array per site in the posterior group, chunked as the draws (a process's
    chains x the draws' chunk of draws), so each process's writes are whole chunks of its own;
    an array already there with the same shape and dtype is kept (a resumed run). The
    consolidated metadata is written again when anything was added."""
    import zarr

    from ppl_ebm.drivers.memory import check_disk

    root = zarr.open_group(path, mode="r+")
    posterior = root["posterior"]
    draws = posterior[root.attrs["ppl_ebm"]["variable"]]
    num_chains, num_draws, _ = shape
    existing = set(posterior.array_keys())
    missing = {}
    for name, (site_shape, dtype) in sites.items():
        full = (num_chains, num_draws, *site_shape)
        if name in existing and tuple(posterior[name].shape) == full and np.dtype(posterior[name].dtype) == dtype:
            continue
        missing[name] = (full, np.dtype(dtype))
    if not missing:
        return
    check_disk(path, sum(int(np.prod(full)) * dtype.itemsize for full, dtype in missing.values()))
    for name, (full, dtype) in missing.items():
        dims = site_dims(name, len(full) - 2)
        chunks = (draws.chunks[0], draws.chunks[1], *(min(size, CHUNK_DIMS) if axis == 0 else size
                                                      for axis, size in enumerate(full[2:])))
        posterior.create_array(
            name, shape=full, dtype=dtype, chunks=chunks, compressors=None, overwrite=True,
            fill_value=np.nan if dtype.kind == "f" else None,
            attributes={"_ARRAY_DIMENSIONS": dims, "description": f"site {name} in its support"},
        )
        for axis, size in enumerate(full[2:]):
            coordinate = posterior.create_array(dims[2 + axis], shape=(size,), dtype="int64", fill_value=None,
                                                overwrite=True, attributes={"_ARRAY_DIMENSIONS": [dims[2 + axis]]})
            coordinate[:] = np.arange(size)
    import warnings

    with warnings.catch_warnings():  # the hierarchy is listed again, now with _checkpoints (not Zarr) in it
        warnings.filterwarnings("ignore", message="Object at _checkpoints is not recognized")
        zarr.consolidate_metadata(path)


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
