"""Checks shared by several entry points, so each says the same thing the same way."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = ["check_int", "check_positive_ints", "check_target_arguments"]


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, or a ``ValueError`` naming ``name`` unless it is an integer >= ``minimum``
    (bools are refused: ``True`` is an int to Python, never a count to a user)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def check_positive_ints(config: Any, names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first of ``config``'s attributes ``names`` that is not an
    int >= 1 (bools are refused: ``True`` is an int to Python, never a count to a user)."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")


def check_target_arguments(model: Any, potential_fn: Any) -> None:
    """Exactly one of ``model`` and ``potential_fn``, as Pyro's and NumPyro's own kernels ask."""
    if (model is None) == (potential_fn is None):
        raise ValueError("Give exactly one of `model` or `potential_fn`.")
