"""The data behind the DDLS paper's image figures, computed by the image compare and drawn by its report.

- :func:`chain_frames`: DDLS Fig. 3, chains from prior draws shown every k Langevin steps.
- :func:`nearest_train_images`: DDLS Fig. 4, the nearest train images of DDLS samples, here in
  the zoo classifier's feature space (its penultimate layer, the space the FD is computed in):
  pixel distance on digits rewards blur, the features compare what the metrics compare. Beside
  the pictures, the median distance of all samples to their nearest train image against the
  same for the held-out images: samples much closer to the train set than held-out images are
  would be copies of it (memorisation), not new digits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.neighbors import NearestNeighbors

from ppl_ebm.metrics.image_scores import classifier_outputs

__all__ = ["chain_frames", "nearest_train_images"]


def chain_frames(generate: Callable[[np.ndarray], np.ndarray], starts: np.ndarray, latents: np.ndarray,
                 thinning: int, num_chains: int, columns: int = 10) -> dict[str, Any]:
    """Images of the first ``num_chains`` chains at their start and ``columns`` later steps.

    Parameters
    ----------
    generate
        Latents ``(n, latent_dim)`` to images ``(n, channels, side, side)``.
    starts
        The chains' starting latents ``(chains, latent_dim)`` (step 0).
    latents
        The chains' states every ``thinning`` steps, ``(chains, draws, latent_dim)``: draw ``i``
        is step ``thinning * (i + 1)``.
    thinning, num_chains, columns
        Steps between stored states; chains (rows) and later steps (columns) shown.

    Returns
    -------
    dict
        ``steps`` (the columns' Langevin steps, 0 first) and ``images``
        ``(rows, len(steps), channels, side, side)``.
    """
    rows = min(num_chains, latents.shape[0])
    draws = latents.shape[1]
    # Evenly spaced stored states, the last one always shown.
    shown = min(columns, draws)
    picks = sorted({int(round(draws * (j + 1) / shown)) - 1 for j in range(shown)})
    frames = [generate(starts[:rows])] + [generate(latents[:rows, i]) for i in picks]
    return {"steps": [0] + [thinning * (i + 1) for i in picks], "images": np.stack(frames, axis=1)}


def nearest_train_images(samples: np.ndarray, train: np.ndarray, held_out: np.ndarray, classifier,
                         num_queries: int = 8, neighbours: int = 5) -> dict[str, Any]:
    """The ``neighbours`` nearest train images of the first ``num_queries`` samples, in the
    classifier's feature space (Euclidean), and the memorisation check (module docstring).

    Returns
    -------
    dict
        ``space``; ``median_nearest_distance_samples`` (all samples) and
        ``median_nearest_distance_held_out`` (held-out images, the reference);
        ``distances`` ``(queries, neighbours)``; ``images``: ``queries`` and their ``neighbours``
        ``(queries, neighbours, channels, side, side)``.
    """
    index = NearestNeighbors(n_neighbors=neighbours).fit(classifier_outputs(classifier, train).features)
    sample_features = classifier_outputs(classifier, samples).features
    distances, indices = index.kneighbors(sample_features)
    held_out_distances, _ = index.kneighbors(classifier_outputs(classifier, held_out).features, n_neighbors=1)
    queries = min(num_queries, len(samples))
    return {
        "space": "classifier features (the penultimate layer the FD uses), Euclidean",
        "median_nearest_distance_samples": float(np.median(distances[:, 0])),
        "median_nearest_distance_held_out": float(np.median(held_out_distances[:, 0])),
        "distances": distances[:queries].tolist(),
        "images": {"queries": samples[:queries], "neighbours": train[indices[:queries]]},
    }
