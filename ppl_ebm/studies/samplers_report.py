"""Table, figure and Markdown report of :func:`ppl_ebm.studies.samplers.run_sampler_study`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
# The object API, not pyplot: importing this module leaves the user's matplotlib backend alone.
from matplotlib.figure import Figure

from ppl_ebm.studies.compare_report import format_cell, target_check_line  # one formatter for every report

__all__ = ["format_sampler_table", "write_sampler_report"]

_COLUMNS = (
    ("chains", "chains", "{:d}"), ("draws_per_chain", "draws", "{:d}"), ("ess_bulk_min", "ESS bulk min", "{:.0f}"),
    ("ess_bulk_median", "ESS bulk med", "{:.0f}"), ("ess_tail_min", "ESS tail min", "{:.0f}"),
    ("rhat_max", "R-hat", "{:.3f}"), ("ess_per_second", "ESS/s (all)", "{:.3g}"),
    ("ess_per_second_no_compile", "ESS/s (no compile)", "{:.3g}"),
    ("ess_per_second_sampling", "ESS/s (sampling)", "{:.3g}"), ("ess_per_grad", "ESS/grad", "{:.2g}"),
    ("acceptance_mean", "accept", "{:.2f}"), ("independence_acceptance", "jump accept", "{:.2f}"),
    ("divergences", "div", "{:d}"), ("wall_seconds", "wall s", "{:.1f}"),
)


def format_sampler_table(rows: dict[str, dict]) -> str:
    header = "| method | " + " | ".join(title for _, title, _ in _COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(_COLUMNS) + 1)]
    lines += ["| " + name + " | " + " | ".join(format_cell(row.get(k), f) for k, _, f in _COLUMNS) + " |"
              for name, row in rows.items()]
    return "\n".join(lines)


def _plot(study: dict, path: Path) -> None:
    models = list(study["models"])
    figure = Figure(figsize=(6 * len(models), 3.8))
    axes = figure.subplots(1, len(models), squeeze=False)
    for axis, name in zip(axes[0], models):
        rows = study["models"][name]["methods"]
        names = list(rows)
        y = np.arange(len(names))
        axis.barh(y - 0.2, [rows[m]["ess_per_second"] or 0 for m in names], 0.4, label="warmup+compile included")
        axis.barh(y + 0.2, [rows[m]["ess_per_second_sampling"] or 0 for m in names], 0.4, label="sampling only")
        axis.set_yticks(y, names, fontsize=8)
        axis.set_xscale("log")
        axis.set_xlabel("min bulk ESS per second")
        axis.set_title(name, fontsize=9)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def write_sampler_report(study: dict, folder: Path, command: str = "") -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": folder / "samplers.json", "report": folder / "samplers.md", "figure": folder / "samplers.png"}
    paths["metrics"].write_text(json.dumps(study, indent=2, default=float) + "\n")
    text = ""
    if study["models"]:
        _plot(study, paths["figure"])
        text = _time_section(study, command)
        command = ""
    if study.get("bias"):
        from ppl_ebm.studies.samplers_bias_report import bias_section, plot_bias

        paths["bias_figure"] = folder / "samplers_bias.png"
        plot_bias(study["bias"], paths["bias_figure"])
        text = ((f"```bash\n{command}\n```\n" if command else "") + text
                + bias_section(study["bias"], paths["bias_figure"].name))
    if not study["models"]:
        del paths["figure"]
    paths["report"].write_text(text)
    return paths


def _time_section(study: dict, command: str) -> str:
    config = study["config"]
    text = ("# Samplers by ESS at matched wall time\n\n" + (f"```bash\n{command}\n```\n\n" if command else "")
            + f"Sampling budget {config['budget_seconds']:g} s per method after {config['warmup']} warmup steps "
            "(each samples until the budget has passed); ESS by ArviZ's estimators (rank-normalised; ppl_ebm.diagnostics.fast), "
            "min/median over latent dims, on every chain. ULA's ESS is for its own "
            "step-biased law. `mala-imh`: MALA whose every k-th step "
            f"(k = {config.get('independence_every', 2)}) is an independence step from the prior "
            "(`jump accept`: its acceptance).\n")
    for name, entry in study["models"].items():
        text += f"\n## {name}\n\n{target_check_line(entry.get('target_check'))}{format_sampler_table(entry['methods'])}\n"
        for key, ratio in entry["ratios"].items():
            text += f"\n- {key.replace('_', ' ')}: {ratio['best']} at {ratio['ratio']:.1f}x ESS/s (warmup and compile included)"
        converged = [m for m, row in entry["methods"].items() if row.get("converged")]
        unchecked = [m for m, row in entry["methods"].items() if row.get("converged") is None]
        text += (f"\n- R-hat < 1.01 reached by: {', '.join(converged) or 'none'}"
                 + (f"; not checkable (one chain): {', '.join(unchecked)}" if unchecked else "") + ".")
        if len(converged) < len(entry["methods"]) - len(unchecked):
            text += ("\n  An unconverged run's ESS mostly counts its chains' starting points (about one draw per "
                     "chain stuck in its mode); its ESS/s is not evidence of faster mixing. See `ppl-ebm mixing`.")
        text += "\n"
    return text + "\n![ESS per second](samplers.png)\n"
