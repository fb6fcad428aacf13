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
from ppl_ebm.kernels.adaptation.mass_matrix import (
    MassState, WelfordState, pooled, regularised_covariance, step_rescale, welford_init, welford_update, window_flags,
)
from ppl_ebm.kernels.adaptation.step_size import StepSizeAdaptation, step_size_adaptation
from ppl_ebm.kernels.langevin_jax import (
    LangevinInfo, LangevinState, PotentialAndGrad, Proposal, independence_step, langevin_init, mala_step,
    preconditioner, standard_normal_proposal, ula_step,
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
    over its independence steps (``independence_every``), else None; mass: the preconditioning
    (:class:`~ppl_ebm.kernels.adaptation.mass_matrix.MassState`: the inverse mass matrix the
    moves use and the current warmup window's moments), None without one."""

    iteration: jax.Array
    langevin: LangevinState
    step_size: jax.Array
    adaptation: Any
    mean_acceptance: jax.Array
    mean_independence_acceptance: jax.Array | None
    mass: MassState | None = None

    @property
    def position(self) -> jax.Array:
        return self.langevin.position


class LangevinSampler(NamedTuple):
    """The structure of a Langevin sampler; its methods are the pure kernel.

    name: ``"ula"`` or ``"mala"``; independence_every: None or k >= 2 (every k-th step an
    independence Metropolis-Hastings step from ``proposal``); step_size_adaptation: MALA's
    warmup adaptation towards ``params.target_accept_prob``, by name
    (:data:`ppl_ebm.kernels.adaptation.step_size.ADAPTATIONS`; None: a fixed step);
    per_chain_step_size: one adapted step per chain, or one shared by all chains;
    mass_matrix: ``"none"``, ``"diag"`` or ``"dense"``, the inverse mass matrix of preconditioned
    moves adapted in warmup (:mod:`ppl_ebm.kernels.adaptation.mass_matrix`);
    num_chains: the run's number of chains, which decides whether that matrix is pooled over
    chains (:meth:`pooled_mass`); None: as many as the positions ``init`` and ``step`` are given
    (here always: the chains array is global, sharded over processes; torch's ranks each hold a
    block, see :class:`ppl_ebm.kernels.samplers_torch.LangevinSampler`).
    A name, not the functions: this tuple is the key of compiled programs.
    """

    name: str
    independence_every: int | None = None
    step_size_adaptation: str | None = "dual_averaging"
    per_chain_step_size: bool = True
    mass_matrix: str = "none"
    num_chains: int | None = None

    def adaptation(self, params: LangevinParams) -> StepSizeAdaptation | None:
        """The ``(init, update, final)`` triple for ``params``; None for ULA or a fixed step."""
        if self.name == "ula":
            return None
        return step_size_adaptation(self.step_size_adaptation, params.target_accept_prob, self.per_chain_step_size)

    def init(self, position: jax.Array, potential_and_grad_fn: PotentialAndGrad, params: LangevinParams) -> SamplerState:
        """Evaluate the potential at ``position`` (chains, dim); the steps start at ``params.step_size``."""
        langevin = langevin_init(position, potential_and_grad_fn)
        step = jnp.broadcast_to(params.step_size.astype(position.dtype), position.shape[:1])
        mass = self.mass_init(position)
        if self.name == "ula":
            return SamplerState(jnp.array(0), langevin, step, None, jnp.ones_like(step), None, mass)
        independence = None if self.independence_every is None else jnp.zeros_like(step)
        adaptation = self.adaptation(params)
        adaptation_state = None if adaptation is None else adaptation.init(jnp.log(step))
        return SamplerState(jnp.array(0), langevin, step, adaptation_state, jnp.zeros_like(step), independence, mass)

    def mass_init(self, position: jax.Array) -> MassState | None:
        """The identity as the first inverse mass matrix and an empty window; None for
        ``mass_matrix="none"``. One matrix shared by all chains when they are many enough to pool
        (:meth:`pooled_mass`), else one per chain."""
        if self.mass_matrix == "none":
            return None
        dim = position.shape[1]
        groups = 1 if self.pooled_mass(position.shape[0]) else position.shape[0]
        zeros = jnp.zeros((groups, dim), dtype=position.dtype)
        if self.mass_matrix == "diag":
            return MassState(preconditioner(jnp.ones_like(zeros)), welford_init(zeros, zeros))
        eye = jnp.broadcast_to(jnp.eye(dim, dtype=position.dtype), (groups, dim, dim))
        return MassState(preconditioner(eye), welford_init(zeros, jnp.zeros_like(eye)))

    def pooled_mass(self, chains: int) -> bool:
        """Whether the mass matrix pools every chain of the run
        (:func:`~ppl_ebm.kernels.adaptation.mass_matrix.pooled`): of ``num_chains`` chains, or of
        ``chains`` (the positions' count) when it is None. A Python bool, read at trace time."""
        return pooled(chains if self.num_chains is None else self.num_chains)

    def with_num_chains(self, num_chains: int) -> "LangevinSampler":
        """This sampler for a run of ``num_chains`` chains (:meth:`pooled_mass` reads it)."""
        return self._replace(num_chains=num_chains)

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
            state, info = self._ula(rng_key, state, potential_and_grad_fn, params)
            return self.adapt_mass(state, params), info
        proposal = standard_normal_proposal() if proposal is None else proposal
        # Both branches compile; lax.cond runs one per iteration.
        kernel = cycle.cycle_kernel(
            jax.lax.cond,
            self.independence_every,
            lambda s: self._mala(rng_key, s, potential_and_grad_fn, params),
            lambda s: self._independence(rng_key, s, potential_and_grad_fn, params, proposal),
        )
        state, info = kernel(state.iteration, state)
        return self.adapt_mass(state, params), info

    def adapt_mass(self, state: SamplerState, params: LangevinParams) -> SamplerState:
        """After a step (of any kind: the positions are all draws of the target): add them to the
        window's moments while a window is open; at its end make the window's regularised
        covariance the new inverse mass matrix, empty the window and restart the step-size dual
        averaging (:func:`_restart_step_size`). ``lax.cond`` keeps the per-step cost to the
        window test after warmup and the factorisation to the window ends."""
        if state.mass is None:
            return state
        collecting, closing = window_flags(state.iteration, params.num_warmup)

        def collect(current: SamplerState) -> SamplerState:
            position = current.langevin.position
            welford = welford_update(current.mass.welford, position, self.pooled_mass(position.shape[0]))
            return current._replace(mass=current.mass._replace(welford=welford))

        def close(current: SamplerState) -> SamplerState:
            welford = current.mass.welford
            diagonal = welford.m2.ndim == 2
            identity = jnp.ones_like(welford.mean) if diagonal else jnp.eye(welford.mean.shape[-1], dtype=welford.mean.dtype)
            mass = MassState(preconditioner(regularised_covariance(welford, identity)),
                             WelfordState(welford.count * 0.0, jnp.zeros_like(welford.mean), jnp.zeros_like(welford.m2)))
            return _restart_step_size(self.adaptation(params), current._replace(mass=mass),
                                      self._rescale(current.mass, mass, identity))

        state = jax.lax.cond(collecting, collect, lambda current: current, state)
        return jax.lax.cond(closing, close, lambda current: current, state)

    def _rescale(self, old: MassState, new: MassState, identity):
        """The step's factor when the inverse mass matrix changes from ``old`` to ``new``
        (:func:`~ppl_ebm.kernels.adaptation.mass_matrix.step_rescale`) for the cross-chain
        scheme, whose short warmups have no steps to re-find it; None (the step carries over, as
        before) for dual averaging, which has the steps and whose runs stay as they were."""
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
            jnp.full_like(state.step_size, step_size),
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
    a fixed step. The iteration is traced, so a ``lax.cond`` and ``jnp.where`` select (mirror the
    torch ``if``).
    """
    if adaptation is None:
        return state.adaptation, state.step_size
    last_warmup = state.iteration == params.num_warmup - 1
    if acceptance is None:
        return state.adaptation, jnp.where(last_warmup, jnp.exp(adaptation.final(state.adaptation)), state.step_size)
    warming = state.iteration < params.num_warmup
    # A branch, not a select: a shared step's update takes the mean acceptance over all chains, a
    # collective across processes, which sampling must not make (processes resumed at different
    # sampling steps would pair it with other steps' or wait forever; the torch kernel's ``if``).
    updated = jax.lax.cond(warming, lambda: adaptation.update(state.adaptation, acceptance),
                           lambda: state.adaptation)
    step_size = jnp.where(
        warming,
        jnp.exp(jnp.where(last_warmup, adaptation.final(updated), updated.log_step_size)),
        state.step_size,
    )
    return updated, step_size


def _preconditioner(state: SamplerState):
    """The moves' preconditioner; None: unpreconditioned (``mass_matrix="none"``)."""
    return None if state.mass is None else state.mass.preconditioner


def _restart_step_size(adaptation: StepSizeAdaptation | None, state: SamplerState,
                       factor: jax.Array | None = None) -> SamplerState:
    """A new inverse mass matrix changes what a step means: restart the adaptation from the step
    it averaged so far (as Stan restarts it at each window's end), times ``factor`` (the
    cross-chain scheme's :meth:`LangevinSampler._rescale`); ULA and a fixed step keep theirs."""
    if adaptation is None:
        return state
    step_size = jnp.exp(adaptation.final(state.adaptation))
    step_size = step_size if factor is None else step_size * factor
    return state._replace(step_size=step_size, adaptation=adaptation.init(jnp.log(step_size)))


def _schedule(iteration: jax.Array, params: LangevinParams) -> tuple[jax.Array, jax.Array]:
    """ULA's (step size, noise scale) at ``iteration`` (DDLS App. B.2; see
    :class:`ppl_ebm.kernels.adaptation.step_schedule.StepSchedule`); ``decay_every`` 0 = constant."""
    decays = jnp.where(params.decay_every > 0, iteration // jnp.maximum(params.decay_every, 1), 0)
    return params.step_size * params.decay_rate**decays, params.noise_scale * params.noise_decay_rate**decays
