"""The latent energy-based model in JAX, mirroring :mod:`ppl_ebm.targets.latent_ebm` name for name.

Built from a torch :class:`~ppl_ebm.targets.latent_ebm.LatentEBM` by translating both networks with
:func:`ppl_ebm.nets.torch_to_jax.torch_to_jax`, so NumPyro samples a torch checkpoint with the
same weights. The object is a JAX pytree whose leaves are the weights (and the prior's
parameters): passing it as a ``jit`` argument keeps them out of the compiled program's constants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ppl_ebm.targets.priors_jax import as_latent_prior

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
    """JAX latent EBM ``p(z) ∝ exp(-U(z) / T)``; see :class:`ppl_ebm.targets.latent_ebm.LatentEBM`.

    ``prior`` is ``"normal"``, ``"uniform"``, a NumPyro distribution with event shape
    ``(latent_dim,)`` (see :mod:`ppl_ebm.targets.priors_jax` for the families), a
    :class:`~ppl_ebm.targets.priors_jax.LatentPriorJax`, or a torch ``LatentPrior`` (translated).
    """

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
        prior: Any = "normal",
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
        if isinstance(prior, str) and prior == "uniform" and extended_noise_scale is not None:
            raise ValueError(
                "prior='uniform' with extended_noise_scale would put the box on Corollary 1's "
                "noise latent z' too, which is N(0, I). Pass prior as a distribution over all "
                f"{self.latent_dim} latent coordinates, or leave extended_noise_scale=None."
            )
        self.prior = as_latent_prior(prior, self.latent_dim)

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
            prior=ebm.prior,
        )

    # -- pytree protocol: weights and the prior's parameters are leaves, the rest static ---
    def tree_flatten(self):
        # The prior is a pytree node itself: its arrays become leaves, its family stays static.
        children = (self.generator_params, self.critic_params, self.prior)
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
            prior=children[2],
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
        """``log p0(z)`` of constrained latents."""
        return self.prior.log_prob(z)

    def constrain(self, u: jax.Array) -> jax.Array:
        """``z = T(u)``; ``u`` itself for N(0, I)."""
        return self.prior.constrain(u)

    def unconstrain(self, z: jax.Array) -> jax.Array:
        """``u = T^{-1}(z)``; ``z`` itself for N(0, I)."""
        return self.prior.unconstrain(z)

    def potential(self, u: jax.Array) -> jax.Array:
        """``-(log p0(T(u)) + d(G(T(u)))) / T_temp - log|det dT/du|``; see ``LatentEBM.potential``."""
        if self.prior.is_standard_normal:
            return -(self.prior_log_density(u) + self.log_tilt(u)) / self.temperature
        z = self.prior.constrain(u)
        energy = -(self.prior.log_prob(z) + self.log_tilt(z)) / self.temperature
        return energy - self.prior.log_abs_det_jacobian(u, z)

    def potential_and_grad(self, u: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Potential and gradient in ``u`` for a batch of independent chains (grad of the sum)."""
        return _batched_potential_and_grad(self, u)

    def prior_potential(self, u: jax.Array) -> jax.Array:
        """``-log p0(T(u)) - log|det dT/du|``; see ``LatentEBM.prior_potential``."""
        if self.prior.is_standard_normal:
            return -self.prior_log_density(u)
        z = self.prior.constrain(u)
        return -self.prior.log_prob(z) - self.prior.log_abs_det_jacobian(u, z)

    def prior_sample(self, rng_key: jax.Array, num: int | Sequence[int]) -> jax.Array:
        """Constrained latents ``z ~ p0``, shape ``(*num, latent_dim)``."""
        shape = (num,) if isinstance(num, int) else tuple(num)
        return self.prior.sample(rng_key, shape)

    def prior_sample_unconstrained(self, rng_key: jax.Array, num: int | Sequence[int]) -> jax.Array:
        """``unconstrain(prior_sample(rng_key, num))``: prior draws in u, where chains start."""
        return self.unconstrain(self.prior_sample(rng_key, num))

    # -- the Target protocol (ppl_ebm.targets.protocol) ------------------------------------
    @property
    def dim(self) -> int:
        return self.latent_dim

    @property
    def site_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"z": (self.latent_dim,)}

    def initial_positions(self, num_chains: int, rng: jax.Array) -> jax.Array:
        """See :meth:`ppl_ebm.targets.latent_ebm.LatentEBM.initial_positions`."""
        return self.prior_sample_unconstrained(rng, num_chains)

    def sites(self, u: jax.Array) -> dict[str, jax.Array]:
        """See :meth:`ppl_ebm.targets.latent_ebm.LatentEBM.sites`."""
        return {"z": self.constrain(u)}

    def __repr__(self) -> str:
        prior = "" if self.prior.is_standard_normal else f", prior={self.prior!r}"
        return (
            f"LatentEBMJax(latent_dim={self.latent_dim}, data_shape={self.data_shape}, "
            f"critic_output={self.critic_output!r}, temperature={self.temperature}{prior})"
        )


def _batched_potential_and_grad(ebm: LatentEBMJax, z: jax.Array) -> tuple[jax.Array, jax.Array]:
    # One backward pass for all chains: the chains are independent, so the gradient of the
    # summed potential is each chain's own gradient; has_aux returns the per-chain values.
    def summed(w):
        per_chain = ebm.potential(w)
        return jnp.sum(per_chain), per_chain

    (_, potential), grad = jax.value_and_grad(summed, has_aux=True)(z)
    return potential, grad
