"""Batched ULA and MALA as Pyro ``MCMCKernel``s (mirrors :mod:`ppl_ebm.ppl.numpyro_kernels`).

Pyro cannot vectorise chains (one kernel = one chain), so these kernels keep every chain in
one tensor ``z`` of shape ``(chains, dim)`` and run as a single Pyro chain:
``pyro.infer.MCMC(kernel, num_samples, warmup_steps).run()`` then
``mcmc.get_samples()["z"]`` is ``(draws, chains, dim)``. Modelled on
``pyro/infer/mcmc/rwkernel.py``: validated constructor, ``logging()`` for the progress bar,
usable without the driver (``setup`` then ``sample``). ``MCMC`` never calls ``end_warmup``,
so the kernels count their own iterations.

``potential_fn`` is *batched*: positions ``(chains, dim)`` -> potentials ``(chains,)``.
The pure state machine (``init_state`` / ``transition``) carries the same names as the
NumPyro kernels; ``setup`` / ``sample`` adapt it to Pyro's protocol.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

import torch
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel

from ppl_ebm.kernels.adaptation.dual_averaging import DualAveragingState, dual_averaging_init, dual_averaging_update
from ppl_ebm.kernels.cycle import check_independence_every, phase_counts, running_mean
from ppl_ebm.kernels.langevin_torch import LangevinState, independence_step, langevin_init, mala_step, ula_step
from ppl_ebm.ppl.pyro_potential import _unravel, batched_potential_from_model, initial_positions
from ppl_ebm.kernels.adaptation.step_schedule import StepSchedule

__all__ = ["MALA", "ULA", "LangevinKernelState"]


class LangevinKernelState(NamedTuple):
    """See :class:`ppl_ebm.ppl.numpyro_kernels.LangevinKernelState`; ``rng`` is a torch Generator
    (or None for torch's global generator, which ``pyro.set_rng_seed`` seeds)."""

    i: int
    z: torch.Tensor
    langevin: LangevinState
    step_size: torch.Tensor
    adaptation: DualAveragingState | None
    mean_acceptance: torch.Tensor
    rng: torch.Generator | None
    mean_independence_acceptance: torch.Tensor | None = None


def _check_target(model, potential_fn) -> None:
    if (model is None) == (potential_fn is None):
        raise ValueError("Give exactly one of `model` or `potential_fn`.")


def _batched_value_and_grad(potential_fn: Callable) -> Callable:
    def potential_and_grad(position):
        with torch.enable_grad():
            position = position.detach().requires_grad_(True)
            potential = potential_fn(position)
            (grad,) = torch.autograd.grad(potential.sum(), position)
        return potential.detach(), grad

    return potential_and_grad


class _BatchedLangevin(MCMCKernel):
    """What ULA and MALA share: the target, the start, the bookkeeping."""

    def __init__(
        self,
        model: Callable | None,
        potential_fn: Callable | None,
        num_chains: int,
        seed: int | None,
        initial_params: torch.Tensor | None,
    ):
        _check_target(model, potential_fn)
        if not (isinstance(num_chains, int) and num_chains > 0):
            raise ValueError(f"num_chains must be a positive int, got {num_chains!r}.")
        self.model = model
        self.potential_fn = potential_fn
        self.num_chains = num_chains
        self.transforms = {}
        self._potential_and_grad = (
            None if potential_fn is None else _batched_value_and_grad(potential_fn)
        )
        self._constrain = None
        self._site_shapes = None
        self._seed = seed
        self._rng = None if seed is None else torch.Generator().manual_seed(int(seed))
        self._initial_params = initial_params
        self.state: LangevinKernelState | None = None

    def constrain(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Flat unconstrained positions ``(..., dim)`` -> the model's constrained sites."""
        return {"z": z} if self._constrain is None else self._constrain(z)

    def _params(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        # Per-site unconstrained values (chains, *shape); Pyro's MCMC applies transforms[..].inv.
        return {"z": z} if self._site_shapes is None else _unravel(z, self._site_shapes)

    def _initial_position(self, init_params, model_args, model_kwargs) -> torch.Tensor:
        if self.model is not None:
            batched = batched_potential_from_model(self.model, model_args, model_kwargs)
            self._potential_and_grad = batched.potential_and_grad
            self._constrain = batched.constrain
            self._site_shapes = batched.site_shapes
            self.transforms = batched.transforms
            if init_params is None:
                return initial_positions(batched, self.num_chains, self._rng)
        if init_params is None:
            raise ValueError(
                "initial_params of shape (num_chains, dim) must be given with `potential_fn`."
            )
        position = torch.as_tensor(init_params, dtype=torch.get_default_dtype()).detach()
        if position.ndim != 2 or position.shape[0] != self.num_chains:
            raise ValueError(
                f"initial_params must be shaped (num_chains={self.num_chains}, dim); "
                f"got {tuple(position.shape)}."
            )
        return position

    def _init(self, rng, num_warmup, init_params, model_args, model_kwargs, step_size):
        self._num_warmup = int(num_warmup)
        position = self._initial_position(init_params, model_args, model_kwargs)
        if rng is not None and rng.device != position.device and self._seed is not None:
            # Noise is drawn where the chains live: a CPU generator cannot fill a CUDA tensor.
            rng = self._rng = torch.Generator(device=position.device).manual_seed(int(self._seed))
        langevin = langevin_init(position, self._potential_and_grad)
        step = torch.full((self.num_chains,), step_size, dtype=position.dtype, device=position.device)
        return langevin, step, rng

    # -- Pyro's kernel protocol over the shared names init_state / transition ----------------
    def setup(self, warmup_steps, *args, **kwargs):
        self.state = self.init_state(self._rng, warmup_steps, self._initial_params, args, kwargs)

    @property
    def initial_params(self):
        return self._params(self.state.z) if self.state is not None else self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        # Flat (num_chains, dim) positions, also when given as {"z": ...}.
        self._initial_params = params["z"] if isinstance(params, dict) else params

    def sample(self, params):
        self.state = self.transition(self.state)
        return self._params(self.state.z)

    def logging(self):
        return OrderedDict(
            [
                ("step size", "{:.2e}".format(float(self.state.step_size.mean()))),
                ("acc. prob", "{:.3f}".format(float(self.state.mean_acceptance.mean()))),
            ]
        )

    def diagnostics(self):
        return {
            "acceptance rate": float(self.state.mean_acceptance.mean()),
            "nonfinite": int(self.state.langevin.nonfinite_count.sum()),
        }


class ULA(_BatchedLangevin):
    """Unadjusted Langevin for a batch of chains (DDLS Alg. 1, with App. B.2's decay).

    Parameters as :class:`ppl_ebm.ppl.numpyro_kernels.ULA`, plus ``seed`` (None: torch's global
    generator, seeded by ``pyro.set_rng_seed``) and ``initial_params`` ``(num_chains, dim)``
    (required with ``potential_fn``).
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        num_chains: int = 1,
        step_size: float = 0.01,
        noise_scale: float | None = None,
        decay_rate: float = 0.1,
        decay_every: int | None = None,
        noise_decay_rate: float | None = None,
        seed: int | None = None,
        initial_params: torch.Tensor | None = None,
    ):
        super().__init__(model, potential_fn, num_chains, seed, initial_params)
        self.schedule = StepSchedule(
            step_size, noise_scale, decay_rate, decay_every, noise_decay_rate
        ).validate()

    def init_state(self, rng, num_warmup, init_params, model_args, model_kwargs):
        langevin, step, rng = self._init(
            rng, num_warmup, init_params, model_args, model_kwargs, self.schedule.step_size
        )
        ones = torch.ones_like(step)
        return LangevinKernelState(0, langevin.position, langevin, step, None, ones, rng)

    def transition(self, state: LangevinKernelState) -> LangevinKernelState:
        step_size, noise_scale = self.schedule.at(state.i)
        langevin, info = ula_step(state.rng, state.langevin, self._potential_and_grad, step_size, noise_scale)
        steps, _ = phase_counts(state.i, self._num_warmup, None)
        return LangevinKernelState(
            state.i + 1,
            langevin.position,
            langevin,
            torch.full_like(state.step_size, step_size),
            None,
            running_mean(state.mean_acceptance, info.acceptance_probability, steps),
            state.rng,
        )


class MALA(_BatchedLangevin):
    """Metropolis-adjusted Langevin for a batch of chains, per-chain accept/reject.

    Parameters as :class:`ppl_ebm.ppl.numpyro_kernels.MALA`, plus ``seed`` and ``initial_params``
    as for :class:`ULA`.
    """

    def __init__(
        self,
        model: Callable | None = None,
        potential_fn: Callable | None = None,
        *,
        num_chains: int = 1,
        step_size: float = 0.01,
        adapt_step_size: bool = True,
        target_accept_prob: float = 0.574,
        per_chain_step_size: bool = True,
        independence_every: int | None = None,
        seed: int | None = None,
        initial_params: torch.Tensor | None = None,
    ):
        super().__init__(model, potential_fn, num_chains, seed, initial_params)
        StepSchedule(step_size).validate()
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}.")
        self.step_size = float(step_size)
        self.adapt_step_size = bool(adapt_step_size)
        self.target_accept_prob = float(target_accept_prob)
        self.per_chain_step_size = bool(per_chain_step_size)
        self.independence_every = check_independence_every(independence_every)

    def init_state(self, rng, num_warmup, init_params, model_args, model_kwargs):
        langevin, step, rng = self._init(
            rng, num_warmup, init_params, model_args, model_kwargs, self.step_size
        )
        adaptation = dual_averaging_init(torch.log(step))
        zeros = torch.zeros_like(step)
        independence = None if self.independence_every is None else torch.zeros_like(step)
        return LangevinKernelState(0, langevin.position, langevin, step, adaptation, zeros, rng, independence)

    def transition(self, state: LangevinKernelState) -> LangevinKernelState:
        every = self.independence_every
        if every is not None and (state.i + 1) % every == 0:
            return self._independence_transition(state)
        langevin, info = mala_step(state.rng, state.langevin, self._potential_and_grad, state.step_size)
        acceptance = info.acceptance_probability
        adaptation, step_size = state.adaptation, state.step_size
        # The iteration count is a Python int here, so plain branches replace jnp.where.
        if self.adapt_step_size and state.i < self._num_warmup:
            signal = acceptance if self.per_chain_step_size else acceptance.mean() * torch.ones_like(acceptance)
            adaptation = dual_averaging_update(state.adaptation, self.target_accept_prob - signal)
            last_warmup = state.i == self._num_warmup - 1
            step_size = torch.exp(
                adaptation.log_step_size_average if last_warmup else adaptation.log_step_size
            )
        mala_count, _ = phase_counts(state.i, self._num_warmup, every)
        return LangevinKernelState(
            state.i + 1,
            langevin.position,
            langevin,
            step_size,
            adaptation,
            running_mean(state.mean_acceptance, acceptance, mala_count),
            state.rng,
            state.mean_independence_acceptance,
        )

    def _independence_transition(self, state: LangevinKernelState) -> LangevinKernelState:
        # Step-size adaptation sees MALA steps only; warmup still ends on the averaged step.
        langevin, info = independence_step(state.rng, state.langevin, self._potential_and_grad)
        step_size = state.step_size
        if self.adapt_step_size and state.i == self._num_warmup - 1:
            step_size = torch.exp(state.adaptation.log_step_size_average)
        _, independence_count = phase_counts(state.i, self._num_warmup, self.independence_every)
        # The adaptation state, the MALA steps' acceptance and the generator carry over unchanged.
        return state._replace(
            i=state.i + 1, z=langevin.position, langevin=langevin, step_size=step_size,
            mean_independence_acceptance=running_mean(
                state.mean_independence_acceptance, info.acceptance_probability, independence_count),
        )

