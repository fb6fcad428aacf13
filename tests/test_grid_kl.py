"""App. B.2's grid densities and KL divergences on pairs with known answers."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from ppl_ebm.metrics.grid_kl import (
    PAIRS,
    Grid,
    density_on_grid,
    grid_kl,
    histogram_on_grid,
    pairwise_kls,
    paper_grid,
)


def _fine_grid(size=200, half_width=8.0):
    ticks = np.linspace(-half_width, half_width, size)
    return Grid(ticks, ticks)


def test_kl_of_identical_grids_is_zero():
    p = np.random.default_rng(0).random((10, 10))
    assert grid_kl(p, p) == 0.0
    assert grid_kl(p / p.sum(), p) == pytest.approx(0.0, abs=1e-15)


def test_kl_of_two_gaussians_on_a_fine_grid_is_the_analytic_kl():
    grid = _fine_grid()
    m0, s0 = np.zeros(2), np.eye(2)
    m1, s1 = np.array([0.5, -0.3]), np.array([[1.5, 0.3], [0.3, 0.8]])
    p = density_on_grid(multivariate_normal(m0, s0).logpdf(grid.points), grid)
    q = density_on_grid(multivariate_normal(m1, s1).logpdf(grid.points), grid)

    def analytic(ma, sa, mb, sb):  # KL(N(ma, sa) || N(mb, sb))
        inverse = np.linalg.inv(sb)
        return 0.5 * (np.trace(inverse @ sa) + (mb - ma) @ inverse @ (mb - ma) - 2
                      + np.log(np.linalg.det(sb) / np.linalg.det(sa)))

    assert grid_kl(p, q) == pytest.approx(analytic(m0, s0, m1, s1), rel=2e-3)
    assert grid_kl(q, p) == pytest.approx(analytic(m1, s1, m0, s0), rel=2e-3)


def test_histogram_of_a_gaussian_sample_converges_to_its_density():
    grid = _fine_grid(size=40, half_width=5.0)
    density = density_on_grid(multivariate_normal(np.zeros(2), np.eye(2)).logpdf(grid.points), grid)
    small = grid_kl(histogram_on_grid(np.random.default_rng(1).standard_normal((200_000, 2)), grid), density)
    large = grid_kl(histogram_on_grid(np.random.default_rng(2).standard_normal((2_000, 2)), grid), density)
    # About (cells - 1) / (2 n) for a histogram of n points; far below it is impossible.
    assert small < 0.01 < large


def test_histogram_assigns_nearest_nodes_and_clips_to_the_edge():
    grid = Grid(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0]))
    points = np.array([[0.4, 0.1], [0.6, 0.9], [5.0, -3.0], [2.0, 1.0]])
    histogram = histogram_on_grid(points, grid)
    expected = np.zeros((2, 3))
    expected[0, 0] = expected[1, 1] = expected[0, 2] = expected[1, 2] = 0.25
    np.testing.assert_allclose(histogram, expected)


def test_paper_grid_widens_the_bounding_box_by_half():
    grid = paper_grid(np.array([[0.0, -1.0], [2.0, 3.0]]), size=5)
    assert grid.x[0] == pytest.approx(-0.5) and grid.x[-1] == pytest.approx(2.5)
    assert grid.y[0] == pytest.approx(-2.0) and grid.y[-1] == pytest.approx(4.0)
    assert grid.points.shape == (25, 2)


def test_pairwise_kls_has_the_papers_ten_columns():
    rng = np.random.default_rng(3)
    distributions = {name: rng.random((4, 4)) for name in ("data", "emp", "gen", "disc")}
    kls = pairwise_kls(distributions)
    assert list(kls) == [f"{p}||{q}" for p, q in PAIRS] and len(kls) == 10
    assert all(value > 0 for value in kls.values())
    with pytest.raises(ValueError, match="lacks"):
        pairwise_kls({"data": distributions["data"]})


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="same grid"):
        grid_kl(np.ones(4), np.ones(5))
    with pytest.raises(ValueError, match="p must be"):
        grid_kl(-np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match=r"points must be an \(n, 2\)"):
        histogram_on_grid(np.zeros((3, 3)), _fine_grid(4))
    with pytest.raises(ValueError, match="log_density must be finite"):
        density_on_grid(np.full(16, np.nan), _fine_grid(4))
