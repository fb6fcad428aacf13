"""Training the image classifier whose features score image samples (:mod:`ppl_ebm.metrics.image_scores`).

Cross-entropy with torch.optim's Adam on the train split; the held-out split gives the accuracy
stated in the model card and is never trained on. Torch, not JAX as the toy GANs: the data are a
few thousand images and the model is saved as torch weights either way.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import torch

from ppl_ebm.data.images import image_spec, load_images
from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.validation import check_positive_ints

__all__ = ["ClassifierConfig", "TrainedClassifier", "accuracy", "train_classifier"]


class ClassifierConfig(NamedTuple):
    """Everything that determines a classifier's training (stored in its config.json)."""

    dataset: str = "digits"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    base_width: int = 32
    feature_width: int = 128
    seed: int = 0

    def validate(self) -> "ClassifierConfig":
        image_spec(self.dataset)
        check_positive_ints(self, ("epochs", "batch_size", "base_width", "feature_width"))
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        return self

    def network_config(self) -> NetworkConfig:
        channels, side, _ = image_spec(self.dataset).shape
        return NetworkConfig("image_classifier", {
            "channels": channels, "image_size": side, "base_width": self.base_width,
            "feature_width": self.feature_width, "num_classes": image_spec(self.dataset).num_classes,
        })


class TrainedClassifier(NamedTuple):
    classifier: torch.nn.Sequential
    config: ClassifierConfig
    held_out_accuracy: float
    train_accuracy: float
    seconds: float


@torch.no_grad()
def accuracy(classifier: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of ``images`` whose largest logit is their label."""
    classifier.eval()
    logits = torch.cat([classifier(torch.as_tensor(images[i:i + 1000])) for i in range(0, len(images), 1000)])
    return float((logits.argmax(dim=1).numpy() == labels).mean())


def train_classifier(config: ClassifierConfig, root: str | None = None) -> TrainedClassifier:
    """Train ``config``'s classifier on its data set's train split and measure it on the held-out one."""
    config = config.validate()
    train, held_out = load_images(config.dataset, "train", root), load_images(config.dataset, "held_out", root)
    torch.manual_seed(config.seed)
    classifier = build_network(config.network_config())
    optimiser = torch.optim.Adam(classifier.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    images, labels = torch.as_tensor(train.images), torch.as_tensor(train.labels)
    generator = torch.Generator().manual_seed(config.seed)
    start = time.perf_counter()
    for _ in range(config.epochs):
        classifier.train()
        for batch in torch.randperm(len(images), generator=generator).split(config.batch_size):
            loss = torch.nn.functional.cross_entropy(classifier(images[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    seconds = time.perf_counter() - start
    classifier.eval()
    return TrainedClassifier(classifier, config, accuracy(classifier, held_out.images, held_out.labels),
                             accuracy(classifier, train.images, train.labels), seconds)
