"""``sample(..., until="converged")``: keep sampling until R-hat and ESS say the draws count.

The run is the usual warmup + ``num_samples`` draws, then more blocks of ``num_samples`` draws
continued from the last state (same kernel, adaptation frozen) until rank R-hat (max over
latent dims) is below ``target_rhat`` and bulk and tail ESS (min over dims) reach
``target_ess`` on all post-warmup draws, or ``max_samples`` draws per chain are reached. The
result says which (``stats["converged"]``) and how many steps it took.

Continuation details (why): MALA's per-chain adapted steps are frozen at the end of warmup
and the continuation blocks use their median (the kernels take one step size once adaptation
is off; each block is still an exact MALA kernel, so all draws stay valid). ULA continues at
its step; a decaying ULA schedule would restart, so it is refused here. NUTS/HMC rerun with
their adapted step from the last state is not offered: use the PPL's own ``MCMC.run`` again.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["sample_until_converged"]

_CUMULATIVE = ("grad_evals", "nonfinite", "divergences")
_SECONDS = ("wall_seconds", "compile_seconds", "warmup_seconds", "sampling_seconds")


def _check(latents: np.ndarray, max_chains: int, seed: int) -> tuple[float, float, float]:
    from ppl_ebm.diagnostics.summary import summarize

    # The fast engine: ArviZ's estimators to rounding, without re-reading the growing run in
    # ArviZ's blocks at every check (a third of a 28,000-draw run's wall time went there).
    summary = summarize(latents, max_chains=max_chains, seed=seed, wall_seconds=1.0, grad_evals=1, engine="fast")
    ess_bulk = summary.get("ess_bulk_min_scaled", summary["ess_bulk_min"])
    ess_tail = summary.get("ess_tail_min_scaled", summary["ess_tail_min"])
    return float(summary["rhat_max"]), float(ess_bulk), float(ess_tail)


def sample_until_converged(
    sample_fn,
    target,
    sampler: str,
    backend: str,
    num_chains: int,
    num_warmup: int,
    num_samples: int,
    seed: int,
    *,
    target_rhat: float = 1.01,
    target_ess: float = 400.0,
    max_samples: int = 20_000,
    max_chains: int = 1000,
    progress_bar: bool = True,
    options: dict[str, Any],
    **kwargs,
):
    """Run :func:`ppl_ebm.sample` block by block until converged (see the module docstring)."""
    if sampler not in ("ula", "mala"):
        raise ValueError(f"until='converged' runs ULA or MALA (our kernels continue a run); got {sampler!r}.")
    if options.get("decay_rate", 1.0) != 1.0:
        raise ValueError("until='converged' needs a constant ULA step: leave decay_rate at 1.0.")
    if not target_rhat > 1.0:
        raise ValueError(f"target_rhat must be > 1, got {target_rhat!r}.")
    if not target_ess > 0:
        raise ValueError(f"target_ess must be > 0, got {target_ess!r}.")
    if not (isinstance(max_samples, int) and max_samples >= num_samples):
        raise ValueError(f"max_samples must be an int >= num_samples ({num_samples}), got {max_samples!r}.")
    if kwargs.get("thinning", 1) != 1:
        raise ValueError("until='converged' keeps every draw; thinning must be 1.")
    if kwargs.get("return_generated"):
        raise ValueError("until='converged' does not return generated samples; push result.latents through "
                         "the generator afterwards.")
    first = sample_fn(target, sampler, backend, num_chains, num_warmup, num_samples, seed,
                      progress_bar=progress_bar, **kwargs, **options)
    results = [first]
    blocks, stats = [first.latents], {key: np.array(value, copy=True) for key, value in first.stats.items()}
    history = []
    continued = dict(options)
    if sampler == "mala":
        continued.update(step_size=float(np.median(first.stats["step_size"])), adapt_step_size=False)
    kwargs = {k: v for k, v in kwargs.items() if k != "initial_params"}
    block = 0
    while True:
        latents = np.concatenate(blocks, axis=1)
        rhat, ess_bulk, ess_tail = _check(latents, max_chains, seed)
        history.append({"draws": latents.shape[1], "rhat_max": rhat, "ess_bulk_min": ess_bulk,
                        "ess_tail_min": ess_tail})
        converged = rhat < target_rhat and min(ess_bulk, ess_tail) >= target_ess
        if converged or latents.shape[1] + num_samples > max_samples:
            break
        block += 1
        more = sample_fn(target, sampler, backend, num_chains, 0, num_samples, seed + 7919 * block,
                         initial_params=latents[:, -1], progress_bar=progress_bar, **kwargs, **continued)
        blocks.append(more.latents)
        results.append(more)
        for key in _CUMULATIVE + _SECONDS:
            if key in more.stats:
                stats[key] = stats[key] + np.asarray(more.stats[key])
        stats["acceptance"] = (stats["acceptance"] * len(blocks[:-1]) + more.stats["acceptance"]) / len(blocks)
        stats["stopped"] = np.asarray(stats["stopped"]) | np.asarray(more.stats["stopped"])
    stats.update(converged=bool(converged), convergence_history=history,
                 steps_taken=int(num_warmup + latents.shape[1]), target_rhat=target_rhat, target_ess=target_ess)
    first.latents = latents
    first.stats = stats
    first.posterior = {name: np.concatenate([r.posterior[name] for r in results], axis=1) for name in first.posterior}
    first.extra.update(until="converged")
    return first
