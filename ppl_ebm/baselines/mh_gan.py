"""MH-GAN (Turner et al. 2019): independence Metropolis-Hastings with generator proposals.

MH-GAN treats the critic ``d`` as the log density ratio ``log p_d / p_g``: build the EBM with a
:class:`~ppl_ebm.training.calibration.CalibratedCritic` (DDLS Sec. 5.2).

References
----------
- R. Turner, J. Hung, E. Frank, Y. Saatci, J. Yosinski. Metropolis-Hastings generative
  adversarial networks. ICML 2019 (MH-GAN); code: uber-research/metropolis-hastings-gans,
  ``mhgan/mh.py`` (``mh_sample``) and ``mhgan/demo_mhgan.py``.
- T. Che et al. Your GAN is secretly an energy-based model and you should use discriminator
  driven latent sampling. NeurIPS 2020 (DDLS), Sec. 3.2.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ppl_ebm.baselines.common import (
    BaselineResult,
    MHGANStats,
    as_generator,
    check_common,
    check_int,
    chunks,
    data_log_tilt,
    data_shape_of,
    generate_and_tilt,
    progress,
    to_numpy,
    uniform,
)

__all__ = ["mh_gan"]

def mh_gan(
    ebm: Any,
    n: int,
    seed: int | torch.Generator = 0,
    *,
    chain_length: int = 640,
    initial_real: Any = None,
    batch_size: int | None = None,
    progress_bar: bool = False,
) -> BaselineResult:
    """MH-GAN (Turner et al. 2019): independence Metropolis-Hastings with generator proposals.

    One chain per output sample, all chains advanced together. A proposal ``z' ~ p0`` is
    accepted with probability ``min(1, exp(d(G(z')) - d(x)))`` with ``d`` the calibrated logit,
    i.e. ``((1/D_old) - 1) / ((1/D_new) - 1)`` with ``D = sigmoid(d)`` (``accept_prob_MH_disc``
    in ``mhgan/mh.py``). The chain's final state is returned. Its stationary law is
    ``p0(z) exp(d(G(z))) / Z``, the DDLS target (DDLS Sec. 3.2).

    Parameters
    ----------
    ebm
        A :class:`~ppl_ebm.LatentEBM` whose critic is a calibrated logit.
    n
        Number of chains = samples returned.
    seed
        int or ``torch.Generator`` (CPU).
    chain_length
        Generator proposals per chain; 640 in MH-GAN (10 batches of 64, ``chain_batches`` in
        ``demo_mhgan.py``).
    initial_real
        Held-out real samples ``(m, *data_shape)``. When given, each chain starts at a real
        sample drawn at random (as ``enhance_samples`` in ``demo_mhgan.py`` does, to remove
        burn-in), and every one of the ``chain_length`` draws is a proposal. A chain that never
        leaves its real sample is restarted from its first generator proposal over the same
        proposals (the code's fallback, ``cap_out``). When None, each chain starts at its first
        generator draw and the other ``chain_length - 1`` draws are proposals (the same
        fallback chain).
    batch_size
        Chains advanced together (all when None).
    progress_bar
        Show a tqdm bar over chain steps.

    Returns
    -------
    BaselineResult
        ``stats``: ``wall_seconds``; ``proposals`` (= ``n * chain_length`` generator draws);
        ``critic_evals`` (+ n for the real starting points); ``acceptance_rate`` (accepted
        moves / MH proposals of the main chains); ``restarted`` (chains that never left their
        real starting point, 0 without ``initial_real``); ``chain_length``.

    Notes
    -----
    A proposal or state with a non-finite ``d`` never wins a comparison it would need ``nan``
    arithmetic for: ``nan`` proposals are rejected.
    """
    n, batch_size = check_common(n, batch_size)
    chain_length = check_int("chain_length", chain_length, 1)
    generator = as_generator(seed)
    real = None
    if initial_real is not None:
        real = initial_real if isinstance(initial_real, torch.Tensor) else torch.as_tensor(np.asarray(initial_real))
        data_shape = data_shape_of(ebm)
        if real.ndim != len(data_shape) + 1 or tuple(real.shape[1:]) != data_shape or real.shape[0] < 1:
            raise ValueError(
                f"initial_real must be shaped (m, *{data_shape}) with m >= 1; got {tuple(real.shape)}."
            )
    start = time.perf_counter()
    latents, samples = [], []
    accepted_moves = 0
    mh_proposals = 0
    restarted = 0
    with torch.no_grad(), progress(n * chain_length, progress_bar, "MH-GAN") as bar:
        for part in chunks(n, batch_size):
            chains = part.stop - part.start
            z = ebm.prior_sample(chains, generator=generator)
            x, tilt = generate_and_tilt(ebm, z)
            bar.update(chains)
            if real is None:
                moved = torch.ones(chains, dtype=torch.bool)
                fallback = None
            else:
                # Main chain at a real sample, fallback chain at the first generator draw; the
                # first generator draw is also the main chain's first proposal.
                index = torch.randint(real.shape[0], (chains,), generator=generator)
                real_x = real[index].to(device=x.device, dtype=x.dtype)
                real_tilt = data_log_tilt(ebm, real_x).to(torch.float64).cpu()
                fallback = (z, x, tilt)
                accept = _accept(real_tilt, tilt.cpu(), generator)
                moved = accept.clone()
                accepted_moves += int(accept.sum())
                mh_proposals += chains
                z = torch.where(_column(accept, z), z, torch.full_like(z, math.nan))
                x = torch.where(_column(accept, x), x, real_x)
                tilt = torch.where(accept.to(tilt.device), tilt, real_tilt.to(tilt.device))
            for _ in range(chain_length - 1):
                proposal_z = ebm.prior_sample(chains, generator=generator)
                proposal_x, proposal_tilt = generate_and_tilt(ebm, proposal_z)
                accept = _accept(tilt.cpu(), proposal_tilt.cpu(), generator)
                z, x, tilt = _move(accept, (z, x, tilt), (proposal_z, proposal_x, proposal_tilt))
                moved |= accept
                accepted_moves += int(accept.sum())
                mh_proposals += chains
                if fallback is not None:
                    fallback_accept = _accept(fallback[2].cpu(), proposal_tilt.cpu(), generator)
                    fallback = _move(fallback_accept, fallback, (proposal_z, proposal_x, proposal_tilt))
                bar.update(chains)
            if fallback is not None:
                stuck = ~moved
                restarted += int(stuck.sum())
                z, x, _ = _move(stuck, (z, x, tilt), fallback)
            latents.append(z)
            samples.append(x)
    critic_evals = n * chain_length + (0 if real is None else n)
    stats = MHGANStats(
        wall_seconds=time.perf_counter() - start,
        proposals=n * chain_length,
        critic_evals=critic_evals,
        acceptance_rate=accepted_moves / mh_proposals if mh_proposals else math.nan,
        restarted=restarted,
        chain_length=chain_length,
    )
    return BaselineResult(to_numpy(torch.cat(samples)), to_numpy(torch.cat(latents)), stats)


def _column(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-chain mask broadcast over the trailing axes of ``like``, on its device."""
    return mask.to(like.device).reshape(-1, *([1] * (like.ndim - 1)))


def _accept(current_tilt: torch.Tensor, proposal_tilt: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Independence-MH test ``log u <= d(x') - d(x)``; a nan difference rejects."""
    log_ratio = proposal_tilt - current_tilt
    return torch.log(uniform(log_ratio.shape[0], generator)) <= log_ratio


def _move(accept: torch.Tensor, state: tuple, proposal: tuple) -> tuple:
    return tuple(torch.where(_column(accept, old), new, old) for old, new in zip(state, proposal))
