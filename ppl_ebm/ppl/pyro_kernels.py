"""Batched ULA and MALA as Pyro ``MCMCKernel``s (mirrors :mod:`ppl_ebm.ppl.numpyro_kernels`).

Thin faces over the pure kernels of :mod:`ppl_ebm.kernels.samplers_torch`. Pyro cannot
vectorise chains (one kernel = one chain), so these kernels keep every chain in one tensor
``z`` of shape ``(chains, dim)`` and run as a single Pyro chain:
``pyro.infer.MCMC(kernel, num_samples, warmup_steps).run()`` then ``mcmc.get_samples()["z"]``
is ``(draws, chains, dim)``. Modelled on ``pyro/infer/mcmc/rwkernel.py``: validated
constructor, ``logging()`` for the progress bar, usable without the driver (``setup`` then
``sample``). ``MCMC`` never calls ``end_warmup``, so the state counts its own iterations.

``potential_fn`` is *batched*: positions ``(chains, dim)`` -> potentials ``(chains,)``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ppl_ebm.kernels.langevin_torch import batched_value_and_grad
from ppl_ebm.kernels.registry import get_sampler
from ppl_ebm.validation import check_finite_rows, check_int, check_seed, check_target_arguments
from ppl_ebm.kernels.samplers_torch import SamplerState, langevin_params
from ppl_ebm.ppl.pyro_potential import batched_potential_from_model, initial_positions, unravel_sites

__all__ = ["MALA", "ULA", "LangevinKernelState", "SamplerKernel"]


class LangevinKernelState(NamedTuple):
    """See :class:`ppl_ebm.ppl.numpyro_kernels.LangevinKernelState`; ``rng_key`` is a torch
    Generator (or None for torch's global generator, which ``pyro.set_rng_seed`` seeds)."""

    z: torch.Tensor
    sampler: SamplerState
    rng_key: torch.Generator | None

    @property
    def step_size(self) -> torch.Tensor:
        return self.sampler.step_size

    @property
    def mean_acceptance(self) -> torch.Tensor:
        return self.sampler.mean_acceptance

    @property
    def mean_independence_acceptance(self) -> torch.Tensor | None:
        return self.sampler.mean_independence_acceptance


class _LangevinKernel(MCMCKernel):
    """What ULA and MALA share: the target, the start, the protocol."""

    sampler_name = ""

    def __init__(self, model: Callable | None, potential_fn: Callable | None, num_chains: int, seed: int | None,
                 initial_params: torch.Tensor | None, options: dict):
        check_target_arguments(model, potential_fn)
        seed = None if seed is None else check_seed(seed)
        num_chains = check_int("num_chains", num_chains, 1)
        spec = get_sampler(self.sampler_name)
        self.options = spec.validate(options)
        self.sampler = spec.build("torch", self.options)
        self.model = model
        self.potential_fn = potential_fn
        self.num_chains = num_chains
        self.transforms = {}
        self._potential_and_grad = None if potential_fn is None else batched_value_and_grad(potential_fn)
        self._constrain = None
        self._site_shapes = None
        self._seed = seed
        self._rng = None if seed is None else torch.Generator().manual_seed(int(seed))
        self._initial_params = initial_params
        self._params = None
        self.state: LangevinKernelState | None = None

    def constrain(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat unconstrained positions ``(..., dim)`` -> the model's constrained sites."""
        return {"z": z} if self._constrain is None else self._constrain(z)

    def _sites(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        # Per-site unconstrained values (chains, *shape); Pyro's MCMC applies transforms[..].inv.
        return {"z": z} if self._site_shapes is None else unravel_sites(z, self._site_shapes)

    def _initial_position(self, init_params, model_args, model_kwargs) -> torch.Tensor:
        if self.model is not None:
            batched = batched_potential_from_model(self.model, model_args, model_kwargs)
            # The same function as batched.potential_and_grad, with .potential for i-SIR's proposals.
            self._potential_and_grad = batched_value_and_grad(batched.potential)
            self._constrain = batched.constrain
            self._site_shapes = batched.site_shapes
            self.transforms = batched.transforms
            if init_params is None:
                return initial_positions(batched, self.num_chains, self._rng)
        if init_params is None:
            raise ValueError("initial_params of shape (num_chains, dim) must be given with `potential_fn`.")
        position = torch.as_tensor(init_params, dtype=torch.get_default_dtype()).detach()
        if position.ndim != 2 or position.shape[0] != self.num_chains:
            raise ValueError(
                f"initial_params must be shaped (num_chains={self.num_chains}, dim); got {tuple(position.shape)}.")
        check_finite_rows("initial_params", position.cpu().numpy())
        return position

    def init_state(self, rng, num_warmup, init_params, model_args, model_kwargs) -> LangevinKernelState:
        position = self._initial_position(init_params, model_args, model_kwargs)
        if rng is not None and rng.device != position.device and self._seed is not None:
            # Noise is drawn where the chains live: a CPU generator cannot fill a CUDA tensor.
            rng = self._rng = torch.Generator(device=position.device).manual_seed(int(self._seed))
        self._params = langevin_params(self.options, num_warmup, device=position.device)
        return LangevinKernelState(position, self.sampler.init(position, self._potential_and_grad, self._params), rng)

    def transition(self, state: LangevinKernelState) -> LangevinKernelState:
        new, _ = self.sampler.step(state.rng_key, state.sampler, self._potential_and_grad, self._params)
        return LangevinKernelState(new.langevin.position, new, state.rng_key)

    # -- Pyro's kernel protocol over the shared names init_state / transition ----------------
    def setup(self, warmup_steps, *args, **kwargs):
        self.state = self.init_state(self._rng, warmup_steps, self._initial_params, args, kwargs)

    @property
    def initial_params(self):
        return self._sites(self.state.z) if self.state is not None else self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        # Flat (num_chains, dim) positions, also when given as {"z": ...}.
        self._initial_params = params["z"] if isinstance(params, dict) else params

    def sample(self, params):
        with torch.no_grad():
            self.state = self.transition(self.state)
        return self._sites(self.state.z)

    def logging(self):
        return OrderedDict([
            ("step size", "{:.2e}".format(float(self.state.step_size.mean()))),
            ("acc. prob", "{:.3f}".format(float(self.state.mean_acceptance.mean()))),
        ])

    def diagnostics(self):
        return {
            "acceptance rate": float(self.state.mean_acceptance.mean()),
            "nonfinite": int(self.state.sampler.langevin.nonfinite_count.sum()),
        }


class ULA(_LangevinKernel):
    """Unadjusted Langevin for a batch of chains (DDLS Alg. 1, with App. B.2's decay).

    Options as :class:`ppl_ebm.ppl.numpyro_kernels.ULA`, plus ``seed`` (None: torch's global
    generator, seeded by ``pyro.set_rng_seed``) and ``initial_params`` ``(num_chains, dim)``
    (required with ``potential_fn``).
    """

    sampler_name = "ula"

    def __init__(self, model: Callable | None = None, potential_fn: Callable | None = None, *, num_chains: int = 1,
                 seed: int | None = None, initial_params: torch.Tensor | None = None, **options):
        super().__init__(model, potential_fn, num_chains, seed, initial_params, options)


class MALA(_LangevinKernel):
    """Metropolis-adjusted Langevin for a batch of chains, per-chain accept/reject.

    Options as :class:`ppl_ebm.ppl.numpyro_kernels.MALA`, plus ``seed`` and ``initial_params``
    as for :class:`ULA`.
    """

    sampler_name = "mala"

    def __init__(self, model: Callable | None = None, potential_fn: Callable | None = None, *, num_chains: int = 1,
                 seed: int | None = None, initial_params: torch.Tensor | None = None, **options):
        super().__init__(model, potential_fn, num_chains, seed, initial_params, options)


class SamplerKernel(_LangevinKernel):
    """Any of our registry's samplers by name (``"isir"``, ``"ex2mcmc"``, ``"mala-imh"``, ...),
    so a sampler registered later needs no class here.

    ``pyro.infer.MCMC(SamplerKernel("ex2mcmc", model, num_chains=256, num_particles=10), ...)``;
    ``options`` are the registry entry's (checked there), ``seed`` and ``initial_params`` as for
    :class:`ULA`. Independence proposals (i-SIR, mala-imh) are N(0, I) in unconstrained space.
    """

    def __init__(self, sampler: str, model: Callable | None = None, potential_fn: Callable | None = None, *,
                 num_chains: int = 1, seed: int | None = None, initial_params: torch.Tensor | None = None,
                 **options):
        if get_sampler(sampler).family != "langevin":
            raise ValueError(f"{sampler!r} is the PPL's own kernel: use pyro.infer's {sampler.upper()}.")
        self.sampler_name = sampler
        super().__init__(model, potential_fn, num_chains, seed, initial_params, options)
