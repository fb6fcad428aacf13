"""ArviZ 0.23's convergence estimators for one ``(chain, draw)`` column, reimplemented to be
fast on thousands of chains: ``ess(method="bulk")``, ``ess(method="tail")``,
``rhat(method="rank")``, ``mcse(method="mean")``, ``mcse(method="sd")`` and the IAT
(Vehtari et al. 2021), equal to ArviZ's to floating-point summation order
(tests/test_diagnostics_fast.py). NumPy and SciPy only: it imports nothing from ppl_ebm, so
both engines of :func:`ppl_ebm.diagnostics.summary.summarize` can build on it without
importing each other. The estimators are ArviZ's; what changes is how:

* **Ranks by one sort of packed keys.** A float32 draw maps to an order-preserving 32-bit
  key; key << 31 | position, read as a float64, sorts with NumPy's SIMD sort (~5x faster
  than ``argsort``) and gives the order and the permutation together. The normal scores
  of ranks 1, 1.5, 2, ... N + 0.5 are the same for every dimension, so
  ``norm.ppf((r - 3/8) / (N + 1/4))`` is tabulated once; tied values get their average
  rank's score (``scipy.stats.rankdata(method="average")``) from the same table.
* **Folded ranks by merging.** ``|x - median|`` is two already-sorted runs of the sorted
  draws (below and above the median), merged by a stable (timsort) ``argsort`` in linear
  time instead of a second full sort.
* **One batched FFT per ESS, only as long as needed.** ArviZ averages the chains'
  autocovariances; the average of inverse FFTs is the inverse FFT of the averaged
  periodogram, so each ESS costs one forward FFT per chain (in cache-sized blocks of
  chains) and one inverse FFT. The padding only has to cover the lags Geyer's sequence
  reads: a first guess (a quarter of the draws, then twice the bulk ESS's lags) is
  computed exactly and extended to every lag when the sequence runs past it. Bulk R-hat
  comes from the same sums.
* **No allocation per dimension.** Each thread keeps its scratch arrays (:class:`Workspace`);
  allocating ~1 GB afresh per dimension made the kernel zero pages for a third of the time.

Inputs must be finite with at least 4 draws; R-hat is NaN for a single chain, as in ArviZ.
The threads and blocks over dimensions are :mod:`ppl_ebm.diagnostics.fast`'s.
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache

import numpy as np
import scipy.fft
from scipy import special

__all__ = [
    "KEYS",
    "MIN_DRAWS",
    "Workspace",
    "clear_tables",
    "column_diagnostics",
    "ess_of_chains",
    "sort_with_permutation",
    "workspace",
]

#: Per-dimension outputs of :func:`column_diagnostics`, as
#: :func:`ppl_ebm.diagnostics.summary.summarize` names them.
# Draws per chain the diagnostics need (ArviZ's minimum); both engines refuse fewer.
MIN_DRAWS = 4

KEYS = ("ess_bulk", "ess_tail", "rhat", "mcse_mean", "mcse_sd", "iat")
_BLOM = 3.0 / 8.0
_local = threading.local()


_TABLE_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _score_table(size: int) -> np.ndarray:
    """Normal scores (ArviZ's ``_z_scale``) of the ranks 1, 1.5, 2, ..., size + 0.5 among
    ``size`` values; rank ``r`` is at index ``2 r - 2``. An average rank of tied values is a
    whole or half number, so every score, tied or not, is a lookup here. (``ndtri`` is what
    ``stats.norm.ppf`` computes, bit for bit, without its argument handling.)"""
    ranks = np.arange(2, 2 * size + 2, dtype=np.float64) / 2.0
    return special.ndtri((ranks - _BLOM) / (size - 2 * _BLOM + 1))


@lru_cache(maxsize=2)
def _untied_scores(size: int) -> np.ndarray:
    """The scores of ranks 1..size, contiguous (read on every dimension)."""
    return np.ascontiguousarray(_score_table(size)[0::2])


def _normal_scores(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The tables of :func:`_score_table` and :func:`_untied_scores`."""
    with _TABLE_LOCK:  # the workers would otherwise each build the first table
        return _score_table(size), _untied_scores(size)


@lru_cache(maxsize=2)
def _positions(size: int) -> np.ndarray:
    return np.arange(size, dtype=np.uint64)


class Workspace:
    """One thread's scratch arrays, reused from dimension to dimension.

    A dimension of 5000 x 1000 draws needs about ten arrays of 5 million elements. Allocated
    afresh, each is a new mapping whose pages the kernel zeroes on first touch: that was a
    third of the wall time (as system time) and kept two threads from scaling.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}
        self._padded_shape: tuple[int, int, int] | None = None

    def array(self, name: str, size: int, dtype) -> np.ndarray:
        """A 1-D scratch array ``name`` of ``size`` elements of ``dtype`` (contents undefined)."""
        array = self._arrays.get(name)
        if array is None or array.size != size or array.dtype != dtype:
            array = self._arrays[name] = np.empty(size, dtype=dtype)
        return array

    def padded(self, rows: int, draws: int, size: int) -> np.ndarray:
        """A zeroed ``(rows, size)`` FFT input of which only ``[:, :draws]`` is ever written."""
        if self._padded_shape != (rows, draws, size):
            self._arrays["padded"] = np.zeros((rows, size))
            self._padded_shape = (rows, draws, size)
        return self._arrays["padded"]


def workspace() -> Workspace:
    """The calling thread's :class:`Workspace` (one per thread: the workers run in parallel)."""
    workspace = getattr(_local, "workspace", None)
    if workspace is None:
        workspace = _local.workspace = Workspace()
    return workspace


_U32 = np.uint32


def sort_with_permutation(values: np.ndarray, ws: Workspace) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values (float64) and the permutation that sorts them (stable), in ``ws``'s arrays."""
    size = values.size
    sorted_values = ws.array("sorted", size, np.float64)
    order = ws.array("order", size, np.intp)
    if values.dtype != np.float32 or size >= 1 << 31:
        order[:] = np.argsort(values, kind="stable")
        np.take(values, order, out=sorted_values)
        return sorted_values, order
    # A finite float32 maps onto an order-preserving 32-bit key by flipping every bit of a
    # negative and the sign bit of a positive. key << 31 | position is then a 63-bit integer
    # whose top 11 bits lie in [4, 2043] for every finite float32: read as a float64 it is a
    # normal positive number, and those order exactly as their bit patterns. NumPy's SIMD
    # sort is ~1.4x faster on float64 than on uint64 here, and it gives order and
    # permutation in one sort.
    bits = values.view(_U32)
    word = ws.array("word", size, _U32)
    keys = ws.array("keys", size, np.uint64)
    np.right_shift(bits, _U32(31), out=word)
    np.multiply(word, _U32(0x7FFFFFFF), out=word)
    np.bitwise_or(word, _U32(0x80000000), out=word)
    np.bitwise_xor(bits, word, out=word)
    np.left_shift(word, np.uint64(31), out=keys)
    np.bitwise_or(keys, _positions(size), out=keys)
    keys.view(np.float64).sort()
    np.bitwise_and(keys, np.uint64(0x7FFFFFFF), out=order.view(np.uint64))
    np.right_shift(keys, np.uint64(31), out=keys)
    sorted_keys = ws.array("sorted_keys", size, _U32)
    sorted_keys[:] = keys
    np.right_shift(sorted_keys, _U32(31), out=word)
    np.bitwise_xor(word, _U32(1), out=word)
    np.multiply(word, _U32(0x7FFFFFFF), out=word)
    np.bitwise_or(word, _U32(0x80000000), out=word)
    np.bitwise_xor(sorted_keys, word, out=word)
    sorted_values[:] = word.view(np.float32)
    return sorted_values, order


def _scatter_scores(sorted_values: np.ndarray, positions: np.ndarray, out: np.ndarray) -> None:
    """``out[positions[i]]`` = normal score of the average rank (``rankdata(method="average")``)
    of ``sorted_values[i]``.

    Untied values have ranks 1..N, whose scores are the same for every dimension (a cached
    table); only the members of tie groups are then overwritten with their average rank's
    score, from the same table.
    """
    size = sorted_values.size
    table, untied = _normal_scores(size)
    out[positions] = untied
    tied = np.flatnonzero(sorted_values[1:] == sorted_values[:-1])
    if tied.size == 0:
        return
    in_group = np.zeros(size, dtype=bool)
    in_group[tied] = True
    in_group[tied + 1] = True
    members = np.flatnonzero(in_group)
    values = sorted_values[members]
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])  # sorted: equal values are adjacent
    counts = np.diff(np.r_[starts, members.size])
    # A group of `count` starting at (0-based) position p has average rank p + (count + 1) / 2,
    # whose index in the table is 2 p + count - 1.
    out[positions[members]] = table[np.repeat(2 * members[starts] + counts - 1, counts)]


def _folded_scores(sorted_values: np.ndarray, order: np.ndarray, ws: Workspace, out: np.ndarray) -> None:
    """Normal scores of ``|x - median(x)|`` written to ``out`` in the original layout
    (ArviZ's folded R-hat).

    The distances below the median, reversed, and those at or above it are two sorted runs;
    a stable ``argsort`` (timsort) finds and merges the runs in linear time instead of a
    second full sort.
    """
    size = sorted_values.size
    middle = size // 2
    median = sorted_values[middle] if size % 2 else (sorted_values[middle - 1] + sorted_values[middle]) / 2.0
    below = int(np.searchsorted(sorted_values, median, side="left"))
    distances = ws.array("distances", size, np.float64)
    np.subtract(median, sorted_values[:below][::-1], out=distances[:below])
    np.subtract(sorted_values[below:], median, out=distances[below:])
    merge = np.argsort(distances, kind="stable")
    positions = ws.array("positions", size, np.intp)
    positions[:below] = order[:below][::-1]
    positions[below:] = order[below:]
    merged_positions = np.take(positions, merge, out=ws.array("merged_positions", size, np.intp), mode="clip")
    merged = np.take(distances, merge, out=ws.array("merged", size, np.float64), mode="clip")
    del merge
    _scatter_scores(merged, merged_positions, out)


def _rhat(chains: np.ndarray, ws: Workspace) -> float:
    """ArviZ's ``_rhat`` of a (chain, draw) float64 array (``np.var``'s steps, in scratch)."""
    n = chains.shape[1]
    chain_mean = chains.mean(axis=1)
    between = n * np.var(chain_mean, ddof=1)
    centered = ws.array("centered", chains.size, np.float64).reshape(chains.shape)
    np.subtract(chains, chain_mean[:, None], out=centered)
    within = np.mean(np.einsum("ij,ij->i", centered, centered) / (n - 1))
    return float(np.sqrt((between / within + n - 1) / n))


#: Chains per FFT: a 256 x 1000 float64 block and its spectrum stay in cache.
_FFT_ROWS = 256


def _mean_autocovariance(chains: np.ndarray, chain_mean: np.ndarray, lags: int) -> np.ndarray:
    """The chains' autocovariances averaged over chains, exact at lags ``0..lags``.

    The average of the chains' inverse FFTs is the inverse FFT of their averaged
    periodogram: one forward FFT per chain, one inverse in all. Zero padding to
    ``draws + lags`` (not ``2 * draws``) already keeps the circular correlation from
    wrapping at those lags.
    """
    m, n = chains.shape
    size = scipy.fft.next_fast_len(n + lags, real=True)
    rows = min(m, _FFT_ROWS)
    padded = workspace().padded(rows, n, size)
    power = np.zeros(2 * (size // 2 + 1))  # sum over chains of |F|^2, as (re^2, im^2) pairs
    for r0 in range(0, m, rows):
        block = padded[: min(rows, m - r0)]
        np.subtract(chains[r0 : r0 + rows], chain_mean[r0 : r0 + rows, None], out=block[:, :n])
        spectrum = scipy.fft.rfft(block, axis=1).view(np.float64)
        power += np.einsum("ij,ij->j", spectrum, spectrum)
    power /= m
    return scipy.fft.irfft(power[0::2] + power[1::2], n=size)[: min(n, lags + 1)] / n


def _geyer_tau(rho: list[float], n: int) -> tuple[float, int] | None:
    """ArviZ's Geyer initial positive then monotone sequence, step for step, on the
    autocorrelations ``rho`` (lags ``0..len(rho)-1``): the integrated autocorrelation time
    before ArviZ's floor and the last lag read, or None when it needs a lag beyond ``rho``."""
    available = len(rho) - 1
    rho_t = [0.0] * n
    rho_even, rho_odd = 1.0, rho[1]
    rho_t[0], rho_t[1] = rho_even, rho_odd
    t = 1
    while t < n - 3 and rho_even + rho_odd > 0.0:
        if t + 2 > available:
            return None
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
    tau = -1.0 + 2.0 * np.sum(rho_t[: max_t + 1]) + np.sum(rho_t[max_t + 1 : max_t + 2])
    return tau, max_t + 2


def ess_of_chains(chains: np.ndarray, lags: int | None = None) -> tuple[float, int, float]:
    """ArviZ's ``_ess`` of a (chain, draw) array (any real or bool dtype, computed in float64),
    the last autocorrelation lag it read, and ArviZ's ``_rhat`` of the same array from the same
    sums (NaN for one chain or a constant array).

    ``lags`` is a first guess of how many lags Geyer's sequence reads (default a quarter of
    the draws): the autocovariances are computed exactly that far, and again to every lag
    only if the sequence runs past it, so the answer never depends on the guess.
    """
    low, high = chains.min(), chains.max()
    if float(high) - float(low) < np.finfo(float).resolution:
        return float(chains.size), 0, float("nan")
    m, n = chains.shape
    chain_mean = chains.mean(axis=1, dtype=np.float64)
    between = np.var(chain_mean, ddof=1) if m > 1 else 0.0
    for guess in (max(8, n // 4 if lags is None else lags), n):
        acov = _mean_autocovariance(chains, chain_mean, min(guess, n))
        mean_var = acov[0] * n / (n - 1.0)  # the mean within-chain variance (ddof=1)
        var_plus = mean_var * (n - 1.0) / n + between
        result = _geyer_tau((1.0 - (mean_var - acov) / var_plus).tolist(), n)
        if result is not None:
            break
    tau, last_lag = result
    ess = m * n
    rhat = float(np.sqrt((n * between / mean_var + n - 1) / n)) if m > 1 else float("nan")
    return float(ess / max(tau, 1 / np.log10(ess))), last_lag, rhat


def _type7_quantile(sorted_values: np.ndarray, prob: float) -> float:
    """``scipy.stats.mstats.mquantiles(alphap=1, betap=1)`` (R type 7) on sorted values."""
    n = sorted_values.size
    aleph = n * prob + (1.0 - prob)
    k = math.floor(min(max(aleph, 1), n - 1))
    gamma = min(max(aleph - k, 0.0), 1.0)
    return float((1.0 - gamma) * sorted_values[k - 1] + gamma * sorted_values[k])


def _split(chains: np.ndarray) -> np.ndarray:
    """ArviZ's split chains: each chain's first and second halves (the middle draw of an odd
    count dropped) as separate chains. Every diagnostic here is invariant to the order of
    the chains, so for an even count the halves stay interleaved: a free reshape, no copy."""
    m, n = chains.shape
    half = n // 2
    if n % 2 == 0 and chains.flags.c_contiguous:
        return chains.reshape(2 * m, half)
    return np.concatenate([chains[:, :half], chains[:, n - half :]])


def column_diagnostics(column: np.ndarray) -> dict[str, float]:
    """All diagnostics of one latent dimension, equal to ArviZ 0.23's.

    Parameters
    ----------
    column
        C-contiguous ``(chain, draw)`` draws of one dimension, float32 or float64, finite,
        at least 4 draws.

    Returns
    -------
    dict
        :data:`KEYS` -> float: ESS bulk and tail, rank R-hat (NaN for one chain), MCSE of
        the mean and of the sd, IAT.
    """
    ws = workspace()
    split = _split(column)
    flat_sorted, order = sort_with_permutation(split.ravel(), ws)
    size = flat_sorted.size
    # Tail quantiles are of the unsplit draws: the same multiset unless the draw count is odd.
    full_sorted = flat_sorted if size == column.size else np.sort(column, axis=None).astype(np.float64)
    low, high = (_type7_quantile(full_sorted, p) for p in (0.05, 0.95))
    del full_sorted
    scores = ws.array("scores", size, np.float64)
    _scatter_scores(flat_sorted, order, scores)
    ess_bulk, bulk_lag, rhat_bulk = ess_of_chains(scores.reshape(split.shape))
    out = {"ess_bulk": ess_bulk}
    # The other series of this dimension decorrelate on a similar scale: guess twice the lags.
    lags = max(64, 2 * bulk_lag)
    # ArviZ needs two chains for R-hat (before splitting).
    if column.shape[0] > 1:
        _folded_scores(flat_sorted, order, ws, out=scores)
        out["rhat"] = max(rhat_bulk, _rhat(scores.reshape(split.shape), ws))
    else:
        out["rhat"] = float("nan")
    # np.float64 keeps the comparison in float64, as ArviZ's (a Python float would be cast
    # to float32 draws' type under NumPy 2's promotion rules and could flip a draw's side).
    out["ess_tail"] = min(
        ess_of_chains(split <= np.float64(low), lags)[0], ess_of_chains(split <= np.float64(high), lags)[0]
    )
    ess_mean = ess_of_chains(split, lags)[0]
    # ArviZ's MCSE of the sd: squared deviations from the overall mean, in float64.
    squares = ws.array("squares", column.size, np.float64).reshape(column.shape)
    np.subtract(column, column.mean(dtype=np.float64), out=squares)
    np.multiply(squares, squares, out=squares)
    sum_squares = squares.sum()  # NumPy scalars: a constant dimension gives NaN, as in ArviZ
    out["mcse_mean"] = float(np.sqrt(sum_squares / (column.size - 1)) / np.sqrt(ess_mean))
    out["iat"] = column.size / ess_mean
    evar = sum_squares / column.size
    flat = squares.ravel()
    varvar = (np.einsum("i,i->", flat, flat) / column.size - evar**2) / ess_of_chains(_split(squares), lags)[0]
    out["mcse_sd"] = float(np.sqrt(varvar / evar / 4))
    return out


def clear_tables() -> None:
    """Drop the cached score tables and positions (~120 MB at 5000 x 1000 draws): not worth
    holding between calls of a diagnostics run."""
    for cached in (_score_table, _untied_scores, _positions):
        cached.cache_clear()
