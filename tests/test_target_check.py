"""The search for a target's highest density beyond its prior, on targets with known modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ppl_ebm
from ppl_ebm.targets.target_check import checked_target, highest_density_check


class LinearCritic(torch.nn.Module):
    """``d(x) = slope * x_0``: grows without bound, as a ReLU critic can off the data."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.slope * x[:, 0]


def test_linear_critic_puts_the_mode_beyond_the_prior():
    # U(z) = |z|^2/2 - slope z_0 (+ const): minimum at (slope, 0), slope^2/2 below U(0).
    generator = torch.nn.Linear(2, 2)
    with torch.no_grad():
        generator.weight.copy_(torch.eye(2))
        generator.bias.zero_()
    slope = 12.0
    ebm = ppl_ebm.LatentEBM(generator, LinearCritic(slope), critic_output="logit", latent_dim=2)
    messages = []
    check = checked_target(ebm, log=messages.append)  # what the studies call: it also warns
    assert "highest density lies beyond the prior" in messages[-1]
    np.testing.assert_allclose(check["argmin"], [slope, 0.0], atol=1e-2)
    with torch.no_grad():
        zero = float(ebm.potential(torch.zeros(1, 2)))
    assert check["min_potential"] == pytest.approx(zero - slope**2 / 2, abs=1e-3)
    assert check["mode_beyond_prior"] is True
    np.testing.assert_allclose(check["generated_at_argmin"], check["argmin"], atol=1e-5)


def test_gaussian_target_mode_is_its_mean():
    problem = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0)
    check = highest_density_check(problem.ebm, prior_draws=20_000)
    np.testing.assert_allclose(check["argmin"], problem.mean, atol=1e-3)
    assert check["mode_beyond_prior"] is False
    with pytest.raises(TypeError, match="needs a ppl_ebm.LatentEBM"):
        highest_density_check(lambda z: z)


def test_box_prior_search_runs_in_unconstrained_space():
    # Box prior, d(x) = slope * x_0: in u (z = -1 + 2 sigmoid(u)) the potential per coordinate is
    # -slope z_0 - log(2 s (1 - s)), s = sigmoid(u); its minimum solves
    # -2 slope s (1 - s) + 2 s - 1 = 0 in u_0 and is u_1 = 0.
    from scipy.optimize import brentq

    generator = torch.nn.Linear(2, 2)
    with torch.no_grad():
        generator.weight.copy_(torch.eye(2))
        generator.bias.zero_()
    slope = 3.0
    ebm = ppl_ebm.LatentEBM(generator, LinearCritic(slope), latent_dim=2, prior="uniform")
    check = highest_density_check(ebm, prior_draws=20_000)

    def derivative(u):
        s = 1.0 / (1.0 + np.exp(-u))
        return -2 * slope * s * (1 - s) + 2 * s - 1

    u0 = brentq(derivative, 0.0, 20.0)
    np.testing.assert_allclose(check["argmin_unconstrained"], [u0, 0.0], atol=1e-2)
    np.testing.assert_allclose(check["argmin"], [2.0 / (1.0 + np.exp(-u0)) - 1.0, 0.0], atol=1e-3)
    assert check["argmin_norm"] <= np.sqrt(2.0) and check["prior_max_norm"] <= np.sqrt(2.0)
    assert check["mode_beyond_prior"] is False
