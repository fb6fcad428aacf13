"""Figures, table and Markdown report of a :func:`ppl_ebm.studies.compare.run_compare` run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
# Figures by the object API, not pyplot: no global figure state and no backend switch, so
# importing this module never changes the user's matplotlib backend; savefig renders files
# with the format's own (Agg) canvas.
from matplotlib.figure import Figure

from ppl_ebm.metrics.distances import paired_difference
from ppl_ebm.studies.compare import PAPER_STEP_SIZE

__all__ = ["format_cell", "format_compare_table", "format_paired_ratios", "target_check_line", "write_report"]

_COLUMNS = (
    ("emd", "W1", "{:.4f}"),
    ("modes_recovered", "modes", "{:d}"),
    ("high_quality_fraction", "HQ %", "{:.1%}"),
    ("high_quality_std", "HQ std", "{:.3f}"),
    ("ess_bulk_min", "ESS bulk", "{:.0f}"),
    ("rhat_max", "R-hat", "{:.3f}"),
    ("ess_per_second", "ESS/s", "{:.3g}"),
    ("ess_per_grad", "ESS/grad", "{:.2g}"),
    ("acceptance_mean", "accept", "{:.2f}"),
    ("grad_evals", "grads", "{:.3g}"),
    ("wall_seconds", "wall s", "{:.1f}"),
)


def format_cell(value: object, fmt: str) -> str:
    """One table cell: ``fmt`` applied to ``value``, ``-`` when missing or not finite.

    Parameters
    ----------
    value
        A number, or None.
    fmt
        A ``str.format`` pattern; ``"{:d}"`` formats ``int(value)``.

    Returns
    -------
    str
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if fmt == "{:d}":
        return str(int(value))
    return fmt.format(value)


def _paper_columns(metrics: dict[str, dict]) -> tuple[tuple[str, str, str], ...]:
    """The papers' W2^2 columns after W1, at the point count the rows were scored at
    (``w2sq_<points>_mean`` / ``_std``); none for rows scored before that metric existed."""
    keys = {key for values in metrics.values() for key in values}
    points = sorted(int(key[len("w2sq_"):-len("_mean")]) for key in keys
                    if key.startswith("w2sq_") and key.endswith("_mean"))
    return tuple(column for n in points
                 for column in ((f"w2sq_{n}_mean", f"W2^2@{n}", "{:.4f}"), (f"w2sq_{n}_std", "+-", "{:.4f}")))


def format_compare_table(metrics: dict[str, dict], markdown: bool = False) -> str:
    """One row per method: sample quality (our W1, the papers' W2^2 "EMD" with its spread, DDLS
    Table 1's mode metrics) and sampler efficiency."""
    columns = _COLUMNS[:1] + _paper_columns(metrics) + _COLUMNS[1:]
    header = ["method", *(title for _, title, _ in columns)]
    rows = [[name, *(format_cell(values.get(key), fmt) for key, _, fmt in columns)] for name, values in metrics.items()]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    def line(cells):
        return "  ".join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(cells))
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def format_paired_ratios(metrics: dict[str, dict], markdown: bool = False) -> str:
    """Each method against the generator, as DDLS Table 2's goals are stated: W1 ratio, W2^2 ratio
    of means, and the paired W2^2 difference (method - generator, repeat by repeat on the same data
    draws) with its standard error; "" when the rows carry no per-repeat values."""
    generator = metrics.get("generator", {})
    keys = sorted(key for key in generator if key.startswith("w2sq_") and key.endswith("_values"))
    if not keys:
        return ""
    key = keys[0]
    points = key[len("w2sq_"):-len("_values")]
    base = np.asarray(generator[key], dtype=float)
    lines = [f"Against the generator (W2^2@{points}: paired over the {len(base)} repeats' shared data draws):"]
    if markdown:
        lines.append("")
    for name, values in metrics.items():
        if name == "generator" or key not in values:
            continue
        difference, se = paired_difference(values[key], base)
        bullet = "-" if markdown else " "
        lines.append(f"{bullet} {name}: W1 {values['emd'] / generator['emd']:.2f}x, "
                     f"W2^2 {np.mean(values[key]) / base.mean():.2f}x (difference {difference:+.4f} +- {se:.4f})")
    return "\n".join(lines)


def _plot_samples(samples: dict[str, np.ndarray], data: np.ndarray, path: Path, limit: int = 2000) -> None:
    names = list(samples)
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    low, high = np.percentile(data, [0.5, 99.5], axis=0)
    pad = 0.25 * (high - low)
    for axis, name in zip(axes.flat, names):
        axis.scatter(data[:limit, 0], data[:limit, 1], s=1, c="0.8", rasterized=True)
        points = samples[name][:limit]
        axis.scatter(points[:, 0], points[:, 1], s=1, c="tab:blue", rasterized=True)
        axis.set_title(name, fontsize=9)
        axis.set_xlim(low[0] - pad[0], high[0] + pad[0])
        axis.set_ylim(low[1] - pad[1], high[1] + pad[1])
        axis.set_xticks([])
        axis.set_yticks([])
    for axis in list(axes.flat)[len(names):]:
        axis.axis("off")
    figure.suptitle("samples (blue) over fresh data (grey)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _plot_sweep(sweep: dict, path: Path) -> None:
    figure = Figure(figsize=(5, 3.5))
    axis = figure.subplots()
    axis.semilogx(sweep["step_sizes"], sweep["emd"], "o-", label="ULA, fixed step")
    axis.axhline(sweep["mala_adapted_emd"], color="tab:green", ls="--",
                 label=f"MALA adapted (step {sweep['mala_adapted_step_size']:.2g})")
    if "mala_imh_adapted_emd" in sweep:
        axis.axhline(sweep["mala_imh_adapted_emd"], color="tab:purple", ls="--",
                     label=f"MALA + independence steps (step {sweep['mala_imh_adapted_step_size']:.2g})")
    axis.axhline(sweep["generator_emd"], color="0.5", ls=":", label="generator only")
    axis.axvline(PAPER_STEP_SIZE, color="tab:red", lw=0.6, ls="-.", label=f"DDLS paper's step ({PAPER_STEP_SIZE:g})")
    axis.set_xlabel("Langevin step size")
    axis.set_ylabel("W1 to data")
    axis.set_title(f"W1 vs step size ({sweep['steps']} steps, {sweep['num_samples']} samples)", fontsize=9)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _autocorrelation(x: np.ndarray, max_lag: int) -> np.ndarray:
    x = x - x.mean()
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    return acf[: max_lag + 1] / acf[0] if acf[0] > 0 else np.zeros(max_lag + 1)


def _plot_traces(traces: dict[str, np.ndarray], path: Path) -> None:
    names = list(traces)
    figure = Figure(figsize=(9, 1.9 * len(names)))
    axes = figure.subplots(len(names), 2, squeeze=False)
    for row, name in enumerate(names):
        chains = traces[name]  # (chain, draw, dim): a few chains, latent dimension 0
        for chain in chains:
            axes[row, 0].plot(chain[:, 0], lw=0.6)
            max_lag = min(100, chain.shape[0] - 1)
            axes[row, 1].plot(_autocorrelation(chain[:, 0], max_lag), lw=0.8)
        axes[row, 0].set_ylabel(name, fontsize=8)
        axes[row, 1].axhline(0, color="0.6", lw=0.5)
    axes[0, 0].set_title("trace of z[0] (4 chains)", fontsize=9)
    axes[0, 1].set_title("autocorrelation of z[0]", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def _calibrated_critic(model_config: dict) -> str:
    # A model is calibrated by a logistic head alone, or by fine-tuning the critic first.
    tuned = "fine_tune" in model_config.get("calibration", {})
    return f"calibrated critic ({'fine-tuned by BCE, then a logistic head' if tuned else 'a logistic head'}, DDLS Sec. 5.2)"


def target_check_line(check: dict | None) -> str:
    """One Markdown paragraph on :func:`ppl_ebm.targets.target_check.highest_density_check`'s result."""
    if check is None:
        return ""
    where = (f"potential minimum {check['min_potential']:.1f} at |z| = {check['argmin_norm']:.1f} "
             f"(prior draws: potential >= {check['prior_min_potential']:.1f}, |z| <= {check['prior_max_norm']:.1f})")
    if check["mode_beyond_prior"]:
        return (f"**Target check: its highest density lies beyond the prior** — {where}, generating "
                f"{[round(v, 2) for v in check['generated_at_argmin']]}. Long runs drift there; their ESS measures "
                "that drift (`ppl_ebm.targets.target_check`).\n\n")
    return f"Target check: {where}; no mode beyond the prior found.\n\n"


def write_report(output, folder: Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md`` and the figures; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": folder / "metrics.json", "report": folder / "report.md",
             "samples": folder / "samples.png", "traces": folder / "traces.png"}
    paths["metrics"].write_text(json.dumps(output.to_json(), indent=2, default=float) + "\n")
    _plot_samples(output.samples, output.data, paths["samples"])
    if output.traces:
        _plot_traces(output.traces, paths["traces"])
    sweep_text = ""
    if output.sweep:
        paths["sweep"] = folder / "emd_vs_step.png"
        _plot_sweep(output.sweep, paths["sweep"])
        sweep = output.sweep
        rows = "\n".join(f"| {s:g} | {e:.4f} |" for s, e in zip(sweep["step_sizes"], sweep["emd"]))
        sweep_text = (
            "\n## W1 against the Langevin step size (seed 002's sweep)\n\n"
            f"ULA on JAX, noise sqrt(step), {sweep['steps']} steps from prior draws, "
            f"{sweep['num_samples']} samples scored against a validation data sample (not the test "
            f"sample of the table above).\n\n| step | W1 |\n|---|---|\n{rows}\n\n"
            f"Best fixed step {sweep['best_step_size']:g} (W1 {sweep['best_emd']:.4f}), used by the ULA rows "
            f"unless a step was given; MALA with its "
            f"adapted step {sweep['mala_adapted_step_size']:.3g}: W1 {sweep['mala_adapted_emd']:.4f} "
            f"({sweep['mala_over_best']:.2f}x the best)"
            + (f"; MALA with independence steps from the prior (mala-imh), adapted step "
               f"{sweep['mala_imh_adapted_step_size']:.3g}: W1 {sweep['mala_imh_adapted_emd']:.4f} "
               f"({sweep['mala_imh_over_best']:.2f}x)" if "mala_imh_adapted_emd" in sweep else "")
            + f"; generator only {sweep['generator_emd']:.4f}.\n\n"
            "![W1 vs step](emd_vs_step.png)\n"
        )
    config = output.config
    text = (
        f"# ppl-ebm compare: {output.model_config['name']}\n\n"
        f"Dataset `{output.model_config['training']['dataset']}`, seed {config.seed}, "
        f"{config.num_samples} samples per method scored against {config.num_samples} fresh data "
        "points. W1 (ours) is the exact 1-Wasserstein distance with Euclidean cost (POT `ot.emd2`, numItermax "
        f"1e8, convergence checked) on all {config.num_samples} points. W2^2@{config.w2sq_num_points} is the EMD as "
        "DOT, DDLS Table 2 and ex2mcmc compute it (`ot.emd2` on `ot.dist`, POT's default squared Euclidean "
        f"cost), {config.w2sq_num_points} samples against {config.w2sq_num_points} fresh data points, mean and std over "
        f"{config.w2sq_repeats} repeats, each its own data draw: compare it with the papers' figures. The `data` "
        "row scores a second fresh data sample, the floor any method can reach at these sample sizes. Modes and HQ follow DDLS Table 1 (a sample is high "
        "quality within 4 std of its nearest mode). ESS columns: ArviZ bulk ESS (min over latent "
        "dims), per second of the whole run and per gradient evaluation; ULA/MALA keep their final "
        "states as samples (DDLS Alg. 1), NUTS/HMC pool their draws. DDLS uses the "
        f"{'GAN critic as trained' if config.raw_critic else _calibrated_critic(output.model_config)}"
        ", DRS and MH-GAN the calibrated critic, DOT the GAN's own critic.\n\n"
        f"{target_check_line(output.target_check)}{format_compare_table(output.metrics, markdown=True)}\n\n"
        f"{format_paired_ratios(output.metrics, markdown=True)}\n\n![samples](samples.png)\n"
        f"{sweep_text}\n## Traces\n\n![traces](traces.png)\n"
    )
    paths["report"].write_text(text)
    return paths
