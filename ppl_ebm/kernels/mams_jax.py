"""MAMS, adjusted microcanonical Langevin (Robnik, Cohn-Gordon & Seljak 2025), through
BlackJAX, as a many-chain baseline.

Metropolis-adjusted isokinetic dynamics with random trajectory lengths (uniform, mean
``L / step``) and a diagonal preconditioner, as BlackJAX's ``adjusted_mclmc_dynamic``.
Tuned as its authors do, with BlackJAX's own tuner :func:`blackjax.adjusted_mclmc_find_L_and_step_size`:
target acceptance 0.9, ``frac_tune1 = frac_tune2 = frac_tune3 = 0.1``, diagonal preconditioning.
The tuner tunes one chain; here every chain runs it (``jax.vmap``), so the warmup also burns
every chain in, and the chains then sample with the tuned parameters pooled across chains
(median step and L, mean inverse mass matrix): one kernel for all chains, as ChEES and MEADS.
The tuner's ``num_steps`` is the sampling length it tunes for; it spends ``0.4 num_steps``
steps (two dual-averaging windows of 0.1 each, 0.1 for L from the ESS, then 0.1 more of
dual averaging), so ``num_steps = num_warmup / 0.4`` makes it spend the warmup it is given.
Note: in blackjax 1.7.1 the tuner ends with ``L = 2 step`` (its ``target_num_integration_steps``
default; the docstring's robustness study), so the ESS-based L of ``frac_tune3`` is overridden.
The isokinetic McLachlan integrator takes two gradients a step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["adapt", "build", "gradients"]

FRACTIONS = (0.1, 0.1, 0.1)  # the authors' (BlackJAX sampling book's) tuning fractions
TARGET_ACCEPTANCE = 0.9  # MAMS's authors' target (higher than HMC's: longer, jittered trajectories)
GRADS_PER_STEP = 2  # isokinetic McLachlan: two force evaluations per step


def _steps_fn():
    from blackjax.mcmc.adjusted_mclmc_dynamic import make_random_trajectory_length_fn

    return make_random_trajectory_length_fn(True)


def adapt(rng_key: jax.Array, logdensity: Callable, positions: jax.Array, num_warmup: int, num_samples: int,
          options: dict[str, Any]):
    """Warmup: ``(states, parameters, warmup_gradients per chain)``."""
    import blackjax
    from blackjax.mcmc import adjusted_mclmc_dynamic

    num_chains = positions.shape[0]
    kernel = adjusted_mclmc_dynamic.build_kernel(integration_steps_fn=_steps_fn())
    init_keys, tune_keys = (jax.random.split(k, num_chains) for k in jax.random.split(rng_key))
    tuner_steps = max(int(round(num_warmup / (FRACTIONS[0] * 2 + FRACTIONS[1] + FRACTIONS[2]))), 10)

    def tune(key, init_key, position):
        state = adjusted_mclmc_dynamic.init(position, logdensity, init_key)
        state, params, integrator_steps = blackjax.adjusted_mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, logdensity_fn=logdensity, num_steps=tuner_steps, state=state, rng_key=key,
            target=options["target_accept_prob"], frac_tune1=FRACTIONS[0], frac_tune2=FRACTIONS[1],
            frac_tune3=FRACTIONS[2], diagonal_preconditioning=True)
        return state, params, integrator_steps

    states, params, integrator_steps = jax.vmap(tune)(tune_keys, init_keys, positions)
    step_size = jnp.median(params.step_size)
    parameters = {"step_size": step_size, "avg_num_integration_steps": jnp.median(params.L) / step_size,
                  "inverse_mass_matrix": jnp.mean(params.inverse_mass_matrix, axis=0)}
    # One gradient at the start, then two per integrator step.
    return states, parameters, 1 + GRADS_PER_STEP * jnp.asarray(integrator_steps)


def build(logdensity: Callable, parameters: dict[str, Any]):
    """The tuned kernel ``step(rng_key, state) -> (state, info)`` of one chain."""
    import blackjax

    return blackjax.adjusted_mclmc_dynamic(
        logdensity, parameters["step_size"], inverse_mass_matrix=parameters["inverse_mass_matrix"],
        integration_steps_fn=_steps_fn(),
        integration_steps_params=(parameters["avg_num_integration_steps"],)).step


def gradients(info) -> jax.Array:
    """Gradient evaluations of one step, per chain."""
    return GRADS_PER_STEP * info.num_integration_steps
