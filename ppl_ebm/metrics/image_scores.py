"""Image sample quality on a classifier's features: Frechet distance, Inception-style score,
precision and recall, in one call.

The classifier is a :func:`~ppl_ebm.nets.architectures.image_classifier` (an ``nn.Sequential``
whose last layer maps the features to logits), e.g. the zoo's digits classifier
(:func:`ppl_ebm.zoo.classifiers.load_classifier`). Its penultimate layer plays the Inception
network's pool layer (FID, precision/recall) and its softmax the Inception logits (IS).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from ppl_ebm.metrics.frechet import frechet_distance
from ppl_ebm.metrics.inception_score import inception_style_score
from ppl_ebm.metrics.precision_recall import precision_recall

__all__ = ["ClassifierOutputs", "classifier_outputs", "image_scores"]


class ClassifierOutputs(NamedTuple):
    features: np.ndarray  # (n, feature_width): the penultimate layer
    probabilities: np.ndarray  # (n, classes): the softmax


@torch.no_grad()
def classifier_outputs(classifier: torch.nn.Sequential, images: np.ndarray | torch.Tensor,
                       batch_size: int = 1000) -> ClassifierOutputs:
    """The classifier's penultimate features and class probabilities of ``images`` ``(n, C, H, W)``."""
    if not isinstance(classifier, torch.nn.Sequential):
        raise ValueError(f"classifier must be an nn.Sequential whose last layer gives logits (an image_classifier), "
                         f"got {type(classifier).__name__}.")
    parameter = next(classifier.parameters())
    images = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if images.ndim != 4:
        raise ValueError(f"images must be (n, channels, height, width), got shape {tuple(images.shape)}.")
    was_training = classifier.training
    classifier.eval()
    body, head = classifier[:-1], classifier[-1]
    features, probabilities = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].to(parameter.device, parameter.dtype)
        hidden = body(batch)
        features.append(hidden.double().cpu().numpy())
        probabilities.append(torch.softmax(head(hidden).double(), dim=1).cpu().numpy())
    classifier.train(was_training)
    return ClassifierOutputs(np.concatenate(features), np.concatenate(probabilities))


def image_scores(generated: np.ndarray, reference: np.ndarray, classifier: torch.nn.Sequential,
                 k: int = 3, splits: int = 1) -> dict[str, Any]:
    """Scores of ``generated`` images against ``reference`` images on ``classifier``'s features.

    Returns
    -------
    dict
        ``fd`` (Frechet distance of the features), ``score`` / ``score_std`` (the
        Inception-style score of ``generated``, over ``splits``), ``precision``, ``recall``
        (Kynkaanniemi et al., ``k``), and ``n_generated`` / ``n_reference``. Non-finite images
        (a diverged chain) are left out and counted in ``n_dropped``.
    """
    generated = np.asarray(generated, dtype=np.float32)
    finite = np.isfinite(generated.reshape(len(generated), -1)).all(axis=1)
    generated = generated[finite]
    fake, real = classifier_outputs(classifier, generated), classifier_outputs(classifier, reference)
    score = inception_style_score(fake.probabilities, splits)
    prc = precision_recall(real.features, fake.features, k)
    return {"fd": frechet_distance(fake.features, real.features), "score": score.mean, "score_std": score.std,
            "precision": prc.precision, "recall": prc.recall, "n_generated": int(len(generated)),
            "n_reference": int(len(reference)), "n_dropped": int((~finite).sum())}
