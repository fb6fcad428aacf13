"""Calibrating image critics (DDLS 5.2) and the image compare's figures: spectral norm baked into
plain weights, ``ppl-ebm calibrate`` on an image model at toy size, and the nearest-train-images
search on a known answer."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch

from ppl_ebm import zoo
from ppl_ebm.cli import main
from ppl_ebm.data.images import load_images
from ppl_ebm.nets.parametrizations import bake_parametrizations
from ppl_ebm.studies.image_figures import chain_frames, nearest_train_images
from ppl_ebm.zoo.classifiers import load_classifier


def test_baking_the_spectral_norm_keeps_the_function_and_the_original(one_torch_thread):
    critic = zoo.load_model("digits-sngan").critic
    x = torch.from_numpy(load_images("digits", "held_out").images[:16])
    with torch.no_grad():
        before = critic(x)
        baked = bake_parametrizations(copy.deepcopy(critic))
        # The original still works: torch's remove_parametrizations would have broken it through
        # the class the deep copy shares with it.
        torch.testing.assert_close(critic(x), before)
        torch.testing.assert_close(baked(x), before, rtol=1e-5, atol=1e-5)
    assert not any("parametrizations" in key for key in baked.state_dict())
    assert any("parametrizations" in key for key in critic.state_dict())


def test_calibrate_cli_on_an_image_model_at_toy_size(tmp_path, one_torch_thread):
    folder = tmp_path / "digits-sngan"
    shutil.copytree(zoo.model_dir("digits-sngan"), folder)
    assert main(["calibrate", "--model", str(folder), "--fine-tune-steps", "2", "--fine-tune-batch", "8",
                 "--no-progress"]) == 0
    calibration = json.loads((folder / "config.json").read_text())["calibration"]
    # The head on one half of the 360 held-out images, the Z test on the other; generated: the train size.
    assert calibration["n_fit_real"] == calibration["n_real"] == 180
    assert calibration["n_fit_fake"] == calibration["n_fake"] == 1437
    assert calibration["fine_tune"]["steps"] == 2 and np.isfinite(calibration["after_z"])
    model = zoo.load_model(folder)  # the fine-tuned critic loads as plain weights
    assert model.calibrated_critic is not None
    assert not any("parametrizations" in key for key in model.calibrated_critic.state_dict())
    energy = zoo.latent_ebm_of(model, calibrated=True).potential(torch.randn(4, 32))
    assert energy.shape == (4,) and torch.isfinite(energy).all()
    card = (folder / "MODEL_CARD.md").read_text()
    assert "## Calibration (DDLS 5.2)" in card and "critic_calibrated.safetensors" in card
    assert f"{calibration['after_z']:.2f}" in card and "## Generator-only metrics" in card


def test_calibrate_cli_refuses_a_data_root_on_a_toy_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["calibrate", "--model", "25gaussians-nsgan", "--data-root", str(tmp_path), "--fine-tune-steps", "0"])
    assert "root applies to image models" in capsys.readouterr().err


def test_nearest_train_images_finds_the_train_images_themselves(one_torch_thread):
    train = load_images("digits", "train").images
    held_out = load_images("digits", "held_out").images
    classifier = load_classifier("digits-cnn").classifier
    queries = train[[5, 50, 500]]
    found = nearest_train_images(queries, train, held_out, classifier, num_queries=3, neighbours=2)
    # Each train image is its own nearest neighbour, at distance 0; held-out images are not.
    np.testing.assert_allclose(np.array(found["distances"])[:, 0], 0.0, atol=1e-4)  # float32 features
    np.testing.assert_array_equal(found["images"]["neighbours"][:, 0], queries)
    assert found["median_nearest_distance_samples"] == pytest.approx(0.0, abs=1e-4)
    assert found["median_nearest_distance_held_out"] > 0.1


def test_chain_frames_show_the_starts_then_evenly_spaced_steps():
    starts = np.zeros((3, 2))
    latents = np.arange(1, 21, dtype=float)[None, :, None].repeat(3, axis=0).repeat(2, axis=2)  # draw i = i + 1
    frames = chain_frames(lambda z: z[:, :1, None, None], starts, latents, thinning=10, num_chains=2, columns=4)
    assert frames["steps"] == [0, 50, 100, 150, 200]
    # Images of chain 0: its start, then the stored states 5, 10, 15, 20.
    np.testing.assert_array_equal(frames["images"][0, :, 0, 0, 0], [0, 5, 10, 15, 20])
    assert frames["images"].shape == (2, 5, 1, 1, 1)
