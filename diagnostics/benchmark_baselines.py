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
* ``chees``: ChEES-HMC, ``meads``: MEADS, ``mams``: MAMS (BlackJAX, tuned as their authors recommend; see
  ``ppl_ebm/kernels/chees_jax.py``, ``meads_jax.py``, ``mams_jax.py``).

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

The metrics and figures are the ``ppl-ebm samplers`` report's (``ppl_ebm/studies/bias.py``,
``samplers_bias.py``, ``samplers_bias_report.py``); this script adds the ESS/grad ratios to
NUTS and MALA. ``ppl-ebm samplers --parts bias`` is the one command for the full report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ppl_ebm.studies.bias import standard_truth  # noqa: E402
from ppl_ebm.studies.samplers_bias import RHAT_CONVERGED, run_row  # noqa: E402
from ppl_ebm.studies.samplers_bias_report import plot_bias  # noqa: E402
from ppl_ebm.targets.standard import standard_target  # noqa: E402

SAMPLERS = ("mala", "nuts", "chees", "meads", "mams")
TARGETS = ("gaussian", "banana", "funnel", "rosenbrock")


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
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    for name in args.targets:
        target = standard_target(name)
        truth = standard_truth(target)
        for sampler in args.samplers:
            start = time.perf_counter()
            row = {"target": name, **run_row(target.numpyro_model, truth, sampler, args.chains, args.warmup,
                                              args.draws, args.seed)}
            rows.append(row)
            to = "-" if row["grads_to_low_bias"] is None else f"{row['grads_to_low_bias']:.0f}"
            print(f"{name:11s} {sampler:7s} {row['ess_bulk_min']:8.0f} {row['grads']:10d} {row['ess_per_kgrad']:9.3f} "
                  f"{row['b2_avg']:8.4f} {row['b2_max']:8.4f} {to:>13s} {row['rhat_max']:6.3f} "
                  f"{row['wall_seconds']:6.1f} {row['compile_seconds']:7.1f} {row['acceptance']:5.2f}", flush=True)
            assert time.perf_counter() - start >= row["wall_seconds"] - 1e-6
        path = output.with_name(f"{output.stem}_{name}.png")
        plot_bias({"targets": {name: {"rows": [r for r in rows if r["target"] == name]}}}, path)
        print(f"wrote {path}")
    lines = ratios(rows)
    print("\n".join(lines))
    report = {"settings": {k: v for k, v in vars(args).items() if k != "output"}, "rows": rows, "ratios": lines}
    output.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
