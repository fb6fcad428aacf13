"""The latent EBM as a Pyro model (mirrored in :mod:`numpyro_model`).

``z ~ p0`` plus ``factor(d(G(z)))`` is the DDLS target ``p0(z) exp(d(G(z)))``. With a
temperature T the factor is ``d(G(z)) / T + (1/T - 1) log p0(z)``, so the model's density is
``exp(-U(z) / T)`` while ``z`` still has the prior as its sample statement. For a prior other
than N(0, I) (``LatentEBM(prior=...)``) Pyro's MCMC samples ``u = T^{-1}(z)`` with
``T = biject_to(p0.support)`` and adds ``log|det dT/du|`` itself: its potential in u is then
``LatentEBM.potential(u)``.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch

from ppl_ebm.targets.latent_ebm import LatentEBM

__all__ = ["latent_ebm_site", "pyro_model"]


def _check(ebm) -> None:
    if not isinstance(ebm, LatentEBM):
        raise TypeError(
            f"The Pyro model needs a torch ppl_ebm.LatentEBM, got {type(ebm).__name__}."
        )


def _prior_distribution(ebm: LatentEBM) -> dist.TorchDistribution:
    if ebm.prior.is_standard_normal:
        zeros = torch.zeros(ebm.latent_dim, device=ebm.device)
        return dist.Normal(zeros, 1.0).to_event(1)
    prior = ebm.prior.distribution
    # pyro.sample calls its distribution; a plain torch one is wrapped in Pyro's mixin (the
    # wrapper delegates log_prob, sample and support, and broadcasts under plates).
    return prior if isinstance(prior, dist.TorchDistribution) else dist.ExpandedDistribution(prior)


def latent_ebm_site(ebm: LatentEBM, name: str = "z") -> torch.Tensor:
    """Put the latent EBM on sample site ``name`` inside a Pyro model and return ``G(z)``.

    Use it as the prior of a larger model, e.g. ``x = latent_ebm_site(ebm)`` followed by
    ``pyro.sample("y", dist.Normal(mask * x, sigma).to_event(...), obs=y)`` for an inverse problem.
    Works under ``pyro.plate``: ``z`` then has the plates' batch shape.
    """
    _check(ebm)
    z = pyro.sample(name, _prior_distribution(ebm))
    log_weight = ebm.log_tilt(z) / ebm.temperature
    if ebm.temperature != 1.0:
        log_weight = log_weight + (1.0 / ebm.temperature - 1.0) * ebm.prior_log_density(z)
    pyro.factor(f"{name}_critic", log_weight)
    return ebm.generate(z)


def pyro_model(ebm: LatentEBM, name: str = "z") -> Callable[[], torch.Tensor]:
    """A Pyro model of the latent EBM alone, ready for ``pyro.infer.MCMC(NUTS(model))``."""
    _check(ebm)

    def model() -> torch.Tensor:
        return latent_ebm_site(ebm, name)

    return model
