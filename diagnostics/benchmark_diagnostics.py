"""Time and memory of MCMC diagnostics at scale: ``ppl_ebm.diagnostics.fast`` against ArviZ.

What it measures
----------------
A ``(chains, draws, dims)`` float32 ``.npy`` of AR(1) chains (coefficient rising from 0 to
0.95 across dimensions, so ESS spans two orders of magnitude) is written to disk block by
block, then memory-mapped and diagnosed on **all** chains by
``ppl_ebm.diagnostics.fast.diagnose`` (ESS bulk/tail, rank R-hat, MCSE mean/sd, IAT):
wall seconds and the process's peak resident memory (``ru_maxrss``, mapped pages of the
draws included) are printed. Goal (issue 4): 5000 x 1000 x 128 in <= 60 s and <= 6 GB.

Equality: on a subset (``--check-chains`` chains x all draws x ``--check-dims`` dims)
ArviZ's own ``ess``/``rhat``/``mcse`` (through ``ppl_ebm.diagnostics.arviz_compat``) and the fast path
are computed on the same draws; the largest relative difference per quantity is printed.

Baseline in the same run: ArviZ on all chains for ``--baseline-dims`` dimensions, timed and
extrapolated linearly to every dimension (ArviZ's cost is per dimension); the ratio is
printed.

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/benchmark_diagnostics.py                 # 5000 x 1000 x 128, ~2.6 GB file
    python diagnostics/benchmark_diagnostics.py --quick         # seconds
    python diagnostics/benchmark_diagnostics.py --workdir /big/disk --keep

Writes ``--output`` (default ``runs/benchmark_diagnostics.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppl_ebm.diagnostics.arviz_engine import diagnose as arviz_reference  # noqa: E402
from ppl_ebm.diagnostics.fast import KEYS, diagnose  # noqa: E402


def write_ar1_draws(path: Path, chains: int, draws: int, dims: int, seed: int, block_chains: int = 250) -> None:
    """AR(1) chains written block by block with a plain file write (never all in memory)."""
    rng = np.random.default_rng(seed)
    coefficient = np.linspace(0.0, 0.95, dims)
    innovation = np.sqrt(1.0 - coefficient**2)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "<f4", "fortran_order": False, "shape": (chains, draws, dims)}
        )
        for c0 in range(0, chains, block_chains):
            n = min(block_chains, chains - c0)
            block = np.empty((n, draws, dims), dtype=np.float32)
            state = rng.standard_normal((n, dims))  # stationary start
            for t in range(draws):
                state = coefficient * state + innovation * rng.standard_normal((n, dims))
                block[:, t] = state
            handle.write(block.tobytes())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=5000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--dims", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--check-chains", type=int, default=200)
    parser.add_argument("--check-dims", type=int, default=16)
    parser.add_argument("--baseline-dims", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the draws file goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the draws file")
    parser.add_argument("--quick", action="store_true", help="200 x 100 x 8, for a smoke test")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark_diagnostics.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.draws, args.dims = 200, 100, 8
        args.check_chains, args.check_dims = 50, 4

    workdir = Path(tempfile.mkdtemp(prefix="ppl_ebm_diag_")) if args.workdir is None else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"ar1_{args.chains}x{args.draws}x{args.dims}.npy"
    start = time.perf_counter()
    write_ar1_draws(path, args.chains, args.draws, args.dims, args.seed)
    write_seconds = time.perf_counter() - start
    draws = np.load(path, mmap_mode="r")
    size_gb = path.stat().st_size / 1e9
    print(f"draws {draws.shape} float32, {size_gb:.2f} GB on disk, written in {write_seconds:.1f} s")

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    start = time.perf_counter()
    fast = diagnose(draws, workers=args.workers, progress_bar=True)
    fast_seconds = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"fast diagnostics, all {args.chains} chains: {fast_seconds:.1f} s, peak RSS {peak_gb:.2f} GB "
          f"(before: {rss_before:.2f} GB)")

    subset = np.asarray(draws[: args.check_chains, :, : args.check_dims])
    reference = arviz_reference(subset)
    on_subset = diagnose(subset, workers=args.workers)
    max_rel = {key: float(np.max(np.abs(on_subset[key] / reference[key] - 1.0))) for key in KEYS}
    print(f"equality with ArviZ on {subset.shape}: max relative difference "
          + ", ".join(f"{k} {v:.1e}" for k, v in max_rel.items()))

    start = time.perf_counter()
    baseline = arviz_reference(draws[:, :, : args.baseline_dims])
    arviz_seconds = (time.perf_counter() - start) * args.dims / args.baseline_dims
    baseline_rel = {key: float(np.max(np.abs(fast[key][: args.baseline_dims] / baseline[key] - 1.0))) for key in KEYS}
    print(f"ArviZ on all chains, {args.baseline_dims} dims timed, extrapolated to {args.dims}: "
          f"{arviz_seconds:.0f} s -> fast path {arviz_seconds / fast_seconds:.1f}x faster; "
          f"max relative difference there {max(baseline_rel.values()):.1e}")
    print(f"ESS bulk min/median {np.min(fast['ess_bulk']):.0f}/{np.median(fast['ess_bulk']):.0f}, "
          f"R-hat max {np.max(fast['rhat']):.4f}")

    record = {
        "shape": list(draws.shape),
        "file_gb": size_gb,
        "workers": args.workers,
        "fast_seconds": fast_seconds,
        "peak_rss_gb": peak_gb,
        "goal": {"seconds": 60, "rss_gb": 6},
        "equality_subset_shape": list(subset.shape),
        "equality_max_relative_difference": max_rel,
        "arviz_seconds_extrapolated": arviz_seconds,
        "arviz_baseline_dims": args.baseline_dims,
        "speedup_vs_arviz": arviz_seconds / fast_seconds,
        "baseline_max_relative_difference": baseline_rel,
        "ess_bulk_min": float(np.min(fast["ess_bulk"])),
        "rhat_max": float(np.max(fast["rhat"])),
        "load_average": os.getloadavg(),
        "cpu_count": os.cpu_count(),
    }
    del draws
    if not args.keep:
        path.unlink()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.output}")
    return record


if __name__ == "__main__":
    main()
