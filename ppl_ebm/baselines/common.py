"""What the baseline samplers share: their result type, argument checks, seeding, batching and
the critic read on generated or data-space points.

Public within the package so that each method's module reads the same code; the package's
user-facing names are re-exported by :mod:`ppl_ebm.baselines`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from ppl_ebm.result import Record
from ppl_ebm.targets.latent_ebm import critic_output_to_log_tilt
from ppl_ebm.validation import check_int

__all__ = [
    "BaselineResult",
    "BaselineStats",
    "DOTStats",
    "DRSStats",
    "MHGANStats",
    "as_generator",
    "check_common",
    "check_int",
    "check_positive",
    "chunks",
    "data_log_tilt",
    "data_shape_of",
    "generate_and_tilt",
    "progress",
    "to_numpy",
    "uniform",
]


@dataclass(frozen=True, eq=False, kw_only=True)
class BaselineStats(Record):
    """What every baseline reports (a read-only mapping, as :class:`ppl_ebm.result.SamplerStats`):
    ``wall_seconds``; ``proposals``, generator evaluations (every latent pushed through G, pilot
    draws included); ``critic_evals``; ``acceptance_rate`` (``nan`` where it has no meaning);
    ``grad_evals`` where the method takes gradients (DOT), else absent."""

    wall_seconds: float
    proposals: int
    critic_evals: int
    acceptance_rate: float
    grad_evals: int | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class DRSStats(BaselineStats):
    """DRS's own entries: ``gamma`` (the percentile of ``F`` that shifts it), ``log_max_ratio``
    (``log M``, raised as larger ratios appear), ``max_ratio_updates`` and ``pilot`` (draws)."""

    gamma: float
    log_max_ratio: float
    max_ratio_updates: int
    pilot: int


@dataclass(frozen=True, eq=False, kw_only=True)
class MHGANStats(BaselineStats):
    """MH-GAN's own entries: ``restarted`` (chains restarted from a real sample) and
    ``chain_length`` (proposals per chain)."""

    restarted: int
    chain_length: int


@dataclass(frozen=True, eq=False, kw_only=True)
class DOTStats(BaselineStats):
    """DOT's own entries: ``k`` (Tanaka's Lipschitz estimate), the mean log tilt before and after
    transport, the mean transport distance, and ``space`` (``"latent"`` or ``"target"``)."""

    k: float
    mean_log_tilt_before: float
    mean_log_tilt_after: float
    mean_transport_distance: float
    space: str


class BaselineResult(NamedTuple):
    """Output of a baseline sampler.

    Attributes
    ----------
    samples
        ``G(z)`` of the returned latents (DOT in target space: the transported points),
        shape ``(n, *data_shape)``, float32.
    latents
        The returned latents, shape ``(n, latent_dim)`` (DOT in target space: the starting
        latents ``z_y`` of the transported points).
    stats
        A :class:`BaselineStats` (or the method's subclass of it, with its own entries).
    """

    samples: np.ndarray
    latents: np.ndarray
    stats: BaselineStats


def check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def as_generator(seed: int | torch.Generator) -> torch.Generator:
    """A CPU torch.Generator: the one given, or a fresh one seeded with the int given."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int or a torch.Generator, got {seed!r}.")
    return torch.Generator().manual_seed(int(seed))


def uniform(count: int, generator: torch.Generator) -> torch.Tensor:
    # float64 so that tiny acceptance probabilities are not rounded to 0.
    return torch.rand(count, generator=generator, dtype=torch.float64)


def chunks(total: int, size: int | None) -> Iterator[slice]:
    size = total if size is None else size
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def progress(total: int, enabled: bool, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=description, mininterval=0.5, leave=False)


def data_shape_of(ebm: Any) -> tuple[int, ...]:
    return tuple(getattr(ebm, "data_shape"))


def data_log_tilt(ebm: Any, x: torch.Tensor) -> torch.Tensor:
    """``d(x)`` for data-space points ``x`` (what ``ebm.log_tilt`` gives for ``x = G(z)``)."""
    output = ebm.critic(x.reshape(-1, *data_shape_of(ebm))).reshape(-1)
    return critic_output_to_log_tilt(output, getattr(ebm, "critic_output", "logit"))


def generate_and_tilt(ebm: Any, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``G(z)`` and ``d(G(z))`` (float64) with one generator pass: ``ebm.log_tilt`` without recomputing G."""
    x = ebm.generate(z)
    return x, data_log_tilt(ebm, x).to(torch.float64)


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()


def check_common(n: Any, batch_size: Any) -> tuple[int, int | None]:
    n = check_int("n (the number of samples)", n, 1)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, 1)
    return n, batch_size
