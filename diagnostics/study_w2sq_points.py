"""How the papers' EMD (W2^2 at n points) depends on n, for a generator and for the data itself.

What it measures
----------------
DOT, DDLS Table 2 and ex2mcmc report ``ot.emd2`` on POT's default squared Euclidean cost
between n generated points and n data points ("W2^2@n"). At finite n that figure is not zero for
the data distribution itself: two fresh data samples of the same size are apart by a floor that
falls with n. For each zoo model and each n this study prints, mean +- std over ``--repeats``
repeats (:func:`ppl_ebm.metrics.w2sq_repeated`: each repeat its own data draw, the same draws
for every row, so rows are paired):

* ``floor``: a fresh data sample of n points against the repeat's data draw;
* ``generator``: n generator samples (latents from the N(0, I) prior, ``--seed``);
* ``centres`` (sets with discrete modes): the fresh data sample with every point moved to its
  nearest mode centre, i.e. the right mode counts and infinitely sharp modes; it shows whether
  sharpening the modes (what DDLS does to a GAN's blurred modes) lowers the figure;
* ``goal``: the issue-14 target for DDLS, ``--goal-ratio`` times the generator's figure, and
  whether that lies below the floor, i.e. below what a sampler whose draws *are* the data
  distribution scores on average.

It exists because the papers' generator figures on the DOT-scale 25-Gaussians (0.043-0.052 at
"1000 points") are under the floor two fresh 1000-point data samples reach (0.06-0.07): either
they were computed at more points or a figure below the floor only says how evenly points fell
into the 25 modes. The table shows which n puts the floor where the papers' figures are.

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/study_w2sq_points.py                      # both WGAN-GP toys, n = 1000, 2000, 5000
    python diagnostics/study_w2sq_points.py --quick              # seconds (smoke sizes)

Writes ``--output`` (default ``runs/study_w2sq_points``): ``w2sq_points.json`` and
``w2sq_points.png`` (W2^2 against n, floor and generator with their spread).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ppl_ebm.data import dataset_spec, sample_dataset
from ppl_ebm.metrics import paired_difference, w2sq_repeated
from ppl_ebm.validation import check_output_dir
from ppl_ebm.zoo.store import load_model

MODELS = ("25gaussians-gulrajani-wgan-gp", "swissroll-wgan-gp")


def measure(model_name: str, points: list[int], repeats: int, goal_ratio: float, seed: int) -> list[dict]:
    """One row per n: floor, generator and goal (see the module docstring)."""
    model = load_model(model_name)
    dataset = model.config["training"]["dataset"]
    latent_dim = model.config["generator"]["options"]["latent_dim"]

    def draw(n: int, data_seed: int) -> np.ndarray:
        return sample_dataset(dataset, n, seed=data_seed)

    largest = max(points)
    # Seeds apart from the repeats' data seeds (w2sq_repeated derives those from `seed`).
    fresh = draw(largest, 10_000 + seed)
    with torch.no_grad():
        latents = torch.randn(largest, latent_dim, generator=torch.Generator().manual_seed(seed))
        generated = model.generator(latents).numpy()
    spec = dataset_spec(dataset)
    centred = None
    if spec.has_modes:
        centres = spec.mode_centers()
        nearest = np.argmin(((fresh[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        centred = centres[nearest].astype(np.float32)
    rows = []
    for n in points:
        floor = w2sq_repeated(fresh, draw, num_points=n, repeats=repeats, seed=seed)
        generator = w2sq_repeated(generated, draw, num_points=n, repeats=repeats, seed=seed)
        goal = goal_ratio * generator.mean
        # Paired over the same data draws: the generator's excess over the floor, repeat by repeat.
        excess, excess_se = paired_difference(generator.values, floor.values)
        rows.append({
            "model": model_name, "points": n, "repeats": repeats,
            "floor_mean": floor.mean, "floor_std": floor.std,
            "generator_mean": generator.mean, "generator_std": generator.std,
            "generator_minus_floor_mean": excess,
            "generator_minus_floor_se": excess_se,
            "goal_ratio": goal_ratio, "goal": goal, "goal_below_floor": bool(goal < floor.mean),
        })
        if centred is not None:
            at_centres = w2sq_repeated(centred, draw, num_points=n, repeats=repeats, seed=seed)
            rows[-1].update(centres_mean=at_centres.mean, centres_std=at_centres.std)
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({row["model"] for row in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, name in zip(axes[0], models):
        mine = [row for row in rows if row["model"] == name]
        n = [row["points"] for row in mine]
        for key, label in (("floor", "data floor"), ("generator", "generator")):
            ax.errorbar(n, [row[f"{key}_mean"] for row in mine], yerr=[row[f"{key}_std"] for row in mine],
                        marker="o", capsize=3, label=label)
        ax.plot(n, [row["goal"] for row in mine], "k--", label=f"goal ({mine[0]['goal_ratio']}x generator)")
        ax.set(xscale="log", yscale="log", xlabel="points per side (n)", ylabel="W2^2@n (ot.emd2, sq. Euclidean)",
               title=name)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--points", type=int, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--goal-ratio", type=float, default=0.84, help="DDLS Table 2's ratio on 25-Gaussians")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke sizes: n = 50, 100; 2 repeats")
    parser.add_argument("--output", type=Path, default=Path("runs/study_w2sq_points"))
    args = parser.parse_args(argv)
    if args.quick:
        args.points, args.repeats = [50, 100], 2
    if min(args.points) < 2:
        parser.error(f"--points must all be >= 2, got {args.points}")
    if args.repeats < 2:
        parser.error(f"--repeats must be >= 2 (a spread needs two), got {args.repeats}")
    output = check_output_dir(args.output, "--output")
    output.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    rows = [row for name in args.models for row in measure(name, args.points, args.repeats, args.goal_ratio, args.seed)]
    print(f"{'model':32s} {'n':>5s}  {'floor':>16s}  {'generator':>16s}  {'gen - floor (paired)':>22s}  "
          f"{'data at centres':>16s}  {'goal':>7s}")
    for row in rows:
        centres = f"{row['centres_mean']:.4f} +- {row['centres_std']:.4f}" if "centres_mean" in row else "-"
        print(f"{row['model']:32s} {row['points']:5d}  {row['floor_mean']:.4f} +- {row['floor_std']:.4f}  "
              f"{row['generator_mean']:.4f} +- {row['generator_std']:.4f}  "
              f"{row['generator_minus_floor_mean']:+.4f} +- {row['generator_minus_floor_se']:.4f}  "
              f"{centres:>16s}  {row['goal']:.4f}{'  < floor' if row['goal_below_floor'] else ''}")
    summary = {"rows": rows, "seconds": time.perf_counter() - start}
    (output / "w2sq_points.json").write_text(json.dumps(summary, indent=2))
    plot(rows, output / "w2sq_points.png")
    print(f"{time.perf_counter() - start:.1f} s; wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
