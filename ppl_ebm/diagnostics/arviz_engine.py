"""The ArviZ engine of :func:`ppl_ebm.diagnostics.summary.summarize`, and the reference the fast
engine (:mod:`ppl_ebm.diagnostics.fast`) is tested against: ArviZ's own functions, through
:mod:`ppl_ebm.diagnostics.arviz_compat` (ArviZ 0.23 or 1.x), on blocks of dimensions.

Slow on thousands of chains (ArviZ evaluates its 2-D kernel once per dimension); exact by
definition.

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC. *Bayesian Analysis* 16(2), 667-718.

Geyer, C. J. (1992). Practical Markov chain Monte Carlo. *Statistical Science* 7(4),
473-483.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ppl_ebm.diagnostics import arviz_compat
from ppl_ebm.diagnostics.estimators import KEYS, MIN_DRAWS

__all__ = ["DEFAULT_BLOCK_BYTES", "KEYS", "diagnose", "integrated_autocorrelation_time"]

#: Default memory budget (bytes of float64) of one block of dimensions handed to ArviZ.
DEFAULT_BLOCK_BYTES = 1 << 27  # 128 MiB


def integrated_autocorrelation_time(draws: Any) -> np.ndarray:
    r"""Integrated autocorrelation time (IAT) of each dimension.

    Defined as

    .. math:: \tau = \frac{M N}{\widehat{\mathrm{ESS}}_{\mathrm{mean}}}

    where :math:`M N` is the total number of draws (chains times draws per chain) and
    :math:`\widehat{\mathrm{ESS}}_{\mathrm{mean}}` is ArviZ's ``method="mean"`` ESS: the
    basic split-chain ESS of the raw draws, without rank normalisation, whose
    autocorrelation sum is truncated by Geyer's initial monotone sequence (Geyer 1992;
    Vehtari et al. 2021, eqs. 10-11). It estimates
    :math:`\tau = 1 + 2\sum_{t\ge1}\rho_t`, the factor by which autocorrelation
    inflates the variance of the sample mean; for an AR(1) chain with coefficient
    :math:`\rho`, :math:`\tau = (1+\rho)/(1-\rho)`. Values below 1 mean antithetic
    chains (ArviZ caps ESS at :math:`MN\log_{10}(MN)`).

    Parameters
    ----------
    draws
        Array ``(chain, draw, *event)``.

    Returns
    -------
    numpy.ndarray
        IAT per event element, shape ``event``.
    """
    arr = np.asarray(draws)
    if arr.ndim < 2:
        raise ValueError(f"draws must have shape (chain, draw, *event); got {arr.shape}")
    n_total = arr.shape[0] * arr.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return n_total / arviz_compat.ess(arr, method="mean")


def diagnose(
    draws: np.ndarray,
    *,
    chains: np.ndarray | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> dict[str, np.ndarray]:
    """ESS bulk/tail, rank R-hat, MCSE of the mean and sd, and IAT per dimension, by ArviZ.

    Parameters
    ----------
    draws
        ``(chain, draw, dim)`` array, finite on the chains used.
    chains
        Indices of the chains to diagnose; all when None. Read block by block, so a subset
        never needs a copy of all its draws.
    block_bytes
        Memory bound (float64 bytes) of one block of dimensions handed to ArviZ.

    Returns
    -------
    dict
        :data:`KEYS` -> ``(dim,)`` float64 arrays.
    """
    if draws.ndim != 3:
        raise ValueError(f"draws must be shaped (chain, draw, dim); got {draws.shape}.")
    n_chain, n_draw, dim = draws.shape
    if chains is not None:
        chains = np.asarray(chains, dtype=np.intp)
        n_chain = chains.size
    if n_draw < MIN_DRAWS:  # ArviZ would only log a warning and return NaN; the fast engine refuses alike
        raise ValueError(f"diagnostics need >= {MIN_DRAWS} draws per chain (as ArviZ); got {n_draw}. "
                         "Run more num_samples.")
    out = {key: np.full(dim, np.nan) for key in KEYS}
    step = max(1, int(block_bytes) // (8 * n_chain * max(n_draw, 1)))
    for d0 in range(0, dim, step):
        d1 = min(dim, d0 + step)
        block = draws[:, :, d0:d1] if chains is None else draws[chains, :, d0:d1]
        block = np.asarray(block, dtype=np.float64)
        out["ess_bulk"][d0:d1] = arviz_compat.ess(block, "bulk")
        out["ess_tail"][d0:d1] = arviz_compat.ess(block, "tail")
        out["rhat"][d0:d1] = arviz_compat.rhat(block, "rank")
        out["mcse_mean"][d0:d1] = arviz_compat.mcse(block, "mean")
        out["mcse_sd"][d0:d1] = arviz_compat.mcse(block, "sd")
        out["iat"][d0:d1] = integrated_autocorrelation_time(block)
        del block
    return out
