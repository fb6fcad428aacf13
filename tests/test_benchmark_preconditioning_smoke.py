"""Smoke test of diagnostics/benchmark_preconditioning.py at its --quick sizes (MALA only: NUTS
adds ~12 s of compiling on a busy 2-core machine)."""

from __future__ import annotations

import json

from script_loader import load_script


def test_benchmark_quick_separates_none_from_diag(tmp_path):
    benchmark = load_script("diagnostics", "benchmark_preconditioning")
    output = tmp_path / "precond.json"
    returned = benchmark.main(["--quick", "--samplers", "none", "diag", "--output", str(output)])
    written = json.loads(output.read_text())
    assert [row["sampler"] for row in written["rows"]] == ["mala none", "mala diag"]
    none, diag = written["rows"]
    assert diag["recovered"] and not none["recovered"]
    assert diag["max_abs_z_sd"] < none["max_abs_z_sd"]
    assert len(written["truth_sd"]) == 10 and returned["rows"] == written["rows"]
