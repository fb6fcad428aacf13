"""A Pyro model as a batched potential over many chains (mirrored in :mod:`numpyro_potential`).

Pyro runs one chain per kernel; our kernels hold every chain in one ``(chains, dim)`` tensor.
To evaluate a general Pyro model for all chains in one pass we run it under an outer
``pyro.plate`` over chains, one dimension left of the model's own plates (Pyro's
``vectorize_particles`` trick), condition it on each chain's constrained values, and sum the
log-probabilities per chain. Latent sites are mapped to unconstrained space as Pyro's
HMC does (``biject_to(support)``), including the log-Jacobian.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer.mcmc.util import _guess_max_plate_nesting, initialize_model

__all__ = ["BatchedPotential", "batched_potential_from_model", "initial_positions", "unravel_sites"]

_CHAIN_PLATE = "_ppl_ebm_chains"


class BatchedPotential(NamedTuple):
    """What a batched kernel needs from a model.

    potential (chains, dim) -> (chains,) and potential_and_grad (chains, dim) -> ((chains,), (chains, dim)) in unconstrained space;
    site_shapes: name -> unconstrained shape of one chain's value, in flattening order;
    constrain: flat (..., dim) -> dict of constrained values (..., *site shape);
    transforms: name -> constrained-to-unconstrained transform (as Pyro's ``MCMC`` expects).
    """

    potential: Callable[[torch.Tensor], torch.Tensor]
    potential_and_grad: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    site_shapes: dict[str, tuple[int, ...]]
    constrain: Callable[[torch.Tensor], dict[str, torch.Tensor]]
    transforms: dict[str, Any]

    @property
    def dim(self) -> int:
        return sum(math.prod(shape) for shape in self.site_shapes.values())

    # The Target protocol (ppl_ebm.targets.protocol) besides potential and potential_and_grad.
    def initial_positions(self, num_chains: int, rng: torch.Generator | None = None):
        """See :func:`initial_positions`."""
        return initial_positions(self, num_chains, rng)

    def sites(self, position):
        """The model's sites in their support (``constrain``)."""
        return self.constrain(position)


def unravel_sites(flat: torch.Tensor, site_shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    values, start = {}, 0
    for name, shape in site_shapes.items():
        size = math.prod(shape)
        values[name] = flat[..., start : start + size].reshape(*flat.shape[:-1], *shape)
        start += size
    return values


def _per_chain_sum(value: torch.Tensor, num_chains: int, chain_dim: int) -> torch.Tensor:
    if value.ndim >= -chain_dim and value.shape[chain_dim] == num_chains:
        return value.movedim(chain_dim, 0).reshape(num_chains, -1).sum(-1)
    # A term without the chain dimension is shared by every chain.
    return value.sum().expand(num_chains)


def batched_potential_from_model(
    model: Callable, model_args: tuple = (), model_kwargs: dict | None = None
) -> BatchedPotential:
    """Build the batched potential ``U = -log p(z, data)`` of a Pyro model's latent sites.

    Raises a ValueError when the model has no continuous latent site.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    _, _, transforms, prototype_trace = initialize_model(model, model_args, model_kwargs)
    max_plate_nesting = _guess_max_plate_nesting(model, model_args, model_kwargs)
    chain_dim = -max_plate_nesting - 1
    site_shapes, batch_ndims = {}, {}
    for name in sorted(transforms):
        site = prototype_trace.nodes[name]
        unconstrained = transforms[name](site["value"].detach())
        site_shapes[name] = tuple(unconstrained.shape)
        batch_ndims[name] = len(site["fn"].batch_shape)
    if not site_shapes:
        raise ValueError("The Pyro model has no continuous latent sample site to sample.")

    def constrain(flat: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: transforms[name].inv(value) for name, value in unravel_sites(flat, site_shapes).items()}

    def potential(flat: torch.Tensor) -> torch.Tensor:
        num_chains = flat.shape[0]
        unconstrained = unravel_sites(flat, site_shapes)
        log_density = flat.new_zeros(num_chains)
        conditioned = {}
        for name, value in unconstrained.items():
            inverse = transforms[name].inv
            constrained = inverse(value)
            log_jacobian = inverse.log_abs_det_jacobian(value, constrained)
            log_density = log_density + log_jacobian.reshape(num_chains, -1).sum(-1)
            # The chain axis sits left of the model's plates; missing batch axes become 1s.
            padding = (1,) * (max_plate_nesting - batch_ndims[name])
            conditioned[name] = constrained.reshape(num_chains, *padding, *constrained.shape[1:])
        with pyro.plate(_CHAIN_PLATE, num_chains, dim=chain_dim):
            trace = poutine.trace(poutine.condition(model, data=conditioned)).get_trace(
                *model_args, **model_kwargs
            )
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] == "sample" and "log_prob" in site:
                log_density = log_density + _per_chain_sum(site["log_prob"], num_chains, chain_dim)
        return -log_density

    def potential_and_grad(flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            flat = flat.detach().requires_grad_(True)
            value = potential(flat)
            (grad,) = torch.autograd.grad(value.sum(), flat)
        return value.detach(), grad

    return BatchedPotential(potential, potential_and_grad, site_shapes, constrain, transforms)


def initial_positions(
    batched: BatchedPotential, num_chains: int, rng: torch.Generator | None = None, radius: float = 2.0
) -> torch.Tensor:
    """Uniform(-radius, radius) in unconstrained space, as Pyro's ``init_to_uniform``;
    chains whose potential is not finite are drawn again (up to 100 times)."""
    position = (torch.rand(num_chains, batched.dim, generator=rng) * 2 - 1) * radius
    for _ in range(100):
        potential, grad = batched.potential_and_grad(position)
        bad = ~(torch.isfinite(potential) & torch.isfinite(grad).all(-1))
        if not bool(bad.any()):
            return position
        fresh = (torch.rand(int(bad.sum()), batched.dim, generator=rng) * 2 - 1) * radius
        position[bad] = fresh
    raise ValueError(
        "Could not find finite starting points for every chain in 100 tries; pass initial_params."
    )
