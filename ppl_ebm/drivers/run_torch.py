"""Run samplers on the torch backend: our batched kernels in a tight loop, Pyro's NUTS/HMC.

Mirrors :mod:`ppl_ebm.drivers.run_jax` name for name. Each runner returns ``(latents, stats)`` with
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

from ppl_ebm.drivers.draw_store import (
    CHUNK_STEPS, DrawStore, MemoryDraws, chunk_draws, phase_seconds, progress_record, resume,
)
from ppl_ebm.ppl.pyro_kernels import _BatchedLangevin

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
    store: DrawStore | None = None,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, dict]:
    """Drive a Pyro ULA/MALA kernel's pure ``transition`` without Pyro's per-step overhead.

    ``init_params`` (chains, dim) defaults to the kernel's own ``initial_params``. Draws are
    handed over in chunks: to memory, or to ``store`` (a :class:`~ppl_ebm.drivers.draw_store.DrawStore`),
    which also receives the kernel state after every chunk and, when it holds a checkpoint,
    is resumed from it (the returned draws are then its memory map). ``max_seconds`` ends
    sampling at the first chunk boundary past that many seconds after warmup.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    init_params = kernel._initial_params if init_params is None else init_params
    start = time.perf_counter()
    state = kernel.init_state(kernel._rng, num_warmup, init_params, model_args, model_kwargs)
    num_chains, dim = state.z.shape
    num_draws = num_samples // thinning
    sink = MemoryDraws(num_chains, num_draws, dim) if store is None else store
    state, previous = resume(state, sink, _restore_state)
    resumed_at = state.i
    per_chunk = chunk_draws(thinning, num_chains, dim)
    buffer = torch.empty(per_chunk, num_chains, dim, dtype=state.z.dtype, device=state.z.device)
    held = 0
    total = num_warmup + num_samples
    update_every = max(1, total // 200)
    warmup_end = start if resumed_at >= num_warmup else None
    done = resumed_at
    with torch.no_grad(), _progress(total, progress_bar, f"{type(kernel).__name__} (torch)") as bar:
        bar.update(resumed_at)
        for iteration in range(resumed_at, total):
            state = kernel.transition(state)
            done = iteration + 1
            if done > num_warmup and (done - num_warmup) % thinning == 0:
                buffer[held] = state.z
                held += 1
            if done == num_warmup:
                warmup_end = time.perf_counter()
            in_warmup_boundary = done <= num_warmup and (done % CHUNK_STEPS == 0 or done == num_warmup)
            if held == per_chunk or done == total or in_warmup_boundary:
                kept = max(0, done - num_warmup) // thinning
                if held:
                    sink.write(kept - held, buffer[:held].cpu().numpy())
                    held = 0
                if sink.resumable:
                    sink.checkpoint(_state_arrays(state), progress_record(previous, start, warmup_end, done))
                if max_seconds is not None and done > num_warmup and time.perf_counter() - warmup_end >= max_seconds:
                    break
            # Only with a visible bar: the postfix reads tensors (a device sync on a GPU).
            if progress_bar and (done % update_every == 0 or done == total):
                bar.set_postfix(kernel_logging(state), refresh=False)
                bar.update(done - bar.n)
    end = time.perf_counter()
    kernel.state = state
    warmup_seconds, sampling_seconds = phase_seconds(start, warmup_end, end)
    stats = {
        "acceptance": state.mean_acceptance.cpu().numpy(),
        "step_size": state.step_size.cpu().numpy(),
        "divergences": np.zeros(num_chains, dtype=np.int64),
        "nonfinite": state.langevin.nonfinite_count.cpu().numpy(),
        "stopped": (~state.langevin.active).cpu().numpy(),
        "grad_evals": np.full(num_chains, 1 + done, dtype=np.int64),
        "wall_seconds": previous.get("wall_seconds", 0.0) + end - start,
        "compile_seconds": 0.0,
        "warmup_seconds": previous.get("warmup_seconds", 0.0) + warmup_seconds,
        "sampling_seconds": previous.get("sampling_seconds", 0.0) + sampling_seconds,
        "resumed_at_iteration": int(resumed_at),
        "budget_stopped": done < total,
    }
    if state.mean_independence_acceptance is not None:
        stats["independence_acceptance"] = state.mean_independence_acceptance.cpu().numpy()
    kept = max(0, done - num_warmup) // thinning
    return sink.draws()[:, :kept] if done < total else sink.draws(), stats


def _state_arrays(state) -> dict[str, np.ndarray]:
    """The kernel state as named numpy arrays (NamedTuples walked, the Generator's bytes kept)."""
    arrays: dict[str, np.ndarray] = {}

    def walk(value, name):
        if value is None:
            return
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            for field in value._fields:
                walk(getattr(value, field), f"{name}.{field}")
        elif isinstance(value, torch.Generator):
            arrays[name] = value.get_state().numpy()
        elif isinstance(value, torch.Tensor):
            arrays[name] = value.detach().cpu().numpy()
        else:
            arrays[name] = np.asarray(value)

    walk(state, "state")
    return arrays


def _restore_state(template, arrays: dict[str, np.ndarray]):
    """Inverse of :func:`_state_arrays`, shaped, typed and placed like ``template``."""

    def build(value, name):
        if value is None:
            return None
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*(build(getattr(value, field), f"{name}.{field}") for field in value._fields))
        if isinstance(value, torch.Generator):
            value.set_state(torch.from_numpy(arrays[name].copy()))
            return value
        if isinstance(value, torch.Tensor):
            return torch.from_numpy(arrays[name].copy()).to(device=value.device, dtype=value.dtype)
        return type(value)(arrays[name].item())

    return build(template, "state")


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
    max_seconds: float | None = None,
    **kernel_kwargs,
) -> tuple[np.ndarray, dict]:
    """Pyro's NUTS or HMC on a batched potential, one chain after another in this process.

    Pyro runs one chain per kernel and parallel chains as one process each (maintainers:
    no plan to vectorise); on a 2-core machine processes only add start-up cost, so chains run
    sequentially, chain ``c`` seeded with ``seed + c``. ``potential_fn`` is batched
    ``(chains, dim) -> (chains,)``; ``initial_position`` is ``(chains, dim)``.

    ``max_seconds``: each chain samples for at most ``max_seconds / chains`` after its warmup
    (Pyro's MCMC has no stopping rule, so a hook keeps the draws and ends the run); every
    chain then keeps as many draws as the shortest.
    """

    def one_chain_potential(params):
        return potential_fn(params["z"].unsqueeze(0)).squeeze(0)

    kernel_class = {"nuts": NUTS, "hmc": HMC}[sampler]
    num_chains = initial_position.shape[0]
    chains, rows = [], []
    start = time.perf_counter()
    chain_budget = None if max_seconds is None else max_seconds / num_chains
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        counting = _CountingPotential(one_chain_potential)
        warmup_done, kept = [], []

        def hook(kernel, params, stage, iteration):
            if stage.startswith("Warmup"):
                if iteration == num_warmup - 1:
                    warmup_done.append(time.perf_counter())
                return
            if chain_budget is not None:
                kept.append(params["z"].detach().clone())
                if time.perf_counter() - (warmup_done[0] if warmup_done else chain_start) >= chain_budget:
                    raise _BudgetReached

        mcmc = MCMC(
            kernel_class(potential_fn=counting, **kernel_kwargs),
            num_samples=num_samples,
            warmup_steps=num_warmup,
            initial_params={"z": initial_position[chain]},
            transforms={},
            hook_fn=hook,
            disable_progbar=not progress_bar,
        )
        chain_start = time.perf_counter()
        try:
            mcmc.run()
            draws = mcmc.get_samples()["z"].reshape(num_samples, -1)
            finished = mcmc.diagnostics()
            diagnostics = {key: finished.get(key, {}).get("chain 0") for key in ("acceptance rate", "divergences")}
        except _BudgetReached:
            draws = torch.stack(kept)
            diagnostics = mcmc.kernel.diagnostics()  # the run's tallies so far (MCMC's need a finished run)
        chain_end = time.perf_counter()
        chains.append(draws[thinning - 1 :: thinning].detach().cpu().numpy())
        rows.append(
            (
                float(diagnostics["acceptance rate"] if diagnostics["acceptance rate"] is not None else np.nan),
                float(mcmc.kernel.step_size),
                len(diagnostics["divergences"] or []),
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
        "budget_stopped": any(len(draws) < num_samples // thinning for draws in chains),
    }
    shortest = min(len(draws) for draws in chains)
    return np.stack([draws[:shortest] for draws in chains]), stats


class _BudgetReached(Exception):
    """Raised from Pyro's per-iteration hook to end a chain at its time budget."""
