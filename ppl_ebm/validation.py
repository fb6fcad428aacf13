"""Checks shared by several entry points, so each says the same thing the same way.

Every message names the argument, says what was expected and what was given. A value of the
wrong type raises :class:`ArgumentTypeError`, which is both a ``TypeError`` (what it is) and a
``ValueError`` (what callers that catch bad values, such as the CLI, already handle).
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ArgumentTypeError", "check_bool", "check_finite_rows", "check_int", "check_output_dir", "check_positive_ints",
    "check_real", "check_seed", "check_target_arguments",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type: a ``TypeError`` that ``except ValueError`` also catches."""


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int, or an error naming ``name`` unless it is an integer >= ``minimum``
    (bools are refused: ``True`` is an int to Python, never a count to a user). A non-integer
    (a float, a string) raises :class:`ArgumentTypeError`, a small one ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be an int >= {minimum}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: an int >= 0 (torch's and JAX's generators both take one; a float would be truncated)."""
    return check_int(name, value, 0)


def check_real(name: str, value: Any, *, low: float | None = None, high: float | None = None,
               low_open: bool = True, high_open: bool = True, allow_none: bool = False) -> float | None:
    """``value`` as a finite float within the bounds (open unless told), or an error naming ``name``.

    Numbers of any kind (numpy scalars, 0-d arrays of one) are accepted; strings and bools are not."""
    if value is None and allow_none:
        return None
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if high is None:
        bounds = "" if low is None else f" {'>' if low_open else '>='} {low:g}"
    elif low is None:
        bounds = f" {'<' if high_open else '<='} {high:g}"
    else:
        bounds = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    expected = f"a finite number{bounds}" + (" or None" if allow_none else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__}).")
    number = float(value)
    if not math.isfinite(number) or (low is not None and (number <= low if low_open else number < low)) or (
            high is not None and (number >= high if high_open else number > high)):
        raise ValueError(f"{name} must be {expected}, got {value!r}.")
    return number


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is True or False (numpy's too), else an error naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")
    return bool(value)


def check_finite_rows(name: str, array: np.ndarray) -> np.ndarray:
    """Refuse non-finite values, naming the first offending row: a chain started at NaN would
    write NaN draws, which the package promises never to do."""
    finite = np.isfinite(array)
    if not finite.all():
        rows = np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1)) if array.ndim >= 1 else []
        where = f" (row {int(rows[0])} of {len(array)})" if len(rows) else ""
        raise ValueError(f"{name} must be finite; it holds NaN or inf{where}. Start every chain at a finite point.")
    return array


def check_output_dir(path: Any, name: str = "output") -> Path:
    """The folder ``path`` as a Path, checked before any long computation: it may exist (as a
    folder) or not yet, but the nearest existing folder above it must be writable, and no file
    may stand where it or one of its parents should be. Nothing is created."""
    if not isinstance(path, (str, os.PathLike)):
        raise ArgumentTypeError(f"{name} must be a folder path, got {path!r} ({type(path).__name__}).")
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise ValueError(f"{name} {path} {what}; pass a folder path.")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{name} {path}: {probe} is not writable; pass a folder you can write to.")
    return path


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
