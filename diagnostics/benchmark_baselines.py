"""Our MALA and NumPyro's NUTS against BlackJAX's many-chain samplers on targets with known truth
(issue 20, item 2).

What it measures
----------------
Each row is one sampler on one standard target (:mod:`ppl_ebm.targets.standard`, as NumPyro
models), all through the front door ``ppl_ebm.sample(model, sampler, "jax")`` with the same
chains, warmup and draws:

* ``mala``: ours, per-chain dual averaging and the diagonal mass matrix (the defaults);
* ``nuts``: NumPyro's NUTS, chains vectorised in one program (every iteration waits for the
  chain with the deepest tree), diagonal mass matrix in Stan's windows;
* ``chees``: ChEES-HMC, ``meads``: MEADS (BlackJAX, tuned as BlackJAX ships them; see
  ``ppl_ebm/kernels/chees_jax.py``, ``meads_jax.py``).

Columns: ``ess_bulk_min`` over coordinates (ArviZ's estimator, the fast engine, every chain);
``grads`` every gradient evaluation of every chain, warmup included; ``ess/kgrad`` = ESS per
1000 gradients; ``b2_avg`` / ``b2_max``: the standardised squared bias of ``E[x^2]`` over all
draws, ``(mean(x^2) - E[x^2])^2 / Var[x^2]``, averaged and worst over coordinates (Robnik et
al.'s metric; ``E[x^2]`` and ``Var[x^2]`` from 10^6 exact draws); ``grads_to_0.01``: the
gradients (per chain, warmup included) after which ``b2_max`` of the draws so far stays below
0.01, ``-`` if it never does (sampling gradients are spread evenly over the draws: exact for
MALA and MEADS, an average for NUTS and ChEES); ``rhat`` the largest rank R-hat; ``wall`` and
``compile`` seconds. Then, per target, the ratio of each sampler's ESS per gradient to NUTS's
and to MALA's; a ratio against a run whose R-hat exceeds 1.01 is marked ``*`` (not converged).

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/benchmark_baselines.py                 # 4 targets, 128 chains, 500 + 500 steps
    python diagnostics/benchmark_baselines.py --quick         # smoke sizes
    python diagnostics/benchmark_baselines.py --targets banana --chains 1024

Writes ``--output`` (default ``runs/benchmark_baselines.json``) and, beside it, a figure per
target (``<output stem>_<target>.png``): the worst coordinate's bias of E[x^2] against gradients
per chain, one line per sampler, and the ESS per 1000 gradients as bars.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ppl_ebm  # noqa: E402
from ppl_ebm.diagnostics.summary import summarize  # noqa: E402
from ppl_ebm.targets.standard import standard_target  # noqa: E402

SAMPLERS = ("mala", "nuts", "chees", "meads")
TARGETS = ("gaussian", "banana", "funnel", "rosenbrock")
THRESHOLD = 0.01  # Robnik et al.'s "low bias"
RHAT_CONVERGED = 1.01


def square_moments(target, draws: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """``E[x^2]`` (exact) and ``Var[x^2]`` (from exact draws) per coordinate."""
    second = np.asarray(target.true_mean) ** 2 + np.asarray(target.true_var)
    sample = target.exact_sample(draws, seed=1)
    return second, np.var(sample**2, axis=0)


def bias_curve(latents: np.ndarray, second: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """``b2_max`` of the draws up to each draw (all chains pooled)."""
    running = np.cumsum((latents.astype(np.float64) ** 2).mean(axis=0), axis=0)
    running /= np.arange(1, latents.shape[1] + 1)[:, None]
    return ((running - second) ** 2 / variance).max(axis=1)


def run_one(target, sampler: str, args) -> dict:
    result = ppl_ebm.sample(target.numpyro_model, sampler, "jax", num_chains=args.chains, num_warmup=args.warmup,
                            num_samples=args.draws, seed=args.seed, progress_bar=False)
    stats = result.stats
    summary = summarize(result, max_chains=None, engine="fast")
    second, variance = square_moments(target)
    latents = np.asarray(result.latents)
    b2 = (latents.astype(np.float64) ** 2).mean(axis=(0, 1))
    b2 = (b2 - second) ** 2 / variance
    curve = bias_curve(latents, second, variance)
    grads_per_chain = float(np.mean(stats["grad_evals"]))
    warmup_share = args.warmup / (args.warmup + args.draws)  # an even spread: see the module docstring
    above = np.nonzero(curve >= THRESHOLD)[0]
    first_low = 0 if not len(above) else above[-1] + 1
    reached = first_low < len(curve)
    grads_to = (grads_per_chain * (warmup_share + (1 - warmup_share) * (first_low + 1) / len(curve))
                if reached else None)
    # The bias curve against gradients per chain, at <= 50 points, for the figure.
    at = np.unique(np.linspace(0, len(curve) - 1, 50).astype(int))
    spent = grads_per_chain * (warmup_share + (1 - warmup_share) * (at + 1) / len(curve))
    return {
        "bias_curve": [[float(g), float(b)] for g, b in zip(spent, curve[at])],
        "target": target.name, "sampler": sampler, "chains": args.chains, "ess_bulk_min": summary["ess_bulk_min"],
        "grads": int(np.sum(stats["grad_evals"])), "ess_per_kgrad": 1000 * summary["ess_per_grad"],
        "b2_avg": float(b2.mean()), "b2_max": float(b2.max()), "grads_to_low_bias": grads_to,
        "rhat_max": summary["rhat_max"], "wall_seconds": float(stats["wall_seconds"]),
        "compile_seconds": float(stats["compile_seconds"]),
        "ess_per_second_no_compile": summary["ess_per_second_no_compile"],
        "acceptance": float(np.nanmean(stats["acceptance"])),
    }


def ratios(rows: list[dict]) -> list[str]:
    lines = []
    for target in dict.fromkeys(row["target"] for row in rows):
        mine = {row["sampler"]: row for row in rows if row["target"] == target}
        for reference in ("nuts", "mala"):
            if reference not in mine:
                continue
            ref = mine[reference]
            mark = "" if ref["rhat_max"] < RHAT_CONVERGED else "*"
            parts = []
            for name, row in mine.items():
                star = "" if row["rhat_max"] < RHAT_CONVERGED else "*"
                parts.append(f"{name}{star} {row['ess_per_kgrad'] / ref['ess_per_kgrad']:.2f}x")
            lines.append(f"{target}: ESS/grad vs {reference}{mark}: " + ", ".join(parts))
    return lines


def plot(rows: list[dict], stem: Path) -> list[Path]:
    """One figure per target: b2_max against gradients (log-log) and ESS/kgrad bars."""
    import matplotlib

    matplotlib.use("Agg")  # here, not at import: the script's import must not change a user's backend
    import matplotlib.pyplot as plt

    paths = []
    for target in dict.fromkeys(row["target"] for row in rows):
        mine = [row for row in rows if row["target"] == target]
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        for row in mine:
            grads, bias = np.asarray(row["bias_curve"]).T
            left.loglog(grads, bias, label=row["sampler"] + ("" if row["rhat_max"] < RHAT_CONVERGED else " (R-hat > 1.01)"))
        left.axhline(THRESHOLD, color="grey", linestyle=":")
        left.set(xlabel="gradients per chain (warmup included)", ylabel="worst-coordinate bias of E[x^2]", title=target)
        left.legend(fontsize=8)
        right.bar([row["sampler"] for row in mine], [row["ess_per_kgrad"] for row in mine])
        right.set(ylabel="bulk ESS (worst coordinate) per 1000 gradients", title=f"{target}: ESS per gradient")
        figure.tight_layout()
        path = stem.with_name(f"{stem.stem}_{target}.png")
        figure.savefig(path, dpi=100)
        plt.close(figure)
        paths.append(path)
    return paths


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    parser.add_argument("--chains", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke sizes: 8 chains, 40 + 40 steps, banana")
    parser.add_argument("--output", default="runs/benchmark_baselines.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.warmup, args.draws, args.targets = 8, 40, 40, ["banana"]
    rows = []
    header = (f"{'target':11s} {'sampler':7s} {'ess_min':>8s} {'grads':>10s} {'ess/kgrad':>9s} {'b2_avg':>8s} "
              f"{'b2_max':>8s} {'grads_to_0.01':>13s} {'rhat':>6s} {'wall':>6s} {'compile':>7s} {'acc':>5s}")
    print(header)
    for name in args.targets:
        target = standard_target(name)
        for sampler in args.samplers:
            start = time.perf_counter()
            row = run_one(target, sampler, args)
            rows.append(row)
            to = "-" if row["grads_to_low_bias"] is None else f"{row['grads_to_low_bias']:.0f}"
            print(f"{name:11s} {sampler:7s} {row['ess_bulk_min']:8.0f} {row['grads']:10d} {row['ess_per_kgrad']:9.3f} "
                  f"{row['b2_avg']:8.4f} {row['b2_max']:8.4f} {to:>13s} {row['rhat_max']:6.3f} "
                  f"{row['wall_seconds']:6.1f} {row['compile_seconds']:7.1f} {row['acceptance']:5.2f}", flush=True)
            assert time.perf_counter() - start >= row["wall_seconds"] - 1e-6
    lines = ratios(rows)
    print("\n".join(lines))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"settings": {k: v for k, v in vars(args).items() if k != "output"}, "rows": rows, "ratios": lines}
    output.write_text(json.dumps(report, indent=2))
    for path in plot(rows, output):
        print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
