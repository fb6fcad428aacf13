"""MEADS (Hoffman & Sountsov 2022) through BlackJAX, as a many-chain baseline.

Generalised HMC (one leapfrog step, partial momentum refresh, persistent Metropolis) whose
step size, damping and diagonal preconditioner are set from cross-chain statistics over 4
folds (:func:`blackjax.meads_adaptation`, the paper's Algorithm 3); sampling runs
:func:`blackjax.ghmc` with the adapted parameters. Tuned as BlackJAX ships it (its defaults:
4 folds, step-size multiplier 0.5). The chains must split into the 4 folds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["adapt", "build", "gradients"]

NUM_FOLDS = 4  # the paper's and BlackJAX's default


def adapt(rng_key: jax.Array, logdensity: Callable, positions: jax.Array, num_warmup: int, num_samples: int,
          options: dict[str, Any]):
    """Warmup: ``(states, parameters, warmup_gradients per chain)``."""
    import blackjax

    num_chains = positions.shape[0]
    if num_chains % NUM_FOLDS:
        raise ValueError(f"num_chains must be a multiple of {NUM_FOLDS} for 'meads' (its cross-chain folds), "
                         f"got {num_chains}.")
    warmup = blackjax.meads_adaptation(logdensity, num_chains, num_folds=NUM_FOLDS)
    (states, parameters), _ = warmup.run(rng_key, positions, num_steps=num_warmup)
    # One gradient at the start, then one leapfrog step per warmup step (a frozen fold's too:
    # it is counted as spent, as the chains run on the same device step).
    return states, parameters, jnp.full((num_chains,), 1 + num_warmup)


def build(logdensity: Callable, parameters: dict[str, Any]):
    """The tuned kernel ``step(rng_key, state) -> (state, info)`` of one chain."""
    import blackjax

    return blackjax.ghmc(logdensity, **parameters).step


def gradients(info) -> jax.Array:
    """Gradient evaluations of one step, per chain: GHMC takes one leapfrog step."""
    return jnp.ones_like(info.acceptance_rate, dtype=jnp.int32)
