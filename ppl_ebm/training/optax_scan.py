"""One compiled chunk of optimiser steps: ``lax.scan`` over keys of ``loss(params, key)`` and an
optax update, for the JAX training loops that minimise one loss (the toy VAE, the flow, the
critic's fine-tuning).

A chunk is one program call, so a loop of chunks can show progress and check a clock between
calls without paying Python's overhead on every step."""

from __future__ import annotations

from collections.abc import Callable

import jax
import optax

__all__ = ["scan_chunk"]


def scan_chunk(loss: Callable, optimiser: optax.GradientTransformation) -> Callable:
    """``chunk((params, state), keys) -> ((params, state), -loss per step)``, jitted."""

    def iteration(carry, key):
        params, state = carry
        value, grads = jax.value_and_grad(loss)(params, key)
        updates, state = optimiser.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), -value

    @jax.jit
    def chunk(carry, keys):
        return jax.lax.scan(iteration, carry, keys)

    return chunk
