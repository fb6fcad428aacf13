"""What crosses chains when a torch run's chains are split over ``torchrun`` ranks.

Two quantities of the kernels read more than one chain: the mass matrix pooled over chains
(>= 32 chains, :mod:`ppl_ebm.kernels.adaptation.mass_matrix`) and a step size shared by all
chains (``per_chain_step_size=False``, dual averaging on the mean acceptance). Under
``torch.distributed`` both become ``all_reduce`` sums over the ranks (gloo on CPU, NCCL on
GPU), so every rank holds the same pooled estimate and the same step. The sums are taken
rank by rank, so they round differently from one process's single sum: runs that use them
equal the single process's to float rounding; every per-chain quantity stays bit for bit.
Without an initialised process group each function is the single-process arithmetic.
"""

from __future__ import annotations

import torch

from ppl_ebm.kernels.adaptation.mass_matrix import WelfordState, _outer, welford_merge, welford_update

__all__ = ["distributed", "mean_acceptance", "pooled_welford_update"]


def distributed() -> bool:
    """Whether this process is one rank of several."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce(tensor: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def pooled_welford_update(state: WelfordState, position: torch.Tensor, pooled: bool) -> WelfordState:
    """:func:`~ppl_ebm.kernels.adaptation.mass_matrix.welford_update` over every rank's chains.
    ``pooled`` is the run's decision from all its chains (the sampler's ``pooled_mass``), not
    this rank's shape: a rank whose block is one chain of per-chain matrices holds one group too,
    and a rank's block of a pooled run may be fewer than 32 chains."""
    if not pooled or not distributed():  # one estimate per chain, or one process
        return welford_update(state, position, pooled)
    dense = state.m2.ndim == state.mean.ndim + 1
    batch = _all_reduce(torch.tensor(float(position.shape[0]), dtype=position.dtype, device=position.device))
    batch_mean = _all_reduce(position.sum(0))[None] / batch
    return welford_merge(state, batch, batch_mean, _all_reduce(_outer(position - batch_mean, dense).sum(0))[None])


def mean_acceptance(acceptance: torch.Tensor) -> torch.Tensor:
    """For a shared step size: every rank's chains' mean acceptance, broadcast to this rank's chains
    (whose mean the adaptation then takes)."""
    if not distributed():
        return acceptance
    total = _all_reduce(torch.stack([acceptance.sum(), torch.tensor(float(acceptance.numel()),
                                                                      dtype=acceptance.dtype,
                                                                      device=acceptance.device)]))
    return torch.full_like(acceptance, float(total[0] / total[1]))
