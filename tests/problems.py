"""Shared test problems and the MCSE-scaled moment check used by every sampler test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ppl_ebm.diagnostics import arviz_compat
from ppl_ebm.targets.latent_ebm import LatentEBM

# Each check fails by chance with probability ~7e-6 (|z| > 4.5 for a normal estimate); over
# the few hundred checks of the suite a false alarm stays below 1e-3, while a real bias of a
# few MCSE is caught.
Z_THRESHOLD = 4.5


# Source for a test's process script (which imports os, signal and ppl_ebm.drivers.zarr_store):
# SIGKILL the process after its KILL_AFTER-th checkpoint, or before writing its KILL_BEFORE-th,
# when that variable is set: a process dying at a known chunk (the kill-and-resume tests of both
# backends' multi-process runs).
KILL_AT_CHECKPOINT = """
if os.environ.get("KILL_AFTER") or os.environ.get("KILL_BEFORE"):
    original, calls = zarr_store.ZarrDrawStore.checkpoint, {"n": 0}

    def checkpoint(self, state, progress):
        calls["n"] += 1
        if calls["n"] == int(os.environ.get("KILL_BEFORE") or 0):  # the chunk ran, its checkpoint never written
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, state, progress)
        if calls["n"] == int(os.environ.get("KILL_AFTER") or 0):
            os.kill(os.getpid(), signal.SIGKILL)

    zarr_store.ZarrDrawStore.checkpoint = checkpoint
"""


def ula_stationary_covariance(covariance: np.ndarray, step_size: float, noise_scale: float) -> np.ndarray:
    """Exact stationary covariance of ULA ``x' = x - step/2 P x + noise_scale n`` on N(m, P^-1).

    Solving ``S = (I - step P / 2) S (I - step P / 2) + noise_scale^2 I`` in P's eigenbasis
    gives ``S = noise_scale^2 (step P - step^2 P^2 / 4)^-1``.
    """
    eigenvalues, vectors = np.linalg.eigh(np.linalg.inv(covariance))
    variances = noise_scale**2 / (step_size * eigenvalues - step_size**2 * eigenvalues**2 / 4)
    return (vectors * variances) @ vectors.T


def assert_moments(latents: np.ndarray, mean: np.ndarray, covariance: np.ndarray, label: str = "") -> None:
    """Means and standard deviations per dimension within Z_THRESHOLD Monte Carlo standard
    errors (ArviZ's MCSE from the ESS), so the tolerance follows the run's own precision."""
    draws = np.asarray(latents, dtype=np.float64)
    assert np.all(np.isfinite(draws)), f"{label}: non-finite draws"
    sample_mean = draws.mean(axis=(0, 1))
    sample_sd = draws.std(axis=(0, 1))
    mcse_mean = arviz_compat.mcse(draws, method="mean")
    mcse_sd = arviz_compat.mcse(draws, method="sd")
    true_sd = np.sqrt(np.diag(covariance))
    z_mean = (sample_mean - mean) / mcse_mean
    z_sd = (sample_sd - true_sd) / mcse_sd
    assert np.all(np.abs(z_mean) < Z_THRESHOLD), f"{label}: mean {sample_mean} vs {mean}, z={z_mean}"
    assert np.all(np.abs(z_sd) < Z_THRESHOLD), f"{label}: sd {sample_sd} vs {true_sd}, z={z_sd}"


def assert_same_moments(first: np.ndarray, second: np.ndarray, label: str = "") -> None:
    """Two runs on the same target agree on means within Z_THRESHOLD combined MCSEs."""
    mean_first, mean_second = first.mean(axis=(0, 1)), second.mean(axis=(0, 1))
    combined = np.sqrt(arviz_compat.mcse(first) ** 2 + arviz_compat.mcse(second) ** 2)
    z = (mean_first - mean_second) / combined
    assert np.all(np.abs(z) < Z_THRESHOLD), f"{label}: {mean_first} vs {mean_second}, z={z}"


class TwoModeCritic(torch.nn.Module):
    """With the identity generator and the N(0, I) prior, a log tilt whose latent target is
    exactly ``weight N(center, scale^2 I) + (1 - weight) N(-center, scale^2 I)``:
    ``d(x) = log(mixture density(x)) + |x|^2 / 2`` up to a constant, written with ``softplus``
    so that it stays finite far from both modes (and translates to JAX)."""

    def __init__(self, center: torch.Tensor, scale: float, weight: float):
        super().__init__()
        self.register_buffer("center", center)
        self.scale = float(scale)
        self.log_weights = (float(np.log(weight)), float(np.log1p(-weight)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.log_weights[0] - ((x - self.center) ** 2).sum(-1) / (2 * self.scale**2)
        second = self.log_weights[1] - ((x + self.center) ** 2).sum(-1) / (2 * self.scale**2)
        return first + F.softplus(second - first) + 0.5 * (x * x).sum(-1)


def two_mode_problem(separation: float = 1.5, scale: float = 0.35, weight: float = 0.75):
    """A latent EBM on R^2 with two modes ``(+-separation, 0)`` that Langevin steps do not cross
    in a test's length (the density between them is ~1e-4 of the peaks'), weighted
    ``weight : 1 - weight``, with its exact mean and covariance."""
    generator = torch.nn.Linear(2, 2)
    with torch.no_grad():
        generator.weight.copy_(torch.eye(2))
        generator.bias.zero_()
    center = torch.tensor([separation, 0.0])
    ebm = LatentEBM(generator, TwoModeCritic(center, scale, weight), critic_output="logit", latent_dim=2)
    mean = np.array([(2 * weight - 1) * separation, 0.0])
    # Between-mode variance of +-separation with these weights, plus each mode's own.
    variance = np.array([scale**2 + separation**2 - mean[0] ** 2, scale**2])
    return ebm, mean, np.diag(variance)


def save_tiny_model(folder):
    """A zoo model folder with the smallest toy networks (width 4), for loader and fault tests."""
    from ppl_ebm.nets.registry import NetworkConfig, build_network
    from ppl_ebm.zoo import save_model

    generator_config = NetworkConfig("toy_generator", {"latent_dim": 2, "data_dim": 2, "width": 4})
    critic_config = NetworkConfig("toy_critic", {"data_dim": 2, "width": 4, "depth": 1})
    return save_model(folder, "tiny", build_network(generator_config), build_network(critic_config),
                      generator_config=generator_config, critic_config=critic_config)


def write_idx_ubyte(path, array: np.ndarray) -> None:
    """Write ``array`` (uint8 values) as an idx-ubyte file, the format of MNIST's raw files:
    0x00 0x00, type 0x08 (ubyte), ndim, big-endian int32 sizes, then the bytes."""
    import struct

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                     + np.asarray(array).astype(np.uint8).tobytes())


def write_tiny_mnist(root, folder: str = "MNIST", n_train: int = 5, n_test: int = 3, seed: int = 0):
    """Random 28x28 images and labels in torchvision's MNIST layout ``root/folder/raw``; returns
    ``(pixels, labels)`` dicts keyed by ``"train"`` / ``"t10k"``."""
    rng = np.random.default_rng(seed)
    pixels = {split: rng.integers(0, 256, (n, 28, 28)) for split, n in (("train", n_train), ("t10k", n_test))}
    labels = {split: rng.integers(0, 10, n) for split, n in (("train", n_train), ("t10k", n_test))}
    for split in ("train", "t10k"):
        write_idx_ubyte(root / folder / "raw" / f"{split}-images-idx3-ubyte", pixels[split])
        write_idx_ubyte(root / folder / "raw" / f"{split}-labels-idx1-ubyte", labels[split])
    return pixels, labels


def train_toy_latent_ebm_on(base_folder: Path, output: Path) -> Path:
    """``ppl-ebm train-latent-ebm`` at toy size on a toy base folder (a VAE or a flow): 4 steps,
    a 16-wide energy, 200 card samples. Returns the new folder ``output / "ebm"``."""
    from ppl_ebm.cli import main

    assert main(["train-latent-ebm", "--base", str(base_folder), "--iterations", "4", "--eval-every", "2",
                 "--eval-samples", "100", "--energy-width", "16", "--energy-depth", "1", "--name", "ebm",
                 "--output", str(output), "--card-samples", "200", "--no-progress"]) == 0
    return output / "ebm"
