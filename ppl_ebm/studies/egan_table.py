"""Dai et al.'s (2017) App. B.2 for zoo energy GANs: p_data, p_emp, p_gen and p_disc on the grid and their KLs.

``ppl-ebm egan-table`` runs :func:`run_egan_table` and writes ``metrics.json``, ``report.md``
(ours beside the paper's Table 2) and a contour figure per model (see
:mod:`ppl_ebm.studies.egan_table_report`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from ppl_ebm import data as datasets
from ppl_ebm.metrics.grid_kl import Grid, density_on_grid, grid_kl, histogram_on_grid, pairwise_kls, paper_grid
from ppl_ebm.studies.egan_paper import DATA_EMP, PAPER_TABLE
from ppl_ebm.zoo.store import load_model

__all__ = ["GridDensities", "grid_densities", "run_egan_table", "small_component_weight"]

#: Generated points for p_gen (the paper's 100K).
GENERATED_POINTS = 100_000


class GridDensities(NamedTuple):
    """One model's four distributions on its data set's grid (each ``grid.shape``, summing to 1)."""

    grid: Grid
    data: np.ndarray
    emp: np.ndarray
    gen: np.ndarray
    disc: np.ndarray
    energy: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"data": self.data, "emp": self.emp, "gen": self.gen, "disc": self.disc}


def critic_energy(critic: torch.nn.Module, points: np.ndarray, batch: int = 20_000) -> np.ndarray:
    """c(x) of a zoo energy critic at ``points`` (float64 ``(n,)``)."""
    with torch.no_grad():
        out = [critic(torch.as_tensor(points[i:i + batch], dtype=torch.float32))[:, 0].double().numpy()
               for i in range(0, len(points), batch)]
    return np.concatenate(out)


def grid_densities(model: str | Path, generated_points: int = GENERATED_POINTS, seed: int = 0) -> GridDensities:
    """App. B.2's four distributions for a zoo energy GAN.

    p_emp is the histogram of the model's own training set (``train_size`` points with the
    training seed), which also fixes the canvas; p_gen the histogram of ``generated_points``
    generator samples (noise seed ``seed``); p_disc = exp(-c) and p_data (the analytic
    mixture density) renormalised over the nodes.
    """
    loaded = load_model(model)
    training = loaded.config.get("training") or {}
    if loaded.config.get("critic_output") != "energy" or "train_size" not in training:
        raise ValueError(f"model {loaded.name!r} is not an energy GAN of ppl-ebm train --loss egan-*/gan.")
    dataset = loaded.dataset
    train = datasets.sample_dataset(dataset, training["train_size"], training["seed"] * 1_000_003 + 17)
    grid = paper_grid(train)
    points = grid.points
    with torch.no_grad():
        noise = torch.randn(generated_points, training["latent_dim"], generator=torch.Generator().manual_seed(seed))
        generated = loaded.generator(noise).numpy()
    energy = critic_energy(loaded.critic, points)
    return GridDensities(
        grid=grid,
        data=density_on_grid(datasets.log_density(dataset, points), grid),
        emp=histogram_on_grid(train, grid),
        gen=histogram_on_grid(generated, grid),
        disc=density_on_grid(-energy, grid),
        energy=energy.reshape(grid.shape),
    )


def small_component_weight(dataset: str, density: np.ndarray, grid: Grid) -> float:
    """The mass a grid density gives the lightest mixture component: sum over nodes of its
    probability times the component's posterior responsibility under the true mixture."""
    weights, means, covariances = datasets.mixture_parameters(dataset)
    variances = np.diagonal(covariances, axis1=1, axis2=2)  # the toy mixtures are diagonal
    points = grid.points
    log_components = np.stack([
        np.log(w) - 0.5 * np.sum((points - m) ** 2 / v + np.log(2 * np.pi * v), axis=1)
        for w, m, v in zip(weights, means, variances)
    ], axis=1)
    responsibility = np.exp(log_components - np.logaddexp.reduce(log_components, axis=1, keepdims=True))
    return float(np.sum(density.ravel() * responsibility[:, int(np.argmin(weights))]))


def run_egan_table(models: list[str], output: Path, generated_points: int = GENERATED_POINTS,
                   seed: int = 0, figures: bool = True) -> dict[str, Any]:
    """KL table (ours and the paper's) for ``models``; writes ``metrics.json``, ``report.md`` and figures.

    Returns the metrics dictionary: per model its data set, loss, the ten KLs, the paper's
    ten (when the paper has that pair), KL(p_data || p_emp) both ways, and for the biased
    mixture the small component's weight under p_disc, p_gen and p_data.
    """
    from ppl_ebm.studies.egan_table_report import plot_densities, write_report

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"generated_points": generated_points, "seed": seed, "models": {}}
    for model in models:
        loaded = load_model(model)
        if loaded.kind != "toy2d":
            raise ValueError(f"egan-table works on energy GANs of 2-D points; {model!r} is an image model "
                             "(rank its images with ppl-ebm egan-rank).")
        dataset, loss = loaded.dataset, loaded.config["training"]["loss"]
        densities = grid_densities(model, generated_points, seed)
        row: dict[str, Any] = {
            "dataset": dataset, "loss": loss, "training_seconds": loaded.config.get("training_seconds"),
            "iterations": loaded.config["training"]["iterations"],
            "ours": pairwise_kls(densities.as_dict()),
            "data_emp": {"data||emp": grid_kl(densities.data, densities.emp),
                         "emp||data": grid_kl(densities.emp, densities.data)},
            "paper": PAPER_TABLE.get(dataset, {}).get(loss),
            "paper_data_emp": DATA_EMP.get(dataset),
        }
        if dataset == "biased2gaussians":
            row["small_component_weight"] = {name: small_component_weight(dataset, getattr(densities, name),
                                                                          densities.grid)
                                             for name in ("disc", "gen", "data", "emp")}
        if figures:
            path = plot_densities(densities, f"{loaded.name} ({loss} on {dataset})", output / f"{loaded.name}.png")
            row["figure"], row["figure_path"] = path.name, str(path)
        results["models"][loaded.name] = row
    (output / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    write_report(results, output / "report.md")
    return results
