"""Does a latent EBM's highest density lie where its prior ever goes?

A critic's logit is only trained near the data and the generator's samples. Off them a ReLU
critic can grow without bound along the generator's extrapolation, and ``d(G(z))`` growing
linearly in ``|z|`` beats the prior's ``-|z|^2/2`` out to ``|z|`` about the slope. Then
the target ``p0(z) exp(d(G(z)))`` puts nearly all its mass there, far from the data, and an
exact sampler run long enough drifts there; its ESS then measures that drift, not mixing.
(On the shipped 25-Gaussians WGAN-GP model the potential's minimum is -121 at ``|z|`` = 21,
against >= -2.5 over 100,000 prior draws.)

The search runs where the samplers do, in unconstrained space u with ``z = T(u)``
(:meth:`LatentEBM.constrain`; the identity for N(0, I)), on ``potential(u)``, and reports
latents as ``z``. A bounded prior (the box) keeps the mode inside its support; the check then
says whether the potential's minimum lies beyond the prior draws' reach in norm.
"""

from __future__ import annotations

from typing import Any

import torch

from ppl_ebm.targets.latent_ebm import LatentEBM

__all__ = ["checked_target", "highest_density_check"]


def highest_density_check(
    ebm: LatentEBM, starts: int = 256, steps: int = 500, spread: float = 8.0, prior_draws: int = 100_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Search the potential's minimum (Adam in u from ``starts`` points drawn N(0, spread^2 I))
    and compare it with ``prior_draws`` prior draws.

    Returns JSON-ready ``min_potential`` and ``argmin`` (the constrained latent ``z = T(u)``,
    with ``argmin_unconstrained`` the u found, ``argmin_norm`` = ``|z|`` and the generated
    sample ``generated_at_argmin``), ``prior_min_potential`` and ``prior_max_norm`` over the
    prior draws (potentials in u, norms in z), and ``mode_beyond_prior``: True when the
    minimum is both lower than every prior draw's potential and farther out than every
    prior draw, i.e. the target's highest density lies where its prior never goes.
    """
    if not isinstance(ebm, LatentEBM):
        raise TypeError(f"highest_density_check needs a ppl_ebm.LatentEBM, got {type(ebm).__name__}.")
    generator = torch.Generator().manual_seed(seed)
    device = ebm.device
    u = (spread * torch.randn(starts, ebm.latent_dim, generator=generator)).to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([u], lr=0.1)
    for _ in range(steps):
        optimizer.zero_grad()
        ebm.potential(u).sum().backward()
        optimizer.step()
    with torch.no_grad():
        potentials = ebm.potential(u)
        finite = torch.isfinite(potentials)
        best = int(torch.argmin(torch.where(finite, potentials, torch.inf)))
        argmin_unconstrained = u[best]
        argmin = ebm.constrain(argmin_unconstrained)
        prior_u = ebm.prior_sample_unconstrained(prior_draws, generator=generator)
        prior_potentials = torch.cat([ebm.potential(chunk) for chunk in prior_u.split(10_000)])
        prior = ebm.constrain(prior_u)
        result = {
            "min_potential": float(potentials[best]),
            "argmin": argmin.cpu().tolist(),
            "argmin_unconstrained": argmin_unconstrained.cpu().tolist(),
            "argmin_norm": float(argmin.norm()),
            "generated_at_argmin": ebm.generate(argmin[None]).reshape(-1).cpu().tolist(),
            "prior_min_potential": float(prior_potentials.min()),
            "prior_max_norm": float(prior.norm(dim=-1).max()),
            "starts": starts, "steps": steps, "prior_draws": prior_draws,
        }
    result["mode_beyond_prior"] = bool(
        result["min_potential"] < result["prior_min_potential"] and result["argmin_norm"] > result["prior_max_norm"]
    )
    return result


def checked_target(ebm: LatentEBM, seed: int = 0, log=print) -> dict[str, Any]:
    """:func:`highest_density_check`, logging a warning when the mode lies beyond the prior
    (what the studies run before sampling a model)."""
    log("  target check: searching the potential's minimum")
    check = highest_density_check(ebm, seed=seed)
    if check["mode_beyond_prior"]:
        log(f"  warning: the target's highest density lies beyond the prior (potential {check['min_potential']:.1f} "
            f"at |z| = {check['argmin_norm']:.1f}); exact samplers run long enough drift there")
    return check
