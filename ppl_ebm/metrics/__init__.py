"""Sample quality: Wasserstein distances (``distances``: our W1 headline and the papers' W2^2
"EMD"), the DDLS mode metrics (``modes``), and the image metrics on a classifier's features
(``frechet``: FID's formula, ``inception_score``: IS's formula, ``precision_recall``:
Kynkaanniemi et al. 2019, ``image_scores``: all of them in one call), and the standard FID / IS
through torch-fidelity on Inception weights from the user's disk (``standard_inception``; the
``fid`` extra, imported only when used)."""

from ppl_ebm.metrics.distances import (
    PAPER_POINTS,
    PAPER_REPEATS,
    RepeatedDistance,
    emd,
    paired_difference,
    sliced_wasserstein,
    w2sq,
    w2sq_repeated,
    wasserstein2,
)
from ppl_ebm.metrics.frechet import frechet_distance, frechet_distance_from_moments
from ppl_ebm.metrics.image_scores import classifier_outputs, image_scores
from ppl_ebm.metrics.inception_score import inception_style_score
from ppl_ebm.metrics.modes import mode_metrics
from ppl_ebm.metrics.precision_recall import precision_recall

__all__ = [
    "PAPER_POINTS", "PAPER_REPEATS", "RepeatedDistance", "classifier_outputs", "emd", "frechet_distance",
    "frechet_distance_from_moments", "image_scores", "inception_style_score", "mode_metrics", "paired_difference",
    "precision_recall", "sliced_wasserstein", "w2sq", "w2sq_repeated", "wasserstein2",
]
