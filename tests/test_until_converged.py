"""``sample(..., until="converged")`` on the closed-form Gaussian target: it stops once R-hat
and ESS reach their targets (checked independently with ArviZ), its draws have the right
moments, and it reports when the budget runs out first."""

from __future__ import annotations

import numpy as np
import pytest
from problems import assert_moments

import ppl_ebm
from ppl_ebm.diagnostics import arviz_compat

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_mala_runs_until_rhat_and_ess_are_met(problem, backend):
    result = ppl_ebm.sample(problem.ebm, "mala", backend, num_chains=8, num_warmup=200, num_samples=100, seed=1,
                            until="converged", target_rhat=1.01, target_ess=600, max_samples=5000,
                            progress_bar=False)
    stats = result.stats
    assert stats["converged"]
    draws = result.latents
    assert draws.shape[1] % 100 == 0 and stats["steps_taken"] == 200 + draws.shape[1]
    # Independently of the stopping rule's own bookkeeping: ArviZ on the returned draws.
    assert arviz_compat.rhat(draws).max() < 1.01
    assert min(arviz_compat.ess(draws, method="bulk").min(), arviz_compat.ess(draws, method="tail").min()) >= 600
    # It stopped at the first block that met the targets, not later.
    history = stats["convergence_history"]
    assert all(h["rhat_max"] >= 1.01 or min(h["ess_bulk_min"], h["ess_tail_min"]) < 600 for h in history[:-1])
    assert stats["grad_evals"].sum() >= 8 * (200 + draws.shape[1])
    assert_moments(draws, problem.mean, problem.covariance, f"until converged {backend}")


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("sampler, options", [("ula", {"step_size": 0.05, "decay_every": 60}), ("mala-imh", {}),
                                              ("isir", {})])
def test_continuing_gives_the_draws_of_one_long_run(problem, backend, sampler, options):
    # The driver continues the same chains (positions, adapted steps, PRNG state, iteration
    # count: the decay schedule and the independence cycle go on) on the same program, so three
    # blocks of 40 draws are one run of 120, bit for bit.
    run = dict(num_chains=6, num_warmup=50, seed=2, progress_bar=False, **options)
    blocks = ppl_ebm.sample(problem.ebm, sampler, backend, num_samples=40, until="converged", target_ess=1e9,
                            max_samples=120, **run)
    assert not blocks.stats["converged"] and blocks.latents.shape[1] == 120
    one_run = ppl_ebm.sample(problem.ebm, sampler, backend, num_samples=120, **run)
    np.testing.assert_array_equal(blocks.latents, one_run.latents)
    for key in ("acceptance", "step_size", "grad_evals", "nonfinite"):
        np.testing.assert_array_equal(blocks.stats[key], one_run.stats[key], err_msg=key)
    assert ("potential_evals" in blocks.stats) == (sampler == "isir")
    if sampler == "isir":  # the evaluations of one long run, counted from the state
        np.testing.assert_array_equal(blocks.stats["potential_evals"], one_run.stats["potential_evals"])


def test_budget_exhausted_is_reported(problem):
    result = ppl_ebm.sample(problem.ebm, "ula", "jax", num_chains=4, num_warmup=10, num_samples=50, seed=0,
                            step_size=0.05, until="converged", target_ess=1e9, max_samples=150, progress_bar=False)
    assert not result.stats["converged"] and result.latents.shape[1] == 150
    assert len(result.stats["convergence_history"]) == 3


def test_until_rejects_what_it_cannot_do(problem):
    with pytest.raises(ValueError, match="until must be"):
        ppl_ebm.sample(problem.ebm, "mala", "jax", until="forever")
    with pytest.raises(ValueError, match="continues our kernels' chains"):
        ppl_ebm.sample(problem.ebm, "nuts", "jax", until="converged")
    with pytest.raises(ValueError, match="max_samples"):
        ppl_ebm.sample(problem.ebm, "mala", "jax", num_samples=100, until="converged", max_samples=50)
