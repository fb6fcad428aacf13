"""Random draws of the torch kernels that do not depend on how chains are split over processes.

One process draws a step's noise for all its chains with one call, ``torch.randn((chains,
dim), generator=rng)``. Under ``torchrun`` each rank owns a block of the chains; for the
draws to equal the single process's for the same seed, a rank's chains must get the rows a
single process would give them. A :class:`ChainBlockGenerator` does that: every rank holds
the same generator (same seed), draws the *whole* run's rows and keeps its block's, so every
generator advances exactly as the single process's. The cost is drawing ``num_chains / ranks``
times more normals than needed, small beside a step's potential and gradient (a generator's
network on every chain); per-chain generators would need one call per chain per step.

The JAX kernels need none of this: JAX's partitionable Threefry already gives each element of
a draw bits that depend on its global index only (see :mod:`ppl_ebm.drivers.sharding_jax`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

__all__ = ["ChainBlockGenerator", "draw_rows", "normal", "uniform"]


class ChainBlockGenerator(NamedTuple):
    """The run's generator, and this rank's chains ``start:stop`` of ``num_chains``."""

    generator: torch.Generator
    start: int
    stop: int
    num_chains: int


def draw_rows(rng, shape: tuple[int, ...], draw: Callable[[torch.Generator | None, tuple[int, ...]], torch.Tensor]):
    """``draw(generator, shape)``, or, for a :class:`ChainBlockGenerator`, the rows of this
    block of the whole run's draw. ``shape[0]`` is ``chains x k`` with rows chain-major (k
    particles per chain for i-SIR, 1 otherwise)."""
    if not isinstance(rng, ChainBlockGenerator):
        return draw(rng, shape)
    local = rng.stop - rng.start
    per_chain = shape[0] // local
    full = draw(rng.generator, (rng.num_chains * per_chain, *shape[1:]))
    return full[rng.start * per_chain : rng.stop * per_chain]


def normal(rng, shape, dtype, device) -> torch.Tensor:
    """Standard normals shaped ``shape``; see :func:`draw_rows`."""
    return draw_rows(rng, tuple(shape), lambda g, s: torch.randn(s, generator=g, dtype=dtype, device=device))


def uniform(rng, shape, dtype, device) -> torch.Tensor:
    """Uniforms on [0, 1) shaped ``shape``; see :func:`draw_rows`."""
    return draw_rows(rng, tuple(shape), lambda g, s: torch.rand(s, generator=g, dtype=dtype, device=device))
