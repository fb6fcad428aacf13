"""Smoke test of diagnostics/benchmark_kernels.py at its --quick sizes (about 20 s, mostly JAX compiles)."""

from __future__ import annotations

import itertools
import json
import math
from script_loader import load_script


def test_benchmark_quick_writes_one_row_per_case(tmp_path, capsys):
    benchmark = load_script("diagnostics", "benchmark_kernels")
    output = tmp_path / "bench.json"
    # One chain count: every JAX case compiles its programs afresh (about 1-2 s each), and the
    # test must stay under ~30 s on a busy 2-core machine.
    returned = benchmark.main(["--quick", "--chains", "8", "--output", str(output)])

    result = json.loads(output.read_text())
    assert result["config"]["quick"] is True
    chains = result["config"]["chains"]
    expected = set(itertools.product(("torch", "jax"), ("ula", "mala"), chains))
    keys = [(row["backend"], row["sampler"], row["chains"]) for row in result["rows"]]
    assert len(keys) == len(expected) and set(keys) == expected
    for row in result["rows"]:
        for name in ("ours_chain_steps_per_s", "bare_chain_steps_per_s", "ratio"):
            assert math.isfinite(row[name]) and row[name] > 0, (name, row)
        assert math.isclose(row["ratio"], row["ours_chain_steps_per_s"] / row["bare_chain_steps_per_s"])
        assert row["steps"] >= 2
        assert 0.0 <= row["ours_mean_acceptance"] <= 1.0 and 0.0 <= row["bare_move_rate"] <= 1.0
    assert result["min_ratio"] == min(row["ratio"] for row in result["rows"])
    assert result["goal_met"] == (result["min_ratio"] >= result["goal"])
    for fact in ("torch", "jax", "torch_threads", "cpu_count"):
        assert fact in result["machine"]
    assert returned["rows"] == result["rows"]

    printed = capsys.readouterr().out
    assert "ours/bare" in printed and "min ratio" in printed
