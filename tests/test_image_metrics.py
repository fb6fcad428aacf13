"""Image metrics on known answers: Frechet distance (identical sets, analytic Gaussians, an
independent sqrtm reference), the Inception-style score of one-hot predictions, and
Kynkaanniemi et al.'s precision / recall; then the shipped digits classifier and its features."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import sqrtm

from ppl_ebm import metrics
from ppl_ebm.metrics.frechet import trace_sqrt_product

Z = 4.5  # statistical bands, in standard errors


def _spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_frechet_identical_sets_is_zero_and_moments_match_closed_forms():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    # Diagonal covariances: |m_a - m_b|^2 + sum (s_a - s_b)^2 in the standard deviations.
    m_a, m_b, s_a, s_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0]), np.array([1.0, 2.0, 3.0]), \
        np.array([2.0, 2.0, 0.5])
    expected = np.sum((m_a - m_b) ** 2) + np.sum((s_a - s_b) ** 2)
    assert metrics.frechet_distance_from_moments(m_a, np.diag(s_a**2), m_b, np.diag(s_b**2)) == pytest.approx(expected)
    # Non-commuting covariances against scipy's sqrtm of the product (pytorch-fid's formula).
    for d in (2, 5, 12):
        a, b = _spd(rng, d), _spd(rng, d)
        assert trace_sqrt_product(a, b) == pytest.approx(np.trace(sqrtm(a @ b)).real, rel=1e-8)
    # A rank-deficient covariance (fewer samples than features) stays finite and >= 0.
    few = rng.normal(size=(5, 20))
    assert 0 <= metrics.frechet_distance(few, few + 0.1) < np.inf


def test_frechet_of_samples_matches_the_analytic_distance_within_monte_carlo_error():
    rng = np.random.default_rng(1)
    d, n, repeats = 3, 4000, 40
    mean_a, mean_b = np.zeros(d), np.array([1.0, -0.5, 0.25])
    cov_a, cov_b = _spd(rng, d), _spd(rng, d)
    truth = metrics.frechet_distance_from_moments(mean_a, cov_a, mean_b, cov_b)
    estimates = np.array([metrics.frechet_distance(rng.multivariate_normal(mean_a, cov_a, n),
                                                   rng.multivariate_normal(mean_b, cov_b, n)) for _ in range(repeats)])
    # The estimator's bias is O(d / n): the mean term alone adds tr(C_a + C_b) / n in expectation;
    # allow twice that for the covariance term too.
    bias = 2 * (np.trace(cov_a) + np.trace(cov_b)) / n
    standard_error = estimates.std(ddof=1) / np.sqrt(repeats)
    assert abs(estimates.mean() - truth) <= Z * standard_error + bias
    # And the test can fail: a mean shifted by 0.1 in one coordinate moves FD by ~0.2, >> the band.
    assert Z * standard_error + bias < 0.1


def test_inception_style_score_known_answers():
    one_hot = np.eye(10)[np.tile(np.arange(10), 30)]  # every split sees every class equally
    score = metrics.inception_style_score(one_hot, splits=3)
    assert score.mean == pytest.approx(10.0) and score.std == pytest.approx(0.0, abs=1e-12)
    assert metrics.inception_style_score(np.eye(10)[np.zeros(50, int)], splits=1).mean == pytest.approx(1.0)
    assert metrics.inception_style_score(np.full((50, 10), 0.1), splits=1).mean == pytest.approx(1.0)
    # Two classes, confident 0.9: exp(KL(0.9, 0.1 || 0.5, 0.5)) = exp(log 2 + 0.9 log 0.9 + 0.1 log 0.1).
    two = np.array([[0.9, 0.1], [0.1, 0.9]] * 20)
    expected = np.exp(np.log(2) + 0.9 * np.log(0.9) + 0.1 * np.log(0.1))
    assert metrics.inception_style_score(two, splits=1).mean == pytest.approx(expected)
    with pytest.raises(ValueError, match="summing to 1"):
        metrics.inception_style_score(np.full((20, 10), 2.0))
    with pytest.raises(ValueError, match="splits"):
        metrics.inception_style_score(one_hot[:5], splits=10)


def test_precision_recall_known_answers():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 8))
    assert metrics.precision_recall(real, real) == (1.0, 1.0)
    assert metrics.precision_recall(real, real + 100.0) == (0.0, 0.0)
    # 1-d: real ~ U(0, 1); generated = the real points below 1/2 (a subset). Every generated point is
    # a real point (distance 0): precision exactly 1. The generated manifold holds every real point
    # below 1/2 and, past the boundary, only those inside the last generated point's ball (~k of them).
    n = 4000
    uniform_real = rng.uniform(size=(n, 1))
    below = uniform_real[uniform_real[:, 0] < 0.5]
    result = metrics.precision_recall(uniform_real, below, k=3)
    assert result.precision == 1.0
    covered = len(below) / n
    assert covered <= result.recall <= covered + 20 / n
    assert abs(result.recall - 0.5) <= Z * np.sqrt(0.25 / n) + 20 / n
    with pytest.raises(ValueError, match="same width"):
        metrics.precision_recall(real, real[:, :3])
    with pytest.raises(ValueError, match="n > k"):
        metrics.precision_recall(real[:3], real)


def test_shipped_digits_classifier_accuracy_and_self_scores():
    from ppl_ebm.data import load_images
    from ppl_ebm.training.classifier import accuracy
    from ppl_ebm.zoo.classifiers import DIGITS_CLASSIFIER, list_classifiers, load_classifier

    assert DIGITS_CLASSIFIER in list_classifiers()
    loaded = load_classifier(DIGITS_CLASSIFIER)
    held_out = load_images("digits", "held_out")
    measured = accuracy(loaded.classifier, held_out.images, held_out.labels)
    assert measured == pytest.approx(loaded.config["held_out_accuracy"], abs=1e-12)
    assert measured >= 0.95
    assert f"{measured:.4f}" in (loaded.directory / "MODEL_CARD.md").read_text()
    same = metrics.image_scores(held_out.images, held_out.images, loaded.classifier)
    assert same["fd"] == pytest.approx(0.0, abs=1e-6) and same["precision"] == same["recall"] == 1.0
    # The real digits are confidently and evenly classified: the score is near its maximum, 10.
    assert 8.0 < same["score"] <= 10.0
    noise = np.random.default_rng(0).uniform(-1, 1, held_out.images.shape).astype(np.float32)
    worse = metrics.image_scores(noise, held_out.images, loaded.classifier)
    assert worse["fd"] > 10 * max(same["fd"], 1e-3) and worse["score"] < same["score"]
    with pytest.raises(FileNotFoundError, match="train-classifier"):
        load_classifier("no-such-classifier")
