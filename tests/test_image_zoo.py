"""Image GANs in the zoo: every shipped image model loads by name with its card and scores, and
``ppl-ebm train`` / ``ppl-ebm train-classifier`` run on digits at toy size (and refuse bad input)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ppl_ebm import zoo
from ppl_ebm.cli import main
from ppl_ebm.zoo.classifiers import list_classifiers, load_classifier
from ppl_ebm.zoo.image_build import generate_images

IMAGE_MODELS = zoo.list_models(kind="image")


def test_the_digits_gans_are_shipped():
    assert {"digits-dcgan", "digits-sngan"} <= set(IMAGE_MODELS)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_every_shipped_image_model_loads_with_its_scores(name, one_torch_thread):
    model = zoo.load_model(name)
    assert model.kind == "image" and model.dataset == "digits"
    latent_dim = model.config["training"]["latent_dim"]
    # The image GANs' noise is 32-D; the energy GAN of the digits ranking keeps the released code's 10,
    # the digits VAE and its latent EBM (ppl-ebm train-vae / train-latent-ebm) have 16.
    latent_entry = "base_model_type" in model.config
    loss = model.config["training"].get("loss")
    assert latent_dim >= (10 if loss == "egan-ent-nn" else 16 if latent_entry else 32)
    images = generate_images(model.generator, latent_dim, 8)
    assert images.shape == (8, *model.config["image_shape"]) and np.abs(images).max() <= 1.0
    energy = zoo.latent_ebm_of(model).potential(torch.randn(4, latent_dim))
    assert energy.shape == (4,) and torch.isfinite(energy).all()
    assert model.config["classifier"] in list_classifiers()
    scores = model.config["generator_metrics"]
    card = (model.directory / "MODEL_CARD.md").read_text()
    for row in ("generator", "data_floor"):
        for key in ("fd", "score", "precision", "recall"):
            assert np.isfinite(scores[row][key]), (row, key)
        assert f"{scores[row]['fd']:.3f}" in card
    command = model.config["command"]
    assert command.startswith("ppl-ebm train-" if latent_entry else "ppl-ebm train --dataset digits")
    assert command in card


def test_train_cli_on_digits_at_toy_size(tmp_path, monkeypatch, one_torch_thread):
    code = main(["train", "--dataset", "digits", "--architecture", "sngan", "--iterations", "3", "--batch-size", "16",
                 "--seed", "1", "--name", "tiny-sngan", "--output", str(tmp_path), "--no-progress"])
    assert code == 0
    monkeypatch.setenv("PPL_EBM_MODELS", str(tmp_path))
    assert zoo.list_models(kind="image") == sorted(["tiny-sngan", *IMAGE_MODELS])
    model = zoo.load_model("tiny-sngan")
    assert model.config["training"]["loss"] == "hinge" and model.config["critic"]["options"]["spectral_norm"]
    assert any("parametrizations" in key for key in model.critic.state_dict())
    scores = model.config["generator_metrics"]
    assert scores["generator"]["n_generated"] == scores["data_floor"]["n_generated"] == 1437
    # Three steps from a random start: far from the data, which the floor is not.
    assert scores["generator"]["fd"] > scores["data_floor"]["fd"]
    assert "ppl-ebm train --dataset digits --architecture sngan" in (model.directory / "MODEL_CARD.md").read_text()


def test_train_cli_refuses_bad_image_input(tmp_path, capsys):
    base = ["train", "--name", "x", "--output", str(tmp_path), "--no-progress"]
    for extra, message in ((["--dataset", "mnist"], "pass root="),
                           (["--dataset", "cifar10", "--data-root", str(tmp_path)], "cifar-10-batches-py"),
                           (["--dataset", "digits", "--loss", "wgan-gp"], "loss must be one of"),
                           (["--dataset", "digits", "--iterations", "0"], "iterations must be a positive int"),
                           (["--dataset", "digits", "--device", "tpu"], "device must be"),
                           (["--dataset", "25gaussians", "--data-root", str(tmp_path)], "--data-root applies to image")):
        with pytest.raises(SystemExit) as raised:
            main(base + extra)
        assert raised.value.code == 2
        assert message in capsys.readouterr().err


def test_train_classifier_cli_at_toy_size(tmp_path, one_torch_thread):
    assert main(["train-classifier", "--dataset", "digits", "--epochs", "1", "--name", "tiny-cnn",
                 "--output", str(tmp_path)]) == 0
    loaded = load_classifier(tmp_path / "classifiers" / "tiny-cnn")
    config = json.loads((loaded.directory / "config.json").read_text())
    assert 0.0 <= config["held_out_accuracy"] <= 1.0 and config["held_out_images"] == 360
    assert "held out (never trained on)" in (loaded.directory / "MODEL_CARD.md").read_text()


def test_compare_cli_on_an_image_model_at_toy_size(tmp_path, one_torch_thread):
    # Both backends (ULA on JAX, the paper's ULA and MALA on torch); the sweep is left out here
    # (--sweep with no steps) because each JAX sampler compiles the conv nets once.
    import shutil

    output, copy = tmp_path / "compare", tmp_path / "digits-dcgan"
    shutil.copytree(zoo.model_dir("digits-dcgan"), copy)  # --record-in-card writes into the model's folder
    # DRS and DOT run through the same baseline dispatch as MH-GAN; left out here for time (DRS's
    # 10,000-draw pilot, DOT's Lipschitz estimate), tested on the toys in test_baselines.py.
    methods = ["generator", "mh_gan", "ula-paper/torch", "ula/jax", "mala/torch", "isir/torch", "ex2mcmc/torch"]
    assert main(["compare", "--model", str(copy), "--methods", *methods, "--num-samples", "16", "--steps", "40",
                 "--paper-steps", "30", "--trace-samplers", "--sweep", "--step-size", "0.01", "--mh-gan-chain-length", "4",
                 "--output", str(output), "--record-in-card", "--no-progress"]) == 0
    result = json.loads((output / "metrics.json").read_text())
    assert result["kind"] == "image" and list(result["methods"]) == ["data", *methods]
    # DDLS and MH-GAN read the shipped calibrated critic.
    assert result["critic"] == "calibrated" and result["methods"]["mala/torch"]["critic"] == "calibrated"
    assert result["methods"]["mh_gan"]["critic"] == "calibrated"
    # The FD's noise scale: the generator over other sets of prior draws.
    assert result["methods"]["generator"]["fd_seed_std"] > 0
    for method, row in result["methods"].items():
        assert row["n_generated"] == 16 and np.isfinite(row["fd"]) and 0 <= row["saturated"] <= 1, method
    assert result["methods"]["ula-paper/torch"]["step_size"] == 0.01
    assert result["methods"]["ula/jax"]["step_size"] == pytest.approx(0.01)
    trace = result["traces"]["ula-paper/torch"]
    assert trace["step"] == [0, 10, 20, 30] and len(trace["fd"]) == 4
    # Step 0 of the trace is the generator's draws with the run's seed: the generator row's FD.
    assert trace["fd"][0] == pytest.approx(result["methods"]["generator"]["fd"])
    # --trace-samplers: the exact samplers' draws after their 20 warmup steps, every 10 steps; the
    # last point is the row's own sample.
    assert set(result["traces"]) == {"ula-paper/torch", "mala/torch", "isir/torch", "ex2mcmc/torch"}
    for method in ("mala/torch", "isir/torch", "ex2mcmc/torch"):
        trace = result["traces"][method]
        assert trace["step"] == [0, 30, 40], method
        assert trace["fd"][0] == pytest.approx(result["methods"]["generator"]["fd"])
        assert trace["fd"][-1] == pytest.approx(result["methods"][method]["fd"])
    # DDLS Fig. 3: the paper's chains from their starts; Fig. 4 on MALA's samples.
    assert result["chain_figure"] == {"steps": [0, 10, 20, 30], "method": "ula-paper/torch"}
    nearest = result["nearest_train"]
    assert nearest["method"] == "mala/torch" and np.array(nearest["distances"]).shape == (8, 5)
    report = (output / "report.md").read_text()
    for text in ("| ula/jax |", "| mh_gan |", "| ex2mcmc/torch |", "DDLS Fig. 5", "DDLS Fig. 3", "DDLS Fig. 4"):
        assert text in report, text
    for figure in ("samples.png", "pixels.png", "trace.png", "chains.png", "nearest.png"):
        assert (output / figure).stat().st_size > 0
    card = (copy / "MODEL_CARD.md").read_text()
    # Recorded in the folder that was given, and nowhere else: the shipped card is untouched.
    assert "--num-samples 16" in card and "--num-samples 16" not in (zoo.model_dir("digits-dcgan") /
                                                                     "MODEL_CARD.md").read_text()
    assert "## DDLS (`ppl-ebm compare`)" in card and f"| ula/jax | {result['methods']['ula/jax']['fd']:.3f} |" in card
    assert "## Generator-only metrics" in card  # the rest of the card is rewritten, not lost


def test_compare_cli_refuses_toy_methods_on_an_image_model(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--model", "digits-dcgan", "--methods", "hmc/jax", "--output", str(tmp_path / "c")])
    assert "for an image model; choose from" in capsys.readouterr().err


def test_train_cli_on_a_users_mnist_folder_at_toy_size(tmp_path, monkeypatch, one_torch_thread):
    from problems import write_tiny_mnist

    write_tiny_mnist(tmp_path / "data", n_train=24, n_test=8)
    assert main(["train", "--dataset", "mnist", "--data-root", str(tmp_path / "data"), "--iterations", "2",
                 "--batch-size", "8", "--name", "tiny-mnist", "--output", str(tmp_path / "zoo"), "--no-progress"]) == 0
    monkeypatch.setenv("PPL_EBM_MODELS", str(tmp_path / "zoo"))
    model = zoo.load_model("tiny-mnist")
    assert model.config["image_shape"] == [1, 32, 32] and model.config["generator_metrics"] is None
    assert generate_images(model.generator, 32, 2).shape == (2, 1, 32, 32)
    # No mnist classifier in the zoo: the card says how to make one instead of inventing scores.
    assert "ppl-ebm train-classifier --dataset mnist" in (model.directory / "MODEL_CARD.md").read_text()


def test_compare_ex2mcmc_protocol_counts_the_papers_steps(tmp_path, one_torch_thread):
    # --ex2mcmc-protocol: --steps counts the ex2mcmc paper's steps (3 MALA steps; i-SIR then 3 MALA
    # steps; one i-SIR step), a tenth of them warmup, and the trace is in those steps.
    output = tmp_path / "compare"
    methods = ["mala/torch", "isir/torch", "ex2mcmc/torch"]
    assert main(["compare", "--model", "digits-dcgan", "--methods", *methods, "--num-samples", "8", "--steps", "20",
                 "--ex2mcmc-protocol", "--trace-samplers", "--output", str(output), "--no-progress"]) == 0
    result = json.loads((output / "metrics.json").read_text())
    rows = result["methods"]
    # Gradients a chain: the start's, then MALA's 3 a step; Ex2MCMC's i-SIR steps take the gradient
    # at the kept particle too: 60 MALA + 19 i-SIR (its warmup is one step short, below) + 1.
    assert rows["mala/torch"]["grad_evals"] == 8 * (3 * 20 + 1)
    assert rows["ex2mcmc/torch"]["grad_evals"] == 8 * (3 * 20 + 19 + 1)
    assert rows["isir/torch"]["grad_evals"] == 0
    # Warmup 2 paper steps (a tenth), then a point every 10: the last is the row's own sample.
    for method in methods:
        assert result["traces"][method]["step"] == [0, 10, 20], method
        assert result["traces"][method]["fd"][-1] == pytest.approx(rows[method]["fd"])
    # The paper's target acceptance 0.67 from step 0.01: MALA's adapted step moved away from 0.01.
    assert rows["mala/torch"]["step_size"] != pytest.approx(0.01)
    assert result["config"]["ex2mcmc_protocol"] is True
    assert "ex2mcmc paper's (`--ex2mcmc-protocol`)" in (output / "report.md").read_text()


def test_image_compare_runs_mala_imh_and_nuts_with_diagnostics(one_torch_thread):
    """Issue 16's samplers on the digits latent EBM: MALA with independence steps (one chain an
    image, as MALA) and NUTS (a few chains, pooled draws thinned to the images), each row with ESS
    and R-hat; ULA keeps only final states, so its diagnostics are absent, not made up."""
    from ppl_ebm.studies.image_compare import ImageCompareConfig, run_image_compare

    config = ImageCompareConfig(model="digits-vae-latent-ebm", methods=("ula/jax", "mala-imh/jax", "nuts/jax"),
                                num_samples=16, langevin_steps=20, ula_step_size=0.01, sweep_steps=(), hmc_chains=2,
                                hmc_warmup=10, hmc_draws=8, trace_samplers=True, progress_bar=False).validate()
    out = run_image_compare(config, log=lambda *_: None)
    imh, nuts = out.metrics["mala-imh/jax"], out.metrics["nuts/jax"]
    for row in (imh, nuts):
        assert row["n_generated"] == 16 and np.isfinite(row["fd"])
        assert row["ess_bulk_min"] > 0 and np.isfinite(row["rhat_max"]) and row["ess_per_second"] > 0
    assert out.metrics["ula/jax"]["ess_bulk_min"] is None and out.metrics["ula/jax"]["rhat_max"] is None
    # NUTS: 2 chains of 8 draws pooled are the 16 images; MALA-IMH's trace like MALA's, NUTS untraced.
    assert nuts["grad_evals"] > 2 * 18
    assert "mala-imh/jax" in out.traces and "nuts/jax" not in out.traces
    from ppl_ebm.studies.image_compare_report import format_sampling_line

    assert "nuts/jax: 2 chains of 10 warmup + 8 draws" in format_sampling_line(config)
    assert "nuts" not in format_sampling_line(ImageCompareConfig(methods=("mala/jax",)))


@pytest.mark.parametrize("options, message", [
    ({"methods": ("nuts/jax",), "hmc_chains": 2, "hmc_draws": 4}, "must be >= num_samples"),
    ({"methods": ("nuts/jax",), "hmc_chains": 40, "hmc_draws": 4}, "must be <= num_samples"),
    ({"methods": ("mala-imh/jax",), "ex2mcmc_protocol": True}, "covers mala, isir and ex2mcmc"),
])
def test_image_compare_refuses_nuts_and_protocol_settings_that_cannot_run(options, message):
    from ppl_ebm.studies.image_compare import ImageCompareConfig

    with pytest.raises(ValueError, match=message):
        ImageCompareConfig(num_samples=16, **options).validate()
