"""Every config refuses non-positive, non-integer and boolean counts with the same message."""

from __future__ import annotations

import pytest

from ppl_ebm.training.critic_tuning import FineTuneConfig
from ppl_ebm.studies.mixing import MixingConfig
from ppl_ebm.studies.samplers import SamplerStudyConfig
from ppl_ebm.studies.compare import CompareConfig
from ppl_ebm.training.gan import TrainingConfig


@pytest.mark.parametrize("make, field", [
    (lambda **kw: TrainingConfig(dataset="25gaussians", **kw), "iterations"),
    (FineTuneConfig, "steps"),
    (CompareConfig, "num_samples"),
    (MixingConfig, "pairs"),
    (SamplerStudyConfig, "max_draws"),
])
@pytest.mark.parametrize("bad", [0, -3, 2.5, True, None])
def test_counts_must_be_positive_ints(make, field, bad):
    config = make(**{field: bad})
    with pytest.raises(ValueError, match=f"{field} must be a positive int, got {bad!r}"):
        config.validate()
