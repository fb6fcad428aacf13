"""Smoke tests of two diagnostics studies on shipped zoo entries, with checks that can fail:
``study_latent_ebm_draws`` reproduces a card's row as its seed 0 and gives other seeds their own
draws; ``study_egan_temperature`` at T = 1 is App. B.2's p_disc exactly (the egan table's KL), and
the biased mixture's shipped EGAN-Ent-NN energy is calibrated at the temperature its entropy
weight implies (T = 1.44 w), far better than at T = 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from script_loader import load_script


def test_latent_ebm_draws_reproduce_the_card_row(tmp_path):
    study = load_script("diagnostics", "study_latent_ebm_draws")
    assert study.main(["--models", "swissroll-flow-latent-ebm", "--seeds", "0", "1", "--output", str(tmp_path)]) == 0
    draws = json.loads((tmp_path / "draws.json").read_text())["swissroll-flow-latent-ebm"]
    from ppl_ebm.zoo.store import load_model

    config = load_model("swissroll-flow-latent-ebm").config
    assert draws["generator"][0] == pytest.approx(config["generator_metrics"]["emd"], rel=1e-4)
    assert draws["latent_ebm"][0] == pytest.approx(config["latent_ebm_metrics"]["emd"], rel=1e-4)
    assert draws["latent_ebm"][1] != draws["latent_ebm"][0]


def test_latent_ebm_draws_refuse_one_seed(tmp_path):
    study = load_script("diagnostics", "study_latent_ebm_draws")
    with pytest.raises(SystemExit):
        study.main(["--seeds", "0", "--output", str(tmp_path)])


def test_egan_temperature_one_is_the_papers_p_disc_and_the_biased_energy_is_calibrated_at_its_weight():
    from ppl_ebm.metrics.grid_kl import grid_kl
    from ppl_ebm.studies.egan_table import grid_densities

    study = load_script("diagnostics", "study_egan_temperature")
    name = "biased2gaussians-egan-ent-nn-ema"
    result = study.measure(name, scan=(0.2, 1.0))
    table = grid_densities(name, generated_points=1000)
    paper, implied = result["named"]["paper (T = 1)"], result["named"]["T = 1.44 w"]
    assert paper["kl"] == pytest.approx(grid_kl(table.disc, table.data), rel=1e-9)
    assert implied["T"] == pytest.approx(1.44 * 0.15)
    assert implied["kl"] < paper["kl"] / 10
    assert abs(implied["small_weight"] - 0.1) < 0.03 < abs(paper["small_weight"] - 0.1)
    assert np.isfinite([r["kl"] for r in result["scan"]]).all()


def test_egan_seeds_trains_each_seed_once_and_refuses_other_settings(tmp_path):
    study = load_script("diagnostics", "study_egan_seeds")
    argv = ["--dataset", "biased2gaussians", "--seeds", "0", "1", "--iterations", "4", "--output", str(tmp_path)]
    assert study.main(argv) == 0
    rows = json.loads((tmp_path / "biased2gaussians-egan-ent-nn-seeds.json").read_text())
    assert [r["seed"] for r in rows] == [0, 1]
    assert rows[0]["paper (T = 1)"]["kl"] != rows[1]["paper (T = 1)"]["kl"]  # two trainings, not one
    assert all(0 <= r["paper (T = 1)"]["small_weight"] <= 1 for r in rows)
    weights = tmp_path / "biased2gaussians-egan-ent-nn-seed0" / "critic.safetensors"
    trained_at = weights.stat().st_mtime_ns
    assert study.main(argv) == 0  # both seeds found: nothing retrained
    assert weights.stat().st_mtime_ns == trained_at
    with pytest.raises(SystemExit):  # a folder trained with other settings is refused, not reused
        study.main([*argv[:-4], "--iterations", "6", "--output", str(tmp_path)])
    seed1 = tmp_path / "biased2gaussians-egan-ent-nn-seed1"
    assert study.main([*argv, "--record-in-card", str(seed1)]) == 0
    card = (seed1 / "MODEL_CARD.md").read_text()
    assert "## Across training seeds" in card and "| 1 | " in card and "## Files" in card
    with pytest.raises(SystemExit):  # a card of a model that is not one of the seeds is refused first
        study.main([*argv[:2], "--seeds", "0", "--iterations", "4", "--output", str(tmp_path),
                    "--record-in-card", str(seed1)])
