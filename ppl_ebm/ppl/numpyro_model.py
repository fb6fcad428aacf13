"""The latent EBM as a NumPyro model (mirrors :mod:`pyro_model` name for name).

``z ~ p0`` (the EBM's prior as a NumPyro distribution) plus the factor of :mod:`pyro_model`;
NumPyro's MCMC samples ``u = T^{-1}(z)`` with ``T = biject_to(p0.support)``, the bijection
of ``LatentEBMJax.constrain``, so its potential in u is ``LatentEBMJax.potential(u)``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpyro

from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax

__all__ = ["latent_ebm_site", "numpyro_model"]


def _as_jax(ebm) -> LatentEBMJax:
    if isinstance(ebm, LatentEBMJax):
        return ebm
    from ppl_ebm.targets.latent_ebm import LatentEBM

    if isinstance(ebm, LatentEBM):
        return ebm.to_jax()
    raise TypeError(
        f"The NumPyro model needs a ppl_ebm.LatentEBM or LatentEBMJax, got {type(ebm).__name__}."
    )


def latent_ebm_site(ebm: LatentEBMJax, name: str = "z") -> jax.Array:
    """Put the latent EBM on sample site ``name`` inside a NumPyro model and return ``G(z)``.

    See :func:`ppl_ebm.ppl.pyro_model.latent_ebm_site`. Pass a :class:`LatentEBMJax`
    (``ebm.to_jax()``) so the translation is done once, not at every model call.
    """
    ebm = _as_jax(ebm)
    z = numpyro.sample(name, ebm.prior.distribution)
    log_weight = ebm.log_tilt(z) / ebm.temperature
    if ebm.temperature != 1.0:
        log_weight = log_weight + (1.0 / ebm.temperature - 1.0) * ebm.prior_log_density(z)
    numpyro.factor(f"{name}_critic", log_weight)
    return ebm.generate(z)


def numpyro_model(ebm, name: str = "z") -> Callable[[], jax.Array]:
    """A NumPyro model of the latent EBM alone, ready for ``numpyro.infer.MCMC(NUTS(model))``."""
    ebm = _as_jax(ebm)

    def model() -> jax.Array:
        return latent_ebm_site(ebm, name)

    return model
