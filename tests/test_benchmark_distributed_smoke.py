"""Smoke test of diagnostics/benchmark_distributed.py at its --quick sizes, one process (the
two-process path is the same command the distributed tests already run): the row's figures are
consistent with what it ran and the store it measured is deleted afterwards."""

from __future__ import annotations

import json

import pytest
from script_loader import load_script


def test_quick_benchmark_one_process(tmp_path):
    benchmark = load_script("diagnostics", "benchmark_distributed")
    result = benchmark.main(["--quick", "--processes", "1", "--output", str(tmp_path)])
    (row,) = result["rows"]
    settings = (row["target"], row["backend"], row["processes"], row["chains"], row["samples"], row["dim"])
    assert settings == ("latent", "jax", 1, 64, 20, 4)
    assert row["chain_steps_per_second"] == pytest.approx(64 * 20 / row["seconds"])
    # 64 x 20 x 4 float32 draws at least, written and then removed.
    assert row["store_bytes"] >= 64 * 20 * 4 * 4 and not (tmp_path / "jax_1.zarr").exists()
    assert row["peak_rss_bytes"] > 0 and row["throughput_vs_one_process"] == 1.0
    assert json.loads((tmp_path / "distributed.json").read_text())["rows"] == result["rows"]
