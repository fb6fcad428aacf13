"""How much memory a run's results take, checked before anything is allocated.

A run keeps its draws, ``num_chains x (num_samples // thinning) x dim`` float32, in memory
unless they stream to ``draws_dir``; the sites in the prior's support (when the prior is not
N(0, I) or the target is a model; a streamed run writes them beside its draws) and
``return_generated``'s outputs are further arrays of the same number of draws. Allocating
more than the machine has ends in the allocator (or, with overcommit, in the kernel's OOM
killer after hours of sampling), so :func:`check_fits`
refuses before: with the arguments to change, and ``draws_dir`` where it would help.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

__all__ = ["available_memory", "check_fits", "check_disk"]

#: The share of the available memory the results may take: the kernels, the networks'
#: activations and the rest of the process need the remainder.
MEMORY_SHARE = 0.8


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``, else total
    physical memory), or None when the platform does not say."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(size: float) -> str:
    return f"{size / 2**30:.3g} GiB"


def check_fits(num_chains: int, num_draws: int, dim: int, *, streamed: bool, site_copy: bool,
               generated_size: int = 0, available: int | None = None) -> int:
    """Refuse a run whose in-memory results exceed :data:`MEMORY_SHARE` of ``available``
    (default :func:`available_memory`); returns the estimate in bytes."""
    per_draw = 4 * num_chains * num_draws
    draws = 0 if streamed else per_draw * dim
    estimate = draws + (per_draw * dim if site_copy else 0) + per_draw * generated_size
    available = available_memory() if available is None else available
    if available is None or estimate <= MEMORY_SHARE * available:
        return estimate
    # draws_dir streams the draws and a model's sites (written beside them), not generated outputs.
    hint = ("; or pass draws_dir=<folder> to stream the draws to disk" if not streamed and not generated_size
            else "")
    extras = [part for part, present in (("the sites in the prior's support", site_copy),
                                         ("return_generated's outputs", generated_size)) if present]
    raise MemoryError(
        f"This run's results need about {_gib(estimate)} (num_chains={num_chains} x "
        f"{num_draws} kept draws (num_samples // thinning) x dim={dim} float32"
        f"{', plus ' + ' and '.join(extras) if extras else ''}), more than {MEMORY_SHARE:.0%} of the "
        f"{_gib(available)} available. Lower num_chains or num_samples, or raise thinning{hint}."
    )


def check_disk(directory: Path, size: int) -> None:
    """Refuse a store whose draws file cannot fit on the disk under ``directory``."""
    probe = Path(directory)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if size > free:
        raise OSError(
            f"draws_dir {directory}: the draws need {_gib(size)} and the disk has {_gib(free)} free. "
            "Pass a draws_dir on a larger disk, or lower num_chains or num_samples."
        )
