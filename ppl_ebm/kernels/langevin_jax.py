"""Batched ULA and MALA kernels, JAX core (mirrors :mod:`ppl_ebm.kernels.langevin_torch` name for name).

Pure functions over an explicit state holding every chain at once (``position`` is
``(chains, dim)``); ``rng_key`` comes first, as in BlackJAX. See the torch module for the maths.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ppl_ebm.targets.protocol import has_standard_normal_prior

__all__ = [
    "LangevinInfo", "LangevinState", "Proposal", "as_column", "batched_value_and_grad", "independence_step", "independence_log_ratio", "is_finite",
    "langevin_init",
    "mala_step", "precondition", "preconditioner", "Preconditioner", "prior_proposal", "standard_normal_proposal",
    "ula_step",
]

PotentialAndGrad = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


class LangevinState(NamedTuple):
    """See :class:`ppl_ebm.kernels.langevin_torch.LangevinState`."""

    position: jax.Array
    potential: jax.Array
    grad: jax.Array
    active: jax.Array
    nonfinite_count: jax.Array


class LangevinInfo(NamedTuple):
    """See :class:`ppl_ebm.kernels.langevin_torch.LangevinInfo`."""

    acceptance_probability: jax.Array
    accepted: jax.Array
    nonfinite: jax.Array


class Proposal(NamedTuple):
    """See :class:`ppl_ebm.kernels.langevin_torch.Proposal`."""

    sample: Callable[[jax.Array, tuple[int, ...], jnp.dtype], jax.Array]
    potential: Callable[[jax.Array], jax.Array]


def standard_normal_proposal() -> Proposal:
    """See :func:`ppl_ebm.kernels.langevin_torch.standard_normal_proposal`."""
    return Proposal(
        lambda rng_key, shape, dtype: jax.random.normal(rng_key, shape, dtype=dtype),
        lambda position: 0.5 * jnp.sum(position * position, axis=-1),
    )


def prior_proposal(target) -> Proposal | None:
    """See :func:`ppl_ebm.kernels.langevin_torch.prior_proposal`."""
    if has_standard_normal_prior(target):
        return None
    return Proposal(
        lambda rng_key, shape, dtype: target.prior_sample_unconstrained(rng_key, shape[0]).astype(dtype),
        target.prior_potential,
    )


class Preconditioner(NamedTuple):
    """See :class:`ppl_ebm.kernels.langevin_torch.Preconditioner`."""

    inverse_mass: jax.Array
    scale: jax.Array
    whiten: jax.Array


def preconditioner(inverse_mass: jax.Array) -> Preconditioner:
    """See :func:`ppl_ebm.kernels.langevin_torch.preconditioner`."""
    if inverse_mass.ndim == 2:
        scale = jnp.sqrt(inverse_mass)
        return Preconditioner(inverse_mass, scale, 1.0 / scale)
    scale = jnp.linalg.cholesky(inverse_mass)
    identity = jnp.broadcast_to(jnp.eye(inverse_mass.shape[-1], dtype=inverse_mass.dtype), scale.shape)
    return Preconditioner(inverse_mass, scale, jax.scipy.linalg.solve_triangular(scale, identity, lower=True))


def precondition(matrix: jax.Array | None, vector: jax.Array) -> jax.Array:
    """See :func:`ppl_ebm.kernels.langevin_torch.precondition`."""
    if matrix is None:
        return vector
    if matrix.ndim == vector.ndim:
        return matrix * vector
    return (matrix @ vector[..., None])[..., 0]


def batched_value_and_grad(potential_fn: Callable) -> Callable:
    """``(chains, dim) -> (U (chains,), grad U (chains, dim))`` from a batched potential: the
    gradient of the sum, since each chain's potential depends on its own row only."""

    def summed(position):
        per_chain = potential_fn(position)
        return jnp.sum(per_chain), per_chain

    def potential_and_grad(position):
        (_, potential), grad = jax.value_and_grad(summed, has_aux=True)(position)
        return potential, grad

    potential_and_grad.potential = potential_fn  # the potential alone (i-SIR needs no gradient)
    return potential_and_grad


def is_finite(potential: jax.Array, grad: jax.Array) -> jax.Array:
    return jnp.isfinite(potential) & jnp.all(jnp.isfinite(grad), axis=-1)


def as_column(value: float | jax.Array, position: jax.Array) -> jax.Array:
    # One value or one per chain, shaped (1, 1) or (chains, 1) to broadcast over (chains, dim).
    return jnp.reshape(jnp.asarray(value, dtype=position.dtype), (-1, 1))


def langevin_init(position: jax.Array, potential_and_grad_fn: PotentialAndGrad) -> LangevinState:
    """Evaluate the potential and gradient at the starting positions ``(chains, dim)``."""
    potential, grad = potential_and_grad_fn(position)
    finite = is_finite(potential, grad)
    return LangevinState(position, potential, grad, finite, (~finite).astype(jnp.int32))


def ula_step(
    rng_key: jax.Array,
    state: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    step_size: float | jax.Array,
    noise_scale: float | jax.Array,
    preconditioner: Preconditioner | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """See :func:`ppl_ebm.kernels.langevin_torch.ula_step`."""
    step = as_column(step_size, state.position)
    noise = jax.random.normal(rng_key, state.position.shape, dtype=state.position.dtype)
    scale, inverse = (None, None) if preconditioner is None else (preconditioner.scale, preconditioner.inverse_mass)
    proposal = (state.position - 0.5 * step * precondition(inverse, state.grad)
                + as_column(noise_scale, noise) * precondition(scale, noise))
    potential, grad = potential_and_grad_fn(proposal)
    finite = is_finite(potential, grad)
    move = state.active & finite
    newly_stopped = state.active & ~finite
    new_state = LangevinState(
        jnp.where(move[:, None], proposal, state.position),
        jnp.where(move, potential, state.potential),
        jnp.where(move[:, None], grad, state.grad),
        move,
        state.nonfinite_count + newly_stopped.astype(jnp.int32),
    )
    return new_state, LangevinInfo(jnp.ones_like(potential), move, newly_stopped)


def mala_step(
    rng_key: jax.Array,
    state: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    step_size: float | jax.Array,
    preconditioner: Preconditioner | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """See :func:`ppl_ebm.kernels.langevin_torch.mala_step`."""
    noise_key, accept_key = jax.random.split(rng_key)
    step = as_column(step_size, state.position)
    noise = jax.random.normal(noise_key, state.position.shape, dtype=state.position.dtype)
    inverse, scale, whiten = (None, None, None) if preconditioner is None else preconditioner
    proposal = state.position - 0.5 * step * precondition(inverse, state.grad) + jnp.sqrt(step) * precondition(scale, noise)
    potential, grad = potential_and_grad_fn(proposal)
    finite = is_finite(potential, grad)
    # log q(y|z) reduces to -|n|^2/2 because S^-1 (y - z + step/2 C grad U(z)) = sqrt(step) n.
    log_forward = -0.5 * jnp.sum(noise * noise, axis=-1)
    backward = precondition(whiten, state.position - proposal + 0.5 * step * precondition(inverse, grad))
    log_backward = -jnp.sum(backward * backward, axis=-1) / (2.0 * step[:, 0])
    log_ratio = state.potential - potential + log_backward - log_forward
    return _metropolis(accept_key, state, proposal, potential, grad, finite, log_ratio)


def independence_step(
    rng_key: jax.Array,
    state: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    proposal: Proposal | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """See :func:`ppl_ebm.kernels.langevin_torch.independence_step`."""
    proposal = standard_normal_proposal() if proposal is None else proposal
    proposal_key, accept_key = jax.random.split(rng_key)
    position = proposal.sample(proposal_key, state.position.shape, state.position.dtype)
    potential, grad = potential_and_grad_fn(position)
    finite = is_finite(potential, grad)
    log_ratio = independence_log_ratio(state, position, potential, proposal)
    return _metropolis(accept_key, state, position, potential, grad, finite, log_ratio)


def independence_log_ratio(
    state: LangevinState, position: jax.Array, potential: jax.Array, proposal: Proposal | None = None
) -> jax.Array:
    """See :func:`ppl_ebm.kernels.langevin_torch.independence_log_ratio`."""
    proposal = standard_normal_proposal() if proposal is None else proposal
    return state.potential - potential + proposal.potential(position) - proposal.potential(state.position)


def _metropolis(rng_key, state, proposal, potential, grad, finite, log_ratio) -> tuple[LangevinState, LangevinInfo]:
    """See :func:`ppl_ebm.kernels.langevin_torch._metropolis`."""
    log_ratio = jnp.where(finite, log_ratio, -jnp.inf)
    acceptance_probability = jnp.exp(jnp.minimum(log_ratio, 0.0))
    uniform = jax.random.uniform(rng_key, log_ratio.shape, dtype=log_ratio.dtype)
    accepted = uniform < acceptance_probability
    new_state = LangevinState(
        jnp.where(accepted[:, None], proposal, state.position),
        jnp.where(accepted, potential, state.potential),
        jnp.where(accepted[:, None], grad, state.grad),
        state.active,
        state.nonfinite_count + (~finite).astype(jnp.int32),
    )
    return new_state, LangevinInfo(acceptance_probability, accepted, ~finite)
