"""Every example script runs at toy size (the inverse problem is checked in test_front_door)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["zoo_pyro", "zoo_numpyro"])
def test_zoo_examples_run(name, capsys):
    arguments = ["--warmup", "20", "--samples", "30", "--mala-chains", "16"]
    if name == "zoo_numpyro":
        arguments += ["--nuts-chains", "2"]
    results = _load(name).main(arguments)
    assert len(results) == 2
    out = capsys.readouterr().out
    assert "ess_bulk_min" in out
    mala = results["our MALA"]
    assert mala.latents.shape == (16, 30, 2) and np.isfinite(mala.latents).all()
