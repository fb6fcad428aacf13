"""Smoke test of diagnostics/benchmark_scaling.py at its --quick sizes (about 20 s, mostly JAX compiles)."""

from __future__ import annotations

import itertools
import json
import math
from script_loader import load_script


def test_benchmark_scaling_quick_writes_rows_json_and_plot(tmp_path, capsys, one_torch_thread):
    benchmark = load_script("diagnostics", "benchmark_scaling")
    output = tmp_path / "scaling.json"
    # One chain count, dim 2 only (its dims point reuses the chains point) and one tiny conv
    # point: every JAX point compiles afresh (1-3 s each), and the test must stay under ~30 s.
    returned = benchmark.main(["--quick", "--chains", "4", "--dims", "2", "--dims-chains", "4", "--output", str(output)])

    result = json.loads(output.read_text())
    assert result["config"]["quick"] is True
    keys = [(row["curve"], row["backend"], row["chains"]) for row in result["rows"]]
    expected = set(itertools.product(("chains", "dims"), ("torch", "jax"), (4,)))
    expected |= set(itertools.product(("conv",), ("torch", "jax"), (2,)))
    assert len(keys) == len(expected) and set(keys) == expected
    for row in result["rows"]:
        assert "skipped" not in row, row
        assert row["sampler"] == "ula" and row["num_warmup"] == 0
        for name in ("chain_steps_per_s", "seconds_per_chain_step", "sampling_seconds", "wall_seconds",
                     "flops_per_chain_step", "gflops_per_s"):
            assert math.isfinite(row[name]) and row[name] > 0, (name, row)
        assert math.isclose(row["seconds_per_chain_step"], 1.0 / row["chain_steps_per_s"])
        assert row["wall_seconds"] >= row["sampling_seconds"]
        assert row["nonfinite"] == 0
    # The conv net's chain-step costs more FLOPs than the toy MLP's.
    flops = {row["network"]: row["flops_per_chain_step"] for row in result["rows"]}
    assert flops["conv"] > flops["mlp"]
    for fact in ("torch", "jax", "torch_threads", "cpu_count", "loadavg_at_end"):
        assert fact in result["machine"]
    assert returned["rows"] == result["rows"]
    assert output.with_suffix(".png").stat().st_size > 0

    printed = capsys.readouterr().out
    assert "chain-steps/s" in printed and "us/chain-step" in printed
