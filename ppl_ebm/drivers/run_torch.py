"""Run samplers on the torch backend: our pure kernels in a tight loop, Pyro's NUTS/HMC.

Mirrors :mod:`ppl_ebm.drivers.run_jax` name for name; the chunk/checkpoint/budget loop is
:func:`ppl_ebm.drivers.loop.run_chunks`, shared by both. Each runner returns
``(final state, latents, stats)`` or ``(latents, stats)`` (NUTS/HMC, whose state Pyro owns),
``latents`` a numpy array ``(chain, draw, dim)`` of flat unconstrained positions and ``stats``
as documented on :class:`ppl_ebm.result.SampleResult`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pyro
import torch
from pyro.infer import MCMC, NUTS

from ppl_ebm.drivers.distributed import check_resumed_steps, warmup_collectives
from ppl_ebm.drivers.loop import warn_capped, run_chunks
from ppl_ebm.kernels import cross_chain_torch
from ppl_ebm.kernels.ppl_options import check_ppl_options
from ppl_ebm.ppl.pyro_hmc_cap import CappedHMC
from ppl_ebm.kernels.langevin_torch import Proposal, batched_value_and_grad
from ppl_ebm.kernels.random_torch import ChainBlockGenerator
from ppl_ebm.kernels.samplers_torch import LangevinParams, LangevinSampler, SamplerState
from ppl_ebm.kernels.adaptation.mass_matrix import reported_inverse_mass
from ppl_ebm.result import SamplerStats

__all__ = ["ChainState", "TorchProblem", "chain_block", "init_chain", "run_hmc", "run_langevin"]


class ChainState(NamedTuple):
    """See :class:`ppl_ebm.drivers.run_jax.ChainState`; ``rng_key`` is a ``torch.Generator``
    (or None: torch's global generator)."""

    state: SamplerState
    rng_key: torch.Generator | None


class TorchProblem(NamedTuple):
    """See :class:`ppl_ebm.drivers.run_jax.JaxProblem`: here the potential and the proposal
    are plain functions (nothing is compiled, so no weights need passing as arguments)."""

    potential: Callable[[torch.Tensor], torch.Tensor]
    proposal: Proposal | None = None



class _Advance:
    """Steps in a Python loop; the kept positions go to one preallocated buffer per chunk."""

    compile_seconds = 0.0
    compiles = False  # nothing to share: warmup keeps no positions

    def __init__(self, sampler: LangevinSampler, params: LangevinParams, problem: TorchProblem):
        self.sampler, self.params, self.proposal = sampler, params, problem.proposal
        self.potential_and_grad = batched_value_and_grad(problem.potential)
        self.description = f"{sampler.name} (torch)"

    def __call__(self, chain: ChainState, num_draws: int, thinning: int, collect: bool):
        sampler, params, potential_and_grad, proposal = self.sampler, self.params, self.potential_and_grad, self.proposal
        state, rng = chain
        buffer = torch.empty((num_draws, *state.langevin.position.shape), dtype=state.langevin.position.dtype,
                             device=state.langevin.position.device) if collect else None
        with torch.no_grad():
            for draw in range(num_draws):
                for _ in range(thinning):
                    state, _ = sampler.step(rng, state, potential_and_grad, params, proposal)
                if collect:
                    buffer[draw] = state.langevin.position
        return ChainState(state, rng), (buffer.cpu().numpy() if collect else None)

    def iteration(self, chain: ChainState) -> int:
        return int(chain.state.iteration)

    def shape(self, chain: ChainState) -> tuple[int, int]:
        return tuple(chain.state.langevin.position.shape)

    def state_arrays(self, chain: ChainState) -> dict[str, np.ndarray]:
        """The state as named numpy arrays (NamedTuples walked, the Generator's bytes kept; a
        module's ``state_dict`` and an optimiser's per-parameter state, as FlEx2MCMC's flow holds)."""
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
            elif isinstance(value, torch.nn.Module):
                for key, tensor in value.state_dict().items():
                    arrays[f"{name}.{key}"] = tensor.detach().cpu().numpy()
            elif isinstance(value, torch.optim.Optimizer):
                # Its moments and step count per parameter; the param groups (the rate) are the
                # run's settings, rebuilt by the template.
                for index, entry in value.state_dict()["state"].items():
                    for key, tensor in entry.items():
                        arrays[f"{name}.state.{index}.{key}"] = torch.as_tensor(tensor).detach().cpu().numpy()
            else:
                arrays[name] = np.asarray(value)

        walk(chain, "state")
        return arrays

    def restore_state(self, template: ChainState, arrays: dict[str, np.ndarray]) -> ChainState:
        """Inverse of :meth:`state_arrays`, shaped, typed and placed like ``template`` (a module
        and its optimiser are loaded in place, so the optimiser keeps the module's parameters)."""

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
            if isinstance(value, torch.nn.Module):
                value.load_state_dict({key: torch.from_numpy(arrays[f"{name}.{key}"].copy())
                                       for key in value.state_dict()})
                return value
            if isinstance(value, torch.optim.Optimizer):
                prefix, state = f"{name}.state.", {}
                for key, array in arrays.items():
                    if key.startswith(prefix):
                        index, entry = key[len(prefix):].split(".", 1)
                        state.setdefault(int(index), {})[entry] = torch.from_numpy(array.copy())
                value.load_state_dict({"state": state, "param_groups": value.state_dict()["param_groups"]})
                return value
            return type(value)(arrays[name].item())

        return build(template, "state")

    def check_resumed(self, chain: ChainState, done: int, num_warmup: int) -> None:
        """Across torchrun ranks, refuse checkpoints at different steps while warmup is unfinished on
        one of them *and* warmup all-reduces over all ranks' chains (:func:`~ppl_ebm.drivers.
        distributed.check_resumed_steps`; what it all-reduces: :func:`~ppl_ebm.drivers.distributed.
        warmup_collectives`, the kernels' calls in :mod:`~ppl_ebm.kernels.cross_chain_torch`).
        Every rank gathers the same steps, so all of them raise and none hangs. Per-chain adaptation
        and sampling chunks need no collective: ranks resumed at different steps there catch up."""
        import torch.distributed as dist

        if not cross_chain_torch.distributed():
            return
        # The same on every rank (one sampler; the run's chain count, which mass_init requires under
        # torchrun), so every rank gathers or none does, as in run_jax. The steps go as a tensor on
        # the chains' device, as the kernels' all-reduces (NCCL gathers CUDA tensors only).
        collectives = warmup_collectives(self.sampler, chain.state.mass, chain.state.langevin.position.shape[0])
        if not collectives:
            return
        row = torch.tensor([done], dtype=torch.int64, device=chain.state.langevin.position.device)
        gathered = [torch.empty_like(row) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, row)
        check_resumed_steps([int(rank[0]) for rank in gathered], num_warmup, collectives, unit="rank")

    def logging(self, chain: ChainState) -> dict[str, str]:
        return {"step": f"{float(chain.state.step_size.mean()):.2e}",
                "acc": f"{float(chain.state.mean_acceptance.mean()):.2f}"}

    def chain_stats(self, chain: ChainState) -> dict[str, np.ndarray]:
        state = chain.state
        stats = {
            "acceptance": state.mean_acceptance.cpu().numpy(),
            "step_size": state.step_size.cpu().numpy().copy(),
            "nonfinite": state.langevin.nonfinite_count.cpu().numpy(),
            "stopped": (~state.langevin.active).cpu().numpy(),
        }
        if state.mean_independence_acceptance is not None:
            stats["independence_acceptance"] = state.mean_independence_acceptance.cpu().numpy()
        if state.mass is not None:
            stats["inverse_mass_matrix"] = reported_inverse_mass(state.mass.preconditioner.inverse_mass.cpu().numpy())
        return stats


def init_chain(sampler: LangevinSampler, params: LangevinParams, problem: TorchProblem, position: torch.Tensor,
               rng_key: torch.Generator | None) -> ChainState:
    """See :func:`ppl_ebm.drivers.run_jax.init_chain`."""
    return ChainState(sampler.init(position, batched_value_and_grad(problem.potential), params), rng_key)


def chain_block(chain: ChainState, start: int, stop: int) -> ChainState:
    """The state of chains ``start:stop`` only, for a ``torchrun`` rank: every per-chain tensor
    (leading axis = the chains) cut to the block; what all chains share (a pooled mass matrix,
    a shared step size, the iteration, the generator) kept whole. Every rank starts from the
    whole run's initial state, so a pooled estimate starts as the single process's. Whether the
    mass matrix is pooled is the sampler's (``num_chains``, the run's total), not read from the
    cut state's shapes: a block of one chain of per-chain matrices holds one group too."""
    num_chains = chain.state.langevin.position.shape[0]

    def cut(value):
        if isinstance(value, tuple) and hasattr(value, "_fields") and not isinstance(value, ChainBlockGenerator):
            return type(value)(*(cut(item) for item in value))
        if isinstance(value, torch.Tensor) and value.ndim >= 1 and value.shape[0] == num_chains:
            return value[start:stop].clone()
        return value

    return ChainState(cut(chain.state), chain.rng_key)


def run_langevin(
    sampler: LangevinSampler,
    params: LangevinParams,
    problem: TorchProblem,
    chain: ChainState,
    num_samples: int,
    thinning: int = 1,
    progress_bar: bool = True,
    sink=None,
    max_seconds: float | None = None,
) -> tuple[ChainState, np.ndarray, SamplerStats]:
    """See :func:`ppl_ebm.drivers.run_jax.run_langevin`."""
    advance = _Advance(sampler, params, problem)
    return run_chunks(advance, chain, int(params.num_warmup), num_samples, thinning, sink, progress_bar, max_seconds)


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
) -> tuple[np.ndarray, SamplerStats]:
    """Pyro's NUTS or HMC on a batched potential, one chain after another in this process.

    Pyro runs one chain per kernel and parallel chains as one process each (maintainers:
    no plan to vectorise); on a 2-core machine processes only add start-up cost, so chains run
    sequentially, chain ``c`` seeded with ``seed + c``. ``potential_fn`` is batched
    ``(chains, dim) -> (chains,)``; ``initial_position`` is ``(chains, dim)``. HMC is
    :class:`~ppl_ebm.ppl.pyro_hmc_cap.CappedHMC` (``max_leapfrog_steps``, 1024 by default).

    ``max_seconds``: each chain gets ``max_seconds / chains`` for its warmup and as much for
    its sampling (Pyro's MCMC has no stopping rule, so a per-iteration hook ends the chain);
    every chain then keeps as many draws as the shortest. A chain whose warmup ran out of time
    ends the run with no draws (``stopped_in="warmup"``): the chains after it are not run.

    Progress: one bar over every chain's iterations (Pyro's own bar, one per chain, is off),
    showing the chain running and its step size and acceptance, fed by the same hook.
    """
    from tqdm.auto import tqdm

    def one_chain_potential(params):
        return potential_fn(params["z"].unsqueeze(0)).squeeze(0)

    kernel_class = {"nuts": NUTS, "hmc": CappedHMC}[sampler]
    kernel_kwargs = check_ppl_options(sampler.upper(), kernel_kwargs, "torch")
    num_chains = initial_position.shape[0]
    chains, rows = [], []
    stopped_in = None
    start = time.perf_counter()
    chain_budget = None if max_seconds is None else max_seconds / num_chains
    bar = tqdm(total=num_chains * (num_warmup + num_samples), disable=not progress_bar, desc=f"{sampler} (pyro)",
               mininterval=0.5, leave=False)
    shown = [0.0]
    for chain in range(num_chains):
        pyro.set_rng_seed(seed + chain)
        counting = _CountingPotential(one_chain_potential)
        warmup_done, kept = [], []

        def hook(kernel, params, stage, iteration):
            now = time.perf_counter()
            if progress_bar:
                bar.update(1)
                if now - shown[0] >= 0.5 or iteration == 0:
                    shown[0] = now
                    logged = kernel.logging()
                    bar.set_postfix({"chain": f"{chain + 1}/{num_chains}", "step": logged.get("step size"),
                                     "acc": logged.get("acc. prob")}, refresh=False)
            if stage.startswith("Warmup"):
                if iteration == num_warmup - 1:
                    warmup_done.append(now)
                elif chain_budget is not None and now - chain_start >= chain_budget:
                    raise _BudgetReached("warmup")
                return
            if chain_budget is not None:
                kept.append(params["z"].detach().clone())
                if now - (warmup_done[0] if warmup_done else chain_start) >= chain_budget:
                    raise _BudgetReached("sampling")

        mcmc = MCMC(
            kernel_class(potential_fn=counting, **kernel_kwargs),
            num_samples=num_samples,
            warmup_steps=num_warmup,
            initial_params={"z": initial_position[chain]},
            transforms={},
            hook_fn=hook,
            disable_progbar=True,  # our one bar over all chains instead
        )
        chain_start = time.perf_counter()
        try:
            mcmc.run()
            draws = mcmc.get_samples()["z"].reshape(num_samples, -1)
            # The kernel's tallies MCMC kept at the end of the chain, not MCMC.diagnostics(): that
            # one also computes R-hat and ESS, which fail on fewer than 4 draws, after the run.
            diagnostics = mcmc._diagnostics[0]
        except _BudgetReached as reached:
            if reached.args[0] == "sampling" and kept:
                draws = torch.stack(kept)
                if len(draws) < num_samples:
                    stopped_in = stopped_in or "sampling"
            else:
                draws = initial_position[chain].new_zeros((0, initial_position.shape[1]))
                stopped_in = "warmup"
            diagnostics = mcmc.kernel.diagnostics()  # the run's tallies so far (MCMC's need a finished run)
        chain_end = time.perf_counter()
        chains.append(draws[thinning - 1 :: thinning].detach().cpu().numpy())
        rows.append(
            (
                float(diagnostics["acceptance rate"] if diagnostics.get("acceptance rate") is not None else np.nan),
                float(mcmc.kernel.step_size),
                len(diagnostics.get("divergences") or []),
                counting.calls,
                (warmup_done[0] if warmup_done else chain_end) - chain_start,
                chain_end - chain_start,
                getattr(mcmc.kernel, "capped_iterations", 0),
            )
        )
        if stopped_in == "warmup":
            warnings.warn(f"max_seconds={max_seconds:g} ended Pyro's chain {chain} in warmup ({chain_budget:.3g} s "
                          f"per chain): no draws kept, the later chains not run (stats['stopped_in'] == 'warmup'). "
                          "Give more seconds or fewer warmup steps.", RuntimeWarning, stacklevel=2)
            break
    if progress_bar:
        bar.refresh()  # the last chain's acceptance and step, however short the run
    bar.close()
    end = time.perf_counter()
    acceptance, step_size, divergences, grad_evals, warmup, seconds, capped = (
        np.array(column) for column in zip(*rows)
    )
    pad = num_chains - len(rows)  # chains never run after a warmup stop: nothing to report
    if pad:
        acceptance, step_size = np.pad(acceptance, (0, pad), constant_values=np.nan), np.pad(
            step_size, (0, pad), constant_values=np.nan)
        divergences, grad_evals, capped = (np.pad(column, (0, pad)) for column in (divergences, grad_evals, capped))
    stats = SamplerStats(
        acceptance=acceptance,
        step_size=step_size,
        divergences=divergences.astype(np.int64),
        nonfinite=np.zeros(num_chains, dtype=np.int64),
        stopped=np.zeros(num_chains, dtype=bool),
        grad_evals=grad_evals.astype(np.int64),
        wall_seconds=end - start,
        compile_seconds=0.0,
        warmup_seconds=float(np.sum(warmup)),
        sampling_seconds=float(np.sum(seconds - warmup)),
        budget_stopped=stopped_in is not None,
        stopped_in=stopped_in,
        capped_iterations=warn_capped(capped.astype(np.int64)) if sampler == "hmc" else None,
    )
    shortest = min(len(draws) for draws in chains)
    return np.stack([draws[:shortest] for draws in chains] + [chains[0][:0]] * pad), stats


class _BudgetReached(Exception):
    """Raised from Pyro's per-iteration hook to end a chain at its time budget."""
