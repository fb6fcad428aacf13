"""Every sampler x backend against the closed-form Gaussian latent target."""

from __future__ import annotations

import numpy as np
import pytest
from problems import assert_moments, assert_same_moments, ula_stationary_covariance

import ppl_ebm
from ppl_ebm.kernels.registry import get_sampler, sampler_names

SAMPLER_RUNS = {
    # Langevin kernels: many short chains, as DDLS runs them.
    "ula": dict(num_chains=256, num_warmup=200, num_samples=400),
    "mala": dict(num_chains=256, num_warmup=300, num_samples=400),
    # The PPLs' NUTS/HMC: few long chains (Pyro runs them one after another).
    "nuts": dict(num_chains=2, num_warmup=200, num_samples=400),
    "hmc": dict(num_chains=2, num_warmup=200, num_samples=400),
}
# Every registered sampler joins: our kernels (mala-imh, isir, ex2mcmc, ...) run as MALA does.
for _name in sampler_names(family="langevin"):
    SAMPLER_RUNS.setdefault(_name, SAMPLER_RUNS["mala"])
# BlackJAX's many-chain samplers (JAX only): cross-chain tuning wants a few dozen chains.
for _name in sampler_names(family="blackjax"):
    SAMPLER_RUNS.setdefault(_name, dict(num_chains=64, num_warmup=300, num_samples=400))
OURS = sampler_names(family="langevin")
# Every sampler but ULA leaves the target exactly invariant.
EXACT = tuple(name for name in sampler_names() if get_sampler(name).kernel != "ula")
# (sampler, backend) pairs each exact sampler runs on.
EXACT_RUNS = tuple((name, backend) for name in EXACT for backend in get_sampler(name).backends)


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0)


@pytest.fixture(scope="module")
def runs(problem):
    cache = {}

    def get(sampler, backend, **options):
        key = (sampler, backend, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = ppl_ebm.sample(
                problem.ebm, sampler, backend, seed=3, progress_bar=False, **SAMPLER_RUNS[sampler], **options
            )
        return cache[key]

    return get


# Small tensors: torch's intra-op threads only wait on each other (flex2mcmc's flow, many small
# ops a step, ran 82 s with 2 threads on 2 busy cores).
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("sampler, backend", EXACT_RUNS)
def test_exact_samplers_match_closed_form(problem, runs, sampler, backend):
    result = runs(sampler, backend)
    assert result.latents.shape == (SAMPLER_RUNS[sampler]["num_chains"], 400, 3)
    assert_moments(result.latents, problem.mean, problem.covariance, f"{sampler}/{backend}")
    # i-SIR takes no gradient: its cost is potential evaluations.
    assert np.all(result.stats.get("potential_evals", result.stats["grad_evals"]) > 0)
    assert result.stats["wall_seconds"] > 0


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_ula_matches_its_exact_biased_stationary_law(problem, runs, backend):
    # ULA on a Gaussian has a known Gaussian stationary law: same mean, covariance inflated by
    # (I - step P / 4)^-1. At step 0.3 the bias is many MCSE, so the check has power.
    step = 0.3
    result = runs("ula", backend, step_size=step)
    biased = ula_stationary_covariance(problem.covariance, step, np.sqrt(step))
    assert_moments(result.latents, problem.mean, biased, f"ula/{backend}")
    with pytest.raises(AssertionError):
        assert_moments(result.latents, problem.mean, problem.covariance, "ula vs unbiased")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_ula_bias_shrinks_with_step_and_noise_scale_is_separate(problem, runs, backend):
    true_sd = np.sqrt(np.diag(problem.covariance))
    errors = []
    for step in (0.3, 0.1, 0.03):
        sd = runs("ula", backend, step_size=step).latents.std(axis=(0, 1))
        errors.append(np.abs(sd - true_sd).max())
    assert errors[0] > errors[1] > errors[2]
    # DDLS sets the noise apart from the step (0.01 with std 0.1 there); a colder noise gives
    # the exact colder law noise^2 (step P - step^2 P^2 / 4)^-1.
    step, noise = 0.1, 0.2
    result = runs("ula", backend, step_size=step, noise_scale=noise)
    expected = ula_stationary_covariance(problem.covariance, step, noise)
    assert_moments(result.latents, problem.mean, expected, f"ula noise/{backend}")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_mala_adapted_acceptance_near_target(runs, backend):
    result = runs("mala", backend)
    # Dual averaging over 300 warmup steps: each chain's post-warmup acceptance is a mean of
    # 400 correlated Bernoulli probabilities; the mean over 256 chains sits near the target.
    assert abs(result.stats["acceptance"].mean() - 0.574) < 0.05
    assert np.all(result.stats["nonfinite"] == 0)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cross_chain_step_after_a_twenty_step_warmup(problem, backend):
    # mala-imh's 20-step warmup makes 10 MALA updates; the cross-chain scheme lands every chain's
    # one step near 0.574 from a start ~1000x too small (1e-3; it ends near 1.7), and the draws keep
    # the closed form.
    result = ppl_ebm.sample(problem.ebm, "mala-imh", backend, num_chains=512, num_warmup=20, num_samples=200,
                            seed=5, progress_bar=False, step_size=1e-3, step_size_adaptation="cross_chain")
    steps = result.stats["step_size"]
    assert np.all(steps == steps[0])
    assert abs(result.stats["acceptance"].mean() - 0.574) < 0.05
    assert_moments(result.latents, problem.mean, problem.covariance, f"mala-imh cross_chain/{backend}")


@pytest.mark.parametrize("sampler", OURS)
def test_torch_and_jax_kernels_agree(runs, sampler):
    assert_same_moments(runs(sampler, "torch").latents, runs(sampler, "jax").latents, sampler)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("sampler", OURS)
def test_same_seed_same_draws(problem, runs, sampler, backend):
    if backend == "jax":
        # The closed-form runs' settings: the calls reuse their compiled programs, so the test pays
        # for sampling only (compiling was 10-35 s a sampler, sampling 0.1-5 s).
        extra = {"step_size": 0.3} if sampler == "ula" else {}  # a ULA run the tests below make
        options, seed = {**SAMPLER_RUNS[sampler], **extra}, 3
        first = runs(sampler, backend, **extra)
    else:
        options, seed = dict(num_chains=8, num_warmup=10, num_samples=20), 11
        first = ppl_ebm.sample(problem.ebm, sampler, backend, seed=seed, progress_bar=False, **options)
    second = ppl_ebm.sample(problem.ebm, sampler, backend, seed=seed, progress_bar=False, **options)
    other = ppl_ebm.sample(problem.ebm, sampler, backend, seed=seed + 1, progress_bar=False, **options)
    np.testing.assert_array_equal(first.latents, second.latents)
    assert not np.array_equal(first.latents, other.latents)


def test_ddls_schedule_and_generated_samples(problem):
    # DDLS App. B.2: step 0.01, noise std 0.1, x0.1 every 200 steps.
    result = ppl_ebm.sample(
        problem.ebm, "ula", "torch", num_chains=16, num_warmup=0, num_samples=450, seed=0,
        step_size=0.01, noise_scale=0.1, decay_every=200, progress_bar=False, return_generated=True,
    )
    np.testing.assert_allclose(result.stats["step_size"], 1e-4, rtol=1e-6)
    assert result.generated.shape == (16, 450, 4)
    weight = problem.ebm.generator.weight.detach().numpy()
    bias = problem.ebm.generator.bias.detach().numpy()
    np.testing.assert_allclose(result.generated, result.latents @ weight.T + bias, rtol=1e-5, atol=1e-5)


def test_mams_tunes_on_a_subset_and_burns_every_chain_in(problem):
    """MAMS runs BlackJAX's tuner on ``tuning_chains`` chains only, then burns every chain in
    with the pooled kernel: chains started far out (12 sd) must all sample the target from their
    first draw, and only the tuning chains pay the tuner's gradients."""
    num_chains, tuning = 32, 4
    sd = np.sqrt(np.diag(problem.covariance))
    start = np.tile(problem.mean + 12.0 * sd, (num_chains, 1)).astype(np.float32)
    result = ppl_ebm.sample(problem.ebm, "mams", "jax", num_chains=num_chains, num_warmup=100, num_samples=100,
                            seed=5, progress_bar=False, initial_params=start, tuning_chains=tuning)
    first = np.asarray(result.latents)[:, 0]
    # Every chain (not only the tuned ones) is burned in: the first draws look like the target.
    z = (first - problem.mean) / sd
    assert np.all(np.abs(z) < 5.0), f"first draws not burned in: max |z| {np.abs(z).max(axis=0)}"
    assert_moments(result.latents, problem.mean, problem.covariance, "mams/subset-tuned")
    grads = np.asarray(result.stats["grad_evals"], dtype=float)
    # The tuner's gradients (~0.4 x 250 steps x >= 2 integrator steps x 2) land on the tuning chains.
    assert grads[:tuning].min() - grads[tuning:].max() > 200, grads
