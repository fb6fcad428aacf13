"""Every example script runs at toy size (the inverse problem is checked in test_front_door)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from script_loader import load_script


@pytest.mark.parametrize("name", ["zoo_pyro", "zoo_numpyro"])
def test_zoo_examples_run(name, capsys):
    arguments = ["--warmup", "20", "--samples", "30", "--mala-chains", "16"]
    if name == "zoo_numpyro":
        arguments += ["--nuts-chains", "2"]
    else:  # Pyro's NUTS in Python: deep trees of a short warmup cost a minute at depth 10
        arguments += ["--max-tree-depth", "5"]
    results = load_script("examples", name).main(arguments)
    assert len(results) == 2
    out = capsys.readouterr().out
    assert "ess_bulk_min" in out
    mala = results["our MALA"]
    assert mala.latents.shape == (16, 30, 2) and np.isfinite(mala.latents).all()


def test_until_converged_example_writes_its_history_and_plot(tmp_path, capsys):
    # Toy size: two blocks at most, so it may stop either way; the record must say which.
    output = tmp_path / "until"
    result = load_script("examples", "until_converged").main(
        ["--model", "25gaussians-nsgan", "--chains", "16", "--warmup", "50", "--block", "50",
         "--max-samples", "100", "--output", str(output), "--no-progress"])
    record = json.loads((output / "history.json").read_text())
    assert record["converged"] == result.stats["converged"]
    draws = [row["draws"] for row in record["history"]]
    assert draws in ([50], [50, 100]) and (record["converged"] or draws == [50, 100])
    assert result.latents.shape == (16, record["history"][-1]["draws"], 2)
    assert (output / "rhat_ess.png").stat().st_size > 0
    assert "draws/chain: R-hat max" in capsys.readouterr().out
