"""Diagnostics of a stored run (``draws_dir``), read block by block, never whole.

:func:`open_run` opens either store a run leaves (a Zarr store ``*.zarr``, or the npy
directory of earlier versions) as a lazy ``(chain, draw, dim)`` array of its *finished* draws
(the fewest any process has checkpointed: a store still being written, or a killed one, is
diagnosed on what is safely there). :func:`summary_table` runs the fast engine's estimators
(:mod:`ppl_ebm.diagnostics.fast`, equal to ArviZ's) on blocks of dimensions aligned with the
store's chunks, so each chunk is read once and memory holds one block of dimensions of every
chain; :func:`nested_rhat_table` does the same for nested R-hat.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["StoredRun", "nested_rhat_table", "open_run", "summary_table"]


@dataclass(frozen=True)
class StoredRun:
    """A stored run: ``draws`` its finished draws (lazy), ``settings`` what produced them."""

    path: Path
    draws: Any  # (chain, draw, dim) array-like: a Zarr block view or a memory map
    variable: str
    settings: dict
    chunk_dims: int


def open_run(path: str | os.PathLike) -> StoredRun:
    """Open the Zarr store or npy store directory at ``path`` (what ``draws_dir`` named)."""
    from ppl_ebm.drivers import zarr_store
    from ppl_ebm.drivers.draw_store import load_checkpoint

    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"store {path} is not a directory; pass the draws_dir of a run.")
    if (path / ".zgroup").exists():
        array, meta, finished = zarr_store.open_draws(path)
        draws = zarr_store._BlockView(array, 0, array.shape[0], finished)
        return StoredRun(path, draws, meta["variable"], meta["settings"], int(array.chunks[2]))
    if (path / "draws.npy").exists() and (path / "meta.json").exists():
        settings = json.loads((path / "meta.json").read_text())["settings"]
        saved = load_checkpoint(path / "state.npz")
        iteration = 0 if saved is None else int(saved[1]["iteration"])
        finished = max(0, iteration - int(settings["num_warmup"])) // int(settings["thinning"])
        draws = np.load(path / "draws.npy", mmap_mode="r").swapaxes(0, 1)[:, :finished]
        return StoredRun(path, draws, "z", settings, draws.shape[2])
    raise ValueError(f"store {path} holds neither a Zarr store (.zgroup) nor draws.npy + meta.json; "
                     "pass the draws_dir of a ppl_ebm run.")


def _block_bytes(run: StoredRun, budget: int = 1 << 28) -> int:
    # Whole chunks of dimensions per block: a block boundary inside a chunk reads it twice.
    chains, draws, _ = run.draws.shape
    chunk = run.chunk_dims * chains * draws * run.draws.itemsize
    return chunk * max(1, budget // max(chunk, 1))


def summary_table(run: StoredRun, workers: int = 2):
    """ESS bulk/tail, rank R-hat, MCSE of the mean and sd per dimension, as ArviZ computes them.

    Returns a ``pandas.DataFrame`` indexed by ``<variable>[<d>]``; also ``mean`` and ``sd``
    (from the same blocks)."""
    import pandas as pd

    from ppl_ebm.diagnostics.estimators import MIN_DRAWS
    from ppl_ebm.diagnostics.fast import diagnose

    chains, draws, dim = run.draws.shape
    if draws < MIN_DRAWS:
        raise ValueError(f"store {run.path} has {draws} finished draws per chain; diagnostics need >= {MIN_DRAWS}.")
    block = _block_bytes(run)
    table = diagnose(run.draws, block_bytes=block, workers=workers)
    means, sds = np.empty(dim), np.empty(dim)
    per_block = max(1, block // (chains * draws * run.draws.itemsize))
    for d0 in range(0, dim, per_block):
        values = np.asarray(run.draws[:, :, d0 : d0 + per_block], dtype=np.float64)
        means[d0 : d0 + per_block] = values.mean(axis=(0, 1))
        sds[d0 : d0 + per_block] = values.std(axis=(0, 1), ddof=1)
    frame = pd.DataFrame({"mean": means, "sd": sds, "ess_bulk": table["ess_bulk"], "ess_tail": table["ess_tail"],
                          "r_hat": table["rhat"], "mcse_mean": table["mcse_mean"], "mcse_sd": table["mcse_sd"]})
    frame.index = [f"{run.variable}[{d}]" for d in range(dim)]
    return frame


def superchain_counts(num_chains: int, limit: int = 4) -> list[int]:
    """Superchain counts for nested R-hat: divisors K of the chains with >= 2 chains each,
    the largest first (many small superchains are the many-short-chains regime it is for)."""
    counts = [k for k in range(num_chains // 2, 1, -1) if num_chains % k == 0]
    return counts[:limit]


def nested_rhat_table(run: StoredRun, superchains: list[int] | None = None):
    """Nested R-hat (Margossian et al. 2022) per dimension for each superchain count, chains
    grouped in index order, with the value mixed chains read (``reference``; not 1, see
    :func:`ppl_ebm.diagnostics.mixing.nested_rhat_reference`)."""
    import pandas as pd

    from ppl_ebm.diagnostics.mixing import nested_rhat, nested_rhat_reference

    chains, draws, dim = run.draws.shape
    superchains = superchain_counts(chains) if superchains is None else superchains
    if not superchains:
        raise ValueError(f"nested R-hat needs >= 4 chains (2 superchains of 2); store {run.path} has {chains}.")
    per_block = max(1, _block_bytes(run) // (chains * draws * run.draws.itemsize))
    columns = {k: np.empty(dim) for k in superchains}
    for d0 in range(0, dim, per_block):
        values = np.asarray(run.draws[:, :, d0 : d0 + per_block], dtype=np.float64)
        for k in superchains:
            columns[k][d0 : d0 + per_block] = nested_rhat(values, k)
    frame = pd.DataFrame({f"K={k}": columns[k] for k in superchains})
    frame.index = [f"{run.variable}[{d}]" for d in range(dim)]
    reference = {f"K={k}": nested_rhat_reference(chains // k, draws) for k in superchains}
    return frame, reference
