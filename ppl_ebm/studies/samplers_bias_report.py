"""Tables and figures of :func:`ppl_ebm.studies.samplers_bias.run_bias_study` (the bias part of
the ``ppl-ebm samplers`` report)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
# The object API, not pyplot: importing this module leaves the user's matplotlib backend alone.
from matplotlib.figure import Figure

from ppl_ebm.studies.bias import THRESHOLD
from ppl_ebm.studies.compare_report import format_cell

__all__ = ["bias_section", "plot_bias"]

_COLUMNS = (
    ("chains", "chains", "{:d}"), ("grads_per_chain", "grads/chain", "{:.0f}"),
    ("potentials_only_per_chain", "+potentials/chain", "{:.0f}"),
    ("grads_to_low_bias", f"grads to b2_max<{THRESHOLD:g}", "{:.0f}"), ("b2_avg", "b2_avg", "{:.2g}"),
    ("b2_max", "b2_max", "{:.2g}"), ("ess_bulk_min", "ESS bulk min", "{:.0f}"), ("ess_per_kgrad", "ESS/kgrad", "{:.3g}"),
    ("ess_per_second", "ESS/s (all)", "{:.3g}"), ("ess_per_second_no_compile", "ESS/s (no compile)", "{:.3g}"),
    ("rhat_max", "R-hat", "{:.3f}"), ("acceptance", "accept", "{:.2f}"), ("wall_seconds", "wall s", "{:.1f}"),
    ("compile_seconds", "compile s", "{:.1f}"),
)

#: Our MALA family's step adaptation as the report words it, by the study's ``step_size_adaptation``.
STEP_ADAPTATION = {
    "dual_averaging": "per-chain dual averaging to 0.574",
    "cross_chain": "one step for all chains moved each warmup step by their mean acceptance towards 0.574 "
                   "(`--step-size-adaptation cross_chain`, for short warmups)",
}
TUNING = (
    "Tuning, each as its authors recommend: `mala`, `mala-imh`, `ex2mcmc` (ours): {step_adaptation} "
    "and a diagonal mass matrix from cross-chain statistics (the defaults; `mala-imh`: every 2nd step an "
    "independence step from the prior; `ex2mcmc`: 10 particles and 3 MALA steps, Samsonov et al.'s configuration); `nuts`: NumPyro's defaults "
    "(0.8, diagonal mass in Stan's windows), chains vectorised; `chees`: BlackJAX's ChEES adaptation as shipped "
    "(harmonic-mean acceptance 0.651, Adam 0.5, Halton jitter); `meads`: BlackJAX's MEADS defaults (4 folds); "
    "`mams`: BlackJAX's adjusted-MCLMC tuner at the authors' settings (acceptance 0.9, fractions 0.1, diagonal "
    "preconditioning, random trajectory lengths), run on 16 chains (`tuning_chains`) and pooled, then every "
    "chain burned in for the warmup with the pooled kernel.")


def _table(rows: list[dict]) -> str:
    lines = ["| sampler | " + " | ".join(title for _, title, _ in _COLUMNS) + " |", "|" + "---|" * (len(_COLUMNS) + 1)]
    for row in rows:
        name = row["sampler"] + ("" if row["converged"] else " (not converged)")
        lines.append("| " + name + " | " + " | ".join(format_cell(row.get(k), f) for k, _, f in _COLUMNS) + " |")
    return "\n".join(lines)


def plot_bias(bias: dict, path: Path) -> None:
    """Per target: worst-coordinate bias against gradients per chain, and ESS/kgrad bars."""
    targets = list(bias["targets"])
    figure = Figure(figsize=(11, 3.8 * len(targets)))
    axes = figure.subplots(len(targets), 2, squeeze=False)
    for (left, right), name in zip(axes, targets):
        rows = bias["targets"][name]["rows"]
        for row in rows:
            grads, b2 = np.asarray(row["bias_curve"]).T
            left.loglog(grads, b2, label=row["sampler"] + ("" if row["converged"] else " (not converged)"))
        left.axhline(THRESHOLD, color="grey", linestyle=":")
        left.set(xlabel="gradients per chain (warmup included)", ylabel="worst-coordinate bias of E[x^2]", title=name)
        left.legend(fontsize=7)
        right.bar([row["sampler"] for row in rows], [row["ess_per_kgrad"] or 0 for row in rows],
                  color=["C0" if row["converged"] else "C7" for row in rows])
        right.set(ylabel="bulk ESS (worst coord.) per 1000 gradients", title=f"{name}: ESS per gradient (grey: not converged)")
        right.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def bias_section(bias: dict, figure_name: str) -> str:
    config = bias["config"]
    text = (f"\n# Gradients to low bias and ESS per gradient\n\n{config['chains']} chains ({config['nuts_chains']} for "
            f"NumPyro's NUTS), {config['warmup']} warmup + {config['draws']} draws each, JAX backend. `b2`: the "
            "standardised squared bias of E[x^2], (mean(x^2) - E[x^2])^2 / Var[x^2], averaged and worst over "
            f"coordinates (Robnik et al.); gradients to low bias: per chain, warmup included, until b2_max stays "
            f"under {THRESHOLD:g} (`-`: never); `+potentials/chain`: potential evaluations without a gradient (i-SIR's "
            "proposals in `ex2mcmc`, `isir`: a forward pass each, no backward), not counted as gradients; ESS/s "
            "counts every cost. A run is *not converged* when R-hat > 1.01 or its bias never gets "
            f"under {THRESHOLD:g}; a ratio involving one says so.\n\n"
            + TUNING.format(step_adaptation=STEP_ADAPTATION[config.get("step_size_adaptation", "dual_averaging")])
            + "\n")
    for name, entry in bias["targets"].items():
        prior_b2, start = entry.get("prior_b2_max"), ""
        if prior_b2 is not None:  # a latent EBM: its chains start at prior draws
            start = (f" The chains start at prior draws, whose own b2_max is {prior_b2:.2g}"
                     + (f": under {THRESHOLD:g}, so gradients to low bias cannot tell samplers apart here "
                        "(ESS per gradient still can)." if prior_b2 < THRESHOLD else "."))
        text += (f"\n## {name}\n\nTruth: {entry['truth']}.{start}\n\n{_table(entry['rows'])}\n\n"
                 "Our best vs BlackJAX's best:\n")
        text += "".join(f"\n- {line}" for line in entry["headline"]) + "\n"
    return text + f"\n![bias against gradients, ESS per gradient]({figure_name})\n"
