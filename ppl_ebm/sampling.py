"""The front door: one call samples a latent EBM (or a model) with any sampler and backend.

``backend="torch"`` runs Pyro (NUTS/HMC) and our torch kernels; ``backend="jax"`` runs
NumPyro (NUTS/HMC) and our JAX kernels on the JAX translation of the same torch networks.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import numpy as np

from ppl_ebm.drivers.convergence import check_convergence_settings, continue_until_converged
from ppl_ebm.kernels.registry import BACKENDS, SamplerSpec, get_sampler, sampler_names
from ppl_ebm.result import SampleResult
from ppl_ebm.targets.protocol import Target, has_standard_normal_prior
from ppl_ebm.validation import ArgumentTypeError, check_bool, check_finite_rows, check_int, check_output_dir, check_seed

if TYPE_CHECKING:  # torch loads only when a torch target is used (see _is_torch_ebm)
    from ppl_ebm.targets.latent_ebm import LatentEBM

__all__ = ["BACKENDS", "SAMPLERS", "sample"]


def __getattr__(name: str):
    # SAMPLERS reads the registry when asked, so a sampler registered later is listed too.
    if name == "SAMPLERS":
        return sampler_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _validate(target, spec: SamplerSpec, backend, num_chains, num_warmup, num_samples, thinning, options,
              until, draws_dir, max_seconds, seed) -> dict[str, Any]:
    """Everything checked before any work; returns the sampler's options with defaults filled."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS} ('torch' = Pyro, 'jax' = NumPyro), got {backend!r}."
        )
    check_int("num_chains", num_chains, 1)
    check_int("num_warmup", num_warmup, 0)
    check_int("num_samples", num_samples, 1)
    check_int("thinning", thinning, 1)
    check_seed(seed)
    if num_samples % thinning:
        raise ValueError(f"num_samples ({num_samples}) must be a multiple of thinning ({thinning}).")
    if backend not in spec.backends:
        raise ValueError(f"sampler {spec.name!r} runs on backend {' or '.join(map(repr, spec.backends))} only, "
                         f"got backend={backend!r}.")
    if spec.family == "blackjax" and num_warmup < 1:
        raise ValueError(f"num_warmup must be >= 1 for {spec.name!r}: its tuning is its warmup, got {num_warmup}.")
    options = spec.validate(options, backend)
    if draws_dir is not None:
        check_output_dir(draws_dir, "draws_dir")
    from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax

    if isinstance(target, LatentEBMJax) and backend != "jax":
        raise ValueError("A LatentEBMJax can only be sampled with backend='jax'.")
    if not (_is_torch_ebm(target) or isinstance(target, LatentEBMJax)) and not callable(target):
        raise TypeError(
            "target must be a ppl_ebm.LatentEBM, a LatentEBMJax, or a model callable "
            f"(Pyro for backend='torch', NumPyro for 'jax'); got {type(target).__name__}."
        )
    if until is not None and until != "converged":
        raise ValueError(f"until must be None or 'converged', got {until!r}.")
    if draws_dir is not None and (not spec.has("streaming") or until is not None):
        raise ValueError(
            f"draws_dir streams and resumes the samplers {sampler_names('streaming')}; {spec.name!r} runs inside the "
            f"PPL's own MCMC driver, and until='converged' decides its own length (got until={until!r})."
        )
    if until is not None and not spec.has("until"):
        raise ValueError(f"until='converged' continues our kernels' chains ({sampler_names('until')}); "
                         f"{spec.name!r} runs inside the PPL's driver: call its MCMC.run again.")
    if max_seconds is not None:
        if not spec.has("max_seconds"):
            raise ValueError(f"max_seconds bounds the samplers {sampler_names('max_seconds')}; {spec.name!r} "
                             "runs its warmup as one compiled program with no clock.")
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
            raise ValueError(f"max_seconds must be a number of seconds > 0 (or None), got {max_seconds!r}.")
        if draws_dir is not None or until is not None:
            raise ValueError("max_seconds cuts one in-memory run; it cannot be combined with draws_dir "
                             "(a resumable run) or until='converged' (which decides its own length).")
    _validate_processes(spec, backend, num_chains, until, draws_dir, max_seconds)
    return options


def _validate_processes(spec: SamplerSpec, backend: str, num_chains: int, until, draws_dir, max_seconds) -> None:
    """A run spread over processes (torchrun, jax.distributed) writes one Zarr store, block by block."""
    from ppl_ebm.drivers.distributed import process_count

    count = process_count(backend)
    if count == 1:
        return
    # Our kernels whose state is per-chain arrays, checkpointed per process block. The PPLs'
    # drivers, BlackJAX's programs and FlEx2MCMC (each process would train its own flow on its
    # own chains) have no such split.
    if not spec.has("processes") or until is not None or max_seconds is not None:
        raise ValueError(f"this process is one of {count} (torchrun / jax.distributed): only our kernels' fixed-length "
                         f"runs ({sampler_names('processes')}) split their chains over processes; got sampler="
                         f"{spec.name!r}, until={until!r}, max_seconds={max_seconds!r}.")
    if num_chains < count:
        raise ValueError(f"num_chains must be >= the {count} processes of the run (one block each), got {num_chains}.")
    from ppl_ebm.drivers.zarr_store import is_zarr_path

    if draws_dir is not None and not is_zarr_path(draws_dir):
        raise ValueError(f"draws_dir of a run over {count} processes must be one Zarr store (a path ending in "
                         f".zarr) that every process writes its chains to; got {str(draws_dir)!r}.")


class _Prepared:
    """A :class:`~ppl_ebm.targets.protocol.Target`, where its chains start, and the driver's view.

    ``latent``: the target pushes its one site ``z`` through a generator (a latent EBM), so the
    draws reported as ``result.latents`` are that site in the prior's support; for a model
    they are the flat unconstrained positions, its sites in ``result.posterior``."""

    def __init__(self, target: Target, initial_position, problem):
        self.target = target
        self.initial_position = initial_position
        self.problem = problem
        self.latent = hasattr(target, "generate")


def _is_torch_ebm(target) -> bool:
    """Whether ``target`` is a torch :class:`~ppl_ebm.LatentEBM`, without importing torch: if its
    module was never imported, no such object exists (a JAX run then never loads torch)."""
    module = sys.modules.get("ppl_ebm.targets.latent_ebm")
    return module is not None and isinstance(target, module.LatentEBM)


def _potential_of(target):
    """A pytree target's batched potential in u: module level, so compiled programs are shared."""
    return target.potential


def _torch_target(target, num_chains, seed, initial_params, model_args, model_kwargs) -> _Prepared:
    import torch

    from ppl_ebm.drivers.run_torch import TorchProblem
    from ppl_ebm.kernels.langevin_torch import prior_proposal as prior_proposal_torch
    from ppl_ebm.ppl import pyro_potential

    rng = torch.Generator().manual_seed(seed)
    if not _is_torch_ebm(target):
        target = pyro_potential.batched_potential_from_model(target, model_args, model_kwargs)
    position = None if initial_params is not None else target.initial_positions(num_chains, rng)
    return _Prepared(target, position, TorchProblem(target.potential, prior_proposal_torch(target)))


def _jax_target(target, num_chains, seed, initial_params, model_args, model_kwargs) -> _Prepared:
    import jax

    from ppl_ebm.drivers.run_jax import JaxProblem
    from ppl_ebm.kernels.langevin_jax import prior_proposal as prior_proposal_jax
    from ppl_ebm.ppl import numpyro_potential
    from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax

    key = jax.random.fold_in(jax.random.key(seed), 1)
    if _is_torch_ebm(target):
        target = target.to_jax()
    if isinstance(target, LatentEBMJax):
        # A pytree: its weights are an argument of the compiled program, shared across calls.
        problem = JaxProblem(target, _potential_of, prior_proposal_jax)
    else:
        target = numpyro_potential.batched_potential_from_model(target, model_args, model_kwargs, key)
        problem = JaxProblem(None, lambda _: target.potential)
    position = None if initial_params is not None else target.initial_positions(num_chains, key)
    return _Prepared(target, position, problem)


def _initial_array(initial_params, num_chains: int) -> np.ndarray | None:
    """``initial_params`` as a finite float32 array ``(num_chains, dim)``, checked before any work."""
    if initial_params is None:
        return None
    if hasattr(initial_params, "detach"):  # a torch tensor, possibly on a GPU
        initial_params = initial_params.detach().cpu().numpy()
    try:
        array = np.asarray(initial_params, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ArgumentTypeError(f"initial_params must be an array of numbers shaped (num_chains, dim); "
                                f"{type(initial_params).__name__} does not convert ({error}).") from None
    if array.ndim != 2 or array.shape[0] != num_chains:
        raise ValueError(f"initial_params must be shaped (num_chains, dim) = ({num_chains}, dim); got {array.shape}.")
    return check_finite_rows("initial_params", array)


def _check_memory(target, num_chains: int, kept: int, draws_dir, return_generated: bool) -> None:
    """Refuse, before any allocation, results larger than the memory (see :mod:`ppl_ebm.drivers.memory`)."""
    from ppl_ebm.drivers.memory import check_fits

    # A streamed run writes the sites beside its draws (``_stream_sites``), chunk by chunk.
    site_copy = not (hasattr(target, "generate") and has_standard_normal_prior(target)) and draws_dir is None
    generated = int(getattr(target, "data_size", 0)) if return_generated else 0
    check_fits(num_chains, kept, int(target.dim), streamed=draws_dir is not None, site_copy=site_copy,
               generated_size=generated)


def _initial(initial_params, prepared: _Prepared, num_chains: int, backend: str):
    if initial_params is None:
        return prepared.initial_position
    dim = prepared.target.dim
    array = initial_params
    if array.shape != (num_chains, dim):
        raise ValueError(
            f"initial_params must be shaped (num_chains, dim) = ({num_chains}, {dim}); got {array.shape}."
        )
    if backend == "torch":
        import torch

        device = prepared.initial_position.device if prepared.initial_position is not None else "cpu"
        position = torch.from_numpy(array).to(device)
    else:
        import jax.numpy as jnp

        position = jnp.asarray(array)
    # A latent EBM's starting points are latents z in the prior's support; chains move in u.
    return prepared.target.unconstrain(position) if prepared.latent else position


def sample(
    target: LatentEBM | Callable,
    sampler: str = "mala",
    backend: str = "torch",
    num_chains: int = 64,
    num_warmup: int = 500,
    num_samples: int = 1000,
    seed: int = 0,
    *,
    thinning: int = 1,
    initial_params: Any = None,
    model_args: tuple = (),
    model_kwargs: dict | None = None,
    return_generated: bool = False,
    progress_bar: bool = True,
    until: str | None = None,
    target_rhat: float = 1.01,
    target_ess: float = 400.0,
    max_samples: int = 20_000,
    draws_dir: str | os.PathLike | None = None,
    device: str | None = None,
    max_seconds: float | None = None,
    **sampler_options,
) -> SampleResult:
    """Sample a latent EBM or a model with ULA, MALA, NUTS or HMC on torch (Pyro) or JAX (NumPyro).

    Parameters
    ----------
    target
        A :class:`~ppl_ebm.LatentEBM` (both backends; JAX uses its translation), a
        :class:`~ppl_ebm.LatentEBMJax` (JAX only), or a model callable: a Pyro model for
        ``backend="torch"``, a NumPyro model for ``"jax"`` (e.g. one calling
        :func:`ppl_ebm.ppl.pyro_model.latent_ebm_site` and conditioning on data).
    sampler
        A name in the sampler registry (:mod:`ppl_ebm.kernels.registry`, ``ppl_ebm.SAMPLERS``):
        ``"ula"`` (DDLS Alg. 1), ``"mala"`` (adapted step size), ``"mala-imh"`` (MALA with an
        independence step from the prior every 2nd step), ``"isir"`` (iterated
        sampling-importance resampling from the prior), ``"ex2mcmc"`` (i-SIR then MALA steps),
        ``"flex2mcmc"`` (Ex2MCMC proposing from a flow trained in warmup),
        ``"nuts"`` or ``"hmc"`` (the PPL's own), and on JAX only ``"chees"`` (ChEES-HMC) and
        ``"meads"`` (MEADS), BlackJAX's many-chain samplers with their own warmup.
    backend
        ``"torch"`` or ``"jax"``.
    num_chains, num_warmup, num_samples, thinning
        Post-warmup draws kept per chain: ``num_samples // thinning``.
    seed
        Same seed and backend -> identical draws.
    initial_params
        Starting positions ``(num_chains, dim)``: latents in the prior's support for a latent
        EBM (default: prior draws, as DDLS), unconstrained values for a model (default:
        Uniform(-2, 2) there).
    return_generated
        Also push every draw through the generator (``result.generated``); latent EBMs only.
    until, target_rhat, target_ess, max_samples
        ``until="converged"`` (ULA/MALA): after the first ``num_samples`` draws, continue the
        same chains (adapted steps, random state) by blocks of ``num_samples`` draws, the draws
        those of one long run, until rank R-hat < ``target_rhat`` and
        bulk/tail ESS >= ``target_ess`` (ArviZ, over all post-warmup draws), or
        ``max_samples`` draws per chain; ``stats["converged"]``, ``stats["steps_taken"]`` and
        ``stats["convergence_history"]`` report it (see :mod:`ppl_ebm.drivers.convergence`).
    draws_dir
        ULA/MALA: write the draws to this directory as they are produced (``draws.npy``,
        float32 in draw order, ``(draw, chain, dim)``) with the kernel state after every chunk, so a run
        larger than memory fits and a killed run started again with the same call resumes
        from its last chunk (see :mod:`ppl_ebm.drivers.draw_store`). ``result.latents`` is then a
        read-only memory map of the file; calling again on a finished run returns it
        without sampling. A directory holding a different run is refused. A path ending in
        ``.zarr`` writes one Zarr store instead (:mod:`ppl_ebm.drivers.zarr_store`), which
        xarray and ArviZ open and which every process of a torchrun / ``jax.distributed``
        run writes its block of chains to; ``result.latents`` is then this process's chains.
        A model's sites (draws in u) are mapped to their support after sampling a chunk of
        draws at a time and written beside the draws (Zarr: ``posterior/<site>``; npy store:
        ``sites/``); ``result.posterior`` holds views of them, read when indexed.
    device
        ``"cpu"``, ``"cuda"`` (``"gpu"``) or ``"cuda:N"``; None: where the target already is
        (torch) or JAX's default device. torch moves a latent EBM's networks there in place
        (``LatentEBM.to``); JAX runs the whole sampler under ``jax.default_device``. A GPU the
        machine lacks is refused before any work.
    max_seconds
        A wall-clock budget for warmup and for sampling, each on its own clock (warmup's
        leaves compilation out; sampling's counts the sampling program's), so a call runs
        about ``2 x max_seconds`` besides set-up, compilation and constrain. Warmup that has not
        finished when ``max_seconds`` have passed ends the run with no draws
        (``stats["stopped_in"] == "warmup"``, a ``RuntimeWarning``); otherwise sampling stops
        once ``max_seconds`` have passed after warmup, keeping every chain's draws so far: the
        same number for every chain (the fewest any chain reached), ``num_samples`` at most
        (``stopped_in == "sampling"``). For comparisons at matched sampling time: a pilot's time
        per draw misleads NUTS/HMC, whose trajectories lengthen as chains move. Our kernels stop
        between chunks of <= 100 steps; NumPyro's NUTS/HMC at the next iteration (its remaining
        iterations then do nothing, microseconds each: :mod:`ppl_ebm.ppl.numpyro_watch`); Pyro's
        chains, run one after another, get ``max_seconds / num_chains`` for each phase, checked
        every iteration. ``stats["budget_stopped"]`` says whether it cut the run. Not with
        ``draws_dir`` or ``until``, nor for BlackJAX's samplers (their warmup is one program).
    sampler_options
        ULA: ``step_size`` (0.01), ``noise_scale`` (sqrt(step_size)), ``decay_rate``,
        ``decay_every``, ``noise_decay_rate``. MALA: ``step_size``, ``adapt_step_size``,
        ``target_accept_prob``, ``per_chain_step_size``, ``step_size_adaptation``
        (``"dual_averaging"``, Stan's and NumPyro's, for warmups of a few hundred steps, or
        ``"cross_chain"``: one step for all chains moved each warmup step by their mean
        acceptance, for warmups of tens of steps with many chains), ``mass_matrix`` (``"diag"``, the
        default, ``"dense"`` or ``"none"``: an inverse mass matrix adapted in Stan's warmup
        windows, pooled over the chains when there are 32 or more, one per chain below;
        reported as ``stats["inverse_mass_matrix"]``; ULA takes it too, default ``"none"``),
        ``independence_every`` (k >= 2: every
        k-th step an independence Metropolis-Hastings step from the latent prior, so chains
        jump between modes; see :class:`ppl_ebm.ppl.numpyro_kernels.MALA`). i-SIR:
        ``num_particles`` (10: the state and 9 prior draws). Ex2MCMC: ``num_particles``,
        ``mala_steps`` (3 MALA steps after each i-SIR step) and MALA's options but
        ``independence_every`` (see :mod:`ppl_ebm.kernels.isir_jax`); each checked by the
        registry. NUTS/HMC: the PPL kernel's own options (``step_size``, ``target_accept_prob``,
        ``max_tree_depth``, ...), each checked by :mod:`ppl_ebm.kernels.ppl_options`; HMC also
        ``max_leapfrog_steps`` (1024, NUTS's bound: at most that many leapfrog steps per
        iteration, a ``RuntimeWarning`` and ``stats["capped_iterations"]`` when it binds).
        ChEES: ``step_size`` (initial, 0.1), ``learning_rate`` (Adam's, 0.5),
        ``target_accept_prob`` (0.651), ``max_leapfrog_steps`` (1000); MEADS: none; MAMS:
        ``target_accept_prob`` (0.9), ``tuning_chains`` (16: the chains BlackJAX's tuner runs on
        before every chain is burned in with the pooled kernel)
        (:mod:`ppl_ebm.kernels.chees_jax`, :mod:`ppl_ebm.kernels.meads_jax`,
        :mod:`ppl_ebm.kernels.mams_jax`).

    Returns
    -------
    SampleResult
        ``latents`` (chain, draw, dim): a latent EBM's latents in its prior's support, or a
        model's flat unconstrained sites in name order;
        ``posterior`` per site; ``stats``; ``to_arviz()``.
    """
    started = time.perf_counter()  # wall_seconds counts the whole call, checks included
    spec = get_sampler(sampler)
    options = _validate(target, spec, backend, num_chains, num_warmup, num_samples, thinning, sampler_options,
                        until, draws_dir, max_seconds, seed)
    check_bool("return_generated", return_generated)
    check_bool("progress_bar", progress_bar)
    if until is not None:
        check_convergence_settings(target_rhat, target_ess, max_samples, num_samples, thinning, return_generated)
    if return_generated and not hasattr(target, "generate"):
        raise ValueError("return_generated=True needs a latent EBM target.")
    if not isinstance(model_args, (tuple, list)):
        raise ArgumentTypeError(f"model_args must be a tuple of the model's positional arguments, got "
                                f"{type(model_args).__name__}.")
    if model_kwargs is not None and not isinstance(model_kwargs, dict):
        raise ArgumentTypeError(f"model_kwargs must be a dict or None, got {type(model_kwargs).__name__}.")
    model_kwargs = {} if model_kwargs is None else model_kwargs
    initial_params = _initial_array(initial_params, num_chains)
    kept = (max_samples if until is not None else num_samples) // thinning
    if getattr(target, "dim", None) is not None:  # a latent EBM: checked before its chains are drawn
        _check_memory(target, num_chains, kept, draws_dir, return_generated)
    with ExitStack() as placement:
        # The device is a policy of this one call, not a second call of sample().
        _place(placement, device, target, backend)
        make_target = _torch_target if backend == "torch" else _jax_target
        prepared = make_target(target, num_chains, seed, initial_params, model_args, model_kwargs)
        if getattr(target, "dim", None) is None:  # a model: its size is known once traced
            _check_memory(prepared.target, num_chains, kept, draws_dir, return_generated)
        position = _initial(initial_params, prepared, num_chains, backend)
        earlier = 0.0  # a resumed draws_dir run: the sessions before this call
        store = None
        setup_end = time.perf_counter()
        if spec.family == "blackjax":
            from ppl_ebm.drivers.run_blackjax import run_blackjax

            latents, stats = run_blackjax(spec.module, prepared.target.potential, position, num_warmup, num_samples,
                                          seed, thinning, progress_bar, options)
        elif spec.family == "ppl":
            latents, stats = _run_ppl(spec, backend, prepared, position, num_warmup, num_samples, seed, thinning,
                                      progress_bar, options, max_seconds)
        else:
            if draws_dir is not None:
                store = _open_store(draws_dir, target, position, initial_params, spec.name, backend, num_chains,
                                    num_warmup, num_samples, thinning, seed, options, model_args, model_kwargs,
                                    _site_specs(prepared, backend, draws_dir))
                earlier = _earlier_seconds(store)
            latents, stats = _run_langevin(spec, backend, prepared, position, options, num_warmup, num_samples,
                                           seed, thinning, progress_bar, store, max_seconds,
                                           until, target_rhat, target_ess, max_samples)
        sampled = time.perf_counter()
        if store is not None and store.sites:  # a streamed model's run: its sites go to the store too
            posterior = _stream_sites(store, prepared, backend)
        else:
            posterior = _sites(latents, prepared, backend)
        if prepared.latent:
            latents = posterior["z"]
        generated = _generated(latents, prepared, backend) if return_generated else None
    stats = _whole_call(stats, started, setup_end, sampled, time.perf_counter(), earlier)
    return SampleResult(
        latents=latents,
        stats=stats,
        sampler=spec.name,
        backend=backend,
        site="z" if prepared.latent else "latents",
        generated=generated,
        posterior=posterior,
        extra={"seed": seed, "num_warmup": num_warmup, "thinning": thinning, **options,
               **({"until": until} if until is not None else {})},
    )


def _earlier_seconds(store) -> float:
    """The loop seconds a resumed ``draws_dir`` run spent in its earlier sessions (0 when new)."""
    saved = store.load_checkpoint()
    return 0.0 if saved is None else float(saved[1].get("wall_seconds", 0.0))


def _whole_call(stats, started: float, setup_end: float, sampled: float, ended: float, earlier: float):
    """``stats`` with ``wall_seconds`` the whole call (the drivers time only their loop, so a
    model's tracing and constrain pass went uncounted: 7.0 s reported of a 16.0 s call), and
    the set-up and constrain parts apart. Earlier sessions of a resumed run are added as the
    loop recorded them."""
    return dataclasses.replace(
        stats,
        wall_seconds=earlier + ended - started,
        setup_seconds=stats.setup_seconds + setup_end - started,  # the driver's own (kernel init) and ours
        constrain_seconds=ended - sampled,
    )


def _place(placement: ExitStack, device: str | None, target, backend: str) -> None:
    """torch: move a latent EBM's networks to ``device`` in place; JAX: run under it."""
    if device is None:
        return
    from ppl_ebm.drivers import devices

    if backend == "torch":
        resolved = devices.torch_device(device)
        if _is_torch_ebm(target):
            target.to(resolved)
        elif resolved.type != "cpu":
            raise ValueError("device= moves a latent EBM's networks; a Pyro model's tensors stay where the "
                             "model creates them, so put them on the GPU in the model and leave device=None.")
        return
    import jax

    placement.enter_context(jax.default_device(devices.jax_device(device)))


def _open_store(draws_dir, target, position, initial_params, sampler, backend, num_chains, num_warmup,
                num_samples, thinning, seed, options, model_args, model_kwargs, sites=None):
    """The run's store; ``sites`` (:func:`_site_specs`) adds a place for a model's sites."""
    from ppl_ebm.drivers.draw_store import DrawStore
    from ppl_ebm.drivers.fingerprint import fingerprint

    dim = int(position.shape[1])
    settings = {
        "sampler": sampler, "backend": backend, "num_chains": num_chains, "num_warmup": num_warmup,
        "num_samples": num_samples, "thinning": thinning, "seed": seed, "dim": dim,
        "options": {key: options[key] for key in sorted(options)},
        "target": fingerprint(target, initial_params, model_args, model_kwargs),
    }
    shape = (num_chains, num_samples // thinning, dim)
    from ppl_ebm.drivers.zarr_store import is_zarr_path

    if not is_zarr_path(draws_dir):
        return DrawStore.open(draws_dir, settings, shape, sites=sites)
    from ppl_ebm.drivers.zarr_store import ZarrDrawStore

    # The draws are z itself only for a latent EBM under N(0, I); otherwise the unconstrained u.
    latent = hasattr(target, "generate")
    variable = "z" if latent and has_standard_normal_prior(target) else "u"
    attributes = {
        "inference_library": "ppl_ebm", "sampler": sampler, "backend": backend, "seed": seed,
        "num_warmup": num_warmup, "num_samples": num_samples, "thinning": thinning,
        "options": settings["options"], "target_fingerprint": settings["target"],
        "description": ("latents z ~ the latent EBM (DDLS)" if variable == "z" else
                        "flat unconstrained positions u, sites in name order"),
    }
    block, barrier = _process_block(num_chains, backend)
    return ZarrDrawStore.open(draws_dir, settings, shape, variable=variable, block=block, attributes=attributes,
                              barrier=barrier, sites=sites if variable == "u" else None)


def _process_block(num_chains: int, backend: str):
    """This process's chains and the launcher's barrier (one process: all chains, no barrier)."""
    from ppl_ebm.drivers import distributed

    return distributed.process_block(num_chains, backend)


def _run_ppl(spec, backend, prepared, position, num_warmup, num_samples, seed, thinning, progress_bar, options,
             max_seconds):
    """The PPL's own NUTS/HMC (Pyro one chain after another, NumPyro vectorised)."""
    if backend == "torch":
        from ppl_ebm.drivers.run_torch import run_hmc
    else:
        from ppl_ebm.drivers.run_jax import run_hmc
    return run_hmc(spec.name, prepared.target.potential, position, num_warmup, num_samples, seed, thinning,
                   progress_bar, max_seconds=max_seconds, **options)


def _run_langevin(spec, backend, prepared, position, options, num_warmup, num_samples, seed, thinning,
                  progress_bar, store, max_seconds, until, target_rhat, target_ess, max_samples):
    """Our kernels: build from the registry, start the chains, run; ``until`` continues them."""
    started = time.perf_counter()
    sampler = spec.build(backend, options)
    if backend == "torch":
        import torch

        from ppl_ebm.drivers import run_torch as driver
        from ppl_ebm.kernels.samplers_torch import langevin_params

        params = langevin_params(options, num_warmup, device=position.device)
        rng_key = torch.Generator(device=position.device).manual_seed(int(seed))
        block, _ = _process_block(position.shape[0], backend)
        # The run's chain count decides a pooled mass matrix; a torchrun rank steps only its block.
        sampler = sampler.with_num_chains(position.shape[0])
        if block.count > 1:  # a torchrun rank: the run's generator, this rank's rows of every draw
            from ppl_ebm.kernels.random_torch import ChainBlockGenerator

            rng_key = ChainBlockGenerator(rng_key, block.start, block.stop, position.shape[0])
    else:
        import jax

        from ppl_ebm.drivers import run_jax as driver
        from ppl_ebm.kernels.samplers_jax import langevin_params

        params = langevin_params(options, num_warmup)
        rng_key = jax.random.split(jax.random.key(seed))[0]
    chain = driver.init_chain(sampler, params, prepared.problem, position, rng_key)
    if backend == "torch" and block.count > 1:
        chain = driver.chain_block(chain, block.start, block.stop)
    initialised = time.perf_counter() - started  # set-up: the chains' first potential and gradient

    def run_block(chain, count, sink=None, budget=None):
        return driver.run_langevin(sampler, params, prepared.problem, chain, count, thinning, progress_bar, sink,
                                   budget)

    if until is None:
        _, latents, stats = run_block(chain, num_samples, store, max_seconds)
    else:
        latents, stats = continue_until_converged(run_block, chain, num_samples, num_warmup, target_rhat, target_ess,
                                                  max_samples, seed)
    return latents, dataclasses.replace(stats, setup_seconds=stats.setup_seconds + initialised)


def _map_rows(block: np.ndarray, prepared: _Prepared, backend: str) -> dict[str, np.ndarray]:
    """``Target.sites`` of the flat unconstrained rows ``block`` (rows, dim), as numpy arrays."""
    block = np.ascontiguousarray(block)
    if backend == "torch":
        import torch

        device = prepared.initial_position.device if prepared.initial_position is not None else "cpu"
        with torch.no_grad():
            return {name: value.cpu().numpy()
                    for name, value in prepared.target.sites(torch.from_numpy(block).to(device)).items()}
    return {name: np.asarray(value) for name, value in prepared.target.sites(block).items()}


def _site_specs(prepared: _Prepared, backend: str, draws_dir) -> dict[str, tuple[tuple[int, ...], str]] | None:
    """A streamed run's sites, ``name -> (shape of one draw, dtype)`` from one mapped row, for
    the store to make room for; None when the draws are the sites (a latent EBM under N(0, I))
    or, in a Zarr store, when a site's name cannot be an array of the posterior group (then the
    sites are mapped in memory, as before the store held them, with a warning)."""
    if prepared.latent and has_standard_normal_prior(prepared.target):
        return None
    row = _map_rows(np.zeros((1, int(prepared.target.dim)), dtype=np.float32), prepared, backend)
    specs = {name: (tuple(int(size) for size in value.shape[1:]), value.dtype.str) for name, value in row.items()}
    from ppl_ebm.drivers.zarr_store import is_zarr_path, site_names_problem

    problem = site_names_problem("u", specs) if is_zarr_path(draws_dir) else None
    if problem is not None:
        import warnings

        warnings.warn(f"{problem}: the sites are mapped in memory after sampling (about the draws' size), not "
                      "written to the store; rename the site to stream them.", RuntimeWarning, stacklevel=3)
        return None
    return specs


def _stream_sites(store, prepared: _Prepared, backend: str, batch: int = 65536) -> dict[str, Any]:
    """A streamed run's sites: this process's draws read from ``store`` a chunk at a time,
    mapped (``Target.sites``, ``batch`` rows per call) and written to the store's site arrays;
    returns the store's views of them (Zarr: read when indexed; npy: memory maps), so memory
    holds one chunk of draws and its sites, never the whole run. Every call maps all draws
    again: a resumed run's sites are those of its final draws."""
    num_draws = store.draws().shape[1]
    step = max(1, store.read_draws)
    for start in range(0, num_draws, step):
        draws = np.asarray(store.read(start, min(step, num_draws - start)))
        chains, count, dim = draws.shape
        flat = draws.reshape(-1, dim)
        pieces: dict[str, list[np.ndarray]] = {}
        for first in range(0, len(flat), batch):
            for name, value in _map_rows(flat[first : first + batch], prepared, backend).items():
                pieces.setdefault(name, []).append(value)
        for name, parts in pieces.items():
            values = parts[0] if len(parts) == 1 else np.concatenate(parts)
            store.write_site(name, start, values.reshape(chains, count, *values.shape[1:]))
        del draws, flat, pieces
    return store.site_views()


def _sites(latents: np.ndarray, prepared: _Prepared, backend: str, batch: int = 65536) -> dict[str, np.ndarray]:
    """Each site's draws in its support (``Target.sites``), in batches. A latent EBM under a
    N(0, I) prior maps u to itself: its draws are returned as they are, with no copy (a
    streamed run's memory map stays one)."""
    if prepared.latent and has_standard_normal_prior(prepared.target):
        return {"z": latents}
    flat = np.asarray(latents).reshape(-1, latents.shape[-1])  # a Zarr store's view reads here
    rows = len(flat)
    if not rows:  # a run max_seconds stopped in warmup: map one row, for the sites' names and shapes
        flat = np.zeros((1, latents.shape[-1]), dtype=latents.dtype)
    pieces: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(flat), batch):
        for name, value in _map_rows(flat[start : start + batch], prepared, backend).items():
            pieces.setdefault(name, []).append(value)
    return {name: np.concatenate(parts)[:rows].reshape(*latents.shape[:2], *parts[0].shape[1:])
            for name, parts in pieces.items()}


def _generated(latents: np.ndarray, prepared: _Prepared, backend: str, batch: int = 4096) -> np.ndarray:
    flat = np.asarray(latents).reshape(-1, latents.shape[-1])  # a Zarr store's view reads here
    rows = len(flat)
    if not rows:  # no draws (stopped in warmup): one row gives the data's shape
        flat = np.zeros((1, latents.shape[-1]), dtype=latents.dtype)
    pieces = []
    if backend == "torch":
        import torch

        device = prepared.initial_position.device  # where the networks are (return_generated needs a latent EBM)
        with torch.no_grad():
            for start in range(0, len(flat), batch):
                z = torch.from_numpy(np.ascontiguousarray(flat[start : start + batch])).to(device)
                pieces.append(prepared.target.generate(z).cpu().numpy())
    else:
        import jax

        generate = jax.jit(prepared.target.generate)
        for start in range(0, len(flat), batch):
            pieces.append(np.asarray(generate(flat[start : start + batch])))
    out = np.concatenate(pieces)[:rows]
    return out.reshape(*latents.shape[:2], *out.shape[1:])
