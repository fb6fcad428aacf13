"""MALA with interleaved independence steps from N(0, I) (``independence_every``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from problems import assert_moments, assert_same_moments, two_mode_problem

import ppl_ebm
from ppl_ebm.ppl import numpyro_kernels, pyro_kernels
from ppl_ebm.diagnostics.summary import summarize
from ppl_ebm.kernels.cycle import phase_counts

RUN = dict(num_chains=256, num_warmup=300, num_samples=400, seed=5, progress_bar=False)


@pytest.fixture(scope="module")
def two_modes():
    return two_mode_problem()


@pytest.fixture(scope="module")
def runs(two_modes):
    cache = {}

    def get(backend, **options):
        key = (backend, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = ppl_ebm.sample(two_modes[0], "mala", backend, **RUN, **options)
        return cache[key]

    return get


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_independence_steps_reach_the_mode_weights_mala_cannot(two_modes, runs, backend):
    ebm, mean, covariance = two_modes
    # Prior starts split the chains about evenly between the modes, and MALA keeps them there:
    # the 3:1 weights are missed by many MCSE (this is the check's power). Without a mass
    # matrix: the default diagonal one, pooled over chains in both modes, learns their distance
    # as a variance (2.1 against 0.13 across them); its wider steps move some chains between the
    # modes, mostly in warmup (R-hat still ~1.56), and the weights are then missed by < 4.5 MCSE.
    plain = runs(backend, mass_matrix="none")
    with pytest.raises(AssertionError):
        assert_moments(plain.latents, mean, covariance, f"mala/{backend}")
    result = runs(backend, independence_every=2)
    assert_moments(result.latents, mean, covariance, f"mala+independence/{backend}")
    # Stuck chains disagree (R-hat ~2); jumping ones agree up to their short length: each
    # chain's ~20 effective draws put rank R-hat near sqrt(1 + 1/20) ~ 1.03, not below 1.01.
    assert summarize(plain)["rhat_max"] > 1.5
    assert summarize(result)["rhat_max"] < 1.1
    accepted = result.stats["independence_acceptance"]
    assert accepted.shape == (RUN["num_chains"],) and 0.05 < accepted.mean() < 1
    # Adaptation sees the Langevin steps only, so their acceptance still sits near its target.
    assert abs(result.stats["acceptance"].mean() - 0.574) < 0.05


@pytest.mark.usefixtures("one_torch_thread")  # i-SIR's small per-step tensors: threads only wait
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("sampler", ["isir", "ex2mcmc"])
def test_global_local_samplers_reach_the_mode_weights(two_modes, sampler, backend):
    # i-SIR (10 particles from the prior) and Ex2MCMC (i-SIR, then 3 MALA steps) on the same
    # target and budget as MALA above, which misses the 3:1 weights by many MCSE.
    ebm, mean, covariance = two_modes
    result = ppl_ebm.sample(ebm, sampler, backend, **RUN)
    assert_moments(result.latents, mean, covariance, f"{sampler}/{backend}")
    assert summarize(result)["rhat_max"] < 1.1
    if sampler == "isir":
        # No step, no gradient: the acceptance is the chance a fresh particle is kept.
        assert 0.05 < result.stats["acceptance"].mean() < 1 and np.isnan(result.stats["step_size"]).all()
        assert "independence_acceptance" not in result.stats
    else:
        assert 0.05 < result.stats["independence_acceptance"].mean() < 1
        assert abs(result.stats["acceptance"].mean() - 0.574) < 0.05


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_independence_steps_keep_the_gaussian_target(backend):
    problem = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0)
    result = ppl_ebm.sample(problem.ebm, "mala", backend, independence_every=3, **RUN)
    assert_moments(result.latents, problem.mean, problem.covariance, f"mala+independence/{backend}")
    assert "independence_acceptance" not in ppl_ebm.sample(
        problem.ebm, "mala", backend, num_chains=2, num_warmup=2, num_samples=2, progress_bar=False
    ).stats


def test_torch_and_jax_agree_and_seeds_repeat(two_modes, runs):
    assert_same_moments(
        runs("torch", independence_every=2).latents, runs("jax", independence_every=2).latents, "backends"
    )
    for backend in ("torch", "jax"):
        options = dict(num_chains=8, num_warmup=10, num_samples=20, progress_bar=False, independence_every=3)
        first = ppl_ebm.sample(two_modes[0], "mala", backend, seed=11, **options)
        second = ppl_ebm.sample(two_modes[0], "mala", backend, seed=11, **options)
        np.testing.assert_array_equal(first.latents, second.latents)
        np.testing.assert_array_equal(first.stats["independence_acceptance"], second.stats["independence_acceptance"])


def test_phase_counts_match_counting():
    for num_warmup in (0, 1, 7, 10):
        for every in (None, 2, 3, 5):
            mala = independence = 0
            for i in range(40):
                if i == num_warmup:
                    mala = independence = 0
                if every is not None and (i + 1) % every == 0:
                    independence += 1
                else:
                    mala += 1
                assert phase_counts(i, num_warmup, every) == (mala, independence), (i, num_warmup, every)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_warmup_ends_on_the_averaged_step_when_its_last_step_is_an_independence_step(backend):
    # 10 warmup steps with every=2: step 9 (0-based) is an independence step, after which
    # the adapted step must still switch to the dual-averaging average (as NumPyro and Stan do).
    problem = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0)
    start = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    if backend == "torch":
        kernel = pyro_kernels.MALA(potential_fn=problem.ebm.potential, num_chains=5, seed=0, independence_every=2)
        state = kernel.init_state(kernel._rng, 10, torch.from_numpy(start), (), {})
    else:
        import jax

        potential = problem.ebm.to_jax().potential
        kernel = numpyro_kernels.MALA(potential_fn=potential, num_chains=5, independence_every=2)
        state = kernel.init_state(jax.random.key(0), 10, start, (), {})
    for _ in range(10):
        before = np.asarray(state.step_size)
        state = kernel.transition(state)
    averaged = np.exp(np.asarray(state.sampler.adaptation.log_step_size_average))
    np.testing.assert_allclose(np.asarray(state.step_size), averaged, rtol=1e-6)
    assert not np.allclose(before, averaged)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("bad", [1, 0, -2, 2.5, True, "2"])
def test_bad_independence_every_is_refused(bad, backend):
    problem = ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=2, seed=0)
    with pytest.raises(ValueError, match="independence_every must be None or an int >= 2"):
        ppl_ebm.sample(problem.ebm, "mala", backend, num_chains=2, num_warmup=1, num_samples=1,
                       progress_bar=False, independence_every=bad)
    with pytest.raises(ValueError, match="Unknown option"):
        ppl_ebm.sample(problem.ebm, "ula", backend, num_chains=2, num_samples=1, independence_every=2)
