"""Improved precision and recall of generative models (Kynkaanniemi et al. 2019).

Each set's manifold is the union of balls around its points, each ball's radius the distance to
the point's k-th nearest neighbour in its own set (k = 3, the paper's default). Precision: the
fraction of generated points inside the real manifold (how many samples look real); recall: the
fraction of real points inside the generated manifold (how much of the data is covered).
Hand-written (25 lines on scikit-learn's nearest neighbours and scipy's distances) because the
reference implementations (Kynkaanniemi et al.'s, StyleGAN2-ADA's ``metrics/precision_recall.py``)
live inside training repositories, not installable libraries, and ``prdc`` (2020) is unmaintained.
The radii are theirs: the k-th neighbour not counting the point itself (StyleGAN's
``kthvalue(k + 1)`` over distances that include the zero to itself).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from ppl_ebm.validation import check_int

__all__ = ["PrecisionRecall", "knn_radii", "precision_recall"]


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def knn_radii(features: np.ndarray, k: int = 3) -> np.ndarray:
    """Distance from each row of ``features`` to its ``k``-th nearest other row."""
    # k + 1 neighbours: the nearest is the point itself (distance 0).
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(features).kneighbors(features)
    return distances[:, k]


def _inside(points: np.ndarray, centres: np.ndarray, radii: np.ndarray, chunk: int = 1024) -> np.ndarray:
    inside = np.empty(len(points), dtype=bool)
    for start in range(0, len(points), chunk):  # chunks keep the distance matrix small
        inside[start:start + chunk] = (cdist(points[start:start + chunk], centres) <= radii[None]).any(axis=1)
    return inside


def precision_recall(real_features: np.ndarray, generated_features: np.ndarray, k: int = 3) -> PrecisionRecall:
    """Kynkaanniemi et al.'s precision and recall of ``generated_features`` against ``real_features``.

    Parameters
    ----------
    real_features, generated_features
        ``(n, d)`` arrays of the same width, each with more than ``k`` rows.
    k
        The neighbour whose distance is a ball's radius.
    """
    k = check_int("k", k, 1)
    real = np.asarray(real_features, dtype=np.float64)
    generated = np.asarray(generated_features, dtype=np.float64)
    for name, values in (("real_features", real), ("generated_features", generated)):
        if values.ndim != 2 or values.shape[0] <= k or not np.isfinite(values).all():
            raise ValueError(f"{name} must be a finite (n, d) array with n > k = {k}, got shape {values.shape}.")
    if real.shape[1] != generated.shape[1]:
        raise ValueError(f"real_features and generated_features must have the same width, got {real.shape[1]} "
                         f"and {generated.shape[1]}.")
    precision = _inside(generated, real, knn_radii(real, k)).mean()
    recall = _inside(real, generated, knn_radii(generated, k)).mean()
    return PrecisionRecall(float(precision), float(recall))
