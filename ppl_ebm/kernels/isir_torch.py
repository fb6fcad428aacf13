"""i-SIR and Ex2MCMC as pure sampler kernels, torch core (mirrored name for name in
:mod:`ppl_ebm.kernels.isir_jax`; see there for the design).

As in :mod:`ppl_ebm.kernels.samplers_torch`, ``rng_key`` is a ``torch.Generator`` (or None:
torch's global generator) and the iteration is a Python int, so the cycle branches in Python.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ppl_ebm.kernels import cycle, random_torch
from ppl_ebm.kernels.langevin_torch import (
    LangevinInfo, LangevinState, PotentialAndGrad, Proposal, is_finite, standard_normal_proposal,
)
from ppl_ebm.kernels.registry import step_adaptation
from ppl_ebm.kernels.samplers_torch import LangevinParams, LangevinSampler, SamplerState, _warmup_adapt

__all__ = ["ISIRSampler", "build", "draw", "isir_init", "isir_step", "potential_only"]


def potential_only(potential_and_grad_fn: PotentialAndGrad):
    """See :func:`ppl_ebm.kernels.isir_jax.potential_only`; here the fallback does compute the
    gradient it throws away (nothing compiles it out), so pass a function with ``.potential``."""
    potential = getattr(potential_and_grad_fn, "potential", None)
    return potential if potential is not None else (lambda position: potential_and_grad_fn(position)[0])


def draw(proposal: Proposal, rng, shape: tuple[int, ...], dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """See :func:`ppl_ebm.kernels.isir_jax.draw`."""
    both = getattr(proposal, "sample_with_potential", None)
    if both is not None:
        return both(rng, shape, dtype, device)
    fresh = proposal.sample(rng, shape, dtype, device)
    return fresh, proposal.potential(fresh)


def isir_init(position: torch.Tensor, potential_fn) -> LangevinState:
    """See :func:`ppl_ebm.kernels.isir_jax.isir_init`."""
    with torch.no_grad():
        potential = potential_fn(position)
    finite = torch.isfinite(potential)
    return LangevinState(position, potential, torch.zeros_like(position), finite, (~finite).to(torch.int64))


def isir_step(
    rng: torch.Generator | None,
    state: LangevinState,
    potential_fn,
    num_particles: int,
    proposal: Proposal | None = None,
    potential_and_grad_fn: PotentialAndGrad | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """See :func:`ppl_ebm.kernels.isir_jax.isir_step`."""
    proposal = standard_normal_proposal() if proposal is None else proposal
    chains, dim = state.position.shape
    fresh, fresh_proposal = draw(proposal, rng, (chains * (num_particles - 1), dim), state.position.dtype,
                                 state.position.device)
    with torch.no_grad():
        fresh_potential = potential_fn(fresh)
    log_weight = fresh_proposal - fresh_potential
    log_weight = torch.where(torch.isfinite(log_weight), log_weight, torch.full_like(log_weight, -torch.inf))
    current = proposal.potential(state.position) - state.potential
    current = torch.where(torch.isfinite(current), current, torch.full_like(current, -torch.inf))
    log_weights = torch.cat([current[:, None], log_weight.reshape(chains, num_particles - 1)], dim=1)
    # The categorical draw by inverse CDF on max-shifted weights: exp and cumsum only (torch's
    # log and logsumexp on these small tensors are ~50x slower when 2 threads share 2 busy cores).
    top = log_weights.max(dim=1, keepdim=True).values
    weights = torch.exp(log_weights - torch.where(torch.isfinite(top), top, torch.zeros_like(top)))
    cumulative = torch.cumsum(weights, dim=1)
    total = cumulative[:, -1]
    uniform = random_torch.uniform(rng, total.shape, total.dtype, total.device)
    index = (cumulative <= (uniform * total)[:, None]).sum(1).clamp_max(num_particles - 1)
    index = torch.where(total > 0, index, torch.zeros_like(index))  # no finite weight at all: stay
    positions = torch.cat([state.position[:, None], fresh.reshape(chains, num_particles - 1, dim)], dim=1)
    potentials = torch.cat([state.potential[:, None], fresh_potential.reshape(chains, num_particles - 1)], dim=1)
    rows = torch.arange(chains, device=index.device)
    position, potential = positions[rows, index], potentials[rows, index]
    moved = index != 0
    acceptance_probability = torch.where(total > 0, 1.0 - weights[:, 0] / total, torch.zeros_like(total))
    nonfinite = (~torch.isfinite(fresh_potential)).reshape(chains, num_particles - 1).sum(1)
    grad, count = state.grad, state.nonfinite_count + nonfinite
    if potential_and_grad_fn is not None:
        new_potential, new_grad = potential_and_grad_fn(position)
        finite = is_finite(new_potential, new_grad)
        grad = torch.where(moved[:, None], new_grad, state.grad)
        count = count + (moved & ~finite).to(count.dtype)
    new_state = LangevinState(position, potential, grad, state.active, count)
    return new_state, LangevinInfo(acceptance_probability, moved, nonfinite > 0)


class ISIRSampler(NamedTuple):
    """See :class:`ppl_ebm.kernels.isir_jax.ISIRSampler`."""

    name: str
    num_particles: int
    mala_steps: int | None = None
    step_size_adaptation: str | None = "dual_averaging"
    per_chain_step_size: bool = True
    mass_matrix: str = "none"  # Ex2MCMC's MALA steps' preconditioning; i-SIR's proposal keeps its law
    num_chains: int | None = None  # the run's, for the MALA steps' mass matrix (LangevinSampler's)

    @property
    def every(self) -> int | None:
        return None if self.mala_steps is None else self.mala_steps + 1

    def local(self) -> LangevinSampler:
        """See :meth:`ppl_ebm.kernels.isir_jax.ISIRSampler.local`."""
        return LangevinSampler("mala", self.every, self.step_size_adaptation, self.per_chain_step_size,
                               self.mass_matrix, self.num_chains)

    def pooled_mass(self, chains: int) -> bool:
        """See :meth:`ppl_ebm.kernels.isir_jax.ISIRSampler.pooled_mass`."""
        return self.local().pooled_mass(chains)

    def with_num_chains(self, num_chains: int) -> "ISIRSampler":
        """See :meth:`ppl_ebm.kernels.isir_jax.ISIRSampler.with_num_chains`."""
        return self._replace(num_chains=num_chains)

    def evaluations(self, iteration: int) -> tuple[int, int]:
        """See :meth:`ppl_ebm.kernels.isir_jax.ISIRSampler.evaluations`."""
        extra = self.num_particles - 1
        if self.mala_steps is None:
            return 0, 1 + iteration * extra
        gradients = 1 + iteration  # the start, each MALA step, each i-SIR step's kept particle
        return gradients, gradients + iteration // self.every * extra

    def init(self, position: torch.Tensor, potential_and_grad_fn: PotentialAndGrad,
             params: LangevinParams) -> SamplerState:
        """See :meth:`ppl_ebm.kernels.isir_jax.ISIRSampler.init`."""
        if self.mala_steps is not None:
            return self.local().init(position, potential_and_grad_fn, params)
        langevin = isir_init(position, potential_only(potential_and_grad_fn))
        step = torch.full(position.shape[:1], math.nan, dtype=position.dtype, device=position.device)
        return SamplerState(0, langevin, step, None, torch.zeros_like(step), None)

    def step(
        self,
        rng_key: torch.Generator | None,
        state: SamplerState,
        potential_and_grad_fn: PotentialAndGrad,
        params: LangevinParams,
        proposal: Proposal | None = None,
    ) -> tuple[SamplerState, LangevinInfo]:
        """See :meth:`ppl_ebm.kernels.isir_jax.ISIRSampler.step`."""
        proposal = standard_normal_proposal() if proposal is None else proposal
        if self.mala_steps is None:
            return self._isir(rng_key, state, potential_and_grad_fn, params, proposal)
        return self.cycle_step(rng_key, state, potential_and_grad_fn, params,
                               lambda s: self._global(rng_key, s, potential_and_grad_fn, params, proposal))

    def cycle_step(self, rng_key, state, potential_and_grad_fn, params, global_step):
        """See :meth:`ppl_ebm.kernels.isir_jax.ISIRSampler.cycle_step`."""
        local = self.local()
        kernel = cycle.cycle_kernel(
            cycle.python_cond,
            self.every,
            lambda s: local._mala(rng_key, s, potential_and_grad_fn, params),
            global_step,
        )
        state, info = kernel(state.iteration, state)
        return local.adapt_mass(state, params), info

    def _isir(self, rng_key, state, potential_and_grad_fn, params, proposal):
        langevin, info = isir_step(rng_key, state.langevin, potential_only(potential_and_grad_fn),
                                   self.num_particles, proposal)
        count, _ = cycle.phase_counts(state.iteration, params.num_warmup, None)
        return state._replace(
            iteration=state.iteration + 1, langevin=langevin,
            mean_acceptance=cycle.running_mean(state.mean_acceptance, info.acceptance_probability, count),
        ), info

    def _global(self, rng_key, state, potential_and_grad_fn, params, proposal):
        langevin, info = isir_step(rng_key, state.langevin, potential_only(potential_and_grad_fn),
                                   self.num_particles, proposal, potential_and_grad_fn)
        _, step_size = _warmup_adapt(self.local().adaptation(params), state, params, None)
        _, count = cycle.phase_counts(state.iteration, params.num_warmup, self.every)
        return state._replace(
            iteration=state.iteration + 1, langevin=langevin, step_size=step_size,
            mean_independence_acceptance=cycle.running_mean(
                state.mean_independence_acceptance, info.acceptance_probability, count),
        ), info


def build(kernel: str, options: dict) -> ISIRSampler:
    """See :func:`ppl_ebm.kernels.isir_jax.build`."""
    if kernel == "isir":
        return ISIRSampler("isir", options["num_particles"])
    return ISIRSampler(
        kernel, options["num_particles"], options["mala_steps"], *step_adaptation(options),
        options.get("mass_matrix", "none"),
    )
