"""Point clouds as the metrics read them: one checked conversion shared by every metric."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["as_points"]


def as_points(x: Any, name: str) -> np.ndarray:
    """A finite float64 array ``(n, d)`` from a numpy array, list or (CPU/GPU) torch tensor.

    Parameters
    ----------
    x
        Points ``(n, d)``; a 1-D input is read as ``n`` points of one coordinate.
    name
        What to call ``x`` in error messages.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(n, d)``.

    Raises
    ------
    ValueError
        For an empty, non-finite or wrongly shaped input.
    """
    if hasattr(x, "detach"):  # torch tensor, possibly on a GPU
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, d), got {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} has non-finite values")
    return x
