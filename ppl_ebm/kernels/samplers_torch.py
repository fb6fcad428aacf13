"""ULA and MALA as pure sampler kernels, torch core (mirrored name for name in
:mod:`ppl_ebm.kernels.samplers_jax`; see there for the design).

``params`` are tensors here: nothing compiles, and one set of Python code serves every value.
The iteration count is a Python int, so plain branches replace ``jnp.where``; ``rng_key`` is a
``torch.Generator`` (or None: torch's global generator, which ``pyro.set_rng_seed`` seeds).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ppl_ebm.kernels import cycle
from ppl_ebm.kernels.adaptation.dual_averaging import (
    DualAveragingState, dual_averaging_init, dual_averaging_update,
)
from ppl_ebm.kernels.langevin_torch import (
    LangevinInfo, LangevinState, PotentialAndGrad, Proposal, independence_step, langevin_init, mala_step,
    standard_normal_proposal, ula_step,
)

__all__ = ["LangevinParams", "LangevinSampler", "SamplerState", "langevin_params"]


class LangevinParams(NamedTuple):
    """Hyper-parameters as values, not structure: ``step_size`` (ULA's base step, MALA's initial
    one), ``noise_scale`` (ULA), ``decay_rate``, ``decay_every`` (0: constant), ``noise_decay_rate``
    (DDLS App. B.2), ``target_accept_prob`` (MALA's adaptation) and ``num_warmup``."""

    step_size: torch.Tensor
    noise_scale: torch.Tensor
    decay_rate: torch.Tensor
    decay_every: int
    noise_decay_rate: torch.Tensor
    target_accept_prob: torch.Tensor
    num_warmup: int


def langevin_params(options: dict, num_warmup: int, device: torch.device | str | None = None) -> LangevinParams:
    """Tensors of the validated options (:mod:`ppl_ebm.kernels.registry` fills the defaults).
    The integers stay Python ints: the loop reads them on the host."""
    from ppl_ebm.kernels.registry import langevin_param_values

    values = langevin_param_values(options, num_warmup)
    return LangevinParams(*(value if isinstance(value, int)
                            else torch.tensor(value, dtype=torch.get_default_dtype(), device=device)
                            for value in values))


class SamplerState(NamedTuple):
    """See :class:`ppl_ebm.kernels.samplers_jax.SamplerState`."""

    iteration: int
    langevin: LangevinState
    step_size: torch.Tensor
    adaptation: DualAveragingState | None
    mean_acceptance: torch.Tensor
    mean_independence_acceptance: torch.Tensor | None

    @property
    def position(self) -> torch.Tensor:
        return self.langevin.position


class LangevinSampler(NamedTuple):
    """See :class:`ppl_ebm.kernels.samplers_jax.LangevinSampler`."""

    name: str
    independence_every: int | None = None
    adapt_step_size: bool = True
    per_chain_step_size: bool = True

    def init(self, position: torch.Tensor, potential_and_grad_fn: PotentialAndGrad,
             params: LangevinParams) -> SamplerState:
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.init`."""
        langevin = langevin_init(position, potential_and_grad_fn)
        step = params.step_size.to(dtype=position.dtype, device=position.device).expand(position.shape[:1]).clone()
        if self.name == "ula":
            return SamplerState(0, langevin, step, None, torch.ones_like(step), None)
        independence = None if self.independence_every is None else torch.zeros_like(step)
        return SamplerState(0, langevin, step, dual_averaging_init(torch.log(step)), torch.zeros_like(step),
                            independence)

    def step(
        self,
        rng_key: torch.Generator | None,
        state: SamplerState,
        potential_and_grad_fn: PotentialAndGrad,
        params: LangevinParams,
        proposal: Proposal | None = None,
    ) -> tuple[SamplerState, LangevinInfo]:
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.step`."""
        if self.name == "ula":
            return self._ula(rng_key, state, potential_and_grad_fn, params)
        if self.independence_every is not None and cycle.is_other_step(state.iteration, self.independence_every):
            proposal = standard_normal_proposal() if proposal is None else proposal
            return self._independence(rng_key, state, potential_and_grad_fn, params, proposal)
        return self._mala(rng_key, state, potential_and_grad_fn, params)

    def _ula(self, rng_key, state, potential_and_grad_fn, params):
        step_size, noise_scale = _schedule(state.iteration, params)
        langevin, info = ula_step(rng_key, state.langevin, potential_and_grad_fn, step_size, noise_scale)
        steps, _ = cycle.phase_counts(state.iteration, params.num_warmup, None)
        return SamplerState(
            state.iteration + 1,
            langevin,
            step_size.to(state.step_size.dtype).expand_as(state.step_size),  # no host sync on a GPU
            None,
            cycle.running_mean(state.mean_acceptance, info.acceptance_probability, steps),
            None,
        ), info

    def _mala(self, rng_key, state, potential_and_grad_fn, params):
        langevin, info = mala_step(rng_key, state.langevin, potential_and_grad_fn, state.step_size)
        acceptance = info.acceptance_probability
        adaptation, step_size = state.adaptation, state.step_size
        if self.adapt_step_size and state.iteration < params.num_warmup:
            signal = acceptance if self.per_chain_step_size else acceptance.mean() * torch.ones_like(acceptance)
            adaptation = dual_averaging_update(state.adaptation, params.target_accept_prob - signal)
            last_warmup = state.iteration == params.num_warmup - 1
            step_size = torch.exp(adaptation.log_step_size_average if last_warmup else adaptation.log_step_size)
        mala_count, _ = cycle.phase_counts(state.iteration, params.num_warmup, self.independence_every)
        return state._replace(
            iteration=state.iteration + 1, langevin=langevin, step_size=step_size, adaptation=adaptation,
            mean_acceptance=cycle.running_mean(state.mean_acceptance, acceptance, mala_count),
        ), info

    def _independence(self, rng_key, state, potential_and_grad_fn, params, proposal):
        # Step-size adaptation sees MALA steps only; warmup still ends on the averaged step.
        langevin, info = independence_step(rng_key, state.langevin, potential_and_grad_fn, proposal)
        step_size = state.step_size
        if self.adapt_step_size and state.iteration == params.num_warmup - 1:
            step_size = torch.exp(state.adaptation.log_step_size_average)
        _, independence_count = cycle.phase_counts(state.iteration, params.num_warmup, self.independence_every)
        # The adaptation state and the MALA steps' acceptance carry over unchanged.
        return state._replace(
            iteration=state.iteration + 1, langevin=langevin, step_size=step_size,
            mean_independence_acceptance=cycle.running_mean(
                state.mean_independence_acceptance, info.acceptance_probability, independence_count),
        ), info


def _schedule(iteration: int, params: LangevinParams) -> tuple[torch.Tensor, torch.Tensor]:
    """See :func:`ppl_ebm.kernels.samplers_jax._schedule`."""
    if params.decay_every <= 0:  # the common constant case costs no tensor op per step
        return params.step_size, params.noise_scale
    decays = iteration // params.decay_every
    return params.step_size * params.decay_rate**decays, params.noise_scale * params.noise_decay_rate**decays
