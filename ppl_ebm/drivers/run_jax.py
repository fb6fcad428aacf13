"""Run samplers on the JAX backend: our batched kernels under ``lax.scan``, NumPyro's NUTS/HMC.

Mirrors :mod:`ppl_ebm.drivers.run_torch` name for name. Steps run in jitted chunks (a progress bar
between chunks); each chunk shape is compiled once, and that time is reported apart. A
LatentEBMJax target's programs take its weights as an argument and are kept across calls
(``_PROGRAMS``), so sampling one target again, or one with other weights of the same shapes,
compiles nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import HMC, MCMC, NUTS
from tqdm.auto import tqdm

from ppl_ebm.drivers.draw_store import (
    CHUNK_STEPS, DrawStore, MemoryDraws, chunk_draws, phase_seconds, progress_record, resume,
)
from ppl_ebm.ppl.numpyro_kernels import _batched_value_and_grad, _BatchedLangevin

__all__ = ["run_langevin", "run_hmc"]


def _progress(total: int, enabled: bool, description: str):
    return tqdm(total=total, disable=not enabled, desc=description, mininterval=0.5, leave=False)


# Compiled chunk programs shared by sample() calls on one target (a study, a protocol run in
# batches of chains): each call used to compile afresh, 2-8 s per call for the SN-GAN net on a
# GPU. Shared only when the potential is a method of a pytree (LatentEBMJax), so that its
# weights are an argument of the program, not constants baked into it, and every kernel
# setting is a plain value that can go in the key.
_PROGRAMS: OrderedDict = OrderedDict()
_PROGRAM_LIMIT = 16  # programs hold device code and buffers: keep the recent ones only
_PLAIN = (int, float, bool, str, type(None))
_TARGET_FIELDS = ("_model", "_potential_fn", "_potential_and_grad", "_constrain")


def _pytree_target(kernel: _BatchedLangevin):
    """The pytree whose method is the kernel's potential (a LatentEBMJax), else None."""
    method = getattr(kernel, "_potential_fn", None)
    owner = getattr(method, "__self__", None)
    if kernel._model is not None or owner is None:
        return None
    leaves = jax.tree_util.tree_leaves(owner)
    is_pytree = not (len(leaves) == 1 and leaves[0] is owner)  # an unregistered object is its own leaf
    return owner if is_pytree else None


def _settings(kernel: _BatchedLangevin) -> tuple | None:
    """Everything but the target that the traced transition reads, as a key; None when a
    setting is not a plain value (or a tuple of them, like ULA's StepSchedule)."""
    items = []
    for name, value in sorted(vars(kernel).items()):
        if name in _TARGET_FIELDS:
            continue
        plain = isinstance(value, _PLAIN) or (isinstance(value, tuple) and all(isinstance(v, _PLAIN) for v in value))
        if not plain:
            return None
        items.append((name, type(value).__name__, value))
    return (type(kernel).__module__, type(kernel).__qualname__, tuple(items))


def _avals(tree) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves)


class _ChunkRunner:
    """Compiles ``num_draws`` draws of ``thinning`` transitions each, once per shape (and, for a
    pytree target, once per target structure across calls: see ``_PROGRAMS``)."""

    def __init__(self, kernel: _BatchedLangevin):
        self.kernel = kernel
        self.target = _pytree_target(kernel)
        self.settings = None if self.target is None else _settings(kernel)
        self.compiled: dict[tuple[int, int, bool], Callable] = {}
        self.compile_seconds = 0.0

    def _advance(self, target, state, num_draws: int, thinning: int, collect: bool):
        kernel, saved = self.kernel, self.kernel._potential_and_grad
        if target is not None:  # trace against the argument's weights, not the closed-over ones
            kernel._potential_and_grad = _batched_value_and_grad(getattr(target, kernel._potential_fn.__name__))
        try:
            def thin(s, _):
                s = jax.lax.fori_loop(0, thinning, lambda _, inner: kernel.transition(inner), s)
                return s, (s.z if collect else None)

            return jax.lax.scan(thin, state, None, length=num_draws)
        finally:
            kernel._potential_and_grad = saved

    def _program(self, state, key) -> Callable:
        shared = self.settings is not None
        if shared:
            device = jax.tree_util.tree_leaves(state)[0].devices()
            cache_key = (self.settings, key, _avals(self.target), _avals(state), tuple(sorted(map(str, device))),
                         str(jax.config.jax_default_matmul_precision))
            if cache_key in _PROGRAMS:
                _PROGRAMS.move_to_end(cache_key)
                return _PROGRAMS[cache_key]
        start = time.perf_counter()
        jitted = jax.jit(self._advance, static_argnums=(2, 3, 4))
        program = jitted.lower(self.target if shared else None, state, *key).compile()
        self.compile_seconds += time.perf_counter() - start
        if shared:
            _PROGRAMS[cache_key] = program
            while len(_PROGRAMS) > _PROGRAM_LIMIT:
                _PROGRAMS.popitem(last=False)
        return program

    def __call__(self, state, num_draws: int, thinning: int, collect: bool):
        key = (num_draws, thinning, collect)
        if key not in self.compiled:
            self.compiled[key] = self._program(state, key)
        target = self.target if self.settings is not None else None
        state, draws = self.compiled[key](target, state)
        return jax.block_until_ready(state), draws


def run_langevin(
    kernel: _BatchedLangevin,
    rng_key: jax.Array,
    num_warmup: int,
    num_samples: int,
    thinning: int = 1,
    init_params: jax.Array | None = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    progress_bar: bool = True,
    store: DrawStore | None = None,
    max_seconds: float | None = None,
) -> tuple[np.ndarray, dict]:
    """Drive a NumPyro ULA/MALA kernel's pure ``transition`` in jitted ``lax.scan`` chunks.

    Draws are handed over a chunk at a time: to memory, or to ``store`` (a
    :class:`~ppl_ebm.drivers.draw_store.DrawStore`), which also receives the kernel state after every
    chunk and, when it holds a checkpoint, is resumed from it (the returned draws are then
    its memory map). ``max_seconds`` ends sampling at the first chunk boundary past that
    many seconds after warmup.
    """
    model_kwargs = {} if model_kwargs is None else model_kwargs
    start = time.perf_counter()
    state = kernel.init_state(rng_key, num_warmup, init_params, model_args, model_kwargs)
    state = jax.block_until_ready(state)
    num_chains, dim = state.z.shape
    num_draws = num_samples // thinning
    sink = MemoryDraws(num_chains, num_draws, dim) if store is None else store
    state, previous = resume(state, sink, _restore_state)
    resumed_at = int(state.i)
    runner = _ChunkRunner(kernel)
    per_chunk = chunk_draws(thinning, num_chains, dim)
    description = f"{type(kernel).__name__} (jax)"
    with _progress(num_warmup + num_draws * thinning, progress_bar, description) as bar:
        bar.update(resumed_at)
        done = resumed_at
        while done < num_warmup:
            steps = min(CHUNK_STEPS - done % CHUNK_STEPS, num_warmup - done)
            state, _ = runner(state, steps, 1, False)
            done += steps
            if sink.resumable:
                progress = progress_record(previous, start, None, done, runner.compile_seconds)
                sink.checkpoint(_state_arrays(state), progress)
            bar.set_postfix(_logging(state), refresh=False)
            bar.update(steps)
        # Sampling time starts here: init_state (and any warmup) is warmup, as before streaming.
        warmup_end = time.perf_counter()
        warmup_compile = runner.compile_seconds
        kept = (done - num_warmup) // thinning
        while kept < num_draws:
            count = min(per_chunk, num_draws - kept)
            state, chunk = runner(state, count, thinning, True)
            sink.write(kept, np.asarray(chunk))
            kept += count
            if sink.resumable:
                progress = progress_record(previous, start, warmup_end, num_warmup + kept * thinning,
                                           runner.compile_seconds)
                sink.checkpoint(_state_arrays(state), progress)
            bar.set_postfix(_logging(state), refresh=False)
            bar.update(count * thinning)
            if max_seconds is not None and time.perf_counter() - warmup_end >= max_seconds:
                break
    end = time.perf_counter()
    total = num_warmup + kept * thinning
    warmup_seconds, sampling_seconds = phase_seconds(start, warmup_end, end)
    stats = {
        "acceptance": np.asarray(state.mean_acceptance),
        "step_size": np.asarray(state.step_size),
        "divergences": np.zeros(num_chains, dtype=np.int64),
        "nonfinite": np.asarray(state.langevin.nonfinite_count).astype(np.int64),
        "stopped": ~np.asarray(state.langevin.active),
        "grad_evals": np.full(num_chains, 1 + total, dtype=np.int64),
        "wall_seconds": previous.get("wall_seconds", 0.0) + end - start,
        "compile_seconds": previous.get("compile_seconds", 0.0) + runner.compile_seconds,
        "warmup_seconds": previous.get("warmup_seconds", 0.0) + warmup_seconds - warmup_compile,
        "sampling_seconds": previous.get("sampling_seconds", 0.0)
        + sampling_seconds - (runner.compile_seconds - warmup_compile),
        "resumed_at_iteration": resumed_at,
        "budget_stopped": kept < num_draws,
    }
    if state.mean_independence_acceptance is not None:
        stats["independence_acceptance"] = np.asarray(state.mean_independence_acceptance)
    return (sink.draws()[:, :kept] if kept < num_draws else sink.draws()), stats


def _state_arrays(state) -> dict[str, np.ndarray]:
    """The kernel state's leaves as numpy arrays (typed PRNG keys as their key data)."""
    leaves = jax.tree_util.tree_leaves(state)
    return {
        f"leaf{i}": np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
        for i, leaf in enumerate(leaves)
    }


def _restore_state(template, arrays: dict[str, np.ndarray]):
    """Inverse of :func:`_state_arrays`, with ``template``'s tree structure and dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    restored = [
        jax.random.wrap_key_data(jnp.asarray(arrays[f"leaf{i}"]), impl=jax.random.key_impl(leaf))
        if _is_key(leaf)
        else jnp.asarray(arrays[f"leaf{i}"], dtype=leaf.dtype)
        for i, leaf in enumerate(leaves)
    ]
    return jax.tree_util.tree_unflatten(treedef, restored)


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _logging(state) -> dict[str, str]:
    return {
        "step": f"{float(jnp.mean(state.step_size)):.2e}",
        "acc": f"{float(jnp.mean(state.mean_acceptance)):.2f}",
    }


def run_hmc(
    sampler: str,
    potential_fn: Callable[[jax.Array], jax.Array],
    initial_position: jax.Array,
    num_warmup: int,
    num_samples: int,
    seed: int,
    thinning: int = 1,
    progress_bar: bool = True,
    max_seconds: float | None = None,
    **kernel_kwargs,
) -> tuple[np.ndarray, dict]:
    """NumPyro's NUTS or HMC on a batched potential, all chains vectorised in one program
    (``chain_method="vectorized"``). Gradient evaluations are NumPyro's ``num_steps``.

    Compilation is part of NumPyro's warmup and sampling calls; it is not reported apart.
    ``max_seconds``: sampling runs in segments of <= 10 draws, each continuing from the
    last state (NumPyro's ``post_warmup_state = last_state``), until that many seconds
    have passed after warmup.
    """

    def one_chain_potential(position):
        return potential_fn(position[None])[0]

    kernel_class = {"nuts": NUTS, "hmc": HMC}[sampler]
    num_chains = initial_position.shape[0]
    fields = ("num_steps", "diverging", "accept_prob", "adapt_state.step_size")
    segment = num_samples if max_seconds is None else thinning * max(1, min(num_samples // thinning, 10))
    mcmc = MCMC(
        kernel_class(potential_fn=one_chain_potential, **kernel_kwargs),
        num_warmup=num_warmup,
        num_samples=segment,
        thinning=thinning,
        num_chains=num_chains,
        chain_method="vectorized",
        progress_bar=progress_bar,
    )
    rng_key = jax.random.key(seed)
    start = time.perf_counter()
    warmup_steps = np.zeros(num_chains, dtype=np.int64)
    if num_warmup > 0:
        mcmc.warmup(rng_key, init_params=initial_position, extra_fields=("num_steps",), collect_warmup=True)
        warmup_steps = np.asarray(mcmc.get_extra_fields(group_by_chain=True)["num_steps"]).sum(axis=1)
        rng_key = mcmc.post_warmup_state.rng_key
        init = None
    else:
        init = initial_position
    warmup_end = time.perf_counter()
    pieces, extras, generated = [], [], 0
    while generated < num_samples:
        mcmc.run(rng_key, init_params=init, extra_fields=fields)
        pieces.append(np.asarray(mcmc.get_samples(group_by_chain=True)))
        extras.append({name: np.asarray(value) for name, value in mcmc.get_extra_fields(group_by_chain=True).items()})
        generated += segment
        if max_seconds is None or time.perf_counter() - warmup_end >= max_seconds:
            break
        mcmc.post_warmup_state = mcmc.last_state  # the next segment continues this one
        rng_key, init = mcmc.post_warmup_state.rng_key, None
    end = time.perf_counter()
    draws = np.concatenate(pieces, axis=1)[:, : num_samples // thinning]
    extra = {name: np.concatenate([piece[name] for piece in extras], axis=1)[:, : draws.shape[1]] for name in fields}
    stats = {
        "acceptance": extra["accept_prob"].mean(axis=1),
        "step_size": extra["adapt_state.step_size"][:, -1],
        "divergences": extra["diverging"].sum(axis=1).astype(np.int64),
        "nonfinite": np.zeros(num_chains, dtype=np.int64),
        "stopped": np.zeros(num_chains, dtype=bool),
        # Sampling-phase num_steps are recorded only for kept (thinned) draws; scale up.
        "grad_evals": (warmup_steps + extra["num_steps"].sum(axis=1) * thinning).astype(np.int64),
        "wall_seconds": end - start,
        "compile_seconds": float("nan"),
        "warmup_seconds": warmup_end - start,
        "sampling_seconds": end - warmup_end,
        "budget_stopped": draws.shape[1] < num_samples // thinning,
    }
    return draws.reshape(num_chains, draws.shape[1], -1), stats
