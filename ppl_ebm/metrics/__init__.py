"""Sample quality: Wasserstein distances and the DDLS mode metrics."""

from ppl_ebm.metrics.sample_quality import emd, mode_metrics, sliced_wasserstein, wasserstein2

__all__ = ["emd", "mode_metrics", "sliced_wasserstein", "wasserstein2"]
