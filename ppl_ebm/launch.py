"""What ``ppl-ebm sample`` does besides parsing: load the target, join the launcher's process
group, sample into a store, say what this process wrote.

One command serves one process, several ``torchrun`` ranks, or several JAX processes; the
launcher (torchrun, Slurm's ``srun``, a plain ``ssh`` loop) starts the copies and sets their
environment, and this module only joins what the launcher set up:

* torch: ``torchrun`` sets ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR``; we call
  ``torch.distributed.init_process_group`` (gloo on CPU, NCCL with ``--device cuda``).
* JAX: ``--coordinator HOST:PORT --num-processes N --process-id I`` (or Slurm's variables,
  which ``jax.distributed.initialize()`` reads itself) start ``jax.distributed``; on CPU the
  cross-process collectives go through gloo (``jax_cpu_collectives_implementation``).
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path
from typing import Any

__all__ = ["join_process_group", "load_target", "parse_options"]


def load_target(model: str, calibrated: bool):
    """A zoo model (name or folder) as a latent EBM, or a Python file's ``target`` (a
    LatentEBM) or ``model`` (a Pyro model for torch, a NumPyro model for JAX)."""
    if model.endswith(".py"):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"--model {model}: no such file.")
        names = runpy.run_path(str(path))
        for name in ("target", "model"):
            if name in names:
                return names[name]
        raise ValueError(f"--model {model} defines neither `target` (a ppl_ebm.LatentEBM) nor `model` (a Pyro or "
                         "NumPyro model); define one of them.")
    from ppl_ebm.zoo import load_latent_ebm

    return load_latent_ebm(model, calibrated=calibrated)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as sampler options; values read as JSON (numbers, true/false, null)
    or kept as strings."""
    import json

    options = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--option must be key=value (e.g. step_size=0.05), got {pair!r}.")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def join_process_group(backend: str, device: str | None, coordinator: str | None, num_processes: int | None,
                       process_id: int | None) -> tuple[int, int]:
    """Join the launcher's processes, if any; returns ``(this process, processes)``."""
    if backend == "torch":
        if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
            return 0, 1
        import torch.distributed as dist

        if not dist.is_initialized():
            cuda = device is not None and device.startswith(("cuda", "gpu"))
            if cuda:
                import torch

                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            dist.init_process_group("nccl" if cuda else "gloo")
        return dist.get_rank(), dist.get_world_size()
    import jax

    if coordinator is None and int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return 0, 1
    if jax.config.jax_platforms in (None, "", "cpu") and (device is None or device == "cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return jax.process_index(), jax.process_count()
