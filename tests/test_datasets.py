"""Tests of ppl_ebm.data: the samplers (``toy``: shapes, determinism, the mixtures' parameters)
and the registry of names (``registry``: lists, metadata, errors, registration, the CLI's choices).

Statistical checks use 4.5-sigma bands built from the exact standard errors.
"""

import numpy as np
import pytest
from scipy.stats import norm

from ppl_ebm import data as ds
from ppl_ebm.data import registry
from ppl_ebm.data import toy

Z = 4.5  # width of the statistical bands, in standard errors


def _binomial_ok(count: int, n: int, p: float) -> bool:
    return abs(count - n * p) <= Z * np.sqrt(n * p * (1 - p))


def _std_band(values: np.ndarray, sigma: float) -> float:
    """Half-width of the band for the sample std of n normal values of std sigma."""
    return Z * sigma / np.sqrt(2 * values.size)


@pytest.mark.parametrize("name", sorted(ds.DATASETS))
def test_shape_dtype_determinism(name):
    a = ds.sample_dataset(name, 257, seed=3)
    b = ds.sample_dataset(name, 257, seed=3)
    c = ds.sample_dataset(name, 257, seed=4)
    assert a.shape == (257, 2) and a.dtype == np.float32
    assert np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # The registry entry and the direct call agree.
    np.testing.assert_array_equal(ds.DATASETS[name](257, seed=3), a)
    assert ds.sample_dataset(name, 1, seed=0).shape == (1, 2)


def test_registry_names():
    assert set(ds.DATASETS) == {
        "25gaussians",
        "25gaussians_gulrajani",
        "swissroll",
        "4gaussians",
        "biased2gaussians",
        "twospirals",
    }


def test_unknown_name_and_bad_n_raise():
    with pytest.raises(ValueError, match="valid names"):
        ds.sample_dataset("26gaussians", 10)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError):
            ds.sample_dataset("25gaussians", bad)
    with pytest.raises(ValueError):
        toy.twenty_five_gaussians(0)
    with pytest.raises(ValueError, match="variant"):
        toy.twenty_five_gaussians(10, variant="dot")


def test_25_gaussians_ddls_parameters():
    n = 20000
    x = toy.twenty_five_gaussians(n, seed=0).astype(np.float64)
    # Grid {-2..2}^2 with spacing 1: the nearest centre is the rounded point.
    centre = np.clip(np.round(x), -2, 2)
    resid = x - centre
    for j in range(2):
        assert abs(resid[:, j].mean()) <= Z * 0.1 / np.sqrt(n)
        assert abs(resid[:, j].std() - 0.1) <= _std_band(resid[:, j], 0.1)
    # Equal weights 1/25.
    labels = (centre[:, 0] + 2) * 5 + (centre[:, 1] + 2)
    counts = np.bincount(labels.astype(int), minlength=25)
    assert counts.size == 25
    for cnt in counts:
        assert _binomial_ok(cnt, n, 1 / 25)
    # mode_centers / mode_std describe the same grid.
    grid = ds.mode_centers("25gaussians")
    assert grid.shape == (25, 2)
    expected = {(i, j) for i in range(-2, 3) for j in range(-2, 3)}
    assert {tuple(map(int, row)) for row in grid} == expected
    assert ds.mode_std("25gaussians") == pytest.approx(0.1)


def test_25_gaussians_gulrajani_parameters():
    n = 20000
    spacing, sigma = 2 / 2.828, 0.05 / 2.828
    x = toy.twenty_five_gaussians(n, seed=1, variant="gulrajani").astype(np.float64)
    idx = np.clip(np.round(x / spacing), -2, 2)
    resid = x - idx * spacing
    for j in range(2):
        assert abs(resid[:, j].mean()) <= Z * sigma / np.sqrt(n)
        assert abs(resid[:, j].std() - sigma) <= _std_band(resid[:, j], sigma)
    centres = ds.mode_centers("25gaussians_gulrajani")
    ticks = np.unique(np.round(centres[:, 0], 12))
    np.testing.assert_allclose(np.diff(ticks), spacing, rtol=1e-12)
    np.testing.assert_allclose(ticks, np.arange(-2, 3) * spacing, rtol=1e-12, atol=1e-15)
    assert ds.mode_std("25gaussians_gulrajani") == pytest.approx(sigma, rel=1e-12)


def test_swiss_roll_matches_sklearn_recipe():
    from sklearn.datasets import make_swiss_roll

    for seed in (0, 7):
        ref = make_swiss_roll(500, noise=0.25, random_state=seed)[0]
        ref = (ref[:, [0, 2]] / 7.5).astype(np.float32)
        np.testing.assert_array_equal(toy.swiss_roll(500, seed=seed), ref)


def test_biased_two_gaussians_weights():
    n = 20000
    x = toy.biased_two_gaussians(n, seed=2).astype(np.float64)
    weights, means, covs = ds.mixture_parameters("biased2gaussians")
    np.testing.assert_allclose(weights, [0.9, 0.1])
    np.testing.assert_allclose(covs[:, 0, 0], 5.0)
    v = means[1, 0]
    np.testing.assert_allclose(means, [[-v, -v], [v, v]])
    # The two components overlap a little, so count by the bisector x + y = 0 and compare
    # with the exact probability of that half-plane under the mixture.
    sigma = np.sqrt(5.0)
    q = norm.cdf(-np.sqrt(2) * v / sigma)  # a component's mass on the far side
    p_low = 0.9 * (1 - q) + 0.1 * q
    assert _binomial_ok(int(np.count_nonzero(x.sum(axis=1) < 0)), n, p_low)
    # The per-axis std along the bisector's normal direction is the component std.
    along = (x[:, 0] - x[:, 1]) / np.sqrt(2)
    assert abs(along.std() - sigma) <= _std_band(along, sigma)


def test_four_gaussians_quadrant_weights():
    n = 20000
    x = toy.four_gaussians(n, seed=5).astype(np.float64)
    weights, means, covs = ds.mixture_parameters("4gaussians")
    np.testing.assert_allclose(weights, 0.25)
    assert np.allclose(np.abs(means), means[0, 0])
    sd = np.sqrt(np.stack([covs[:, 0, 0], covs[:, 1, 1]], axis=1))
    for sx in (1, -1):
        for sy in (1, -1):
            # Exact quadrant probability of the mixture (diagonal covariances).
            p = sum(
                w * norm.cdf(sx * m[0] / s[0]) * norm.cdf(sy * m[1] / s[1])
                for w, m, s in zip(weights, means, sd)
            )
            cnt = int(np.count_nonzero((np.sign(x[:, 0]) == sx) & (np.sign(x[:, 1]) == sy)))
            assert _binomial_ok(cnt, n, p)


def test_two_spirals_structure():
    weights, means, covs = ds.mixture_parameters("twospirals")
    assert means.shape == (200, 2)
    np.testing.assert_allclose(weights, 1 / 200)
    np.testing.assert_allclose(means[100:], -means[:100])  # point reflection
    radii = np.linalg.norm(means[:100], axis=1)
    np.testing.assert_allclose(radii[[0, -1]], [2 * np.pi / 3, 2 * np.pi / 3 + 2 * np.pi])
    np.testing.assert_allclose(covs[:, 0, 0], 0.45**2)
    n = 20000
    x = toy.two_spirals(n, seed=0).astype(np.float64)
    # Symmetric mixture: mean zero; its per-coordinate sd is below max radius + noise.
    sd = np.sqrt(np.mean(np.sum(means**2, axis=1)) / 2 + 0.45**2)
    assert np.all(np.abs(x.mean(axis=0)) <= Z * sd / np.sqrt(n))
    # Every point lies within 6 noise stds of some component mean.
    d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1).min(axis=1)
    assert np.sqrt(d2.max()) < 6 * 0.45


def test_mode_functions_raise_for_sets_without_modes():
    for name in ("swissroll", "twospirals"):
        with pytest.raises(ValueError, match="no discrete"):
            ds.mode_centers(name)
        with pytest.raises(ValueError, match="no discrete"):
            ds.mode_std(name)
    with pytest.raises(ValueError, match="valid names"):
        ds.mode_centers("nope")
    with pytest.raises(ValueError):
        ds.mixture_parameters("swissroll")


def test_log_density_normalised_and_matches_scipy():
    from scipy.stats import multivariate_normal

    weights, means, covs = ds.mixture_parameters("biased2gaussians")
    pts = np.array([[0.0, 0.0], [1.0, -2.0], [-3.5, -3.0]])
    ref = sum(w * multivariate_normal(m, c).pdf(pts) for w, m, c in zip(weights, means, covs))
    np.testing.assert_allclose(np.exp(ds.log_density("biased2gaussians", pts)), ref, rtol=1e-10)
    # 25-Gaussians integrates to 1 on a fine grid.
    h = 0.02
    g = np.arange(-3.0, 3.0, h)
    gx, gy = np.meshgrid(g, g)
    dens = np.exp(ds.log_density("25gaussians", np.stack([gx.ravel(), gy.ravel()], 1)))
    assert dens.sum() * h * h == pytest.approx(1.0, abs=1e-6)


EXPECTED = {"25gaussians", "25gaussians_gulrajani", "swissroll", "4gaussians", "biased2gaussians", "twospirals"}
WITH_MODES = {"25gaussians", "25gaussians_gulrajani", "4gaussians", "biased2gaussians"}


def test_registry_lists_names_kinds_and_metrics():
    assert set(ds.dataset_names()) == EXPECTED == set(ds.dataset_names(kind="toy2d"))
    assert ds.dataset_names() == sorted(ds.dataset_names())
    assert set(ds.dataset_names(with_modes=True)) == WITH_MODES
    assert set(ds.dataset_names(with_modes=False)) == {"swissroll", "twospirals"}
    assert ds.dataset_names(kind="no-such-kind") == []
    import ppl_ebm.metrics

    for name in EXPECTED:
        spec = ds.dataset_spec(name)
        assert spec.name == name and spec.kind == "toy2d"
        assert spec.has_modes == (name in WITH_MODES) == ("mode_metrics" in spec.metrics)
        assert "emd" in spec.metrics
        for metric in spec.metrics:  # every listed metric is a function of ppl_ebm.metrics
            assert callable(getattr(ppl_ebm.metrics, metric))
        # The spec's sampler is what sample_dataset runs.
        np.testing.assert_array_equal(spec.sampler(11, seed=2), ds.sample_dataset(name, 11, seed=2))
    for name in WITH_MODES:
        spec = ds.dataset_spec(name)
        np.testing.assert_array_equal(spec.mode_centers(), ds.mode_centers(name))
        assert spec.mode_std() == ds.mode_std(name)
        # The modes are the mixture's means, and the pooled std its variances' root mean.
        _, means, covs = ds.mixture_parameters(name)
        np.testing.assert_array_equal(spec.mode_centers(), means)
        assert spec.mode_std() == pytest.approx(np.sqrt(np.mean(np.diagonal(covs, axis1=1, axis2=2))))


def test_registry_errors_name_the_valid_choices():
    with pytest.raises(ValueError, match="valid names") as error:
        ds.dataset_spec("26gaussians")
    assert "register_dataset" in str(error.value) and "swissroll" in str(error.value)
    with pytest.raises(ValueError, match="not a Gaussian mixture"):
        ds.log_density("swissroll", np.zeros((1, 2)))
    with pytest.raises(ValueError, match="already registered"):
        ds.register_dataset("swissroll", toy.swiss_roll)
    with pytest.raises(ValueError, match="kind must be one of"):
        ds.register_dataset("new-set", toy.swiss_roll, kind="images")
    with pytest.raises(ValueError, match="metrics must be names from"):
        ds.register_dataset("new-set", toy.swiss_roll, metrics=("fid",))
    with pytest.raises(ValueError, match="mixture is None"):
        ds.register_dataset("new-set", toy.swiss_roll, metrics=("emd", "mode_metrics"))
    with pytest.raises(ValueError, match="sampler must be callable"):
        ds.register_dataset("new-set", None)
    assert "new-set" not in ds.dataset_names()  # refused registrations leave nothing behind


def test_a_registered_set_shows_everywhere(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone after the test
    ds.register_dataset("ring8", lambda n, seed=0: toy.four_gaussians(n, seed), metrics=("emd", "mode_metrics"),
                        mixture=toy.four_gaussians_mixture)
    assert "ring8" in ds.dataset_names(with_modes=True) and "ring8" in ds.DATASETS
    assert "ring8" in toy.MODE_DATASETS  # the old module's names follow the registry
    np.testing.assert_array_equal(ds.sample_dataset("ring8", 7, seed=1), toy.four_gaussians(7, 1))
    np.testing.assert_array_equal(ds.mode_centers("ring8"), ds.mode_centers("4gaussians"))


def test_old_module_names_read_the_registry():
    assert toy.sample_dataset is ds.sample_dataset and toy.DATASETS is ds.DATASETS
    assert set(toy.MODE_DATASETS) == WITH_MODES
    with pytest.raises(AttributeError):
        toy.no_such_name  # noqa: B018


def test_cli_train_offers_the_registered_sets(capsys):
    from ppl_ebm.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--dataset", "26gaussians", "--name", "x"])
    message = capsys.readouterr().err
    assert "invalid choice" in message
    for name in ds.dataset_names(kind="toy2d"):
        assert repr(name) in message
