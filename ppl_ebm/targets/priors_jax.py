"""Latent priors in JAX, mirroring :mod:`ppl_ebm.targets.priors` name for name.

``T = numpyro.distributions.transforms.biject_to(p0.support)``, the bijection NumPyro uses for
a ``z ~ p0`` sample statement and the same map as torch's ``biject_to`` on the torch side
(``-1 + 2 sigmoid(u)`` for the box [-1, 1]^d). A :class:`LatentPriorJax` is a pytree: its
parameters are leaves, its family and name static, so a jitted program takes the prior's
parameters as arguments like the networks' weights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions.transforms import biject_to
from numpyro.distributions.truncated import TwoSidedTruncatedDistribution

__all__ = ["FAMILIES", "LatentPriorJax", "as_latent_prior"]

#: The priors the JAX side evaluates, with their parameters (each of shape (d,), or (d, d)).
FAMILIES = {
    "normal": (),  # N(0, I), the formulas from before priors existed
    "uniform": ("low", "high"),  # Independent(Uniform(low, high), 1)
    "diagonal_normal": ("loc", "scale"),  # Independent(Normal(loc, scale), 1)
    "multivariate_normal": ("loc", "scale_tril"),
    "truncated_normal": ("loc", "scale", "low", "high"),  # Independent(TruncatedNormal, 1), both bounds finite
}

_SUPPORTED = (
    "'normal', 'uniform', Independent(Normal(loc, scale), 1), Independent(Uniform(low, high), 1), "
    "MultivariateNormal(loc, ...) and (NumPyro only) Independent(TruncatedNormal(loc, scale, "
    "low=..., high=...), 1) with finite bounds"
)


def _sum_event(value: jax.Array, batch_ndim: int) -> jax.Array:
    # Mirror of priors._sum_event: per-coordinate log-Jacobians summed over the event.
    while jnp.ndim(value) > batch_ndim:
        value = jnp.sum(value, axis=-1)
    return value


@jax.tree_util.register_pytree_node_class
class LatentPriorJax:
    """JAX mirror of :class:`ppl_ebm.targets.priors.LatentPrior`.

    Parameters
    ----------
    family
        A key of :data:`FAMILIES`.
    params
        The family's parameters in :data:`FAMILIES` order, as float32 arrays.
    latent_dim
        d, the length of the latent vector.
    name
        ``"normal"``, ``"uniform"`` (the box [-1, 1]^d) or ``"distribution"``.
    """

    def __init__(self, family: str, params: Sequence[Any], latent_dim: int, name: str) -> None:
        self.family = family
        self.params = tuple(params)
        self.latent_dim = int(latent_dim)
        self.name = name

    def tree_flatten(self):
        return self.params, (self.family, self.latent_dim, self.name)

    @classmethod
    def tree_unflatten(cls, aux, children):
        family, latent_dim, name = aux
        return cls(family, children, latent_dim, name)

    @property
    def is_standard_normal(self) -> bool:
        return self.family == "normal"

    @property
    def distribution(self) -> dist.Distribution:
        """The prior as a NumPyro distribution with event shape ``(latent_dim,)``."""
        if self.family == "normal":
            return dist.Normal(jnp.zeros(self.latent_dim), 1.0).to_event(1)
        if self.family == "uniform":
            return dist.Uniform(*self.params).to_event(1)
        if self.family == "diagonal_normal":
            return dist.Normal(*self.params).to_event(1)
        if self.family == "multivariate_normal":
            return dist.MultivariateNormal(self.params[0], scale_tril=self.params[1])
        loc, scale, low, high = self.params
        return dist.TruncatedNormal(loc, scale, low=low, high=high).to_event(1)

    @property
    def transform(self):
        """``T = biject_to(p0.support)``; None for N(0, I) (the identity, never applied)."""
        return None if self.family == "normal" else biject_to(self.distribution.support)

    # -- densities -----------------------------------------------------------------------------
    def log_prob(self, z: jax.Array) -> jax.Array:
        if self.family == "normal":
            return -0.5 * jnp.sum(z * z, axis=-1) - 0.5 * self.latent_dim * math.log(2 * math.pi)
        return self.distribution.log_prob(z)

    def log_abs_det_jacobian(self, u: jax.Array, z: jax.Array) -> jax.Array:
        if self.family == "normal":
            return jnp.zeros(jnp.shape(u)[:-1], dtype=jnp.result_type(u))
        return _sum_event(self.transform.log_abs_det_jacobian(u, z), jnp.ndim(u) - 1)

    # -- the bijection ---------------------------------------------------------------------------
    def constrain(self, u: jax.Array) -> jax.Array:
        return u if self.family == "normal" else self.transform(u)

    def unconstrain(self, z: jax.Array) -> jax.Array:
        return z if self.family == "normal" else self.transform.inv(z)

    # -- draws -----------------------------------------------------------------------------------
    def sample(self, rng_key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
        """Constrained draws ``z ~ p0``, shape ``(*shape, latent_dim)``."""
        if self.family == "normal":
            return jax.random.normal(rng_key, (*shape, self.latent_dim), dtype=jnp.float32)
        return self.distribution.sample(rng_key, tuple(shape))

    def __repr__(self) -> str:
        return repr(self.name) if self.name != "distribution" else f"LatentPriorJax({self.family!r})"


def _vector(value, latent_dim: int) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(np.asarray(value, dtype=np.float32)), (latent_dim,))


def _from_torch(prior) -> LatentPriorJax:
    from torch.distributions import Independent, MultivariateNormal, Normal, Uniform

    d, name = prior.latent_dim, prior.name
    if prior.distribution is None:
        return LatentPriorJax("normal", (), d, name)
    distribution = prior.distribution

    def numpy(tensor):
        return tensor.detach().cpu().numpy()

    if isinstance(distribution, MultivariateNormal):
        tril = jnp.asarray(numpy(distribution.scale_tril), dtype=jnp.float32)
        return LatentPriorJax("multivariate_normal", (_vector(numpy(distribution.loc), d), tril), d, name)
    if isinstance(distribution, Independent) and distribution.reinterpreted_batch_ndims == 1:
        base = distribution.base_dist
        if isinstance(base, Uniform):
            params = (_vector(numpy(base.low), d), _vector(numpy(base.high), d))
            return LatentPriorJax("uniform", params, d, name)
        if isinstance(base, Normal):
            params = (_vector(numpy(base.loc), d), _vector(numpy(base.scale), d))
            return LatentPriorJax("diagonal_normal", params, d, name)
    raise ValueError(
        f"prior={distribution!r} has no JAX translation: supported are {_SUPPORTED}. Use one of "
        "them, or sample this model with backend='torch'."
    )


def _from_numpyro(distribution: dist.Distribution, latent_dim: int) -> LatentPriorJax:
    d = latent_dim
    if tuple(distribution.batch_shape) != () or tuple(distribution.event_shape) != (d,):
        raise ValueError(
            f"prior must have event shape ({d},) (the latent vector) and batch shape (), got "
            f"event shape {tuple(distribution.event_shape)} and batch shape "
            f"{tuple(distribution.batch_shape)}. Wrap a per-coordinate distribution with "
            ".to_event(1) and parameters of length latent_dim."
        )
    if isinstance(distribution, dist.MultivariateNormal):
        tril = jnp.asarray(distribution.scale_tril, dtype=jnp.float32)
        return LatentPriorJax("multivariate_normal", (_vector(distribution.loc, d), tril), d, "distribution")
    if isinstance(distribution, dist.Independent) and distribution.reinterpreted_batch_ndims == 1:
        base = distribution.base_dist
        if isinstance(base, dist.Uniform):
            params = (_vector(base.low, d), _vector(base.high, d))
            return LatentPriorJax("uniform", params, d, "distribution")
        if isinstance(base, dist.Normal):
            return LatentPriorJax("diagonal_normal", (_vector(base.loc, d), _vector(base.scale, d)), d, "distribution")
        if (
            isinstance(base, TwoSidedTruncatedDistribution)
            and isinstance(base.base_dist, dist.Normal)
            and bool(np.all(np.isfinite(np.asarray(base.low))) and np.all(np.isfinite(np.asarray(base.high))))
        ):
            params = tuple(
                _vector(value, d) for value in (base.base_dist.loc, base.base_dist.scale, base.low, base.high)
            )
            return LatentPriorJax("truncated_normal", params, d, "distribution")
    raise ValueError(
        f"prior={distribution!r} is not supported on the JAX side: supported are {_SUPPORTED}."
    )


def as_latent_prior(prior, latent_dim: int) -> LatentPriorJax:
    """Mirror of :func:`ppl_ebm.targets.priors.as_latent_prior`: a name, a NumPyro
    distribution, a :class:`LatentPriorJax`, or a torch :class:`~ppl_ebm.targets.priors.LatentPrior`
    (translated; its parameters become float32 arrays)."""
    from ppl_ebm.targets.priors import PRIOR_NAMES, LatentPrior

    if isinstance(prior, LatentPriorJax):
        if prior.latent_dim != latent_dim:
            raise ValueError(f"prior is for latent_dim={prior.latent_dim}, expected {latent_dim}.")
        return prior
    if isinstance(prior, LatentPrior):
        return _from_torch(prior)
    if isinstance(prior, str):
        if prior not in PRIOR_NAMES:
            raise ValueError(
                f"prior must be one of {PRIOR_NAMES} or a distribution, got {prior!r}. Supported "
                f"on the JAX side: {_SUPPORTED}."
            )
        if prior == "normal":
            return LatentPriorJax("normal", (), latent_dim, "normal")
        ones = jnp.ones(latent_dim, dtype=jnp.float32)
        return LatentPriorJax("uniform", (-ones, ones), latent_dim, "uniform")
    if isinstance(prior, dist.Distribution):
        return _from_numpyro(prior, latent_dim)
    raise ValueError(
        f"prior must be a string, a NumPyro distribution or a LatentPriorJax, got "
        f"{type(prior).__name__}. Supported: {_SUPPORTED}."
    )
