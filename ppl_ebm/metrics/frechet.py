"""The Frechet distance between two sets of features (the formula of FID, Heusel et al. 2017).

``FD = |m_a - m_b|^2 + tr(C_a + C_b - 2 (C_a C_b)^{1/2})`` between the Gaussians with the sets'
means and covariances. On the Inception network's pool features it is FID; the package computes
it on a small classifier's penultimate features (:mod:`ppl_ebm.metrics.image_scores`), which
gives numbers on the same formula but not on FID's scale.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frechet_distance", "frechet_distance_from_moments", "trace_sqrt_product"]


def _moments(features: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"{name} must be a (n, features) array with n >= 2, got shape {features.shape}.")
    if not np.isfinite(features).all():
        raise ValueError(f"{name} has non-finite values; drop those rows (non-finite images) first.")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1).reshape(features.shape[1], -1)


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """``tr((C_a C_b)^{1/2})`` for symmetric positive semi-definite ``C_a``, ``C_b``.

    Computed as ``sum sqrt(eig(C_a^{1/2} C_b C_a^{1/2}))``: that matrix is symmetric PSD and has
    the eigenvalues of ``C_a C_b``, so two symmetric eigendecompositions give the trace.
    Why not ``scipy.linalg.sqrtm(C_a @ C_b)`` (pytorch-fid's route): the product is not
    symmetric, and for the rank-deficient covariances of few samples in many features sqrtm
    returns complex parts or fails, which pytorch-fid patches by adding ``eps * I``.
    """
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    middle = root_a @ cov_b @ root_a
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum())


def frechet_distance_from_moments(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray,
                                  cov_b: np.ndarray) -> float:
    """The Frechet (2-Wasserstein squared) distance between ``N(mean_a, cov_a)`` and ``N(mean_b, cov_b)``."""
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.atleast_2d(np.asarray(cov_a, np.float64)), np.atleast_2d(np.asarray(cov_b, np.float64))
    if mean_a.shape != mean_b.shape or cov_a.shape != cov_b.shape or cov_a.shape != mean_a.shape * 2:
        raise ValueError(f"means {mean_a.shape}, {mean_b.shape} and covariances {cov_a.shape}, {cov_b.shape} "
                         "must be (d,) and (d, d) for one d.")
    value = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt_product(cov_a, cov_b)
    return float(max(value, 0.0))  # rounding can leave -1e-12 for identical sets


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """The Frechet distance between two feature sets ``(n_a, d)`` and ``(n_b, d)`` (FID's formula).

    Means and covariances (ddof 1) are the samples'; the estimate is biased upwards by
    ``O(d / n)`` (Chong & Forsyth 2020), so compare sets of the same sizes.
    """
    mean_a, cov_a = _moments(features_a, "features_a")
    mean_b, cov_b = _moments(features_b, "features_b")
    if mean_a.shape != mean_b.shape:
        raise ValueError(f"features_a and features_b must have the same width, got {mean_a.shape[0]} "
                         f"and {mean_b.shape[0]}.")
    return frechet_distance_from_moments(mean_a, cov_a, mean_b, cov_b)
