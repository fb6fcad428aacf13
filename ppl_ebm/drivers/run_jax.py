"""Run samplers on the JAX backend: our pure kernels under ``lax.scan``, NumPyro's NUTS/HMC.

Mirrors :mod:`ppl_ebm.drivers.run_torch` name for name; the chunk/checkpoint/budget loop is
:func:`ppl_ebm.drivers.loop.run_chunks`, shared by both. Steps run in jitted chunks; the
kernel's hyper-parameters (:class:`~ppl_ebm.kernels.samplers_jax.LangevinParams`) and, for a
pytree target (a LatentEBMJax), its weights are arguments of the compiled program, not
constants in it. Programs are kept across calls (``_PROGRAMS``): another step size, another
call on the same target, a continued run or other weights of the same shapes compile nothing.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS

from ppl_ebm.drivers import sharding_jax
from ppl_ebm.drivers.distributed import check_resumed_steps, warmup_collectives
from ppl_ebm.drivers.loop import run_chunks
from ppl_ebm.kernels.ppl_options import check_ppl_options
from ppl_ebm.kernels.langevin_jax import Proposal, batched_value_and_grad
from ppl_ebm.kernels.samplers_jax import LangevinParams, LangevinSampler, SamplerState
from ppl_ebm.kernels.adaptation.mass_matrix import reported_inverse_mass
from ppl_ebm.result import SamplerStats

__all__ = ["ChainState", "JaxProblem", "init_chain", "run_hmc", "run_langevin"]


class ChainState(NamedTuple):
    """What a driver carries between steps: the kernel's state and the PRNG key it splits."""

    state: SamplerState
    rng_key: jax.Array


class JaxProblem(NamedTuple):
    """The target as the compiled program sees it. ``weights``: a pytree passed to the program
    as an argument (a LatentEBMJax), or None; ``potential(weights)`` gives the batched
    potential ``(chains, dim) -> (chains,)``; ``proposal(weights)`` the law of independence
    steps (None: N(0, I)). Programs are shared across calls only when ``weights`` is a pytree
    and both functions are module-level or methods (stable identities)."""

    weights: Any
    potential: Callable[[Any], Callable[[jax.Array], jax.Array]]
    proposal: Callable[[Any], Proposal] | None = None



# Compiled chunk programs shared by sample() calls (a study's sweep over step sizes, a
# protocol run in batches of chains, until="converged"'s continuation): each call used to
# compile afresh, 2-8 s per call for the SN-GAN net on a GPU.
_PROGRAMS: OrderedDict = OrderedDict()
_PROGRAM_LIMIT = 16  # programs hold device code and buffers: keep the recent ones only


def _avals(tree) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves)


def _is_pytree(value) -> bool:
    if value is None:
        return False
    leaves = jax.tree_util.tree_leaves(value)
    return not (len(leaves) == 1 and leaves[0] is value)  # an unregistered object is its own leaf


class _Advance:
    """Compiles ``num_draws`` draws of ``thinning`` steps each, once per shape and structure."""

    compiles = True  # run_chunks gives warmup the sampling chunk's program where the lengths agree

    def __init__(self, sampler: LangevinSampler, params: LangevinParams, problem: JaxProblem):
        self.sampler, self.params, self.problem = sampler, params, problem
        self.shared = _is_pytree(problem.weights)
        self.compiled: dict[tuple[int, int, bool], Callable] = {}
        self.compile_seconds = 0.0
        self.description = f"{sampler.name} (jax)"
        self.mesh, self.num_chains = None, None
        self.placed = False

    def _place(self, chain: ChainState) -> ChainState:
        """Split the chains over every device the first time (see :mod:`~ppl_ebm.drivers.sharding_jax`)."""
        if not self.placed:
            self.placed = True
            self.num_chains = int(chain.state.langevin.position.shape[0])
            self.mesh = sharding_jax.chain_mesh(self.num_chains)
            if self.mesh is not None:
                self.params = sharding_jax.place(self.params, self.mesh, self.num_chains, replicate=True)
                if self.shared:
                    self.weights = sharding_jax.place(self.problem.weights, self.mesh, self.num_chains, replicate=True)
                self.description += f" on {self.mesh.size} devices"
        if self.mesh is None:
            return chain
        return sharding_jax.place(chain, self.mesh, self.num_chains)

    def _steps(self, weights, params, chain: ChainState, num_draws: int, thinning: int, collect: bool):
        sampler, problem = self.sampler, self.problem
        potential_and_grad = batched_value_and_grad(problem.potential(weights))
        proposal = None if problem.proposal is None else problem.proposal(weights)

        def one(_, current: ChainState) -> ChainState:
            rng_key, step_key = jax.random.split(current.rng_key)
            state, _ = sampler.step(step_key, current.state, potential_and_grad, params, proposal)
            return ChainState(state, rng_key)

        def thin(current, _):
            current = jax.lax.fori_loop(0, thinning, one, current)
            return current, (current.state.langevin.position if collect else None)

        return jax.lax.scan(thin, chain, None, length=num_draws)

    def _program(self, chain, key) -> Callable:
        weights = self.weights if self.shared else None
        if self.shared:
            device = jax.tree_util.tree_leaves(chain)[0].devices()
            cache_key = (self.sampler, self.problem.potential, self.problem.proposal, key, _avals(weights),
                         _avals(self.params), _avals(chain), tuple(sorted(map(str, device))),
                         str(jax.config.jax_default_matmul_precision))
            if cache_key in _PROGRAMS:
                _PROGRAMS.move_to_end(cache_key)
                return _PROGRAMS[cache_key]
        start = time.perf_counter()
        jitted = jax.jit(self._steps, static_argnums=(3, 4, 5))
        program = jitted.lower(weights, self.params, chain, *key).compile()
        self.compile_seconds += time.perf_counter() - start
        if self.shared:
            _PROGRAMS[cache_key] = program
            while len(_PROGRAMS) > _PROGRAM_LIMIT:
                _PROGRAMS.popitem(last=False)
        return program

    @property
    def weights(self):
        return self.__dict__.get("_weights", self.problem.weights)

    @weights.setter
    def weights(self, value):
        self.__dict__["_weights"] = value

    def __call__(self, chain: ChainState, num_draws: int, thinning: int, collect: bool):
        chain = self._place(chain)  # a no-op on one device and for a chain already placed
        key = (num_draws, thinning, collect)
        if key not in self.compiled:
            self.compiled[key] = self._program(chain, key)
        weights = self.weights if self.shared else None
        chain, draws = self.compiled[key](weights, self.params, chain)
        chain = jax.block_until_ready(chain)
        # Draws are (draws, chains, dim): this process's chains are along axis 1.
        return chain, (sharding_jax.local_rows(draws, axis=1) if collect else None)

    def iteration(self, chain: ChainState) -> int:
        return int(chain.state.iteration)

    def shape(self, chain: ChainState) -> tuple[int, int]:
        """This process's ``(chains, dim)``: all chains in one process, its block across processes."""
        num_chains, dim = chain.state.langevin.position.shape
        if jax.process_count() > 1:
            from ppl_ebm.drivers.zarr_store import chain_blocks

            start, stop = chain_blocks(num_chains, jax.process_count())[jax.process_index()]
            return stop - start, dim
        return num_chains, dim

    def check_resumed(self, chain: ChainState, done: int, num_warmup: int) -> None:
        """Across processes, refuse checkpoints at different steps while warmup is unfinished on
        one of them *and* warmup reduces over all processes' chains (:func:`~ppl_ebm.drivers.
        distributed.check_resumed_steps`; what it reduces: :func:`~ppl_ebm.drivers.distributed.
        warmup_collectives`, a pooled mass matrix or a shared step size). Every process gathers the
        same steps, so all of them raise and none hangs. Per-chain adaptation and sampling chunks
        need no collective (the shared step's mean acceptance is taken in warmup only:
        ``samplers_jax._warmup_adapt``): processes resumed at different steps there catch up."""
        if jax.process_count() == 1:
            return
        # The same on every process (one sampler, one chain count), so every process gathers or none.
        collectives = warmup_collectives(self.sampler, chain.state.mass, chain.state.langevin.position.shape[0])
        if not collectives:
            return
        from jax.experimental import multihost_utils

        steps = [int(s) for s in np.asarray(multihost_utils.process_allgather(np.array([done]))).reshape(-1)]
        check_resumed_steps(steps, num_warmup, collectives)

    def state_arrays(self, chain: ChainState) -> dict[str, np.ndarray]:
        """The state's leaves as numpy arrays (typed PRNG keys as their key data); across
        processes, this process's chains of each per-chain leaf (its checkpoint)."""
        leaves = jax.tree_util.tree_leaves(chain)
        return {f"leaf{i}": sharding_jax.local_rows(jax.random.key_data(leaf) if _is_key(leaf) else leaf)
                for i, leaf in enumerate(leaves)}

    def restore_state(self, template: ChainState, arrays: dict[str, np.ndarray]) -> ChainState:
        """Inverse of :meth:`state_arrays`, with ``template``'s tree structure and dtypes."""
        leaves, treedef = jax.tree_util.tree_flatten(template)
        if jax.process_count() > 1:  # this process's rows: rebuild the global arrays around them
            placed = self._place(template)
            leaves, treedef = jax.tree_util.tree_flatten(placed)
            local = [np.asarray(arrays[f"leaf{i}"]) for i in range(len(leaves))]
            keys = [jax.random.key_data(leaf) if _is_key(leaf) else leaf for leaf in leaves]
            restored = sharding_jax.place_local_rows(keys, local, self.mesh, self.num_chains)
            restored = [jax.random.wrap_key_data(value, impl=jax.random.key_impl(leaf)) if _is_key(leaf)
                        else value.astype(leaf.dtype) for value, leaf in zip(restored, leaves)]
            return jax.tree_util.tree_unflatten(treedef, restored)
        restored = [
            jax.random.wrap_key_data(jnp.asarray(arrays[f"leaf{i}"]), impl=jax.random.key_impl(leaf))
            if _is_key(leaf) else jnp.asarray(arrays[f"leaf{i}"], dtype=leaf.dtype)
            for i, leaf in enumerate(leaves)
        ]
        return jax.tree_util.tree_unflatten(treedef, restored)

    def logging(self, chain: ChainState) -> dict[str, str]:
        # This process's chains, in numpy: only process 0 shows a bar, so no collective here.
        return {"step": f"{float(np.mean(sharding_jax.local_rows(chain.state.step_size))):.2e}",
                "acc": f"{float(np.mean(sharding_jax.local_rows(chain.state.mean_acceptance))):.2f}"}

    def chain_stats(self, chain: ChainState) -> dict[str, np.ndarray]:
        """Per-chain statistics of this process's chains (all of them in one process)."""
        state, rows = chain.state, sharding_jax.local_rows
        stats = {
            "acceptance": rows(state.mean_acceptance),
            "step_size": rows(state.step_size),
            "nonfinite": rows(state.langevin.nonfinite_count).astype(np.int64),
            "stopped": ~rows(state.langevin.active),
        }
        if state.mean_independence_acceptance is not None:
            stats["independence_acceptance"] = rows(state.mean_independence_acceptance)
        if state.mass is not None:
            stats["inverse_mass_matrix"] = reported_inverse_mass(rows(state.mass.preconditioner.inverse_mass))
        return stats


def _is_key(leaf) -> bool:
    return hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def init_chain(sampler: LangevinSampler, params: LangevinParams, problem: JaxProblem, position: jax.Array,
               rng_key: jax.Array) -> ChainState:
    """The chains' starting state at ``position`` (chains, dim); ``rng_key`` drives every step."""
    return ChainState(_init_state(sampler, problem.potential, problem.weights, position, params), rng_key)


@partial(jax.jit, static_argnums=(0, 1))
def _init_state(sampler, potential, weights, position: jax.Array, params: LangevinParams):
    # One program: run eagerly, the start's potential, gradient, mass matrix and adaptation states
    # dispatch op by op and compile each op apart (1.5 s of a 3-d model's 10 s call on 2 cores;
    # more in every fresh process of a multi-process run).
    return sampler.init(position, batched_value_and_grad(potential(weights)), params)


def run_langevin(
    sampler: LangevinSampler,
    params: LangevinParams,
    problem: JaxProblem,
    chain: ChainState,
    num_samples: int,
    thinning: int = 1,
    progress_bar: bool = True,
    sink=None,
    max_seconds: float | None = None,
) -> tuple[ChainState, np.ndarray, SamplerStats]:
    """Run ``chain`` (see :func:`init_chain`) through the rest of warmup
    (``params.num_warmup``) and ``num_samples`` steps: :func:`ppl_ebm.drivers.loop.run_chunks`.
    Returns ``(final chain state, draws (chain, draw, dim), stats)``; pass the final state
    back in to continue the same chains."""
    advance = _Advance(sampler, params, problem)
    return run_chunks(advance, chain, int(params.num_warmup), num_samples, thinning, sink, progress_bar, max_seconds)


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
) -> tuple[np.ndarray, SamplerStats]:
    """NumPyro's NUTS or HMC on a batched potential, all chains vectorised in one program
    (``chain_method="vectorized"``), run by NumPyro's own ``MCMC.run`` (warmup and sampling in
    one call, so one program is compiled).

    Each iteration reports to the host (:mod:`ppl_ebm.ppl.numpyro_watch`): one progress bar
    with the chains' mean acceptance and step, the time warmup ends, the leapfrog steps
    (gradient evaluations) per chain, and the deadline: ``max_seconds`` bounds warmup (from
    its first iteration) and sampling (from the end of warmup) alike;
    past it the remaining iterations do nothing. A warmup cut short keeps no draws
    (``stopped_in="warmup"``, a warning). HMC takes at most ``max_leapfrog_steps`` (1024)
    leapfrog steps an iteration (:class:`~ppl_ebm.ppl.numpyro_hmc_cap.CappedHMC`).
    ``compile_seconds`` is the time before the first iteration: NumPyro's tracing and
    compilation (all but a few milliseconds of it) and the chains' initialisation (the first
    gradient, the initial step search); it cannot be interrupted, so ``max_seconds`` cannot cut
    it. NumPyro compiles its loop afresh on every ``run`` (its ``fori_collect`` wraps the body in
    a new ``jit`` each time), so no program is kept across calls. (JAX's own compile events,
    summed, overcount: a nested function's tracing is inside its caller's.)
    """
    from tqdm.auto import tqdm

    from ppl_ebm.drivers.loop import warn_capped, warn_warmup_stopped
    from ppl_ebm.ppl.numpyro_hmc_cap import DEFAULT_MAX_LEAPFROG_STEPS, CappedHMC
    from ppl_ebm.ppl.numpyro_watch import Watch, watched

    def one_chain_potential(position):
        return potential_fn(position[None])[0]

    kernel_kwargs = check_ppl_options(sampler.upper(), kernel_kwargs, "jax")
    cap = kernel_kwargs.pop("max_leapfrog_steps", DEFAULT_MAX_LEAPFROG_STEPS) if sampler == "hmc" else None
    if sampler == "hmc":
        kernel = watched(CappedHMC)(potential_fn=one_chain_potential, max_leapfrog_steps=cap, **kernel_kwargs)
    else:
        kernel = watched(NUTS)(potential_fn=one_chain_potential, **kernel_kwargs)
    num_chains, dim = initial_position.shape
    fields = ("diverging", "accept_prob", "adapt_state.step_size")
    mcmc = MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, thinning=thinning, num_chains=num_chains,
                chain_method="vectorized", progress_bar=False)
    start = time.perf_counter()
    with tqdm(total=num_warmup + num_samples, disable=not progress_bar, desc=f"{sampler} (numpyro)",
              mininterval=0.5, leave=False) as bar:
        kernel.watch = watch = Watch(num_warmup, max_seconds, bar if progress_bar else None, cap)
        mcmc.run(jax.random.key(seed), init_params=initial_position, extra_fields=fields)
        watch.finish(mcmc.last_state.num_steps)
        if progress_bar:
            bar.refresh()  # the last acceptance and step, however short the run
    end = time.perf_counter()
    kept = max(0, watch.iterations - num_warmup) // thinning
    stopped_in = "warmup" if watch.iterations < num_warmup else "sampling" if kept < num_samples // thinning else None
    if stopped_in == "warmup":
        warn_warmup_stopped(max_seconds, watch.iterations, num_warmup)
        kept = 0
    draws = np.asarray(mcmc.get_samples(group_by_chain=True))[:, :kept].reshape(num_chains, kept, dim)
    extra = {name: np.asarray(value)[:, :kept] for name, value in mcmc.get_extra_fields(group_by_chain=True).items()}
    warmup_end = end if watch.warmup_end is None else watch.warmup_end
    first_call = end if watch.first_call is None else watch.first_call
    stats = SamplerStats(
        acceptance=extra["accept_prob"].mean(axis=1) if kept else np.full(num_chains, np.nan),
        step_size=np.asarray(mcmc.last_state.adapt_state.step_size, dtype=np.float64).reshape(num_chains),
        divergences=extra["diverging"].sum(axis=1).astype(np.int64),
        nonfinite=np.zeros(num_chains, dtype=np.int64),
        stopped=np.zeros(num_chains, dtype=bool),
        grad_evals=np.zeros(num_chains, dtype=np.int64) if watch.leapfrog_steps is None else watch.leapfrog_steps,
        wall_seconds=end - start,
        compile_seconds=first_call - start,
        warmup_seconds=warmup_end - first_call,
        sampling_seconds=end - warmup_end,
        budget_stopped=stopped_in is not None,
        stopped_in=stopped_in,
        capped_iterations=None if cap is None else warn_capped(
            np.zeros(num_chains, dtype=np.int64) if watch.capped is None else watch.capped),
    )
    return draws, stats
