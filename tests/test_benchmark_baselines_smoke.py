"""Smoke test of diagnostics/benchmark_baselines.py at its --quick sizes (MALA and MEADS only:
each NumPyro or ChEES program adds seconds of compiling on a busy 2-core machine)."""

from __future__ import annotations

import json
import math

from script_loader import load_script


def test_benchmark_quick_writes_rows_and_ratios(tmp_path):
    benchmark = load_script("diagnostics", "benchmark_baselines")
    output = tmp_path / "baselines.json"
    returned = benchmark.main(["--quick", "--samplers", "mala", "meads", "--output", str(output)])
    written = json.loads(output.read_text())
    assert [row["sampler"] for row in written["rows"]] == ["mala", "meads"]
    for row in written["rows"]:
        # 8 chains x (1 + 40 + 40) steps, one gradient a step for both.
        assert row["grads"] == 8 * 81 and row["ess_per_kgrad"] > 0 and math.isfinite(row["b2_max"])
    assert written["ratios"][0].startswith("banana: ESS/grad vs mala")
    assert returned["rows"] == written["rows"]
    assert (tmp_path / "baselines_banana.png").stat().st_size > 0
