"""Step-size adaptation as an ``(init, update, final)`` triple, separate from the kernels it tunes.

As BlackJAX's ``adaptation.step_size.dual_averaging_adaptation``: ``init`` starts the state,
``update`` feeds it one step's acceptance, ``final`` gives the step to sample with once warmup
ends. The samplers (:mod:`ppl_ebm.kernels.samplers_jax`, :mod:`ppl_ebm.kernels.samplers_torch`)
own the warmup gating, which is backend-specific (``jnp.where`` on a traced iteration, a
Python ``if`` on an int); this module owns the arithmetic, written once for both backends.

The triple works on *log* step sizes. Arithmetic operators are all it needs there, so one
implementation serves torch tensors and JAX arrays alike (as :mod:`.dual_averaging` does);
the samplers take ``exp`` and ``log`` with their own backend's functions.

Contract of every scheme here, so that a sampler can swap one for another:

- ``init(log_step_size) -> state``: ``log_step_size`` is one value per chain, shape (chains,);
- ``update(state, acceptance) -> state``: ``acceptance`` (chains,) is the step's acceptance
  probability; ``state.log_step_size`` is the log step to use next during warmup;
- ``final(state) -> log step size`` to sample with after warmup.

A sampler selects its scheme by name (:func:`step_size_adaptation`), not by holding the
functions: the sampler is the hashable key of compiled programs, and closures built from
traced hyper-parameters (``target_accept_prob``) cannot be part of it.

References
----------
Hoffman, M. D. and Gelman, A. (2014). The No-U-Turn Sampler. JMLR 15, Algorithm 5.
NumPyro ``infer.hmc_util.dual_averaging`` and BlackJAX ``adaptation.step_size``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from ppl_ebm.kernels.adaptation.dual_averaging import (
    DualAveragingState, dual_averaging_init, dual_averaging_update,
)

__all__ = [
    "ADAPTATIONS", "CrossChainState", "StepSizeAdaptation", "cross_chain_adaptation", "dual_averaging_adaptation",
    "step_size_adaptation",
]


class StepSizeAdaptation(NamedTuple):
    """A step-size adaptation scheme: ``(init, update, final)`` on log step sizes (see the
    module docstring for the contract)."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any], Any]
    final: Callable[[Any], Any]


def dual_averaging_adaptation(
    target_accept_prob: Any,
    per_chain: bool = True,
    t0: float = 10.0,
    kappa: float = 0.75,
    gamma: float = 0.05,
) -> StepSizeAdaptation:
    """Dual averaging of the log step size towards ``target_accept_prob`` (Hoffman & Gelman 2014,
    Alg. 5; defaults as NumPyro and BlackJAX).

    Parameters
    ----------
    target_accept_prob
        Acceptance probability to reach: a float, or a 0-d tensor / (traced) array.
    per_chain
        True: each chain adapts its own step on its own acceptance. False: every chain is fed
        the chains' mean acceptance, so all chains keep one shared step (still stored per chain).
    t0, kappa, gamma
        Dual-averaging constants: stabilisation of the early iterations, decay of the weights
        of the running average, and the shrinkage towards ``log(10 * initial step)``.

    Returns
    -------
    StepSizeAdaptation
        ``init(log_step_size) -> DualAveragingState``; ``update(state, acceptance)`` with the
        "gradient" ``target_accept_prob - acceptance``; ``final(state)`` the averaged log step
        ``log_step_size_average``, which NumPyro and Stan switch to at the end of warmup.
    """

    def init(log_step_size: Any) -> DualAveragingState:
        return dual_averaging_init(log_step_size)

    def update(state: DualAveragingState, acceptance: Any) -> DualAveragingState:
        # The shared signal is a 0-d mean; it broadcasts against the (chains,) state, so every
        # chain takes the same update without materialising a copy per chain.
        signal = acceptance if per_chain else acceptance.mean()
        return dual_averaging_update(state, target_accept_prob - signal, t0, kappa, gamma)

    def final(state: DualAveragingState) -> Any:
        return state.log_step_size_average

    return StepSizeAdaptation(init, update, final)


class CrossChainState(NamedTuple):
    """log step size to use next, its exponential moving average (the step warmup ends on), the
    last change made, the bound on the next change, and how many updates it has had."""

    log_step_size: Any
    log_step_size_average: Any
    last_change: Any
    bound: Any
    iteration: Any


def cross_chain_adaptation(
    target_accept_prob: Any,
    per_chain: bool = False,
    gain: float = 0.25,
    max_change: float = math.log(4.0),
    average_rate: float = 0.5,
) -> StepSizeAdaptation:
    """One step for all chains, moved every warmup step by the chains' mean acceptance: for
    warmups too short for dual averaging (tens of steps), with many chains.

    Dual averaging (Hoffman & Gelman 2014) is built for one chain's noisy acceptance: it shrinks
    towards ``log(10 * initial step)`` and ends on a running average that still weighs its
    first, wild iterates, so it needs a few hundred steps (a 20-step warmup left ``mala-imh``'s
    step at acceptance 0.01 on a 16-d latent EBM, against 0.574 wanted: 10 MALA updates from a
    step too large). With thousands of chains the mean acceptance at the current step is nearly
    noise-free (its standard deviation is at most ``0.5 / sqrt(chains)``), so a Robbins-Monro
    recursion with a constant gain (Andrieu & Thoms 2008, Sec. 5; the cross-chain signal is the
    idea of MEADS, Hoffman & Sountsov 2022) reaches the target within a few steps:

        log step += clip(gain * (a - target) / (a (1 - a) + 0.01), +-bound)

    Dividing by ``a (1 - a)`` makes the move a step in logit(acceptance) near the target and
    lets it cross a wrong start fast (``a`` near 0 or 1: the step moves 4x a warmup step).
    MALA's stationary acceptance ``2 Phi(-c h^(3/2))`` (Roberts & Rosenthal 1998) has slope 0.58
    in log h at 0.574, so ``gain`` 0.25 contracts the error 2.3x a step and stays stable for
    curves up to 3.5x as steep. ``bound`` starts at ``max_change`` (log 4), halves whenever the
    move changes sign and doubles back otherwise (as Rprop does), so a steep curve cannot make
    the saturated moves bounce between two steps for ever. Warmup ends on the moving average of
    the iterates (rate ``average_rate``: about the last three), which damps the signal's
    remaining noise (acceptance within 0.007 of the target with 1000 chains, 0.08 with 8) and
    forgets a start 1000x off. With few chains that noise is large: dual averaging is the
    better choice there.

    ``per_chain`` is ignored: the scheme always feeds every chain the mean, and the registry
    builds its samplers with ``per_chain_step_size=False`` so that a run split over processes
    reduces that mean across them. Arithmetic and ``clip`` only, for both backends.
    """
    floor = 0.01

    def init(log_step_size: Any) -> CrossChainState:
        zero = log_step_size * 0.0
        return CrossChainState(log_step_size, log_step_size, zero, zero + max_change, zero)

    def update(state: CrossChainState, acceptance: Any) -> CrossChainState:
        mean = acceptance.mean()
        raw = gain * (mean - target_accept_prob) / (mean * (1.0 - mean) + floor)
        flipped = raw * state.last_change < 0.0
        bound = flipped * (0.5 * state.bound) + (~flipped) * (2.0 * state.bound).clip(max=max_change)
        change = raw.clip(-bound, bound)
        log_step_size = state.log_step_size + change
        # The first update's average is its iterate: the start is a guess, not an estimate.
        rate = average_rate + (1.0 - average_rate) * (state.iteration == 0)
        average = (1.0 - rate) * state.log_step_size_average + rate * log_step_size
        return CrossChainState(log_step_size, average, change, bound, state.iteration + 1.0)

    def final(state: CrossChainState) -> Any:
        return state.log_step_size_average

    return StepSizeAdaptation(init, update, final)


# Schemes by name. Each factory takes (target_accept_prob, per_chain).
ADAPTATIONS: dict[str, Callable[..., StepSizeAdaptation]] = {
    "dual_averaging": dual_averaging_adaptation,
    "cross_chain": cross_chain_adaptation,
}


def step_size_adaptation(name: str | None, target_accept_prob: Any, per_chain: bool) -> StepSizeAdaptation | None:
    """The scheme registered as ``name`` built for ``target_accept_prob``; None for ``name=None``
    (a fixed step size)."""
    if name is None:
        return None
    if name not in ADAPTATIONS:
        raise ValueError(f"step-size adaptation must be None or one of {sorted(ADAPTATIONS)}, got {name!r}.")
    return ADAPTATIONS[name](target_accept_prob, per_chain)
