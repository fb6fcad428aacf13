"""Smoke test of diagnostics/benchmark_gpu.py (the DDLS CIFAR protocol's cost) at its --quick
sizes on the CPU: the batches of chains, the row fields and the JSON. Its figures come from a
GPU machine (the resolve notes); here only that the script runs and adds up."""

from __future__ import annotations

import json
import math
from script_loader import load_script


def test_benchmark_gpu_quick_on_the_cpu(tmp_path, capsys, one_torch_thread):
    benchmark = load_script("diagnostics", "benchmark_gpu")
    output = tmp_path / "gpu.json"
    returned = benchmark.main(["--quick", "--device", "cpu", "--precision", "fp32", "--batch-sweep", "2", "4",
                               "--sweep-steps", "2", "--output", str(output)])

    result = json.loads(output.read_text())
    assert returned["rows"] == result["rows"]
    assert {(row["backend"], row["sampler"]) for row in result["rows"]} == {
        (backend, sampler) for backend in ("torch", "jax") for sampler in ("ula", "mala")}
    for row in result["rows"]:
        # --quick: 8 chains, 3 steps each, every chain's final state finite.
        assert (row["chains"], row["steps"]) == (8, 3)
        assert row["final_states_finite"] and row["nonfinite"] == 0
        assert math.isclose(row["chain_steps_per_s"], 8 * 3 / row["sampling_seconds"])
        assert math.isclose(row["tflops_per_s"], row["flops_per_chain_step"] * row["chain_steps_per_s"] / 1e12)
        assert row["wall_seconds"] >= row["sampling_seconds"] > 0
        assert row["peak_memory_gib"] is None  # the CPU has no device allocator to read
        # The sweep measured both sizes and the protocol ran at the faster one.
        sweep = {point["batch"]: point["chain_steps_per_s"] for point in row["batch_sweep"]}
        assert set(sweep) == {2, 4} and all(rate > 0 for rate in sweep.values())
        assert row["chain_batch"] == max(sweep, key=sweep.get)
        assert row["batches"] == 8 // row["chain_batch"]
    assert set(result["matmul_peak_gflops"]) == {"torch", "jax"}
    assert "chain-steps/s" in capsys.readouterr().out


def test_benchmark_gpu_refuses_a_missing_gpu_before_any_work(tmp_path):
    import pytest
    import torch

    benchmark = load_script("diagnostics", "benchmark_gpu")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="device='cpu'"):
        benchmark.main(["--quick", "--output", str(tmp_path / "gpu.json")])
