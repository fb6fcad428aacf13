"""Table, figures and Markdown report of a :func:`ppl_ebm.studies.image_compare.run_image_compare` run:
``metrics.json``, ``report.md``, ``samples.png`` (64 samples per method), ``sweep.png`` (FD against the
ULA step, seed 002), ``trace.png`` (FD every 10 steps of the paper's ULA, DDLS Fig. 5, and with ``trace_samplers`` along
the exact samplers' draws, the ex2mcmc paper's FID curve) and
``pixels.png`` (pixel-intensity histograms against the data's: seed 002's over-saturation check),
``chains.png`` (the paper's chains every k steps from prior draws, DDLS Fig. 3) and ``nearest.png``
(nearest train images of DDLS samples in the classifier's feature space, DDLS Fig. 4)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # object API: importing this never switches the user's backend

__all__ = ["format_image_table", "format_noise_line", "format_sampling_line", "format_standard_line",
           "saturated_fraction", "write_image_report"]

_COLUMNS = (("fd", "FD", "{:.3f}"), ("score", "score", "{:.3f}"), ("precision", "precision", "{:.3f}"),
            ("recall", "recall", "{:.3f}"), ("saturated", "saturated", "{:.3f}"), ("step_size", "step", "{:.3g}"),
            ("acceptance_mean", "accept", "{:.2f}"), ("ess_bulk_min", "ESS bulk", "{:.0f}"),
            ("rhat_max", "R-hat", "{:.3f}"), ("ess_per_second", "ESS/s", "{:.3g}"),
            ("wall_seconds", "wall s", "{:.1f}"))
# With --inception-weights: the standard FID / IS (torch-fidelity, Inception network) beside the classifier's.
_INCEPTION_COLUMNS = (("fid_inception", "FID (Inception)", "{:.2f}"), ("is_inception", "IS (Inception)", "{:.3f}"),
                      ("is_inception_std", "IS std", "{:.3f}"))


def saturated_fraction(images: np.ndarray, threshold: float = 0.95) -> float:
    """Fraction of pixels with ``|x| > threshold`` (at the ends of ``[-1, 1]``): seed 002's over-saturation."""
    return float(np.mean(np.abs(np.asarray(images)) > threshold))


def format_noise_line(metrics: dict[str, dict]) -> str:
    """The FD's noise scale: its spread over fresh sets of generator images of the table's size."""
    row = metrics.get("generator", {})
    if "fd_seed_std" not in row:
        return ""
    return (f"\nThe FD's noise at this size: the generator's FD over 10 other sets of prior draws is "
            f"{row['fd_seed_mean']:.1f} +- {row['fd_seed_std']:.1f} (std); rows closer than about twice that "
            f"are not told apart by one run.\n")


def format_standard_line(standard: dict | None) -> str:
    """Which columns are the standard FID / IS and which the classifier's, when the run computed both."""
    if not standard:
        return ""
    caution = ("" if standard["standard_weights"] else " The weights file's sha256 does not start with 6726825d, the "
               "standard file's: these are not the published FID/IS's network and the numbers are not comparable "
               "with papers'.")
    return (f"`FID (Inception)` and `IS (Inception)` (mean and std over {standard['splits']} splits) are the standard "
            f"FID and IS: {standard['library']} on the Inception weights `{standard['weights_file']}` (sha256 "
            f"{standard['weights_sha256'][:12]}...), images to uint8 RGB and resized to 299, FID against the "
            f"{standard['reference']} ({standard['n_reference']} images). `FD` and `score` are FID's and IS's "
            f"formulas on the digits classifier's features: on their own scale, not FID/IS.{caution} FID is biased "
            f"upwards at few images, so compare rows of one table, not with published 50,000-image FIDs.\n\n")


def format_sampling_line(config) -> str:
    """How a run's samples were drawn: each a chain's final state, except NUTS's pooled draws; and
    what the ESS / R-hat columns are over (``config``: the run's ImageCompareConfig)."""
    text = "each a chain's final state, chains from prior draws"
    nuts = [m for m in config.methods if m.startswith("nuts/")]
    if nuts:
        text += (f"; {', '.join(nuts)}: {config.hmc_chains} chains of {config.hmc_warmup} warmup + "
                 f"{config.hmc_draws} draws from the first prior draws, pooled and thinned evenly")
    return text + ("; `ESS bulk` (worst coordinate), `R-hat` (worst) and `ESS/s` over each run's kept draws "
                   "(`-`: one kept state a chain)")


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return fmt.format(value)


def format_image_table(metrics: dict[str, dict]) -> str:
    """The per-method table as Markdown (the Inception columns when a row has them)."""
    columns = _COLUMNS
    if any("fid_inception" in row for row in metrics.values()):
        columns = _COLUMNS[:2] + _INCEPTION_COLUMNS + _COLUMNS[2:]
    lines = ["| method | " + " | ".join(title for _, title, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for method, row in metrics.items():
        lines.append(f"| {method} | " + " | ".join(_cell(row.get(key), fmt) for key, _, fmt in columns) + " |")
    return "\n".join(lines)


def _grid(images: np.ndarray, columns: int = 8, square: bool = True) -> np.ndarray:
    """Images side by side, ``columns`` a row; at most ``columns`` rows when ``square``."""
    images = images[: columns * columns] if square else images
    n, channels, side, _ = images.shape
    rows = math.ceil(n / columns)
    canvas = np.ones((rows * (side + 1), columns * (side + 1), channels))
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (side + 1): r * (side + 1) + side, c * (side + 1): c * (side + 1) + side] = \
            (np.clip(image, -1, 1).transpose(1, 2, 0) + 1) / 2
    return canvas[..., 0] if channels == 1 else canvas


def write_image_report(output, folder: Path, samples_for_pixels: dict[str, np.ndarray] | None = None) -> dict[str, Path]:
    """Write the run's files into ``folder``; returns their paths by name."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": folder / "metrics.json", "report": folder / "report.md", "samples": folder / "samples.png",
             "pixels": folder / "pixels.png"}
    result = output.to_json()
    paths["metrics"].write_text(json.dumps(result, indent=2) + "\n")

    methods = list(output.samples)
    figure = Figure(figsize=(2.2 * len(methods), 2.6))
    for i, method in enumerate(methods):
        axis = figure.add_subplot(1, len(methods), i + 1)
        axis.imshow(_grid(output.samples[method]), cmap="gray", vmin=0, vmax=1)
        axis.set_title(method, fontsize=8)
        axis.axis("off")
    figure.savefig(paths["samples"], dpi=120, bbox_inches="tight")

    figure = Figure(figsize=(5, 3.5))
    axis = figure.add_subplot()
    bins = np.linspace(-1, 1, 41)
    for method in methods:
        axis.hist(np.ravel(output.samples[method]), bins=bins, histtype="step", density=True, label=method,
                  linewidth=2 if method == "data" else 1)
    axis.set_xlabel("pixel value")
    axis.set_ylabel("density")
    axis.set_yscale("log")
    axis.legend(fontsize=6)
    figure.savefig(paths["pixels"], dpi=120, bbox_inches="tight")

    text = (f"# ppl-ebm compare: {result['model']} ({result['dataset']})\n\n"
            f"{result['num_samples']} samples per method ({format_sampling_line(output.config)}), seed "
            f"{result['seed']}, scored against the held-out split on the classifier `{result['classifier']}`: "
            f"{result['metrics']}. `saturated`: the fraction of pixels with |x| > 0.95 (seed 002's colour "
            f"over-saturation; the data row is the train images'). `data`: train images, the floor.\n\n"
            f"{format_standard_line(result.get('standard_metrics'))}{format_image_table(output.metrics)}\n{format_noise_line(output.metrics)}\n![samples](samples.png)\n\n"
            f"![pixels](pixels.png)\n")
    sweep = output.sweep
    if sweep:
        paths["sweep"] = folder / "sweep.png"
        figure = Figure(figsize=(5, 3.5))
        axis = figure.add_subplot()
        axis.plot(sweep["step_sizes"], sweep["fd"], "o-", label="ULA, constant step")
        axis.axhline(sweep["generator_fd"], color="grey", linestyle="--", label="generator")
        axis.axhline(sweep["mala_adapted_fd"], color="C1", linestyle=":",
                     label=f"MALA adapted (step {sweep['mala_adapted_step_size']:.2g})")
        axis.set_xscale("log")
        axis.set_xlabel("ULA step size")
        axis.set_ylabel("FD (train images)")
        axis.legend(fontsize=7)
        figure.savefig(paths["sweep"], dpi=120, bbox_inches="tight")
        text += (f"\n## ULA step sweep (seed 002)\n\n{sweep['num_samples']} chains x {sweep['steps']} steps, FD against "
                 f"{sweep['data']}: " + ", ".join(f"{s:g}: {f:.3f}" for s, f in zip(sweep["step_sizes"], sweep["fd"]))
                 + f". Best {sweep['best_step_size']:g}; the generator {sweep['generator_fd']:.3f}; MALA adapted "
                 f"(step {sweep['mala_adapted_step_size']:.3g}) {sweep['mala_adapted_fd']:.3f}.\n\n![sweep](sweep.png)\n")
    if output.traces:  # one figure for every traced method, so none overwrites another's
        paths["trace"] = folder / "trace.png"
        figure = Figure(figsize=(5, 3.5))
        axis = figure.add_subplot()
        for method, trace in output.traces.items():
            axis.plot(trace["step"], trace["fd"], ".-", label=method)
        axis.set_xlabel("Langevin step")
        axis.set_ylabel("FD (held out)")
        axis.set_title("FD against steps; ula-paper: step 0.01 x0.1 every 200 steps (DDLS App. B.2)", fontsize=8)
        axis.legend(fontsize=7)
        figure.savefig(paths["trace"], dpi=120, bbox_inches="tight")
        text += "\n## FD along the chains (DDLS Fig. 5; the ex2mcmc paper's FID against steps)\n\n"
        for method, trace in output.traces.items():
            best = int(np.argmin(trace["fd"]))
            gap = trace["step"][2] - trace["step"][1] if len(trace["step"]) > 2 else trace["step"][-1]
            kept = ("every" if method.startswith("ula-paper/") else
                    "after warmup (its first tenth), every" if output.config.ex2mcmc_protocol else
                    "after warmup (its first half), every")
            text += (f"- `{method}`: FD {kept} {gap} steps; lowest {trace['fd'][best]:.3f} at step "
                     f"{trace['step'][best]}, {trace['fd'][-1]:.3f} at the end (step {trace['step'][-1]}; step 0: "
                     f"the generator, {trace['fd'][0]:.3f}).\n")
        if output.config.ex2mcmc_protocol:
            text += ("\nSteps of MALA, i-SIR and Ex2MCMC are the ex2mcmc paper's (`--ex2mcmc-protocol`): one is 3 MALA "
                     "steps (MALA), i-SIR then 3 MALA steps (Ex2MCMC), one i-SIR step (i-SIR); the step from 0.01 "
                     "adapted to acceptance 0.67 in warmup, no mass matrix.\n")
        text += "\n![trace](trace.png)\n"
    text += _figure_sections(output.figures, folder, paths)
    paths["report"].write_text(text)
    return paths


def _image_rows(rows: np.ndarray) -> np.ndarray:
    """``(rows, columns, channels, side, side)`` images as one canvas, a row per chain or query."""
    return _grid(rows.reshape(-1, *rows.shape[2:]), columns=rows.shape[1], square=False)


def _figure_sections(figures: dict, folder: Path, paths: dict[str, Path]) -> str:
    text = ""
    chains = figures.get("chains")
    if chains:
        paths["chains"] = folder / "chains.png"
        frames = chains["images"]
        figure = Figure(figsize=(0.5 * frames.shape[1] + 0.5, 0.5 * frames.shape[0] + 0.6))
        axis = figure.add_subplot()
        axis.imshow(_image_rows(frames), cmap="gray", vmin=0, vmax=1)
        side = frames.shape[-1] + 1
        axis.set_xticks([side * i + side / 2 - 1 for i in range(frames.shape[1])], [str(s) for s in chains["steps"]],
                        fontsize=6)
        axis.set_yticks([])
        axis.set_xlabel("Langevin step")
        figure.savefig(paths["chains"], dpi=120, bbox_inches="tight")
        text += (f"\n## Chains from prior draws (DDLS Fig. 3)\n\n`{chains['method']}`: {frames.shape[0]} chains (rows) "
                 f"at steps {', '.join(map(str, chains['steps']))} (step 0: the prior draw through the generator)."
                 f"\n\n![chains](chains.png)\n")
    nearest = figures.get("nearest")
    if nearest:
        paths["nearest"] = folder / "nearest.png"
        images = nearest["images"]
        rows = np.concatenate([images["queries"][:, None], images["neighbours"]], axis=1)
        figure = Figure(figsize=(0.5 * rows.shape[1] + 0.5, 0.5 * rows.shape[0] + 0.6))
        axis = figure.add_subplot()
        axis.imshow(_image_rows(rows), cmap="gray", vmin=0, vmax=1)
        axis.set_title("sample | nearest train images", fontsize=7)
        axis.axis("off")
        figure.savefig(paths["nearest"], dpi=120, bbox_inches="tight")
        text += (f"\n## Nearest train images (DDLS Fig. 4)\n\n`{nearest['method']}`: each row a sample, then its "
                 f"{images['neighbours'].shape[1]} nearest train images in {nearest['space']}. Median distance to "
                 f"the nearest train image: samples {nearest['median_nearest_distance_samples']:.3f}, held-out "
                 f"images {nearest['median_nearest_distance_held_out']:.3f} (samples much closer than held-out "
                 f"images would be copies of the train set).\n\n![nearest](nearest.png)\n")
    return text
