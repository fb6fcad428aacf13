"""ChEES-HMC (Hoffman, Radul & Sountsov 2021) through BlackJAX, as a many-chain baseline.

Jittered HMC whose step size (harmonic-mean acceptance across chains, 0.651) and trajectory
length (Adam on the ChEES criterion, computed across chains) are tuned in warmup by
:func:`blackjax.chees_adaptation`; sampling runs :func:`blackjax.dynamic_hmc` with the tuned
parameters on every chain (``jax.vmap``). Tuned as BlackJAX ships it (its defaults), with its
own test's optimiser: Adam, learning rate 0.5, ``b1=0``, ``b2=0.95``, initial step 0.1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["adapt", "build", "gradients"]


def adapt(rng_key: jax.Array, logdensity: Callable, positions: jax.Array, num_warmup: int, num_samples: int,
          options: dict[str, Any]):
    """Warmup: ``(states, parameters, warmup_gradients per chain)``."""
    import blackjax
    import optax

    warmup = blackjax.chees_adaptation(logdensity, positions.shape[0],
                                       target_acceptance_rate=options["target_accept_prob"],
                                       max_leapfrog_steps=options["max_leapfrog_steps"])
    optimiser = optax.adam(learning_rate=options["learning_rate"], b1=0.0, b2=0.95)
    (states, parameters), info = warmup.run(rng_key, positions, step_size=options["step_size"], optim=optimiser,
                                            num_steps=num_warmup, max_sampling_steps=num_samples)
    # One gradient at the start, then one per leapfrog step.
    return states, parameters, 1 + jnp.sum(info.info.num_integration_steps, axis=0)


def build(logdensity: Callable, parameters: dict[str, Any]):
    """The tuned kernel ``step(rng_key, state) -> (state, info)`` of one chain."""
    import blackjax

    return blackjax.dynamic_hmc(logdensity, **parameters).step


def gradients(info) -> jax.Array:
    """Gradient evaluations of one step, per chain."""
    return info.num_integration_steps
