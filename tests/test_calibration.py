"""Logistic calibration of a critic and the Z statistic, on a case with a known log ratio.

Real ~ N(1, 1) and fake ~ N(-1, 1) on the first coordinate: the true log ratio is
``log N(x; 1, 1) - log N(x; -1, 1) = 2 x``. The critic returns ``5 x + 3``, a miscalibrated
logit; the calibration must find ``a = 2/5 = 0.4`` and ``b = -3 a = -1.2`` (so that
``a (5 x + 3) + b = 2 x``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from problems import Z_THRESHOLD

from ppl_ebm.nets import architectures as networks
from ppl_ebm.training.calibration import (
    CalibratedCritic,
    calibration_report,
    calibration_z_statistic,
    fit_calibration,
)
from ppl_ebm.targets.latent_ebm import LatentEBM

TRUE_WEIGHT, TRUE_BIAS = 0.4, -1.2


# Small tensors: run torch on one thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


class MiscalibratedCritic(torch.nn.Module):
    """``d(x) = 5 x_0 + 3``, shaped (batch, 1) like the toy critics."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(5.0))

    def forward(self, x):
        return self.scale * x[:, :1] + 3.0


def _two_gaussians(num_real: int, num_fake: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    real = torch.randn(num_real, 2, generator=generator)
    fake = torch.randn(num_fake, 2, generator=generator)
    real[:, 0] += 1.0
    fake[:, 0] -= 1.0
    return real, fake


def _sandwich_standard_errors(weight, bias, real_scores, fake_scores):
    """Standard errors of the weighted logistic M-estimate: H^-1 B H^-1 (the fit's own precision)."""
    scores = np.concatenate([real_scores, fake_scores])
    labels = np.concatenate([np.ones(len(real_scores)), np.zeros(len(fake_scores))])
    sample_weight = np.concatenate(
        [np.full(len(real_scores), 0.5 / len(real_scores)), np.full(len(fake_scores), 0.5 / len(fake_scores))]
    )
    design = np.stack([scores, np.ones_like(scores)], axis=1)
    probability = 1.0 / (1.0 + np.exp(-(design @ np.array([weight, bias]))))
    hessian = (design * (sample_weight * probability * (1 - probability))[:, None]).T @ design
    meat = (design * (sample_weight**2 * (labels - probability) ** 2)[:, None]).T @ design
    inverse = np.linalg.inv(hessian)
    return np.sqrt(np.diag(inverse @ meat @ inverse))


@pytest.mark.parametrize("num_real, num_fake", [(40000, 40000), (20000, 60000)])
def test_fit_recovers_the_true_log_ratio(num_real, num_fake):
    # At 40k per class the standard errors are ~0.005 (a) and ~0.01 (b): a bias in the fit or
    # in the class weighting (the unequal case) of a few percent is far outside 4.5 of them.
    real, fake = _two_gaussians(num_real, num_fake, seed=1)
    critic = MiscalibratedCritic()
    calibrated = fit_calibration(critic, real, fake.numpy())  # tensors and arrays both accepted
    weight, bias = calibrated.weight.item(), calibrated.bias.item()
    with torch.no_grad():
        real_scores = critic(real).reshape(-1).double().numpy()
        fake_scores = critic(fake).reshape(-1).double().numpy()
    standard_errors = _sandwich_standard_errors(weight, bias, real_scores, fake_scores)
    assert calibrated.fit_stats["converged"] and calibrated.fit_stats["iterations"] < 20
    assert abs(weight - TRUE_WEIGHT) < Z_THRESHOLD * standard_errors[0], (weight, standard_errors)
    assert abs(bias - TRUE_BIAS) < Z_THRESHOLD * standard_errors[1], (bias, standard_errors)
    # The calibrated logit is the log ratio 2x; the critic's own weights are untouched.
    x = torch.tensor([[-1.0, 0.0], [0.0, 3.0], [2.0, -1.0]])
    with torch.no_grad():
        np.testing.assert_allclose(calibrated(x).numpy(), 2.0 * x[:, :1].numpy(), atol=0.1, rtol=0.0)
    assert critic.scale.item() == 5.0


def test_z_statistic_is_large_before_and_small_after_calibration():
    calibrated = fit_calibration(MiscalibratedCritic(), *_two_gaussians(40000, 40000, seed=2))
    real, fake = _two_gaussians(10000, 10000, seed=3)  # held out from the fit
    report = calibration_report(calibrated, real, fake)
    # Under calibration Z ~ N(0, 1); the fitted (a, b) add the fit's noise, a variance factor of
    # about 1 + 20k / 80k = 1.25 here, so the bound is 4.5 * sqrt(1.25) ~ 5.
    assert abs(report["after_z"]) < Z_THRESHOLD * math.sqrt(1.25), report
    assert abs(report["before_z"]) > 20, report
    assert report["after_bce"] < report["before_bce"]
    # The Bayes classifier of N(1, 1) vs N(-1, 1) is right with probability Phi(1) = 0.8413.
    bayes_accuracy = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
    standard_error = math.sqrt(bayes_accuracy * (1 - bayes_accuracy) / 20000)
    assert abs(report["after_accuracy"] - bayes_accuracy) < Z_THRESHOLD * standard_error
    assert report["n_real"] == report["n_fake"] == 10000
    assert report["weight"] == pytest.approx(TRUE_WEIGHT, abs=0.03)


def test_z_statistic_hand_example():
    probabilities = [0.2, 0.7, 0.9]
    labels = [0, 1, True]
    # sum(y - p) = -0.2 + 0.3 + 0.1 = 0.2; sum p(1 - p) = 0.16 + 0.21 + 0.09 = 0.46
    assert calibration_z_statistic(probabilities, labels) == pytest.approx(0.2 / math.sqrt(0.46), rel=1e-12)
    assert math.isnan(calibration_z_statistic([0.0, 1.0], [0, 1]))
    assert calibration_z_statistic([0.0, 1.0], [1, 1]) == math.inf


@pytest.mark.parametrize(
    "probabilities, labels, message",
    [
        ([0.5, 0.5], [1], "same shape"),
        ([0.5, 1.5], [1, 0], r"\[0, 1\]"),
        ([0.5, 0.5], [1, 2], "0/1"),
        ([], [], "empty"),
    ],
)
def test_z_statistic_rejects_bad_input(probabilities, labels, message):
    with pytest.raises(ValueError, match=message):
        calibration_z_statistic(probabilities, labels)


def test_calibrated_critic_plugs_into_the_latent_ebm():
    torch.manual_seed(0)
    generator, critic = networks.toy_generator(width=16), networks.toy_critic(width=16)
    calibrated = CalibratedCritic(critic, weight=0.5, bias=-0.25)
    x = torch.randn(7, 2)
    with torch.no_grad():
        assert calibrated(x).shape == critic(x).shape == (7, 1)
        np.testing.assert_allclose(calibrated(x).numpy(), (0.5 * critic(x) - 0.25).numpy(), rtol=1e-6, atol=1e-6)
    ebm = LatentEBM(generator, calibrated, critic_output="logit")
    z = torch.randn(5, 2)
    with torch.no_grad():
        np.testing.assert_allclose(
            ebm.log_tilt(z).numpy(), (0.5 * critic(generator(z)).reshape(-1) - 0.25).numpy(), rtol=1e-6, atol=1e-6
        )
    # A sigmoid critic is read through its logit first (the MH-GAN "Beta1" calibrator).
    probability_critic = torch.nn.Sequential(critic, torch.nn.Sigmoid())
    from_probability = CalibratedCritic(probability_critic, critic_output="probability")
    with torch.no_grad():
        np.testing.assert_allclose(from_probability(x).numpy(), critic(x).numpy(), atol=1e-4, rtol=1e-4)


def test_fit_restores_training_mode_and_warns_on_separable_data():
    critic = MiscalibratedCritic().train()
    real = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    fake = -real
    with pytest.warns(RuntimeWarning, match="separates"):
        calibrated = fit_calibration(critic, real, fake, steps=30)
    assert critic.training
    assert not calibrated.fit_stats["converged"]


def test_fit_rejects_bad_input():
    critic = MiscalibratedCritic()
    real, fake = _two_gaussians(50, 50, seed=4)
    with pytest.raises(ValueError, match="steps"):
        fit_calibration(critic, real, fake, steps=0)
    with pytest.raises(ValueError, match="same shape per sample"):
        fit_calibration(critic, real, fake[:, :1])
    with pytest.raises(ValueError, match="non-empty"):
        fit_calibration(critic, real[:0], fake)
    with pytest.raises(ValueError, match="same value"):
        fit_calibration(critic, torch.zeros(5, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="non-finite"):
        fit_calibration(critic, torch.full((5, 2), math.nan), fake)
    with pytest.raises(ValueError, match="critic_output"):
        CalibratedCritic(critic, critic_output="score")
