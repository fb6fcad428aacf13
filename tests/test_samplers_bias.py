"""The bias metrics and the quadrature truth of the samplers report (issue 20, items 4 and 6)."""

from __future__ import annotations

import numpy as np
import pytest

import ppl_ebm
from ppl_ebm.studies.bias import (THRESHOLD, Truth, bias_metrics, importance_truth, latent_ebm_truth,
                                   quadrature_truth)
from ppl_ebm.targets.target_check import highest_density_check


def _gaussian_truth(mean, covariance):
    var = np.diag(covariance)
    # x ~ N(m, s^2): E[x^2] = m^2 + s^2, Var[x^2] = 2 s^4 + 4 m^2 s^2.
    return mean**2 + var, 2 * var**2 + 4 * mean**2 * var


def test_quadrature_matches_a_correlated_gaussian():
    mean = np.array([1.5, -0.7])
    covariance = np.array([[2.0, 0.9], [0.9, 0.8]])
    precision = np.linalg.inv(covariance)
    potential = lambda u: 0.5 * np.einsum("ni,ij,nj->n", u - mean, precision, u - mean)  # noqa: E731
    truth = quadrature_truth(potential, half_width=14.0, points=600)
    second, variance = _gaussian_truth(mean, covariance)
    np.testing.assert_allclose(truth.mean, mean, atol=1e-6)
    np.testing.assert_allclose(truth.second, second, rtol=1e-6)
    np.testing.assert_allclose(truth.variance, variance, rtol=1e-6)
    assert "quadrature" in truth.source


def test_quadrature_truth_of_the_linear_gaussian_latent_ebm():
    # A real latent EBM (torch generator and critic) whose target is Gaussian in closed form;
    # the box comes from the real target check, as in the study.
    problem = ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0)
    check = highest_density_check(problem.ebm, starts=16, steps=100, prior_draws=2000)
    truth = latent_ebm_truth(problem.ebm, check, points=400)
    second, variance = _gaussian_truth(np.asarray(problem.mean), np.asarray(problem.covariance))
    np.testing.assert_allclose(truth.mean, problem.mean, atol=1e-4)
    np.testing.assert_allclose(truth.second, second, rtol=1e-4)
    np.testing.assert_allclose(truth.variance, variance, rtol=1e-3)


def test_quadrature_doubles_its_grid_until_the_moments_settle():
    # A narrow Gaussian (sd 0.05) on a grid of 40 points over [-5, 5] (spacing 0.26): the coarse
    # grid misses it (E[z^2] 0.5 off). The grid doubles until the change in E[z^2] from half the
    # points, as a bias b2, is under 1% of the threshold, and then holds the closed form; capped at
    # the start, it says it is not resolved.
    mean, sd = np.array([1.23, -0.71]), 0.05
    potential = lambda u: 0.5 * (((u - mean) / sd) ** 2).sum(-1)  # noqa: E731
    refined = quadrature_truth(potential, half_width=5.0, points=40, max_points=4000)
    assert not refined.source.startswith("quadrature, 40x40") and "NOT resolved" not in refined.source
    np.testing.assert_allclose(refined.second, mean**2 + sd**2, rtol=1e-5)
    capped = quadrature_truth(potential, half_width=5.0, points=40, max_points=40)
    assert capped.source.startswith("quadrature, 40x40") and "NOT resolved to b2 0.0001" in capped.source
    assert np.max(np.abs(capped.second - (mean**2 + sd**2)) / (mean**2 + sd**2)) > 0.1


def test_quadrature_refuses_a_box_that_cuts_the_target():
    with pytest.raises(ValueError, match="half_width 2 is too small"):
        quadrature_truth(lambda u: 0.5 * (u**2).sum(-1), half_width=2.0, points=100)
    with pytest.raises(ValueError, match="points"):
        quadrature_truth(lambda u: 0.5 * (u**2).sum(-1), half_width=8.0, points=5)


def test_bias_metrics_see_exact_draws_low_and_shifted_draws_never():
    rng = np.random.default_rng(0)
    truth = Truth(np.zeros(3), np.ones(3), np.full(3, 2.0), "N(0, I)")
    exact = rng.normal(size=(64, 200, 3))
    row = bias_metrics(exact, truth, grads_per_chain=400.0, warmup=200, draws=200)
    # 12,800 exact draws: b2 ~ chi2_1 / 12,800, far under the threshold.
    assert row["b2_max"] < THRESHOLD / 10 and 200 < row["grads_to_low_bias"] <= 400
    shifted = bias_metrics(exact * 1.3, truth, grads_per_chain=400.0, warmup=200, draws=200)
    # E[(1.3 x)^2] = 1.69: b2 = 0.69^2 / 2 = 0.24 in every coordinate.
    assert shifted["grads_to_low_bias"] is None and shifted["b2_avg"] == pytest.approx(0.238, rel=0.1)
    assert len(row["bias_curve"]) == 50 and row["bias_curve"][-1][0] == pytest.approx(400.0)


def test_importance_truth_of_a_32_d_linear_gaussian_latent_ebm_within_its_standard_error():
    # A latent too large for quadrature: the truth comes from importance sampling from the prior.
    # Each coordinate's E[z^2] must sit within 4.5 of its own reported standard errors of the
    # closed form (32 coordinates: a false alarm has probability ~2e-4), and that error must be
    # small enough to serve as a truth (b2 <= 1e-4). Flipping the weights' sign, or dropping the
    # prior's part of them, puts the estimate tens of standard errors off.
    problem = ppl_ebm.linear_gaussian_problem(latent_dim=32, data_dim=4, seed=1)
    truth = latent_ebm_truth(problem.ebm, None, importance_draws=100_000, seed=0)
    second, variance = _gaussian_truth(np.asarray(problem.mean), np.asarray(problem.covariance))
    z_scores = (truth.second - second) / truth.second_se
    assert np.max(np.abs(z_scores)) < 4.5, z_scores
    assert np.max(truth.second_se**2 / variance) <= THRESHOLD / 100
    # Var[z^2] only scales b2; its estimate (eighth moments) is checked loosely.
    np.testing.assert_allclose(truth.variance, variance, rtol=0.15)
    assert truth.source.startswith("importance sampling from the prior") and "NOT resolved" not in truth.source


def test_importance_truth_doubles_its_draws_and_flags_a_poor_proposal():
    # 1-D: proposals N(0, 1), weights exp(a z) make the target N(a, 1): E[z^2] = 1 + a^2. From
    # 2,000 draws the estimate's error as b2 (~1 / ESS) is far above 1e-5, so the draws double
    # until it is under; capped at the start, the truth says it is not resolved.
    def proposal(shift, seed=0):
        rng = np.random.default_rng(seed)

        def propose(n):
            z = rng.normal(size=(n, 1))
            return z, shift * z[:, 0]
        return propose

    heard = []
    refined = importance_truth(proposal(0.5), draws=2000, tolerance=1e-5, log=heard.append)
    assert len(heard) > 1 and heard[0].startswith("  importance truth: 2,000 draws")  # one line a round
    assert not refined.source.startswith("importance sampling from the prior, 2,000 draws")  # default name
    assert "NOT resolved" not in refined.source
    assert abs(refined.second[0] - 1.25) < 4.5 * refined.second_se[0]
    capped = importance_truth(proposal(0.5), draws=2000, tolerance=1e-5, max_draws=2000)
    assert "2,000 draws" in capped.source and "NOT resolved to b2 1e-05" in capped.source
    # A target 6 prior standard deviations away: the weights' tail is heavy, k-hat says so.
    poor = importance_truth(proposal(6.0), draws=20_000)
    assert "NOT resolved: k-hat above 0.7" in poor.source and "20,000 draws" in poor.source
    with pytest.raises(ValueError, match="draws must be an int >= 1000"):
        importance_truth(proposal(0.5), draws=10)


def test_prior_bias_is_the_start_s_b2_against_the_truth():
    # Chains start at prior draws N(0, I): E[z^2] = 1 per coordinate, so the start's b2 is
    # (1 - E[z^2])^2 / Var[z^2] in closed form; 100,000 draws estimate it within a few of their
    # standard errors (sd of mean(z^2) is sqrt(2 / 1e5)).
    from ppl_ebm.studies.samplers_bias import prior_bias

    problem = ppl_ebm.linear_gaussian_problem(latent_dim=4, data_dim=3, seed=0, strength=4.0)
    second, variance = _gaussian_truth(np.asarray(problem.mean), np.asarray(problem.covariance))
    truth = Truth(np.asarray(problem.mean), second, variance, "closed form")
    exact = (1 - second) ** 2 / variance
    worst = int(np.argmax(exact))
    tolerance = 4 * 2 * abs(1 - second[worst]) * np.sqrt(2 / 100_000) / variance[worst]
    assert exact.max() > 10 * tolerance  # the start is far from the truth: the estimate must see it
    assert prior_bias(problem.ebm, truth) == pytest.approx(exact.max(), abs=tolerance)
