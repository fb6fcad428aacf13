"""Mixing-time bounds from L-lag couplings (Biswas, Jacob & Vanetti 2019) and nested R-hat
(Margossian et al. 2022), backend-free.

Given meeting times ``tau`` of L-lag coupled chains (:func:`ppl_ebm.kernels.coupling_jax.lagged_meeting_times`
or its torch mirror), Theorem 2.5 of the paper bounds the total-variation distance between the
chain's law after ``t`` steps and its stationary law:

    TV(pi_t, pi) <= E[max(0, ceil((tau - L - t) / L))].

The expectation is estimated by the average over independent coupled pairs; its Monte Carlo
standard error is reported beside it. A larger lag gives a tighter bound (the paper's advice:
increase L until the bound stops improving).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["MixingBound", "mixing_time", "nested_rhat", "nested_rhat_reference", "tv_upper_bound"]


class MixingBound(NamedTuple):
    iterations: np.ndarray
    bound: np.ndarray
    standard_error: np.ndarray
    lag: int
    num_pairs: int


def tv_upper_bound(meeting_times, lag: int, iterations=None) -> MixingBound:
    """The L-lag TV upper bound at each of ``iterations`` (default 0 .. max tau).

    Parameters
    ----------
    meeting_times
        One ``tau`` per coupled pair (``tau > lag``); a negative entry marks a pair that did not
        meet, which makes the bound unknown: an error says to run longer.
    lag
        The ``L`` the meeting times were produced with.
    iterations
        Steps ``t`` at which to evaluate the bound.
    """
    tau = np.asarray(meeting_times).reshape(-1).astype(np.int64)
    if not (isinstance(lag, (int, np.integer)) and lag >= 1):
        raise ValueError(f"lag must be an int >= 1, got {lag!r}.")
    if tau.size == 0:
        raise ValueError("meeting_times is empty: run at least one coupled pair.")
    censored = int(np.sum(tau < 0))
    if censored:
        raise ValueError(
            f"{censored} of {tau.size} pairs did not meet within max_iterations; the bound needs every "
            "meeting time. Raise max_iterations (or the lag)."
        )
    if np.any(tau <= lag):
        raise ValueError(f"meeting times must exceed the lag {lag} (tau = inf{{t > L: X_t = Y_(t-L)}}).")
    if iterations is None:
        iterations = np.arange(int(tau.max()) + 1)
    iterations = np.asarray(iterations, dtype=np.int64).reshape(-1)
    # (pairs, iterations): the number of L-blocks by which tau - L exceeds t, floored at 0.
    terms = np.maximum(0, np.ceil((tau[:, None] - lag - iterations[None, :]) / lag))
    bound = terms.mean(axis=0)
    standard_error = terms.std(axis=0, ddof=1) / np.sqrt(tau.size) if tau.size > 1 else np.full(bound.shape, np.nan)
    return MixingBound(iterations, bound, standard_error, int(lag), int(tau.size))


def mixing_time(bound: MixingBound, epsilon: float = 0.25) -> int | None:
    """The first iteration at which the estimated bound is at most ``epsilon`` (the
    conventional 1/4 by default); None when it never is on ``bound.iterations``."""
    below = np.nonzero(bound.bound <= epsilon)[0]
    return int(bound.iterations[below[0]]) if below.size else None


def nested_rhat(draws, superchains: int) -> np.ndarray:
    """Nested R-hat (Margossian et al. 2022) per dimension, for many short chains.

    ``draws`` is ``(chains, draws, dims)`` with the chains grouped in order into
    ``superchains`` groups of equal size; chains of one group should share their starting
    point (that is what makes it a test of forgetting the start). Works down to one draw per
    chain. ``sqrt(1 + B / W)``: B the variance of the superchain means, W the mean over
    superchains of (between-chain variance within it + mean within-chain variance).
    """
    x = np.asarray(draws, dtype=np.float64)
    if x.ndim == 2:
        x = x[..., None]
    chains, num_draws = x.shape[:2]
    if not (isinstance(superchains, (int, np.integer)) and superchains >= 2 and chains % superchains == 0
            and chains // superchains >= 2):
        raise ValueError(
            f"superchains must be an int >= 2 dividing the {chains} chains into groups of >= 2; got {superchains!r}."
        )
    x = x.reshape(superchains, chains // superchains, num_draws, -1)
    chain_means = x.mean(axis=2)  # (K, M, dims)
    super_means = chain_means.mean(axis=1)  # (K, dims)
    between = super_means.var(axis=0, ddof=1)
    within_chain = x.var(axis=2, ddof=1).mean(axis=1) if num_draws > 1 else 0.0
    within = (chain_means.var(axis=1, ddof=1) + within_chain).mean(axis=0)
    return np.sqrt(1.0 + between / within)


def nested_rhat_reference(chains_per_superchain: int, draws_per_chain: int) -> float:
    """What :func:`nested_rhat` reads, to first order, on independent draws from the target.

    It is not 1: with ``m`` chains of ``n`` draws per superchain, the superchain means still
    vary by ``sigma^2 / (m n)`` while ``W`` is ``sigma^2 / n`` (+ ``sigma^2`` when ``n > 1``),
    so ``sqrt(1 + B / W)`` -> ``sqrt(1 + 1/m)`` for one draw per chain (1.025 at ``m = 20``)
    and ``sqrt(1 + 1 / (m (n + 1)))`` otherwise. A fixed ``< 1.01`` cannot be met by mixed
    chains at small ``m``; compare with this value instead (``+ 0.01`` in ``ppl-ebm mixing``).
    """
    m, n = chains_per_superchain, draws_per_chain
    if m < 2 or n < 1:
        raise ValueError(f"need >= 2 chains per superchain and >= 1 draw per chain, got {m} and {n}.")
    within = 1.0 / n + (1.0 if n > 1 else 0.0)
    return float(np.sqrt(1.0 + 1.0 / (m * n) / within))
