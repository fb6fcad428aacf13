"""ArviZ's convergence diagnostics, computed fast enough for thousands of chains.

:func:`diagnose` returns, per latent dimension, the same numbers as ArviZ 0.23's
``ess(method="bulk")``, ``ess(method="tail")``, ``rhat(method="rank")``,
``mcse(method="mean")`` and ``mcse(method="sd")`` (Vehtari et al. 2021) on *all* chains —
equal to ArviZ's to floating-point summation order (tests/test_diagnostics_fast.py) — for
runs where ArviZ itself would take minutes (5000 chains x 1000 draws x 128 dims:
diagnostics/benchmark_diagnostics.py). The estimators are the same; what changes is how:

* **Ranks by one integer sort.** A float32 draw maps to an order-preserving 32-bit key;
  key << 32 | position sorts as one uint64 array with NumPy's SIMD sort (~10x faster
  than ``argsort``), giving the order and the permutation together. Without ties the
  normal scores of ranks 1..N are the same for every dimension, so
  ``norm.ppf((r - 3/8) / (N + 1/4))`` is computed once and scattered; ties fall back to
  average ranks exactly as ``scipy.stats.rankdata(method="average")``.
* **Folded ranks by merging.** ``|x - median|`` is two already-sorted runs of the sorted
  draws (below and above the median), ranked against each other with ``searchsorted``
  instead of a second sort.
* **One inverse FFT per ESS.** ArviZ averages the chains' autocovariances; the average
  of inverse FFTs is the inverse FFT of the averaged periodogram, so each ESS costs one
  batched forward FFT over the chains and one inverse FFT of length 2n.
* Dimensions are independent: two worker threads (NumPy's sort and SciPy's FFT release
  the GIL), and the draws are read in blocks of dimensions, so a memory-mapped
  ``(chain, draw, dim)`` array larger than memory streams through.

Inputs must be finite (:func:`ppl_ebm.diagnostics.summarize` drops non-finite chains
first) with at least 4 draws; R-hat is NaN for a single chain, as in ArviZ.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy import stats

__all__ = ["diagnose", "arviz_reference", "KEYS"]

#: Per-dimension outputs of :func:`diagnose`, as :func:`ppl_ebm.diagnostics.summarize` names them.
KEYS = ("ess_bulk", "ess_tail", "rhat", "mcse_mean", "mcse_sd", "iat")
_BLOM = 3.0 / 8.0


@lru_cache(maxsize=4)
def _normal_scores(size: int) -> np.ndarray:
    """Normal scores of the ranks 1..size without ties (ArviZ's ``_z_scale``)."""
    ranks = np.arange(1, size + 1, dtype=np.float64)
    return stats.norm.ppf((ranks - _BLOM) / (size - 2 * _BLOM + 1))


def _scores_of_ranks(ranks: np.ndarray, size: int) -> np.ndarray:
    """Normal scores of (average) ranks among ``size`` values."""
    return stats.norm.ppf((ranks - _BLOM) / (size - 2 * _BLOM + 1))


@lru_cache(maxsize=4)
def _positions(size: int) -> np.ndarray:
    return np.arange(size, dtype=np.uint32)


def _sort_with_permutation(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values (float64) and the permutation that sorts them; stable."""
    if values.dtype != np.float32 or values.size >= 1 << 32:
        order = np.argsort(values, kind="stable")
        return values[order].astype(np.float64), order
    # IEEE floats map onto order-preserving unsigned ints by flipping every bit of a
    # negative and the sign bit of a positive; (key << 32 | position) then sorts as uint64.
    bits = values.view(np.uint32)
    flip = (bits >> np.uint32(31)) * np.uint32(0x7FFFFFFF) | np.uint32(0x80000000)
    keys = np.empty(values.size, dtype=np.uint64)
    halves = keys.view(np.uint32).reshape(-1, 2)
    low, high = (0, 1) if np.little_endian else (1, 0)
    halves[:, high] = bits ^ flip
    halves[:, low] = _positions(values.size)
    keys.sort()
    order = halves[:, low].astype(np.intp)
    sorted_keys = halves[:, high]
    unflip = ((sorted_keys >> np.uint32(31)) ^ np.uint32(1)) * np.uint32(0x7FFFFFFF) | np.uint32(0x80000000)
    return (sorted_keys ^ unflip).view(np.float32).astype(np.float64), order


def _scores_of_sorted(sorted_values: np.ndarray) -> np.ndarray:
    """Normal scores of the average ranks (``rankdata(method="average")``) of sorted values.

    Untied values have ranks 1..N, whose scores are the same for every dimension (cached);
    only the members of tie groups get their average rank's score computed.
    """
    size = sorted_values.size
    grid = _normal_scores(size)
    tied = np.flatnonzero(sorted_values[1:] == sorted_values[:-1])
    if tied.size == 0:
        return grid
    in_group = np.zeros(size, dtype=bool)
    in_group[tied] = True
    in_group[tied + 1] = True
    members = np.flatnonzero(in_group)
    values = sorted_values[members]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])  # sorted: equal values are adjacent
    counts = np.diff(np.r_[starts, members.size])
    average_rank = np.repeat(members[starts] + (counts + 1) / 2.0, counts)
    scores = grid.copy()
    scores[members] = _scores_of_ranks(average_rank, size)
    return scores


def _folded_scores(sorted_values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Normal scores of ``|x - median(x)|`` in the original layout (ArviZ's folded R-hat).

    The distances below the median, reversed, and those at or above it are two sorted runs;
    one ``searchsorted`` places the first run in the merged order, the rest fill the gaps.
    """
    size = sorted_values.size
    middle = size // 2
    median = sorted_values[middle] if size % 2 else (sorted_values[middle - 1] + sorted_values[middle]) / 2.0
    below = int(np.searchsorted(sorted_values, median, side="left"))
    lower = (median - sorted_values[:below])[::-1]
    upper = sorted_values[below:] - median
    lower_position = np.arange(below) + np.searchsorted(upper, lower, side="left")
    is_lower = np.zeros(size, dtype=bool)
    is_lower[lower_position] = True
    merged = np.empty(size, dtype=np.float64)
    merged[lower_position] = lower
    merged[~is_lower] = upper
    merged_scores = _scores_of_sorted(merged)
    scores = np.empty(size, dtype=np.float64)
    scores[order[:below][::-1]] = merged_scores[lower_position]
    scores[order[below:]] = merged_scores[~is_lower]
    return scores


def _rhat(chains: np.ndarray) -> float:
    """ArviZ's ``_rhat`` of a (chain, draw) array."""
    n = chains.shape[1]
    between = n * np.var(chains.mean(axis=1), ddof=1)
    within = np.mean(np.var(chains, axis=1, ddof=1))
    return float(np.sqrt((between / within + n - 1) / n))


def _ess(chains: np.ndarray) -> float:
    """ArviZ's ``_ess`` of a (chain, draw) float64 array: Geyer's initial monotone sequence."""
    if np.max(chains) - np.min(chains) < np.finfo(float).resolution:
        return float(chains.size)
    m, n = chains.shape
    chain_mean = chains.mean(axis=1)
    size = scipy.fft.next_fast_len(2 * n)
    padded = np.zeros((m, size))
    np.subtract(chains, chain_mean[:, None], out=padded[:, :n])
    spectrum = scipy.fft.rfft(padded, axis=1, overwrite_x=True).view(np.float64)
    np.square(spectrum, out=spectrum)
    parts = spectrum.sum(axis=0) / m  # mean over chains of |F|^2, as (re^2, im^2) pairs
    acov = scipy.fft.irfft(parts[0::2] + parts[1::2], n=size)[:n] / n  # mean of the chains' autocovariances
    mean_var = acov[0] * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus += np.var(chain_mean, ddof=1)
    rho = (1.0 - (mean_var - acov) / var_plus).tolist()
    # Geyer's initial positive then monotone sequence, step for step as ArviZ.
    rho_t = [0.0] * n
    rho_even, rho_odd = 1.0, rho[1]
    rho_t[0], rho_t[1] = rho_even, rho_odd
    t = 1
    while t < n - 3 and rho_even + rho_odd > 0.0:
        rho_even, rho_odd = rho[t + 1], rho[t + 2]
        if rho_even + rho_odd >= 0:
            rho_t[t + 1], rho_t[t + 2] = rho_even, rho_odd
        t += 2
    max_t = t - 2
    if rho_even > 0:
        rho_t[max_t + 1] = rho_even
    t = 1
    while t <= max_t - 2:
        if rho_t[t + 1] + rho_t[t + 2] > rho_t[t - 1] + rho_t[t]:
            rho_t[t + 1] = (rho_t[t - 1] + rho_t[t]) / 2.0
            rho_t[t + 2] = rho_t[t + 1]
        t += 2
    ess = m * n
    tau = -1.0 + 2.0 * np.sum(rho_t[: max_t + 1]) + np.sum(rho_t[max_t + 1 : max_t + 2])
    tau = max(tau, 1 / np.log10(ess))
    return float(ess / tau)


def _type7_quantile(sorted_values: np.ndarray, prob: float) -> float:
    """``scipy.stats.mstats.mquantiles(alphap=1, betap=1)`` (R type 7) on sorted values."""
    n = sorted_values.size
    aleph = n * prob + (1.0 - prob)
    k = math.floor(min(max(aleph, 1), n - 1))
    gamma = min(max(aleph - k, 0.0), 1.0)
    return float((1.0 - gamma) * sorted_values[k - 1] + gamma * sorted_values[k])


def _split(chains: np.ndarray) -> np.ndarray:
    half = chains.shape[1] // 2
    return np.concatenate([chains[:, :half], chains[:, chains.shape[1] - half :]])


def _one_dimension(column: np.ndarray) -> dict[str, float]:
    """All diagnostics of one (chain, draw) column."""
    split = _split(column)
    flat_sorted, order = _sort_with_permutation(split.ravel())
    size = flat_sorted.size
    scores = np.empty(size, dtype=np.float64)
    scores[order] = _scores_of_sorted(flat_sorted)
    scores = scores.reshape(split.shape)
    folded = _folded_scores(flat_sorted, order).reshape(split.shape)
    # ArviZ needs two chains for R-hat (before splitting).
    rhat = max(_rhat(scores), _rhat(folded)) if column.shape[0] > 1 else float("nan")
    out = {"ess_bulk": _ess(scores), "rhat": rhat}
    del scores, folded
    # Tail quantiles are of the unsplit draws: the same multiset unless the draw count is odd.
    full_sorted = flat_sorted if split.size == column.size else np.sort(column.ravel()).astype(np.float64)
    low, high = (_type7_quantile(full_sorted, p) for p in (0.05, 0.95))
    del flat_sorted, order, full_sorted
    out["ess_tail"] = min(_ess(_split(column <= low).astype(np.float64)),
                          _ess(_split(column <= high).astype(np.float64)))
    values = column.astype(np.float64)
    ess_mean = _ess(_split(values))
    out["mcse_mean"] = float(np.std(values, ddof=1) / np.sqrt(ess_mean))
    out["iat"] = float(values.size / ess_mean)
    squares = (values - values.mean()) ** 2
    evar = squares.mean()
    varvar = ((squares**2).mean() - evar**2) / _ess(_split(squares))
    out["mcse_sd"] = float(np.sqrt(varvar / evar / 4))
    return out


def diagnose(
    draws: np.ndarray,
    *,
    workers: int = 2,
    block_bytes: int = 1 << 28,
    progress_bar: bool = False,
) -> dict[str, np.ndarray]:
    """ESS bulk/tail, rank R-hat, MCSE of the mean and sd, and IAT per dimension, on all chains.

    Parameters
    ----------
    draws
        ``(chain, draw, dim)`` array (float32 is fastest; a ``numpy.memmap`` streams).
        Finite, at least 4 draws.
    workers
        Threads working on different dimensions.
    block_bytes
        Bytes of draws read at a time (a block of dimensions, all chains).
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
    if n_draw < 4:
        raise ValueError(f"diagnostics need >= 4 draws per chain (as ArviZ); got {n_draw}.")
    if draws.dtype not in (np.float32, np.float64):
        draws = draws.astype(np.float64)
    out = {key: np.full(dim, np.nan) for key in KEYS}
    per_block = max(1, int(block_bytes) // (draws.itemsize * n_chain * n_draw))

    def work(d, column):
        for key, value in _one_dimension(column).items():
            out[key][d] = value

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool, tqdm(
        total=dim, disable=not progress_bar, desc="diagnostics", unit="dim"
    ) as bar:
        for d0 in range(0, dim, per_block):
            block = np.asarray(draws[:, :, d0 : d0 + per_block])
            columns = [np.ascontiguousarray(block[:, :, j]) for j in range(block.shape[2])]
            del block
            if not all(np.isfinite(c).all() for c in columns):
                raise ValueError("draws contain non-finite values; drop those chains first "
                                 "(ppl_ebm.diagnostics.summarize does).")
            for future in [pool.submit(work, d0 + j, c) for j, c in enumerate(columns)]:
                future.result()
                bar.update(1)
    return out


def arviz_reference(draws: np.ndarray) -> dict[str, np.ndarray]:
    """The same quantities by ArviZ's own functions (through :mod:`ppl_ebm.arviz_compat`): the
    reference :func:`diagnose` is tested against. Slow on thousands of chains."""
    from ppl_ebm import arviz_compat
    from ppl_ebm.diagnostics import integrated_autocorrelation_time

    block = np.asarray(draws, dtype=np.float64)
    return {
        "ess_bulk": arviz_compat.ess(block, "bulk"),
        "ess_tail": arviz_compat.ess(block, "tail"),
        "rhat": arviz_compat.rhat(block, "rank"),
        "mcse_mean": arviz_compat.mcse(block, "mean"),
        "mcse_sd": arviz_compat.mcse(block, "sd"),
        "iat": integrated_autocorrelation_time(block),
    }
