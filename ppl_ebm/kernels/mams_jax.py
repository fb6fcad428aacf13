"""MAMS, adjusted microcanonical Langevin (Robnik, Cohn-Gordon & Seljak 2025), through
BlackJAX, as a many-chain baseline.

Metropolis-adjusted isokinetic dynamics with random trajectory lengths (uniform, mean
``L / step``) and a diagonal preconditioner, as BlackJAX's ``adjusted_mclmc_dynamic``.
Tuned as its authors do, with BlackJAX's own tuner :func:`blackjax.adjusted_mclmc_find_L_and_step_size`:
target acceptance 0.9, ``frac_tune1 = frac_tune2 = frac_tune3 = 0.1``, diagonal preconditioning.
The tuner tunes one chain. It runs on ``tuning_chains`` chains (16 by default; ``jax.vmap``),
their parameters are pooled (median step and L, mean inverse mass matrix): one kernel for all
chains, as ChEES and MEADS. Then every chain, from its initial position, is burned in for
``num_warmup`` steps of that kernel, so all start sampling burned in with the same warmup
budget. Why not the tuner on every chain (as before): its steps are while loops of random
trajectory lengths, and vmapped they cost every chain the longest chain's trajectory at every
step; on a latent EBM (25gaussians-nsgan) 1000 chains never finished warmup in 15 min, while
the tuned kernel (about 2 integrator steps a proposal) is cheap. The tuning chains' tuner
gradients are counted on top of their burn-in in the warmup gradients.
The tuner's ``num_steps`` is the sampling length it tunes for; it spends ``0.4 num_steps``
steps (two dual-averaging windows of 0.1 each, 0.1 for L from the ESS, then 0.1 more of
dual averaging), so ``num_steps = num_warmup / 0.4`` makes it spend the warmup it is given.
Note: in blackjax 1.7.1 the tuner ends with ``L = 2 step`` (its ``target_num_integration_steps``
default; the docstring's robustness study), so the ESS-based L of ``frac_tune3`` is overridden;
its last dual averaging (tuned at the ESS-based L) still sets the step, so ``frac_tune3`` is not
a no-op and is kept as the authors' fractions have it.
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
    """Warmup: ``(states, parameters, warmup_gradients per chain)``.

    BlackJAX's tuner on the first ``tuning_chains`` chains, their parameters pooled, then every
    chain burned in from its initial position for ``num_warmup`` steps of the tuned kernel.
    A tuning chain's warmup gradients are its tuner's plus its burn-in's; the others', their
    burn-in's (so the total is every gradient the warmup took).
    """
    import blackjax
    from blackjax.mcmc import adjusted_mclmc_dynamic

    num_chains = positions.shape[0]
    num_tuning = min(int(options.get("tuning_chains", 16)), num_chains)
    kernel = adjusted_mclmc_dynamic.build_kernel(integration_steps_fn=_steps_fn())
    tune_key, init_key, burn_key = jax.random.split(rng_key, 3)
    tune_keys = jax.random.split(tune_key, num_tuning)
    init_keys = jax.random.split(init_key, num_chains)
    tuner_steps = max(int(round(num_warmup / (FRACTIONS[0] * 2 + FRACTIONS[1] + FRACTIONS[2]))), 10)

    def tune(key, init_key, position):
        state = adjusted_mclmc_dynamic.init(position, logdensity, init_key)
        _, params, integrator_steps = blackjax.adjusted_mclmc_find_L_and_step_size(
            mclmc_kernel=kernel, logdensity_fn=logdensity, num_steps=tuner_steps, state=state, rng_key=key,
            target=options["target_accept_prob"], frac_tune1=FRACTIONS[0], frac_tune2=FRACTIONS[1],
            frac_tune3=FRACTIONS[2], diagonal_preconditioning=True)
        return params, integrator_steps

    params, integrator_steps = jax.vmap(tune)(tune_keys, init_keys[:num_tuning], positions[:num_tuning])
    step_size = jnp.median(params.step_size)
    parameters = {"step_size": step_size, "avg_num_integration_steps": jnp.median(params.L) / step_size,
                  "inverse_mass_matrix": jnp.mean(params.inverse_mass_matrix, axis=0)}
    # One gradient at the start, then two per integrator step.
    tuner_gradients = 1 + GRADS_PER_STEP * jnp.asarray(integrator_steps)

    # Burn-in: every chain, from its initial position, num_warmup steps of the tuned kernel.
    step = jax.vmap(build(logdensity, parameters))
    states = jax.vmap(lambda p, k: adjusted_mclmc_dynamic.init(p, logdensity, k))(positions, init_keys)

    def burn(carry, key):
        states, used = carry
        states, info = step(jax.random.split(key, num_chains), states)
        return (states, used + gradients(info).astype(jnp.int32)), None

    (states, burn_gradients), _ = jax.lax.scan(
        burn, (states, jnp.ones(num_chains, dtype=jnp.int32)), jax.random.split(burn_key, num_warmup))
    warmup_gradients = burn_gradients.at[:num_tuning].add(tuner_gradients.astype(burn_gradients.dtype))
    return states, parameters, warmup_gradients


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
