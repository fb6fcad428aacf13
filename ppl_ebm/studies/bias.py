"""The anchors' metrics of a run against a known truth (issue 20, items 4 and 6).

Robnik et al.'s standardised squared bias of ``E[x^2]`` per coordinate,
``b2 = (mean(x^2) - E[x^2])^2 / Var[x^2]``, averaged (``b2_avg``) and worst (``b2_max``) over
coordinates; its curve over the draws (all chains pooled, draw by draw) against gradient
evaluations per chain; the gradients after which ``b2_max`` stays below 0.01 ("low bias").

Truth: the standard targets' closed forms (:mod:`ppl_ebm.targets.standard`; ``Var[x^2]`` from
10^6 exact draws); for a 2-D latent EBM quadrature on a grid in latent space
(:func:`quadrature_truth`), a box wide enough that the target check's mode and every prior
draw lie well inside it; for a larger latent (the image GANs') self-normalised importance
sampling from the prior (:func:`importance_truth`), which no sampler under comparison takes
part in, with its own standard error and Pareto k-hat.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["MAX_KHAT", "THRESHOLD", "Truth", "bias_metrics", "importance_truth", "latent_ebm_truth", "quadrature_truth",
           "standard_truth"]

THRESHOLD = 0.01  # Robnik et al.'s "low bias"
MAX_KHAT = 0.7  # Vehtari et al. (2024): above it an importance estimate's error is not to be trusted


@dataclass(frozen=True)
class Truth:
    """Exact ``E[x]``, ``E[x^2]`` and ``Var[x^2]`` per coordinate, and how they were found."""

    mean: np.ndarray
    second: np.ndarray
    variance: np.ndarray  # Var[x^2]
    source: str
    second_se: np.ndarray | None = None  # standard error of ``second`` where it is estimated

    def b2(self, second: np.ndarray) -> np.ndarray:
        """The standardised squared bias of estimates ``second`` of E[x^2] (last axis: coordinates)."""
        return (second - self.second) ** 2 / self.variance


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


def _unresolved(error_b2: float, tolerance: float) -> str:
    """The truth's ``source`` suffix when its own error, as a bias b2, is above ``tolerance``."""
    return "" if error_b2 <= tolerance else f"; NOT resolved to b2 {tolerance:g}: the bias column is that uncertain"


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
    unresolved = _unresolved(error_b2, tolerance)
    return Truth(mean, second, fourth - second**2,
                 f"quadrature, {points}x{points} grid over [-{half_width:g}, {half_width:g}]^2 (ring mass {rim:.1g}; "
                 f"E[z^2] moves {resolution:.1g} relative at half the points, b2 {error_b2:.1g}{unresolved})")


class _WeightedSums:
    """Running sums of ``w z^k`` and ``w^2 z^k`` over batches of log weights, kept relative to
    the largest log weight so far (rescaled when a larger one arrives): float64 exp of raw
    log weights over- or underflows on a sharp target."""

    def __init__(self):
        self.shift = -np.inf
        self.first: dict[int, np.ndarray | float] = {}  # k -> sum w z^k
        self.squared: dict[int, np.ndarray | float] = {}  # k -> sum w^2 z^k

    def add(self, z: np.ndarray, log_weight: np.ndarray) -> None:
        top = float(log_weight.max())
        if top > self.shift:
            for k in self.first:
                self.first[k] = self.first[k] * np.exp(self.shift - top)
            for k in self.squared:
                self.squared[k] = self.squared[k] * np.exp(2 * (self.shift - top))
            self.shift = top
        w = np.exp(log_weight - self.shift)
        for k in (0, 1, 2, 4):
            self.first[k] = self.first.get(k, 0.0) + (w.sum() if k == 0 else w @ z**k)
        for k in (0, 2, 4):
            self.squared[k] = self.squared.get(k, 0.0) + ((w**2).sum() if k == 0 else w**2 @ z**k)

    def moments(self):
        """(E[z], E[z^2], Var[z^2], standard error of E[z^2], importance ESS)."""
        total = self.first[0]
        mean, second, fourth = (self.first[k] / total for k in (1, 2, 4))
        # Delta method for a ratio estimate: Var = sum w^2 (f - mu)^2 / (sum w)^2, f = z^2.
        spread = self.squared[4] - 2 * second * self.squared[2] + second**2 * self.squared[0]
        return mean, second, fourth - second**2, np.sqrt(np.maximum(spread, 0.0)) / total, total**2 / self.squared[0]


def importance_truth(propose: Callable[[int], tuple[np.ndarray, np.ndarray]], draws: int = 200_000,
                     batch: int = 20_000, tolerance: float | None = None, max_draws: int = 3_200_000,
                     proposal: str = "the prior", log: Callable[[str], None] | None = None) -> Truth:
    """Moments of ``z`` by self-normalised importance sampling; ``propose(n)`` returns ``n``
    proposals ``z`` (n, dim) and their log weights (n,) (target over proposal, any constant);
    ``proposal`` names it in the truth's ``source``; ``log`` (if given) hears each round's draws,
    error and k-hat (3.2 million draws of an image GAN take minutes).

    The estimate's own error, as the bias it would put in every row, is ``b2 = se(E[z^2])^2 /
    Var[z^2]`` (delta method); while it is above ``tolerance`` (default 1% of :data:`THRESHOLD`)
    the draws double, up to ``max_draws``. The Pareto k-hat of the log weights (ArviZ's PSIS)
    says whether that standard error can be believed: above :data:`MAX_KHAT` the truth is marked
    not resolved and no more draws are spent (the proposal is too poor, and more draws do not
    lower k-hat)."""
    from ppl_ebm.diagnostics.arviz_compat import pareto_khat

    if not (isinstance(draws, int) and draws >= 1000):
        raise ValueError(f"draws must be an int >= 1000, got {draws!r}.")
    tolerance = THRESHOLD / 100 if tolerance is None else tolerance
    sums, log_weights, done, goal = _WeightedSums(), [], 0, draws
    while True:
        while done < goal:
            z, log_weight = propose(min(batch, goal - done))
            z, log_weight = np.asarray(z, np.float64), np.asarray(log_weight, np.float64)
            if not np.all(np.isfinite(log_weight)):
                raise ValueError("a log weight is not finite: the target's potential is not finite at a prior draw.")
            sums.add(z, log_weight)
            log_weights.append(log_weight)
            done += len(log_weight)
        mean, second, variance, se, ess = sums.moments()
        error_b2 = float(np.max(se**2 / variance))
        khat = pareto_khat(np.concatenate(log_weights))
        if log is not None:
            log(f"  importance truth: {done:,} draws, importance ESS {ess:,.0f}, error b2 {error_b2:.1g}, "
                f"k-hat {khat:.2f}")
        if khat > MAX_KHAT or error_b2 <= tolerance or 2 * goal > max_draws:
            break
        goal *= 2
    unresolved = (f"; NOT resolved: k-hat above {MAX_KHAT}, the standard error is not to be trusted" if khat > MAX_KHAT
                  else _unresolved(error_b2, tolerance))
    return Truth(mean, second, variance,
                 f"importance sampling from {proposal}, {done:,} draws (importance ESS {ess:,.0f}, Pareto k-hat "
                 f"{khat:.2f}; E[z^2]'s standard error as b2 {error_b2:.1g}{unresolved})", second_se=se)


def latent_ebm_truth(ebm, check: dict | None, points: int = 1000, importance_draws: int = 200_000,
                     seed: int = 0, log: Callable[[str], None] | None = None) -> Truth:
    """A latent EBM's truth. 2-D: :func:`quadrature_truth`, its box from the target check (1.5 x
    the farther of the potential's minimum and the prior draws' reach, plus 4). Larger:
    :func:`importance_truth` with the prior as proposal (``importance_draws`` to start,
    generator seeded by ``seed``, each round told to ``log``); ``check`` is not used."""
    import torch

    if ebm.dim != 2:
        generator = torch.Generator(device=ebm.device).manual_seed(seed)

        def propose(n):
            with torch.no_grad():
                u = ebm.prior_sample_unconstrained(n, generator)
                log_weight = ebm.prior_potential(u) - ebm.potential(u)
                return ebm.constrain(u).double().cpu().numpy(), log_weight.double().cpu().numpy()

        return importance_truth(propose, importance_draws, log=log)
    if check is None:
        raise ValueError("a 2-D latent's quadrature truth needs the target check (its box), got None.")
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
    return truth.b2(running).max(axis=1)


def bias_metrics(latents: np.ndarray, truth: Truth, grads_per_chain: float, warmup: int, draws: int) -> dict:
    """``b2_avg``, ``b2_max``, ``grads_to_low_bias`` (None if ``b2_max`` never stays under
    :data:`THRESHOLD`) and the curve (<= 50 points of gradients per chain and ``b2_max``).

    Gradients are spread evenly over the steps (warmup included): exact for MALA and MEADS, an
    average for samplers with varying trajectories (NUTS, ChEES, MAMS)."""
    b2 = truth.b2((latents.astype(np.float64) ** 2).mean(axis=(0, 1)))
    curve = bias_curve(latents, truth)
    warmup_share = warmup / (warmup + draws)
    spent = lambda index: grads_per_chain * (warmup_share + (1 - warmup_share) * (index + 1) / len(curve))  # noqa: E731
    above = np.nonzero(curve >= THRESHOLD)[0]
    first_low = 0 if not len(above) else above[-1] + 1
    at = np.unique(np.linspace(0, len(curve) - 1, 50).astype(int))
    return {"b2_avg": float(b2.mean()), "b2_max": float(b2.max()),
            "grads_to_low_bias": float(spent(first_low)) if first_low < len(curve) else None,
            "bias_curve": [[float(g), float(b)] for g, b in zip(spent(at), curve[at])]}
