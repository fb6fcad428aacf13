"""Latent EBMs on a digits VAE (Xiao, Yan & Amit 2020 on images): the conv VAE, the image zoo
entries written by train-vae / train-latent-ebm at toy size, the image compare on them, and the
shipped digits-vae / digits-vae-latent-ebm entries."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ppl_ebm.training.vae import VAEConfig, train_image_vae

TINY_VAE = ["--iterations", "30", "--batch-size", "16", "--latent-dim", "4", "--generator-width", "2",
            "--encoder-width", "2"]


def test_image_vae_training_raises_the_elbo():
    from ppl_ebm.data.images import load_images

    config = VAEConfig("digits", iterations=60, batch_size=32, latent_dim=4, generator_width=2, encoder_width=2)
    trained = train_image_vae(config, load_images("digits", "train").images, progress_bar=False, log_every=20)
    elbo = trained.history["elbo"]
    assert elbo[-1] > elbo[0] + 1.0  # nats per image
    assert trained.decoder(torch.zeros(3, 4)).shape == (3, 1, 8, 8)
    assert config.decoder_config().architecture == "conv_generator"


def test_image_vae_config_names_a_bad_width():
    with pytest.raises(ValueError, match="generator_width"):
        VAEConfig("digits", generator_width=0).validate()


def test_digits_commands_at_toy_size_write_image_zoo_entries(tmp_path):
    """train-vae --dataset digits, train-latent-ebm on it, then the image compare on the latent EBM."""
    from ppl_ebm.cli import main
    from ppl_ebm.cli_images import is_image_model
    from ppl_ebm.studies.image_compare import ImageCompareConfig, run_image_compare
    from ppl_ebm.zoo import load_latent_ebm, load_model

    assert main(["train-vae", "--dataset", "digits", *TINY_VAE, "--name", "vae", "--output", str(tmp_path),
                 "--card-samples", "60", "--no-progress"]) == 0
    vae = load_model(tmp_path / "vae")
    assert vae.kind == "image" and vae.config["critic_output"] == "energy"
    assert torch.all(load_latent_ebm(tmp_path / "vae").log_tilt(torch.randn(5, 4)) == 0)  # E = 0: the VAE itself
    assert np.isfinite(vae.config["generator_metrics"]["generator"]["fd"])
    assert "train-vae --dataset digits" in (tmp_path / "vae" / "MODEL_CARD.md").read_text()

    assert main(["train-latent-ebm", "--base", str(tmp_path / "vae"), "--iterations", "2", "--batch-size", "8",
                 "--train-steps", "3", "--sample-steps", "4", "--eval-every", "1", "--eval-samples", "30",
                 "--energy-width", "2", "--name", "ebm", "--output", str(tmp_path), "--card-samples", "60",
                 "--no-progress"]) == 0
    folder = tmp_path / "ebm"
    assert is_image_model(str(folder))
    config = json.loads((folder / "config.json").read_text())
    assert config["critic"]["architecture"] == "conv_critic" and config["latent_ebm"]
    assert len(config["history"]["held_out_score"]) == 3  # the base and two evaluations
    assert np.isfinite(config["latent_ebm_metrics"]["fd"])
    card = (folder / "MODEL_CARD.md").read_text()
    assert "FD ratio latent EBM / VAE" in card and "train-latent-ebm --base" in card
    assert all((folder / f).is_file() for f in ("learning_curve.png", "samples.png", "chains.png"))
    ebm = load_latent_ebm(folder)
    assert ebm.critic_output == "energy" and ebm.latent_dim == 4

    out = run_image_compare(ImageCompareConfig(model=str(folder), methods=("generator", "ula/jax"), num_samples=20,
                                               langevin_steps=4, sweep_steps=(), ula_step_size=0.01,
                                               progress_bar=False), log=lambda *_: None)
    assert {"data", "generator", "ula/jax"} <= set(out.metrics)
    assert np.isfinite(out.metrics["ula/jax"]["fd"])


def _shipped_digits_entries() -> list[str]:
    from ppl_ebm import zoo

    return [name for name in zoo.list_models(kind="image")
            if "base_model_type" in json.loads((zoo.model_dir(name) / "config.json").read_text())]


def test_the_digits_entries_are_shipped():
    assert {"digits-vae", "digits-vae-latent-ebm"} <= set(_shipped_digits_entries())


@pytest.mark.parametrize("name", _shipped_digits_entries())
def test_shipped_digits_vae_entries_load_by_name(name):
    from ppl_ebm import zoo

    model = zoo.load_model(name)
    ebm = zoo.load_latent_ebm(name)
    assert model.kind == "image" and ebm.critic_output == "energy"
    assert ebm.latent_dim == model.config["training"]["latent_dim"]
    assert ebm.generate(torch.randn(3, ebm.latent_dim)).shape == (3, 1, 8, 8)
    assert np.isfinite(model.config["generator_metrics"]["generator"]["fd"])
    tilt = ebm.log_tilt(torch.randn(64, ebm.latent_dim))
    if model.config.get("latent_ebm"):
        assert np.isfinite(model.config["latent_ebm_metrics"]["fd"])
        assert float(tilt.std()) > 0  # a learned energy, not the base's E = 0
        assert "## Reproduce" in (zoo.model_dir(name) / "MODEL_CARD.md").read_text()
    else:
        assert torch.all(tilt == 0)
