"""Training, saving and loading zoo models (safely), and every shipped zoo entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ppl_ebm import zoo
from ppl_ebm.cli import main
from ppl_ebm.training.critic_tuning import FineTuneConfig
from ppl_ebm.targets.latent_ebm import LatentEBM
from ppl_ebm.training.gan import TrainingConfig
from ppl_ebm.zoo.build import train_zoo_model

TINY = dict(iterations=30, batch_size=64, generator_width=32, critic_width=32, depth=2)
TINY_FINE_TUNE = FineTuneConfig(steps=20, batch_size=64, pool_size=10_000)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    for loss in ("wgan-gp", "nsgan"):  # one with a fine-tuned critic, one with the logistic head only
        config = TrainingConfig(dataset="25gaussians", loss=loss, seed=1, **TINY)
        train_zoo_model(config, f"tiny-{loss}", root, progress_bar=False, command="test", eval_samples=300,
                        fine_tune=TINY_FINE_TUNE if loss == "wgan-gp" else None)
    return root


@pytest.mark.parametrize("loss", ["wgan-gp", "nsgan"])
def test_trained_model_round_trips_through_safetensors(tiny_zoo, loss):
    model = zoo.load_model(tiny_zoo / f"tiny-{loss}")
    assert model.config["training"]["loss"] == loss and model.dataset == "25gaussians"
    card = (model.directory / "MODEL_CARD.md").read_text()
    assert "Reproduce" in card and "seed 1" in card.lower()
    metrics = model.config["generator_metrics"]
    assert metrics["emd"] > 0 and 0 <= metrics["high_quality_fraction"] <= 1
    again = zoo.load_model(tiny_zoo / f"tiny-{loss}")
    z = torch.randn(5, 2)
    torch.testing.assert_close(model.generator(z), again.generator(z))
    calibrated = zoo.latent_ebm_of(model, calibrated=True)
    assert isinstance(calibrated, LatentEBM)
    head = model.config["calibration"]
    assert (model.calibrated_critic is not None) == (loss == "wgan-gp") == ("fine_tune" in head)
    assert "Calibration (DDLS 5.2)" in card and "Z" in card
    x = model.generator(z)
    critic = model.calibrated_critic if model.calibrated_critic is not None else model.critic
    torch.testing.assert_close(
        calibrated.log_tilt(z), head["weight"] * critic(x).squeeze(-1) + head["bias"], rtol=1e-5, atol=1e-5
    )


def test_calibrate_command_fine_tunes_in_place(tiny_zoo, tmp_path, capsys):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_zoo / "tiny-nsgan", folder)
    assert zoo.load_model(folder).calibrated_critic is None
    assert main(["calibrate", "--model", str(folder), "--fine-tune-steps", "20", "--fine-tune-batch", "64",
                 "--no-progress"]) == 0
    model = zoo.load_model(folder)
    assert model.calibrated_critic is not None and model.config["calibration"]["fine_tune"]["steps"] == 20
    # The GAN's own critic is kept as it was; the fine-tuned one is a separate file.
    torch.testing.assert_close(model.critic.state_dict(), zoo.load_model(tiny_zoo / "tiny-nsgan").critic.state_dict())
    assert "fine-tuned critic" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["calibrate", "--model", str(folder), "--fine-tune-steps", "-1"])


def test_same_seed_same_training(tmp_path):
    config = TrainingConfig(dataset="swissroll", seed=3, **TINY)
    from ppl_ebm.data.toy import sample_dataset
    from ppl_ebm.training.gan import train_gan

    draw = lambda n, s: sample_dataset("swissroll", n, s)  # noqa: E731
    first = train_gan(config, draw, progress_bar=False, pool_size=5000)
    second = train_gan(config, draw, progress_bar=False, pool_size=5000)
    for a, b in zip(first.generator.state_dict().values(), second.generator.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_bad_model_names_and_files(tiny_zoo, tmp_path):
    with pytest.raises(FileNotFoundError, match="Zoo models"):
        zoo.load_model("no-such-model")
    broken = tmp_path / "broken"
    broken.mkdir()
    config = json.loads((tiny_zoo / "tiny-nsgan" / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="Missing weights"):
        zoo.load_model(broken)
    config["training"]["critic_width"] = 64  # the stored weights no longer fit
    (broken / "config.json").write_text(json.dumps(config))
    for name in ("generator.safetensors", "critic.safetensors"):
        (broken / name).write_bytes((tiny_zoo / "tiny-nsgan" / name).read_bytes())
    with pytest.raises(ValueError, match="does not fit the architecture"):
        zoo.load_model(broken)
    fine_tuned = json.loads((tiny_zoo / "tiny-wgan-gp" / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps(fine_tuned))  # names a fine-tuned critic not there
    with pytest.raises(FileNotFoundError, match="critic_calibrated"):
        zoo.load_model(broken)
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainingConfig(dataset="25gaussians", loss="vanilla").validate()


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_shipped_zoo_entry_loads(name):
    model = zoo.load_model(name)
    ebm = zoo.latent_ebm_of(model)
    assert ebm.latent_dim == model.config["training"]["latent_dim"]
    assert (model.directory / "MODEL_CARD.md").is_file()
    for key in ("emd", "data_floor_emd"):
        assert np.isfinite(model.config["generator_metrics"][key])
    zoo.latent_ebm_of(model, calibrated=True)


def test_the_default_model_is_shipped():
    assert zoo.DEFAULT_MODEL in zoo.list_models()
