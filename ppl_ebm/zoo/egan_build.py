"""Train and save one of Dai et al.'s (2017) energy GANs as a zoo model with its card (``ppl-ebm train --loss egan-*``)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ppl_ebm import data as datasets
from ppl_ebm.training.egan import EGAN_LOSSES, EGANConfig, train_egan
from ppl_ebm.training.entropy import knn_entropy
from ppl_ebm.zoo.store import save_model, save_weights

__all__ = [
    "egan_model_names", "is_egan_config", "record_egan_rank_in_card", "record_egan_sampling_in_card",
    "record_egan_seeds_in_card", "record_egan_table_in_card",
    "train_egan_zoo_model", "write_egan_card",
]

_ENTROPY_POINTS = 20_000


def is_egan_config(config: dict[str, Any]) -> bool:
    """Whether a model folder's config.json describes an energy GAN of this module."""
    return (config.get("training") or {}).get("loss") in EGAN_LOSSES


def train_egan_zoo_model(config: EGANConfig, name: str, output: Path, progress_bar: bool = True,
                         command: str | None = None) -> Path:
    """Train ``config``, write ``output/name`` (weights as safetensors, ``config.json``,
    ``MODEL_CARD.md``) and return the folder. The critic is stored with
    ``critic_output="energy"``: ``LatentEBM`` adds it to the prior's potential (the tilt
    p0(z) exp(-c(G(z)))). The inference network of ``egan-ent-vi`` is saved beside it
    (``inference.safetensors``); loading the model does not need it."""
    import torch

    config = config.validate()
    command = command or "ppl-ebm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    if config.image_shape() is not None:
        return _train_image_egan(config, name, output, progress_bar, command)
    trained = train_egan(config, lambda n, seed: datasets.sample_dataset(config.dataset, n, seed),
                         progress_bar=progress_bar)
    with torch.no_grad():
        generated = trained.generator(torch.randn(_ENTROPY_POINTS, config.latent_dim,
                                                  generator=torch.Generator().manual_seed(1))).numpy()
    try:
        entropy = {"generator": knn_entropy(generated),
                   "data": knn_entropy(datasets.sample_dataset(config.dataset, _ENTROPY_POINTS, 2)),
                   "points": _ENTROPY_POINTS}
    except ValueError:  # a collapsed generator repeats points: no entropy estimate, nothing else lost
        entropy = None
    return _save_egan(output, name, trained, config, command, {"kozachenko_leonenko_entropy": entropy}, data_dim=2)


def _train_image_egan(config: EGANConfig, name: str, output: Path, progress_bar: bool, command: str) -> Path:
    """An energy GAN on an image set's train split: scored as the image GANs (the zoo classifier's
    FD, score, precision / recall against the held-out split) and saved as an image model."""
    from ppl_ebm.data.images import load_images
    from ppl_ebm.zoo.image_build import EVAL_CAP, classifier_name, generate_images, score_against_held_out

    train = load_images(config.dataset, "train").images
    if config.train_size != len(train):
        raise ValueError(f"train_size must be the train split's size {len(train)} on {config.dataset!r}, "
                         f"got {config.train_size}.")
    trained = train_egan(config, lambda n, seed: train, progress_bar=progress_bar)
    n = min(len(train), EVAL_CAP)
    floor = train[np.random.default_rng(0).permutation(len(train))[:n]]
    scores = score_against_held_out({"generator": generate_images(trained.generator, config.latent_dim, n),
                                     "data_floor": floor}, config.dataset)
    return _save_egan(output, name, trained, config, command,
                      {"kind": "image", "image_shape": list(train.shape[1:]), "generator_metrics": scores,
                       "classifier": classifier_name(config.dataset)})


def _save_egan(output: Path, name: str, trained, config: EGANConfig, command: str, extra: dict[str, Any],
               **save_options: Any) -> Path:
    """Save a trained energy GAN (toy or image) with its training record, the inference network of
    ``egan-ent-vi`` beside it, and its card."""
    history = trained.history
    record = {**extra, "training_seconds": trained.seconds, "command": command,
              "final_losses": {"critic": history["critic_loss"][-1], "generator": history["generator_loss"][-1]},
              "update_fractions": {"critic": float(np.mean(history["critic_update_fraction"])),
                                   "generator": float(np.mean(history["generator_update_fraction"]))},
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    generator_config, critic_config = config.network_configs()
    folder = save_model(Path(output) / name, name, trained.generator, trained.critic, config, "energy",
                        generator_config=generator_config, critic_config=critic_config, extra=record,
                        **save_options)
    if trained.inference is not None:
        save_weights(trained.inference, folder / "inference.safetensors")
    write_egan_card(folder)
    return folder


def _image_networks_text(config: EGANConfig) -> str:
    shape = "x".join(map(str, config.image_shape()))
    d = config.data_dim()
    output = "tanh, " if config.generator_output == "tanh" else ""
    return (f"Fully connected networks on the flattened {shape} images (in [-1, 1]): generator "
            f"{config.latent_dim}-{config.width}(BN)-{config.width}(BN)-{d} ({output}reshaped to {shape}), noise "
            f"N(0, I);\ncritic {d}-{config.width}-{config.width}-1 ({config.critic_activation.replace('_', ' ')}), "
            f"its output the energy c(x) (`critic_output=\"energy\"`).")


def write_egan_card(folder: Path) -> None:
    """Write ``MODEL_CARD.md`` of an energy-GAN folder from its ``config.json``."""
    folder = Path(folder)
    full = json.loads((folder / "config.json").read_text())
    config = EGANConfig(**full["training"])
    entropy = full.get("kozachenko_leonenko_entropy") or {}
    fractions = full.get("update_fractions") or {}
    term = {"egan-ent-nn": f"nearest-neighbour entropy gradient (Eq. 10, k = {config.knn_neighbours}), weight "
                           f"{config.entropy_weight:g} per point",
            "egan-ent-vi": f"variational entropy bound with an inference network (Eq. 12-16), weight "
                           f"{config.entropy_weight:g} per point",
            "egan-const": "no entropy term (K constant)",
            "gan": "the binary GAN baseline, P(real | x) = sigmoid(-c(x))"}[config.loss]
    epochs = config.iterations * config.batch_size / config.train_size
    image = config.image_shape() is not None
    if config.loss == "egan-ent-nn" and config.knn_normalise:
        term = term.replace("(Eq. 10,", "(the unit-norm direction of Eq. 11,")
    networks = _image_networks_text(config) if image else (
        f"Networks of the authors' code: generator {config.latent_dim}-{config.width}(BN)-{config.width}(BN)-2, "
        f"noise N(0, I);\ncritic 2-{config.width}-{config.width}-1 (ReLU), its output the energy c(x) "
        '(`critic_output="energy"`).')
    if config.lr_decay_every:
        decay = (f"x{config.lr_decay:g} every {config.lr_decay_every} iterations after the first "
                 f"{config.lr_decay_every * config.lr_decay_start_epoch}")
    else:
        decay = f"x{config.lr_decay:g} per epoch after epoch {config.lr_decay_start_epoch}"
    text = f"""# {full['name']}

Dai et al. (2017) `{config.loss}` on `{config.dataset}` (see `{'ppl_ebm.data.images' if image else 'ppl_ebm.data.toy'}`): {term}.
{networks}

## Reproduce

```bash
{full.get('command', '(not recorded)')}
```

Seed {config.seed}; {config.iterations} iterations ({epochs:g} epochs of the {config.train_size} training points),
batch {config.batch_size}, Adam(beta1 = {config.beta1}, beta2 = {config.beta2}) lr {config.learning_rate:g}
(generator x{config.generator_lr_multiplier:g}), {decay}
(floor {config.lr_min:g}); energy-gap schedule ({config.gap_low}, {config.gap_high}), margin {config.margin};
{'saved critic: the exponential moving average of its weights, decay ' + format(config.critic_average_decay, 'g') + ' per iteration (not in the paper)' if config.critic_average_decay > 0 else 'saved critic: the last iterate, as the paper'}.
Trained in JAX on the translated torch networks in {full.get('training_seconds', float('nan')):.0f} s
({full.get('machine', 'this machine')}), {_length_note(config)}.
"""
    losses = full.get("final_losses")
    if losses:
        text += f"Final losses: critic {losses['critic']:.4f}, generator {losses['generator']:.4f}"
        if fractions:
            text += (f"; the critic was updated at {fractions['critic']:.0%} of the iterations, the generator at "
                     f"{fractions['generator']:.0%}")
        text += ".\n"
    scores = full.get("generator_metrics")
    if image and scores:
        from ppl_ebm.zoo.image_build import _score_table

        text += (f"\nGenerator against the {scores['generator']['n_reference']} held-out images on the zoo classifier "
                 f"`{full['classifier']}`'s features ({scores['generator']['n_generated']} samples; floor: as many train "
                 f"images; FD, score, precision / recall as `ppl_ebm.metrics.image_scores`):\n\n"
                 f"{_score_table(scores)}\n")
    if entropy:
        text += (f"\nKozachenko-Leonenko entropy (k = 3, {entropy['points']} points): generator "
                 f"{entropy['generator']:.3f} nats, data {entropy['data']:.3f} nats.\n")
    for key in ("egan_table_results", "egan_seed_results", "egan_sampling_results", "egan_rank_results"):
        if full.get(key):
            text += "\n" + full[key].rstrip() + "\n"
    text += f"""
## Files

`generator.safetensors`, `critic.safetensors`{', `inference.safetensors` (Q(z | x))' if config.loss == 'egan-ent-vi' else ''}
(load with `ppl_ebm.zoo.load_model("{full['name']}")`; safetensors, no pickle), `config.json`.
"""
    (folder / "MODEL_CARD.md").write_text(text)


def _length_note(config: EGANConfig) -> str:
    if config.image_shape() is not None:  # the released digits code ran 20 epochs of NIST's one digit
        return "the run length is ours (the released code: 20 epochs of one NIST digit, ~74k images)"
    if config.iterations >= _paper_iterations(config):
        return "the full iteration count of the released code"
    return f"fewer iterations than the released code ({_paper_iterations(config)})"


def _paper_iterations(config: EGANConfig) -> int:
    from ppl_ebm.training.egan import _PAPER_SETTINGS

    return _PAPER_SETTINGS.get(config.dataset, {}).get("iterations", config.iterations)


def egan_model_names(kind: str | None = "toy2d") -> list[str]:
    """The zoo's energy-GAN models, by name: those of 2-D points (``egan-table``'s), or of ``kind``
    (``"image"``; None: all)."""
    from ppl_ebm.zoo.store import list_models, model_dir, read_config

    return [name for name in list_models(kind) if is_egan_config(read_config(model_dir(name)))]


def record_egan_table_in_card(model: str | Path, row: dict[str, Any], command: str) -> None:
    """Store one model's ``ppl-ebm egan-table`` row (ours beside the paper's) in its config and card."""
    from ppl_ebm.metrics.grid_kl import PAIRS
    from ppl_ebm.zoo.store import model_dir

    folder = model_dir(model)
    columns = [f"{p}||{q}" for p, q in PAIRS]
    text = ("## KL divergences on the 100 x 100 grid (Dai et al. App. B.2, `ppl-ebm egan-table`)\n\n"
            f"```bash\n{command}\n```\n\n| source | " + " | ".join(c.replace("||", " ‖ ") for c in columns)
            + " |\n|---|" + "---|" * len(columns) + "\n| ours | "
            + " | ".join(f"{row['ours'][c]:.4f}" for c in columns) + " |\n")
    if row.get("paper"):
        text += "| paper (Table 2) | " + " | ".join(f"{row['paper'][c]:.4f}" for c in columns) + " |\n"
    if row.get("small_component_weight"):
        weights = row["small_component_weight"]
        text += (f"\nWeight of the small component (true 0.1): p_disc {weights['disc']:.4f}, p_gen {weights['gen']:.4f}, "
                 f"p_data on the grid {weights['data']:.4f}.\n")
    if row.get("figure_path"):
        import shutil

        # The contours travel with the model: p_data, p_emp, p_gen, p_disc and the energy.
        shutil.copyfile(row["figure_path"], folder / "densities.png")
        text += "\n![p_data, p_emp, p_gen, p_disc and the energy c(x) on the grid](densities.png)\n"
    _store_card_section(folder, "egan_table_results", text)


def record_egan_seeds_in_card(model: str | Path, markdown: str) -> None:
    """Store the spread over training seeds (``diagnostics/study_egan_seeds.py``, a markdown
    section with its command) in the model's config and card."""
    from ppl_ebm.zoo.store import model_dir

    _store_card_section(model_dir(model), "egan_seed_results", markdown)


def record_egan_sampling_in_card(model: str | Path, markdown: str, command: str) -> None:
    """Store a ``ppl-ebm egan-sample`` report (its markdown) in the model's config and card."""
    from ppl_ebm.zoo.store import model_dir

    body = markdown.split("\n", 1)[1].replace("\n## ", "\n### ")
    _store_card_section(model_dir(model), "egan_sampling_results",
                        f"## p_disc and the latent tilt as sampling targets (`ppl-ebm egan-sample`)\n\n"
                        f"```bash\n{command}\n```\n{body}")


def record_egan_rank_in_card(model: str | Path, results: dict[str, Any], figures: dict[str, Path], command: str) -> None:
    """Store a ``ppl-ebm egan-rank`` report in the model's config and card, with its figures beside it."""
    import shutil

    from ppl_ebm.studies.egan_rank import format_rank
    from ppl_ebm.zoo.store import model_dir

    folder = model_dir(model)
    body = format_rank(results).split("\n", 1)[1]
    text = f"## Ranking by energy (Dai et al. Sec. 5.2, `ppl-ebm egan-rank`)\n\n```bash\n{command}\n```\n{body}\n"
    for name, caption in (("ranking.png", "per class: mean train image, the lowest- and the highest-energy held-out images"),
                          ("ranking_mixed.png", "generated and held-out images ranked together, real framed"),
                          ("energies.png", "energy histograms of held-out, train, generated and corrupted images")):
        if name in figures:
            shutil.copyfile(figures[name], folder / name)
            text += f"\n![{caption}]({name})\n"
    _store_card_section(folder, "egan_rank_results", text)


def _store_card_section(folder: Path, key: str, text: str) -> None:
    """Keep one recorded section (markdown) under ``key`` of the folder's config.json and rewrite
    the card, which shows the sections in :func:`write_egan_card`'s order."""
    config = json.loads((folder / "config.json").read_text())
    config[key] = text
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_egan_card(folder)
