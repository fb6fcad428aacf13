"""Does the generator reach all of the data? The premise of DDLS's exact target, measured.

What it measures
----------------
DDLS Theorem 1: with ``d = log p_d / p_g`` the latent target ``p0(z) exp(d(G(z)))`` pushes
forward to ``p_d``, but only where the generator puts mass. A sampler of that target can move
mass *along* the generator's support, never to data the generator does not reach; where it
reaches the data only thinly, the ratio is large there and the target piles its mass onto the few
latents that map there. So how well even a perfect critic can do is set by the generator's
support, and no sampler can do better. For each zoo model this study draws ``--generator-points``
generator samples (latents from N(0, I)) and as many reference data points, and for
``--data-points`` fresh data points and each radius r in ``--radii`` prints:

* ``uncovered``: the fraction of data points with no generator sample within r;
* ``ratio p50 / p95``: quantiles over the data points of the local density ratio ``p_d / p_g``
  estimated by counts in the ball of radius r (reference data count over generator count, the
  generator count floored at 1/2: a lower bound where it is 0). At a ratio ``R`` the exact target
  gives that data point's neighbourhood ``R`` times the weight the generator gives it.

Radii are multiples of the data's own noise std, so that models on sets of different scales
compare: the mixture sets' per-coordinate mode std (DOT-scale 25-Gaussians 0.05 / 2.828 = 0.018,
DDLS-scale 0.1), the Swiss Roll's noise 0.25 / 7.5 = 0.033 (scikit-learn's ``noise``, scaled as
the data are). One noise std is the width of the data's own spread about its modes or curve.

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/study_support_coverage.py            # the WGAN-GP toys and the 25-Gaussians NS-GAN
    python diagnostics/study_support_coverage.py --quick    # seconds (smoke sizes)

Writes ``--output`` (default ``runs/study_support_coverage``): ``support_coverage.json`` and
``support_coverage.png`` (data points coloured by whether the generator reaches them).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from ppl_ebm.data import dataset_spec, sample_dataset
from ppl_ebm.validation import check_output_dir
from ppl_ebm.zoo.store import load_model

MODELS = ("swissroll-wgan-gp", "25gaussians-gulrajani-wgan-gp", "25gaussians-nsgan")
# Sets without mixture components: their noise std as ppl_ebm.data.toy draws them.
CURVE_NOISE_STD = {"swissroll": 0.25 / 7.5}


def noise_std(dataset: str) -> float:
    """The data's own noise std (see the module docstring); ValueError for a set without one here."""
    spec = dataset_spec(dataset)
    if spec.has_modes:
        return float(spec.mode_std())
    if dataset in CURVE_NOISE_STD:
        return CURVE_NOISE_STD[dataset]
    raise ValueError(f"No noise scale is recorded for data set {dataset!r}; add it to CURVE_NOISE_STD.")


def _ball_counts(tree: cKDTree, points: np.ndarray, radius: float) -> np.ndarray:
    # return_length counts without building the neighbour lists (millions of points per ball).
    return np.asarray(tree.query_ball_point(points, radius, return_length=True), dtype=np.float64)


def measure(model_name: str, radii: list[float], generator_points: int, data_points: int, seed: int) -> dict:
    """Coverage and local ratio quantiles of one model; ``radii`` in noise stds (see the module docstring)."""
    model = load_model(model_name)
    dataset = model.config["training"]["dataset"]
    sigma = noise_std(dataset)
    latent_dim = model.config["generator"]["options"]["latent_dim"]
    with torch.no_grad():
        latents = torch.randn(generator_points, latent_dim, generator=torch.Generator().manual_seed(seed))
        generated = model.generator(latents).numpy().astype(np.float64)
    # Three data draws with seeds of their own: the points scored, the reference counts.
    scored = sample_dataset(dataset, data_points, seed=20_000 + seed).astype(np.float64)
    reference = sample_dataset(dataset, generator_points, seed=30_000 + seed).astype(np.float64)
    generated_tree, reference_tree = cKDTree(generated), cKDTree(reference)
    rows = []
    uncovered_masks = {}
    for multiple in radii:
        radius = multiple * sigma
        generator_count = _ball_counts(generated_tree, scored, radius)
        data_count = _ball_counts(reference_tree, scored, radius)
        ratio = data_count / np.maximum(generator_count, 0.5)
        uncovered = generator_count == 0
        uncovered_masks[multiple] = uncovered
        rows.append({"radius_noise_stds": multiple, "radius": radius, "uncovered": float(uncovered.mean()),
                     "ratio_p50": float(np.percentile(ratio, 50)), "ratio_p75": float(np.percentile(ratio, 75)),
                     "ratio_p95": float(np.percentile(ratio, 95))})
    return {"model": model_name, "dataset": dataset, "noise_std": sigma, "generator_points": generator_points, "data_points": data_points,
            "rows": rows, "_scored": scored, "_uncovered": uncovered_masks}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 4.6), squeeze=False)
    for ax, result in zip(axes[0], results):
        radius = sorted(result["_uncovered"])[len(result["_uncovered"]) // 2]
        missed = result["_uncovered"][radius]
        points = result["_scored"]
        ax.scatter(points[~missed, 0], points[~missed, 1], s=1, c="tab:blue", label="reached")
        ax.scatter(points[missed, 0], points[missed, 1], s=2, c="tab:red",
                   label=f"no generator sample within {radius:g} noise std ({missed.mean():.1%})")
        ax.set(title=result["model"], aspect="equal")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.06), markerscale=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--radii", type=float, nargs="+", default=[0.5, 1.0, 2.0],
                        help="ball radii in multiples of the data's noise std (default 0.5 1 2)")
    parser.add_argument("--generator-points", type=int, default=2_000_000)
    parser.add_argument("--data-points", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke sizes: 20,000 generator points, 2000 data points")
    parser.add_argument("--output", type=Path, default=Path("runs/study_support_coverage"))
    args = parser.parse_args(argv)
    if args.quick:
        args.generator_points, args.data_points = 20_000, 2000
    if min(args.radii) <= 0:
        parser.error(f"--radii must all be > 0 (ball radii in noise stds), got {args.radii}")
    for option, value in (("--generator-points", args.generator_points), ("--data-points", args.data_points)):
        if value < 1:
            parser.error(f"{option} must be >= 1, got {value}")
    output = check_output_dir(args.output, "--output")
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = []
    print(f"{'model':32s} {'r/std':>6s} {'radius':>7s} {'uncovered':>10s} {'ratio p50':>10s} {'ratio p75':>10s} {'ratio p95':>10s}")
    for name in args.models:
        result = measure(name, args.radii, args.generator_points, args.data_points, args.seed)
        results.append(result)
        for row in result["rows"]:
            print(f"{name:32s} {row['radius_noise_stds']:6.2f} {row['radius']:7.4f} {row['uncovered']:10.3f} {row['ratio_p50']:10.2f} "
                  f"{row['ratio_p75']:10.2f} {row['ratio_p95']:10.2f}", flush=True)
    summary = {"results": [{k: v for k, v in r.items() if not k.startswith("_")} for r in results],
               "seconds": time.perf_counter() - start}
    (output / "support_coverage.json").write_text(json.dumps(summary, indent=2))
    plot(results, output / "support_coverage.png")
    print(f"{time.perf_counter() - start:.1f} s; wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
