"""Sample quality: Wasserstein distances (``distances``: our W1 headline and the papers' W2^2
"EMD") and the DDLS mode metrics (``modes``)."""

from ppl_ebm.metrics.distances import (
    PAPER_POINTS,
    PAPER_REPEATS,
    RepeatedDistance,
    emd,
    sliced_wasserstein,
    w2sq,
    w2sq_repeated,
    wasserstein2,
)
from ppl_ebm.metrics.modes import mode_metrics

__all__ = [
    "PAPER_POINTS", "PAPER_REPEATS", "RepeatedDistance", "emd", "mode_metrics", "sliced_wasserstein", "w2sq",
    "w2sq_repeated", "wasserstein2",
]
