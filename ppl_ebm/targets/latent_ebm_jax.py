"""The latent energy-based model in JAX, mirroring :mod:`ppl_ebm.targets.latent_ebm` name for name.

Built from a torch :class:`~ppl_ebm.targets.latent_ebm.LatentEBM` by translating both networks with
:func:`ppl_ebm.nets.torch_to_jax.torch_to_jax`, so NumPyro samples a torch checkpoint with the
same weights. The object is a JAX pytree whose leaves are the weights: passing it as a
``jit`` argument keeps the weights out of the compiled program's constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["LatentEBMJax", "critic_output_to_log_tilt"]


def critic_output_to_log_tilt(output: jax.Array, critic_output: str) -> jax.Array:
    """Mirror of :func:`ppl_ebm.targets.latent_ebm.critic_output_to_log_tilt`."""
    if critic_output == "logit":
        return output
    if critic_output == "energy":
        return -output
    finfo = jnp.finfo(output.dtype)
    probability = jnp.clip(output, finfo.tiny, 1.0 - finfo.eps)
    return jnp.log(probability) - jnp.log1p(-probability)


@jax.tree_util.register_pytree_node_class
class LatentEBMJax:
    """JAX latent EBM ``p(z) ∝ exp(-U(z) / T)``; see :class:`ppl_ebm.targets.latent_ebm.LatentEBM`."""

    def __init__(
        self,
        generator_fn: Callable[[Any, jax.Array], jax.Array],
        generator_params: Any,
        critic_fn: Callable[[Any, jax.Array], jax.Array],
        critic_params: Any,
        *,
        critic_output: str,
        base_latent_dim: int,
        data_shape: tuple[int, ...],
        temperature: float = 1.0,
        extended_noise_scale: float | None = None,
    ) -> None:
        self.generator_fn = generator_fn
        self.generator_params = generator_params
        self.critic_fn = critic_fn
        self.critic_params = critic_params
        self.critic_output = critic_output
        self.base_latent_dim = int(base_latent_dim)
        self.data_shape = tuple(data_shape)
        self.data_size = math.prod(self.data_shape)
        self.temperature = float(temperature)
        self.extended_noise_scale = extended_noise_scale
        self.latent_dim = self.base_latent_dim + (
            self.data_size if extended_noise_scale is not None else 0
        )

    @classmethod
    def from_torch(cls, ebm) -> "LatentEBMJax":
        """Translate a torch :class:`~ppl_ebm.targets.latent_ebm.LatentEBM` (same weights, float32)."""
        import torch

        from ppl_ebm.nets.torch_to_jax import torch_to_jax

        with torch.no_grad():
            z = torch.zeros(2, ebm.base_latent_dim, device=ebm.device)
            x = ebm.generator(z)
        generator_fn, generator_params = torch_to_jax(ebm.generator, z)
        critic_fn, critic_params = torch_to_jax(ebm.critic, x)
        return cls(
            generator_fn,
            generator_params,
            critic_fn,
            critic_params,
            critic_output=ebm.critic_output,
            base_latent_dim=ebm.base_latent_dim,
            data_shape=ebm.data_shape,
            temperature=ebm.temperature,
            extended_noise_scale=ebm.extended_noise_scale,
        )

    # -- pytree protocol: weights are leaves, everything else is static --------------------
    def tree_flatten(self):
        children = (self.generator_params, self.critic_params)
        aux = (
            self.generator_fn,
            self.critic_fn,
            self.critic_output,
            self.base_latent_dim,
            self.data_shape,
            self.temperature,
            self.extended_noise_scale,
        )
        return children, aux

    @classmethod
    def tree_unflatten(cls, aux, children):
        generator_fn, critic_fn, critic_output, base_latent_dim, data_shape, temperature, eps = aux
        return cls(
            generator_fn,
            children[0],
            critic_fn,
            children[1],
            critic_output=critic_output,
            base_latent_dim=base_latent_dim,
            data_shape=data_shape,
            temperature=temperature,
            extended_noise_scale=eps,
        )

    def check_latents(self, z: jax.Array) -> None:
        """Raise a ValueError unless ``z`` is shaped ``(..., latent_dim)``."""
        if jnp.ndim(z) < 1 or jnp.shape(z)[-1] != self.latent_dim:
            raise ValueError(f"Latents must be shaped (..., {self.latent_dim}); got {jnp.shape(z)}.")

    # -- the model ---------------------------------------------------------------------------
    def generate(self, z: jax.Array) -> jax.Array:
        batch_shape = z.shape[:-1]
        flat = z.reshape(-1, self.latent_dim)
        x = self.generator_fn(self.generator_params, flat[:, : self.base_latent_dim])
        if self.extended_noise_scale is not None:
            x = x + self.extended_noise_scale * flat[:, self.base_latent_dim :].reshape(x.shape)
        return x.reshape(*batch_shape, *self.data_shape)

    def log_tilt(self, z: jax.Array) -> jax.Array:
        batch_shape = z.shape[:-1]
        x = self.generate(z).reshape(-1, *self.data_shape)
        output = self.critic_fn(self.critic_params, x).reshape(-1)
        return critic_output_to_log_tilt(output, self.critic_output).reshape(batch_shape)

    def prior_log_density(self, z: jax.Array) -> jax.Array:
        return -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * self.latent_dim * math.log(2 * math.pi)

    def potential(self, z: jax.Array) -> jax.Array:
        return -(self.prior_log_density(z) + self.log_tilt(z)) / self.temperature

    def potential_and_grad(self, z: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Potential and gradient for a batch of independent chains (grad of the sum)."""
        return _batched_potential_and_grad(self, z)

    def prior_sample(self, rng_key: jax.Array, num: int | Sequence[int]) -> jax.Array:
        shape = (num,) if isinstance(num, int) else tuple(num)
        return jax.random.normal(rng_key, (*shape, self.latent_dim), dtype=jnp.float32)

    def __repr__(self) -> str:
        return (
            f"LatentEBMJax(latent_dim={self.latent_dim}, data_shape={self.data_shape}, "
            f"critic_output={self.critic_output!r}, temperature={self.temperature})"
        )


def _batched_potential_and_grad(ebm: LatentEBMJax, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    # One backward pass for all chains: the chains are independent, so the gradient of the
    # summed potential is each chain's own gradient; has_aux returns the per-chain values.
    def summed(w):
        per_chain = ebm.potential(w)
        return jnp.sum(per_chain), per_chain

    (_, potential), grad = jax.value_and_grad(summed, has_aux=True)(z)
    return potential, grad
