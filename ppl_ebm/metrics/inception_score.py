"""The Inception Score's formula on any classifier's class probabilities (Salimans et al. 2016).

``IS = exp(E_x KL(p(y | x) || p(y)))`` with ``p(y)`` the mean of ``p(y | x)`` over the set: high
when each image is confidently one class and the classes are evenly used; between 1 and the
number of classes. On the Inception network it is the IS; on the digits classifier it is an
"Inception-style" score on the same formula, not on IS's scale.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ppl_ebm.validation import check_int

__all__ = ["SplitScore", "inception_style_score"]


class SplitScore(NamedTuple):
    """Mean and standard deviation (ddof 0, as Salimans et al.'s code) over the splits."""

    mean: float
    std: float


def inception_style_score(probabilities: np.ndarray, splits: int = 10) -> SplitScore:
    """The score of ``probabilities`` ``(n, classes)`` (rows sum to 1), over ``splits`` equal parts.

    Salimans et al. report the mean and std over 10 splits of 50,000 images; with few images,
    pass ``splits=1``. Zero probabilities contribute 0 (``0 log 0 = 0``).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    splits = check_int("splits", splits, 1)
    if probabilities.ndim != 2 or probabilities.shape[0] < splits:
        raise ValueError(f"probabilities must be (n, classes) with n >= splits ({splits}), got shape "
                         f"{probabilities.shape}.")
    if (probabilities < 0).any() or not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probabilities must be non-negative rows summing to 1 (a softmax's output, not logits).")
    scores = []
    for part in np.array_split(probabilities, splits):
        marginal = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(part > 0, part * (np.log(part) - np.log(marginal)), 0.0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return SplitScore(float(np.mean(scores)), float(np.std(scores)))
