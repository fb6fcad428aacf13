"""Batched ULA and MALA as NumPyro ``MCMCKernel``s (mirrors :mod:`ppl_ebm.ppl.pyro_kernels`).

One kernel state holds every chain: run them with ``numpyro.infer.MCMC(kernel, num_chains=1)``
(NumPyro's own chain axis stays 1; ours is the leading axis of ``z``). Modelled on
``numpyro/infer/barker.py``: give exactly one of ``model`` or ``potential_fn``; step-size
adaptation (MALA) runs only during warmup.

``potential_fn`` here is *batched*: it maps positions ``(chains, dim)`` to potentials
``(chains,)`` (``U = -log density``). Wrap a one-chain function with ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from numpyro.infer.mcmc import MCMCKernel

from ppl_ebm.kernels.adaptation.dual_averaging import DualAveragingState, dual_averaging_init, dual_averaging_update
from ppl_ebm.kernels.cycle import check_independence_every, phase_counts, running_mean
from ppl_ebm.kernels.langevin_jax import LangevinState, independence_step, langevin_init, mala_step, ula_step
from ppl_ebm.ppl.numpyro_potential import batched_potential_from_model, initial_positions
from ppl_ebm.kernels.adaptation.step_schedule import StepSchedule

__all__ = ["MALA", "ULA", "LangevinKernelState"]


class LangevinKernelState(NamedTuple):
    """iteration (warmup included); z: positions (chains, dim), the sample field;
    langevin: the core state; step_size (chains,) used by the last step; adaptation: dual
    averaging state (MALA) or None; mean_acceptance (chains,) over the current phase (MALA:
    over its Langevin steps); rng_key; mean_independence_acceptance (chains,) over the
    current phase's independence steps (MALA with ``independence_every``), else None."""

    i: jax.Array
    z: jax.Array
    langevin: LangevinState
    step_size: jax.Array
    adaptation: DualAveragingState | None
    mean_acceptance: jax.Array
    rng_key: jax.Array
    mean_independence_acceptance: jax.Array | None = None


def _check_target(model, potential_fn) -> None:
    if (model is None) == (potential_fn is None):
        raise ValueError("Give exactly one of `model` or `potential_fn`.")


def _batched_value_and_grad(potential_fn: Callable) -> Callable:
    def summed(position):
        per_chain = potential_fn(position)
        return jnp.sum(per_chain), per_chain

    def potential_and_grad(position):
        (_, potential), grad = jax.value_and_grad(summed, has_aux=True)(position)
        return potential, grad

    return potential_and_grad


class _BatchedLangevin(MCMCKernel):
    """What ULA and MALA share: the target, the start, the bookkeeping."""

    def __init__(self, model: Callable | None, potential_fn: Callable | None, num_chains: int):
        _check_target(model, potential_fn)
        if not (isinstance(num_chains, int) and num_chains > 0):
            raise ValueError(f"num_chains must be a positive int, got {num_chains!r}.")
        self._model = model
        self._potential_fn = potential_fn
        self.num_chains = num_chains
        self._potential_and_grad = (
            None if potential_fn is None else _batched_value_and_grad(potential_fn)
        )
        self._constrain = None

    @property
    def model(self):
        return self._model

    @property
    def sample_field(self) -> str:
        return "z"

    def postprocess_fn(self, model_args, model_kwargs):
        if self._constrain is None:
            return lambda z: z
        return self._constrain

    def _initial_position(self, rng_key, init_params, model_args, model_kwargs) -> jax.Array:
        if self._model is not None:
            model_key, init_key = jax.random.split(rng_key)
            batched = batched_potential_from_model(self._model, model_args, model_kwargs, model_key)
            self._potential_and_grad = batched.potential_and_grad
            self._constrain = batched.constrain
            if init_params is None:
                return initial_positions(batched, self.num_chains, init_key)
        if init_params is None:
            raise ValueError(
                "init_params of shape (num_chains, dim) must be given with `potential_fn`."
            )
        position = jnp.asarray(init_params, dtype=jnp.float32)
        if position.ndim != 2 or position.shape[0] != self.num_chains:
            raise ValueError(
                f"init_params must be shaped (num_chains={self.num_chains}, dim); "
                f"got {position.shape}."
            )
        return position

    def _init(self, rng_key, num_warmup, init_params, model_args, model_kwargs, step_size):
        self._num_warmup = int(num_warmup)
        rng_key, init_key = jax.random.split(rng_key)
        position = self._initial_position(init_key, init_params, model_args, model_kwargs)
        langevin = langevin_init(position, self._potential_and_grad)
        step = jnp.full((self.num_chains,), step_size, dtype=position.dtype)
        return langevin, step, rng_key

    # NumPyro's kernel protocol over the shared names init_state / transition.
    def init(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        return self.init_state(rng_key, num_warmup, init_params, model_args, model_kwargs)

    def sample(self, state, model_args, model_kwargs):
        return self.transition(state)

    def get_diagnostics_str(self, state: LangevinKernelState) -> str:
        return "step size {:.2e}. acc. prob={:.2f}".format(
            float(jnp.mean(state.step_size)), float(jnp.mean(state.mean_acceptance))
        )


class ULA(_BatchedLangevin):
    """Unadjusted Langevin for a batch of chains (DDLS Alg. 1, with App. B.2's decay).

    Parameters
    ----------
    model, potential_fn
        Exactly one: a NumPyro model, or a batched potential ``(chains, dim) -> (chains,)``.
    num_chains
        Chains held in the one state.
    step_size, noise_scale, decay_rate, decay_every, noise_decay_rate
        See :class:`ppl_ebm.kernels.adaptation.step_schedule.StepSchedule`; ``noise_scale=None`` is ``sqrt(step_size)``.
        The schedule counts warmup steps too.
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
    ):
        super().__init__(model, potential_fn, num_chains)
        self.schedule = StepSchedule(
            step_size, noise_scale, decay_rate, decay_every, noise_decay_rate
        ).validate()

    def init_state(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        langevin, step, rng_key = self._init(
            rng_key, num_warmup, init_params, model_args, model_kwargs, self.schedule.step_size
        )
        ones = jnp.ones_like(step)
        return LangevinKernelState(jnp.array(0), langevin.position, langevin, step, None, ones, rng_key)

    def transition(self, state: LangevinKernelState) -> LangevinKernelState:
        rng_key, step_key = jax.random.split(state.rng_key)
        step_size, noise_scale = self.schedule.at(state.i)
        langevin, info = ula_step(step_key, state.langevin, self._potential_and_grad, step_size, noise_scale)
        steps, _ = phase_counts(state.i, self._num_warmup, None)
        return LangevinKernelState(
            state.i + 1,
            langevin.position,
            langevin,
            jnp.full_like(state.step_size, step_size),
            None,
            running_mean(state.mean_acceptance, info.acceptance_probability, steps),
            rng_key,
        )


class MALA(_BatchedLangevin):
    """Metropolis-adjusted Langevin for a batch of chains, per-chain accept/reject.

    Parameters
    ----------
    model, potential_fn, num_chains
        As for :class:`ULA`.
    step_size
        Initial step size (DDLS parametrisation: proposal variance ``step_size``).
    adapt_step_size
        Dual averaging towards ``target_accept_prob`` during warmup; the final step size is the
        dual-averaging average, as in NumPyro and Stan.
    target_accept_prob
        0.574 by default, the optimal MALA acceptance (Roberts & Rosenthal 1998).
    per_chain_step_size
        Adapt one step size per chain on its own acceptance (the default), as single-chain
        NUTS does; a chain started in a stiff region then shrinks its own step until it moves,
        where one shared step size (``False``: driven by the mean acceptance over chains, less
        noisy) can leave it rejecting every proposal.
    independence_every
        None (plain MALA), or k >= 2: every k-th step is instead an independence
        Metropolis-Hastings step proposing from N(0, I) (for a latent EBM, its prior: MH-GAN's
        move in latent space, :func:`ppl_ebm.kernels.langevin_jax.independence_step`). Langevin steps
        stay within a mode of a multimodal target; these jump between modes, so chains started
        in the wrong mode still reach the target's mode weights. Step-size adaptation sees the
        MALA steps only; ``mean_independence_acceptance`` reports the jumps.
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
    ):
        super().__init__(model, potential_fn, num_chains)
        StepSchedule(step_size).validate()
        if not 0 < target_accept_prob < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {target_accept_prob!r}.")
        self.step_size = float(step_size)
        self.adapt_step_size = bool(adapt_step_size)
        self.target_accept_prob = float(target_accept_prob)
        self.per_chain_step_size = bool(per_chain_step_size)
        self.independence_every = check_independence_every(independence_every)

    def init_state(self, rng_key, num_warmup, init_params, model_args, model_kwargs):
        langevin, step, rng_key = self._init(
            rng_key, num_warmup, init_params, model_args, model_kwargs, self.step_size
        )
        adaptation = dual_averaging_init(jnp.log(step))
        zeros = jnp.zeros_like(step)
        independence = None if self.independence_every is None else jnp.zeros_like(step)
        return LangevinKernelState(
            jnp.array(0), langevin.position, langevin, step, adaptation, zeros, rng_key, independence
        )

    def transition(self, state: LangevinKernelState) -> LangevinKernelState:
        every = self.independence_every
        if every is None:
            return self._mala_transition(state)
        # Both branches compile; lax.cond runs one per iteration.
        return jax.lax.cond(
            (state.i + 1) % every == 0, self._independence_transition, self._mala_transition, state
        )

    def _mala_transition(self, state: LangevinKernelState) -> LangevinKernelState:
        rng_key, step_key = jax.random.split(state.rng_key)
        langevin, info = mala_step(step_key, state.langevin, self._potential_and_grad, state.step_size)
        acceptance = info.acceptance_probability
        adaptation, step_size = state.adaptation, state.step_size
        if self.adapt_step_size:
            signal = acceptance if self.per_chain_step_size else jnp.mean(acceptance) * jnp.ones_like(acceptance)
            updated = dual_averaging_update(state.adaptation, self.target_accept_prob - signal)
            warming = state.i < self._num_warmup
            adaptation = jax.tree.map(lambda new, old: jnp.where(warming, new, old), updated, state.adaptation)
            last_warmup = state.i == self._num_warmup - 1
            step_size = jnp.where(
                warming,
                jnp.exp(jnp.where(last_warmup, updated.log_step_size_average, updated.log_step_size)),
                state.step_size,
            )
        mala_count, _ = phase_counts(state.i, self._num_warmup, self.independence_every)
        return LangevinKernelState(
            state.i + 1,
            langevin.position,
            langevin,
            step_size,
            adaptation,
            running_mean(state.mean_acceptance, acceptance, mala_count),
            rng_key,
            state.mean_independence_acceptance,
        )

    def _independence_transition(self, state: LangevinKernelState) -> LangevinKernelState:
        # Step-size adaptation sees MALA steps only; warmup still ends on the averaged step.
        rng_key, step_key = jax.random.split(state.rng_key)
        langevin, info = independence_step(step_key, state.langevin, self._potential_and_grad)
        step_size = state.step_size
        if self.adapt_step_size:
            averaged = jnp.exp(state.adaptation.log_step_size_average)
            step_size = jnp.where(state.i == self._num_warmup - 1, averaged, state.step_size)
        _, independence_count = phase_counts(state.i, self._num_warmup, self.independence_every)
        # The adaptation state and the MALA steps' acceptance carry over unchanged.
        return state._replace(
            i=state.i + 1, z=langevin.position, langevin=langevin, step_size=step_size, rng_key=rng_key,
            mean_independence_acceptance=running_mean(
                state.mean_independence_acceptance, info.acceptance_probability, independence_count),
        )
