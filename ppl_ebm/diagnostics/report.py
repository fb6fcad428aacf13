"""``ppl-ebm report <store>``: the MCMC diagnostics of any stored run, written to a folder.

Tables (from :mod:`ppl_ebm.diagnostics.stored`, read block by block, so runs larger than
memory work): ``summary.csv`` (mean, sd, ESS bulk/tail, rank R-hat, MCSE of mean and sd per
dimension, ArviZ's estimators), ``nested_rhat.csv`` (nested R-hat per superchain count, with
the value mixed chains read), ``report.md`` (both, the run's settings, the worst rows).
Plots (ArviZ's own, on at most ``plot_chains`` chains x ``plot_dims`` dimensions, which is
what a plot can show): ``rank.png``, ``trace.png``, ``autocorr.png``, ``ess_evolution.png``.
Energy is not plotted: the Langevin drivers do not record it per draw.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ppl_ebm.diagnostics.stored import nested_rhat_table, open_run, summary_table

__all__ = ["write_report"]


def _arviz_subset(run, plot_chains: int, plot_dims: int):
    """An ArviZ object of the first chains and dimensions: the only part a plot reads."""
    from ppl_ebm.diagnostics.arviz_compat import to_arviz

    chains = min(plot_chains, run.draws.shape[0])
    dims = min(plot_dims, run.draws.shape[2])
    subset = np.asarray(run.draws[:chains, :, :dims])
    return to_arviz({run.variable: subset})


def _plots(idata, variable: str, output: Path) -> dict[str, str]:
    """ArviZ 0.23's plot functions, each figure saved and closed; a failure is reported, not raised."""
    import arviz as az
    import matplotlib.pyplot as plt

    written = {}
    plots = {
        "rank.png": lambda: az.plot_rank(idata, var_names=[variable]),
        "trace.png": lambda: az.plot_trace(idata, var_names=[variable]),
        "autocorr.png": lambda: az.plot_autocorr(idata, var_names=[variable], combined=True),
        "ess_evolution.png": lambda: az.plot_ess(idata, var_names=[variable], kind="evolution"),
    }
    for name, plot in plots.items():
        try:
            axes = plot()
            figure = np.asarray(axes).ravel()[0].get_figure()
            figure.savefig(output / name, dpi=80)
            plt.close(figure)
            written[name] = "written"
        except Exception as error:  # a plot ArviZ cannot draw (too few draws) must not lose the tables
            written[name] = f"skipped ({type(error).__name__}: {error})"
    return written


def write_report(store: str | os.PathLike, output: str | os.PathLike, *, plot_chains: int = 8,
                 plot_dims: int = 4, workers: int = 2) -> dict:
    """Write the tables and plots of the run stored at ``store`` into ``output``; returns what was written."""
    from ppl_ebm.validation import check_int, check_output_dir

    check_int("plot_chains", plot_chains, 1)
    check_int("plot_dims", plot_dims, 1)
    run = open_run(store)
    output = Path(output)
    check_output_dir(output, "output")
    output.mkdir(parents=True, exist_ok=True)
    summary = summary_table(run, workers=workers)
    summary.to_csv(output / "summary.csv")
    files = {"summary.csv": "written"}
    nested_text = ""
    if run.draws.shape[0] >= 4:
        nested, reference = nested_rhat_table(run)
        nested.to_csv(output / "nested_rhat.csv")
        files["nested_rhat.csv"] = "written"
        nested_text = ("\n## Nested R-hat (chains grouped in index order)\n\nMixed chains read about: "
                       + ", ".join(f"{k} {v:.4f}" for k, v in reference.items())
                       + f"\n\n```\n{nested.describe().loc[['mean', 'max']].to_string()}\n```\n")
    files.update(_plots(_arviz_subset(run, plot_chains, plot_dims), run.variable, output))
    chains, draws, dim = run.draws.shape
    worst = summary.sort_values("r_hat", ascending=False).head(10)
    (output / "report.md").write_text(
        f"# Diagnostics of {Path(store).name}\n\n{chains} chains x {draws} finished draws x {dim} dims.\n\n"
        f"Settings:\n\n```\n{json.dumps(run.settings, indent=1, default=str)}\n```\n\n"
        f"## Worst R-hat\n\n```\n{worst.to_string()}\n```\n{nested_text}\n"
        f"Plots on the first {min(plot_chains, chains)} chains x {min(plot_dims, dim)} dims: "
        + ", ".join(f"{name} {state}" for name, state in files.items() if name.endswith(".png")) + "\n"
    )
    files["report.md"] = "written"
    return files
