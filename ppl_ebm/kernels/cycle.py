"""Kernel composition: every k-th step another kernel, shared by both backends.

Written once for MALA with independence steps (``independence_every``) and for the global-local
samplers (Ex2MCMC, :mod:`ppl_ebm.kernels.isir_jax`). Step ``j`` (0-based, warmup included) is the other kernel
(for MALA: an independence Metropolis-Hastings step from the prior) when ``(j + 1) % every == 0``,
and the base kernel otherwise. A fixed cycle of kernels that each
leave the target invariant leaves it invariant; a random choice would too, but the cycle keeps
the cost per draw fixed and the draws reproducible from the seed alone.

:func:`cycle_kernel` is that composition, written once: each backend passes its own branch
primitive (``jax.lax.cond`` on a traced iteration, :func:`python_cond` on a Python int).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "check_independence_every", "check_lagged_cycle", "cycle_kernel", "is_other_step", "phase_counts",
    "python_cond", "running_mean",
]


def is_other_step(iteration, every: int):
    """Whether step ``iteration`` (0-based) is the cycle's other kernel: ``(iteration + 1) % every == 0``.
    Plain arithmetic: a Python int (torch) or a traced JAX integer."""
    return (iteration + 1) % every == 0


def python_cond(pred: Any, true_fun: Callable[..., Any], false_fun: Callable[..., Any], *operands: Any) -> Any:
    """``jax.lax.cond``'s signature as a Python branch (torch: the iteration is a Python int, and
    only the branch taken runs)."""
    return true_fun(*operands) if pred else false_fun(*operands)


def cycle_kernel(
    cond: Callable[..., Any],
    every: int | None,
    base: Callable[..., Any],
    other: Callable[..., Any],
) -> Callable[..., Any]:
    """``kernel(iteration, *operands)``: ``other(*operands)`` at every ``every``-th step
    (:func:`is_other_step`), ``base(*operands)`` otherwise.

    Parameters
    ----------
    cond
        The backend's branch primitive, ``cond(pred, true_fun, false_fun, *operands)``:
        ``jax.lax.cond`` (both branches compile, one runs per step) or :func:`python_cond`.
    every
        The cycle's length k >= 2, or None: every step is ``base`` (no branch is built).
    base, other
        The two kernels, each called with the operands only. For MALA with independence steps
        they are the MALA step and the independence step from the prior; for i-SIR / Ex2MCMC
        (Samsonov et al. 2022) they are MALA and the i-SIR step. Under ``jax.lax.cond`` both
        must return the same structure.

    Returns
    -------
    Callable
        ``kernel(iteration, *operands)``; ``iteration`` is 0-based, warmup included.
    """
    if every is None:
        return lambda iteration, *operands: base(*operands)
    return lambda iteration, *operands: cond(is_other_step(iteration, every), other, base, *operands)


def check_independence_every(value) -> int | None:
    """None, or an int >= 2; 1 would leave no Langevin step (that sampler is the MH-GAN
    baseline, :func:`ppl_ebm.baselines.methods.mh_gan`)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ValueError(
            "independence_every must be None or an int >= 2 (every k-th step an independence "
            f"step proposing from the prior); got {value!r}."
        )
    return value


def check_lagged_cycle(sampler: str, lag: int, every) -> int | None:
    """``every`` checked for an L-lag coupling (:func:`ppl_ebm.kernels.coupling_jax.lagged_meeting_times`):
    a MALA option whose cycle ``lag`` is a multiple of."""
    every = check_independence_every(every)
    if every is not None and sampler != "mala":
        raise ValueError(f"independence_every is a MALA option, not {sampler!r}'s.")
    # The coupled kernel moves X_t and Y_(t-L) together: both take the same kind of step (the
    # cycle's phase, (t + 1) % k == 0 for X, (t - L + 1) % k == 0 for Y) only when L is a
    # multiple of k. Otherwise it would pair a MALA step with an independence step, and its
    # two marginals could not both be the sampler's own kernel at that step.
    if every is not None and lag % every:
        raise ValueError(f"lag ({lag}) must be a multiple of independence_every ({every}): X_t and Y_(t-L) "
                         "must take the same kind of step.")
    return every


def phase_counts(i, num_warmup: int, every: int | None):
    """``(MALA steps, independence steps)`` in the current phase (warmup, or sampling once
    ``i >= num_warmup``) up to and including iteration ``i``: the divisors of the per-phase
    running mean acceptances. Plain arithmetic, so ``i`` may be a Python int (torch) or a
    traced JAX integer."""
    start = num_warmup * (i >= num_warmup)
    steps = i + 1 - start
    if every is None:
        return steps, 0 * steps
    independence = (i + 1) // every - start // every
    return steps - independence, independence


def running_mean(previous, value, count):
    """Mean of a phase's values after its ``count``-th one; restarts at ``count == 1``
    (the previous phase's mean is dropped, not averaged in)."""
    previous = previous * (count > 1)
    return previous + (value - previous) / count
