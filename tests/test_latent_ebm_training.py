"""Latent EBMs on a VAE (Xiao, Yan & Amit 2020): the VAE, the eq. 6 training, the zoo entries, the commands."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ppl_ebm.nets.architectures import mlp, toy_critic
from ppl_ebm.training.latent_ebm import LatentEBMTrainingConfig, train_latent_ebm
from ppl_ebm.training.vae import VAEConfig, train_vae

MU = np.array([1.5, -1.0], np.float32)


def _shifted_normal(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, 2)) + MU).astype(np.float32)


def test_latent_ebm_learns_the_known_tilt_of_a_shifted_gaussian():
    """Base: G = identity, p0 = N(0, I); data N(mu, I). The maximum-likelihood tilt is
    exp(mu . x) (up to a constant), whose samples have mean mu. Short-run training must move the
    latent-EBM samples measurably towards mu and cut the held-out W1 (it starts at |mu| = 1.8)."""
    from ppl_ebm.training.latent_ebm import _ebm, latent_langevin
    from ppl_ebm.nets.torch_to_jax import torch_to_jax
    import jax

    identity = mlp(2, [], 2)
    with torch.no_grad():
        identity[0].weight.copy_(torch.eye(2))
        identity[0].bias.zero_()
    torch.manual_seed(0)
    energy = toy_critic(2, 32, 2)
    config = LatentEBMTrainingConfig(iterations=150, eval_every=50, eval_samples=500, learning_rate=1e-2, patience=10)
    trained = train_latent_ebm(identity, energy, 2, _shifted_normal, config, progress_bar=False)
    scores = trained.history["held_out_score"]
    assert scores[0] > 1.5 and min(scores[1:]) < 0.7 * scores[0]
    assert trained.best_iteration > 0
    generator_fn, generator_params = torch_to_jax(identity, torch.zeros(2, 2))
    energy_fn, energy_params = torch_to_jax(trained.energy, torch.zeros(2, 2))
    ebm = _ebm(generator_fn, generator_params, energy_fn, energy_params, 2, (2,))
    z = np.asarray(latent_langevin(jax.random.key(1), ebm, 2000, config.sample_steps, config.step_size))
    # The projection of the sample mean on mu: 0 for the base, |mu|^2 for the exact tilt.
    assert float(z.mean(0) @ MU) > 0.3 * float(MU @ MU)


def test_step_zero_scores_the_initial_energy_that_early_stopping_keeps():
    """Step 0 of the early stopping must score the initial energy's own ULA samples, the weights
    kept when no later evaluation beats it (it once scored prior draws, so a random initial energy,
    never scored, was shipped as "best at step 0"). E(x) = -3 x_1 tilts the samples to x_1 > 0."""
    identity = mlp(2, [], 2)
    with torch.no_grad():
        identity[0].weight.copy_(torch.eye(2))
        identity[0].bias.zero_()
    energy = mlp(2, [], 1)
    with torch.no_grad():
        energy[0].weight.copy_(torch.tensor([[-3.0, 0.0]]))
        energy[0].bias.zero_()
    seen = []

    def score(samples, _held_out):
        seen.append(float(np.mean(samples[:, 0])))
        return float(len(seen))  # every later evaluation is worse: step 0 stays the best

    config = LatentEBMTrainingConfig(iterations=2, eval_every=1, eval_samples=500, patience=1)
    trained = train_latent_ebm(identity, energy, 2, _shifted_normal, config, score=score, progress_bar=False)
    assert trained.best_iteration == 0 and trained.stopped_early
    # ULA (100 steps of 0.01) from N(0, I) towards N((3, 0), I): mean x_1 about 3 (1 - e^-0.5) = 1.2.
    assert seen[0] > 0.8
    for name, value in energy.state_dict().items():
        assert torch.equal(trained.energy.state_dict()[name], value), name


def test_vae_training_raises_the_elbo():
    from ppl_ebm import data

    config = VAEConfig("25gaussians", iterations=400, width=32, depth=2)
    trained = train_vae(config, lambda n, seed: data.sample_dataset("25gaussians", n, seed), progress_bar=False,
                        pool_size=5000)
    elbo = trained.history["elbo"]
    assert elbo[-1] > elbo[0] + 0.5  # nats per point


@pytest.mark.parametrize("field, value", [("step_size", 0.0), ("train_steps", 0), ("energy_regularisation", -0.1),
                                          ("patience", 1.5)])
def test_latent_ebm_config_names_a_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        LatentEBMTrainingConfig(**{field: value}).validate()


def test_vae_config_names_a_bad_field():
    with pytest.raises(ValueError, match="latent_dim"):
        VAEConfig("25gaussians", latent_dim=0).validate()


def test_commands_at_toy_size_write_loadable_zoo_entries(tmp_path):
    """train-vae, then train-latent-ebm on it, then compare on the latent EBM: all by name."""
    from problems import train_toy_latent_ebm_on

    from ppl_ebm.cli import main
    from ppl_ebm.studies.compare import CompareConfig, run_compare
    from ppl_ebm.zoo import load_latent_ebm

    assert main(["train-vae", "--dataset", "swissroll", "--iterations", "100", "--width", "16", "--depth", "1",
                 "--name", "vae", "--output", str(tmp_path), "--card-samples", "200", "--no-progress"]) == 0
    base = load_latent_ebm(tmp_path / "vae")
    z = torch.randn(5, 2)
    assert torch.all(base.log_tilt(z) == 0)  # the base entry is the VAE itself: E = 0
    ebm = load_latent_ebm(train_toy_latent_ebm_on(tmp_path / "vae", tmp_path))
    assert ebm.critic_output == "energy" and ebm.latent_dim == 2
    card = (tmp_path / "ebm" / "MODEL_CARD.md").read_text()
    assert "latent EBM" in card
    # The card's row is seed 0 of its repeated draws (one code path), and the card shows them.
    config = json.loads((tmp_path / "ebm" / "config.json").read_text())
    draws = config["emd_sample_draws"]
    assert draws["seeds"] == [0, 1, 2, 3] and len(draws["generator"]) == len(draws["latent_ebm"]) == 4
    assert draws["generator"][0] == config["generator_metrics"]["emd"]
    assert draws["latent_ebm"][0] == config["latent_ebm_metrics"]["emd"]
    assert len(set(draws["latent_ebm"])) == 4  # each seed its own draw
    assert "W1 over 4 sample draws" in card
    assert all((tmp_path / "ebm" / f).is_file() for f in ("learning_curve.png", "samples.png", "chains.png"))
    out = run_compare(CompareConfig(model=str(tmp_path / "ebm"), methods=("generator", "ula/jax"),
                                    num_samples=100, langevin_steps=10, sweep_steps=(), ula_step_size=0.01,
                                    w2sq_points=50, progress_bar=False), log=lambda *_: None)
    assert {"generator", "ula/jax"} <= set(out.metrics)
    assert np.isfinite(out.metrics["ula/jax"]["emd"])


def test_training_moves_the_weights_but_never_a_buffer():
    """Buffers (a Fourier energy's B) enter the JAX params like weights; Adam must leave them as they were."""
    identity = mlp(2, [], 2)
    with torch.no_grad():
        identity[0].weight.copy_(torch.eye(2))
        identity[0].bias.zero_()
    torch.manual_seed(0)
    energy = toy_critic(2, 16, 1, fourier_features=8, fourier_scale=1.0)
    seen = []

    def score(_samples, _held_out):
        seen.append(None)
        return -float(len(seen))  # every evaluation improves: the last weights are kept

    config = LatentEBMTrainingConfig(iterations=5, eval_every=5, eval_samples=100, learning_rate=1e-2)
    trained = train_latent_ebm(identity, energy, 2, _shifted_normal, config, score=score, progress_bar=False)
    assert trained.best_iteration == 5
    assert torch.equal(trained.energy[0].frequencies, energy[0].frequencies)
    assert not torch.equal(trained.energy[1].weight, energy[1].weight)


def test_a_fourier_energy_round_trips_the_zoo(tmp_path):
    """--energy-fourier-features: the saved B is the seeded initial one, the config names the
    option, and the loaded energy is the same function in torch and in JAX."""
    from ppl_ebm.cli import main
    from ppl_ebm.nets.registry import NetworkConfig
    from ppl_ebm.nets.torch_to_jax import torch_to_jax
    from ppl_ebm.zoo.latent_build import _zero_energy
    from ppl_ebm.zoo.store import load_model

    assert main(["train-latent-ebm", "--base", "swissroll-vae", "--iterations", "4", "--eval-every", "2",
                 "--eval-samples", "100", "--energy-width", "16", "--energy-depth", "1", "--energy-fourier-features",
                 "8", "--energy-fourier-scale", "2", "--name", "ebm", "--output", str(tmp_path), "--card-samples",
                 "200", "--no-progress"]) == 0
    model = load_model(tmp_path / "ebm")
    config = model.network_config("critic")
    assert config.options["fourier_features"] == 8 and config.options["fourier_scale"] == 2.0
    initial = _zero_energy(NetworkConfig.from_dict(config.to_dict()), seed=0)
    assert torch.equal(model.critic[0].frequencies, initial[0].frequencies)
    x = torch.randn(64, 2) * 2
    energy_fn, params = torch_to_jax(model.critic, torch.zeros(2, 2))
    with torch.no_grad():
        expected = model.critic(x).numpy()
    np.testing.assert_allclose(np.asarray(energy_fn(params, x.numpy())), expected, rtol=1e-4, atol=1e-5)
    assert "Fourier features" in (tmp_path / "ebm" / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("flags, message", [
    (["--energy-fourier-scale", "1"], "needs --energy-fourier-features"),
    (["--energy-fourier-features", "-2"], "must be >= 0"),
    (["--energy-fourier-features", "4", "--energy-fourier-scale", "0"], "finite number > 0"),
    (["--energy-fourier-features", "4", "--energy-fourier-scale", "nan"], "finite number > 0"),
])
def test_bad_fourier_flags_stop_train_latent_ebm_with_a_message(tmp_path, capsys, flags, message):
    from ppl_ebm.cli import main

    with pytest.raises(SystemExit):
        main(["train-latent-ebm", "--base", "swissroll-vae", "--name", "x", "--output", str(tmp_path), *flags])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_train_latent_ebm_refuses_a_missing_base(tmp_path):
    from ppl_ebm.cli import main

    with pytest.raises(SystemExit):
        main(["train-latent-ebm", "--base", str(tmp_path / "nothing"), "--name", "x", "--output", str(tmp_path)])


def _shipped_latent_entries() -> list[str]:
    import json

    from ppl_ebm import zoo

    return [name for name in zoo.list_models(kind="toy2d")
            if "base_model_type" in json.loads((zoo.model_dir(name) / "config.json").read_text())]


@pytest.mark.parametrize("name", _shipped_latent_entries())
def test_shipped_vae_and_latent_ebm_entries_load_by_name(name):
    from ppl_ebm import zoo

    model = zoo.load_model(name)
    ebm = zoo.load_latent_ebm(name)
    assert ebm.critic_output == "energy" and ebm.latent_dim == model.config["training"]["latent_dim"]
    for key in ("emd", "data_floor_emd", "w2sq_1000_mean", "data_floor_w2sq_1000_mean"):
        assert np.isfinite(model.config["generator_metrics"][key]), key
    tilt = ebm.log_tilt(torch.randn(64, ebm.latent_dim))
    if model.config.get("latent_ebm"):
        assert np.isfinite(model.config["latent_ebm_metrics"]["emd"])
        assert float(tilt.std()) > 0  # a learned energy, not the base's E = 0
    else:
        assert torch.all(tilt == 0)


def test_recorded_draws_reproduce_the_card_row_and_refuse_a_changed_entry(tmp_path):
    """record_draws re-samples an entry: seed 0 must give its card's row again (it does for an
    untouched entry), and an entry whose energy changed since it was scored is refused, not
    silently re-scored."""
    import shutil

    from problems import train_toy_latent_ebm_on
    from safetensors.torch import load_file, save_file

    from ppl_ebm.cli import main
    from ppl_ebm.zoo.latent_draws import emd_over_draws, record_draws

    assert main(["train-vae", "--dataset", "swissroll", "--iterations", "50", "--width", "16", "--depth", "1",
                 "--name", "vae", "--output", str(tmp_path), "--card-samples", "100", "--no-progress"]) == 0
    folder = train_toy_latent_ebm_on(tmp_path / "vae", tmp_path)
    stored = json.loads((folder / "config.json").read_text())["emd_sample_draws"]
    again = record_draws(folder, seeds=(0, 5))
    assert again["generator"][0] == stored["generator"][0] and again["latent_ebm"][0] == stored["latent_ebm"][0]
    assert json.loads((folder / "config.json").read_text())["emd_sample_draws"]["seeds"] == [0, 5]
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    weights = load_file(changed / "critic.safetensors")
    last = sorted(k for k in weights if k.endswith("bias"))[-1]
    weights = {k: v + 1.0 if k != last else v for k, v in weights.items()}
    save_file(weights, changed / "critic.safetensors")
    with pytest.raises(RuntimeError, match="no longer samples as it was scored"):
        record_draws(changed, seeds=(0, 1))
    with pytest.raises(ValueError, match="seeds must be at least two distinct"):
        emd_over_draws(None, "swissroll", 10, seeds=(3, 3))
