"""Batched ULA and MALA kernels, torch core (mirrored name for name in :mod:`langevin_jax`).

Pure functions over an explicit state holding every chain at once (``position`` is
``(chains, dim)``). ``potential_and_grad_fn(position) -> (potential (chains,), grad (chains, dim))``
returns the potential ``U = -log density`` of each chain and its gradient.

Both kernels use DDLS Eq. 4 / Alg. 1's parametrisation: a step of size ``eps`` moves by
``-eps/2 * grad U`` plus Gaussian noise of variance ``eps`` (MALA's proposal is exactly that
step; ULA may set the noise scale apart, as DDLS does with step 0.01 and noise std 0.1).
``independence_step`` proposes from N(0, I) instead: MALA interleaves it to jump between modes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from ppl_ebm.kernels import random_torch
from ppl_ebm.targets.protocol import has_standard_normal_prior

__all__ = [
    "LangevinInfo", "LangevinState", "Proposal", "as_column", "batched_value_and_grad", "independence_step", "independence_log_ratio", "is_finite",
    "langevin_init",
    "mala_step", "precondition", "preconditioner", "Preconditioner", "prior_proposal", "standard_normal_proposal",
    "ula_step",
]

PotentialAndGrad = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class LangevinState(NamedTuple):
    """State of a batch of Langevin chains.

    position (chains, dim); potential (chains,); grad (chains, dim) at ``position``;
    active (chains,) bool: False once ULA met a non-finite value (the chain then stays where
    it was); nonfinite_count (chains,) int: non-finite potentials or gradients met so far.
    """

    position: torch.Tensor
    potential: torch.Tensor
    grad: torch.Tensor
    active: torch.Tensor
    nonfinite_count: torch.Tensor


class LangevinInfo(NamedTuple):
    """Per-chain outcome of one step: MH acceptance probability (1 for ULA), whether the
    move was taken, and whether a non-finite value was met."""

    acceptance_probability: torch.Tensor
    accepted: torch.Tensor
    nonfinite: torch.Tensor


class Proposal(NamedTuple):
    """The law an independence step proposes from, in the space the chains move in:
    ``sample(rng, shape, dtype, device)`` draws positions, ``potential(position)`` is its
    ``-log density`` up to a constant (for a latent EBM, the prior in unconstrained space)."""

    sample: Callable[..., torch.Tensor]
    potential: Callable[[torch.Tensor], torch.Tensor]


def standard_normal_proposal() -> Proposal:
    """N(0, I): a latent EBM's default prior, and the PPL models' unconstrained default."""
    return Proposal(
        random_torch.normal,
        lambda position: 0.5 * (position * position).sum(-1),
    )


def prior_proposal(target) -> Proposal | None:
    """The law independence steps propose from for a target with a prior (a latent EBM): its
    prior in unconstrained space (``prior_sample_unconstrained``, weighed by ``prior_potential``);
    None (the kernels' default N(0, I)) when the prior is N(0, I) or the target has none."""
    if has_standard_normal_prior(target):
        return None
    return Proposal(
        lambda rng, shape, dtype, device: random_torch.draw_rows(
            rng, shape, lambda g, s: target.prior_sample_unconstrained(s[0], generator=g)).to(dtype=dtype, device=device),
        target.prior_potential,
    )


class Preconditioner(NamedTuple):
    """The inverse mass matrix ``C`` of preconditioned moves and its two factors: ``scale`` with
    ``scale scale^T = C`` (the noise's) and ``whiten = scale^-1`` (the Metropolis-Hastings
    densities'). Diagonal: ``(groups, dim)``; dense: ``(groups, dim, dim)`` (``scale`` the lower
    Cholesky factor); ``groups`` 1 (every chain shares it) or one per chain.
    Computed once per adaptation window, not per step."""

    inverse_mass: torch.Tensor
    scale: torch.Tensor
    whiten: torch.Tensor


def preconditioner(inverse_mass: torch.Tensor) -> Preconditioner:
    """The factors of ``inverse_mass`` (diagonal ``(groups, dim)`` or dense ``(groups, dim, dim)``)."""
    if inverse_mass.ndim == 2:
        scale = torch.sqrt(inverse_mass)
        return Preconditioner(inverse_mass, scale, 1.0 / scale)
    scale = torch.linalg.cholesky(inverse_mass)
    identity = torch.eye(inverse_mass.shape[-1], dtype=inverse_mass.dtype, device=inverse_mass.device)
    return Preconditioner(inverse_mass, scale, torch.linalg.solve_triangular(scale, identity.expand_as(scale),
                                                                             upper=False))


def precondition(matrix: torch.Tensor | None, vector: torch.Tensor) -> torch.Tensor:
    """``matrix @ vector`` per chain: ``vector`` (chains, dim), ``matrix`` a diagonal
    (groups, dim) or dense (groups, dim, dim); None: the identity (the unpreconditioned move,
    bit-equal to it)."""
    if matrix is None:
        return vector
    if matrix.ndim == vector.ndim:
        return matrix * vector
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def batched_value_and_grad(potential_fn: Callable) -> Callable:
    """See :func:`ppl_ebm.kernels.langevin_jax.batched_value_and_grad`."""

    def potential_and_grad(position):
        with torch.enable_grad():
            position = position.detach().requires_grad_(True)
            potential = potential_fn(position)
            (grad,) = torch.autograd.grad(potential.sum(), position)
        return potential.detach(), grad

    potential_and_grad.potential = potential_fn  # the potential alone (i-SIR needs no gradient)
    return potential_and_grad


def is_finite(potential: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(potential) & torch.isfinite(grad).all(dim=-1)


def as_column(value: float | torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    # One value or one per chain, shaped (1, 1) or (chains, 1) to broadcast over (chains, dim).
    return torch.as_tensor(value, dtype=position.dtype, device=position.device).reshape(-1, 1)


def langevin_init(position: torch.Tensor, potential_and_grad_fn: PotentialAndGrad) -> LangevinState:
    """Evaluate the potential and gradient at the starting positions ``(chains, dim)``."""
    potential, grad = potential_and_grad_fn(position)
    finite = is_finite(potential, grad)
    return LangevinState(
        position, potential, grad, finite, (~finite).to(torch.int64)
    )


def ula_step(
    rng: torch.Generator | None,
    state: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    step_size: float | torch.Tensor,
    noise_scale: float | torch.Tensor,
    preconditioner: Preconditioner | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """One unadjusted Langevin step (DDLS Alg. 1): ``z - step/2 * grad U(z) + noise_scale * n``.

    A chain whose new potential or gradient is not finite stays at its last finite position
    and is marked inactive for the rest of the run; its count in ``nonfinite_count`` grows by one.
    With a ``preconditioner`` (inverse mass ``C = S S^T``) the move is
    ``z - step/2 * C grad U(z) + noise_scale * S n``.
    """
    step = as_column(step_size, state.position)
    noise = random_torch.normal(rng, state.position.shape, state.position.dtype, state.position.device)
    scale, inverse = (None, None) if preconditioner is None else (preconditioner.scale, preconditioner.inverse_mass)
    proposal = (state.position - 0.5 * step * precondition(inverse, state.grad)
                + as_column(noise_scale, noise) * precondition(scale, noise))
    potential, grad = potential_and_grad_fn(proposal)
    finite = is_finite(potential, grad)
    move = state.active & finite
    newly_stopped = state.active & ~finite
    new_state = LangevinState(
        torch.where(move.unsqueeze(-1), proposal, state.position),
        torch.where(move, potential, state.potential),
        torch.where(move.unsqueeze(-1), grad, state.grad),
        move,
        state.nonfinite_count + newly_stopped.to(torch.int64),
    )
    return new_state, LangevinInfo(torch.ones_like(potential), move, newly_stopped)


def mala_step(
    rng: torch.Generator | None,
    state: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    step_size: float | torch.Tensor,
    preconditioner: Preconditioner | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """One Metropolis-adjusted Langevin step with per-chain accept/reject.

    Proposal ``y = z - step/2 * grad U(z) + sqrt(step) n``; acceptance
    ``min(1, exp(U(z) - U(y) + log q(z | y) - log q(y | z)))`` with
    ``log q(y | z) = -|y - z + step/2 grad U(z)|^2 / (2 step)``. A non-finite proposal is rejected.

    With a ``preconditioner`` (inverse mass ``C = S S^T``, :class:`Preconditioner`) the proposal
    is ``y = z - step/2 * C grad U(z) + sqrt(step) S n``, i.e. q = N(z - step/2 C grad U(z), step C),
    and ``log q(y | z) = -|S^-1 (y - z + step/2 C grad U(z))|^2 / (2 step)`` (its normalising
    constant, the same both ways, cancels). Every coordinate then moves on its own scale.
    """
    step = as_column(step_size, state.position)
    noise = random_torch.normal(rng, state.position.shape, state.position.dtype, state.position.device)
    inverse, scale, whiten = (None, None, None) if preconditioner is None else preconditioner
    proposal = state.position - 0.5 * step * precondition(inverse, state.grad) + torch.sqrt(step) * precondition(scale, noise)
    potential, grad = potential_and_grad_fn(proposal)
    finite = is_finite(potential, grad)
    # log q(y|z) reduces to -|n|^2/2 because S^-1 (y - z + step/2 C grad U(z)) = sqrt(step) n.
    log_forward = -0.5 * (noise * noise).sum(-1)
    backward = precondition(whiten, state.position - proposal + 0.5 * step * precondition(inverse, grad))
    log_backward = -(backward * backward).sum(-1) / (2.0 * step[:, 0])
    log_ratio = state.potential - potential + log_backward - log_forward
    return _metropolis(rng, state, proposal, potential, grad, finite, log_ratio)


def independence_step(
    rng: torch.Generator | None,
    state: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    proposal: Proposal | None = None,
) -> tuple[LangevinState, LangevinInfo]:
    """One independence Metropolis-Hastings step proposing ``y ~ q`` for every chain
    (``proposal``; default N(0, I)).

    For a latent EBM whose ``q`` is its prior ``p0`` the acceptance
    ``min(1, exp(U(z) - U(y) + Q(y) - Q(z)))`` (``Q = -log q``) is ``min(1, exp(d(G(y)) - d(G(z))))``:
    MH-GAN's move in latent space. It jumps between modes that Langevin steps cannot cross;
    its acceptance is the overlap of the target with q, so it suits targets near the prior.
    """
    proposal = standard_normal_proposal() if proposal is None else proposal
    position = proposal.sample(rng, state.position.shape, state.position.dtype, state.position.device)
    potential, grad = potential_and_grad_fn(position)
    finite = is_finite(potential, grad)
    log_ratio = independence_log_ratio(state, position, potential, proposal)
    return _metropolis(rng, state, position, potential, grad, finite, log_ratio)


def independence_log_ratio(
    state: LangevinState, position: torch.Tensor, potential: torch.Tensor, proposal: Proposal | None = None
) -> torch.Tensor:
    """``U(z) - U(y) + Q(y) - Q(z)`` with ``Q`` the proposal's potential (its normalising
    constant cancels); the coupled independence step uses it too, so its marginals are this kernel."""
    proposal = standard_normal_proposal() if proposal is None else proposal
    return state.potential - potential + proposal.potential(position) - proposal.potential(state.position)


def _metropolis(rng, state, proposal, potential, grad, finite, log_ratio) -> tuple[LangevinState, LangevinInfo]:
    """Accept each chain's proposal with probability ``min(1, exp(log_ratio))``; a non-finite
    proposal is rejected and counted."""
    log_ratio = torch.where(finite, log_ratio, torch.full_like(log_ratio, -torch.inf))
    acceptance_probability = torch.exp(torch.clamp(log_ratio, max=0.0))
    uniform = random_torch.uniform(rng, log_ratio.shape, log_ratio.dtype, log_ratio.device)
    accepted = uniform < acceptance_probability
    new_state = LangevinState(
        torch.where(accepted.unsqueeze(-1), proposal, state.position),
        torch.where(accepted, potential, state.potential),
        torch.where(accepted.unsqueeze(-1), grad, state.grad),
        state.active,
        state.nonfinite_count + (~finite).to(torch.int64),
    )
    return new_state, LangevinInfo(acceptance_probability, accepted, ~finite)
