"""Smoke tests of diagnostics/benchmark_diagnostics.py and benchmark_streaming.py at --quick sizes."""

from __future__ import annotations

import json
from script_loader import load_script


def test_diagnostics_benchmark_quick(tmp_path):
    output = tmp_path / "diag.json"
    load_script("diagnostics", "benchmark_diagnostics").main(["--quick", "--workdir", str(tmp_path), "--output", str(output)])
    record = json.loads(output.read_text())
    assert record["shape"] == [200, 100, 8]
    assert max(record["equality_max_relative_difference"].values()) < 1e-12
    assert record["fast_seconds"] > 0 and record["peak_rss_gb"] > 0
    assert not list(tmp_path.glob("*.npy"))  # the draws file is removed without --keep


def test_streaming_benchmark_quick(tmp_path):
    output = tmp_path / "stream.json"
    load_script("diagnostics", "benchmark_streaming").main(["--quick", "--workdir", str(tmp_path), "--output", str(output)])
    runs = json.loads(output.read_text())["runs"]
    assert runs["stream"]["latents_type"] == "memmap" and runs["memory"]["latents_type"] == "ndarray"
    assert runs["stream"]["last_draw"] == runs["memory"]["last_draw"]  # same chains either way
