"""Figures and Markdown report of :func:`ppl_ebm.mixing_study.run_mixing` (``ppl-ebm mixing``)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["write_mixing_report"]


def _plot(study: dict, path: Path) -> None:
    samplers = study["samplers"]
    figure, axes = plt.subplots(1, 4, figsize=(17, 3.6))
    for name, view in samplers.items():
        progression, coupling = view["progression"], view["coupling"]
        steps = progression["steps"]
        line = axes[0].plot(steps, progression["emd"], label=f"{name} (step {progression['step_size']:.2g})")[0]
        axes[0].axvline(progression["emd_plateau_step"], color=line.get_color(), ls=":", lw=0.8)
        axes[1].plot(steps, progression["mean_energy"], color=line.get_color(), label=name)
        axes[1].axvline(progression["energy_plateau_step"], color=line.get_color(), ls=":", lw=0.8)
        axes[2].plot(steps, progression["rhat"], color=line.get_color(), label=f"{name} rank R-hat")
        axes[2].plot(steps, progression["nested_rhat"], color=line.get_color(), ls="--", label=f"{name} nested R-hat")
        bound = coupling.get("tv_bound", coupling.get("tv_bound_lower_estimate"))
        label = name if "tv_bound" in coupling else f"{name} (lower estimate: {coupling['met_fraction']:.0%} met)"
        axes[3].plot(coupling["iterations"], bound, color=line.get_color(), label=label)
    axes[0].set_title("EMD of G(z) to data (dotted: plateau)", fontsize=9)
    axes[1].set_title("mean energy U(z)", fontsize=9)
    axes[2].axhline(1.01, color="0.5", lw=0.6)
    axes[2].set_yscale("log")
    axes[2].set_title("R-hat against iteration (line: 1.01)", fontsize=9)
    axes[3].set_ylim(0, 1.5)
    axes[3].axhline(0.25, color="0.5", lw=0.6)
    axes[3].set_title("L-lag TV upper bound", fontsize=9)
    for axis in axes:
        axis.set_xlabel("Langevin step")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_mixing_report(study: dict, folder: Path, command: str = "") -> dict[str, Path]:
    """Write ``mixing.json``, ``mixing.md`` and ``mixing.png``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": folder / "mixing.json", "report": folder / "mixing.md", "figure": folder / "mixing.png"}
    paths["metrics"].write_text(json.dumps(study, indent=2, default=float) + "\n")
    _plot(study, paths["figure"])
    config = study["config"]
    rows = []
    for name, view in study["samplers"].items():
        p, c = view["progression"], view["coupling"]
        final_rhat = p["rhat"][-1]
        rhat_ok = next((s for s, r in zip(p["steps"], p["rhat"]) if r < 1.01), None)
        nested_ok = next((s for s, r in zip(p["steps"], p["nested_rhat"]) if r < 1.01), None)
        tv = c["mixing_time_tv_quarter"]
        rows.append(
            f"| {name} | {p['step_size']:.3g} | {p['acceptance_mean']:.2f} | {p['emd_plateau_step']} | "
            f"{p['energy_plateau_step']} | {rhat_ok if rhat_ok is not None else '> ' + str(config['steps'])} "
            f"({final_rhat:.3f}) | {nested_ok if nested_ok is not None else '> ' + str(config['steps'])} | "
            f"{c['met_fraction']:.0%} | {tv if tv is not None else 'unknown (not all met)'} |"
        )
    text = (
        f"# Mixing time: {study['model']}\n\n"
        + (f"```bash\n{command}\n```\n\n" if command else "")
        + f"{config['chains']} chains from the prior (in {config['superchains']} superchains sharing a start), "
        f"{config['steps']} steps, checkpoints every {config['every']}; EMD of the {config['chains']} generated points to as many fresh data points. "
        f"Coupling: {config['pairs']} L-lag pairs, L = {config['lag']}, at most {config['max_iterations']} steps "
        "(Biswas, Jacob & Vanetti 2019; TV(pi_t, pi) <= E[max(0, ceil((tau - L - t) / L))], for ULA pi is its "
        "own stationary law at that step).\n\n"
        "| sampler | step | accept | EMD plateau | energy plateau | R-hat < 1.01 from (final) | nested R-hat < 1.01 "
        "from | pairs met | TV <= 1/4 from |\n|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\n![mixing](mixing.png)\n"
    )
    paths["report"].write_text(text)
    return paths
