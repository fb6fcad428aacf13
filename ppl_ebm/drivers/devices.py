"""Device selection, one name for both backends: ``"cpu"``, ``"cuda"``/``"gpu"``, ``"cuda:1"``.

Checked at the boundary (``sample(device=...)``, ``ppl-ebm compare --device``) so that asking for
a GPU the machine does not have fails at once with what to do, not after a long CPU run.
"""

from __future__ import annotations

import re

__all__ = ["check_device", "torch_device", "jax_device"]

_NAME = re.compile(r"^(cpu|cuda|gpu)(?::(\d+))?$")


def _parse(name: str) -> tuple[str, int]:
    match = _NAME.match(str(name).strip().lower())
    if match is None:
        raise ValueError(f"device must be 'cpu', 'cuda' (or 'gpu') or 'cuda:N'; got {name!r}.")
    kind = "cpu" if match.group(1) == "cpu" else "gpu"
    return kind, int(match.group(2) or 0)


def torch_device(name: str):
    """The ``torch.device`` for ``name``; a clear error when torch cannot see that GPU."""
    import torch

    kind, index = _parse(name)
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: torch sees no CUDA GPU (torch.cuda.is_available() is False). "
                         "Use device='cpu', or install a CUDA build of torch on a GPU machine.")
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: torch sees {torch.cuda.device_count()} GPU(s), numbered from 0.")
    return torch.device("cuda", index)


def jax_device(name: str):
    """The ``jax.Device`` for ``name``; a clear error when JAX has no such backend."""
    import jax

    kind, index = _parse(name)
    try:
        devices = jax.devices(kind)
    except RuntimeError:
        raise ValueError(f"device {name!r}: JAX has no {kind.upper()} backend here (jax.devices() = "
                         f"{jax.devices()}). Use device='cpu', or install jax[cuda12] on a GPU machine.") from None
    if index >= len(devices):
        raise ValueError(f"device {name!r}: JAX sees {len(devices)} {kind} device(s), numbered from 0.")
    return devices[index]


def check_device(name: str | None) -> None:
    """Resolve ``name`` for both backends now, so a missing GPU fails before any sampling (None: nothing)."""
    if name is not None:
        torch_device(name)
        jax_device(name)
