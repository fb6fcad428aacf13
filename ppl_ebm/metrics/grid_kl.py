"""Densities on a 100 x 100 grid and their pairwise KL divergences (Dai et al. 2017, App. B.2).

App. B.2 divides "the canvas into a 100-by-100 grid", assigns each sample to its nearest grid
node ("cell") and normalises the counts (p_emp, p_gen), and renormalises exp(-c(x)) over the
grid nodes (p_disc); p_data is the analytic density, discretised here the same way as p_disc
(its values at the nodes, renormalised). The canvas is the released code's
``create_meshgrid``: the data's bounding box widened by half its size on every side, with
``linspace`` nodes, so the first and last nodes sit on the canvas edge.

The paper does not say how cells that one histogram leaves empty enter a KL divergence (an
empty cell of q under mass of p makes KL(p || q) infinite). We add ``SMOOTHING = 1e-10`` to
every cell of both distributions and renormalise: a cell that one histogram misses costs
about ``p log(p / 1e-10)``, which keeps the divergence finite yet large.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ppl_ebm.validation import check_finite_rows, check_int, check_real

__all__ = [
    "PAIRS",
    "SMOOTHING",
    "Grid",
    "density_on_grid",
    "grid_kl",
    "histogram_on_grid",
    "pairwise_kls",
    "paper_grid",
]

#: Added to every cell before a KL divergence (see the module docstring).
SMOOTHING = 1e-10
#: The ten pairs (p, q) of KL(p || q) in the column order of Dai et al.'s Table 2.
PAIRS: tuple[tuple[str, str], ...] = (
    ("gen", "emp"), ("emp", "gen"), ("gen", "data"), ("data", "gen"), ("disc", "emp"),
    ("emp", "disc"), ("disc", "data"), ("data", "disc"), ("gen", "disc"), ("disc", "gen"),
)


class Grid(NamedTuple):
    """A regular grid of nodes: ``x`` (nx,), ``y`` (ny,); ``points`` ``(ny * nx, 2)`` row-major in (y, x)."""

    x: np.ndarray
    y: np.ndarray

    @property
    def points(self) -> np.ndarray:
        gx, gy = np.meshgrid(self.x, self.y)
        return np.stack([gx.ravel(), gy.ravel()], axis=1)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.y), len(self.x)

    @property
    def cell_area(self) -> float:
        return float((self.x[1] - self.x[0]) * (self.y[1] - self.y[0]))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """The region whose points have a node as nearest: the nodes' box padded by half a cell."""
        hx, hy = (self.x[1] - self.x[0]) / 2, (self.y[1] - self.y[0]) / 2
        return float(self.x[0] - hx), float(self.x[-1] + hx), float(self.y[0] - hy), float(self.y[-1] + hy)


def paper_grid(data: np.ndarray, size: int = 100) -> Grid:
    """The released code's canvas for ``data`` (``create_meshgrid``): the bounding box widened by 50 %.

    Parameters
    ----------
    data
        ``(n, 2)`` training points.
    size
        Nodes per axis (the paper's 100).
    """
    data = _points("data", data)
    size = check_int("size", size, 2)
    low, high = data.min(axis=0), data.max(axis=0)
    middle = (low + high) / 2
    low, high = low + 0.5 * (low - middle), high + 0.5 * (high - middle)
    return Grid(np.linspace(low[0], high[0], size), np.linspace(low[1], high[1], size))


def histogram_on_grid(points: np.ndarray, grid: Grid) -> np.ndarray:
    """Fraction of ``points`` whose nearest node is each grid node, ``grid.shape`` (sums to 1).

    Points beyond the canvas count in the nearest edge node, as the released code's argmin does.
    """
    points = _points("points", points)
    index = []
    for axis, nodes in enumerate((grid.x, grid.y)):
        step = nodes[1] - nodes[0]
        index.append(np.clip(np.rint((points[:, axis] - nodes[0]) / step), 0, len(nodes) - 1).astype(np.int64))
    counts = np.bincount(index[1] * len(grid.x) + index[0], minlength=len(grid.x) * len(grid.y))
    return (counts / len(points)).reshape(grid.shape)


def density_on_grid(log_density: np.ndarray, grid: Grid) -> np.ndarray:
    """``exp(log_density)`` at the nodes renormalised over the grid: App. B.2's p_disc for
    ``log_density = -c(x)`` (and p_data for the analytic log density)."""
    log_density = np.asarray(log_density, dtype=np.float64).reshape(grid.shape)
    if not np.all(np.isfinite(log_density)):
        raise ValueError("log_density must be finite at every grid node.")
    weights = np.exp(log_density - log_density.max())
    return weights / weights.sum()


def grid_kl(p: np.ndarray, q: np.ndarray, smoothing: float = SMOOTHING) -> float:
    """KL(p || q) of two distributions on the same grid, ``smoothing`` added to every cell first."""
    p, q = np.asarray(p, dtype=np.float64).ravel(), np.asarray(q, dtype=np.float64).ravel()
    if p.shape != q.shape:
        raise ValueError(f"p and q must be on the same grid, got {p.size} and {q.size} cells.")
    smoothing = check_real("smoothing", smoothing, low=0.0, low_open=False)
    for name, value in (("p", p), ("q", q)):
        if np.any(value < 0) or not np.all(np.isfinite(value)) or value.sum() <= 0:
            raise ValueError(f"{name} must be finite, non-negative and not all zero.")
    p = (p / p.sum() + smoothing) / (1 + smoothing * p.size)
    q = (q / q.sum() + smoothing) / (1 + smoothing * q.size)
    positive = p > 0
    return float(np.sum(p[positive] * np.log(p[positive] / q[positive])))


def pairwise_kls(distributions: dict[str, np.ndarray], smoothing: float = SMOOTHING) -> dict[str, float]:
    """The ten KL divergences of Table 2 (keys ``"gen||emp"``, ...) among ``data``, ``emp``, ``gen`` and ``disc``."""
    missing = sorted({"data", "emp", "gen", "disc"} - set(distributions))
    if missing:
        raise ValueError(f"distributions lacks {missing}; it needs 'data', 'emp', 'gen' and 'disc'.")
    return {f"{p}||{q}": grid_kl(distributions[p], distributions[q], smoothing) for p, q in PAIRS}


def _points(name: str, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"{name} must be an (n, 2) array of points with n >= 1, got shape {points.shape}.")
    return check_finite_rows(name, points)
