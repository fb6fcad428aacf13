"""The one Target protocol: what every sampler needs from what it samples, on either backend.

Positions are flat ``(chains, dim)`` arrays in unconstrained space u (a torch tensor or a JAX
array, per backend); ``potential`` is ``U = -log density`` there, Jacobian included. A latent
EBM implements it (:class:`~ppl_ebm.targets.latent_ebm.LatentEBM`,
:class:`~ppl_ebm.targets.latent_ebm_jax.LatentEBMJax`: u maps to the latents ``z`` in the prior's
support), and so does a general Pyro or NumPyro model through its batched potential
(:class:`ppl_ebm.ppl.pyro_potential.BatchedPotential`,
:class:`ppl_ebm.ppl.numpyro_potential.BatchedPotential`). The front door
(:func:`ppl_ebm.sample`) and the drivers read nothing else, so a new kind of target (a VAE
decoder with a learned energy, a flow) plugs in by implementing these members.

Optional members, read when present: ``generate(z)`` (push draws through a generator,
``return_generated``), and ``prior_sample_unconstrained`` / ``prior_potential`` (the law
independence steps propose from; N(0, I) in u when absent).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Target", "has_standard_normal_prior"]


@runtime_checkable
class Target(Protocol):
    """A batched target in unconstrained space (see the module docstring)."""

    @property
    def dim(self) -> int:
        """Length of one chain's flat unconstrained position."""

    @property
    def site_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> unconstrained shape of one chain's value, in flattening order."""

    def potential(self, position: Any) -> Any:
        """``(chains, dim) -> (chains,)``: ``-log density`` in u."""

    def potential_and_grad(self, position: Any) -> tuple[Any, Any]:
        """``(chains, dim) -> ((chains,), (chains, dim))``."""

    def initial_positions(self, num_chains: int, rng: Any) -> Any:
        """Where chains start, ``(num_chains, dim)`` in u (``rng``: a torch Generator or a JAX key)."""

    def sites(self, position: Any) -> dict[str, Any]:
        """Flat positions ``(..., dim)`` -> each site's values in its support ``(..., *shape)``."""


def has_standard_normal_prior(target: Any) -> bool:
    """Whether ``target`` has no prior member or a N(0, I) one: then u is z (no transform) and
    independence steps propose from N(0, I), the kernels' default."""
    prior = getattr(target, "prior", None)
    return prior is None or prior.is_standard_normal
