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

Order of writes (why a kill at any moment is safe): a chunk's draws are written first, then
``state.npz`` is replaced in one ``os.replace``. The state file is the only record of
progress, so a kill before the replace leaves the previous state, whose chunk boundary is
where the resumed run starts again, re-writing the same draws (same state, same RNG).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MemoryDraws", "DrawStore", "fingerprint", "chunk_draws", "phase_seconds", "progress_record", "resume",
           "CHUNK_STEPS"]

# 2: the driver's chain state (kernel state + PRNG state) replaced the PPL kernels' state.
_FORMAT = 2


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
        self._draws_path = directory / "draws.npy"
        self._state_path = directory / "state.npz"
        with open(self._draws_path, "rb") as handle:
            np.lib.format.read_magic(handle)
            np.lib.format.read_array_header_1_0(handle)
            self._offset = handle.tell()

    @classmethod
    def open(cls, directory: str | os.PathLike, settings: dict[str, Any], shape: tuple[int, int, int]) -> "DrawStore":
        """Create the store, or reopen it when ``settings`` match the run already there."""
        directory = Path(directory)
        meta_path = directory / "meta.json"
        meta = {"format": _FORMAT, "shape": list(shape), "settings": json.loads(json.dumps(settings))}
        if meta_path.exists():
            previous = json.loads(meta_path.read_text())
            if previous != meta:
                differ = sorted(
                    key for key in set(previous.get("settings", {})) | set(meta["settings"])
                    if previous.get("settings", {}).get(key) != meta["settings"].get(key)
                ) or ["shape/format"]
                raise ValueError(
                    f"{directory} holds a different run (differs in: {', '.join(differ)}). "
                    "Resume it with the same settings, or pass a new draws_dir."
                )
            return cls(directory, shape)
        if directory.exists() and any(directory.iterdir()):
            raise ValueError(f"draws_dir {directory} exists and is not a ppl_ebm draw store; pass a new or empty directory.")
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
        fd = os.open(self._draws_path, os.O_WRONLY)
        try:
            # One plain write, not a memory map: mapped pages would count as this process's memory.
            os.pwrite(fd, data.data, self._offset + start * chains * dim * 4)
        finally:
            os.close(fd)

    def checkpoint(self, state: dict[str, np.ndarray], progress: dict[str, float]) -> None:
        """Replace the saved state with ``state`` and ``progress`` (iteration, draws, seconds)."""
        temporary = self.directory / "state.tmp.npz"
        arrays = dict(state)
        arrays.update({f"__progress__{key}": np.asarray(value) for key, value in progress.items()})
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self._state_path)

    def load_checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, float]] | None:
        """The last saved state and progress, or None before the first checkpoint."""
        if not self._state_path.exists():
            return None
        with np.load(self._state_path) as saved:
            state = {k: saved[k] for k in saved.files if not k.startswith("__progress__")}
            progress = {k[len("__progress__"):]: saved[k].item() for k in saved.files if k.startswith("__progress__")}
        return state, progress

    def draws(self) -> np.ndarray:
        """The draws as (chain, draw, dim), memory-mapped read-only: nothing is loaded until read."""
        return np.load(self._draws_path, mmap_mode="r").swapaxes(0, 1)


def fingerprint(target: Any, initial_params: Any = None) -> str:
    """A digest of what is sampled, so a store is not resumed on another target.

    A latent EBM is identified by its networks' weights and settings; a model callable by
    its qualified name only (its data cannot be inspected).
    """
    digest = hashlib.sha256()
    if hasattr(target, "generator") and hasattr(target, "critic"):
        for module in (target.generator, target.critic):
            for name, tensor in module.state_dict().items():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().numpy().tobytes())
        digest.update(repr((target.latent_dim, target.temperature, target.critic_output)).encode())
        _prior_digest(digest, target)
    elif hasattr(target, "generator_params") and hasattr(target, "critic_params"):
        import jax

        for leaf in jax.tree_util.tree_leaves((target.generator_params, target.critic_params)):
            digest.update(np.asarray(leaf).tobytes())
        digest.update(repr((target.latent_dim, target.temperature, target.critic_output)).encode())
        _prior_digest(digest, target)
    else:
        digest.update(f"{getattr(target, '__module__', '')}.{getattr(target, '__qualname__', repr(target))}".encode())
    if initial_params is not None:
        digest.update(np.asarray(initial_params, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def _prior_digest(digest, target: Any) -> None:
    """The prior's family and parameters: the same weights under another prior are another target."""
    prior = getattr(target, "prior", None)
    if prior is None:
        return
    digest.update(repr(prior).encode())
    distribution = getattr(prior, "distribution", None)
    params = getattr(prior, "params", None)  # the JAX prior's parameters
    values = list(params) if params is not None else [
        value for value in vars(distribution).values() if hasattr(value, "shape")] if distribution is not None else []
    for value in values:
        value = value.detach().cpu().numpy() if hasattr(value, "detach") else np.asarray(value)
        digest.update(np.ascontiguousarray(value).tobytes())


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
    return restore(state, arrays), progress
