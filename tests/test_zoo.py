"""Training, saving and loading zoo models (safely), and every shipped zoo entry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ppl_ebm import zoo
from ppl_ebm.cli import main
from ppl_ebm.nets import architectures
from ppl_ebm.nets.registry import NetworkConfig, build_network
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
                 "--proposal-scale", "2", "--no-progress"]) == 0
    model = zoo.load_model(folder)
    assert model.calibrated_critic is not None and model.config["calibration"]["fine_tune"]["steps"] == 20
    assert model.config["calibration"]["fine_tune"]["proposal_scale"] == 2.0
    assert "N(0, 2^2 I) and each term weighted" in (folder / "MODEL_CARD.md").read_text()
    # The GAN's own critic is kept as it was; the fine-tuned one is a separate file.
    torch.testing.assert_close(model.critic.state_dict(), zoo.load_model(tiny_zoo / "tiny-nsgan").critic.state_dict())
    assert "fine-tuned critic" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["calibrate", "--model", str(folder), "--fine-tune-steps", "-1"])
    with pytest.raises(SystemExit):
        main(["calibrate", "--model", str(folder), "--proposal-scale", "0.5"])
    assert "proposal_scale must be a number in [1, 10]" in capsys.readouterr().err


def test_calibrating_the_extended_generator_makes_its_target(tiny_zoo, tmp_path):
    """DDLS Corollary 1 through the zoo: a critic calibrated against G(z) + eps z' gives a
    calibrated target over (z, z') with that eps; the GAN's own critic keeps the plain target."""
    import shutil

    folder = tmp_path / "extended"
    shutil.copytree(tiny_zoo / "tiny-nsgan", folder)
    assert main(["calibrate", "--model", str(folder), "--fine-tune-steps", "20", "--fine-tune-batch", "64",
                 "--extended-noise-scale", "0.05", "--no-progress"]) == 0
    plain, extended = zoo.load_latent_ebm(folder), zoo.load_latent_ebm(folder, calibrated=True)
    assert plain.extended_noise_scale is None and extended.extended_noise_scale == pytest.approx(0.05)
    assert extended.latent_dim == plain.latent_dim + 2
    z = torch.zeros(3, extended.latent_dim)
    z[:, plain.latent_dim:] = 1.0
    torch.testing.assert_close(extended.generate(z), plain.generate(z[:, : plain.latent_dim]) + 0.05)
    assert "extended generator G(z) + 0.05 z'" in (folder / "MODEL_CARD.md").read_text()
    # compare samples (z, z') and scores G(z) + eps z'; its generator row stays G(z) alone.
    output = tmp_path / "compare"
    assert main(["compare", "--model", str(folder), "--methods", "generator", "isir/jax", "--num-samples", "100",
                 "--steps", "4", "--step-size", "0.02", "--sweep", "--w2sq-points", "50", "--output", str(output),
                 "--no-progress"]) == 0
    methods = json.loads((output / "metrics.json").read_text())["methods"]
    assert np.isfinite(methods["isir/jax"]["emd"]) and np.isfinite(methods["generator"]["emd"])
    with pytest.raises(SystemExit):
        main(["calibrate", "--model", str(folder), "--extended-noise-scale", "-1"])


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
    config["critic"]["options"]["width"] = 64  # the stored weights no longer fit
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
    config["critic"]["architecture"] = "resnet"  # not a registered architecture
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json: architecture must be one of \[.*'toy_critic'"):
        zoo.load_model(broken)


def _toy_gans() -> list[str]:
    """The shipped DDLS toy GANs (the image GANs: tests/test_image_zoo.py; the energy GANs of Dai et al.
    and the VAEs and latent EBMs of issue 16 have tests of their own)."""
    from ppl_ebm.zoo.egan_build import egan_model_names

    return [name for name in zoo.list_models(kind="toy2d") if name not in egan_model_names()
            and "base_model_type" not in json.loads((zoo.model_dir(name) / "config.json").read_text())]


@pytest.mark.parametrize("name", _toy_gans())
def test_every_shipped_zoo_entry_loads(name):
    model = zoo.load_model(name)
    ebm = zoo.latent_ebm_of(model)
    assert ebm.latent_dim == model.config["training"]["latent_dim"]
    assert (model.directory / "MODEL_CARD.md").is_file()
    for key in ("emd", "data_floor_emd", "w2sq_1000_mean", "w2sq_1000_std", "data_floor_w2sq_1000_mean",
                "data_floor_w2sq_1000_std"):
        assert np.isfinite(model.config["generator_metrics"][key]), key
    assert "EMD as\nDOT, DDLS Table 2 and ex2mcmc compute it" in (model.directory / "MODEL_CARD.md").read_text()
    zoo.latent_ebm_of(model, calibrated=True)


def test_the_default_model_is_shipped():
    assert zoo.DEFAULT_MODEL in zoo.list_models()


SHIPPED = _toy_gans()


def _old_way(directory, config, role):
    """A shipped network built as the zoo built it before network configs were stored: the toy
    architecture called with the training config's fields, weights read straight from safetensors."""
    from safetensors.torch import load_file

    training, data_dim = config["training"], config.get("data_dim", 2)
    if role == "generator":
        module = architectures.toy_generator(latent_dim=training["latent_dim"], data_dim=data_dim,
                                             width=training["generator_width"], depth=training["depth"],
                                             activation=training["activation"])
    else:
        module = architectures.toy_critic(data_dim=data_dim, width=training["critic_width"], depth=training["depth"],
                                          activation=training["activation"])
    file = {"generator": "generator.safetensors", "critic": "critic.safetensors",
            "calibrated": "critic_calibrated.safetensors"}[role]
    module.load_state_dict(load_file(str(directory / file)), strict=True)
    return module.eval()


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_models_give_the_outputs_of_the_old_loading(name):
    model = zoo.load_model(name)
    config = model.config
    # The stored network configs are exactly what the training config describes.
    expected = TrainingConfig(**config["training"]).network_configs(config.get("data_dim", 2))
    assert (model.network_config("generator"), model.network_config("critic")) == expected
    z = torch.randn(256, 2, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        x = _old_way(model.directory, config, "generator")(z)
        assert torch.equal(model.generator(z), x)
        assert torch.equal(model.critic(x), _old_way(model.directory, config, "critic")(x))
        if model.calibrated_critic is not None:
            assert torch.equal(model.calibrated_critic(x), _old_way(model.directory, config, "calibrated")(x))


def _conv_gan(seed: int = 0):
    generator_config = NetworkConfig("conv_generator", {"latent_dim": 8, "channels": 3, "base_width": 4,
                                                        "image_size": 8})
    critic_config = NetworkConfig("conv_critic", {"channels": 3, "base_width": 4, "image_size": 8})
    torch.manual_seed(seed)
    generator, critic = build_network(generator_config), build_network(critic_config)
    # A few training-mode passes so BatchNorm's running statistics and spectral norm's power
    # iteration vectors differ from a fresh build: the buffers must round-trip too.
    with torch.no_grad():
        for _ in range(3):
            critic(generator(torch.randn(16, 8)))
    return generator.eval(), critic.eval(), generator_config, critic_config


def test_conv_gan_saved_with_save_model_loads_by_name(tmp_path, monkeypatch):
    generator, critic, generator_config, critic_config = _conv_gan()
    folder = zoo.save_model(tmp_path / "tiny-image-gan", "tiny-image-gan", generator, critic,
                            generator_config=generator_config, critic_config=critic_config,
                            extra={"dataset_note": "random weights"})
    stored = json.loads((folder / "config.json").read_text())
    assert stored["generator"] == generator_config.to_dict() and "training" not in stored
    monkeypatch.setenv("PPL_EBM_MODELS", str(tmp_path))
    assert "tiny-image-gan" in zoo.list_models()
    model = zoo.load_model("tiny-image-gan")
    assert model.dataset is None and model.config["dataset_note"] == "random weights"
    z = torch.randn(5, 8)
    with torch.no_grad():
        images = model.generator(z)
        assert images.shape == (5, 3, 8, 8)
        assert torch.equal(images, generator(z))
        assert torch.equal(model.critic(images), critic(images))
    for module, original in ((model.generator, generator), (model.critic, critic)):
        for (key, value), (key_b, value_b) in zip(module.state_dict().items(), original.state_dict().items()):
            assert key == key_b and torch.equal(value, value_b)
    assert zoo.latent_ebm_of(model).latent_dim == 8
    # A calibrated (fine-tuned) critic has the critic's architecture and loads beside it.
    _, tuned, _, _ = _conv_gan(seed=1)
    zoo.save_calibrated_critic(folder, tuned, {"fine_tune": {"steps": 0}, "weight": 1.0, "bias": 0.0})
    with torch.no_grad():
        assert torch.equal(zoo.load_model("tiny-image-gan").calibrated_critic(images), tuned(images))


def test_loading_imports_no_training_code(tmp_path):
    import os
    import subprocess
    import sys

    generator, critic, generator_config, critic_config = _conv_gan()
    zoo.save_model(tmp_path / "image-gan", "image-gan", generator, critic,
                   generator_config=generator_config, critic_config=critic_config)
    code = (
        "import sys; from ppl_ebm.zoo import load_model; model = load_model('image-gan'); "
        "print(type(model.critic).__name__, sorted(m for m in sys.modules if m.startswith('ppl_ebm.training')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PPL_EBM_MODELS": str(tmp_path)})
    assert result.stdout.split() == ["Sequential", "[]"]


def test_save_model_needs_configs_that_describe_the_networks(tmp_path):
    generator, critic, generator_config, critic_config = _conv_gan()
    with pytest.raises(ValueError, match="generator_config and critic_config are required"):
        zoo.save_model(tmp_path / "a", "a", generator, critic)
    wrong = NetworkConfig("conv_critic", {"channels": 3, "base_width": 8, "image_size": 8})
    state = torch.random.get_rng_state()
    with pytest.raises(ValueError, match=r"critic_config .* does not describe the critic module"):
        zoo.save_model(tmp_path / "a", "a", generator, critic, generator_config=generator_config, critic_config=wrong)
    assert torch.equal(torch.random.get_rng_state(), state)  # the check leaves torch's generator alone
    assert not (tmp_path / "a").exists()  # nothing is written when a config is wrong


def test_old_format_folders_say_how_to_upgrade(tmp_path):
    import shutil

    from ppl_ebm.zoo.build import add_network_configs

    name = SHIPPED[0]
    folder = tmp_path / name
    shutil.copytree(zoo.model_dir(name), folder)
    current = json.loads((folder / "config.json").read_text())
    old = {key: value for key, value in current.items() if key not in ("generator", "critic")}
    (folder / "config.json").write_text(json.dumps(old, indent=2) + "\n")
    with pytest.raises(ValueError, match=r"no 'generator' network config .*add_network_configs"):
        zoo.load_model(folder)
    add_network_configs(folder)
    assert (folder / "config.json").read_text() == (zoo.model_dir(name) / "config.json").read_text()
    z = torch.randn(4, 2)
    with torch.no_grad():
        assert torch.equal(zoo.load_model(folder).generator(z), zoo.load_model(name).generator(z))
