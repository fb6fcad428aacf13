"""Ranking images by an energy GAN's energy (Dai et al. 2017, Sec. 5.2 and App. B.4): ``ppl-ebm egan-rank``.

The paper trains EGAN-Ent-NN on one NIST digit and sorts 1,000 images (500 generated, 500 real
test images) by the energy c(x) its discriminator assigns: the lowest-energy images look like
the digit's mean, the highest-energy ones are rotated, very thick or thin, or oddly shaped. Here
one model is trained on all ten digits of scikit-learn's 8x8 set and the held-out images are
ranked within each class (within a class, ranking by the marginal density p(x) = p(x | y) p(y)
is ranking by p(x | y) wherever the classes do not overlap).

A picture cannot fail, so the study also measures what a calibrated energy should do:

* **Real below everything else**: the AUC of "held-out real image has lower energy" against
  generated images, uniform pixel noise, held-out images with Gaussian pixel noise, and blends
  of two held-out images of different classes (in-range but atypical images).
* **Typical below atypical within a class**: Spearman's rho, within each class, between the
  energy and the distance to the class's mean train image (the paper's visual criterion), and
  between the energy and the shipped digits classifier's probability of the true label (a
  confidently classified digit should be a typical one: rho < 0).
* **No memorisation**: mean energy of the train images against the held-out ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

__all__ = ["RANK_CORRUPTIONS", "format_rank", "image_energies", "rank_by_class", "run_egan_rank", "write_rank_figure"]

#: The image sets held-out real images are compared with (besides the generator's).
RANK_CORRUPTIONS = ("uniform_noise", "pixel_noise", "blend")
#: Standard deviation of the Gaussian pixel noise on [-1, 1] images (0.3 = 2.4 of the 16 grey levels).
PIXEL_NOISE_STD = 0.3


@torch.no_grad()
def image_energies(critic: torch.nn.Module, images: np.ndarray, batch: int = 2000) -> np.ndarray:
    """The energy c(x) of each image ``(n, C, H, W)`` (the critic's output, ``critic_output="energy"``)."""
    critic.eval()
    values = [critic(torch.as_tensor(images[i:i + batch], dtype=torch.float32))[:, 0]
              for i in range(0, len(images), batch)]
    return torch.cat(values).double().numpy() if values else np.zeros(0)


def rank_by_class(energy: np.ndarray, labels: np.ndarray, k: int) -> dict[int, dict[str, list[int]]]:
    """Per class, the indices of its ``k`` lowest-energy images (lowest first) and ``k`` highest (highest last)."""
    ranking = {}
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = members[np.argsort(energy[members], kind="stable")]
        ranking[int(label)] = {"lowest": order[:k].tolist(), "highest": order[-k:].tolist()}
    return ranking


def _auc_real_lower(real: np.ndarray, other: np.ndarray) -> float:
    """P(c(real) < c(other)) over all pairs (ties half): the AUC of -energy as a real/other score."""
    return float(roc_auc_score(np.r_[np.ones(len(real)), np.zeros(len(other))], -np.r_[real, other]))


def _corruptions(images: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(images)
    partner = rng.permutation(n)
    for _ in range(100):  # blend each image with one of another class
        same = labels[partner] == labels
        if not same.any():
            break
        partner[same] = rng.choice(n, int(same.sum()))
    return {
        "uniform_noise": rng.uniform(-1.0, 1.0, images.shape).astype(np.float32),
        "pixel_noise": np.clip(images + PIXEL_NOISE_STD * rng.standard_normal(images.shape), -1, 1).astype(np.float32),
        "blend": (0.5 * (images + images[partner])).astype(np.float32),
    }


def _within_class_spearman(energy: np.ndarray, other: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    per_class = {}
    for label in np.unique(labels):
        members = labels == label
        per_class[int(label)] = float(spearmanr(energy[members], other[members]).statistic)
    values = np.array(list(per_class.values()))
    return {"mean": float(np.nanmean(values)), "per_class": per_class,
            "pooled": float(spearmanr(energy, other).statistic)}


def run_egan_rank(model: str | Path, output: Path, k: int = 8, num_generated: int = 360, seed: int = 0,
                  classifier: str | None = None) -> dict[str, Any]:
    """Rank a zoo image energy GAN's held-out images by energy; write ``ranking.png``, ``energies.png``,
    ``rank.json`` and ``report.md`` into ``output`` and return the results.

    Parameters
    ----------
    model
        Zoo name or folder of an energy GAN trained on an image set (``ppl-ebm train --dataset
        digits --loss egan-ent-nn``).
    output
        Folder to write.
    k
        Images shown per class at each end of the ranking.
    num_generated
        Generator samples (noise seed ``seed``) ranked against the held-out images.
    seed
        Seed of the generated images and of the corrupted sets.
    classifier
        Zoo classifier for the confidence check (default ``<dataset>-cnn``); skipped when absent.
    """
    from ppl_ebm.data.images import load_images
    from ppl_ebm.zoo.egan_build import is_egan_config
    from ppl_ebm.zoo.image_build import classifier_name, generate_images
    from ppl_ebm.zoo.store import load_model, model_dir, read_config

    if k < 1 or num_generated < 2:
        raise ValueError(f"k must be >= 1 and num_generated >= 2, got {k} and {num_generated}.")
    folder = model_dir(model)
    config = read_config(folder)
    if not is_egan_config(config) or config.get("kind") != "image":
        raise ValueError(f"{folder} is not an energy GAN of an image set; egan-rank ranks images "
                         "(train one with ppl-ebm train --dataset digits --loss egan-ent-nn).")
    zoo = load_model(folder)
    training = config["training"]
    dataset = training["dataset"]
    held_out, train = load_images(dataset, "held_out"), load_images(dataset, "train")
    if k > np.bincount(held_out.labels).min():
        raise ValueError(f"k = {k} exceeds the smallest class of the held-out split "
                         f"({np.bincount(held_out.labels).min()}).")
    generated = generate_images(zoo.generator, training["latent_dim"], num_generated, seed)
    sets = {"held_out": held_out.images, "train": train.images, "generated": generated,
            **_corruptions(held_out.images, held_out.labels, seed)}
    energy = {name: image_energies(zoo.critic, images) for name, images in sets.items()}
    real = energy["held_out"]
    class_means = np.stack([train.images[train.labels == c].mean(axis=0) for c in range(int(train.labels.max()) + 1)])
    distance = np.sqrt(((held_out.images - class_means[held_out.labels]) ** 2).reshape(len(real), -1).sum(axis=1))
    results: dict[str, Any] = {
        "model": config["name"], "dataset": dataset, "k": k, "num_generated": num_generated, "seed": seed,
        "pixel_noise_std": PIXEL_NOISE_STD,
        "n": {name: len(values) for name, values in energy.items()},
        "mean_energy": {name: float(values.mean()) for name, values in energy.items()},
        "std_energy": {name: float(values.std()) for name, values in energy.items()},
        "auc_real_lower": {name: _auc_real_lower(real, energy[name]) for name in ("generated", *RANK_CORRUPTIONS)},
        "train_minus_held_out_energy": float(energy["train"].mean() - real.mean()),
        "auc_train_lower_than_held_out": _auc_real_lower(energy["train"], real),
        "spearman_energy_vs_class_mean_distance": _within_class_spearman(real, distance, held_out.labels),
        "ranking": rank_by_class(real, held_out.labels, k),
    }
    name = classifier or classifier_name(dataset)
    try:
        from ppl_ebm.metrics.image_scores import classifier_outputs
        from ppl_ebm.zoo.classifiers import load_classifier

        probabilities = classifier_outputs(load_classifier(name).classifier, held_out.images).probabilities
        true_label = probabilities[np.arange(len(real)), held_out.labels]
        results["classifier"] = name
        results["spearman_energy_vs_true_label_probability"] = _within_class_spearman(real, true_label, held_out.labels)
        results["classifier_accuracy_lowest_vs_highest"] = _end_accuracies(real, probabilities, held_out.labels, k)
    except FileNotFoundError:
        results["classifier"] = None
    # The same checks on a baseline energy: -log of a Gaussian fitted to the train images.
    gaussian = {name: gaussian_energy(train.images, images) for name, images in sets.items()}
    results["gaussian_baseline"] = {
        "auc_real_lower": {name: _auc_real_lower(gaussian["held_out"], gaussian[name])
                           for name in ("generated", *RANK_CORRUPTIONS)},
        "spearman_energy_vs_class_mean_distance": _within_class_spearman(gaussian["held_out"], distance,
                                                                         held_out.labels)["mean"],
    }
    if results["classifier"]:
        results["gaussian_baseline"]["spearman_energy_vs_true_label_probability"] = _within_class_spearman(
            gaussian["held_out"], true_label, held_out.labels)["mean"]
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    write_rank_figure(held_out.images, held_out.labels, results["ranking"], real, class_means, output / "ranking.png",
                      title=f"{config['name']}: held-out images by energy c(x)")
    _write_energy_figure(energy, output / "energies.png")
    results["mixed"] = _write_mixed_figure(generated, held_out.images, energy["generated"], real,
                                           output / "ranking_mixed.png")
    (output / "rank.json").write_text(json.dumps(results, indent=2) + "\n")
    (output / "report.md").write_text(format_rank(results) + "\n")
    return results


def gaussian_energy(train: np.ndarray, images: np.ndarray) -> np.ndarray:
    """-log N(x; mean, Sigma) (up to a constant) of a Gaussian fitted to ``train`` with Ledoit-Wolf
    shrinkage (digits have constant pixels, so the sample covariance is singular)."""
    from sklearn.covariance import LedoitWolf

    flat = train.reshape(len(train), -1).astype(np.float64)
    fit = LedoitWolf().fit(flat)
    centred = images.reshape(len(images), -1) - fit.location_
    return 0.5 * np.einsum("ni,ij,nj->n", centred, fit.precision_, centred)


def _end_accuracies(energy: np.ndarray, probabilities: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float]:
    """The classifier's accuracy on the k lowest- and the k highest-energy images of every class."""
    ranking = rank_by_class(energy, labels, k)
    correct = probabilities.argmax(axis=1) == labels
    return {end: float(np.mean([correct[i] for row in ranking.values() for i in row[end]]))
            for end in ("lowest", "highest")}


def write_rank_figure(images: np.ndarray, labels: np.ndarray, ranking: dict, energy: np.ndarray,
                      class_means: np.ndarray | None, path: Path, title: str = "") -> Path:
    """One row per class: its mean train image, the k lowest-energy images (lowest first), a gap,
    the k highest-energy images (highest last); each image captioned with its energy."""
    classes = sorted(ranking)
    k = len(ranking[classes[0]]["lowest"])
    columns = 2 * k + 2
    figure = Figure(figsize=(0.62 * columns + 0.4, 0.72 * len(classes) + 0.7))
    grid = figure.add_gridspec(len(classes), columns, width_ratios=[1] + [1] * k + [0.35] + [1] * k,
                               hspace=0.45, wspace=0.08)
    for row, label in enumerate(classes):
        cells = [(0, class_means[label] if class_means is not None else None, "mean")]
        cells += [(1 + i, images[j], f"{energy[j]:.3g}") for i, j in enumerate(ranking[label]["lowest"])]
        cells += [(k + 2 + i, images[j], f"{energy[j]:.3g}") for i, j in enumerate(ranking[label]["highest"])]
        for column, image, caption in cells:
            axis = figure.add_subplot(grid[row, column])
            axis.set_xticks([])
            axis.set_yticks([])
            if image is not None:
                axis.imshow((np.clip(image[0], -1, 1) + 1) / 2, cmap="gray_r", vmin=0, vmax=1)
            axis.set_xlabel(caption, fontsize=5, labelpad=1)  # an energy, 3 significant digits
            if column == 0:
                axis.set_ylabel(str(label), rotation=0, fontsize=9, labelpad=8, va="center")
            if row == 0 and column == 1:
                axis.set_title(f"{k} lowest energy →", fontsize=8, loc="left")
            if row == 0 and column == k + 2:
                axis.set_title(f"{k} highest energy →", fontsize=8, loc="left")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return Path(path)


def _write_mixed_figure(generated: np.ndarray, real_images: np.ndarray, generated_energy: np.ndarray,
                        real_energy: np.ndarray, path: Path, shown: int = 50) -> dict[str, Any]:
    """The paper's Fig. 4 / 5: generated and held-out real images ranked together; the ``shown`` lowest-
    and highest-energy ones, real images framed. Returns the fraction of real images at each end."""
    images = np.concatenate([generated, real_images])
    energy = np.concatenate([generated_energy, real_energy])
    is_real = np.r_[np.zeros(len(generated), bool), np.ones(len(real_images), bool)]
    shown = min(shown, len(images) // 2)
    order = np.argsort(energy, kind="stable")
    ends = {"lowest": order[:shown], "highest": order[::-1][:shown]}
    columns = 10
    rows = -(-shown // columns)
    figure = Figure(figsize=(2 * columns * 0.45 + 0.6, rows * 0.5 + 0.6))
    for side, (end, index) in enumerate(ends.items()):
        for position, i in enumerate(index):
            r, c = divmod(position, columns)
            axis = figure.add_axes([(side * (columns + 1) + c) / (2 * columns + 1), 1 - (r + 1) / (rows + 0.6),
                                    0.95 / (2 * columns + 1), 0.95 / (rows + 0.6)])
            axis.imshow((np.clip(images[i, 0], -1, 1) + 1) / 2, cmap="gray_r", vmin=0, vmax=1)
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(bool(is_real[i]))
                spine.set_color("tab:red")
                spine.set_linewidth(1.5)
            if position == 0:
                axis.set_title(f"{shown} {end} energy (real framed)", fontsize=7, loc="left")
    figure.savefig(path, dpi=150, bbox_inches="tight")
    return {"shown": shown, "real_fraction_lowest": float(is_real[ends["lowest"]].mean()),
            "real_fraction_highest": float(is_real[ends["highest"]].mean()),
            "real_fraction_all": float(is_real.mean())}


def _write_energy_figure(energy: dict[str, np.ndarray], path: Path) -> None:
    figure = Figure(figsize=(6.5, 3.2))
    axis = figure.add_subplot(1, 1, 1)
    values = np.concatenate(list(energy.values()))
    low, high = np.percentile(values, [0.5, 99.5])
    bins = np.linspace(low, high, 60)
    for name, value in energy.items():
        axis.hist(np.clip(value, low, high), bins=bins, histtype="step", density=True, label=f"{name} ({len(value)})")
    axis.set_xlabel("energy c(x)")
    axis.set_ylabel("density")
    axis.legend(fontsize=7)
    figure.savefig(path, dpi=130, bbox_inches="tight")


def format_rank(results: dict[str, Any]) -> str:
    """The markdown report of :func:`run_egan_rank`."""
    auc = results["auc_real_lower"]
    mean, std = results["mean_energy"], results["std_energy"]
    lines = [
        f"# Ranking by energy (Dai et al. Sec. 5.2): `{results['model']}`",
        "",
        f"Held-out `{results['dataset']}` images ranked by c(x) within each class; the figure shows the "
        f"{results['k']} lowest and {results['k']} highest per class beside the class's mean train image.",
        "",
        "| images | n | mean energy | std | AUC (held-out real lower) |",
        "|---|---|---|---|---|",
    ]
    for name in ("held_out", "train", "generated", *RANK_CORRUPTIONS):
        cell = "-" if name in ("held_out", "train") else f"{auc[name]:.4f}"
        lines.append(f"| {name.replace('_', ' ')} | {results['n'][name]} | {mean[name]:.3f} | {std[name]:.3f} | {cell} |")
    distance = results["spearman_energy_vs_class_mean_distance"]
    lines += [
        "",
        f"Pixel noise: Gaussian, std {results['pixel_noise_std']} on [-1, 1], clipped; blend: the average of two "
        f"held-out images of different classes; uniform noise: pixels uniform on [-1, 1]; generated: "
        f"{results['num_generated']} generator samples (seed {results['seed']}).",
        "",
        f"- Train minus held-out mean energy: {results['train_minus_held_out_energy']:+.4f} "
        f"(AUC train lower than held-out {results['auc_train_lower_than_held_out']:.4f}; 0.5 = no memorisation).",
        f"- Spearman rho within a class between the energy and the distance to the class's mean train image: "
        f"mean over classes {distance['mean']:+.3f} (pooled {distance['pooled']:+.3f}; per class "
        + ", ".join(f"{c}: {v:+.2f}" for c, v in distance["per_class"].items()) + ").",
    ]
    mixed = results.get("mixed")
    if mixed:
        lines.append(f"- Generated and held-out images ranked together (the paper's Fig. 4 / 5, `ranking_mixed.png`): "
                     f"real images are {mixed['real_fraction_lowest']:.0%} of the {mixed['shown']} lowest-energy and "
                     f"{mixed['real_fraction_highest']:.0%} of the {mixed['shown']} highest "
                     f"({mixed['real_fraction_all']:.0%} of all).")
    baseline = results.get("gaussian_baseline")
    if baseline:
        lines.append("- Baseline, the same checks on -log of a Gaussian fitted to the train images (Ledoit-Wolf): "
                     "AUC " + ", ".join(f"{name.replace('_', ' ')} {value:.4f}"
                                       for name, value in baseline["auc_real_lower"].items())
                     + f"; Spearman with the class-mean distance {baseline['spearman_energy_vs_class_mean_distance']:+.3f}"
                     + (f", with the classifier's probability {baseline['spearman_energy_vs_true_label_probability']:+.3f}"
                        if "spearman_energy_vs_true_label_probability" in baseline else "") + ".")
    if results.get("classifier"):
        confidence = results["spearman_energy_vs_true_label_probability"]
        ends = results["classifier_accuracy_lowest_vs_highest"]
        lines += [
            f"- Spearman rho within a class between the energy and `{results['classifier']}`'s probability of the "
            f"true label: mean over classes {confidence['mean']:+.3f} (pooled {confidence['pooled']:+.3f}).",
            f"- `{results['classifier']}`'s accuracy on the {results['k']} lowest-energy images of each class "
            f"{ends['lowest']:.3f}, on the {results['k']} highest {ends['highest']:.3f}.",
        ]
    return "\n".join(lines)
