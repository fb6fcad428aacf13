"""The zoo's feature classifiers: the networks whose features and softmax score image samples.

A classifier is a folder ``classifiers/<name>`` in a zoo root (``$PPL_EBM_MODELS`` entries, then the
repository's ``models/``) with ``config.json`` (its :class:`~ppl_ebm.nets.registry.NetworkConfig`,
training config, held-out accuracy, command, time), ``classifier.safetensors`` and
``MODEL_CARD.md``. It sits in a subfolder so the GAN listing (:func:`ppl_ebm.zoo.list_models`)
does not take it for a GAN. Weights load through safetensors only.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file

from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.zoo.store import save_weights

__all__ = ["DIGITS_CLASSIFIER", "LoadedClassifier", "list_classifiers", "load_classifier", "save_classifier",
           "train_zoo_classifier"]

#: The classifier that scores digits samples.
DIGITS_CLASSIFIER = "digits-cnn"
_WEIGHTS = "classifier.safetensors"


class LoadedClassifier(NamedTuple):
    classifier: torch.nn.Sequential
    config: dict[str, Any]
    directory: Path


def _roots() -> list[Path]:
    from ppl_ebm.zoo.store import _search_paths

    return [root / "classifiers" for root in _search_paths()]


def list_classifiers() -> list[str]:
    """Names of the classifiers found in the zoo roots."""
    return sorted({p.name for root in _roots() if root.is_dir() for p in root.iterdir() if (p / "config.json").is_file()})


def _folder(name_or_path: str | Path) -> Path:
    candidate = Path(name_or_path)
    if (candidate / "config.json").is_file():
        return candidate
    for root in _roots():
        if (root / str(name_or_path) / "config.json").is_file():
            return root / str(name_or_path)
    raise FileNotFoundError(f"No classifier {str(name_or_path)!r}: not a folder with config.json and not a zoo "
                            f"classifier. Zoo classifiers: {', '.join(list_classifiers()) or '(none found)'}; "
                            "train one with `ppl-ebm train-classifier`.")


def load_classifier(name_or_path: str | Path = DIGITS_CLASSIFIER) -> LoadedClassifier:
    """Load a zoo classifier (safetensors, no pickle), in eval mode."""
    folder = _folder(name_or_path)
    config = json.loads((folder / "config.json").read_text())
    try:
        network = build_network(NetworkConfig.from_dict(config["classifier"]))
        network.load_state_dict(load_file(str(folder / _WEIGHTS)), strict=True)
    except (KeyError, ValueError, RuntimeError, OSError) as error:
        raise ValueError(f"{folder} does not hold a loadable classifier ({type(error).__name__}: {error}); "
                         "re-train it with `ppl-ebm train-classifier`.") from None
    return LoadedClassifier(network.eval(), config, folder)


def save_classifier(directory: Path, name: str, classifier: torch.nn.Module, network: NetworkConfig,
                    extra: dict[str, Any]) -> Path:
    """Write ``directory`` (weights, config.json, MODEL_CARD.md); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(classifier, directory / _WEIGHTS)
    config = {"name": name, "classifier": network.to_dict(), **extra}
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    _write_card(directory, config)
    return directory


def _write_card(directory: Path, config: dict[str, Any]) -> None:
    training = config["training"]
    text = f"""# {config['name']}

Feature classifier for the image metrics on `{training['dataset']}` (`ppl_ebm.metrics.image_scores`): its
penultimate layer ({config['classifier']['options']['feature_width']} features) gives the Frechet distance and
precision/recall, its softmax the Inception-style score. Architecture `image_classifier`
{config['classifier']['options']}.

## Reproduce

```bash
{config['command']}
```

Seed {training['seed']}; {training['epochs']} epochs of Adam (lr {training['learning_rate']}, weight decay
{training['weight_decay']}, batch {training['batch_size']}) on the train split, cross-entropy;
{config['training_seconds']:.1f} s ({config['machine']}).

## Accuracy

| split | images | accuracy |
|---|---|---|
| train | {config['train_images']} | {config['train_accuracy']:.4f} |
| held out (never trained on) | {config['held_out_images']} | {config['held_out_accuracy']:.4f} |

## Files

`classifier.safetensors` (load with `ppl_ebm.zoo.classifiers.load_classifier("{config['name']}")`; safetensors,
no pickle), `config.json`.
"""
    (directory / "MODEL_CARD.md").write_text(text)


def train_zoo_classifier(config, name: str, output: Path, root: str | None = None,
                         command: str | None = None) -> Path:
    """Train a classifier (:func:`ppl_ebm.training.classifier.train_classifier`) and save it as
    ``output/classifiers/name`` with its card."""
    from ppl_ebm.data.images import load_images
    from ppl_ebm.training.classifier import train_classifier

    trained = train_classifier(config, root)
    sizes = {split: len(load_images(config.dataset, split, root).labels) for split in ("train", "held_out")}
    command = command or "ppl-ebm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    extra = {"training": dict(trained.config._asdict()), "held_out_accuracy": trained.held_out_accuracy,
             "train_accuracy": trained.train_accuracy, "train_images": sizes["train"],
             "held_out_images": sizes["held_out"], "training_seconds": trained.seconds, "command": command,
             "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    return save_classifier(Path(output) / "classifiers" / name, name, trained.classifier,
                           trained.config.network_config(), extra)
