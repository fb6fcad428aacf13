"""MCMC diagnostics on ``(chain, draw, dim)`` arrays: ESS, R-hat, MCSE and per-second and
per-gradient rates (``summary``, ArviZ or the ``fast`` engine), mixing bounds (``mixing``),
and the ArviZ 0.23 / 1.x adapter (``arviz_compat``)."""

from ppl_ebm.diagnostics.summary import (
    COMPARE_COLUMNS,
    Summary,
    compare,
    format_table,
    integrated_autocorrelation_time,
    summarize,
)

__all__ = ["COMPARE_COLUMNS", "Summary", "compare", "format_table", "integrated_autocorrelation_time", "summarize"]
