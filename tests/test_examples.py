"""Every example script runs at toy size (the inverse problem is checked in test_front_door)."""

from __future__ import annotations

import numpy as np
import pytest
from script_loader import load_script


@pytest.mark.parametrize("name", ["zoo_pyro", "zoo_numpyro"])
def test_zoo_examples_run(name, capsys):
    arguments = ["--warmup", "20", "--samples", "30", "--mala-chains", "16"]
    if name == "zoo_numpyro":
        arguments += ["--nuts-chains", "2"]
    results = load_script("examples", name).main(arguments)
    assert len(results) == 2
    out = capsys.readouterr().out
    assert "ess_bulk_min" in out
    mala = results["our MALA"]
    assert mala.latents.shape == (16, 30, 2) and np.isfinite(mala.latents).all()
