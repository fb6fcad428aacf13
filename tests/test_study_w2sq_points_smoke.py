"""Smoke test of diagnostics/study_w2sq_points.py at its --quick sizes, with a check that can fail:
the floor and generator rows are paired (same data draws), so the paired excess is the difference
of the two means, and the floor falls as n grows (Swiss Roll, 50 -> 400 points: the expected
W2^2 of two fresh samples falls roughly like 1/sqrt(n), far beyond the repeats' spread)."""

from __future__ import annotations

import json

import pytest
from script_loader import load_script


def test_quick_study_writes_paired_rows_and_plot(tmp_path):
    study = load_script("diagnostics", "study_w2sq_points")
    assert study.main(["--models", "swissroll-wgan-gp", "--points", "50", "400", "--repeats", "4",
                       "--output", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "w2sq_points.json").read_text())["rows"]
    assert [row["points"] for row in rows] == [50, 400]
    for row in rows:
        assert row["generator_minus_floor_mean"] == pytest.approx(row["generator_mean"] - row["floor_mean"], abs=1e-9)
        assert row["goal"] == pytest.approx(0.84 * row["generator_mean"])
    assert rows[1]["floor_mean"] < rows[0]["floor_mean"] - rows[0]["floor_std"]
    assert (tmp_path / "w2sq_points.png").stat().st_size > 0


def test_bad_points_refused(tmp_path):
    study = load_script("diagnostics", "study_w2sq_points")
    with pytest.raises(SystemExit):
        study.main(["--points", "1", "--output", str(tmp_path)])
