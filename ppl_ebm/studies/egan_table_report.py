"""Report of ``ppl-ebm egan-table``: the KL table (ours beside Dai et al.'s Table 2) and contour figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ppl_ebm.metrics.grid_kl import PAIRS, SMOOTHING

__all__ = ["format_egan_table", "plot_densities", "write_report"]

_COLUMNS = [f"{p}||{q}" for p, q in PAIRS]
_LOSS_ORDER = ("gan", "egan-const", "egan-ent-vi", "egan-ent-nn")


def format_egan_table(results: dict[str, Any]) -> str:
    """Markdown: per data set, one row of our KLs and one of the paper's per model."""
    by_dataset: dict[str, list[tuple[str, dict]]] = {}
    for name, row in results["models"].items():
        by_dataset.setdefault(row["dataset"], []).append((name, row))
    lines: list[str] = []
    for dataset, rows in sorted(by_dataset.items()):
        rows.sort(key=lambda item: _LOSS_ORDER.index(item[1]["loss"]) if item[1]["loss"] in _LOSS_ORDER else 99)
        data_emp = rows[0][1]["data_emp"]
        paper_data_emp = rows[0][1].get("paper_data_emp") or {}
        lines += [
            f"### {dataset}",
            "",
            f"KL(p_data || p_emp) = {data_emp['data||emp']:.4f} ours, {paper_data_emp.get('data||emp', float('nan')):.4f} "
            f"paper; KL(p_emp || p_data) = {data_emp['emp||data']:.4f} ours, "
            f"{paper_data_emp.get('emp||data', float('nan')):.4f} paper.",
            "",
            "| model | source | " + " | ".join(c.replace("||", " ‖ ") for c in _COLUMNS) + " |",
            "|---|---|" + "---|" * len(_COLUMNS),
        ]
        for name, row in rows:
            lines.append(f"| {row['loss']} | ours ({name}) | " + " | ".join(f"{row['ours'][c]:.4f}" for c in _COLUMNS)
                         + " |")
            if row.get("paper"):
                lines.append(f"| {row['loss']} | paper | " + " | ".join(f"{row['paper'][c]:.4f}" for c in _COLUMNS)
                             + " |")
        weights = [(row["loss"], row["small_component_weight"]) for _, row in rows if "small_component_weight" in row]
        if weights:
            lines += ["", "Weight of the small component (true 0.1), from each grid density:", "",
                      "| model | p_disc | p_gen | p_data (grid) | p_emp |", "|---|---|---|---|---|"]
            lines += [f"| {loss} | {w['disc']:.4f} | {w['gen']:.4f} | {w['data']:.4f} | {w['emp']:.4f} |"
                      for loss, w in weights]
        lines.append("")
    return "\n".join(lines)


def write_report(results: dict[str, Any], path: Path) -> None:
    text = f"""# Dai et al. (2017) App. B.2: pairwise KL divergences on the 100 x 100 grid

Rows "ours" are measured here by `ppl-ebm egan-table`; rows "paper" are copied from the paper's
Table 2. p_data: the analytic mixture density at the grid nodes, renormalised; p_emp: histogram
of the model's 100k training points; p_gen: histogram of {results['generated_points']} generated
points (noise seed {results['seed']}); p_disc: exp(-c(x)) at the nodes, renormalised. Each cell gets
{SMOOTHING:g} before a KL divergence (the paper does not say how it handles empty cells), so the
histogram columns are only comparable to the paper's in size, not to the digit.

{format_egan_table(results)}
Figures: one per model (p_data, p_emp, p_gen, p_disc, and the energy c(x)).
"""
    Path(path).write_text(text)


def plot_densities(densities, title: str, path: Path) -> Path:
    """Five panels: the four grid densities as filled contours (shared colour scale) and the energy."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    grid = densities.grid
    gx, gy = np.meshgrid(grid.x, grid.y)
    panels = [("p_data", densities.data), ("p_emp", densities.emp), ("p_gen", densities.gen),
              ("p_disc", densities.disc)]
    top = max(float(p.max()) for _, p in panels)
    figure, axes = plt.subplots(1, 5, figsize=(22, 4.4))
    levels = np.linspace(0, top, 16)
    for axis, (name, p) in zip(axes, panels):
        axis.contourf(gx, gy, p, levels=levels, cmap="viridis")
        axis.set_title(name)
        axis.set_aspect("equal")
    energy = densities.energy
    contour = axes[4].contourf(gx, gy, energy, levels=20, cmap="magma")
    figure.colorbar(contour, ax=axes[4])
    axes[4].set_title("energy c(x)")
    axes[4].set_aspect("equal")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return Path(path)
