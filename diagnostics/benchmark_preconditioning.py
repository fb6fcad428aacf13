"""Preconditioned MALA on an ill-conditioned Gaussian whose truth is known (issue 20, item 3).

What it measures
----------------
The issue's check, as a new user would run it: ``ppl_ebm.sample(model, sampler, "jax")`` on a
NumPyro model ``x ~ Normal(0, sd)`` in ``--dim`` dimensions (100 by default) whose standard
deviations ``sd`` are log-uniform in [1, 31.6] (seeded), the first one 31.6 (ratio of scales
31.6, of variances 1000). Each row is one sampler:

* ``mala`` with ``mass_matrix="none"`` (one scalar step per chain, the issue's failing run),
  ``"diag"`` (the default) and ``"dense"``, ``--chains`` chains;
* NumPyro's NUTS (diagonal mass matrix adapted in Stan's windows), ``--nuts-chains`` chains
  (vectorised), the same warmup and draws.

For every coordinate the draws' standard deviation and mean are compared with the truth in
Monte Carlo standard errors (ArviZ's MCSE from the ESS, as the tests' ``assert_moments``):
the table prints the first three standard deviations against the truth, the largest
``|sd - truth| / MCSE`` and ``|mean| / MCSE`` over the coordinates, the smallest and largest
``sd / truth``, the mean acceptance and the wall seconds. "Recovered" is every ``|z| < 4.5``
(the tests' threshold).

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/benchmark_preconditioning.py                # 100-d, 256 chains, 500 + 500 steps
    python diagnostics/benchmark_preconditioning.py --warmup 1000 --draws 1000   # the issue's length
    python diagnostics/benchmark_preconditioning.py --quick        # seconds (smoke sizes)

Writes ``--output`` (default ``runs/benchmark_preconditioning.json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax.numpy as jnp  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402

import ppl_ebm  # noqa: E402
from ppl_ebm.diagnostics import arviz_compat  # noqa: E402
from ppl_ebm.targets.standard import log_uniform_scales  # noqa: E402

Z_THRESHOLD = 4.5  # the tests' (tests/problems.py)


def standard_deviations(dim: int, seed: int) -> np.ndarray:
    """Log-uniform in [1, sqrt(1000)], the first coordinate the widest (the standard ``gaussian`` target's)."""
    return log_uniform_scales(dim, seed)


def row(name: str, result, sd: np.ndarray, seconds: float) -> dict:
    draws = np.asarray(result.latents, dtype=np.float64)
    sample_sd = draws.std(axis=(0, 1))
    z_sd = (sample_sd - sd) / arviz_compat.mcse(draws, method="sd")
    z_mean = draws.mean(axis=(0, 1)) / arviz_compat.mcse(draws, method="mean")
    return {
        "sampler": name, "chains": result.num_chains, "draws": result.num_draws,
        "sd_first3": [round(float(v), 2) for v in sample_sd[:3]], "truth_first3": [round(float(v), 2) for v in sd[:3]],
        "max_abs_z_sd": float(np.abs(z_sd).max()), "max_abs_z_mean": float(np.abs(z_mean).max()),
        "min_sd_ratio": float((sample_sd / sd).min()), "max_sd_ratio": float((sample_sd / sd).max()),
        "recovered": bool(np.all(np.abs(z_sd) < Z_THRESHOLD) and np.all(np.abs(z_mean) < Z_THRESHOLD)),
        "acceptance": float(np.mean(result.stats["acceptance"])), "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--chains", type=int, default=256)
    parser.add_argument("--nuts-chains", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samplers", nargs="+", default=["none", "diag", "dense", "nuts"],
                        help="mala's mass_matrix values and/or nuts")
    parser.add_argument("--quick", action="store_true", help="10-d, 64 chains, 150 + 100 steps")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark_preconditioning.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.dim, args.chains, args.nuts_chains, args.warmup, args.draws = 10, 64, 2, 150, 100
    sd = standard_deviations(args.dim, args.seed)

    def model():
        numpyro.sample("x", dist.Normal(0.0, jnp.asarray(sd)).to_event(1))

    rows = []
    print(f"{args.dim}-d Gaussian, sd log-uniform in [1, 31.6]; warmup {args.warmup}, draws {args.draws}")
    print(f"{'sampler':<12}{'chains':>7}  {'sd[:3] (truth ' + str([round(float(v), 1) for v in sd[:3]]) + ')':<40}"
          f"{'max|z_sd|':>10}{'max|z_mean|':>12}{'sd/truth':>14}{'acc':>6}{'s':>7}  recovered")
    for name in args.samplers:
        start = time.perf_counter()
        if name == "nuts":
            result = ppl_ebm.sample(model, "nuts", "jax", num_chains=args.nuts_chains, num_warmup=args.warmup,
                                    num_samples=args.draws, seed=args.seed, progress_bar=False)
            label = "nuts"
        else:
            result = ppl_ebm.sample(model, "mala", "jax", num_chains=args.chains, num_warmup=args.warmup,
                                    num_samples=args.draws, seed=args.seed, progress_bar=False, mass_matrix=name)
            label = f"mala {name}"
        record = row(label, result, sd, time.perf_counter() - start)
        rows.append(record)
        print(f"{label:<12}{record['chains']:>7}  {str(record['sd_first3']):<40}{record['max_abs_z_sd']:>10.1f}"
              f"{record['max_abs_z_mean']:>12.1f}{record['min_sd_ratio']:>7.2f}-{record['max_sd_ratio']:<6.2f}"
              f"{record['acceptance']:>6.2f}{record['seconds']:>7.1f}  {record['recovered']}", flush=True)
    output = {"config": vars(args) | {"output": str(args.output)}, "truth_sd": sd.tolist(), "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2))
    return output


if __name__ == "__main__":
    main()
