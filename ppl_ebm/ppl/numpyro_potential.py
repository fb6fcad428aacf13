"""A NumPyro model as a batched potential over many chains (mirrors :mod:`pyro_potential`).

NumPyro's ``initialize_model`` gives one chain's potential on unconstrained values (with the
log-Jacobians); ``jax.vmap`` over the flattened values evaluates every chain in one pass.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import initialize_model

__all__ = ["BatchedPotential", "batched_potential_from_model", "initial_positions"]


class BatchedPotential(NamedTuple):
    """See :class:`ppl_ebm.ppl.pyro_potential.BatchedPotential`; ``constrain`` here also returns
    the model's deterministic sites (NumPyro's ``postprocess_fn``)."""

    potential: Callable[[jax.Array], jax.Array]
    potential_and_grad: Callable[[jax.Array], tuple[jax.Array, jax.Array]]
    site_shapes: dict[str, tuple[int, ...]]
    constrain: Callable[[jax.Array], dict[str, jax.Array]]
    transforms: dict[str, Any]

    @property
    def dim(self) -> int:
        return sum(math.prod(shape) for shape in self.site_shapes.values())

    # The Target protocol (ppl_ebm.targets.protocol) besides potential and potential_and_grad.
    def initial_positions(self, num_chains: int, rng_key: jax.Array):
        """See :func:`initial_positions`."""
        return initial_positions(self, num_chains, rng_key)

    def sites(self, position):
        """The model's sites in their support (``constrain``)."""
        return self.constrain(position)


def batched_potential_from_model(
    model: Callable,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    rng_key: jax.Array | None = None,
) -> BatchedPotential:
    """Build the batched potential ``U = -log p(z, data)`` of a NumPyro model's latent sites."""
    model_kwargs = {} if model_kwargs is None else model_kwargs
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    params_info, potential_fn, postprocess_fn, _ = initialize_model(
        rng_key, model, model_args=model_args, model_kwargs=model_kwargs
    )
    prototype = params_info.z
    if not prototype:
        raise ValueError("The NumPyro model has no continuous latent sample site to sample.")
    _, unravel = ravel_pytree(prototype)
    site_shapes = {name: tuple(jnp.shape(value)) for name, value in sorted(prototype.items())}

    def single_chain(flat: jax.Array) -> jax.Array:
        return potential_fn(unravel(flat))

    # Jitted: evaluated eagerly (the starting points' check below, a user's call), a vmapped
    # value-and-grad dispatches op by op and compiles each op apart, ~2.4 s for a 3-d Normal on
    # 2 cores; one program is a fraction of that. Inside the kernels' programs it is inlined.
    batched_value_and_grad = jax.jit(jax.vmap(jax.value_and_grad(single_chain)))

    def constrain(flat: jax.Array) -> dict[str, jax.Array]:
        batch_shape = flat.shape[:-1]
        flat2d = flat.reshape(-1, flat.shape[-1])
        values = jax.vmap(lambda row: postprocess_fn(unravel(row)))(flat2d)
        return {name: value.reshape(*batch_shape, *value.shape[1:]) for name, value in values.items()}

    return BatchedPotential(jax.jit(jax.vmap(single_chain)), batched_value_and_grad, site_shapes, constrain, {})


def initial_positions(
    batched: BatchedPotential, num_chains: int, rng_key: jax.Array, radius: float = 2.0
) -> jax.Array:
    """Uniform(-radius, radius) in unconstrained space, as NumPyro's ``init_to_uniform``;
    chains whose potential is not finite are drawn again (up to 100 times)."""
    shape = (num_chains, batched.dim)
    position = _uniform(rng_key, shape, radius)
    for attempt in range(100):
        bad = _bad_rows(batched.potential_and_grad, position)
        if not bool(jnp.any(bad)):
            return position
        fresh = _uniform(jax.random.fold_in(rng_key, attempt + 1), shape, radius)
        position = jnp.where(bad[:, None], fresh, position)
    raise ValueError(
        "Could not find finite starting points for every chain in 100 tries; pass initial_params."
    )


# Jitted for the same reason as the potential above: eager, each op compiles apart.
@partial(jax.jit, static_argnums=(1,))
def _uniform(rng_key: jax.Array, shape: tuple[int, int], radius: float) -> jax.Array:
    return jax.random.uniform(rng_key, shape, minval=-radius, maxval=radius)


@partial(jax.jit, static_argnums=(0,))
def _bad_rows(potential_and_grad: Callable, position: jax.Array) -> jax.Array:
    potential, grad = potential_and_grad(position)
    return ~(jnp.isfinite(potential) & jnp.all(jnp.isfinite(grad), axis=-1))
