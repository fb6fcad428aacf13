"""The mixing-time and sampler-comparison studies from their commands, at toy size."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ppl_ebm.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_mixing_command_writes_its_report(tmp_path, capsys):
    output = tmp_path / "mixing"
    code = main(["mixing", "--model", "swissroll-nsgan", "--chains", "20", "--superchains", "4", "--steps", "20",
                 "--every", "10", "--pairs", "8", "--lag", "4", "--max-iterations", "60", "--mala-step", "0.05",
                 "--output", str(output)])
    assert code == 0
    study = json.loads((output / "mixing.json").read_text())
    assert set(study["samplers"]) == {"ula", "mala", "mala-imh"}  # the default samplers
    for sampler in ("ula", "mala", "mala-imh"):
        progression = study["samplers"][sampler]["progression"]
        assert progression["steps"] == [10, 20] and len(progression["emd"]) == 2
        assert all(value > 0 for value in progression["emd"] + progression["nested_rhat"])
        coupling = study["samplers"][sampler]["coupling"]
        assert 0.0 <= coupling["met_fraction"] <= 1.0 and len(coupling["iterations"]) > 0
    jumps = study["samplers"]["mala-imh"]["progression"]["independence_acceptance_mean"]
    assert 0 < jumps <= 1 and study["samplers"]["mala"]["progression"]["independence_acceptance_mean"] is None
    check = study["target_check"]
    assert check["mode_beyond_prior"] is False and check["argmin_norm"] < check["prior_max_norm"]
    assert (output / "mixing.png").stat().st_size > 0
    report = capsys.readouterr().out
    assert "TV <= 1/4 from" in report and "Target check: potential minimum" in report and "| mala-imh |" in report


def test_samplers_command_writes_its_report(tmp_path, capsys):
    # The time part only: the bias part at its default sizes is the full study (half an hour on
    # 2 cores); its own test below runs it at --quick size.
    output = tmp_path / "samplers"
    # One of each kind (Pyro NUTS, NumPyro NUTS, our MALA on torch, MALA with independence steps on
    # JAX); every method runs the same path once its settings are chosen (the next test checks
    # those of the kinds left out here: HMC's leapfrog count, ULA's step).
    code = main(["samplers", "--models", "swissroll-nsgan", "--methods", "pyro-nuts-1", "nuts/jax",
                 "mala/torch", "mala-imh/jax", "--budget", "0.3", "--chains", "16", "--jax-hmc-chains", "4",
                 "--torch-hmc-chains", "2", "--warmup", "10", "--parts", "time", "--output", str(output)])
    assert code == 0
    study = json.loads((output / "samplers.json").read_text())
    rows = study["models"]["swissroll-nsgan"]["methods"]
    assert set(rows) == {"pyro-nuts-1", "nuts/jax", "mala/torch", "mala-imh/jax"}
    assert 0 < rows["mala-imh/jax"]["independence_acceptance"] <= 1
    assert rows["mala/torch"]["independence_acceptance"] is None
    check = study["models"]["swissroll-nsgan"]["target_check"]
    assert check["mode_beyond_prior"] is False and check["argmin_norm"] < check["prior_max_norm"]
    assert rows["pyro-nuts-1"]["chains"] == 1 and rows["nuts/jax"]["chains"] == 4
    for row in rows.values():
        assert row["draws_per_chain"] >= 20 and row["grad_evals"] > 0 and row["ess_bulk_min"] > 0
    ratios = study["models"]["swissroll-nsgan"]["ratios"]
    assert set(ratios) == {"best_over_pyro-nuts-1", "best_over_nuts/jax"}
    assert rows["pyro-nuts-1"]["converged"] is None  # one chain: R-hat cannot check it
    for name, row in rows.items():
        if name != "pyro-nuts-1":
            assert row["converged"] == (row["rhat_max"] < 1.01)
    assert ratios["best_over_pyro-nuts-1"]["baseline_converged"] is None
    report = (output / "samplers.md").read_text()
    assert "R-hat < 1.01 reached by" in report and "Target check: potential minimum" in report
    assert "ESS/s (sampling)" in capsys.readouterr().out


def test_samplers_time_part_settings_of_each_method_kind():
    from ppl_ebm.studies.samplers import SamplerStudyConfig, _settings

    config = SamplerStudyConfig(step_size_adaptation="cross_chain").validate()
    assert _settings("pyro-nuts-1", config) == ("nuts", "torch", 1, {})
    assert _settings("hmc/jax", config) == ("hmc", "jax", config.jax_hmc_chains,
                                            {"num_steps": 16, "trajectory_length": None})
    assert _settings("hmc/torch", config) == ("hmc", "torch", config.torch_hmc_chains,
                                              {"num_steps": 16, "step_size": 0.05})
    assert _settings("ula/jax", config) == ("ula", "jax", config.langevin_chains, {"step_size": config.ula_step_size})
    assert _settings("mala-imh/torch", config) == ("mala-imh", "torch", config.langevin_chains, {
        "independence_every": config.independence_every, "step_size_adaptation": "cross_chain"})
    assert _settings("meads/jax", config) == ("meads", "jax", config.langevin_chains, {})  # its authors' tuning


def test_samplers_command_bias_part_reports_truth_tables_and_ratios(tmp_path, capsys):
    # The quick path: banana (closed-form truth), our MALA against BlackJAX's MEADS, 8 chains; our
    # MALA with the cross-chain step (the flag reaches the rows and the report's tuning line).
    output = tmp_path / "samplers"
    code = main(["samplers", "--quick", "--bias-samplers", "mala", "meads", "--step-size-adaptation", "cross_chain",
                 "--output", str(output)])
    assert code == 0
    study = json.loads((output / "samplers.json").read_text())
    assert study["models"] == {}  # --quick runs the bias part only
    entry = study["bias"]["targets"]["banana"]
    assert [row["sampler"] for row in entry["rows"]] == ["mala", "meads"]
    for row in entry["rows"]:
        assert row["grads_per_chain"] == 81 and row["chains"] == 8  # 1 + 40 + 40 steps, one gradient each
        assert row["potentials_only_per_chain"] == 0
        assert np.isfinite(row["b2_max"]) and row["b2_avg"] <= row["b2_max"]
        assert row["converged"] == (row["rhat_max"] < 1.01 and row["grads_to_low_bias"] is not None)
    assert [line.split(":")[0] for line in entry["headline"]] == [
        "gradients to low bias", "ESS/s (compile included)", "ESS/s (compile excluded)", "ESS per 1000 gradients"]
    report = (output / "samplers.md").read_text()
    assert "Truth: closed form" in report and "authors recommend" in report
    assert "one step for all chains moved each warmup step by their mean acceptance" in report
    assert study["bias"]["config"]["step_size_adaptation"] == "cross_chain"
    # 40 + 40 steps on 8 chains do not converge: the report must say so beside each ratio.
    assert "not converged" in report and "NOT CONVERGED" in report
    assert (output / "samplers_bias.png").stat().st_size > 0


def test_bias_headline_says_even_ahead_or_behind():
    from ppl_ebm.studies.samplers_bias import headline

    def row(sampler, family, grads, ess):
        return {"sampler": sampler, "family": family, "converged": True, "grads_to_low_bias": grads,
                "ess_per_second": ess, "ess_per_second_no_compile": ess, "ess_per_kgrad": ess}

    lines = headline([row("mala-imh", "langevin", 501.0, 10.0), row("meads", "blackjax", 501.0, 40.0)])
    # Both unbiased at the first draw after the same warmup: a tie, not "ours ahead".
    assert lines[0].endswith("1.00x (even)") and lines[1].endswith("0.25x (ours behind by 4.00x)")
    lines = headline([row("mala-imh", "langevin", 250.0, 10.0), row("meads", "blackjax", 500.0, 5.0)])
    assert lines[0].endswith("2.00x (ours ahead)") and lines[1].endswith("2.00x (ours ahead)")


def test_study_commands_reject_bad_options(capsys):
    with pytest.raises(SystemExit):
        main(["mixing", "--steps", "25", "--every", "10"])
    assert "multiple of every" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["mixing", "--lag", "5"])  # mala-imh's cycle of 2 would pair a MALA step with a jump
    assert "must be a multiple of independence_every" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["samplers", "--models", "no-such-model"])
    assert "No model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["samplers", "--independence-every", "1"])
    assert "independence_every must be None or an int >= 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["samplers", "--bias-targets", "no-such-target"])
    assert "No model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["samplers", "--bias-chains", "0"])
    assert "chains must be a positive int" in capsys.readouterr().err


def test_plateau_step_finds_a_level_and_refuses_a_slope():
    from ppl_ebm.studies.mixing import plateau_step

    rng = np.random.default_rng(0)
    steps = np.arange(20, 1001, 20)
    # Falls until step 300, then flat with noise: the plateau starts near 300.
    level = np.where(steps < 300, 1.0 - (steps / 300) * 0.5, 0.5) + 0.002 * rng.standard_normal(steps.size)
    assert 260 <= plateau_step(steps, level) <= 320
    # Still falling at the last step (MALA's EMD on the NS-GAN, 0.75 -> 0.44): no plateau.
    falling = 0.75 - 0.31 * steps / 1000 + 0.002 * rng.standard_normal(steps.size)
    assert plateau_step(steps, falling) is None
    # Pure noise around a level: flat from the start.
    assert plateau_step(steps, 0.3 + 0.01 * rng.standard_normal(steps.size)) == 20
