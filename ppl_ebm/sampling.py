"""The front door: one call samples a latent EBM (or a model) with any sampler and backend.

``backend="torch"`` runs Pyro (NUTS/HMC) and our torch kernels; ``backend="jax"`` runs
NumPyro (NUTS/HMC) and our JAX kernels on the JAX translation of the same torch networks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ppl_ebm.targets.latent_ebm import LatentEBM
from ppl_ebm.result import SampleResult

__all__ = ["BACKENDS", "SAMPLERS", "sample"]

SAMPLERS = ("ula", "mala", "nuts", "hmc")
BACKENDS = ("torch", "jax")
_LANGEVIN_OPTIONS = {
    "ula": {"step_size", "noise_scale", "decay_rate", "decay_every", "noise_decay_rate"},
    "mala": {"step_size", "adapt_step_size", "target_accept_prob", "per_chain_step_size", "independence_every"},
}


def _positive_int(name: str, value: Any, allow_zero: bool = False) -> int:
    smallest = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < smallest:
        raise ValueError(f"{name} must be an int >= {smallest}, got {value!r}.")
    return int(value)


def _validate(target, sampler, backend, num_chains, num_warmup, num_samples, thinning, options):
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}.")
    if backend not in BACKENDS:
        raise ValueError(
            f"backend must be one of {BACKENDS} ('torch' = Pyro, 'jax' = NumPyro), got {backend!r}."
        )
    _positive_int("num_chains", num_chains)
    _positive_int("num_warmup", num_warmup, allow_zero=True)
    _positive_int("num_samples", num_samples)
    _positive_int("thinning", thinning)
    if num_samples % thinning:
        raise ValueError(f"num_samples ({num_samples}) must be a multiple of thinning ({thinning}).")
    if sampler in _LANGEVIN_OPTIONS:
        unknown = set(options) - _LANGEVIN_OPTIONS[sampler]
        if unknown:
            raise ValueError(
                f"Unknown option(s) {sorted(unknown)} for sampler {sampler!r}; "
                f"it takes {sorted(_LANGEVIN_OPTIONS[sampler])}."
            )
    from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax

    if isinstance(target, LatentEBMJax) and backend != "jax":
        raise ValueError("A LatentEBMJax can only be sampled with backend='jax'.")
    if not isinstance(target, (LatentEBM, LatentEBMJax)) and not callable(target):
        raise TypeError(
            "target must be a ppl_ebm.LatentEBM, a LatentEBMJax, or a model callable "
            f"(Pyro for backend='torch', NumPyro for 'jax'); got {type(target).__name__}."
        )


class _Target:
    """The batched potential, starting points and site layout, per backend."""

    def __init__(self, potential_fn, initial_position, site_shapes, constrain, generate):
        self.potential_fn = potential_fn
        self.initial_position = initial_position
        self.site_shapes = site_shapes
        self.constrain = constrain
        self.generate = generate


def _torch_target(target, num_chains, seed, initial_params, model_args, model_kwargs) -> _Target:
    import torch

    from ppl_ebm.ppl import pyro_potential

    rng = torch.Generator().manual_seed(seed)
    if isinstance(target, LatentEBM):
        # DDLS Alg. 1 starts every chain at a prior draw z0 ~ p0.
        position = target.prior_sample(num_chains, generator=rng)
        return _Target(target.potential, position, {"z": (target.latent_dim,)}, None, target.generate)
    batched = pyro_potential.batched_potential_from_model(target, model_args, model_kwargs)
    position = None if initial_params is not None else pyro_potential.initial_positions(batched, num_chains, rng)
    return _Target(batched.potential, position, batched.site_shapes, batched.constrain, None)


def _jax_target(target, num_chains, seed, initial_params, model_args, model_kwargs) -> _Target:
    import jax

    from ppl_ebm.ppl import numpyro_potential
    from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax

    key = jax.random.fold_in(jax.random.key(seed), 1)
    if isinstance(target, LatentEBM):
        target = target.to_jax()
    if isinstance(target, LatentEBMJax):
        position = target.prior_sample(key, num_chains)
        return _Target(target.potential, position, {"z": (target.latent_dim,)}, None, target.generate)
    batched = numpyro_potential.batched_potential_from_model(target, model_args, model_kwargs, key)
    position = None if initial_params is not None else numpyro_potential.initial_positions(batched, num_chains, key)
    return _Target(batched.potential, position, batched.site_shapes, batched.constrain, None)


def _initial(initial_params, prepared: _Target, num_chains: int, backend: str):
    if initial_params is None:
        return prepared.initial_position
    dim = sum(math.prod(shape) for shape in prepared.site_shapes.values())
    array = np.asarray(initial_params, dtype=np.float32)
    if array.shape != (num_chains, dim):
        raise ValueError(
            f"initial_params must be shaped (num_chains, dim) = ({num_chains}, {dim}); got {array.shape}."
        )
    if backend == "torch":
        import torch

        device = prepared.initial_position.device if prepared.initial_position is not None else "cpu"
        return torch.from_numpy(array).to(device)
    import jax.numpy as jnp

    return jnp.asarray(array)


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
        ``"ula"`` (DDLS Alg. 1), ``"mala"`` (adapted step size), ``"nuts"`` or ``"hmc"``
        (the PPL's own).
    backend
        ``"torch"`` or ``"jax"``.
    num_chains, num_warmup, num_samples, thinning
        Post-warmup draws kept per chain: ``num_samples // thinning``.
    seed
        Same seed and backend -> identical draws.
    initial_params
        Starting positions ``(num_chains, dim)``; default: prior draws for a latent EBM (as
        DDLS), Uniform(-2, 2) in unconstrained space for a model.
    return_generated
        Also push every draw through the generator (``result.generated``); latent EBMs only.
    until, target_rhat, target_ess, max_samples
        ``until="converged"`` (ULA/MALA): after the first ``num_samples`` draws, keep sampling
        blocks of ``num_samples`` from the last state until rank R-hat < ``target_rhat`` and
        bulk/tail ESS >= ``target_ess`` (ArviZ, over all post-warmup draws), or
        ``max_samples`` draws per chain; ``stats["converged"]``, ``stats["steps_taken"]`` and
        ``stats["convergence_history"]`` report it (see :mod:`ppl_ebm.drivers.convergence`).
    draws_dir
        ULA/MALA: write the draws to this directory as they are produced (``draws.npy``,
        float32 in draw order, ``(draw, chain, dim)``) with the kernel state after every chunk, so a run
        larger than memory fits and a killed run started again with the same call resumes
        from its last chunk (see :mod:`ppl_ebm.drivers.draw_store`). ``result.latents`` is then a
        read-only memory map of the file; calling again on a finished run returns it
        without sampling. A directory holding a different run is refused.
    device
        ``"cpu"``, ``"cuda"`` (``"gpu"``) or ``"cuda:N"``; None: where the target already is
        (torch) or JAX's default device. torch moves a latent EBM's networks there in place
        (``LatentEBM.to``); JAX runs the whole sampler under ``jax.default_device``. A GPU the
        machine lacks is refused before any work.
    max_seconds
        Stop sampling once this many seconds have passed after warmup (compilation
        included), keeping every chain's draws so far: the same number for every chain (the
        fewest any chain reached), ``num_samples`` at most. For comparisons at matched wall
        time: a pilot's time per draw misleads NUTS/HMC, whose trajectories lengthen as
        chains move. Our kernels stop between chunks of <= 100 steps; Pyro's chains, run one
        after another, get ``max_seconds / num_chains`` each; NumPyro samples in segments of
        <= 10 draws. ``stats["budget_stopped"]`` says whether it cut the run. Not with
        ``draws_dir`` or ``until``.
    sampler_options
        ULA: ``step_size`` (0.01), ``noise_scale`` (sqrt(step_size)), ``decay_rate``,
        ``decay_every``, ``noise_decay_rate``. MALA: ``step_size``, ``adapt_step_size``,
        ``target_accept_prob``, ``per_chain_step_size``, ``independence_every`` (k >= 2: every
        k-th step an independence Metropolis-Hastings step from N(0, I), the latent prior, so
        chains jump between modes; see :class:`ppl_ebm.ppl.numpyro_kernels.MALA`). NUTS/HMC: passed
        to the PPL's kernel.

    Returns
    -------
    SampleResult
        ``latents`` (chain, draw, dim) — flat latent sites in name order for a model;
        ``posterior`` per site; ``stats``; ``to_arviz()``.
    """
    _validate(target, sampler, backend, num_chains, num_warmup, num_samples, thinning, sampler_options)
    if draws_dir is not None and (sampler not in _LANGEVIN_OPTIONS or until is not None):
        raise ValueError(
            "draws_dir streams and resumes our ULA/MALA kernels; NUTS/HMC run inside the PPL's own "
            f"MCMC driver and until='converged' samples in blocks (got sampler={sampler!r}, until={until!r})."
        )
    if max_seconds is not None:
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float)) or not max_seconds > 0:
            raise ValueError(f"max_seconds must be a number of seconds > 0 (or None), got {max_seconds!r}.")
        if draws_dir is not None or until is not None:
            raise ValueError("max_seconds cuts one in-memory run; it cannot be combined with draws_dir "
                             "(a resumable run) or until='converged' (which decides its own length).")
    if device is not None:
        return _on_device(device, target, backend, sampler, num_chains, num_warmup, num_samples, seed,
                          thinning=thinning, initial_params=initial_params, model_args=model_args,
                          model_kwargs=model_kwargs, return_generated=return_generated, progress_bar=progress_bar,
                          until=until, target_rhat=target_rhat, target_ess=target_ess, max_samples=max_samples,
                          draws_dir=draws_dir, max_seconds=max_seconds, **sampler_options)
    if until is not None:
        if until != "converged":
            raise ValueError(f"until must be None or 'converged', got {until!r}.")
        from ppl_ebm.drivers.convergence import sample_until_converged

        return sample_until_converged(
            sample, target, sampler, backend, num_chains, num_warmup, num_samples, seed,
            target_rhat=target_rhat, target_ess=target_ess, max_samples=max_samples, progress_bar=progress_bar,
            options=sampler_options, thinning=thinning, initial_params=initial_params, model_args=model_args,
            model_kwargs=model_kwargs, return_generated=return_generated,
        )
    if return_generated and not isinstance(target, LatentEBM) and not hasattr(target, "generate"):
        raise ValueError("return_generated=True needs a latent EBM target.")
    model_kwargs = {} if model_kwargs is None else model_kwargs
    make_target = _torch_target if backend == "torch" else _jax_target
    prepared = make_target(target, num_chains, seed, initial_params, model_args, model_kwargs)
    position = _initial(initial_params, prepared, num_chains, backend)
    store = None
    if draws_dir is not None:
        store = _open_store(draws_dir, target, prepared, position, initial_params, sampler, backend, num_chains,
                            num_warmup, num_samples, thinning, seed, sampler_options)
    run = _run_torch if backend == "torch" else _run_jax
    latents, stats = run(sampler, prepared, position, num_warmup, num_samples, seed, thinning, progress_bar,
                         sampler_options, store, max_seconds)
    posterior = _posterior(latents, prepared, backend)
    generated = _generated(latents, prepared, backend) if return_generated else None
    return SampleResult(
        latents=latents,
        stats=stats,
        sampler=sampler,
        backend=backend,
        site=next(iter(prepared.site_shapes)) if prepared.constrain is None else "latents",
        generated=generated,
        posterior=posterior,
        extra={"seed": seed, "num_warmup": num_warmup, "thinning": thinning, **sampler_options},
    )


def _on_device(device, target, backend, sampler, *args, **kwargs) -> SampleResult:
    """``sample`` again with ``device=None``, the target (torch) or the default device (JAX) set."""
    from ppl_ebm.drivers import devices

    if backend == "torch":
        resolved = devices.torch_device(device)
        if isinstance(target, LatentEBM):
            target.to(resolved)
        elif resolved.type != "cpu":
            raise ValueError("device= moves a latent EBM's networks; a Pyro model's tensors stay where the "
                             "model creates them, so put them on the GPU in the model and leave device=None.")
        return sample(target, sampler, backend, *args, **kwargs)
    import jax

    with jax.default_device(devices.jax_device(device)):
        return sample(target, sampler, backend, *args, **kwargs)


def _open_store(draws_dir, target, prepared, position, initial_params, sampler, backend, num_chains, num_warmup,
                num_samples, thinning, seed, options):
    from ppl_ebm.drivers.draw_store import DrawStore, fingerprint

    dim = int(position.shape[1])
    settings = {
        "sampler": sampler, "backend": backend, "num_chains": num_chains, "num_warmup": num_warmup,
        "num_samples": num_samples, "thinning": thinning, "seed": seed, "dim": dim,
        "options": {key: options[key] for key in sorted(options)},
        "target": fingerprint(target, initial_params),
    }
    return DrawStore.open(draws_dir, settings, (num_chains, num_samples // thinning, dim))


def _run_torch(sampler, prepared, position, num_warmup, num_samples, seed, thinning, progress_bar, options, store,
               max_seconds=None):
    from ppl_ebm.ppl import pyro_kernels
    from ppl_ebm.drivers import run_torch

    if sampler in ("nuts", "hmc"):
        return run_torch.run_hmc(
            sampler, prepared.potential_fn, position, num_warmup, num_samples, seed, thinning, progress_bar,
            max_seconds=max_seconds, **options
        )
    kernel_class = pyro_kernels.ULA if sampler == "ula" else pyro_kernels.MALA
    kernel = kernel_class(potential_fn=prepared.potential_fn, num_chains=position.shape[0], seed=seed, **options)
    return run_torch.run_langevin(
        kernel, num_warmup, num_samples, thinning, init_params=position, progress_bar=progress_bar, store=store,
        max_seconds=max_seconds,
    )


def _run_jax(sampler, prepared, position, num_warmup, num_samples, seed, thinning, progress_bar, options, store,
             max_seconds=None):
    import jax

    from ppl_ebm.ppl import numpyro_kernels
    from ppl_ebm.drivers import run_jax

    if sampler in ("nuts", "hmc"):
        return run_jax.run_hmc(
            sampler, prepared.potential_fn, position, num_warmup, num_samples, seed, thinning, progress_bar,
            max_seconds=max_seconds, **options
        )
    kernel_class = numpyro_kernels.ULA if sampler == "ula" else numpyro_kernels.MALA
    kernel = kernel_class(potential_fn=prepared.potential_fn, num_chains=position.shape[0], **options)
    return run_jax.run_langevin(
        kernel, jax.random.key(seed), num_warmup, num_samples, thinning, init_params=position,
        progress_bar=progress_bar, store=store, max_seconds=max_seconds,
    )


def _posterior(latents: np.ndarray, prepared: _Target, backend: str) -> dict[str, np.ndarray]:
    if prepared.constrain is None:
        return {next(iter(prepared.site_shapes)): latents}
    if backend == "torch":
        import torch

        with torch.no_grad():
            values = prepared.constrain(torch.from_numpy(latents))
        return {name: value.numpy() for name, value in values.items()}
    return {name: np.asarray(value) for name, value in prepared.constrain(latents).items()}


def _generated(latents: np.ndarray, prepared: _Target, backend: str, batch: int = 4096) -> np.ndarray:
    flat = latents.reshape(-1, latents.shape[-1])
    pieces = []
    if backend == "torch":
        import torch

        device = prepared.initial_position.device  # where the networks are (return_generated needs a latent EBM)
        with torch.no_grad():
            for start in range(0, len(flat), batch):
                z = torch.from_numpy(np.ascontiguousarray(flat[start : start + batch])).to(device)
                pieces.append(prepared.generate(z).cpu().numpy())
    else:
        import jax

        generate = jax.jit(prepared.generate)
        for start in range(0, len(flat), batch):
            pieces.append(np.asarray(generate(flat[start : start + batch])))
    out = np.concatenate(pieces)
    return out.reshape(*latents.shape[:2], *out.shape[1:])
