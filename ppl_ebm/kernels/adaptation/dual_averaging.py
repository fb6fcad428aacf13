"""Dual-averaging step-size adaptation (Nesterov 2009; Hoffman & Gelman 2014, Alg. 5).

Written with arithmetic operators only, so one implementation serves torch tensors and JAX
arrays alike (the state may hold one step size or one per chain). It follows NumPyro's
``hmc_util.dual_averaging`` and BlackJAX's ``dual_averaging_adaptation``: the "gradient" fed
to :func:`dual_averaging_update` is ``target_acceptance - acceptance``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

__all__ = ["DualAveragingState", "dual_averaging_init", "dual_averaging_update"]


class DualAveragingState(NamedTuple):
    """log step size to use next, its running average, the averaged gradient, the count,
    and the proximal centre ``log(10 * initial step size)``."""

    log_step_size: Any
    log_step_size_average: Any
    gradient_average: Any
    iteration: Any
    prox_center: Any


def dual_averaging_init(log_step_size: Any) -> DualAveragingState:
    """Start from ``log_step_size`` (a float, a tensor or an array)."""
    zero = log_step_size * 0.0
    return DualAveragingState(
        log_step_size, log_step_size, zero, zero, log_step_size + math.log(10.0)
    )


def dual_averaging_update(
    state: DualAveragingState,
    gradient: Any,
    t0: float = 10.0,
    kappa: float = 0.75,
    gamma: float = 0.05,
) -> DualAveragingState:
    """One update with ``gradient = target_acceptance - acceptance`` (defaults as NumPyro)."""
    iteration = state.iteration + 1.0
    weight = 1.0 / (iteration + t0)
    gradient_average = (1.0 - weight) * state.gradient_average + weight * gradient
    log_step_size = state.prox_center - (iteration**0.5) / gamma * gradient_average
    average_weight = iteration ** (-kappa)
    log_step_size_average = (
        1.0 - average_weight
    ) * state.log_step_size_average + average_weight * log_step_size
    return DualAveragingState(
        log_step_size, log_step_size_average, gradient_average, iteration, state.prox_center
    )
