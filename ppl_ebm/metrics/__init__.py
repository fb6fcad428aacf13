"""Sample quality: Wasserstein distances (``distances``) and the DDLS mode metrics (``modes``)."""

from ppl_ebm.metrics.distances import emd, sliced_wasserstein, wasserstein2
from ppl_ebm.metrics.modes import mode_metrics

__all__ = ["emd", "mode_metrics", "sliced_wasserstein", "wasserstein2"]
