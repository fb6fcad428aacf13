"""Batched ULA and MALA as NumPyro ``MCMCKernel``s (mirrors :mod:`ppl_ebm.ppl.pyro_kernels`).

Thin faces over the pure kernels of :mod:`ppl_ebm.kernels.samplers_jax`: the sampler logic
(schedule, adaptation, the independence cycle) lives there once, options are checked by the
sampler registry (:mod:`ppl_ebm.kernels.registry`). One kernel state holds every chain: run
them with ``numpyro.infer.MCMC(kernel, num_chains=1)`` (NumPyro's own chain axis stays 1;
ours is the leading axis of ``z``). Modelled on ``numpyro/infer/barker.py``: give exactly one
of ``model`` or ``potential_fn``; step-size adaptation (MALA) runs only during warmup.

``potential_fn`` here is *batched*: it maps positions ``(chains, dim)`` to potentials
``(chains,)`` (``U = -log density``). Wrap a one-chain function with ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.mcmc import MCMCKernel

from ppl_ebm.kernels.langevin_jax import batched_value_and_grad
from ppl_ebm.kernels.registry import get_sampler
from ppl_ebm.validation import check_finite_rows, check_int, check_seed, check_target_arguments
from ppl_ebm.kernels.samplers_jax import SamplerState, langevin_params
from ppl_ebm.ppl.numpyro_potential import batched_potential_from_model, initial_positions

__all__ = ["MALA", "ULA", "LangevinKernelState", "SamplerKernel"]


class LangevinKernelState(NamedTuple):
    """z: positions (chains, dim), NumPyro's sample field; sampler: the pure kernel's state;
    rng_key: split once per step."""

    z: jax.Array
    sampler: SamplerState
    rng_key: jax.Array

    @property
    def step_size(self) -> jax.Array:
        return self.sampler.step_size

    @property
    def mean_acceptance(self) -> jax.Array:
        return self.sampler.mean_acceptance

    @property
    def mean_independence_acceptance(self) -> jax.Array | None:
        return self.sampler.mean_independence_acceptance


class _LangevinKernel(MCMCKernel):
    """What ULA and MALA share: the target, the start, the protocol."""

    sampler_name = ""

    def __init__(self, model: Callable | None, potential_fn: Callable | None, num_chains: int, options: dict):
        check_target_arguments(model, potential_fn)
        num_chains = check_int("num_chains", num_chains, 1)
        spec = get_sampler(self.sampler_name)
        self.options = spec.validate(options)
        self.sampler = spec.build("jax", self.options)
        self.num_chains = num_chains
        self._model = model
        self._potential_and_grad = None if potential_fn is None else batched_value_and_grad(potential_fn)
        self._constrain = None
        self._params = None

    @property
    def model(self):
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    def postprocess_fn(self, model_args, model_kwargs):
        return (lambda z: z) if self._constrain is None else self._constrain

    def _initial_position(self, rng_key, init_params, model_args, model_kwargs) -> jax.Array:
        if self._model is not None:
            model_key, init_key = jax.random.split(rng_key)
            batched = batched_potential_from_model(self._model, model_args, model_kwargs, model_key)
            self._potential_and_grad = batched.potential_and_grad
            self._constrain = batched.constrain
            if init_params is None:
                return initial_positions(batched, self.num_chains, init_key)
        if init_params is None:
            raise ValueError("init_params of shape (num_chains, dim) must be given with `potential_fn`.")
        position = jnp.asarray(init_params, dtype=jnp.float32)
        if position.ndim != 2 or position.shape[0] != self.num_chains:
            raise ValueError(f"init_params must be shaped (num_chains={self.num_chains}, dim); got {position.shape}.")
        if not isinstance(position, jax.core.Tracer):  # values are known outside a traced program
            check_finite_rows("init_params", jax.device_get(position))
        return position

    def init_state(self, rng_key, num_warmup, init_params, model_args, model_kwargs) -> LangevinKernelState:
        self._params = langevin_params(self.options, num_warmup)
        rng_key, init_key = jax.random.split(rng_key)
        position = self._initial_position(init_key, init_params, model_args, model_kwargs)
        state = self.sampler.init(position, self._potential_and_grad, self._params)
        return LangevinKernelState(position, state, rng_key)

    def transition(self, state: LangevinKernelState) -> LangevinKernelState:
        rng_key, step_key = jax.random.split(state.rng_key)
        new, _ = self.sampler.step(step_key, state.sampler, self._potential_and_grad, self._params)
        return LangevinKernelState(new.langevin.position, new, rng_key)

    # NumPyro's kernel protocol over the shared names init_state / transition.
    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        return self.init_state(rng_key, num_warmup, init_params, model_args, model_kwargs)

    def sample(self, state, model_args, model_kwargs):
        return self.transition(state)

    def get_diagnostics_str(self, state: LangevinKernelState) -> str:
        return "step size {:.2e}. acc. prob={:.2f}".format(
            float(jnp.mean(state.step_size)), float(jnp.mean(state.mean_acceptance)))


class ULA(_LangevinKernel):
    """Unadjusted Langevin for a batch of chains (DDLS Alg. 1, with App. B.2's decay).

    Parameters
    ----------
    model, potential_fn
        Exactly one: a NumPyro model, or a batched potential ``(chains, dim) -> (chains,)``.
    num_chains
        Chains held in the one state.
    **options
        ``step_size`` (0.01), ``noise_scale`` (None: sqrt(step_size)), ``decay_rate``,
        ``decay_every``, ``noise_decay_rate``: see the registry's ``"ula"`` entry and
        :class:`ppl_ebm.kernels.adaptation.step_schedule.StepSchedule`. The schedule counts
        warmup steps too.
    """

    sampler_name = "ula"

    def __init__(self, model: Callable | None = None, potential_fn: Callable | None = None, *, num_chains: int = 1,
                 **options):
        super().__init__(model, potential_fn, num_chains, options)


class MALA(_LangevinKernel):
    """Metropolis-adjusted Langevin for a batch of chains, per-chain accept/reject.

    Parameters
    ----------
    model, potential_fn, num_chains
        As for :class:`ULA`.
    **options
        ``step_size`` (initial, 0.01), ``adapt_step_size`` (dual averaging towards
        ``target_accept_prob`` = 0.574, Roberts & Rosenthal 1998, during warmup; the final
        step is the dual-averaging average, as in NumPyro and Stan), ``per_chain_step_size``
        (one adapted step per chain, the default, so a chain started in a stiff region shrinks
        its own step; False: one shared step driven by the mean acceptance),
        ``independence_every`` (None, or k >= 2: every k-th step an independence
        Metropolis-Hastings step from N(0, I), for a latent EBM its prior: MH-GAN's move, so
        chains jump between modes; adaptation sees the MALA steps only), ``mass_matrix``
        (``"diag"``, the default, ``"dense"`` or ``"none"``: the inverse mass matrix of the
        preconditioned moves, adapted in Stan's warmup windows; see
        :mod:`ppl_ebm.kernels.adaptation.mass_matrix`).
    """

    sampler_name = "mala"

    def __init__(self, model: Callable | None = None, potential_fn: Callable | None = None, *, num_chains: int = 1,
                 **options):
        super().__init__(model, potential_fn, num_chains, options)


class SamplerKernel(_LangevinKernel):
    """Any of our registry's samplers by name (``"isir"``, ``"ex2mcmc"``, ``"mala-imh"``, ...),
    so a sampler registered later needs no class here.

    ``numpyro.infer.MCMC(SamplerKernel("ex2mcmc", model, num_chains=256, num_particles=10), ...)``;
    ``options`` are the registry entry's (checked there). Independence proposals (i-SIR,
    mala-imh) are N(0, I) in unconstrained space.
    """

    def __init__(self, sampler: str, model: Callable | None = None, potential_fn: Callable | None = None, *,
                 num_chains: int = 1, **options):
        if get_sampler(sampler).family != "langevin":
            raise ValueError(f"{sampler!r} is the PPL's own kernel: use numpyro.infer's {sampler.upper()}.")
        self.sampler_name = sampler
        super().__init__(model, potential_fn, num_chains, options)
