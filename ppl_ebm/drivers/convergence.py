"""``sample(..., until="converged")``: keep sampling the same chains until R-hat and ESS say
the draws count.

The run is the usual warmup + ``num_samples`` draws; then the driver continues **the same
chains** (their final state: positions, adapted step sizes, PRNG state) by blocks of
``num_samples`` draws, on the same compiled program, until rank R-hat (max over latent dims)
is below ``target_rhat`` and bulk and tail ESS (min over dims) reach ``target_ess`` on all
post-warmup draws, or ``max_samples`` draws per chain are reached. So the draws are exactly
those of one long run of the same length with the same seed (tested), and the result says
whether it converged (``stats["converged"]``) and how many steps it took.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ppl_ebm.result import SamplerStats

__all__ = ["check_convergence_settings", "continue_until_converged"]

_SECONDS = ("wall_seconds", "compile_seconds", "warmup_seconds", "sampling_seconds")


def check_convergence_settings(target_rhat: float, target_ess: float, max_samples: int, num_samples: int,
                               thinning: int, return_generated: bool) -> None:
    """Refuse settings ``until="converged"`` cannot honour, before any work."""
    from ppl_ebm.validation import check_real

    check_real("target_rhat", target_rhat, low=1.0)
    check_real("target_ess", target_ess, low=0.0)
    if isinstance(max_samples, bool) or not (isinstance(max_samples, int) and max_samples >= num_samples):
        raise ValueError(f"max_samples must be an int >= num_samples ({num_samples}), got {max_samples!r}.")
    if thinning != 1:
        raise ValueError("until='converged' keeps every draw; thinning must be 1.")
    if return_generated:
        raise ValueError("until='converged' does not return generated samples; push result.latents through "
                         "the generator afterwards.")


def _check(latents: np.ndarray, max_chains: int, seed: int) -> tuple[float, float, float]:
    from ppl_ebm.diagnostics import summarize

    # The fast engine: ArviZ's estimators to rounding, without re-reading the growing run in
    # ArviZ's blocks at every check (a third of a 28,000-draw run's wall time went there).
    summary = summarize(latents, max_chains=max_chains, seed=seed, wall_seconds=1.0, grad_evals=1, engine="fast")
    ess_bulk = summary.get("ess_bulk_min_scaled", summary["ess_bulk_min"])
    ess_tail = summary.get("ess_tail_min_scaled", summary["ess_tail_min"])
    return float(summary["rhat_max"]), float(ess_bulk), float(ess_tail)


def continue_until_converged(
    run_block: Callable,
    chain,
    num_samples: int,
    num_warmup: int,
    target_rhat: float,
    target_ess: float,
    max_samples: int,
    seed: int,
    max_chains: int = 1000,
) -> tuple[np.ndarray, SamplerStats]:
    """Run ``chain`` (warmup + ``num_samples``) with ``run_block(chain, count) -> (chain, draws,
    stats)``, then continue the final state block by block until converged (module docstring).

    Returns ``(latents (chain, draw, dim), stats)``: a :class:`~ppl_ebm.result.SamplerStats`
    holding the state's own statistics of the last block (acceptance, counts and
    ``grad_evals`` are over the whole run, since the state carries them), seconds summed over
    blocks, and ``converged``, ``convergence_history``, ``steps_taken``, ``target_rhat``,
    ``target_ess``.
    """
    chain, first, stats = run_block(chain, num_samples)
    blocks, seconds = [first], {key: float(stats[key]) for key in _SECONDS}
    history = []
    while True:
        latents = np.concatenate(blocks, axis=1)
        rhat, ess_bulk, ess_tail = _check(latents, max_chains, seed)
        history.append({"draws": latents.shape[1], "rhat_max": rhat, "ess_bulk_min": ess_bulk,
                        "ess_tail_min": ess_tail})
        converged = rhat < target_rhat and min(ess_bulk, ess_tail) >= target_ess
        if converged or latents.shape[1] + num_samples > max_samples:
            break
        chain, more, stats = run_block(chain, num_samples)
        blocks.append(more)
        for key in _SECONDS:
            seconds[key] += float(stats[key])
    stats = dataclasses.replace(stats, **seconds, converged=bool(converged), convergence_history=history,
                                steps_taken=int(num_warmup + latents.shape[1]), target_rhat=float(target_rhat),
                                target_ess=float(target_ess))
    return latents, stats
