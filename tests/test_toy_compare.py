"""`ppl-ebm compare` on a zoo model, at toy size: every method, metrics.json, report, figures."""

from __future__ import annotations

import json

import pytest

from ppl_ebm.cli import main
from ppl_ebm.training.critic_tuning import FineTuneConfig
from ppl_ebm.training.gan import TrainingConfig
from ppl_ebm.zoo.build import train_zoo_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("zoo")
    config = TrainingConfig(dataset="25gaussians", iterations=30, batch_size=64, generator_width=32,
                            critic_width=32, depth=2, seed=0)
    return train_zoo_model(config, "tiny", root, progress_bar=False, command="test", eval_samples=300,
                           fine_tune=FineTuneConfig(steps=20, batch_size=64, pool_size=10_000))


def test_compare_every_kind_of_method_at_toy_size(tiny_model, tmp_path, capsys):
    output = tmp_path / "out"
    # Every baseline and every sampler, each on one backend but MALA on both (the rows' plumbing is
    # the same for every sampler/backend; each pair is tested against closed forms elsewhere).
    # Every pair on both backends made this the suite's slowest test (122 s); dropped: ula/torch,
    # nuts/torch, hmc/jax, mala-imh/jax.
    sampler_runs = ("ula/jax", "mala/torch", "mala/jax", "nuts/jax", "hmc/torch", "mala-imh/torch")
    methods = ["generator", "drs", "mh_gan", "dot", *sampler_runs]
    code = main([
        "compare", "--model", str(tiny_model), "--methods", *methods, "--num-samples", "200", "--chains", "200", "--steps", "20",
        # NUTS/HMC at 20 + 100 steps (2 x 100 = --num-samples): at the defaults, 200 + 1250, Pyro's
        # two chains were 76 s of this test's 150.
        "--hmc-chains", "2", "--hmc-warmup", "20", "--hmc-draws", "100",
        "--sweep", "1e-3", "1e-2", "--sweep-chains", "100", "--output", str(output),
        "--w2sq-points", "100", "--w2sq-repeats", "3", "--no-progress",
    ])
    assert code == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["dataset"] == "25gaussians" and metrics["num_samples"] == 200
    expected = {"data", "generator", "drs", "mh_gan", "dot", *sampler_runs}
    assert set(metrics["methods"]) == expected
    for name, row in metrics["methods"].items():
        for key in ("emd", "modes_recovered", "high_quality_fraction", "ess_bulk_min", "rhat_max",
                    "ess_per_second", "ess_per_grad", "grad_evals", "wall_seconds"):
            assert key in row, (name, key)
        assert row["emd"] > 0
        # The papers' figure beside ours (W2^2 at 100 points here, mean and spread over 3 repeats).
        assert row["w2sq_100_mean"] > 0 and row["w2sq_100_std"] > 0
        assert len(row["w2sq_100_values"]) == 3
        assert sum(row["w2sq_100_values"]) / 3 == pytest.approx(row["w2sq_100_mean"], rel=1e-12)
    assert metrics["methods"]["mala/jax"]["ess_bulk_min"] > 0
    assert metrics["methods"]["generator"]["ess_bulk_min"] is None
    assert len(metrics["sweep"]["emd"]) == 2
    assert metrics["sweep"]["mala_imh_adapted_emd"] > 0
    assert isinstance(metrics["target_check"]["mode_beyond_prior"], bool)
    assert metrics["methods"]["mala-imh/torch"]["ess_bulk_min"] > 0
    # ULA runs at the step the sweep chose on validation data; DDLS used the calibrated critic.
    assert metrics["methods"]["ula/jax"]["step_size"] == pytest.approx(metrics["sweep"]["best_step_size"])
    assert metrics["methods"]["mala/torch"]["critic"] == "calibrated"
    for name in ("report.md", "samples.png", "emd_vs_step.png", "traces.png"):
        assert (output / name).stat().st_size > 0
    assert "EMD as DOT/DDLS/ex2mcmc compute it" in metrics["w2sq_100"]
    printed = capsys.readouterr().out
    assert "mala/jax" in printed and "W2^2@100" in printed and "W1" in printed
    assert "Against the generator (W2^2@100: paired over the 3 repeats' shared data draws)" in printed
    assert "Against the generator" in (output / "report.md").read_text()


def test_paired_ratios_against_the_generator():
    from ppl_ebm.studies.compare_report import format_paired_ratios

    rows = {"data": {"emd": 0.5, "w2sq_9_values": [0.5, 0.5, 0.5]},
            "generator": {"emd": 2.0, "w2sq_9_values": [1.0, 2.0, 3.0]},
            "ula/jax": {"emd": 1.0, "w2sq_9_values": [0.5, 1.0, 1.5]}}
    text = format_paired_ratios(rows)
    # Differences -0.5, -1, -1.5: mean -1, sample std 0.5, standard error 0.5 / sqrt(3) = 0.2887.
    assert "ula/jax: W1 0.50x, W2^2 0.50x (difference -1.0000 +- 0.2887)" in text
    assert "data: W1 0.25x, W2^2 0.25x (difference -1.5000 +- 0.5774)" in text
    assert format_paired_ratios({"generator": {"emd": 1.0, "w2sq_9_mean": 1.0}}) == ""
    assert "\n- ula/jax: W1 0.50x" in format_paired_ratios(rows, markdown=True)


def test_compare_rejects_bad_options(tiny_model, capsys):
    with pytest.raises(SystemExit):
        main(["compare", "--model", str(tiny_model), "--methods", "gibbs"])
    assert "Unknown method" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--model", "no-such-model"])
    assert "No model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--model", str(tiny_model), "--num-samples", "200", "--hmc-chains", "2", "--hmc-draws", "50"])
    assert "hmc_chains x hmc_draws (100) must be >= num_samples (200)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "--model", str(tiny_model), "--hmc-warmup", "0"])
    assert "hmc_warmup" in capsys.readouterr().err


def test_compare_fixed_step_on_the_raw_critic(tiny_model, tmp_path):
    output = tmp_path / "raw"
    code = main(["compare", "--model", str(tiny_model), "--methods", "generator", "ula/jax", "--num-samples", "100",
                 "--steps", "4", "--step-size", "0.02", "--sweep", "--raw-critic", "--output", str(output),
                 "--no-progress"])
    assert code == 0
    row = json.loads((output / "metrics.json").read_text())["methods"]["ula/jax"]
    assert row["step_size"] == pytest.approx(0.02) and row["critic"] == "raw" and row["chains"] == 100
