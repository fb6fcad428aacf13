"""ULA and MALA as pure sampler kernels, torch core (mirrored name for name in
:mod:`ppl_ebm.kernels.samplers_jax`; see there for the design).

``params`` are tensors here: nothing compiles, and one set of Python code serves every value.
The iteration count is a Python int, so plain branches replace ``jnp.where`` (the warmup gating
of the adaptation) and ``jax.lax.cond`` (:func:`ppl_ebm.kernels.cycle.python_cond`); ``rng_key`` is a
``torch.Generator`` (or None: torch's global generator, which ``pyro.set_rng_seed`` seeds).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from ppl_ebm.kernels import cross_chain_torch, cycle
from ppl_ebm.kernels.adaptation.mass_matrix import (
    MassState, WelfordState, pooled, regularised_covariance, step_rescale, welford_init, window_flags,
)
from ppl_ebm.kernels.adaptation.step_size import StepSizeAdaptation, step_size_adaptation
from ppl_ebm.kernels.langevin_torch import (
    LangevinInfo, LangevinState, PotentialAndGrad, Proposal, independence_step, langevin_init, mala_step,
    preconditioner, standard_normal_proposal, ula_step,
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
    adaptation: Any
    mean_acceptance: torch.Tensor
    mean_independence_acceptance: torch.Tensor | None
    mass: MassState | None = None

    @property
    def position(self) -> torch.Tensor:
        return self.langevin.position


class LangevinSampler(NamedTuple):
    """See :class:`ppl_ebm.kernels.samplers_jax.LangevinSampler`.

    ``num_chains`` matters here: under ``torchrun`` each rank steps its own block of the chains,
    so the positions it is given do not say whether the run pools one mass matrix (a block of 20
    of 40 chains, or a block of one chain of 3, which holds one group as the pooled matrix does).
    A multi-rank run must give the run's total (``sample()`` does); :meth:`mass_init` refuses to
    guess. Carried by the sampler, not the state nor a collective: the decision is structure, as
    in JAX (a Python bool, the same on every rank with no all-reduce; the checkpointed state is
    unchanged), and ``init`` may be given the whole run's positions (``sample()`` cuts the
    initial state into blocks, :func:`ppl_ebm.drivers.run_torch.chain_block`) or a rank's
    block, so counting chains there, even all-reduced, would not give the total both ways.
    """

    name: str
    independence_every: int | None = None
    step_size_adaptation: str | None = "dual_averaging"
    per_chain_step_size: bool = True
    mass_matrix: str = "none"
    num_chains: int | None = None

    def adaptation(self, params: LangevinParams) -> StepSizeAdaptation | None:
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.adaptation`."""
        if self.name == "ula":
            return None
        return step_size_adaptation(self.step_size_adaptation, params.target_accept_prob, self.per_chain_step_size)

    def init(self, position: torch.Tensor, potential_and_grad_fn: PotentialAndGrad,
             params: LangevinParams) -> SamplerState:
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.init`."""
        langevin = langevin_init(position, potential_and_grad_fn)
        step = params.step_size.to(dtype=position.dtype, device=position.device).expand(position.shape[:1]).clone()
        mass = self.mass_init(position)
        if self.name == "ula":
            return SamplerState(0, langevin, step, None, torch.ones_like(step), None, mass)
        independence = None if self.independence_every is None else torch.zeros_like(step)
        adaptation = self.adaptation(params)
        adaptation_state = None if adaptation is None else adaptation.init(torch.log(step))
        return SamplerState(0, langevin, step, adaptation_state, torch.zeros_like(step), independence, mass)

    def mass_init(self, position: torch.Tensor) -> MassState | None:
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.mass_init`."""
        if self.mass_matrix == "none":
            return None
        if self.num_chains is None and cross_chain_torch.distributed():
            raise ValueError("Under torchrun, a sampler with a mass matrix needs the run's number of chains over "
                             "all ranks (LangevinSampler.num_chains) to decide whether the matrix is pooled; "
                             "sample() sets it.")
        dim = position.shape[1]
        groups = 1 if self.pooled_mass(position.shape[0]) else position.shape[0]
        zeros = position.new_zeros((groups, dim))
        if self.mass_matrix == "diag":
            return MassState(preconditioner(torch.ones_like(zeros)), welford_init(zeros, zeros.clone()))
        eye = torch.eye(dim, dtype=position.dtype, device=position.device).expand(groups, dim, dim).clone()
        return MassState(preconditioner(eye), welford_init(zeros, torch.zeros_like(eye)))

    def pooled_mass(self, chains: int) -> bool:
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.pooled_mass`."""
        return pooled(chains if self.num_chains is None else self.num_chains)

    def with_num_chains(self, num_chains: int) -> "LangevinSampler":
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.with_num_chains`."""
        return self._replace(num_chains=num_chains)

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
            state, info = self._ula(rng_key, state, potential_and_grad_fn, params)
            return self.adapt_mass(state, params), info
        proposal = standard_normal_proposal() if proposal is None else proposal
        kernel = cycle.cycle_kernel(
            cycle.python_cond,
            self.independence_every,
            lambda s: self._mala(rng_key, s, potential_and_grad_fn, params),
            lambda s: self._independence(rng_key, s, potential_and_grad_fn, params, proposal),
        )
        state, info = kernel(state.iteration, state)
        return self.adapt_mass(state, params), info

    def adapt_mass(self, state: SamplerState, params: LangevinParams) -> SamplerState:
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.adapt_mass`; the iteration is an
        int, so nothing is computed outside the windows."""
        if state.mass is None or state.iteration > params.num_warmup:
            return state
        collecting, closing = window_flags(state.iteration, params.num_warmup)
        if not collecting:
            return state
        position = state.langevin.position
        welford = cross_chain_torch.pooled_welford_update(state.mass.welford, position,
                                                          self.pooled_mass(position.shape[0]))
        if not closing:
            return state._replace(mass=state.mass._replace(welford=welford))
        diagonal = welford.m2.ndim == 2
        identity = torch.ones_like(welford.mean) if diagonal else torch.eye(
            welford.mean.shape[-1], dtype=welford.mean.dtype, device=welford.mean.device)
        mass = MassState(preconditioner(regularised_covariance(welford, identity)),
                         WelfordState(welford.count * 0.0, torch.zeros_like(welford.mean), torch.zeros_like(welford.m2)))
        return _restart_step_size(self.adaptation(params), state._replace(mass=mass),
                                  self._rescale(state.mass, mass, identity))

    def _rescale(self, old: MassState, new: MassState, identity):
        """See :meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler._rescale`."""
        if self.step_size_adaptation != "cross_chain":
            return None
        return step_rescale(old.preconditioner.inverse_mass, new.preconditioner.inverse_mass, identity)

    def _ula(self, rng_key, state, potential_and_grad_fn, params):
        step_size, noise_scale = _schedule(state.iteration, params)
        langevin, info = ula_step(rng_key, state.langevin, potential_and_grad_fn, step_size, noise_scale,
                                  _preconditioner(state))
        return SamplerState(
            state.iteration + 1,
            langevin,
            step_size.to(state.step_size.dtype).expand_as(state.step_size),  # no host sync on a GPU
            None,
            # ULA accepts every move: its running mean of ones stays the ones it starts at,
            # so it costs no tensor op per step (a bare loop has none either).
            state.mean_acceptance,
            None,
            state.mass,
        ), info

    def _mala(self, rng_key, state, potential_and_grad_fn, params):
        langevin, info = mala_step(rng_key, state.langevin, potential_and_grad_fn, state.step_size,
                                   _preconditioner(state))
        acceptance = info.acceptance_probability
        # A shared step's mean acceptance is an all-reduce across ranks, read only by warmup's
        # adaptation: skipped otherwise, so ranks resumed at different sampling steps (or with a
        # fixed step) wait on no collective.
        adapting = self.step_size_adaptation is not None and state.iteration < params.num_warmup
        shared = cross_chain_torch.mean_acceptance(acceptance) if adapting and not self.per_chain_step_size \
            else acceptance
        adaptation, step_size = _warmup_adapt(self.adaptation(params), state, params, shared)
        mala_count, _ = cycle.phase_counts(state.iteration, params.num_warmup, self.independence_every)
        return state._replace(
            iteration=state.iteration + 1, langevin=langevin, step_size=step_size, adaptation=adaptation,
            mean_acceptance=cycle.running_mean(state.mean_acceptance, acceptance, mala_count),
        ), info

    def _independence(self, rng_key, state, potential_and_grad_fn, params, proposal):
        # Step-size adaptation sees MALA steps only; warmup still ends on the averaged step.
        langevin, info = independence_step(rng_key, state.langevin, potential_and_grad_fn, proposal)
        _, step_size = _warmup_adapt(self.adaptation(params), state, params, None)
        _, independence_count = cycle.phase_counts(state.iteration, params.num_warmup, self.independence_every)
        # The adaptation state and the MALA steps' acceptance carry over unchanged.
        return state._replace(
            iteration=state.iteration + 1, langevin=langevin, step_size=step_size,
            mean_independence_acceptance=cycle.running_mean(
                state.mean_independence_acceptance, info.acceptance_probability, independence_count),
        ), info


def _warmup_adapt(
    adaptation: StepSizeAdaptation | None,
    state: SamplerState,
    params: LangevinParams,
    acceptance: torch.Tensor | None,
) -> tuple[Any, torch.Tensor]:
    """See :func:`ppl_ebm.kernels.samplers_jax._warmup_adapt`; the iteration is an int, so
    ``if`` selects and nothing is computed after warmup."""
    if adaptation is None or state.iteration >= params.num_warmup:
        return state.adaptation, state.step_size
    adaptation_state, step_size = state.adaptation, state.step_size
    if acceptance is not None:
        adaptation_state = adaptation.update(adaptation_state, acceptance)
    if state.iteration == params.num_warmup - 1:
        step_size = torch.exp(adaptation.final(adaptation_state))
    elif acceptance is not None:
        step_size = torch.exp(adaptation_state.log_step_size)
    return adaptation_state, step_size


def _preconditioner(state: SamplerState):
    """The moves' preconditioner; None: unpreconditioned (``mass_matrix="none"``)."""
    return None if state.mass is None else state.mass.preconditioner


def _restart_step_size(adaptation: StepSizeAdaptation | None, state: SamplerState,
                       factor: torch.Tensor | None = None) -> SamplerState:
    """See :func:`ppl_ebm.kernels.samplers_jax._restart_step_size`."""
    if adaptation is None:
        return state
    step_size = torch.exp(adaptation.final(state.adaptation))
    step_size = step_size if factor is None else step_size * factor
    return state._replace(step_size=step_size, adaptation=adaptation.init(torch.log(step_size)))


def _schedule(iteration: int, params: LangevinParams) -> tuple[torch.Tensor, torch.Tensor]:
    """See :func:`ppl_ebm.kernels.samplers_jax._schedule`."""
    if params.decay_every <= 0:  # the common constant case costs no tensor op per step
        return params.step_size, params.noise_scale
    decays = iteration // params.decay_every
    return params.step_size * params.decay_rate**decays, params.noise_scale * params.noise_decay_rate**decays
