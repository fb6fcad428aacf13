"""The object every sampler returns through :func:`ppl_ebm.sample`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["SampleResult"]


@dataclass
class SampleResult:
    """Draws and run statistics of one sampling run.

    Attributes
    ----------
    latents
        Post-warmup latent draws, shape ``(chain, draw, latent_dim)`` (float32 numpy).
    stats
        Per-run statistics. Keys always present:

        - ``acceptance`` (chain,): mean acceptance probability after warmup (1.0 for ULA;
          MALA with ``independence_every``: over its Langevin steps);
        - ``independence_acceptance`` (chain,): only for MALA with ``independence_every``:
          mean acceptance of its independence steps after warmup;
        - ``step_size`` (chain,): final step size;
        - ``divergences`` (chain,): divergent transitions (NUTS/HMC; 0 for Langevin);
        - ``nonfinite`` (chain,): non-finite potentials or gradients met (MALA rejects
          them, ULA stops the chain);
        - ``stopped`` (chain,) bool: ULA chains stopped by a non-finite value;
        - ``grad_evals`` (chain,): potential-gradient evaluations, warmup included;
        - ``wall_seconds``: whole run, compile and warmup included;
        - ``compile_seconds``, ``warmup_seconds``, ``sampling_seconds``: its parts
          (``compile_seconds`` is the first call's tracing/JIT time; 0 where nothing compiles);
          summed over sessions when a ``draws_dir`` run was resumed;
        - ``resumed_at_iteration`` (ULA/MALA): the iteration this call started from (0 unless
          a ``draws_dir`` run was resumed).
    sampler, backend
        What produced the draws (``"ula"``, ``"mala"``, ``"nuts"``, ``"hmc"``;
        ``"torch"`` or ``"jax"``).
    site
        Name of the latent site the draws belong to.
    generated
        ``G(z)`` for every draw, shape ``(chain, draw, *data_shape)``, when requested.
    posterior
        Draws per model site (constrained), ``(chain, draw, *site_shape)``; for a latent EBM
        just ``{site: latents}``.
    extra
        Sampler settings, kept for reports.
    """

    latents: np.ndarray
    stats: dict[str, Any]
    sampler: str
    backend: str
    site: str = "z"
    generated: np.ndarray | None = None
    posterior: dict[str, np.ndarray] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return int(self.latents.shape[0])

    @property
    def num_draws(self) -> int:
        return int(self.latents.shape[1])

    @property
    def total_grad_evals(self) -> int:
        return int(np.sum(self.stats["grad_evals"]))

    def to_arviz(self):
        """ArviZ object of the draws: ``InferenceData`` (ArviZ 0.23) or ``DataTree`` (ArviZ 1.x).

        The posterior holds the latent site (dims ``chain, draw, latent_dim``) and, when
        present, ``generated``; ``sample_stats`` holds the per-chain statistics broadcast
        over draws where ArviZ expects that shape.
        """
        from ppl_ebm.diagnostics.arviz_compat import to_arviz

        posterior = dict(self.posterior) if self.posterior else {self.site: self.latents}
        if self.generated is not None:
            posterior["generated"] = self.generated
        return to_arviz(posterior, per_chain_stats=self.stats)

    def __repr__(self) -> str:
        return (
            f"SampleResult(sampler={self.sampler!r}, backend={self.backend!r}, "
            f"chains={self.num_chains}, draws={self.num_draws}, "
            f"latent_dim={self.latents.shape[-1]}, "
            f"wall_seconds={self.stats.get('wall_seconds', float('nan')):.3g})"
        )
