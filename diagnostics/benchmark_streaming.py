"""Peak memory of a large run with draws streamed to disk, against the same run in memory.

What it measures
----------------
ULA through ``ppl_ebm.sample`` on a ``--dim``-dimensional latent EBM (the linear-Gaussian
problem: a linear generator and a quadratic critic, cheap per step, so the run is dominated
by its draws) with ``--chains`` chains x ``--draws`` draws, twice, each in a fresh process:

* **stream**: ``sample(..., draws_dir=...)``: draws written chunk by chunk to ``draws.npy``
  with a resumable state checkpoint after each chunk;
* **memory**: the default, every draw held in one array (skip with ``--no-baseline``).

Each child reports its peak resident memory (``ru_maxrss``), wall seconds and chain-steps/s;
the ratios are printed. Goal (issue 4): 10,000 chains x 1000 draws x 128 dims (5.1 GB of
float32 draws) in < 4 GB. Resumption after a kill is tested in ``tests/test_draw_store.py``.

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/benchmark_streaming.py                  # 10,000 x 1000 x 128, a few minutes
    python diagnostics/benchmark_streaming.py --quick          # seconds
    python diagnostics/benchmark_streaming.py --backend torch --workdir /big/disk

Writes ``--output`` (default ``runs/benchmark_streaming.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def child(args) -> None:
    import ppl_ebm

    ebm = ppl_ebm.linear_gaussian_problem(latent_dim=args.dim, data_dim=args.dim, seed=0).ebm
    draws_dir = None if args.child == "memory" else args.workdir / "run"
    start = time.perf_counter()
    result = ppl_ebm.sample(ebm, "ula", args.backend, num_chains=args.chains, num_warmup=0,
                            num_samples=args.draws, seed=0, progress_bar=False, draws_dir=draws_dir, step_size=0.01)
    seconds = time.perf_counter() - start
    last = float(result.latents[-1, -1, -1])  # touch the draws as a user would
    print(json.dumps({
        "mode": args.child,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "wall_seconds": seconds,
        "sampling_seconds": result.stats["sampling_seconds"],
        "chain_steps_per_second": args.chains * args.draws / result.stats["sampling_seconds"],
        "draws_gb": args.chains * args.draws * args.dim * 4 / 1e9,
        "latents_type": type(result.latents).__name__,
        "last_draw": last,
    }))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chains", type=int, default=10_000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--backend", choices=("jax", "torch"), default="jax")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-memory run")
    parser.add_argument("--quick", action="store_true", help="200 x 100 x 8, for a smoke test")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark_streaming.json"))
    parser.add_argument("--child", choices=("memory", "stream"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.draws, args.dim = 200, 100, 8
    if args.child:
        child(args)
        return {}

    workdir = Path(tempfile.mkdtemp(prefix="ppl_ebm_stream_")) if args.workdir is None else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workdir / "run", ignore_errors=True)
    common = [sys.executable, __file__, "--chains", str(args.chains), "--draws", str(args.draws),
              "--dim", str(args.dim), "--backend", args.backend, "--workdir", str(workdir)]
    records = {}
    for mode in ("stream",) + (() if args.no_baseline else ("memory",)):
        done = subprocess.run(common + ["--child", mode], capture_output=True, text=True, check=True)
        records[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        r = records[mode]
        print(f"{mode:6s}: peak RSS {r['peak_rss_gb']:.2f} GB for {r['draws_gb']:.2f} GB of draws, "
              f"{r['wall_seconds']:.1f} s, {r['chain_steps_per_second']:,.0f} chain-steps/s ({r['latents_type']})")
    if "memory" in records:
        s, m = records["stream"], records["memory"]
        print(f"stream / memory: peak RSS {s['peak_rss_gb'] / m['peak_rss_gb']:.2f}x, "
              f"chain-steps/s {s['chain_steps_per_second'] / m['chain_steps_per_second']:.2f}x; "
              f"same last draw: {s['last_draw'] == m['last_draw']}")
    record = {"chains": args.chains, "draws": args.draws, "dim": args.dim, "backend": args.backend,
              "goal_peak_rss_gb": 4.0, "runs": records, "load_average": os.getloadavg()}
    shutil.rmtree(workdir / "run", ignore_errors=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.output}")
    return record


if __name__ == "__main__":
    main()
