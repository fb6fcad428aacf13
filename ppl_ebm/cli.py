"""The ``ppl-ebm`` command.

``ppl-ebm compare`` (the main job) samples a latent EBM with every sampler and backend,
prints an ESS comparison table, and writes ``metrics.json`` and ``report.md`` to an output
folder. Until the model zoo lands it runs on the analytic Gaussian target (linear generator,
quadratic critic), where every method's error against the exact answer is shown too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]

_HMC_CHAINS = 4  # Pyro runs NUTS/HMC chains one after another; a few long chains, as users do


def _compare_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare samplers x backends on a latent EBM (the main job)",
        description="Sample the analytic Gaussian latent EBM with every sampler and backend and "
        "compare them by ESS, ESS/s and ESS per gradient, against the exact answer.",
    )
    parser.add_argument("--samplers", nargs="+", default=["ula", "mala", "nuts", "hmc"],
                        choices=["ula", "mala", "nuts", "hmc"])
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"], choices=["torch", "jax"])
    parser.add_argument("--chains", type=int, default=256, help="chains for ULA/MALA (default 256)")
    parser.add_argument("--hmc-chains", type=int, default=_HMC_CHAINS, help="chains for NUTS/HMC (default 4)")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--step-size", type=float, default=0.05, help="ULA step size (default 0.05)")
    parser.add_argument("--latent-dim", type=int, default=4)
    parser.add_argument("--data-dim", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("runs/compare"), help="output folder")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _check_positive(parser, args, names) -> None:
    for name in names:
        value = getattr(args, name)
        if value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def _run_compare(args, parser) -> int:
    _check_positive(parser, args, ["chains", "hmc_chains", "samples", "latent_dim", "data_dim"])
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if not args.step_size > 0:
        parser.error(f"--step-size must be > 0, got {args.step_size}")
    args.output.mkdir(parents=True, exist_ok=True)

    import ppl_ebm
    from ppl_ebm.diagnostics import compare, format_table

    problem = ppl_ebm.linear_gaussian_problem(args.latent_dim, args.data_dim, seed=args.seed)
    runs = [(s, b) for b in args.backends for s in args.samplers]
    results, errors = {}, {}
    for index, (sampler, backend) in enumerate(runs, start=1):
        name = f"{sampler}/{backend}"
        print(f"[{index}/{len(runs)}] {name} ...", file=sys.stderr, flush=True)
        options = {"step_size": args.step_size} if sampler == "ula" else {}
        chains = args.chains if sampler in ("ula", "mala") else args.hmc_chains
        result = ppl_ebm.sample(
            problem.ebm, sampler, backend, num_chains=chains, num_warmup=args.warmup,
            num_samples=args.samples, seed=args.seed, progress_bar=not args.no_progress, **options,
        )
        results[name] = result
        draws = result.latents.astype(np.float64)
        errors[name] = {
            "mean_abs_error_max": float(np.abs(draws.mean(axis=(0, 1)) - problem.mean).max()),
            "sd_abs_error_max": float(
                np.abs(draws.std(axis=(0, 1)) - np.sqrt(np.diag(problem.covariance))).max()
            ),
        }
    table = compare(results)
    text = format_table(table)
    print(text)
    print("\nError against the exact Gaussian target (max over latent dims):")
    for name, error in errors.items():
        print(f"  {name:<12} mean {error['mean_abs_error_max']:.4f}   sd {error['sd_abs_error_max']:.4f}")
    metrics = {
        "target": "analytic Gaussian (linear generator, quadratic critic)",
        "latent_dim": args.latent_dim,
        "data_dim": args.data_dim,
        "seed": args.seed,
        "num_warmup": args.warmup,
        "num_samples": args.samples,
        "methods": {
            name: {**_jsonable(table.loc[name].to_dict()), **errors[name]} for name in results
        },
    }
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (args.output / "report.md").write_text(
        "# ppl-ebm compare\n\n"
        f"Target: {metrics['target']}, latent dim {args.latent_dim}, seed {args.seed}, "
        f"{args.warmup} warmup + {args.samples} draws per chain.\n\n```\n{text}\n```\n"
    )
    print(f"\nWrote {args.output / 'metrics.json'} and {args.output / 'report.md'}")
    return 0


def _jsonable(row: dict) -> dict:
    out = {}
    for key, value in row.items():
        if isinstance(value, (np.integer,)):
            value = int(value)
        elif isinstance(value, (np.floating, float)):
            value = None if not np.isfinite(value) else float(value)
        elif isinstance(value, np.bool_):
            value = bool(value)
        out[key] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ppl-ebm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command")
    _compare_parser(subparsers)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    start = time.perf_counter()
    code = _run_compare(args, subparsers.choices["compare"])
    print(f"Done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
