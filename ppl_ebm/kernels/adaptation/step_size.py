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

from collections.abc import Callable
from typing import Any, NamedTuple

from ppl_ebm.kernels.adaptation.dual_averaging import (
    DualAveragingState, dual_averaging_init, dual_averaging_update,
)

__all__ = ["ADAPTATIONS", "StepSizeAdaptation", "dual_averaging_adaptation", "step_size_adaptation"]


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


# Schemes by name. Each factory takes (target_accept_prob, per_chain): a fixed schedule or a
# cross-chain scheme (ChEES-style) registers here under a new name.
ADAPTATIONS: dict[str, Callable[..., StepSizeAdaptation]] = {
    "dual_averaging": dual_averaging_adaptation,
}


def step_size_adaptation(name: str | None, target_accept_prob: Any, per_chain: bool) -> StepSizeAdaptation | None:
    """The scheme registered as ``name`` built for ``target_accept_prob``; None for ``name=None``
    (a fixed step size)."""
    if name is None:
        return None
    if name not in ADAPTATIONS:
        raise ValueError(f"step-size adaptation must be None or one of {sorted(ADAPTATIONS)}, got {name!r}.")
    return ADAPTATIONS[name](target_accept_prob, per_chain)
