"""Energy-GAN training (Dai et al. 2017) at toy size: the objective's parts, the gap schedule, the zoo round trip."""

import json

import numpy as np
import pytest
import torch

from ppl_ebm import data as datasets
from ppl_ebm.training.egan import EGANConfig, paper_config, set_population_statistics, train_egan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(loss, **overrides):
    settings = dict(dataset="4gaussians", loss=loss, iterations=40, batch_size=64, train_size=2000, width=16,
                    knn_neighbours=5, seed=3)
    settings.update(overrides)
    return EGANConfig(**settings)


def _draw(n, seed):
    return datasets.sample_dataset("4gaussians", n, seed)


@pytest.mark.parametrize("loss", [
    "egan-ent-nn", "gan",
    # egan-const trains in the schedule and spread tests, egan-ent-vi in the zoo round trip.
    pytest.param("egan-const", marks=pytest.mark.slow), pytest.param("egan-ent-vi", marks=pytest.mark.slow),
])
def test_every_loss_trains_to_finite_networks(loss):
    trained = train_egan(_tiny(loss), _draw, progress_bar=False, log_every=20)
    x = trained.generator(torch.randn(7, 4))
    assert x.shape == (7, 2) and torch.isfinite(x).all()
    assert torch.isfinite(trained.critic(x)).all()
    assert (trained.inference is not None) == (loss == "egan-ent-vi")
    assert np.isfinite(trained.history["critic_loss"]).all()


def test_gap_schedule_freezes_the_generator_while_the_critic_loses():
    # gap starts at 1.0; with gap_high below any reachable gap the generator must never move.
    config = _tiny("egan-const", gap_low=-1e9, gap_high=-1e8)
    trained = train_egan(config, _draw, progress_bar=False, log_every=20)
    assert trained.history["generator_update_fraction"] == [0.0, 0.0]
    assert trained.history["critic_update_fraction"] == [1.0, 1.0]
    # The initial generator's last layer (N(0, 0.001) weights, zero bias) is unchanged.
    from ppl_ebm.nets.registry import build_network
    from ppl_ebm.training.egan import _initialise

    torch.manual_seed(config.seed)  # train_egan's order: build both networks, then initialise
    fresh = build_network(config.network_configs()[0])
    build_network(config.network_configs()[1])
    _initialise(fresh, config.generator_init_std)
    torch.testing.assert_close(trained.generator[-1].weight, fresh[-1].weight)


def test_population_statistics_make_eval_samples_batch_independent():
    config = _tiny("egan-const")
    generator = set_population_statistics(
        __import__("ppl_ebm.nets.registry", fromlist=["build_network"]).build_network(config.network_configs()[0]),
        latent_dim=4, num_draws=5000)
    z = torch.randn(10, 4)
    with torch.no_grad():
        torch.testing.assert_close(generator(z)[:3], generator(z[:3]))
        first = generator[0](torch.randn(5000, 4, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(generator[1].running_mean, first.mean(0), atol=1e-5, rtol=1e-4)


def test_paper_config_and_bad_input():
    assert paper_config("4gaussians").entropy_weight == pytest.approx(0.5)
    assert paper_config("biased2gaussians").margin == 10.0
    assert paper_config("4gaussians", "gan").gap_high is None
    with pytest.raises(ValueError, match="dataset must be one of"):
        paper_config("25gaussians")
    with pytest.raises(ValueError, match="loss must be one of"):
        _tiny("wgan-gp").validate()
    with pytest.raises(ValueError, match="batch_size must exceed knn_neighbours"):
        _tiny("egan-ent-nn", batch_size=5).validate()
    with pytest.raises(ValueError, match="gap_low must be < gap_high"):
        _tiny("egan-const", gap_low=1.0, gap_high=0.0).validate()
    with pytest.raises(ValueError, match="entropy_weight"):
        _tiny("egan-ent-nn", entropy_weight=-1.0).validate()


def test_zoo_round_trip_and_card(tmp_path):
    from ppl_ebm.zoo.egan_build import train_egan_zoo_model
    from ppl_ebm.zoo.store import latent_ebm_of, load_model

    folder = train_egan_zoo_model(_tiny("egan-ent-vi"), "tiny-vi", tmp_path, progress_bar=False, command="test")
    loaded = load_model(folder)
    assert loaded.config["critic_output"] == "energy"
    assert (folder / "inference.safetensors").is_file()
    card = (folder / "MODEL_CARD.md").read_text()
    assert "egan-ent-vi" in card and "fewer iterations than the released code (20000)" in card
    # The latent tilt: U(z) = |z|^2 / 2 + c(G(z)) up to a constant.
    ebm = latent_ebm_of(loaded)
    z = torch.randn(5, 4)
    with torch.no_grad():
        expected = 0.5 * (z**2).sum(1) + loaded.critic(loaded.generator(z))[:, 0]
        potential = ebm.potential(z)
    torch.testing.assert_close(potential - potential[0], expected - expected[0], atol=1e-4, rtol=1e-4)
    assert json.loads((folder / "config.json").read_text())["training"]["loss"] == "egan-ent-vi"


def test_cli_refuses_a_set_without_the_papers_settings(capsys):
    from ppl_ebm.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--dataset", "25gaussians", "--loss", "egan-ent-nn", "--name", "x", "--output", "/nonexistent-egan"])
    assert "dataset must be one of" in capsys.readouterr().err


def _shipped():
    from ppl_ebm.zoo.egan_build import egan_model_names

    return egan_model_names()


@pytest.mark.parametrize("name", _shipped())
def test_every_shipped_energy_gan_loads(name):
    from ppl_ebm.zoo.store import latent_ebm_of, load_model

    model = load_model(name)
    assert model.config["critic_output"] == "energy"
    assert latent_ebm_of(model).latent_dim == model.config["training"]["latent_dim"] == 4
    assert "## Reproduce" in (model.directory / "MODEL_CARD.md").read_text()
    config = EGANConfig(**model.config["training"]).validate()
    assert (model.network_config("generator"), model.network_config("critic")) == config.network_configs()


@pytest.mark.parametrize("value, expected", [("none", None), ("2.5", 2.5)])
def test_cli_margin_overrides_the_codes_hinge(tmp_path, value, expected):
    from ppl_ebm.cli import main

    # The biased mixture's code setting is a hinge of 10: 'none' drops it, a number replaces it.
    code = main(["train", "--dataset", "biased2gaussians", "--loss", "egan-ent-nn", "--iterations", "4",
                 "--batch-size", "32", "--margin", value, "--name", "m", "--output", str(tmp_path), "--no-progress"])
    assert code == 0
    assert json.loads((tmp_path / "m" / "config.json").read_text())["training"]["margin"] == expected


@pytest.mark.parametrize("argv, message", [
    (["--loss", "egan-ent-nn", "--margin", "wide"], "argument --margin: expected a number > 0 or 'none'"),
    (["--loss", "egan-ent-nn", "--margin", "-1"], "argument --margin: expected a finite number > 0"),
    (["--loss", "gan", "--margin", "10"], "the GAN baseline (--loss gan) has none"),
    (["--loss", "nsgan", "--margin", "10"], "--margin and --critic-average-decay apply to the energy GANs"),
])
def test_cli_refuses_a_bad_margin(capsys, argv, message):
    from ppl_ebm.cli import main

    dataset = "25gaussians" if "nsgan" in argv else "4gaussians"
    with pytest.raises(SystemExit):
        main(["train", "--dataset", dataset, *argv, "--name", "x", "--output", "/nonexistent-egan"])
    assert message in capsys.readouterr().err
