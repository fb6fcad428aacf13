"""The one loop both backends' Langevin drivers run: chunks, checkpoints, budget, progress.

A backend supplies an :class:`Advance` (move every chain ``num_draws x thinning`` steps and
return the kept positions; turn its state to arrays and back; read its statistics); this
loop owns what is the same for torch and JAX: warmup in chunks without collecting, then
collection in chunks of at most :data:`~ppl_ebm.drivers.draw_store.CHUNK_STEPS` steps and
:data:`~ppl_ebm.drivers.draw_store.CHUNK_BYTES`, the checkpoint after each chunk, resume from
one, the wall-clock budget, the progress bar and the timing statistics.

The driver owns the state: :func:`run_chunks` takes the chains' state and returns the final
one, so a caller continues a run (``until="converged"``) by passing it back in, and gets the
draws of one long run.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from ppl_ebm.drivers.draw_store import (
    CHUNK_STEPS, MemoryDraws, chunk_draws, phase_seconds, progress_record, resume,
)
from ppl_ebm.result import SamplerStats

__all__ = ["Advance", "run_chunks", "warn_capped", "warn_warmup_stopped"]


class Advance(Protocol):
    """What a backend gives :func:`run_chunks`."""

    description: str
    compile_seconds: float
    sampler: Any  # the pure kernel (its optional evaluations(iteration) counts the stats' evaluations)
    #: True where each chunk shape is a program compiled apart (JAX): see ``run_chunks``'s warmup.
    compiles: bool

    def __call__(self, chain: Any, num_draws: int, thinning: int, collect: bool) -> tuple[Any, np.ndarray | None]:
        """``num_draws`` x ``thinning`` steps; the kept positions ``(draws, chains, dim)`` if ``collect``."""

    def iteration(self, chain: Any) -> int: ...

    def shape(self, chain: Any) -> tuple[int, int]: ...

    def state_arrays(self, chain: Any) -> dict[str, np.ndarray]: ...

    def restore_state(self, template: Any, arrays: dict[str, np.ndarray]) -> Any: ...

    def check_resumed(self, chain: Any, done: int, num_warmup: int) -> None:
        """Raise (on every process) if the resumed state cannot continue, e.g. processes
        resumed at different steps of a warmup that pools across them."""

    def logging(self, chain: Any) -> dict[str, str]: ...

    def chain_stats(self, chain: Any) -> dict[str, np.ndarray]:
        """The state's per-chain :class:`~ppl_ebm.result.SamplerStats` fields: ``acceptance``,
        ``step_size``, ``nonfinite``, ``stopped`` and, where the kernel has them,
        ``independence_acceptance`` and ``inverse_mass_matrix``."""


def run_chunks(
    advance: Advance,
    chain: Any,
    num_warmup: int,
    num_samples: int,
    thinning: int = 1,
    sink=None,
    progress_bar: bool = True,
    max_seconds: float | None = None,
) -> tuple[Any, np.ndarray, SamplerStats]:
    """Run ``chain`` through what is left of its ``num_warmup`` warmup steps, then
    ``num_samples`` more steps keeping every ``thinning``-th position.

    Draws are counted from where this call starts (or from the end of warmup): a state that
    finished warmup continues sampling, which is how ``until="converged"`` extends a run. A
    ``sink`` holding a checkpoint (a resumable :class:`~ppl_ebm.drivers.draw_store.DrawStore`)
    resumes from it. Returns ``(final chain state, draws (chain, draw, dim), stats)``.
    """
    start = time.perf_counter()
    num_chains, dim = advance.shape(chain)
    first = advance.iteration(chain)
    origin = max(first, num_warmup)  # the first collected step's iteration count
    num_draws = num_samples // thinning
    sink = MemoryDraws(num_chains, num_draws, dim) if sink is None else sink
    chain, previous = resume(chain, sink, advance.restore_state)
    done = advance.iteration(chain)
    advance.check_resumed(chain, done, num_warmup)
    resumed_at = done
    per_chunk = chunk_draws(thinning, num_chains, dim)
    # A compiling backend runs a warmup chunk as long as the first sampling chunk with that
    # chunk's program, its positions dropped: one program to compile instead of two (the same
    # steps; the kept positions take a sampling chunk's memory, which the run holds anyway).
    shared_length = min(per_chunk, num_draws) if advance.compiles and thinning == 1 else None
    compile_before = advance.compile_seconds
    warmup_end = start if done >= num_warmup else None
    warmup_compile = 0.0
    stopped_in = None  # "warmup" or "sampling" once max_seconds ends the run
    with tqdm(total=origin + num_samples - first, disable=not progress_bar, desc=advance.description,
              mininterval=0.5, leave=False) as bar:
        bar.update(done - first)
        while done < num_warmup:
            steps = min(CHUNK_STEPS - done % CHUNK_STEPS, num_warmup - done)
            chain, _ = advance(chain, steps, 1, steps == shared_length)
            done += steps
            if sink.resumable:
                sink.checkpoint(advance.state_arrays(chain), progress_record(
                    previous, start, None, done, advance.compile_seconds - compile_before))
            if progress_bar:  # the postfix reads device values: only with a visible bar
                bar.set_postfix(advance.logging(chain), refresh=False)
            bar.update(steps)
            # The budget bounds warmup too (a collapsing step made it hang): the run ends with
            # no draws, as a chain stopped mid-adaptation is not one to keep draws from. Its
            # clock leaves compilation out, as NumPyro's (which compiles before iterating) must.
            spent = time.perf_counter() - start - (advance.compile_seconds - compile_before)
            if max_seconds is not None and done < num_warmup and spent >= max_seconds:
                stopped_in = "warmup"
                break
        if stopped_in is not None:
            pass
        elif warmup_end is None:
            warmup_end = time.perf_counter()
            warmup_compile = advance.compile_seconds - compile_before
        kept = max(0, done - origin) // thinning
        while stopped_in is None and kept < num_draws:
            count = min(per_chunk, num_draws - kept)
            chain, block = advance(chain, count, thinning, True)
            sink.write(kept, block)
            kept += count
            done += count * thinning
            if sink.resumable:
                sink.checkpoint(advance.state_arrays(chain), progress_record(
                    previous, start, warmup_end, done, advance.compile_seconds - compile_before))
            if progress_bar:
                bar.set_postfix(advance.logging(chain), refresh=False)
            bar.update(count * thinning)
            if max_seconds is not None and kept < num_draws and time.perf_counter() - warmup_end >= max_seconds:
                stopped_in = "sampling"
                break
    end = time.perf_counter()
    compile_seconds = advance.compile_seconds - compile_before
    if warmup_end is None:  # stopped in warmup: every compile was warmup's
        warmup_compile = compile_seconds
    warmup_seconds, sampling_seconds = phase_seconds(start, warmup_end, end)
    if stopped_in == "warmup":
        warn_warmup_stopped(max_seconds, done, num_warmup)
    stats = SamplerStats(
        **advance.chain_stats(chain),
        divergences=np.zeros(num_chains, dtype=np.int64),
        **_evaluations(advance, chain, num_chains),
        wall_seconds=previous.get("wall_seconds", 0.0) + end - start,
        compile_seconds=previous.get("compile_seconds", 0.0) + compile_seconds,
        warmup_seconds=previous.get("warmup_seconds", 0.0) + warmup_seconds - warmup_compile,
        sampling_seconds=previous.get("sampling_seconds", 0.0) + sampling_seconds - (compile_seconds - warmup_compile),
        resumed_at_iteration=int(resumed_at) if sink.resumable else 0,
        budget_stopped=stopped_in is not None,
        stopped_in=stopped_in,
    )
    draws = sink.draws()
    return chain, (draws[:, :kept] if kept < num_draws else draws), stats


def _evaluations(advance: Advance, chain: Any, num_chains: int) -> dict[str, np.ndarray]:
    """``grad_evals`` and, for a sampler that evaluates potentials without gradients (its
    ``evaluations(iteration) -> (gradients, potentials)``: i-SIR, Ex2MCMC), ``potential_evals``;
    from the state's iteration count, so a continued run adds up. ULA/MALA: one gradient at the
    start and one per step."""
    iteration = advance.iteration(chain)
    count = getattr(advance.sampler, "evaluations", None)
    if count is None:
        return {"grad_evals": np.full(num_chains, 1 + iteration, dtype=np.int64)}
    gradients, potentials = count(iteration)
    return {"grad_evals": np.full(num_chains, gradients, dtype=np.int64),
            "potential_evals": np.full(num_chains, potentials, dtype=np.int64)}


def warn_capped(counts: np.ndarray) -> np.ndarray:
    """Per-chain iterations HMC's leapfrog cap shortened, with a warning when there are any."""
    if counts.sum():
        warnings.warn(f"HMC's leapfrog cap (max_leapfrog_steps) shortened {int(counts.sum())} iteration(s) over "
                      f"{int((counts > 0).sum())} chain(s) (stats['capped_iterations']): the adapted step "
                      "collapsed, so trajectories are shorter than trajectory_length. The target is narrow or "
                      "ill-conditioned there; NUTS, a mass matrix or a reparametrisation may suit it better.",
                      RuntimeWarning, stacklevel=2)
    return counts


def warn_warmup_stopped(max_seconds: float, done: int, num_warmup: int) -> None:
    """The warning of a run ``max_seconds`` ended in warmup (no draws are kept from it)."""
    warnings.warn(f"max_seconds={max_seconds:g} ended the run in warmup, after {done} of {num_warmup} warmup "
                  "steps: no draws kept (stats['stopped_in'] == 'warmup'). Give more seconds or fewer "
                  "warmup steps.", RuntimeWarning, stacklevel=3)
