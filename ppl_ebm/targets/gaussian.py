"""A latent EBM with a closed-form answer: linear generator, quadratic critic.

``G(z) = A z + b`` and ``d(x) = -1/2 (x - m)^T Q (x - m)`` give
``U(z) = 1/2 |z|^2 + 1/2 (A z + b - m)^T Q (A z + b - m)`` (+ const), a Gaussian with
precision ``P = I + A^T Q A`` and mean ``P^{-1} A^T Q (m - b)``. Used by the tests, the
examples and the default main job to check every sampler against the truth.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ppl_ebm.targets.latent_ebm import LatentEBM

__all__ = ["GaussianProblem", "QuadraticCritic", "linear_gaussian_problem"]


class QuadraticCritic(torch.nn.Module):
    """``d(x) = -1/2 (x - m)^T Q (x - m)``, a discriminator logit peaked at ``m``."""

    def __init__(self, center: torch.Tensor, precision: torch.Tensor):
        super().__init__()
        self.register_buffer("center", center)
        self.register_buffer("precision", precision)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = x - self.center
        return -0.5 * ((offset @ self.precision) * offset).sum(-1)


class GaussianProblem(NamedTuple):
    """The latent EBM and its exact latent mean (dim,) and covariance (dim, dim)."""

    ebm: LatentEBM
    mean: np.ndarray
    covariance: np.ndarray


def linear_gaussian_problem(
    latent_dim: int = 2, data_dim: int = 3, seed: int = 0, strength: float = 1.0
) -> GaussianProblem:
    """A random linear generator and quadratic critic with their exact Gaussian target.

    ``strength`` scales the critic's precision: larger values make the target narrower and
    more correlated than the prior (a harder case for a fixed step size).
    """
    rng = np.random.default_rng(seed)
    weight = rng.normal(size=(data_dim, latent_dim)) / np.sqrt(latent_dim)
    bias = rng.normal(size=data_dim) * 0.5
    center = rng.normal(size=data_dim)
    root = rng.normal(size=(data_dim, data_dim)) / np.sqrt(data_dim)
    precision = strength * (root @ root.T + 0.5 * np.eye(data_dim))
    generator = torch.nn.Linear(latent_dim, data_dim)
    with torch.no_grad():
        generator.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        generator.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    critic = QuadraticCritic(
        torch.as_tensor(center, dtype=torch.float32), torch.as_tensor(precision, dtype=torch.float32)
    )
    # Exact answer from the float32 weights the networks actually hold.
    weight = generator.weight.detach().double().numpy()
    bias = generator.bias.detach().double().numpy()
    center = critic.center.double().numpy()
    precision = critic.precision.double().numpy()
    latent_precision = np.eye(latent_dim) + weight.T @ precision @ weight
    covariance = np.linalg.inv(latent_precision)
    mean = covariance @ weight.T @ precision @ (center - bias)
    ebm = LatentEBM(generator, critic, critic_output="logit", latent_dim=latent_dim)
    return GaussianProblem(ebm, mean, covariance)
