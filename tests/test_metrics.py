"""Tests of ppl_ebm.metrics (distances, modes) against closed forms (EMD <= 2000 points to stay fast)."""

import numpy as np
import pytest
from scipy.stats import wasserstein_distance

from ppl_ebm.data import toy as ds
from ppl_ebm import metrics as mt


def _cloud(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 2)) * [1.0, 0.3]


def test_emd_self_is_zero():
    x = _cloud(500)
    assert mt.emd(x, x) == pytest.approx(0.0, abs=1e-12)
    assert mt.wasserstein2(x, x) == pytest.approx(0.0, abs=1e-7)


def test_emd_of_translation_is_shift_length():
    # W1 with Euclidean cost: |mean difference| <= W1 <= cost of the identity coupling = |v|.
    x = _cloud(2000, seed=1)
    v = np.array([0.3, -0.4])
    value = mt.emd(x, x + v)
    assert value == pytest.approx(np.linalg.norm(v), rel=1e-6)
    # A squared-Euclidean cost (POT's default) would have given |v|^2 = 0.25 instead.
    assert abs(value - 0.25) > 0.1


def test_w2_of_translation_is_shift_length():
    x = _cloud(1000, seed=2)
    v = np.array([1.5, 2.0])
    assert mt.wasserstein2(x, x + v) == pytest.approx(2.5, rel=1e-6)


def test_w2sq_of_a_translation_is_the_squared_shift():
    # The optimal map of a translate under the squared Euclidean cost is the translation
    # itself (Brenier), so W2^2 = |v|^2 exactly; the papers' "EMD" is this number, not W1 = |v|.
    x = _cloud(1000, seed=3)
    v = np.array([0.3, -0.4])
    assert mt.w2sq(x, x + v) == pytest.approx(0.25, rel=1e-6)
    assert mt.emd(x, x + v) == pytest.approx(0.5, rel=1e-6)
    assert mt.w2sq(x, x) == pytest.approx(0.0, abs=1e-12)


def test_w2sq_equals_pot_default_emd2():
    # "EMD as DOT/DDLS/ex2mcmc compute it": ot.emd2 on ot.dist with POT's defaults.
    import ot

    x, y = _cloud(300, seed=4), _cloud(300, seed=5) + 0.1
    expected = ot.emd2(ot.unif(300), ot.unif(300), ot.dist(x, y))
    assert mt.w2sq(x, y) == pytest.approx(float(expected), rel=1e-12)


def test_w2sq_repeated_draws_fresh_data_per_repeat_and_reports_the_spread():
    cloud = _cloud(50, seed=6)
    seeds = []

    def fixed_data(n, seed):
        seeds.append(seed)
        return cloud[:n]

    v = np.array([0.6, 0.8])
    result = mt.w2sq_repeated(cloud + v, fixed_data, num_points=50, repeats=4, seed=7)
    # Every repeat uses every sample against the same cloud shifted by v: |v|^2 each time.
    assert result.mean == pytest.approx(1.0, rel=1e-6) and result.std == pytest.approx(0.0, abs=1e-9)
    assert len(result.values) == 4 and len(set(seeds)) == 4  # its own data draw per repeat
    # The same seed gives every method the same data draws (a paired comparison).
    again = []
    mt.w2sq_repeated(cloud, lambda n, seed: again.append(seed) or cloud[:n], num_points=50, repeats=4, seed=7)
    assert again == seeds
    # Real draws spread: 25-Gaussians data against itself, the floor of the metric.
    floor = mt.w2sq_repeated(ds.sample_dataset("25gaussians", 400, seed=1),
                             lambda n, seed: ds.sample_dataset("25gaussians", n, seed=seed), num_points=200, repeats=3)
    assert floor.std > 0 and floor.mean > 0


def test_w2sq_repeated_input_checks():
    cloud = _cloud(20)
    with pytest.raises(ValueError, match="fewer than num_points"):
        mt.w2sq_repeated(cloud, lambda n, seed: cloud[:n], num_points=50)
    with pytest.raises(ValueError, match="repeats must be"):
        mt.w2sq_repeated(cloud, lambda n, seed: cloud[:n], num_points=10, repeats=1)


def test_paired_difference_is_the_mean_and_standard_error_of_the_differences():
    # Differences -0.5, -1, -1.5: mean -1, sample std 0.5, standard error 0.5 / sqrt(3).
    mean, se = mt.paired_difference([0.5, 1.0, 1.5], [1.0, 2.0, 3.0])
    assert mean == pytest.approx(-1.0, rel=1e-12) and se == pytest.approx(0.5 / np.sqrt(3), rel=1e-12)
    with pytest.raises(ValueError, match="two equal-length 1-d sequences of >= 2 repeats"):
        mt.paired_difference([1.0], [2.0])
    with pytest.raises(ValueError, match="got shapes \\(3,\\) and \\(2,\\)"):
        mt.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0])


def test_emd_on_a_line_matches_scipy_1d():
    rng = np.random.default_rng(3)
    u = rng.normal(size=300)
    w = rng.exponential(size=500) - 0.5
    direction = np.array([0.6, 0.8])
    offset = np.array([1.0, -2.0])
    x = offset + u[:, None] * direction
    y = offset + w[:, None] * direction
    assert mt.emd(x, y) == pytest.approx(wasserstein_distance(u, w), rel=1e-6)
    # Symmetry.
    assert mt.emd(y, x) == pytest.approx(mt.emd(x, y), rel=1e-9)


def test_emd_symmetric_and_subsampling_seeded():
    x = _cloud(600, seed=4)
    y = _cloud(400, seed=5) + 0.2
    assert mt.emd(x, y) == pytest.approx(mt.emd(y, x), rel=1e-9)
    a = mt.emd(x, y, max_points=300, seed=1)
    assert a == mt.emd(x, y, max_points=300, seed=1)
    assert a != mt.emd(x, y, max_points=300, seed=2)


def test_emd_raises_when_not_converged():
    x = _cloud(300, seed=6)
    with pytest.raises(RuntimeError, match="optimal"):
        mt.emd(x, x[::-1] + 0.1 * _cloud(300, seed=7), num_iter_max=10)


def test_emd_input_checks():
    with pytest.raises(ValueError):
        mt.emd(np.zeros((0, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError):
        mt.emd(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        mt.emd(np.array([[np.nan, 0.0]]), np.zeros((3, 2)))


def test_sliced_wasserstein_translation_and_bounds():
    x = _cloud(1000, seed=8)
    v = np.array([0.5, 0.0])
    sw = mt.sliced_wasserstein(x, x + v, num_projections=200, seed=0)
    # Same cloud shifted: every projection moves by |theta . v|; E|cos| = 2/pi in 2-D.
    assert sw == pytest.approx(0.5 * 2 / np.pi, rel=0.1)
    assert sw <= mt.emd(x, x + v) + 1e-12
    assert mt.sliced_wasserstein(x, x) == pytest.approx(0.0, abs=1e-12)


def test_mode_metrics_on_true_25_gaussians():
    x = ds.twenty_five_gaussians(10000, seed=0)
    m = mt.mode_metrics(x, ds.mode_centers("25gaussians"), ds.mode_std("25gaussians"))
    assert m["num_modes"] == 25 and m["modes_recovered"] == 25
    assert m["high_quality_fraction"] >= 0.999
    # Per-coordinate RMS around the centre: sd of the estimate ~ 0.1 / sqrt(2 * 2 * 10000).
    assert m["high_quality_std"] == pytest.approx(0.1 * 0.9987, abs=4.5 * 0.1 / np.sqrt(40000))
    assert m["samples_per_mode"].sum() == 10000
    assert np.all(m["high_quality_per_mode"] <= m["samples_per_mode"])


def test_mode_metrics_counts_only_visited_modes():
    centers = ds.mode_centers("25gaussians")
    rng = np.random.default_rng(1)
    keep = centers[:20]
    x = keep[rng.integers(0, 20, size=4000)] + 0.1 * rng.standard_normal((4000, 2))
    m = mt.mode_metrics(x, centers, 0.1)
    assert m["modes_recovered"] == 20
    assert np.all(m["high_quality_per_mode"][20:] == 0)


def test_mode_metrics_far_points_are_low_quality():
    centers = ds.mode_centers("25gaussians")
    # Between modes (0.5 from the nearest = 5 std) and far outside the grid.
    far = np.array([[0.5, 0.5], [-1.5, 0.5], [10.0, 10.0], [-2.0, -2.45]])
    near = np.array([[0.0, 0.0], [1.03, -0.98]])
    m = mt.mode_metrics(np.concatenate([far, near]), centers, 0.1)
    assert m["high_quality_count"] == 2
    assert m["high_quality_fraction"] == pytest.approx(2 / 6)
    assert m["modes_recovered"] == 2
    assert m["samples_per_mode"].sum() == 6
    none = mt.mode_metrics(far, centers, 0.1)
    assert none["modes_recovered"] == 0 and np.isnan(none["high_quality_std"])
