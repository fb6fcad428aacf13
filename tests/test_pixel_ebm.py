"""The pixel-space EBM baseline (Du & Mordatch 2019 replay buffer) at toy size."""

import json

import jax
import numpy as np
import pytest
import torch

from ppl_ebm.data.images import load_images
from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.nets.torch_to_jax import torch_to_jax
from ppl_ebm.training.pixel_ebm import PixelEBMTrainingConfig, pixel_langevin, train_pixel_ebm


def _energy(width=4):
    torch.manual_seed(0)
    return build_network(NetworkConfig("conv_critic", {"channels": 1, "base_width": width, "image_size": 8,
                                                       "spectral_norm": False}))


def _gap(energy, data, noise):
    with torch.no_grad():
        return float(energy(torch.as_tensor(data)).mean() - energy(torch.as_tensor(noise)).mean())


def test_training_lowers_data_energy_relative_to_noise():
    data = load_images("digits", "train").images[:256]
    noise = np.random.default_rng(1).uniform(-1, 1, (256, 1, 8, 8)).astype(np.float32)
    energy = _energy()
    config = PixelEBMTrainingConfig(iterations=40, batch_size=16, buffer_size=64, train_steps=5,
                                    learning_rate=1e-3, clip_norm=1.0)
    trained = train_pixel_ebm(energy, data, config, progress_bar=False)
    assert _gap(trained.energy, data, noise) < _gap(energy, data, noise) - 0.05
    assert trained.buffer.shape == (64, 1, 8, 8)
    assert trained.buffer.min() >= -1 and trained.buffer.max() <= 1
    assert len(trained.history["energy_gap"]) == 4


def test_langevin_descends_a_known_quadratic():
    # E(x) = 0.5 |x|^2 on 1x1x2 "images": with tiny noise, ULA from 0.8 contracts by (1 - step/2) a step.
    energy_fn = lambda params, x: 0.5 * jax.numpy.sum(x.reshape(len(x), -1) ** 2, axis=1)  # noqa: E731
    start = jax.numpy.full((3, 1, 1, 2), 0.8)
    out = np.asarray(pixel_langevin(jax.random.key(0), energy_fn, {}, start, 4, 0.5, 1e-8))
    np.testing.assert_allclose(out, 0.8 * 0.75**4, rtol=1e-4)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError):
        PixelEBMTrainingConfig(reinit=1.5).validate()
    with pytest.raises(ValueError):
        PixelEBMTrainingConfig(step_size=0).validate()


def test_cli_toy_writes_a_folder_that_loads(tmp_path):
    from ppl_ebm.cli import main
    from ppl_ebm.zoo.pixel_build import load_pixel_ebm

    code = main(["train-pixel-ebm", "--iterations", "3", "--batch-size", "8", "--buffer-size", "16",
                 "--train-steps", "2", "--card-samples", "12", "--energy-width", "4", "--name", "toy",
                 "--output", str(tmp_path), "--no-progress"])
    assert code == 0
    folder = tmp_path / "toy"
    energy, config = load_pixel_ebm(folder)
    assert energy(torch.zeros(2, 1, 8, 8)).shape == (2, 1)
    assert config["training"]["iterations"] == 3 and config["n_eval"] == 12
    assert set(config["metrics"]) == {"short_run_from_noise", "replay_buffer", "data_floor"}
    assert not (folder / "config.json").exists()  # not listed as a generator/critic zoo model
    card = (folder / "MODEL_CARD.md").read_text()
    assert "ppl-ebm train-pixel-ebm" in card and "replay" in card
    assert json.loads((folder / "pixel_ebm.json").read_text())["energy_gradient_evaluations_per_iteration"] == 3
