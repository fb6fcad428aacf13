"""Discriminator Rejection Sampling (Azadi et al. 2019) as the MH-GAN code implements it.

DRS treats the critic ``d`` as the log density ratio ``log p_d / p_g``: build the EBM with a
:class:`~ppl_ebm.training.calibration.CalibratedCritic` (DDLS Sec. 5.2).

References
----------
- S. Azadi, C. Olsson, T. Darrell, I. Goodfellow, A. Odena. Discriminator rejection sampling.
  ICLR 2019 (DRS).
- R. Turner, J. Hung, E. Frank, Y. Saatci, J. Yosinski. Metropolis-Hastings generative
  adversarial networks. ICML 2019; code: uber-research/metropolis-hastings-gans,
  ``mhgan/mh.py`` (``rejection_sample``) and ``mhgan/demo_mhgan.py``.
"""

from __future__ import annotations

import math
import numbers
import time
from typing import Any

import numpy as np
import torch

from ppl_ebm.baselines.common import (
    BaselineResult,
    DRSStats,
    as_generator,
    check_common,
    check_int,
    check_positive,
    chunks,
    generate_and_tilt,
    progress,
    to_numpy,
    uniform,
)

__all__ = ["drs"]

# DRS draws this many candidates per round until enough are accepted.
_DRS_BATCH = 10000


def _log_tilt(ebm: Any, z: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    return torch.cat([ebm.log_tilt(z[part]).reshape(-1).to(torch.float64) for part in chunks(z.shape[0], batch_size)])


def _drs_f(log_tilt: torch.Tensor, log_max: torch.Tensor, eps: float) -> torch.Tensor:
    """``F = D_delta - log(1 - exp(D_delta - eps))`` with ``D_delta = D~ - D*_M`` (Azadi et al.;
    ``rejection_sample`` in ``mhgan/mh.py``). ``sigmoid(F) ≈ exp(D_delta)``: exact rejection at gamma = 0."""
    delta = log_tilt - log_max
    # log(1 - e^u) = log(-expm1(u)), accurate for u near 0 (D~ at the running max).
    return delta - torch.log(-torch.expm1(delta - eps))


def drs(
    ebm: Any,
    n: int,
    seed: int | torch.Generator = 0,
    *,
    gamma_percentile: float = 95.0,
    pilot: int = 10000,
    eps: float = 1e-6,
    gamma: float | None = None,
    log_max_ratio: float | None = None,
    batch_size: int = _DRS_BATCH,
    max_proposals: int | None = None,
    progress_bar: bool = False,
) -> BaselineResult:
    """Discriminator Rejection Sampling (Azadi et al. 2019), as the MH-GAN code implements it.

    For each candidate ``z ~ p0`` with ``D~ = d(G(z))`` (the calibrated logit):
    ``D*_M <- max(D*_M, D~)``, ``F = D~ - D*_M - log(1 - exp(D~ - D*_M - eps)) - gamma``,
    accept with probability ``sigmoid(F)``. Candidates are drawn in batches until ``n`` are
    accepted; the running maximum runs over the candidates in order (``np.maximum.accumulate``
    in ``rejection_sample``, ``mhgan/mh.py``).

    Parameters
    ----------
    ebm
        A :class:`~ppl_ebm.LatentEBM` whose critic is a calibrated logit.
    n
        Number of accepted samples to return.
    seed
        int or ``torch.Generator`` (CPU).
    gamma_percentile
        ``gamma`` is this percentile of ``F`` over the pilot draws; 95 in Azadi et al. and the
        MH-GAN code (``shift_percent=95.0``).
    pilot
        Burn-in draws that estimate ``D*_M = log M`` as their maximum (the MH-GAN code uses
        156 batches of 64 = 9984, ``max_est_batches`` in ``demo_mhgan.py``). Not returned as
        samples. May be 0 when ``gamma`` and ``log_max_ratio`` are both given.
    eps
        The ``epsilon`` of ``F`` (1e-6, as in ``rejection_sample``); keeps ``log(1 - exp(.))``
        finite at the maximum.
    gamma
        Use this shift instead of the percentile. ``gamma=0`` with a true bound
        ``log_max_ratio >= sup d`` is exact rejection sampling of ``p0(z) exp(d(G(z)))``
        (acceptance ``exp(D~ - log M)`` up to O(eps)), the DDLS target of Sec. 3.2.
    log_max_ratio
        A known bound on ``d``; ``D*_M`` starts at ``max(log_max_ratio, pilot maximum)``.
    batch_size
        Candidates per round.
    max_proposals
        Stop with a RuntimeError after this many candidates (default ``1000 * n + pilot``).
    progress_bar
        Show a tqdm bar over accepted samples.

    Returns
    -------
    BaselineResult
        ``stats``: ``wall_seconds``; ``proposals`` (pilot + candidates, all pushed through G
        and the critic); ``critic_evals``; ``acceptance_rate`` (accepted / candidates up to
        the n-th acceptance, pilot excluded); ``gamma``; ``log_max_ratio`` (final ``D*_M``);
        ``max_ratio_updates`` (candidates that raised ``D*_M`` above its pilot value: where
        this is not 0 the pilot under-estimated M); ``pilot``.

    Notes
    -----
    The MH-GAN code takes the percentile over each 640-candidate batch; here ``gamma`` is taken
    once, over the pilot (with ``D*_M`` the pilot maximum), so that the acceptance rule stays
    fixed while sampling. Candidates with a non-finite ``d`` are rejected.
    """
    n, _ = check_common(n, None)
    batch_size = check_int("batch_size", batch_size, 1)
    pilot = check_int("pilot", pilot, 0)
    eps = check_positive("eps", eps)
    if gamma is None:
        if (
            isinstance(gamma_percentile, bool)
            or not isinstance(gamma_percentile, numbers.Real)
            or not 0.0 <= gamma_percentile <= 100.0
        ):
            raise ValueError(f"gamma_percentile must be a number in [0, 100], got {gamma_percentile!r}.")
    elif not math.isfinite(gamma):
        raise ValueError(f"gamma must be a finite number or None, got {gamma!r}.")
    if log_max_ratio is not None and not math.isfinite(log_max_ratio):
        raise ValueError(f"log_max_ratio must be a finite number or None, got {log_max_ratio!r}.")
    if pilot == 0 and (gamma is None or log_max_ratio is None):
        raise ValueError(
            "pilot=0 needs both gamma and log_max_ratio: the pilot draws estimate log M and the "
            "gamma percentile. Pass pilot >= 1 (10000 is the MH-GAN code's size)."
        )
    if max_proposals is None:
        max_proposals = 1000 * n + pilot
    max_proposals = check_int("max_proposals", max_proposals, 1)

    generator = as_generator(seed)
    start = time.perf_counter()
    proposals = 0
    with torch.no_grad():
        log_max = torch.tensor(-math.inf if log_max_ratio is None else float(log_max_ratio), dtype=torch.float64)
        if pilot > 0:
            pilot_tilt = _log_tilt(ebm, ebm.prior_sample(pilot, generator=generator), batch_size).cpu()
            proposals += pilot
            pilot_tilt = pilot_tilt[torch.isfinite(pilot_tilt)]
            if pilot_tilt.numel() == 0:
                raise RuntimeError("The critic returned no finite value on the pilot draws.")
            log_max = torch.maximum(log_max, pilot_tilt.max())
            if gamma is None:
                pilot_f = _drs_f(pilot_tilt, log_max, eps)
                gamma = float(np.percentile(pilot_f.numpy(), float(gamma_percentile)))
        pilot_log_max = float(log_max)

        kept_z, kept_x = [], []
        accepted = 0
        candidates_used = 0
        updates = 0
        with progress(n, progress_bar, "DRS") as bar:
            while accepted < n:
                if proposals >= max_proposals:
                    raise RuntimeError(
                        f"DRS accepted {accepted} of {n} samples in {proposals} proposals "
                        f"(max_proposals={max_proposals}); the acceptance rate is too low. Check "
                        "the critic's calibration, gamma and log M, or raise max_proposals."
                    )
                count = min(batch_size, max_proposals - proposals)
                z = ebm.prior_sample(count, generator=generator)
                x, tilt = generate_and_tilt(ebm, z)
                tilt = tilt.cpu()
                proposals += count
                finite_tilt = torch.where(torch.isfinite(tilt), tilt, torch.full_like(tilt, -math.inf))
                running_max = torch.maximum(log_max, torch.cummax(finite_tilt, dim=0).values)
                updates += int((finite_tilt > pilot_log_max).sum())
                log_max = running_max[-1]
                acceptance = torch.sigmoid(_drs_f(tilt, running_max, eps) - gamma)
                accept = uniform(count, generator) <= acceptance  # nan -> False
                index = torch.nonzero(accept).reshape(-1)
                needed = n - accepted
                if index.numel() >= needed:
                    candidates_used += int(index[needed - 1]) + 1
                    index = index[:needed]
                else:
                    candidates_used += count
                index = index.to(z.device)
                kept_z.append(z[index])
                kept_x.append(x[index])
                accepted += int(index.numel())
                bar.update(int(index.numel()))
    z_out = torch.cat(kept_z)
    x_out = torch.cat(kept_x)
    stats = DRSStats(
        wall_seconds=time.perf_counter() - start,
        proposals=proposals,
        critic_evals=proposals,
        acceptance_rate=n / candidates_used,
        gamma=float(gamma),
        log_max_ratio=float(log_max),
        max_ratio_updates=updates,
        pilot=pilot,
    )
    return BaselineResult(to_numpy(x_out), to_numpy(z_out), stats)
