"""Train, score and save one image GAN of the zoo with its model card (``ppl-ebm train --dataset digits``).

Scores (:func:`ppl_ebm.metrics.image_scores`) are on the zoo classifier of the data set
(``<dataset>-cnn``, :mod:`ppl_ebm.zoo.classifiers`) and always against the held-out split:
``n`` generator samples (seed 0), and, as the floor, ``n`` train images (the first ``n`` of a
seed-0 permutation), where ``n`` is the train split's size capped at 10,000. The two rows meet the
same reference with the same sizes, so the Frechet distance's ``O(d / n)`` bias and
precision/recall's dependence on the set sizes are the same in both.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppl_ebm.data.images import load_images
from ppl_ebm.training.image_gan import ImageGANConfig, train_image_gan
from ppl_ebm.zoo.store import save_model

__all__ = ["EVAL_CAP", "classifier_name", "generate_images", "record_image_compare_in_card", "score_against_held_out",
           "train_image_zoo_model", "write_image_card"]

#: At most this many generated (and floor) images are scored.
EVAL_CAP = 10_000


def classifier_name(dataset: str) -> str:
    """The zoo classifier that scores ``dataset``'s images."""
    return f"{dataset}-cnn"


@torch.no_grad()
def generate_images(generator: torch.nn.Module, latent_dim: int, n: int, seed: int = 0,
                    batch_size: int = 1000) -> np.ndarray:
    """``n`` images ``G(z)``, ``z ~ N(0, I)`` from ``torch.Generator().manual_seed(seed)``."""
    noise = torch.randn(n, latent_dim, generator=torch.Generator().manual_seed(seed))  # on the CPU: same on any device
    device = next(generator.parameters()).device
    generator.eval()
    return torch.cat([generator(noise[i:i + batch_size].to(device)).cpu() for i in range(0, n, batch_size)]).numpy()


def score_against_held_out(images: dict[str, np.ndarray], dataset: str, root: str | None = None) -> dict[str, Any] | None:
    """:func:`~ppl_ebm.metrics.image_scores` of each named set of images against ``dataset``'s held-out
    split, on the zoo classifier; None when the zoo has no classifier for ``dataset``."""
    from ppl_ebm.metrics.image_scores import image_scores
    from ppl_ebm.zoo.classifiers import load_classifier

    try:
        classifier = load_classifier(classifier_name(dataset)).classifier
    except FileNotFoundError:
        return None
    held_out = load_images(dataset, "held_out", root).images[:EVAL_CAP]
    return {name: image_scores(values, held_out, classifier) for name, values in images.items()}


def train_image_zoo_model(config: ImageGANConfig, name: str, output: Path, root: str | None = None,
                          device: str = "cpu", progress_bar: bool = True, command: str | None = None) -> Path:
    """Train ``config`` on its data set's train split, score the generator and the floor against the
    held-out split, and write ``output/name`` (weights, ``config.json``, ``MODEL_CARD.md``)."""
    config = config.validate()
    train = load_images(config.dataset, "train", root)
    trained = train_image_gan(config, train.images, device=device, progress_bar=progress_bar)
    n = min(len(train.images), EVAL_CAP)
    floor = train.images[np.random.default_rng(0).permutation(len(train.images))[:n]]
    scores = score_against_held_out({"generator": generate_images(trained.generator, config.latent_dim, n),
                                     "data_floor": floor}, config.dataset, root)
    command = command or "ppl-ebm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    generator_config, critic_config = config.network_configs()
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if device != "cpu" and torch.cuda.is_available():
        machine = torch.cuda.get_device_name(torch.device(device))
    folder = save_model(
        Path(output) / name, name, trained.generator, trained.critic, config, "logit",
        generator_config=generator_config, critic_config=critic_config,
        extra={"kind": "image", "image_shape": list(train.images.shape[1:]), "generator_metrics": scores,
               "classifier": classifier_name(config.dataset), "training_seconds": trained.seconds,
               "command": command, "device": device, "machine": machine,
               "final_losses": {"critic": trained.history["critic_loss"][-1],
                                "generator": trained.history["generator_loss"][-1]}},
    )
    write_image_card(folder)
    return folder


def _score_table(scores: dict[str, dict[str, Any]]) -> str:
    rows = ["| images | FD | score | precision | recall |", "|---|---|---|---|---|"]
    for label, key in (("generator", "generator"), ("train images (floor)", "data_floor")):
        if key in scores:
            s = scores[key]
            rows.append(f"| {label} | {s['fd']:.3f} | {s['score']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} |")
    return "\n".join(rows)


def write_image_card(folder: Path) -> None:
    """Write ``MODEL_CARD.md`` of an image GAN from its ``config.json``."""
    folder = Path(folder)
    full = json.loads((folder / "config.json").read_text())
    config = ImageGANConfig(**full["training"])
    generator, critic = full["generator"]["options"], full["critic"]["options"]
    scores = full.get("generator_metrics")
    losses = full["final_losses"]
    text = f"""# {full['name']}

{config.architecture.upper()} on `{config.dataset}` ({'x'.join(map(str, full['image_shape']))} images in [-1, 1]),
the conv nets of `ppl_ebm.nets`: generator `conv_generator` {generator}, critic `conv_critic` {critic};
loss {config.loss}, prior N(0, I) in {config.latent_dim} dimensions. The critic's output is read as a logit.

## Reproduce

```bash
{full['command']}
```

Seed {config.seed}; {config.iterations} iterations (one critic and one generator step each), batch
{config.batch_size}, Adam lr {config.learning_rate} betas ({config.beta1}, {config.beta2}). Trained in torch on
{full['device']} in {full['training_seconds']:.0f} s ({full['machine']}). Final losses: critic
{losses['critic']:.4f}, generator {losses['generator']:.4f}.

## Generator-only metrics
"""
    if scores is None:
        text += (f"\nNot scored: the zoo has no classifier `{full['classifier']}`. Train one with "
                 f"`ppl-ebm train-classifier --dataset {config.dataset}`, then re-train or score this model.\n")
    else:
        n = scores["generator"]["n_generated"]
        text += f"""
On the zoo classifier `{full['classifier']}`'s features (`ppl_ebm.metrics.image_scores`), against the
{scores['generator']['n_reference']} held-out images: {n} generator samples (seed 0) and, as the floor, {n}
train images. FD: Frechet distance of the penultimate features (FID's formula, not FID's scale); score: the
Inception Score's formula on the classifier's softmax (1 to 10); precision / recall: Kynkaanniemi et al. 2019,
k = 3.

{_score_table(scores)}
"""
    from ppl_ebm.zoo.build import calibration_card_section

    text += calibration_card_section(full, 0)
    if full.get("compare_results"):
        text += "\n" + full["compare_results"].rstrip() + "\n"
    calibrated = ", `critic_calibrated.safetensors`" if (full.get("calibration") or {}).get("fine_tune") else ""
    text += f"""
## Files

`generator.safetensors`, `critic.safetensors`{calibrated} (load with `ppl_ebm.zoo.load_model("{full['name']}")`;
safetensors, no pickle), `config.json` (architecture, training config, calibration, these metrics).
"""
    (folder / "MODEL_CARD.md").write_text(text)


def record_image_compare_in_card(model: str | Path, output, command: str) -> None:
    """Store a ``ppl-ebm compare`` run of an image model (its table and sweep) in the model's
    config.json and card."""
    from ppl_ebm.studies.image_compare_report import format_image_table, format_noise_line, format_sampling_line
    from ppl_ebm.zoo.store import model_dir

    folder = model_dir(model)
    config = json.loads((folder / "config.json").read_text())
    title = "Samplers" if "base_model_type" in config else "DDLS"  # a latent EBM (ppl_ebm.zoo.latent_build)
    text = (f"## {title} (`ppl-ebm compare`)\n\n```bash\n{command}\n```\n\n{output.config.num_samples} samples per "
            f"method ({format_sampling_line(output.config)}) against the held-out images, seed {output.config.seed}; "
            "`data`: train images (the floor).\n\n"
            f"{format_image_table(output.metrics)}\n{format_noise_line(output.metrics)}")
    sweep = output.sweep
    if sweep:
        text += ("\nULA step chosen on train images: " + f"{sweep['best_step_size']:g} (FD "
                 + ", ".join(f"{s:g}: {f:.3f}" for s, f in zip(sweep["step_sizes"], sweep["fd"]))
                 + f"; generator {sweep['generator_fd']:.3f}; MALA adapted {sweep['mala_adapted_fd']:.3f}).\n")
    config["compare_results"] = text
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    from ppl_ebm.zoo.latent_build import BASE_TYPE_KEY, write_latent_card

    (write_latent_card if BASE_TYPE_KEY in config else write_image_card)(folder)
