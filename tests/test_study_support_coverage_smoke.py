"""Smoke test of diagnostics/study_support_coverage.py at toy sizes, with checks that can fail: the
fraction of data points the generator misses cannot grow with the radius (a ball holds its
smaller balls) and falls as the generator draws more points; the ratio quantiles are ordered."""

from __future__ import annotations

import json

import numpy as np
import pytest
from script_loader import load_script


def test_quick_study_writes_monotone_rows_and_plot(tmp_path):
    study = load_script("diagnostics", "study_support_coverage")
    assert study.main(["--models", "swissroll-wgan-gp", "--quick", "--output", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "support_coverage.json").read_text())["results"][0]
    rows = result["rows"]
    assert [row["radius_noise_stds"] for row in rows] == [0.5, 1.0, 2.0]
    assert result["noise_std"] == pytest.approx(0.25 / 7.5)
    uncovered = [row["uncovered"] for row in rows]
    assert uncovered[0] >= uncovered[1] >= uncovered[2]
    assert all(row["ratio_p50"] <= row["ratio_p75"] <= row["ratio_p95"] for row in rows)
    assert (tmp_path / "support_coverage.png").stat().st_size > 0


def test_more_generator_points_cover_more():
    study = load_script("diagnostics", "study_support_coverage")
    few = study.measure("swissroll-wgan-gp", [1.0], generator_points=2000, data_points=1000, seed=0)
    many = study.measure("swissroll-wgan-gp", [1.0], generator_points=50_000, data_points=1000, seed=0)
    assert many["rows"][0]["uncovered"] < few["rows"][0]["uncovered"]


def test_noise_std_is_known_for_the_toys_and_refused_otherwise():
    study = load_script("diagnostics", "study_support_coverage")
    assert study.noise_std("25gaussians_gulrajani") == pytest.approx(0.05 / np.sqrt(8), rel=1e-3)
    assert study.noise_std("25gaussians") == pytest.approx(0.1, rel=1e-12)
    with pytest.raises(ValueError, match="No noise scale"):
        study.noise_std("twospirals")


def test_bad_radii_refused(tmp_path):
    study = load_script("diagnostics", "study_support_coverage")
    with pytest.raises(SystemExit):
        study.main(["--radii", "0", "--output", str(tmp_path)])
