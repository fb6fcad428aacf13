"""The anchors' metrics of a run against a known truth (issue 20, items 4 and 6).

Robnik et al.'s standardised squared bias of ``E[x^2]`` per coordinate,
``b2 = (mean(x^2) - E[x^2])^2 / Var[x^2]``, averaged (``b2_avg``) and worst (``b2_max``) over
coordinates; its curve over the draws (all chains pooled, draw by draw) against gradient
evaluations per chain; the gradients after which ``b2_max`` stays below 0.01 ("low bias").

Truth: the standard targets' closed forms (:mod:`ppl_ebm.targets.standard`; ``Var[x^2]`` from
10^6 exact draws), and for a 2-D latent EBM quadrature on a grid in latent space
(:func:`quadrature_truth`), a box wide enough that the target check's mode and every prior
draw lie well inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["THRESHOLD", "Truth", "bias_metrics", "latent_ebm_truth", "quadrature_truth", "standard_truth"]

THRESHOLD = 0.01  # Robnik et al.'s "low bias"


@dataclass(frozen=True)
class Truth:
    """Exact ``E[x]``, ``E[x^2]`` and ``Var[x^2]`` per coordinate, and how they were found."""

    mean: np.ndarray
    second: np.ndarray
    variance: np.ndarray  # Var[x^2]
    source: str


def standard_truth(target, draws: int = 1_000_000) -> Truth:
    """A standard target's truth: ``E[x^2]`` in closed form, ``Var[x^2]`` from exact draws."""
    mean = np.asarray(target.true_mean, np.float64)
    second = mean**2 + np.asarray(target.true_var, np.float64)
    sample = target.exact_sample(draws, seed=1)
    return Truth(mean, second, np.var(sample**2, axis=0), f"closed form; Var[x^2] from {draws:,} exact draws")


def _grid_moments(potential: Callable, half_width: float, points: int, constrain: Callable):
    axis = np.linspace(-half_width, half_width, points)
    u = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    energy = np.asarray(potential(u), np.float64)
    if not np.all(np.isfinite(energy)):
        raise ValueError("the potential is not finite on the quadrature grid.")
    weight = np.exp(-(energy - energy.min()))
    weight /= weight.sum()
    z = np.asarray(constrain(u), np.float64)
    moments = [weight @ z**k for k in (1, 2, 4)]
    # Mass on the grid's outer ring (the outer 5% of the box in either coordinate).
    rim = (np.abs(u) > 0.95 * half_width).any(axis=1)
    return moments, float(weight[rim].sum())


def quadrature_truth(potential: Callable, half_width: float, points: int = 1000,
                     constrain: Callable = lambda u: u, max_rim_mass: float = 1e-6,
                     tolerance: float | None = None, max_points: int = 4000) -> Truth:
    """Moments of ``exp(-potential(u))`` on 2-D ``u`` by quadrature on a ``points x points`` grid
    over ``[-half_width, half_width]^2`` (``potential``: numpy ``(n, 2) -> (n,)``), of the latent
    ``z = constrain(u)``. The same sums on a grid of half the points give the resolution error,
    kept in ``source``. That error is measured as the bias it would put in every row, ``b2`` =
    (change in E[z^2])^2 / Var[z^2]; while it is above ``tolerance`` (default: 1% of
    :data:`THRESHOLD`) the grid doubles, up to ``max_points`` (a sharp target: 500 points left the
    Swiss Roll NS-GAN's E[z^2] 10% off, which put the samplers' bias at 0.004 against the 0.01
    threshold). Refuses a box whose outer 5% ring holds more than ``max_rim_mass``: the box would
    be cutting the target off."""
    if not (isinstance(points, int) and points >= 20):
        raise ValueError(f"points must be an int >= 20, got {points!r}.")
    if not half_width > 0:
        raise ValueError(f"half_width must be > 0, got {half_width!r}.")
    tolerance = THRESHOLD / 100 if tolerance is None else tolerance
    (mean, second, fourth), rim = _grid_moments(potential, half_width, points, constrain)
    if rim > max_rim_mass:
        raise ValueError(f"half_width {half_width:g} is too small: the box's outer ring holds {rim:.2g} of the mass "
                         f"(more than {max_rim_mass:g}).")
    (_, coarse, _), _ = _grid_moments(potential, half_width, points // 2, constrain)
    while True:
        error_b2 = float(np.max((coarse - second) ** 2 / (fourth - second**2)))
        if error_b2 <= tolerance or 2 * points > max_points:
            break
        points, coarse = 2 * points, second
        (mean, second, fourth), rim = _grid_moments(potential, half_width, points, constrain)
    resolution = float(np.max(np.abs(coarse - second) / np.maximum(np.abs(second), 1e-12)))
    unresolved = "" if error_b2 <= tolerance else f"; NOT resolved to b2 {tolerance:g}: the bias column is that uncertain"
    return Truth(mean, second, fourth - second**2,
                 f"quadrature, {points}x{points} grid over [-{half_width:g}, {half_width:g}]^2 (ring mass {rim:.1g}; "
                 f"E[z^2] moves {resolution:.1g} relative at half the points, b2 {error_b2:.1g}{unresolved})")


def latent_ebm_truth(ebm, check: dict, points: int = 1000) -> Truth:
    """A 2-D latent EBM's truth by :func:`quadrature_truth`, its box from the target check:
    1.5 x the farther of the potential's minimum and the prior draws' reach, plus 4."""
    import torch

    if ebm.dim != 2:
        raise ValueError(f"quadrature truth needs a 2-D latent, got dim {ebm.dim}.")
    half_width = 1.5 * max(check["argmin_norm"], check["prior_max_norm"]) + 4.0

    def batched(function):
        def run(u):
            with torch.no_grad():
                parts = [function(torch.as_tensor(u[i:i + 65536], dtype=torch.float32, device=ebm.device))
                         for i in range(0, len(u), 65536)]
            return torch.cat(parts).double().cpu().numpy()
        return run

    return quadrature_truth(batched(ebm.potential), half_width, points, batched(ebm.constrain))


def bias_curve(latents: np.ndarray, truth: Truth) -> np.ndarray:
    """``b2_max`` of the draws up to each draw, all chains pooled; ``latents`` (chain, draw, dim)."""
    running = np.cumsum((latents.astype(np.float64) ** 2).mean(axis=0), axis=0)
    running /= np.arange(1, latents.shape[1] + 1)[:, None]
    return ((running - truth.second) ** 2 / truth.variance).max(axis=1)


def bias_metrics(latents: np.ndarray, truth: Truth, grads_per_chain: float, warmup: int, draws: int) -> dict:
    """``b2_avg``, ``b2_max``, ``grads_to_low_bias`` (None if ``b2_max`` never stays under
    :data:`THRESHOLD`) and the curve (<= 50 points of gradients per chain and ``b2_max``).

    Gradients are spread evenly over the steps (warmup included): exact for MALA and MEADS, an
    average for samplers with varying trajectories (NUTS, ChEES, MAMS)."""
    b2 = ((latents.astype(np.float64) ** 2).mean(axis=(0, 1)) - truth.second) ** 2 / truth.variance
    curve = bias_curve(latents, truth)
    warmup_share = warmup / (warmup + draws)
    spent = lambda index: grads_per_chain * (warmup_share + (1 - warmup_share) * (index + 1) / len(curve))  # noqa: E731
    above = np.nonzero(curve >= THRESHOLD)[0]
    first_low = 0 if not len(above) else above[-1] + 1
    at = np.unique(np.linspace(0, len(curve) - 1, 50).astype(int))
    return {"b2_avg": float(b2.mean()), "b2_max": float(b2.max()),
            "grads_to_low_bias": float(spent(first_low)) if first_low < len(curve) else None,
            "bias_curve": [[float(g), float(b)] for g, b in zip(spent(at), curve[at])]}
