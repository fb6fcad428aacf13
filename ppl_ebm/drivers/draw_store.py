"""Where a Langevin run puts its draws: in memory, or streamed to disk and resumable.

Both drivers (:mod:`ppl_ebm.drivers.run_torch`, :mod:`ppl_ebm.drivers.run_jax`) hand their draws over one
chunk at a time (``write``) and, at the same chunk boundaries, the kernel state
(``checkpoint``). :class:`MemoryDraws` keeps them in an array. :class:`DrawStore`
(``sample(..., draws_dir=...)``) writes them to ``draws.npy`` in a directory as they are
produced, so a run larger than memory (10,000 chains x 1000 draws x 128 dims is 5 GB of
float32) never holds more than a chunk, and a killed run resumes from its last checkpoint
without losing the draws before it.

Layout of a store directory::

    meta.json    the run's settings; a resume must match them exactly
    draws.npy    (draw, chain, dim) float32 in the order produced, so each chunk is one
                 contiguous write; DrawStore.draws() (and result.latents) is its
                 (chain, draw, dim) view: np.load(path, mmap_mode="r").swapaxes(0, 1)
    state.npz    kernel state + progress at the last finished chunk (replaced atomically)
    sites/       a model's run: each site in its support, mapped from the draws after
                 sampling: site<i>.npy (draw, chain, *site shape), names.json names them;
                 DrawStore.site_views() (and result.posterior) are their (chain, draw, ...)
                 memory maps. Rewritten whole by every call that returns the run.

Order of writes (why a kill at any moment is safe): a chunk's draws are written first, then
``state.npz`` is replaced in one ``os.replace``. The state file is the only record of
progress, so a kill before the replace leaves the previous state, whose chunk boundary is
where the resumed run starts again, re-writing the same draws (same state, same RNG).
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ppl_ebm.drivers.fingerprint import fingerprint

__all__ = ["MemoryDraws", "DrawStore", "fingerprint", "chunk_draws", "phase_seconds", "progress_record", "resume",
           "save_checkpoint", "load_checkpoint", "differing_settings", "CHUNK_STEPS"]

# 2: the driver's chain state (kernel state + PRNG state) replaced the PPL kernels' state.
# 3: the target fingerprint covers every module attribute, extended noise and model arguments.
_FORMAT = 3


def _write_failed(path: Path, error: OSError) -> OSError:
    # The previous checkpoint is intact (state.npz is only ever replaced whole): say so.
    message = (f"Cannot write {path} ({error.strerror or error}). The draws up to the last checkpoint are kept: "
               "free space or fix permissions, then call sample() again with the same arguments to resume.")
    # OSError(errno, message) is the errno's subclass (PermissionError, ...), as the original was.
    return OSError(error.errno, message) if error.errno else OSError(message)


class StoreError(ValueError):
    """A store file that cannot be read: the message names it and what to do."""


def _damaged(path: Path, error: Exception) -> StoreError:
    # Never point at allow_pickle: a store holds no pickles, so a file that needs one is damaged.
    reason = "it holds Python objects, which a ppl_ebm store never writes" if "pickle" in str(error) \
        else f"{type(error).__name__}: {error}"
    return StoreError(
        f"{path} is damaged or not written by ppl_ebm ({reason}). It cannot be resumed: "
        f"remove {path.parent} (its draws are lost) or pass a new draws_dir."
    )


def save_checkpoint(path: Path, state: dict[str, np.ndarray], progress: dict[str, float]) -> None:
    """Replace ``path`` (an ``.npz``) with ``state`` and ``progress`` in one ``os.replace``, so a
    kill at any moment leaves either the previous checkpoint or this one, never half of one."""
    temporary = path.with_name(path.stem + ".tmp.npz")
    arrays = dict(state)
    arrays.update({f"__progress__{key}": np.asarray(value) for key, value in progress.items()})
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise _write_failed(temporary, error) from error


def load_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict[str, float]] | None:
    """What :func:`save_checkpoint` wrote, or None before the first checkpoint."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as saved:
            state = {k: saved[k] for k in saved.files if not k.startswith("__progress__")}
            progress = {k[len("__progress__"):]: saved[k].item() for k in saved.files
                        if k.startswith("__progress__")}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise _damaged(path, error) from None
    if "iteration" not in progress:
        raise _damaged(path, KeyError("no progress record"))
    return state, progress


def differing_settings(previous: dict, current: dict) -> list[str]:
    """The keys of two runs' settings that differ (what a refused resume names)."""
    return sorted(key for key in set(previous) | set(current) if previous.get(key) != current.get(key))



class MemoryDraws:
    """Draws kept in memory, ``(chain, draw, dim)`` float32."""

    resumable = False

    def __init__(self, num_chains: int, num_draws: int, dim: int):
        self.array = np.empty((num_chains, num_draws, dim), dtype=np.float32)

    def write(self, start: int, block: np.ndarray) -> None:
        """Store ``block`` (draws, chains, dim) as draws ``start ...`` of every chain."""
        self.array[:, start : start + block.shape[0]] = np.swapaxes(block, 0, 1)

    def checkpoint(self, state: dict[str, np.ndarray], progress: dict[str, float]) -> None:
        """Nothing to keep: an in-memory run cannot outlive its process."""

    def draws(self) -> np.ndarray:
        return self.array


class DrawStore:
    """A run's draws on disk as they are produced, with the state to resume from.

    Use :meth:`open`; ``sample(..., draws_dir=path)`` does.
    """

    resumable = True

    def __init__(self, directory: Path, shape: tuple[int, int, int]):
        self.directory = directory
        self.shape = shape
        self._site_files: dict[str, Path] = {}
        self._draws_path = directory / "draws.npy"
        self._state_path = self.state_path = directory / "state.npz"
        on_disk = (shape[1], shape[0], shape[2])
        try:
            with open(self._draws_path, "rb") as handle:
                version = np.lib.format.read_magic(handle)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                header = read_header(handle)
                self._offset = handle.tell()
            size = self._draws_path.stat().st_size
        except (OSError, ValueError, SyntaxError) as error:
            raise _damaged(self._draws_path, error) from None
        if header[0] != on_disk or header[2] != np.float32 or size < self._offset + 4 * np.prod(on_disk):
            raise _damaged(self._draws_path, ValueError(
                f"holds {header[0]} {header[2]} in {size} bytes; expected {on_disk} float32"))

    @classmethod
    def open(cls, directory: str | os.PathLike, settings: dict[str, Any], shape: tuple[int, int, int],
             sites: dict[str, tuple[tuple[int, ...], str]] | None = None) -> "DrawStore":
        """Create the store, or reopen it when ``settings`` match the run already there.

        ``sites`` (a model's run: name -> (shape of one draw, dtype)) adds one file per site,
        filled after sampling by :meth:`write_site`; not part of the resume check (a function
        of the target, which the settings' fingerprint covers)."""
        store = cls._open(directory, settings, shape)
        if sites:
            store._ensure_sites(sites)
        return store

    @classmethod
    def _open(cls, directory: str | os.PathLike, settings: dict[str, Any], shape: tuple[int, int, int]) -> "DrawStore":
        directory = Path(directory)
        meta_path = directory / "meta.json"
        meta = {"format": _FORMAT, "shape": list(shape), "settings": json.loads(json.dumps(settings))}
        if meta_path.exists():
            try:
                previous = json.loads(meta_path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                raise _damaged(meta_path, error) from None
            if not isinstance(previous, dict):
                raise _damaged(meta_path, TypeError(f"a JSON {type(previous).__name__}, not an object"))
            if previous.get("format") != _FORMAT:
                raise ValueError(
                    f"{directory} holds a run stored in format {previous.get('format')!r}, written by another "
                    f"version of ppl_ebm (this one writes {_FORMAT}); pass a new draws_dir.")
            if previous != meta:
                differ = differing_settings(previous.get("settings", {}), meta["settings"]) or ["shape/format"]
                raise ValueError(
                    f"{directory} holds a different run (differs in: {', '.join(differ)}). "
                    "Resume it with the same settings, or pass a new draws_dir."
                )
            return cls(directory, shape)
        if directory.exists() and not directory.is_dir():
            raise ValueError(f"draws_dir {directory} is a file; pass a new or empty directory.")
        if directory.exists() and any(directory.iterdir()):
            raise ValueError(f"draws_dir {directory} exists and is not a ppl_ebm draw store; pass a new or empty directory.")
        from ppl_ebm.drivers.memory import check_disk
        from ppl_ebm.validation import check_output_dir

        check_output_dir(directory, "draws_dir")
        check_disk(directory, 4 * shape[0] * shape[1] * shape[2])
        directory.mkdir(parents=True, exist_ok=True)
        # A sparse file of the full size: no page of it is touched until written.
        on_disk = (shape[1], shape[0], shape[2])
        created = np.lib.format.open_memmap(directory / "draws.npy", mode="w+", dtype=np.float32, shape=on_disk)
        del created
        meta_path.write_text(json.dumps(meta, indent=2))
        return cls(directory, shape)

    def write(self, start: int, block: np.ndarray) -> None:
        """Write ``block`` (draws, chains, dim) as draws ``start ...`` of every chain."""
        count, chains, dim = block.shape
        data = np.ascontiguousarray(block, dtype=np.float32)
        try:
            fd = os.open(self._draws_path, os.O_WRONLY)
            try:
                # One plain write, not a memory map: mapped pages would count as this process's memory.
                written = os.pwrite(fd, data.data, self._offset + start * chains * dim * 4)
            finally:
                os.close(fd)
            if written != data.nbytes:
                raise OSError(f"wrote {written} of {data.nbytes} bytes (disk full?)")
        except OSError as error:
            raise _write_failed(self._draws_path, error) from error

    def checkpoint(self, state: dict[str, np.ndarray], progress: dict[str, float]) -> None:
        """Replace the saved state with ``state`` and ``progress`` (iteration, draws, seconds)."""
        save_checkpoint(self._state_path, state, progress)

    def load_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, float]] | None:
        """The last saved state and progress, or None before the first checkpoint."""
        return load_checkpoint(self._state_path)

    def draws(self) -> np.ndarray:
        """The draws as (chain, draw, dim), memory-mapped read-only: nothing is loaded until read."""
        return np.load(self._draws_path, mmap_mode="r").swapaxes(0, 1)

    # A model's sites, mapped from the stored draws after sampling (``sampling._stream_sites``).

    @property
    def sites(self) -> tuple[str, ...]:
        return tuple(self._site_files)

    @property
    def read_draws(self) -> int:
        """Draws per :meth:`read` (at most :data:`CHUNK_BYTES` of them)."""
        return chunk_draws(1, self.shape[0], self.shape[2])

    def read(self, start: int, count: int) -> np.ndarray:
        """Draws ``start:start + count`` of every chain, ``(chain, draw, dim)``, read with one
        ``pread`` (not through a memory map, whose pages would count as this process's memory)."""
        chains, _, dim = self.shape
        out = np.empty((count, chains, dim), dtype=np.float32)
        try:
            fd = os.open(self._draws_path, os.O_RDONLY)
            try:
                read = os.preadv(fd, [out.data], self._offset + start * chains * dim * 4)
            finally:
                os.close(fd)
        except OSError as error:
            raise _damaged(self._draws_path, error) from None
        if read != out.nbytes:
            raise _damaged(self._draws_path, EOFError(f"read {read} of {out.nbytes} bytes"))
        return out.swapaxes(0, 1)

    def write_site(self, name: str, start: int, values: np.ndarray) -> None:
        """Write ``values`` (chain, draws, *site shape) as draws ``start ...`` of site ``name``."""
        path = self._site_files[name]
        data = np.ascontiguousarray(np.swapaxes(values, 0, 1))
        try:
            offset = _data_offset(path)
            fd = os.open(path, os.O_WRONLY)
            try:
                written = os.pwrite(fd, data.data, offset + start * data[0].nbytes)
            finally:
                os.close(fd)
            if written != data.nbytes:
                raise OSError(f"wrote {written} of {data.nbytes} bytes (disk full?)")
        except OSError as error:
            raise _write_failed(path, error) from error

    def site_views(self) -> dict[str, np.ndarray]:
        """Each site's draws ``(chain, draw, *shape)``, memory-mapped read-only."""
        return {name: np.load(path, mmap_mode="r").swapaxes(0, 1) for name, path in self._site_files.items()}

    def _ensure_sites(self, sites: dict[str, tuple[tuple[int, ...], str]]) -> None:
        """One sparse ``.npy`` per site (kept when a previous session made it the same)."""
        from ppl_ebm.drivers.memory import check_disk

        folder = self.directory / "sites"
        chains, draws, _ = self.shape
        wanted = {}
        for index, (name, (site_shape, dtype)) in enumerate(sites.items()):
            wanted[name] = (folder / f"site{index}.npy", (draws, chains, *site_shape), np.dtype(dtype))
        missing = {name: spec for name, spec in wanted.items() if not _holds(*spec)}
        if missing:
            size = sum(int(np.prod(shape)) * dtype.itemsize for _, shape, dtype in missing.values())
            check_disk(self.directory, size)
            folder.mkdir(exist_ok=True)
            for path, shape, dtype in missing.values():
                created = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)  # sparse until written
                del created
            (folder / "names.json").write_text(json.dumps(
                [{"name": name, "file": path.name, "shape": list(shape[2:]), "dtype": dtype.str,
                  "layout": "(draw, chain, *shape)"} for name, (path, shape, dtype) in wanted.items()], indent=2))
        self._site_files = {name: path for name, (path, _, _) in wanted.items()}


def _data_offset(path: Path) -> int:
    """Where an ``.npy`` file's data begin (after its header)."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        read_header(handle)
        return handle.tell()


def _holds(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether ``path`` is an ``.npy`` of ``shape`` and ``dtype`` (a site file to keep)."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return array.shape == shape and array.dtype == dtype


#: Draws a driver holds before handing them over: at most this many steps' worth ...
CHUNK_STEPS = 100
#: ... and at most this many bytes (10,000 chains x 128 dims: 26 draws a chunk).
CHUNK_BYTES = 1 << 27


def chunk_draws(thinning: int, num_chains: int, dim: int) -> int:
    """Kept draws per chunk: the unit of writing, of checkpointing and of JAX compilation."""
    return max(1, min(CHUNK_STEPS // thinning, CHUNK_BYTES // (4 * num_chains * max(dim, 1))))


def phase_seconds(start: float, warmup_end: float | None, now: float) -> tuple[float, float]:
    """(warmup, sampling) seconds of this session; ``warmup_end`` None while still warming up."""
    if warmup_end is None:
        return now - start, 0.0
    return warmup_end - start, now - warmup_end


def progress_record(previous: dict, start: float, warmup_end: float | None, done: int,
                    compile_seconds: float = 0.0) -> dict:
    """What a checkpoint records besides the state: iterations done and seconds so far, all sessions."""
    import time

    now = time.perf_counter()
    warmup, sampling = phase_seconds(start, warmup_end, now)
    return {
        "iteration": done,
        "wall_seconds": previous.get("wall_seconds", 0.0) + now - start,
        "compile_seconds": previous.get("compile_seconds", 0.0) + compile_seconds,
        "warmup_seconds": previous.get("warmup_seconds", 0.0) + warmup,
        "sampling_seconds": previous.get("sampling_seconds", 0.0) + sampling,
    }


def resume(state, sink, restore) -> tuple[Any, dict]:
    """``(restore(state, saved arrays), saved progress)`` when ``sink`` holds a checkpoint, else
    ``(state, {})``; ``restore`` is the backend's inverse of its state-to-arrays function."""
    saved = sink.load_checkpoint() if sink.resumable else None
    if saved is None:
        return state, {}
    arrays, progress = saved
    try:
        return restore(state, arrays), progress
    except (KeyError, ValueError, TypeError, RuntimeError) as error:  # arrays of another shape or kernel
        raise _damaged(sink.state_path, error) from None
