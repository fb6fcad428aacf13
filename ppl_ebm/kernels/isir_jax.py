"""i-SIR and Ex2MCMC as pure sampler kernels, JAX core (mirrors :mod:`ppl_ebm.kernels.isir_torch`).

Samsonov, Lagutin, Gabrié, Durmus, Naumov, Moulines (2022), "Local-Global MCMC kernels: the
best of both worlds" (NeurIPS):

- **i-SIR** (iterated sampling-importance resampling, their Alg. 1): particle 0 is the chain's
  state, particles 1..N-1 are fresh draws from an independence proposal ``q`` (the latent
  prior in u, as :func:`ppl_ebm.kernels.langevin_jax.independence_step`); each is weighed
  ``w_i = exp(-U(x_i)) / q(x_i)`` (in log space: ``Q(x_i) - U(x_i)``, ``Q = -log q``), and the
  next state is particle ``i`` drawn with probability ``w_i / sum_j w_j``. It leaves the target
  invariant for any N >= 2 (N = 2 is the independence sampler with Barker's acceptance) and
  needs potentials only, no gradient.
- **Ex2MCMC** (their Alg. 2): every i-SIR step is followed by ``k`` MALA steps, the package's
  MALA with its per-chain dual-averaging step size during warmup. It is run as the cycle of
  :mod:`ppl_ebm.kernels.cycle` with period ``k + 1`` (``k`` MALA steps, then the i-SIR step),
  exactly as ``mala-imh`` runs MALA with independence steps: one draw per step, adaptation
  seeing the MALA steps only, warmup ending on the averaged step. Its MALA steps are
  preconditioned like MALA's (``mass_matrix``, default ``"diag"``, adapted from every step's
  positions); the i-SIR proposal keeps its own law.

Batched over chains *and* particles: the ``chains x (N - 1)`` proposals are one
``(chains * (N - 1), dim)`` batch, one call of the potential. Only the potential is needed
(:func:`potential_only`); Ex2MCMC then takes one gradient at the kept particle, which the next
MALA step needs. :meth:`ISIRSampler.evaluations` counts both honestly for the stats.

The state is :class:`ppl_ebm.kernels.samplers_jax.SamplerState`, so the drivers, checkpoints and
PPL faces serve these samplers unchanged. i-SIR alone keeps no gradient (``grad`` zeros) and no
step (``step_size`` NaN); its ``mean_acceptance`` is the probability that a fresh particle is
kept, ``1 - w_0 / sum_j w_j`` (its mean is the fraction of steps that move, with less noise,
as MALA's is its mean Metropolis-Hastings probability). Ex2MCMC's ``mean_acceptance`` is its
MALA steps' and ``mean_independence_acceptance`` its i-SIR steps'.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl_ebm.kernels import cycle
from ppl_ebm.kernels.langevin_jax import (
    LangevinInfo, LangevinState, PotentialAndGrad, Proposal, is_finite, standard_normal_proposal,
)
from ppl_ebm.kernels.registry import step_adaptation
from ppl_ebm.kernels.samplers_jax import LangevinParams, LangevinSampler, SamplerState, _warmup_adapt

__all__ = ["ISIRSampler", "build", "draw", "isir_init", "isir_step", "potential_only"]


def potential_only(potential_and_grad_fn: PotentialAndGrad):
    """The potential alone: ``potential_and_grad_fn.potential`` where given (the drivers'
    :func:`~ppl_ebm.kernels.langevin_jax.batched_value_and_grad` sets it), else the first output
    of ``potential_and_grad_fn`` (under ``jit`` the unused gradient is compiled away)."""
    potential = getattr(potential_and_grad_fn, "potential", None)
    return potential if potential is not None else (lambda position: potential_and_grad_fn(position)[0])


def draw(proposal: Proposal, rng_key: jax.Array, shape: tuple[int, ...], dtype) -> tuple[jax.Array, jax.Array]:
    """Draws from ``proposal`` and its potential at them. A proposal with
    ``sample_with_potential`` gives both from one pass (a flow's density at its own draws is a
    by-product of drawing them, while scoring any other point inverts it:
    :mod:`ppl_ebm.kernels.flex2mcmc_jax`); otherwise ``potential`` scores the draws."""
    both = getattr(proposal, "sample_with_potential", None)
    if both is not None:
        return both(rng_key, shape, dtype)
    fresh = proposal.sample(rng_key, shape, dtype)
    return fresh, proposal.potential(fresh)


def isir_init(position: jax.Array, potential_fn) -> LangevinState:
    """Potentials at the starting positions ``(chains, dim)``; no gradient (zeros)."""
    potential = potential_fn(position)
    finite = jnp.isfinite(potential)
    return LangevinState(position, potential, jnp.zeros_like(position), finite, (~finite).astype(jnp.int32))


def isir_step(
    rng_key: jax.Array,
    state: LangevinState,
    potential_fn,
    num_particles: int,
    proposal: Proposal | None = None,
    potential_and_grad_fn: PotentialAndGrad | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """One i-SIR step of every chain with ``num_particles`` particles (the state and
    ``num_particles - 1`` draws from ``proposal``; default N(0, I)).

    A particle whose weight is not finite gets weight 0 and is counted in ``nonfinite_count``.
    With ``potential_and_grad_fn`` (Ex2MCMC) the gradient at the kept particle is evaluated for
    the MALA steps that follow (a non-finite one is counted; those steps then reject). Returns
    the new state and, per chain, ``1 - w_0 / sum w`` (``acceptance_probability``), whether a
    fresh particle was kept (``accepted``) and whether any particle was not finite.
    """
    proposal = standard_normal_proposal() if proposal is None else proposal
    proposal_key, choice_key = jax.random.split(rng_key)
    chains, dim = state.position.shape
    fresh, fresh_proposal = draw(proposal, proposal_key, (chains * (num_particles - 1), dim), state.position.dtype)
    fresh_potential = potential_fn(fresh)
    log_weight = fresh_proposal - fresh_potential
    log_weight = jnp.where(jnp.isfinite(log_weight), log_weight, -jnp.inf)
    current = proposal.potential(state.position) - state.potential
    current = jnp.where(jnp.isfinite(current), current, -jnp.inf)
    log_weights = jnp.concatenate([current[:, None], log_weight.reshape(chains, num_particles - 1)], axis=1)
    index = jax.random.categorical(choice_key, log_weights, axis=1)  # Gumbel-max, as the torch mirror
    positions = jnp.concatenate([state.position[:, None], fresh.reshape(chains, num_particles - 1, dim)], axis=1)
    potentials = jnp.concatenate([state.potential[:, None], fresh_potential.reshape(chains, num_particles - 1)],
                                 axis=1)
    position = jnp.take_along_axis(positions, index[:, None, None], axis=1)[:, 0]
    potential = jnp.take_along_axis(potentials, index[:, None], axis=1)[:, 0]
    moved = index != 0
    stay = jnp.exp(current - jax.scipy.special.logsumexp(log_weights, axis=1))
    acceptance_probability = jnp.nan_to_num(1.0 - stay, nan=0.0)
    nonfinite = jnp.sum(~jnp.isfinite(fresh_potential).reshape(chains, num_particles - 1), axis=1)
    grad, count = state.grad, state.nonfinite_count + nonfinite.astype(state.nonfinite_count.dtype)
    if potential_and_grad_fn is not None:
        new_potential, new_grad = potential_and_grad_fn(position)
        finite = is_finite(new_potential, new_grad)
        grad = jnp.where(moved[:, None], new_grad, state.grad)
        count = count + (moved & ~finite).astype(count.dtype)
    new_state = LangevinState(position, potential, grad, state.active, count)
    return new_state, LangevinInfo(acceptance_probability, moved, nonfinite > 0)


class ISIRSampler(NamedTuple):
    """The structure of an i-SIR or Ex2MCMC sampler; its methods are the pure kernel.

    name: ``"isir"`` or ``"ex2mcmc"``; num_particles: N >= 2 (the state and N - 1 proposals);
    mala_steps: None (i-SIR alone) or k >= 1 MALA steps after each i-SIR step (Ex2MCMC);
    step_size_adaptation, per_chain_step_size: those MALA steps' adaptation, as
    :class:`ppl_ebm.kernels.samplers_jax.LangevinSampler`. A tuple of plain values: the key of
    compiled programs.
    """

    name: str
    num_particles: int
    mala_steps: int | None = None
    step_size_adaptation: str | None = "dual_averaging"
    per_chain_step_size: bool = True
    mass_matrix: str = "none"  # Ex2MCMC's MALA steps' preconditioning; i-SIR's proposal keeps its law
    num_chains: int | None = None  # the run's, for the MALA steps' mass matrix (LangevinSampler's)

    @property
    def every(self) -> int | None:
        """The cycle's period ``k + 1`` (Ex2MCMC), or None (i-SIR alone)."""
        return None if self.mala_steps is None else self.mala_steps + 1

    def local(self) -> LangevinSampler:
        """Ex2MCMC's MALA: the package's, on the cycle of period ``k + 1`` (its running means
        and warmup gating count the MALA steps of that cycle)."""
        return LangevinSampler("mala", self.every, self.step_size_adaptation, self.per_chain_step_size,
                               self.mass_matrix, self.num_chains)

    def pooled_mass(self, chains: int) -> bool:
        """Whether the MALA steps' mass matrix pools every chain of the run
        (:meth:`ppl_ebm.kernels.samplers_jax.LangevinSampler.pooled_mass`)."""
        return self.local().pooled_mass(chains)

    def with_num_chains(self, num_chains: int) -> "ISIRSampler":
        """This sampler for a run of ``num_chains`` chains (its MALA steps' mass matrix reads it)."""
        return self._replace(num_chains=num_chains)

    def evaluations(self, iteration: int) -> tuple[int, int]:
        """``(gradients, potentials)`` per chain after ``iteration`` steps, the start included.
        i-SIR: no gradient, ``1 + iteration (N - 1)`` potentials. Ex2MCMC: a gradient (with its
        potential) at the start, per MALA step and per i-SIR step's kept particle, plus
        ``N - 1`` potentials per i-SIR step."""
        extra = self.num_particles - 1
        if self.mala_steps is None:
            return 0, 1 + iteration * extra
        gradients = 1 + iteration  # the start, each MALA step, each i-SIR step's kept particle
        return gradients, gradients + iteration // self.every * extra

    def init(self, position: jax.Array, potential_and_grad_fn: PotentialAndGrad, params: LangevinParams) -> SamplerState:
        """Evaluate the start ``(chains, dim)``: potentials (i-SIR) or potentials and gradients."""
        if self.mala_steps is not None:
            return self.local().init(position, potential_and_grad_fn, params)
        langevin = isir_init(position, potential_only(potential_and_grad_fn))
        step = jnp.full(position.shape[:1], jnp.nan, dtype=position.dtype)
        return SamplerState(jnp.array(0), langevin, step, None, jnp.zeros_like(step), None)

    def step(
        self,
        rng_key: jax.Array,
        state: SamplerState,
        potential_and_grad_fn: PotentialAndGrad,
        params: LangevinParams,
        proposal: Proposal | None = None,
    ) -> tuple[SamplerState, LangevinInfo]:
        """One transition of every chain: an i-SIR step, or (Ex2MCMC) the cycle's MALA or i-SIR step."""
        proposal = standard_normal_proposal() if proposal is None else proposal
        if self.mala_steps is None:
            return self._isir(rng_key, state, potential_and_grad_fn, params, proposal)
        return self.cycle_step(rng_key, state, potential_and_grad_fn, params,
                               lambda s: self._global(rng_key, s, potential_and_grad_fn, params, proposal))

    def cycle_step(self, rng_key, state, potential_and_grad_fn, params, global_step):
        """Ex2MCMC's transition: the cycle's MALA step or ``global_step(state) -> (state, info)``
        (the i-SIR step; FlEx2MCMC's proposes from its flow), then the mass-matrix windows."""
        local = self.local()
        kernel = cycle.cycle_kernel(
            jax.lax.cond,
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
        # As MALA's independence step: the adaptation does not see it, warmup still ends on the average.
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
    """The sampler of the registry's ``"isir"`` or ``"ex2mcmc"`` entry from its validated options."""
    if kernel == "isir":
        return ISIRSampler("isir", options["num_particles"])
    return ISIRSampler(
        kernel, options["num_particles"], options["mala_steps"], *step_adaptation(options),
        options.get("mass_matrix", "none"),
    )
