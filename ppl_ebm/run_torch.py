"""Run samplers on the torch backend: our batched kernels in a tight loop, Pyro's NUTS/HMC.

Mirrors :mod:`ppl_ebm.run_jax` name for name. Each runner returns ``(latents, stats)`` with
``latents`` a numpy array ``(chain, draw, dim)`` of flat unconstrained positions and ``stats``
as documented on :class:`ppl_ebm.result.SampleResult`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pyro
import torch
from pyro.infer import HMC, MCMC, NUTS
from tqdm.auto import tqdm

from ppl_ebm.pyro_kernels import _BatchedLangevin

__all__ = ["run_langevin", "run_hmc"]


def _progress(total: int, enabled: bool, description: str):
    return tqdm(total=total, disable=not enabled, desc=description, mininterval=0.5, leave=False)


def run_langevin(
    kernel: _BatchedLangevin,
    num_warmup: int,
    num_samples: int,
    thinning: int = 1,
    init_params: torch.Tensor | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    progress_bar: bool = True,
) -> tuple[np.ndarray, dict]:
    """Drive a Pyro ULA/MALA kernel's pure ``transition`` without Pyro's per-step overhead.

    ``init_params`` (chains, dim) defaults to the kernel's own ``initial_params``.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    init_params = kernel._initial_params if init_params is None else init_params
    start = time.perf_counter()
    state = kernel.init_state(kernel._rng, num_warmup, init_params, model_args, model_kwargs)
    num_draws = num_samples // thinning
    draws = torch.empty(num_draws, *state.z.shape, dtype=state.z.dtype, device=state.z.device)
    total = num_warmup + num_samples
    update_every = max(1, total // 200)
    warmup_end = start
    with torch.no_grad(), _progress(total, progress_bar, f"{type(kernel).__name__} (torch)") as bar:
        for iteration in range(total):
            state = kernel.transition(state)
            sample_index = iteration - num_warmup
            if sample_index >= 0 and (sample_index + 1) % thinning == 0:
                draws[sample_index // thinning] = state.z
            if iteration + 1 == num_warmup:
                warmup_end = time.perf_counter()
            # Only with a visible bar: the postfix reads tensors (a device sync on a GPU).
            if progress_bar and ((iteration + 1) % update_every == 0 or iteration + 1 == total):
                bar.set_postfix(kernel_logging(state), refresh=False)
                bar.update(iteration + 1 - bar.n)
    if num_warmup == 0:
        warmup_end = start
    end = time.perf_counter()
    kernel.state = state
    num_chains = state.z.shape[0]
    stats = {
        "acceptance": state.mean_acceptance.cpu().numpy(),
        "step_size": state.step_size.cpu().numpy(),
        "divergences": np.zeros(num_chains, dtype=np.int64),
        "nonfinite": state.langevin.nonfinite_count.cpu().numpy(),
        "stopped": (~state.langevin.active).cpu().numpy(),
        "grad_evals": np.full(num_chains, 1 + total, dtype=np.int64),
        "wall_seconds": end - start,
        "compile_seconds": 0.0,
        "warmup_seconds": warmup_end - start,
        "sampling_seconds": end - warmup_end,
    }
    return draws.transpose(0, 1).cpu().numpy(), stats


def kernel_logging(state) -> dict[str, str]:
    return {
        "step": f"{float(state.step_size.mean()):.2e}",
        "acc": f"{float(state.mean_acceptance.mean()):.2f}",
    }


class _CountingPotential:
    """Counts potential evaluations: Pyro exposes no per-iteration gradient count, and every
    call inside its integrator is followed by a backward pass."""

    def __init__(self, potential_fn: Callable):
        self.potential_fn = potential_fn
        self.calls = 0

    def __call__(self, params):
        self.calls += 1
        return self.potential_fn(params)


def run_hmc(
    sampler: str,
    potential_fn: Callable[[torch.Tensor], torch.Tensor],
    initial_position: torch.Tensor,
    num_warmup: int,
    num_samples: int,
    seed: int,
    thinning: int = 1,
    progress_bar: bool = True,
    **kernel_kwargs,
) -> tuple[np.ndarray, dict]:
    """Pyro's NUTS or HMC on a batched potential, one chain after another in this process.

    Pyro runs one chain per kernel and parallel chains as one process each (maintainers:
    no plan to vectorise); on a 2-core machine processes only add start-up cost, so chains run
    sequentially, chain ``c`` seeded with ``seed + c``. ``potential_fn`` is batched
    ``(chains, dim) -> (chains,)``; ``initial_position`` is ``(chains, dim)``.
    """

    def one_chain_potential(params):
        return potential_fn(params["z"].unsqueeze(0)).squeeze(0)

    kernel_class = {"nuts": NUTS, "hmc": HMC}[sampler]
    num_chains = initial_position.shape[0]
    chains, rows = [], []
    start = time.perf_counter()
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        counting = _CountingPotential(one_chain_potential)
        warmup_done = []

        def note_warmup_end(kernel, params, stage, iteration):
            if stage.startswith("Warmup") and iteration == num_warmup - 1:
                warmup_done.append(time.perf_counter())

        mcmc = MCMC(
            kernel_class(potential_fn=counting, **kernel_kwargs),
            num_samples=num_samples,
            warmup_steps=num_warmup,
            initial_params={"z": initial_position[chain]},
            transforms={},
            hook_fn=note_warmup_end,
            disable_progbar=not progress_bar,
        )
        chain_start = time.perf_counter()
        mcmc.run()
        chain_end = time.perf_counter()
        draws = mcmc.get_samples()["z"].reshape(num_samples, -1)
        chains.append(draws[thinning - 1 :: thinning].detach().cpu().numpy())
        diagnostics = mcmc.diagnostics()
        rows.append(
            (
                float(diagnostics.get("acceptance rate", {}).get("chain 0", np.nan)),
                float(mcmc.kernel.step_size),
                len(diagnostics.get("divergences", {}).get("chain 0", [])),
                counting.calls,
                (warmup_done[0] if warmup_done else chain_start) - chain_start,
                chain_end - chain_start,
            )
        )
    end = time.perf_counter()
    acceptance, step_size, divergences, grad_evals, warmup, seconds = (
        np.array(column) for column in zip(*rows)
    )
    stats = {
        "acceptance": acceptance,
        "step_size": step_size,
        "divergences": divergences.astype(np.int64),
        "nonfinite": np.zeros(num_chains, dtype=np.int64),
        "stopped": np.zeros(num_chains, dtype=bool),
        "grad_evals": grad_evals.astype(np.int64),
        "wall_seconds": end - start,
        "compile_seconds": 0.0,
        "warmup_seconds": float(np.sum(warmup)),
        "sampling_seconds": float(np.sum(seconds - warmup)),
    }
    return np.stack(chains), stats
