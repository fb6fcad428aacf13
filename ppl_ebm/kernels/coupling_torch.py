"""Coupled ULA and MALA kernels (MALA also with independence steps) and L-lag meeting times, torch core (mirrors
:mod:`ppl_ebm.kernels.coupling_jax` name for name; the maths and references are there).

``rng`` is a ``torch.Generator`` (or None for torch's global one), as in
:mod:`ppl_ebm.kernels.langevin_torch`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ppl_ebm.kernels.cycle import check_lagged_cycle, cycle_kernel, python_cond
from ppl_ebm.kernels.registry import coupled_kernels
from ppl_ebm.kernels.langevin_torch import (
    LangevinState, Proposal, as_column, independence_log_ratio, is_finite, independence_step, langevin_init,
    mala_step, standard_normal_proposal, ula_step,
)

__all__ = [
    "coupled_independence_step", "coupled_mala_step", "coupled_ula_step", "lagged_meeting_times",
    "reflection_maximal_coupling",
]

PotentialAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def reflection_maximal_coupling(
    rng: torch.Generator | None, mean_x: torch.Tensor, mean_y: torch.Tensor, scale: float | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """See :func:`ppl_ebm.kernels.coupling_jax.reflection_maximal_coupling`."""
    scale = as_column(scale, mean_x)
    xi = torch.randn(mean_x.shape, generator=rng, dtype=mean_x.dtype, device=mean_x.device)
    z = (mean_x - mean_y) / scale
    log_ratio = 0.5 * (xi * xi).sum(-1) - 0.5 * ((xi + z) ** 2).sum(-1)
    uniform = torch.rand(log_ratio.shape, generator=rng, dtype=mean_x.dtype, device=mean_x.device)
    met = torch.log(uniform) <= log_ratio
    norm = torch.sqrt((z * z).sum(-1, keepdim=True))
    direction = z / torch.where(norm > 0, norm, torch.ones_like(norm))
    reflected = xi - 2.0 * (direction * xi).sum(-1, keepdim=True) * direction
    x = mean_x + scale * xi
    y = torch.where(met[:, None], x, mean_y + scale * reflected)
    return x, y, met


def _evaluate_pair(potential_and_grad_fn: PotentialAndGrad, x: torch.Tensor, y: torch.Tensor):
    potential, grad = potential_and_grad_fn(torch.cat([x, y]))
    pairs = x.shape[0]
    return (potential[:pairs], grad[:pairs]), (potential[pairs:], grad[pairs:])


def _move(state: LangevinState, accept, position, potential, grad, nonfinite) -> LangevinState:
    return LangevinState(
        torch.where(accept[:, None], position, state.position),
        torch.where(accept, potential, state.potential),
        torch.where(accept[:, None], grad, state.grad),
        state.active,
        state.nonfinite_count + nonfinite.to(state.nonfinite_count.dtype),
    )


def coupled_ula_step(
    rng: torch.Generator | None,
    state_x: LangevinState,
    state_y: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    step_size: float | torch.Tensor,
    noise_scale: float | torch.Tensor,
) -> tuple[LangevinState, LangevinState, torch.Tensor]:
    """See :func:`ppl_ebm.kernels.coupling_jax.coupled_ula_step`."""
    step = as_column(step_size, state_x.position)
    mean_x = state_x.position - 0.5 * step * state_x.grad
    mean_y = state_y.position - 0.5 * step * state_y.grad
    x, y, met = reflection_maximal_coupling(rng, mean_x, mean_y, noise_scale)
    (ux, gx), (uy, gy) = _evaluate_pair(potential_and_grad_fn, x, y)
    fx, fy = is_finite(ux, gx), is_finite(uy, gy)
    new_x = _move(state_x, fx, x, ux, gx, ~fx)
    new_y = _move(state_y, fy, y, uy, gy, ~fy)
    return new_x, new_y, met & fx & fy


def _mala_log_ratio(state: LangevinState, proposal, potential, grad, step) -> torch.Tensor:
    forward = proposal - state.position + 0.5 * step * state.grad
    backward = state.position - proposal + 0.5 * step * grad
    log_q = ((forward * forward).sum(-1) - (backward * backward).sum(-1)) / (2.0 * step[:, 0])
    log_ratio = state.potential - potential + log_q
    return torch.where(is_finite(potential, grad), log_ratio, torch.full_like(log_ratio, -torch.inf))


def coupled_mala_step(
    rng: torch.Generator | None,
    state_x: LangevinState,
    state_y: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    step_size: float | torch.Tensor,
) -> tuple[LangevinState, LangevinState, torch.Tensor]:
    """See :func:`ppl_ebm.kernels.coupling_jax.coupled_mala_step`."""
    step = as_column(step_size, state_x.position)
    mean_x = state_x.position - 0.5 * step * state_x.grad
    mean_y = state_y.position - 0.5 * step * state_y.grad
    x, y, proposals_met = reflection_maximal_coupling(rng, mean_x, mean_y, torch.sqrt(step))
    (ux, gx), (uy, gy) = _evaluate_pair(potential_and_grad_fn, x, y)
    log_uniform = torch.log(torch.rand(ux.shape, generator=rng, dtype=ux.dtype, device=ux.device))
    accept_x = log_uniform < _mala_log_ratio(state_x, x, ux, gx, step)
    accept_y = log_uniform < _mala_log_ratio(state_y, y, uy, gy, step)
    new_x = _move(state_x, accept_x, x, ux, gx, ~is_finite(ux, gx))
    new_y = _move(state_y, accept_y, y, uy, gy, ~is_finite(uy, gy))
    return new_x, new_y, proposals_met & accept_x & accept_y


def coupled_independence_step(
    rng: torch.Generator | None,
    state_x: LangevinState,
    state_y: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    proposal: Proposal | None = None,
) -> tuple[LangevinState, LangevinState, torch.Tensor]:
    """See :func:`ppl_ebm.kernels.coupling_jax.coupled_independence_step`."""
    proposal = standard_normal_proposal() if proposal is None else proposal
    current = state_x.position
    position = proposal.sample(rng, current.shape, current.dtype, current.device)
    potential, grad = potential_and_grad_fn(position)
    log_uniform = torch.log(torch.rand(potential.shape, generator=rng, dtype=potential.dtype, device=potential.device))
    # independence_step's own ratio, so each marginal of the coupled step is that kernel exactly.
    finite = is_finite(potential, grad)
    accept_x = finite & (log_uniform < independence_log_ratio(state_x, position, potential, proposal))
    accept_y = finite & (log_uniform < independence_log_ratio(state_y, position, potential, proposal))
    new_x = _move(state_x, accept_x, position, potential, grad, ~finite)
    new_y = _move(state_y, accept_y, position, potential, grad, ~finite)
    return new_x, new_y, accept_x & accept_y


def lagged_meeting_times(
    rng: torch.Generator | None,
    initial_x: torch.Tensor,
    initial_y: torch.Tensor,
    potential_and_grad_fn: PotentialAndGrad,
    sampler: str,
    step_size: float | torch.Tensor,
    lag: int,
    max_iterations: int,
    noise_scale: float | torch.Tensor | None = None,
    independence_every: int | None = None,
    proposal: Proposal | None = None,
) -> torch.Tensor:
    """See :func:`ppl_ebm.kernels.coupling_jax.lagged_meeting_times`."""
    kernels = coupled_kernels()
    if sampler not in kernels:
        raise ValueError(f"sampler must be one of {kernels} (a Langevin kernel), got {sampler!r}.")
    every = check_lagged_cycle(sampler, lag, independence_every)
    if noise_scale is None:
        noise_scale = torch.sqrt(torch.as_tensor(step_size, dtype=initial_x.dtype))

    # X's step t (and Y's, t - lag, at the same phase) is an independence step on the cycle.
    single = cycle_kernel(python_cond, every,
                          lambda state: mala_step(rng, state, potential_and_grad_fn, step_size)[0],
                          lambda state: independence_step(rng, state, potential_and_grad_fn, proposal)[0])
    coupled = cycle_kernel(python_cond, every,
                           lambda x, y: coupled_mala_step(rng, x, y, potential_and_grad_fn, step_size),
                           lambda x, y: coupled_independence_step(rng, x, y, potential_and_grad_fn, proposal))
    state_x = langevin_init(initial_x, potential_and_grad_fn)
    state_y = langevin_init(initial_y, potential_and_grad_fn)
    for t in range(lag):
        if sampler == "ula":
            state_x = ula_step(rng, state_x, potential_and_grad_fn, step_size, noise_scale)[0]
        else:
            state_x = single(t, state_x)
    tau = torch.full((initial_x.shape[0],), -1, dtype=torch.int32, device=initial_x.device)
    t = lag
    while t < max_iterations and bool((tau < 0).any()):
        if sampler == "ula":
            state_x, state_y, met = coupled_ula_step(rng, state_x, state_y, potential_and_grad_fn, step_size,
                                                     noise_scale)
        else:
            state_x, state_y, met = coupled(t, state_x, state_y)
        t += 1
        tau = torch.where((tau < 0) & met, torch.full_like(tau, t), tau)
    return tau
