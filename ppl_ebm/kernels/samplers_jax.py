"""ULA and MALA as pure sampler kernels, JAX core (mirrors :mod:`ppl_ebm.kernels.samplers_torch`).

A sampler kernel is ``step(rng_key, state, potential_and_grad_fn, params, proposal) -> (state,
info)`` over every chain at once, as BlackJAX's ``build_kernel()``:

- ``params`` (:class:`LangevinParams`) are *traced* arrays: step size, noise, decay, target
  acceptance and the warmup length. One compiled program serves every value (the seven-step
  ULA sweep of ``ppl-ebm compare`` compiles once), and a training loop may call the kernel
  inside its own ``jit``.
- The sampler itself (:class:`LangevinSampler`: which sampler, the independence cycle, which
  adaptation) is the program's *structure*: a hashable tuple of plain values.
- Adaptation (:mod:`ppl_ebm.kernels.adaptation.step_size`: an ``(init, update, final)`` triple
  chosen by name) and the cycle (:func:`ppl_ebm.kernels.cycle.cycle_kernel`) are separate pieces
  the step composes; only the warmup gating of the adaptation (:func:`_warmup_adapt`) is
  written here, once. The single moves are :mod:`ppl_ebm.kernels.langevin_jax`.

The state carries the iteration count, so warmup (adaptation on, per-phase running means)
and sampling are one kernel; a driver continuing a run passes the final state back in.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ppl_ebm.kernels import cycle
from ppl_ebm.kernels.adaptation.step_size import StepSizeAdaptation, step_size_adaptation
from ppl_ebm.kernels.langevin_jax import (
    LangevinInfo, LangevinState, PotentialAndGrad, Proposal, independence_step, langevin_init, mala_step,
    standard_normal_proposal, ula_step,
)

__all__ = ["LangevinParams", "LangevinSampler", "SamplerState", "langevin_params"]


class LangevinParams(NamedTuple):
    """Traced hyper-parameters (see :func:`ppl_ebm.kernels.samplers_torch.langevin_params`)."""

    step_size: jax.Array
    noise_scale: jax.Array
    decay_rate: jax.Array
    decay_every: jax.Array
    noise_decay_rate: jax.Array
    target_accept_prob: jax.Array
    num_warmup: jax.Array


def langevin_params(options: dict, num_warmup: int) -> LangevinParams:
    """Arrays of the validated options (:mod:`ppl_ebm.kernels.registry` fills the defaults)."""
    from ppl_ebm.kernels.registry import langevin_param_values

    values = langevin_param_values(options, num_warmup)
    return LangevinParams(*(jnp.asarray(value, dtype=jnp.int32 if isinstance(value, int) else jnp.float32)
                            for value in values))


class SamplerState(NamedTuple):
    """iteration (warmup included); langevin: positions, potentials, gradients; step_size
    (chains,) used by the last step; adaptation: the step-size adaptation's state (MALA with
    ``step_size_adaptation`` set; dual averaging by default) or None; mean_acceptance
    (chains,) over the current phase's Langevin steps; mean_independence_acceptance (chains,)
    over its independence steps (``independence_every``), else None."""

    iteration: jax.Array
    langevin: LangevinState
    step_size: jax.Array
    adaptation: Any
    mean_acceptance: jax.Array
    mean_independence_acceptance: jax.Array | None

    @property
    def position(self) -> jax.Array:
        return self.langevin.position


class LangevinSampler(NamedTuple):
    """The structure of a Langevin sampler; its methods are the pure kernel.

    name: ``"ula"`` or ``"mala"``; independence_every: None or k >= 2 (every k-th step an
    independence Metropolis-Hastings step from ``proposal``); step_size_adaptation: MALA's
    warmup adaptation towards ``params.target_accept_prob``, by name
    (:data:`ppl_ebm.kernels.adaptation.step_size.ADAPTATIONS`; None: a fixed step);
    per_chain_step_size: one adapted step per chain, or one shared by all chains.
    A name, not the functions: this tuple is the key of compiled programs.
    """

    name: str
    independence_every: int | None = None
    step_size_adaptation: str | None = "dual_averaging"
    per_chain_step_size: bool = True

    def adaptation(self, params: LangevinParams) -> StepSizeAdaptation | None:
        """The ``(init, update, final)`` triple for ``params``; None for ULA or a fixed step."""
        if self.name == "ula":
            return None
        return step_size_adaptation(self.step_size_adaptation, params.target_accept_prob, self.per_chain_step_size)

    def init(self, position: jax.Array, potential_and_grad_fn: PotentialAndGrad, params: LangevinParams) -> SamplerState:
        """Evaluate the potential at ``position`` (chains, dim); the steps start at ``params.step_size``."""
        langevin = langevin_init(position, potential_and_grad_fn)
        step = jnp.broadcast_to(params.step_size.astype(position.dtype), position.shape[:1])
        if self.name == "ula":
            return SamplerState(jnp.array(0), langevin, step, None, jnp.ones_like(step), None)
        independence = None if self.independence_every is None else jnp.zeros_like(step)
        adaptation = self.adaptation(params)
        adaptation_state = None if adaptation is None else adaptation.init(jnp.log(step))
        return SamplerState(jnp.array(0), langevin, step, adaptation_state, jnp.zeros_like(step), independence)

    def step(
        self,
        rng_key: jax.Array,
        state: SamplerState,
        potential_and_grad_fn: PotentialAndGrad,
        params: LangevinParams,
        proposal: Proposal | None = None,
    ) -> tuple[SamplerState, LangevinInfo]:
        """One transition of every chain (ULA, MALA, or the cycle's independence step)."""
        if self.name == "ula":
            return self._ula(rng_key, state, potential_and_grad_fn, params)
        proposal = standard_normal_proposal() if proposal is None else proposal
        # Both branches compile; lax.cond runs one per iteration.
        kernel = cycle.cycle_kernel(
            jax.lax.cond,
            self.independence_every,
            lambda s: self._mala(rng_key, s, potential_and_grad_fn, params),
            lambda s: self._independence(rng_key, s, potential_and_grad_fn, params, proposal),
        )
        return kernel(state.iteration, state)

    def _ula(self, rng_key, state, potential_and_grad_fn, params):
        step_size, noise_scale = _schedule(state.iteration, params)
        langevin, info = ula_step(rng_key, state.langevin, potential_and_grad_fn, step_size, noise_scale)
        return SamplerState(
            state.iteration + 1,
            langevin,
            jnp.full_like(state.step_size, step_size),
            None,
            # ULA accepts every move: its running mean of ones stays the ones it starts at,
            # so it costs no tensor op per step (a bare loop has none either).
            state.mean_acceptance,
            None,
        ), info

    def _mala(self, rng_key, state, potential_and_grad_fn, params):
        langevin, info = mala_step(rng_key, state.langevin, potential_and_grad_fn, state.step_size)
        acceptance = info.acceptance_probability
        adaptation, step_size = _warmup_adapt(self.adaptation(params), state, params, acceptance)
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
    acceptance: jax.Array | None,
) -> tuple[Any, jax.Array]:
    """The adaptation state and step size after step ``state.iteration``: the warmup gating.

    While ``iteration < num_warmup`` the state is updated with ``acceptance`` (None: a step the
    adaptation does not see, such as an independence step) and the next step is its
    ``log_step_size``; at the last warmup step the step becomes ``final`` (the dual-averaging
    average, as NumPyro and Stan end warmup). Afterwards both carry over. ``adaptation`` None:
    a fixed step. The iteration is traced, so ``jnp.where`` selects (mirrors the torch ``if``).
    """
    if adaptation is None:
        return state.adaptation, state.step_size
    last_warmup = state.iteration == params.num_warmup - 1
    if acceptance is None:
        return state.adaptation, jnp.where(last_warmup, jnp.exp(adaptation.final(state.adaptation)), state.step_size)
    updated = adaptation.update(state.adaptation, acceptance)
    warming = state.iteration < params.num_warmup
    adaptation_state = jax.tree.map(lambda new, old: jnp.where(warming, new, old), updated, state.adaptation)
    step_size = jnp.where(
        warming,
        jnp.exp(jnp.where(last_warmup, adaptation.final(updated), updated.log_step_size)),
        state.step_size,
    )
    return adaptation_state, step_size


def _schedule(iteration: jax.Array, params: LangevinParams) -> tuple[jax.Array, jax.Array]:
    """ULA's (step size, noise scale) at ``iteration`` (DDLS App. B.2; see
    :class:`ppl_ebm.kernels.adaptation.step_schedule.StepSchedule`); ``decay_every`` 0 = constant."""
    decays = jnp.where(params.decay_every > 0, iteration // jnp.maximum(params.decay_every, 1), 0)
    return params.step_size * params.decay_rate**decays, params.noise_scale * params.noise_decay_rate**decays
