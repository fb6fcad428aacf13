"""The DDLS paper's first baseline: plain generator samples ``x = G(z)``, ``z ~ N(0, I)``."""

from __future__ import annotations

import time
from typing import Any

import torch

from ppl_ebm.baselines.common import (
    BaselineResult,
    BaselineStats,
    as_generator,
    check_common,
    chunks,
    progress,
    to_numpy,
)

__all__ = ["generator_only"]

def generator_only(
    ebm: Any,
    n: int,
    seed: int | torch.Generator = 0,
    *,
    batch_size: int | None = None,
    progress_bar: bool = False,
) -> BaselineResult:
    """Plain GAN samples: ``z ~ p0 = N(0, I)``, ``x = G(z)``.

    Parameters
    ----------
    ebm
        A :class:`~ppl_ebm.LatentEBM`.
    n
        Number of samples.
    seed
        int or ``torch.Generator`` (CPU) for the latent draws.
    batch_size
        Latents per generator call (all at once when None).
    progress_bar
        Show a tqdm bar over batches.

    Returns
    -------
    BaselineResult
        ``stats``: ``wall_seconds``, ``proposals`` (= n), ``critic_evals`` (0),
        ``acceptance_rate`` (1: every draw is kept).
    """
    n, batch_size = check_common(n, batch_size)
    generator = as_generator(seed)
    start = time.perf_counter()
    z = ebm.prior_sample(n, generator=generator)
    parts = []
    with torch.no_grad(), progress(n, progress_bar, "generator") as bar:
        for part in chunks(n, batch_size):
            parts.append(ebm.generate(z[part]))
            bar.update(part.stop - part.start)
    x = torch.cat(parts)
    stats = BaselineStats(
        wall_seconds=time.perf_counter() - start,
        proposals=n,
        critic_evals=0,
        acceptance_rate=1.0,
    )
    return BaselineResult(to_numpy(x), to_numpy(z), stats)
