"""Run a BlackJAX many-chain sampler (JAX backend): its own warmup, then its tuned kernel.

A sampler here is a file ``kernels/<module>_jax.py`` (named by its registry entry) with
``adapt(rng_key, logdensity, positions, num_warmup, num_samples, options) -> (states,
parameters, warmup gradients per chain)``, ``build(logdensity, parameters) -> step`` (one
chain) and ``gradients(info)`` (gradient evaluations of one step). The warmup is one compiled
program (BlackJAX's adaptation is a ``lax.scan``); sampling runs the step on every chain
(``jax.vmap``) in compiled chunks of at most :data:`CHUNK_DRAWS` draws, one program for the
chunk length (and one for a shorter last chunk), so the bar moves and shows the acceptance.
Each program is compiled ahead of time (``jit(...).lower(...).compile()``), so
``compile_seconds`` is measured apart from the warmup and sampling it serves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ppl_ebm.result import SamplerStats

__all__ = ["CHUNK_DRAWS", "run_blackjax"]

CHUNK_DRAWS = 100


def _compiled(function: Callable, *args):
    """``function`` compiled for ``args``, and the seconds it took."""
    start = time.perf_counter()
    program = jax.jit(function).lower(*args).compile()
    return program, time.perf_counter() - start


def run_blackjax(
    module: str,
    potential_fn: Callable[[jax.Array], jax.Array],
    initial_position: jax.Array,
    num_warmup: int,
    num_samples: int,
    seed: int,
    thinning: int = 1,
    progress_bar: bool = True,
    options: dict[str, Any] | None = None,
) -> tuple[np.ndarray, SamplerStats]:
    """Warm up and sample ``initial_position`` ``(chains, dim)`` on the batched ``potential_fn``;
    returns ``(draws (chain, draw, dim), stats)``."""
    from tqdm.auto import tqdm

    recipe = import_module(f"ppl_ebm.kernels.{module}_jax")
    options = dict(options or {})
    num_chains, dim = initial_position.shape
    num_draws = num_samples // thinning

    def logdensity(position):  # BlackJAX's sign: log density of one chain's position
        return -potential_fn(position[None])[0]

    start = time.perf_counter()
    warmup_key, sample_key = jax.random.split(jax.random.key(seed))
    with tqdm(total=num_warmup + num_samples, disable=not progress_bar, desc=f"{module} (blackjax)",
              mininterval=0.5, leave=False) as bar:
        functions: dict[str, Callable] = {}  # parameters that are functions (ChEES's jitter), kept from tracing

        def adapt(key, position):
            states, parameters, gradients = recipe.adapt(key, logdensity, position, num_warmup, num_samples, options)
            functions.update({name: value for name, value in parameters.items() if callable(value)})
            return states, {name: value for name, value in parameters.items() if not callable(value)}, gradients

        warm, compile_seconds = _compiled(adapt, warmup_key, initial_position)
        warmup_start = time.perf_counter()
        states, parameters, warmup_gradients = jax.block_until_ready(warm(warmup_key, initial_position))
        parameters = {**parameters, **functions}
        warmup_end = time.perf_counter()
        bar.update(num_warmup)
        step = recipe.build(logdensity, parameters)

        def chunk(states, key, length: int):
            def one(carry, _):
                states, key = carry
                key, subkey = jax.random.split(key)
                states, info = jax.vmap(step)(jax.random.split(subkey, num_chains), states)
                divergent = getattr(info, "is_divergent", jnp.zeros(num_chains, dtype=bool))
                return (states, key), (info.acceptance_rate, recipe.gradients(info), divergent)

            def thin(carry, _):
                carry, (acceptance, gradients, divergent) = jax.lax.scan(one, carry, None, length=thinning)
                return carry, (carry[0].position, acceptance.sum(0), gradients.sum(0), divergent.sum(0))

            return jax.lax.scan(thin, (states, key), None, length=length)

        programs: dict[int, Callable] = {}
        sampling_compile = 0.0
        pieces, carry = [], (states, sample_key)
        done = 0
        while done < num_draws:
            length = min(CHUNK_DRAWS, num_draws - done)
            if length not in programs:
                programs[length], seconds = _compiled(lambda s, k, n=length: chunk(s, k, n), *carry)
                sampling_compile += seconds
            carry, piece = programs[length](*carry)
            pieces.append(jax.device_get(piece))
            done += length
            bar.update(length * thinning)
            if progress_bar:
                bar.set_postfix({"step": f"{float(jnp.mean(parameters['step_size'])):.2e}",
                                 "acc": f"{float(np.mean(piece[1])) / thinning:.2f}"}, refresh=done >= num_draws)
    end = time.perf_counter()
    positions, acceptance, gradients, divergent = (np.concatenate([piece[i] for piece in pieces]) for i in range(4))
    compile_seconds += sampling_compile
    stats = SamplerStats(
        acceptance=acceptance.sum(axis=0) / num_samples,
        step_size=np.full(num_chains, float(np.mean(parameters["step_size"]))),
        divergences=divergent.sum(axis=0).astype(np.int64),
        nonfinite=np.zeros(num_chains, dtype=np.int64),
        stopped=np.zeros(num_chains, dtype=bool),
        grad_evals=(np.asarray(warmup_gradients) + gradients.sum(axis=0)).astype(np.int64),
        wall_seconds=end - start,
        compile_seconds=compile_seconds,
        warmup_seconds=warmup_end - warmup_start,
        sampling_seconds=end - warmup_end - sampling_compile,
        budget_stopped=False,
    )
    return np.ascontiguousarray(positions.transpose(1, 0, 2)).reshape(num_chains, num_draws, dim), stats
