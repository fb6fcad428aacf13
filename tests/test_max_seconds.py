"""sample(..., max_seconds=...): a wall-clock budget for sampling that keeps the draws made so
far, the same number for every chain, and equal to the first draws of the uncut run."""

from __future__ import annotations

import time

import numpy as np
import pytest

import ppl_ebm


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=2)


# (sampler, backend, chains, draws asked): enough draws that the budget, not the count, ends the run.
CASES = [
    ("ula", "torch", 8, 200_000),
    ("mala", "jax", 8, 200_000),
    ("nuts", "torch", 2, 100_000),
    ("hmc", "jax", 3, 100_000),
]


@pytest.mark.parametrize("sampler, backend, chains, draws", CASES)
def test_budget_cuts_the_run_and_keeps_a_prefix(problem, sampler, backend, chains, draws):
    options = {"num_steps": 4, "trajectory_length": None} if sampler == "hmc" else {}
    # The budget also bounds set-up and warmup, so a fixed 0.5 s left no draws at all when the
    # shared machine was slow: the budget is the time a 10-draw run takes here and now (its second
    # call, once JAX has compiled it: the first call's compile would leave time for every draw), plus 0.5 s.
    for _ in range(2):
        start = time.perf_counter()
        ppl_ebm.sample(problem.ebm, sampler, backend, num_chains=chains, num_warmup=20, num_samples=10,
                       seed=3, progress_bar=False, **options)
        budget = time.perf_counter() - start + 0.5
    cut = ppl_ebm.sample(problem.ebm, sampler, backend, num_chains=chains, num_warmup=20, num_samples=draws,
                         seed=3, progress_bar=False, max_seconds=budget, **options)
    kept = cut.latents.shape[1]
    assert cut.stats["budget_stopped"]
    assert 0 < kept < draws and cut.latents.shape[0] == chains
    # The budget is checked between chunks / iterations / segments: overshoot is small.
    assert cut.stats["sampling_seconds"] < budget + 5.0
    full = ppl_ebm.sample(problem.ebm, sampler, backend, num_chains=chains, num_warmup=20, num_samples=kept,
                          seed=3, progress_bar=False, **options)
    assert not full.stats["budget_stopped"]
    np.testing.assert_array_equal(cut.latents, full.latents)


def test_budget_not_reached_changes_nothing(problem):
    kwargs = dict(num_chains=4, num_warmup=10, num_samples=30, seed=1, progress_bar=False)
    plain = ppl_ebm.sample(problem.ebm, "mala", "torch", **kwargs)
    budget = ppl_ebm.sample(problem.ebm, "mala", "torch", max_seconds=600, **kwargs)
    assert not budget.stats["budget_stopped"]
    np.testing.assert_array_equal(plain.latents, budget.latents)


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_seconds=0), "max_seconds must be a number of seconds > 0"),
    (dict(max_seconds=True), "max_seconds must be a number of seconds > 0"),
    (dict(max_seconds=5, until="converged"), "cannot be combined"),
    (dict(max_seconds=5, draws_dir="unused"), "cannot be combined"),
])
def test_bad_budget_refused_before_sampling(problem, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ppl_ebm.sample(problem.ebm, "mala", "torch", num_chains=2, num_warmup=2, num_samples=4,
                       progress_bar=False, **kwargs)
