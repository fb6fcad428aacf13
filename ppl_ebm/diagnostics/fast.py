"""The fast engine of :func:`ppl_ebm.diagnostics.summary.summarize`: ArviZ's convergence
diagnostics on *all* chains of runs where ArviZ itself would take minutes (5000 chains x 1000
draws x 128 dims: diagnostics/benchmark_diagnostics.py).

:func:`diagnose` returns, per latent dimension, the same numbers as ArviZ 0.23's
``ess(method="bulk")``, ``ess(method="tail")``, ``rhat(method="rank")``,
``mcse(method="mean")`` and ``mcse(method="sd")`` (Vehtari et al. 2021), equal to ArviZ's to
floating-point summation order (tests/test_diagnostics_fast.py). The estimators of one
dimension are :mod:`ppl_ebm.diagnostics.estimators`'s (packed-key sort ranks, tabulated
scores, merged folded ranks, one batched FFT per ESS, per-thread scratch); this module runs
them over dimensions:

* Dimensions are independent: two worker threads (NumPy's sort and SciPy's FFT release
  the GIL) and one reader thread that copies the next block of dimensions while the
  workers diagnose this one, so a memory-mapped ``(chain, draw, dim)`` array larger than
  memory streams through.

5000 x 1000 x 128 float32 on 2 cores: 58 s and 5.0 GB peak (the 2.6 GB of mapped draws
included) against ArviZ's ~900 s (``python diagnostics/benchmark_diagnostics.py``).

Inputs must be finite (:func:`ppl_ebm.diagnostics.summary.summarize` drops non-finite chains
first) with at least 4 draws; R-hat is NaN for a single chain, as in ArviZ. The ArviZ engine,
the reference these numbers are tested against, is :mod:`ppl_ebm.diagnostics.arviz_engine`.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ppl_ebm.diagnostics.estimators import KEYS, MIN_DRAWS, clear_tables, column_diagnostics

__all__ = ["KEYS", "diagnose"]


def diagnose(
    draws: np.ndarray,
    *,
    chains: np.ndarray | None = None,
    block_bytes: int = 1 << 28,
    workers: int = 2,
    progress_bar: bool = False,
) -> dict[str, np.ndarray]:
    """ESS bulk/tail, rank R-hat, MCSE of the mean and sd, and IAT per dimension, on all chains.

    Parameters
    ----------
    draws
        ``(chain, draw, dim)`` array (float32 is fastest; a ``numpy.memmap`` streams).
        Finite (on the chains used), at least 4 draws.
    chains
        Indices of the chains to diagnose (sorted, no repeats); all when None. Read block
        by block, so a subset never needs a copy of all its draws.
    block_bytes
        Bytes of draws read at a time (a block of dimensions, all chains).
    workers
        Threads working on different dimensions.
    progress_bar
        Show a progress bar over dimensions.

    Returns
    -------
    dict
        ``ess_bulk``, ``ess_tail``, ``rhat``, ``mcse_mean``, ``mcse_sd``, ``iat``, each ``(dim,)``.
    """
    from tqdm.auto import tqdm

    if draws.ndim != 3:
        raise ValueError(f"draws must be shaped (chain, draw, dim); got {draws.shape}.")
    n_chain, n_draw, dim = draws.shape
    if chains is not None:
        chains = np.asarray(chains, dtype=np.intp)
        n_chain = chains.size
    if n_draw < MIN_DRAWS:
        raise ValueError(f"diagnostics need >= {MIN_DRAWS} draws per chain (as ArviZ); got {n_draw}.")
    if draws.dtype not in (np.float32, np.float64):
        draws = draws.astype(np.float64)
    out = {key: np.full(dim, np.nan) for key in KEYS}
    per_block = max(1, int(block_bytes) // (draws.itemsize * n_chain * n_draw))

    def work(d, column):
        for key, value in column_diagnostics(column).items():
            out[key][d] = value

    def read(d0):
        # One strided copy straight into (dim, chain, draw) order: each column is contiguous.
        source = draws[:, :, d0 : d0 + per_block] if chains is None else draws[chains, :, d0 : d0 + per_block]
        columns = np.empty((source.shape[2], n_chain, n_draw), dtype=draws.dtype)
        np.copyto(columns, source.transpose(2, 0, 1))
        if not np.isfinite(columns).all():
            raise ValueError("draws contain non-finite values; drop those chains first "
                             "(ppl_ebm.diagnostics.summary.summarize does).")
        return columns

    # One thread reads the next block of dimensions while the workers diagnose this one, and
    # dimensions are queued across blocks, so no worker waits for a block to finish or load.
    starts = list(range(0, dim, per_block))
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool, ThreadPoolExecutor(1) as reader, tqdm(
        total=dim, disable=not progress_bar, desc="diagnostics", unit="dim"
    ) as bar:
        running: deque = deque()
        next_block = reader.submit(read, starts[0])
        for i, d0 in enumerate(starts):
            columns = next_block.result()
            if i + 1 < len(starts):
                next_block = reader.submit(read, starts[i + 1])
            running.extend(pool.submit(work, d0 + j, c) for j, c in enumerate(columns))
            del columns
            while len(running) > per_block:  # at most about two blocks of columns in memory
                running.popleft().result()
                bar.update(1)
        while running:
            running.popleft().result()
            bar.update(1)
    clear_tables()
    return out
