"""Latent priors p0 of a latent EBM and their bijection onto R^d (torch; mirrored in :mod:`priors_jax`).

A GAN's generator was trained on draws from some prior p0: N(0, I) (most), the box
[-1, 1]^d (DCGAN and others), or a truncated one. Samplers run in unconstrained space u with
``z = T(u)``, ``T = biject_to(p0.support)`` (the same bijection Pyro and NumPyro use for a
``z ~ p0`` sample statement), so the prior's density in u is, by change of variables,

    log p0_u(u) = log p0(T(u)) + log|det dT/du|

(e.g. Gelman et al., *Bayesian Data Analysis*, 3rd ed., Sec. 2.8; Stan Reference Manual,
"Constraint transforms"). For N(0, I), T is the identity and nothing is transformed.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, Uniform, biject_to

__all__ = ["PRIOR_NAMES", "LatentPrior", "as_latent_prior"]

#: The priors named by a string: the standard normal and the box [-1, 1]^d.
PRIOR_NAMES = ("normal", "uniform")

_PRIOR_HELP = (
    "Pass prior='normal' (N(0, I)), prior='uniform' (the box [-1, 1]^d) or a "
    "torch.distributions.Distribution whose event is the latent vector, e.g. "
    "Independent(Uniform(-2 * torch.ones(d), 2 * torch.ones(d)), 1) or "
    "MultivariateNormal(loc, covariance_matrix)."
)


def _sum_event(value: torch.Tensor, batch_ndim: int) -> torch.Tensor:
    # Some transforms (e.g. a bare elementwise one) return per-coordinate log-Jacobians:
    # the density of the latent vector needs their sum over the event dimension.
    while value.ndim > batch_ndim:
        value = value.sum(-1)
    return value


class LatentPrior:
    """The prior ``p0`` of a latent EBM and the bijection ``T: R^d -> support(p0)``.

    Parameters
    ----------
    distribution
        A torch distribution whose event shape is ``(latent_dim,)`` and batch shape ``()``;
        None for the standard normal, whose formulas stay those of ``N(0, I)``.
    latent_dim
        d, the length of the latent vector.
    name
        ``"normal"``, ``"uniform"`` (the box [-1, 1]^d) or ``"distribution"`` (any other).

    Notes
    -----
    ``T = torch.distributions.biject_to(p0.support)``; for the box that is
    ``T(u) = -1 + 2 sigmoid(u)``. Use :func:`as_latent_prior` to build one from the
    ``prior=`` argument of :class:`~ppl_ebm.targets.latent_ebm.LatentEBM`.
    """

    def __init__(self, distribution: Distribution | None, latent_dim: int, name: str) -> None:
        self.distribution = distribution
        self.latent_dim = int(latent_dim)
        self.name = name
        self.transform = None if distribution is None else biject_to(distribution.support)

    @property
    def is_standard_normal(self) -> bool:
        """True for N(0, I): T is the identity and the formulas are those before priors existed."""
        return self.distribution is None

    # -- densities -----------------------------------------------------------------------------
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log p0(z)`` of constrained latents ``(..., latent_dim)``, shape ``z.shape[:-1]``."""
        if self.distribution is None:
            return -0.5 * (z * z).sum(-1) - 0.5 * self.latent_dim * math.log(2 * math.pi)
        return self.distribution.log_prob(z)

    def log_abs_det_jacobian(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log|det dT/du|`` at ``u`` (with ``z = T(u)``), shape ``u.shape[:-1]``."""
        if self.transform is None:
            return torch.zeros(u.shape[:-1], dtype=u.dtype, device=u.device)
        return _sum_event(self.transform.log_abs_det_jacobian(u, z), u.ndim - 1)

    # -- the bijection ---------------------------------------------------------------------------
    def constrain(self, u: torch.Tensor) -> torch.Tensor:
        """``z = T(u)``; the input object itself for N(0, I)."""
        return u if self.transform is None else self.transform(u)

    def unconstrain(self, z: torch.Tensor) -> torch.Tensor:
        """``u = T^{-1}(z)``; the input object itself for N(0, I)."""
        return z if self.transform is None else self.transform.inv(z)

    # -- draws -----------------------------------------------------------------------------------
    def sample(
        self, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Constrained draws ``z ~ p0``, shape ``(*shape, latent_dim)``, on ``device``.

        The named priors are drawn on the CPU so that a CPU generator gives the same draws on
        every device; another distribution is drawn where its parameters live, from a seed
        taken from ``generator`` (torch distributions take no generator).
        """
        size = (*shape, self.latent_dim)
        if self.name == "normal":
            return torch.randn(*size, generator=generator).to(device)
        if self.name == "uniform":
            return (2.0 * torch.rand(*size, generator=generator) - 1.0).to(device)
        if generator is None:
            return self.distribution.sample(shape).to(device)
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        where = self.distribution.sample(()).device
        with torch.random.fork_rng(devices=[where] if where.type == "cuda" else []):
            torch.manual_seed(seed)
            return self.distribution.sample(shape).to(device)

    def to(self, device) -> "LatentPrior":
        """The same prior with its parameters on ``device``."""
        if self.distribution is None:
            return self
        if self.name == "uniform":
            return _named_prior("uniform", self.latent_dim, device)
        return LatentPrior(_moved(self.distribution, torch.device(device)), self.latent_dim, self.name)

    def __repr__(self) -> str:
        if self.name != "distribution":
            return repr(self.name)
        return repr(self.distribution)


def _same_device(first: torch.device, second: torch.device) -> bool:
    # "cuda" and "cuda:0" name the same device when one of them leaves the index open.
    return first.type == second.type and (first.index is None or second.index is None or first.index == second.index)


def _moved(distribution: Distribution, device: torch.device) -> Distribution:
    # torch distributions have no .to(): rebuild the common families from their parameters.
    if isinstance(distribution, Independent):
        return Independent(_moved(distribution.base_dist, device), distribution.reinterpreted_batch_ndims)
    if isinstance(distribution, Normal):
        return Normal(distribution.loc.to(device), distribution.scale.to(device))
    if isinstance(distribution, Uniform):
        return Uniform(distribution.low.to(device), distribution.high.to(device))
    if isinstance(distribution, MultivariateNormal):
        return MultivariateNormal(distribution.loc.to(device), scale_tril=distribution.scale_tril.to(device))
    if _same_device(distribution.sample(()).device, device):
        return distribution
    raise ValueError(
        f"prior={distribution!r} cannot be moved to {device}: only Normal, Uniform, "
        "MultivariateNormal and Independent of them are rebuilt on another device. Build the "
        f"prior with its parameters on {device} and pass it again."
    )


def _named_prior(name: str, latent_dim: int, device) -> LatentPrior:
    if name == "normal":
        return LatentPrior(None, latent_dim, "normal")
    ones = torch.ones(latent_dim, device=device)
    return LatentPrior(Independent(Uniform(-ones, ones), 1), latent_dim, "uniform")


def as_latent_prior(prior: str | Distribution | LatentPrior, latent_dim: int, device) -> LatentPrior:
    """Check the ``prior=`` argument of a latent EBM and build its :class:`LatentPrior`.

    Raises
    ------
    ValueError
        For an unknown name, a distribution whose event shape is not ``(latent_dim,)`` or
        whose batch shape is not ``()``, or one without a continuous support.
    """
    if isinstance(prior, LatentPrior):
        prior = prior.distribution if prior.name == "distribution" else prior.name
    if isinstance(prior, str):
        if prior not in PRIOR_NAMES:
            raise ValueError(f"prior must be one of {PRIOR_NAMES} or a distribution, got {prior!r}. {_PRIOR_HELP}")
        return _named_prior(prior, latent_dim, device)
    if not isinstance(prior, Distribution):
        raise ValueError(
            f"prior must be a string or a torch.distributions.Distribution, got "
            f"{type(prior).__name__}. {_PRIOR_HELP}"
        )
    if tuple(prior.batch_shape) != () or tuple(prior.event_shape) != (latent_dim,):
        raise ValueError(
            f"prior must have event shape ({latent_dim},) (the latent vector) and batch shape (), "
            f"got event shape {tuple(prior.event_shape)} and batch shape {tuple(prior.batch_shape)}. "
            "Wrap a per-coordinate distribution as Independent(distribution, 1) (Pyro: "
            ".to_event(1)) with parameters of length latent_dim."
        )
    if prior.support.is_discrete:
        raise ValueError(f"prior must be continuous, got {prior!r} with support {prior.support}. {_PRIOR_HELP}")
    try:
        biject_to(prior.support)
    except NotImplementedError as error:
        raise ValueError(
            f"prior's support {prior.support} has no bijection from R^{latent_dim} "
            f"(torch.distributions.biject_to): {error}. {_PRIOR_HELP}"
        ) from error
    probe = prior.sample((2,))
    if not _same_device(probe.device, torch.device(device)):
        raise ValueError(
            f"prior's parameters are on {probe.device} but the generator is on {device}. Build the "
            f"prior on {device}, or move the EBM with LatentEBM.to after building it on the CPU."
        )
    return LatentPrior(prior, latent_dim, "distribution")
