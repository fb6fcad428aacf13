"""Figures and Markdown report of :func:`ppl_ebm.studies.mixing.run_mixing` (``ppl-ebm mixing``)."""

from __future__ import annotations

import json
from pathlib import Path

# The object API, not pyplot: importing this module leaves the user's matplotlib backend alone.
from matplotlib.figure import Figure

from ppl_ebm.diagnostics.mixing import nested_rhat_reference
from ppl_ebm.studies.compare_report import target_check_line  # one formatter for every report

__all__ = ["write_mixing_report"]


def _step_or_later(step, config) -> str:
    return str(step) if step is not None else f"> {config['steps']} (still moving)"


def _plot(study: dict, path: Path) -> None:
    samplers = study["samplers"]
    figure = Figure(figsize=(17, 3.6))
    axes = figure.subplots(1, 4)
    for name, view in samplers.items():
        progression, coupling = view["progression"], view["coupling"]
        steps = progression["steps"]
        line = axes[0].plot(steps, progression["emd"], label=f"{name} (step {progression['step_size']:.2g})")[0]
        if progression["emd_plateau_step"] is not None:  # None: still moving at the last step
            axes[0].axvline(progression["emd_plateau_step"], color=line.get_color(), ls=":", lw=0.8)
        axes[1].plot(steps, progression["mean_energy"], color=line.get_color(), label=name)
        if progression["energy_plateau_step"] is not None:
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


def write_mixing_report(study: dict, folder: Path, command: str = "") -> dict[str, Path]:
    """Write ``mixing.json``, ``mixing.md`` and ``mixing.png``; returns their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"metrics": folder / "mixing.json", "report": folder / "mixing.md", "figure": folder / "mixing.png"}
    paths["metrics"].write_text(json.dumps(study, indent=2, default=float) + "\n")
    _plot(study, paths["figure"])
    config = study["config"]
    rows = []
    # Mixed chains read sqrt(1 + 1/m) here, not 1 (one draw per chain, m chains per superchain).
    nested_reference = nested_rhat_reference(config["chains"] // config["superchains"], 1)
    nested_threshold = nested_reference + 0.01
    for name, view in study["samplers"].items():
        p, c = view["progression"], view["coupling"]
        final_rhat = p["rhat"][-1]
        rhat_ok = next((s for s, r in zip(p["steps"], p["rhat"]) if r < 1.01), None)
        nested_ok = next((s for s, r in zip(p["steps"], p["nested_rhat"]) if r < nested_threshold), None)
        tv = c["mixing_time_tv_quarter"]
        jumps = p.get("independence_acceptance_mean")
        accept = f"{p['acceptance_mean']:.2f}" + (f" (jumps {jumps:.2f})" if jumps is not None else "")
        meeting = (f"{c['meeting_time_mean']:.0f} / {c['meeting_time_median']:.0f} / {c['meeting_time_q90']:.0f}"
                   if c.get("meeting_time_mean") is not None else "none met")
        rows.append(
            f"| {name} | {p['step_size']:.3g} | {accept} | {_step_or_later(p['emd_plateau_step'], config)} | "
            f"{_step_or_later(p['energy_plateau_step'], config)} | {rhat_ok if rhat_ok is not None else '> ' + str(config['steps'])} "
            f"({final_rhat:.3f}) | {nested_ok if nested_ok is not None else '> ' + str(config['steps'])} "
            f"({p['nested_rhat'][-1]:.3f}) | {c['met_fraction']:.0%} | {meeting} | "
            f"{tv if tv is not None else 'unknown (not all met)'} |"
        )
    text = (
        f"# Mixing time: {study['model']}\n\n"
        + (f"```bash\n{command}\n```\n\n" if command else "")
        + target_check_line(study.get("target_check"))
        + f"{config['chains']} chains from the prior (in {config['superchains']} superchains sharing a start), "
        f"{config['steps']} steps, checkpoints every {config['every']}; EMD of the {config['chains']} generated points to as many fresh data points. "
        f"Coupling: {config['pairs']} L-lag pairs, L = {config['lag']}, at most {config['max_iterations']} steps "
        "(Biswas, Jacob & Vanetti 2019; TV(pi_t, pi) <= E[max(0, ceil((tau - L - t) / L))], for ULA pi is its "
        "own stationary law at that step; meeting times are of the pairs that met).\n\n"
        + (f"mala-imh: MALA with an independence step from the prior every {config['independence_every']} steps "
           "(accept: its MALA steps', jumps: its independence steps'), coupled by a common proposal and "
           "uniform.\n\n" if "mala-imh" in study["samplers"] else "")
        + f"Nested R-hat of independent draws from the target is {nested_reference:.3f} here, not 1 "
        f"(sqrt(1 + 1/m), m = {config['chains'] // config['superchains']} chains of one draw per superchain), "
        "so its column counts from where it falls within 0.01 of that.\n\n"
        "| sampler | step | accept | EMD plateau | energy plateau | R-hat < 1.01 from (final) | nested R-hat < "
        f"{nested_threshold:.3f} from (final) | pairs met | meeting time mean / median / 90% | TV <= 1/4 from |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\n![mixing](mixing.png)\n"
    )
    paths["report"].write_text(text)
    return paths
