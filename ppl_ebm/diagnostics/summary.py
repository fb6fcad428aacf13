"""Sampler diagnostics: arrays first, ArviZ underneath.

Every number here comes from one of two engines with one signature (:data:`ENGINES`):
ArviZ's own estimators (:mod:`ppl_ebm.diagnostics.arviz_engine`, through
:mod:`ppl_ebm.diagnostics.arviz_compat`, ArviZ 0.23 or 1.x), or with ``engine="fast"`` the same
estimators reimplemented for thousands of chains (:mod:`ppl_ebm.diagnostics.fast` over
:mod:`ppl_ebm.diagnostics.estimators`, tested equal to ArviZ's): rank-normalised split R-hat, bulk and
tail ESS (Vehtari et al. 2021) and the Monte Carlo standard errors of the mean and the
standard deviation. This module adds what sampler comparisons need on top: the
integrated autocorrelation time, chain subsampling for runs with thousands of chains
(with an extrapolated ESS so that runs of different sizes compare fairly), per-second
and per-gradient efficiencies, and a comparison table.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC. *Bayesian Analysis* 16(2), 667-718.

Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science* 7(4),
473-483.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ppl_ebm.diagnostics import arviz_engine, fast
from ppl_ebm.diagnostics.arviz_engine import integrated_autocorrelation_time
from ppl_ebm.diagnostics.estimators import KEYS
from ppl_ebm.result import Record

__all__ = [
    "integrated_autocorrelation_time",
    "summarize",
    "Summary",
    "compare",
    "format_table",
    "COMPARE_COLUMNS",
    "DEFAULT_CHUNK_BYTES",
    "ENGINES",
]

#: ``summarize``'s engines by name: each is ``diagnose(draws, *, chains, block_bytes)`` on a
#: ``(chain, draw, dim)`` array, returning a ``(dim,)`` array per name in ``estimators.KEYS``.
ENGINES: dict[str, Callable[..., dict[str, np.ndarray]]] = {
    "arviz": arviz_engine.diagnose,
    "fast": fast.diagnose,
}

#: Columns of :func:`compare`, in order.
COMPARE_COLUMNS: tuple[str, ...] = (
    "sampler",
    "backend",
    "chains",
    "chains_used",
    "chains_usable",
    "draws",
    "ess_bulk_min",
    "ess_bulk_median",
    "ess_tail_min",
    "rhat_max",
    "mcse_mean_max",
    "acceptance_mean",
    "divergences",
    "nonfinite",
    "grad_evals",
    "wall_seconds",
    "ess_per_second",
    "ess_per_second_no_compile",
    "ess_per_second_sampling",
    "ess_per_grad",
    "subsampled",
)

#: Default memory budget (bytes of float64) of one block of dimensions in :func:`summarize`.
DEFAULT_CHUNK_BYTES = 1 << 27  # 128 MiB


# ----------------------------------------------------------------------------- summarize


@dataclass(frozen=True, eq=False)
class Summary(Record):
    """What :func:`summarize` returns: typed fields, read as well as the dict it replaced
    (``summary["rhat_max"]``, ``summary.get("sampler")``; a read-only mapping, see
    :class:`~ppl_ebm.result.Record`). :meth:`~ppl_ebm.result.Record.to_json` gives a JSON-able
    dict.

    Attributes
    ----------
    ess_bulk, ess_tail, rhat, mcse_mean, mcse_sd, iat : numpy.ndarray
        Per dimension, ``(dim,)``: bulk ESS, ESS of the 5%/95% quantiles, rank-normalised
        split R-hat, MCSE of the mean and of the standard deviation, integrated
        autocorrelation time; on the chains used.
    ess_bulk_min, ess_bulk_median, ess_tail_min, ess_tail_median, rhat_max, mcse_mean_max, \
mcse_sd_max, iat_max, iat_median : float
        Aggregates over dimensions, on the chains used (NaN propagates).
    scale : float
        Usable chains / chains used (1.0 without subsampling).
    ess_bulk_min_scaled, ess_bulk_median_scaled, ess_tail_min_scaled, ess_tail_median_scaled, \
mcse_mean_max_scaled : float
        The same extrapolated to all usable chains (equal to the plain ones without
        subsampling); see :func:`summarize`'s Notes.
    ess_per_second, ess_per_second_no_compile, ess_per_second_sampling, ess_per_grad : float
        ``ess_bulk_min_scaled`` per wall second (the whole call), per wall second less
        ``compile_seconds`` (NaN where compile is not measured), per sampling second, per
        gradient evaluation.
    grad_evals : int or float
        Gradient evaluations of the whole run (NaN when unknown).
    wall_seconds, sampling_seconds : float
        Cost of the run (NaN when unknown).
    chains_total, chains_nonfinite, chains_used : int
        Chains in the run, those left out for non-finite draws, those diagnosed.
    subsampled : bool
        Whether ``chains_used`` is a random subset of the usable chains.
    draws, dim : int
        Draws per chain; flattened event size.
    event_shape : tuple of int
        The event shape of one draw.
    sampler, backend : str or None
        Only for a :class:`~ppl_ebm.result.SampleResult`: what produced it.
    acceptance_mean : float or None
        Only for a SampleResult: mean of ``stats["acceptance"]`` over chains (NaN if absent).
    divergences, nonfinite : int or float or None
        Only for a SampleResult: sums over chains (NaN if absent).
    """

    ess_bulk: np.ndarray
    ess_tail: np.ndarray
    rhat: np.ndarray
    mcse_mean: np.ndarray
    mcse_sd: np.ndarray
    iat: np.ndarray
    ess_bulk_min: float
    ess_bulk_median: float
    ess_tail_min: float
    ess_tail_median: float
    rhat_max: float
    mcse_mean_max: float
    mcse_sd_max: float
    iat_max: float
    iat_median: float
    scale: float
    ess_bulk_min_scaled: float
    ess_bulk_median_scaled: float
    ess_tail_min_scaled: float
    ess_tail_median_scaled: float
    mcse_mean_max_scaled: float
    ess_per_second: float
    ess_per_second_no_compile: float
    ess_per_second_sampling: float
    ess_per_grad: float
    grad_evals: int | float
    wall_seconds: float
    sampling_seconds: float
    chains_total: int
    chains_nonfinite: int
    chains_used: int
    subsampled: bool
    draws: int
    dim: int
    event_shape: tuple[int, ...]
    sampler: str | None = None
    backend: str | None = None
    acceptance_mean: float | None = None
    divergences: int | float | None = None
    nonfinite: int | float | None = None


def _is_sample_result(obj: Any) -> bool:
    return hasattr(obj, "latents") and hasattr(obj, "stats")


def _finite_chain_mask(latents: np.ndarray, block_bytes: int) -> np.ndarray:
    """Chains whose draws are all finite, checked in blocks of chains."""
    n_chain = latents.shape[0]
    per_chain = max(1, int(np.prod(latents.shape[1:])))
    step = max(1, block_bytes // per_chain)
    mask = np.empty(n_chain, dtype=bool)
    for c0 in range(0, n_chain, step):
        block = latents[c0 : c0 + step]
        mask[c0 : c0 + step] = np.isfinite(block).reshape(block.shape[0], -1).all(axis=1)
    return mask


def _float_or_nan(value: Any) -> float:
    if value is None:
        return math.nan
    return float(value)


def _stat_sum(stats: Mapping[str, Any], key: str) -> int | float:
    value = stats.get(key)
    if value is None:
        return math.nan
    return int(np.sum(value))


def _safe_div(num: float, den: float) -> float:
    if den is None or not np.isfinite(den) or den <= 0 or not np.isfinite(num):
        return math.nan
    return float(num) / float(den)


def summarize(
    result_or_latents: Any,
    *,
    wall_seconds: float | None = None,
    grad_evals: int | np.ndarray | None = None,
    sampling_seconds: float | None = None,
    max_chains: int | None = 1000,
    seed: int = 0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    engine: str = "arviz",
) -> Summary:
    """Per-dimension and aggregate diagnostics of one run.

    Parameters
    ----------
    result_or_latents
        A :class:`ppl_ebm.result.SampleResult` or an array ``(chain, draw, *event)``
        (event dimensions are flattened).
    wall_seconds, grad_evals, sampling_seconds
        Cost of the run. Taken from ``result.stats`` (``"wall_seconds"``,
        ``"grad_evals"`` summed over chains, ``"sampling_seconds"``) when not given;
        given values win. ``grad_evals`` may be a total or a per-chain array (summed).
        Always the cost of the *whole* run, all chains.
    max_chains
        When the run has more usable chains than this, ESS, R-hat and MCSE are computed
        on ``max_chains`` chains drawn at random without replacement
        (``numpy.random.default_rng(seed)``) and the result says so
        (``subsampled=True``). ``None`` disables subsampling.
    seed
        Seed of the chain subset.
    chunk_bytes
        Memory bound (float64 bytes) of one block of dimensions handed to ArviZ.
    engine
        ``"arviz"``: ArviZ's own functions, block by block
        (:func:`ppl_ebm.diagnostics.arviz_engine.diagnose`). ``"fast"``: the same estimators
        by :func:`ppl_ebm.diagnostics.fast.diagnose` (equal to ArviZ's to rounding; minutes
        faster on thousands of chains, reads a memory-mapped run in blocks); use it with
        ``max_chains=None`` to diagnose every chain of a large run.

    Returns
    -------
    Summary
        A record read like a dict (``summary["rhat_max"]``). Per dimension (arrays of shape ``(dim,)``, ``dim`` = product of event shape):
        ``ess_bulk``, ``ess_tail`` (ESS of the 5%/95% quantiles), ``rhat``
        (rank-normalised split R-hat), ``mcse_mean``, ``mcse_sd``, ``iat``
        (see :func:`integrated_autocorrelation_time`). All on the chains used.

        Aggregates: ``ess_bulk_min``, ``ess_bulk_median``, ``ess_tail_min``,
        ``ess_tail_median``, ``rhat_max``, ``mcse_mean_max``, ``mcse_sd_max``,
        ``iat_max``, ``iat_median`` (on the chains used; NaN propagates, so one
        undefined dimension shows); ``ess_bulk_min_scaled``,
        ``ess_bulk_median_scaled``, ``ess_tail_min_scaled``, ``ess_tail_median_scaled``,
        ``mcse_mean_max_scaled`` and ``scale`` (see Notes); ``ess_per_second`` =
        ``ess_bulk_min_scaled / wall_seconds``; ``ess_per_second_no_compile`` the same over
        ``wall_seconds - compile_seconds`` (NaN where compile is not measured apart);
        ``ess_per_second_sampling`` =
        ``ess_bulk_min_scaled / sampling_seconds`` (excludes compile and warmup);
        ``ess_per_grad`` = ``ess_bulk_min_scaled / grad_evals`` (total over all chains,
        warmup included); ``grad_evals``, ``wall_seconds``, ``sampling_seconds``
        (NaN when unknown); ``chains_total``, ``chains_nonfinite``, ``chains_used``,
        ``subsampled``, ``draws``, ``dim``, ``event_shape``; and, only for a SampleResult,
        ``sampler``, ``backend``, ``acceptance_mean`` (mean over chains),
        ``divergences``, ``nonfinite`` (sums over chains); for an array these are absent
        keys (``None`` fields), as is a SampleResult's ``sampler`` or ``backend`` that is None.

    Notes
    -----
    *Non-finite chains.* A chain holding any non-finite draw (e.g. a ULA chain stopped
    by a non-finite potential) would make every ArviZ estimate NaN; such chains are
    left out and counted in ``chains_nonfinite``. The usable chains are the others.

    *Subsampling and scaling.* The ESS of ``n`` of ``K`` usable chains is about
    ``n/K`` of the ESS of all of them. ``scale = K / n`` (1.0 without subsampling) and
    ``ess_*_scaled = ess_* * scale`` extrapolates the subset's ESS to all usable chains;
    ``mcse_mean_max_scaled = mcse_mean_max / sqrt(scale)`` likewise. This estimate is
    valid when the chains are independent and identically behaved (independent
    initialisations, same kernel), which is the case for the batched samplers here;
    it does not hold for chains that interact. The per-second and per-gradient
    efficiencies use the scaled ESS, so runs with different chain counts are compared
    on the draws they actually produced for the cost they actually paid. Without
    subsampling the scaled values equal the unscaled ones. R-hat is not scaled.

    References
    ----------
    Vehtari et al. (2021), Bayesian Analysis 16(2), 667-718.
    """
    stats: Mapping[str, Any] = {}
    info: dict[str, Any] = {}  # Summary's SampleResult-only fields
    if _is_sample_result(result_or_latents):
        latents = np.asarray(result_or_latents.latents)
        stats = result_or_latents.stats or {}
        acc = stats.get("acceptance")
        info = dict(
            sampler=getattr(result_or_latents, "sampler", None),
            backend=getattr(result_or_latents, "backend", None),
            acceptance_mean=math.nan if acc is None else float(np.mean(acc)),
            divergences=_stat_sum(stats, "divergences"),
            nonfinite=_stat_sum(stats, "nonfinite"),
        )
    else:
        latents = np.asarray(result_or_latents)
    if latents.ndim < 2:
        raise ValueError(f"latents must have shape (chain, draw, *event); got {latents.shape}")
    event_shape = tuple(latents.shape[2:])
    n_chain, n_draw = latents.shape[:2]
    dim = int(np.prod(event_shape)) if event_shape else 1
    latents = latents.reshape(n_chain, n_draw, dim)

    if wall_seconds is None:
        wall_seconds = stats.get("wall_seconds")
    if sampling_seconds is None:
        sampling_seconds = stats.get("sampling_seconds")
    # Compile time, when measured, of the run's own wall clock (not of a wall_seconds given here).
    compile_seconds = _float_or_nan(stats.get("compile_seconds")) if "wall_seconds" in stats else math.nan
    if grad_evals is None:
        grad_evals = stats.get("grad_evals")
    total_grads = math.nan if grad_evals is None else int(np.sum(grad_evals))
    wall = _float_or_nan(wall_seconds)
    sampling = _float_or_nan(sampling_seconds)

    # Usable chains, then the (seeded) subset.
    finite = _finite_chain_mask(latents, chunk_bytes)
    usable = np.flatnonzero(finite)
    n_usable = usable.size
    if max_chains is not None and n_usable > max_chains:
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(usable, size=int(max_chains), replace=False))
        subsampled = True
    else:
        chosen = usable
        subsampled = False
    n_used = chosen.size
    scale = n_usable / n_used if n_used else math.nan
    all_chains = n_used == n_chain

    if engine not in ENGINES:
        raise ValueError(f"engine must be 'arviz' or 'fast', got {engine!r}.")
    per_dim = {key: np.full(dim, np.nan) for key in KEYS}
    if n_used:
        per_dim.update(ENGINES[engine](latents, chains=None if all_chains else chosen, block_bytes=chunk_bytes))

    def _agg(fn, key):
        return float(fn(per_dim[key])) if dim else math.nan

    ess_bulk_min = _agg(np.min, "ess_bulk")
    ess_bulk_median = _agg(np.median, "ess_bulk")
    ess_tail_min = _agg(np.min, "ess_tail")
    ess_tail_median = _agg(np.median, "ess_tail")
    mcse_mean_max = _agg(np.max, "mcse_mean")
    ess_ref = ess_bulk_min * scale  # ess_bulk_min_scaled: the efficiencies' numerator
    return Summary(
        ess_bulk=per_dim["ess_bulk"],
        ess_tail=per_dim["ess_tail"],
        rhat=per_dim["rhat"],
        mcse_mean=per_dim["mcse_mean"],
        mcse_sd=per_dim["mcse_sd"],
        iat=per_dim["iat"],
        ess_bulk_min=ess_bulk_min,
        ess_bulk_median=ess_bulk_median,
        ess_tail_min=ess_tail_min,
        ess_tail_median=ess_tail_median,
        rhat_max=_agg(np.max, "rhat"),
        mcse_mean_max=mcse_mean_max,
        mcse_sd_max=_agg(np.max, "mcse_sd"),
        iat_max=_agg(np.max, "iat"),
        iat_median=_agg(np.median, "iat"),
        scale=float(scale),
        ess_bulk_min_scaled=ess_ref,
        ess_bulk_median_scaled=ess_bulk_median * scale,
        ess_tail_min_scaled=ess_tail_min * scale,
        ess_tail_median_scaled=ess_tail_median * scale,
        mcse_mean_max_scaled=mcse_mean_max / math.sqrt(scale) if n_used else math.nan,
        ess_per_second=_safe_div(ess_ref, wall),
        ess_per_second_no_compile=_safe_div(ess_ref, wall - compile_seconds),
        ess_per_second_sampling=_safe_div(ess_ref, sampling),
        ess_per_grad=_safe_div(ess_ref, total_grads),
        grad_evals=total_grads,
        wall_seconds=wall,
        sampling_seconds=sampling,
        chains_total=int(n_chain),
        chains_nonfinite=int(n_chain - n_usable),
        chains_used=int(n_used),
        subsampled=bool(subsampled),
        draws=int(n_draw),
        dim=int(dim),
        event_shape=event_shape,
        **info,
    )


# ----------------------------------------------------------------------------- compare


def _summary_of(obj: Any, summarize_kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(obj, Mapping):
        if "ess_bulk_min" in obj:  # already a summarize() output (a Summary, or its to_dict())
            return obj
        if "latents" in obj:
            from ppl_ebm.result import SampleResult

            obj = SampleResult(
                latents=np.asarray(obj["latents"]),
                stats=dict(obj.get("stats") or {}),
                sampler=obj.get("sampler", ""),
                backend=obj.get("backend", ""),
                site=obj.get("site", "z"),
            )
        else:
            raise TypeError(
                "a dict result must be a summarize() output or hold 'latents' "
                "(and optionally 'stats', 'sampler', 'backend')"
            )
    return summarize(obj, **summarize_kwargs)


def compare(results: Mapping[str, Any], **summarize_kwargs: Any):
    """One row of diagnostics per named run.

    Parameters
    ----------
    results
        ``{name: run}``; a run is a :class:`~ppl_ebm.result.SampleResult`, a raw
        ``(chain, draw, *event)`` array, a dict with ``"latents"`` (and optionally
        ``"stats"``, ``"sampler"``, ``"backend"``), or a :func:`summarize` output.
    **summarize_kwargs
        Passed to :func:`summarize` (``max_chains``, ``seed``, ...).

    Returns
    -------
    pandas.DataFrame
        Index: the names. Columns :data:`COMPARE_COLUMNS`. ``chains`` is the number of
        chains of the run, ``chains_usable`` those without non-finite draws and
        ``chains_used`` those the diagnostics were computed on.
        The ESS columns (``ess_bulk_min``, ``ess_bulk_median``, ``ess_tail_min``) and
        ``mcse_mean_max`` are the *scaled* values of :func:`summarize` (equal to the
        plain ones unless ``subsampled``), so rows with different chain counts compare
        fairly; ``ess_per_second``, ``ess_per_second_sampling`` and ``ess_per_grad``
        use the scaled minimum bulk ESS.
    """
    import pandas as pd

    rows = []
    for name, run in results.items():
        s = _summary_of(run, summarize_kwargs)
        rows.append(
            {
                "sampler": s.get("sampler"),
                "backend": s.get("backend"),
                "chains": s.get("chains_total"),
                "chains_used": s.get("chains_used"),
                "chains_usable": s.get("chains_total", 0) - s.get("chains_nonfinite", 0),
                "draws": s.get("draws"),
                "ess_bulk_min": s.get("ess_bulk_min_scaled", s.get("ess_bulk_min")),
                "ess_bulk_median": s.get("ess_bulk_median_scaled", s.get("ess_bulk_median")),
                "ess_tail_min": s.get("ess_tail_min_scaled", s.get("ess_tail_min")),
                "rhat_max": s.get("rhat_max"),
                "mcse_mean_max": s.get("mcse_mean_max_scaled", s.get("mcse_mean_max")),
                "acceptance_mean": s.get("acceptance_mean", math.nan),
                "divergences": s.get("divergences", math.nan),
                "nonfinite": s.get("nonfinite", math.nan),
                "grad_evals": s.get("grad_evals", math.nan),
                "wall_seconds": s.get("wall_seconds", math.nan),
                "ess_per_second": s.get("ess_per_second", math.nan),
                "ess_per_second_no_compile": s.get("ess_per_second_no_compile", math.nan),
                "ess_per_second_sampling": s.get("ess_per_second_sampling", math.nan),
                "ess_per_grad": s.get("ess_per_grad", math.nan),
                "subsampled": bool(s.get("subsampled", False)),
            }
        )
    index = pd.Index(list(results), name="run")
    return pd.DataFrame(rows, index=index, columns=list(COMPARE_COLUMNS))


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value or "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "-"
    if kind == "int":
        return f"{int(round(v)):d}"
    if kind == "ess":
        return f"{v:.0f}" if abs(v) >= 1 else f"{v:.2g}"
    if kind == "fixed3":
        return f"{v:.3f}"
    return f"{v:.3g}"


# column -> (header, format kind); subsampled/chains_used are shown as "*" and a footnote.
_TABLE_FORMAT: dict[str, tuple[str, str]] = {
    "sampler": ("sampler", "str"),
    "backend": ("backend", "str"),
    "chains": ("chains", "int"),
    "draws": ("draws", "int"),
    "ess_bulk_min": ("ess_bulk_min", "ess"),
    "ess_bulk_median": ("ess_bulk_med", "ess"),
    "ess_tail_min": ("ess_tail_min", "ess"),
    "rhat_max": ("rhat_max", "fixed3"),
    "mcse_mean_max": ("mcse_mean_max", "g"),
    "acceptance_mean": ("accept", "fixed3"),
    "divergences": ("diverg", "int"),
    "nonfinite": ("nonfin", "int"),
    "grad_evals": ("grad_evals", "int"),
    "wall_seconds": ("wall_s", "g"),
    "ess_per_second": ("ess/s", "g"),
    "ess_per_second_no_compile": ("ess/s_nocomp", "g"),
    "ess_per_second_sampling": ("ess/s_samp", "g"),
    "ess_per_grad": ("ess/grad", "g"),
}
_SCALED = {
    "ess_bulk_min",
    "ess_bulk_median",
    "ess_tail_min",
    "mcse_mean_max",
    "ess_per_second",
    "ess_per_second_no_compile",
    "ess_per_second_sampling",
    "ess_per_grad",
}


def format_table(df) -> str:
    """Fixed-width text table of a :func:`compare` DataFrame.

    Values computed from a chain subset and scaled to all chains are marked ``*`` and a
    footnote ``* ESS computed on N of M chains, scaled to all chains`` follows (one line
    per distinct ``N of M``). Missing values print as ``-``.

    Parameters
    ----------
    df
        Output of :func:`compare`.

    Returns
    -------
    str
    """
    columns = [c for c in _TABLE_FORMAT if c in df.columns]
    sub = df["subsampled"].astype(bool) if "subsampled" in df.columns else None
    header = ["run"] + [_TABLE_FORMAT[c][0] for c in columns]
    rows = []
    for i, (name, row) in enumerate(df.iterrows()):
        marked = bool(sub.iloc[i]) if sub is not None else False
        cells = [str(name)]
        for c in columns:
            cell = _fmt(row[c], _TABLE_FORMAT[c][1])
            if marked and c in _SCALED and cell != "-":
                cell += "*"
            cells.append(cell)
        rows.append(cells)
    widths = [max(len(r[j]) for r in [header, *rows]) for j in range(len(header))]
    text_cols = {0} | {j + 1 for j, c in enumerate(columns) if _TABLE_FORMAT[c][1] == "str"}

    def line(cells):
        return "  ".join(
            cell.ljust(w) if j in text_cols else cell.rjust(w)
            for j, (cell, w) in enumerate(zip(cells, widths))
        ).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in rows]
    if sub is not None and sub.any():
        pairs = []
        for i in np.flatnonzero(sub.to_numpy()):
            used = df["chains_used"].iloc[i] if "chains_used" in df.columns else None
            total_col = "chains_usable" if "chains_usable" in df.columns else "chains"
            total = df[total_col].iloc[i] if total_col in df.columns else None
            pair = (_fmt(used, "int"), _fmt(total, "int"))
            if pair not in pairs:
                pairs.append(pair)
        for used, total in pairs:
            out.append(f"* ESS computed on {used} of {total} chains, scaled to all chains")
    if {"chains", "chains_usable"} <= set(df.columns):
        dropped = (df["chains"] - df["chains_usable"]).fillna(0)
        for name, k in dropped[dropped > 0].items():
            out.append(
                f"{name}: {int(k)} chain(s) with non-finite draws left out of the diagnostics"
            )
    return "\n".join(out)
