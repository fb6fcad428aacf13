"""The step-size adaptation triple and the kernel-cycle combinator, on both backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import jax
import jax.numpy as jnp

from ppl_ebm.kernels import cycle
from ppl_ebm.kernels.adaptation.step_size import dual_averaging_adaptation, step_size_adaptation

TARGET = 0.574
INITIAL_STEPS = np.array([1e-3, 0.1, 3.0], dtype=np.float32)


def _acceptance(step_size):
    """A target whose acceptance is a known, decreasing function of the step: exp(-h), so the
    step reaching TARGET is h* = -log(TARGET)."""
    return (-step_size).exp() if isinstance(step_size, torch.Tensor) else jnp.exp(-step_size)


def _run(backend: str, iterations: int, per_chain: bool = True):
    """Adapt for ``iterations`` steps; returns (final state, log steps used, final log step)."""
    if backend == "torch":
        log, exp, log_step = torch.log, torch.exp, torch.log(torch.from_numpy(INITIAL_STEPS))
    else:
        log, exp, log_step = jnp.log, jnp.exp, jnp.log(jnp.asarray(INITIAL_STEPS))
    adaptation = dual_averaging_adaptation(TARGET, per_chain=per_chain)
    state = adaptation.init(log_step)
    used = []
    for _ in range(iterations):
        used.append(np.asarray(state.log_step_size))
        state = adaptation.update(state, _acceptance(exp(state.log_step_size)))
    return state, np.stack(used[1:] + [np.asarray(state.log_step_size)]), adaptation.final(state)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_update_drives_the_step_to_the_target_acceptance(backend):
    _, _, final = _run(backend, 2000)
    np.testing.assert_allclose(np.exp(np.asarray(final)), -math.log(TARGET), rtol=0.02)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_final_is_the_weighted_average_of_the_iterates(backend):
    # Hoffman & Gelman (2014), Alg. 5: xbar_t = t^-kappa x_t + (1 - t^-kappa) xbar_(t-1).
    state, iterates, final = _run(backend, 50)
    average = np.log(INITIAL_STEPS).astype(np.float64)
    for t, x in enumerate(iterates, start=1):
        weight = t**-0.75
        average = (1.0 - weight) * average + weight * x
    np.testing.assert_allclose(np.asarray(final), average, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(final), np.asarray(state.log_step_size_average))
    assert not np.allclose(np.asarray(final), np.asarray(state.log_step_size))


@pytest.mark.parametrize("per_chain", [True, False])
def test_torch_and_jax_give_the_same_numbers(per_chain):
    torch_state, _, torch_final = _run("torch", 100, per_chain)
    jax_state, _, jax_final = _run("jax", 100, per_chain)
    for a, b in zip(torch_state, jax_state):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(torch_final), np.asarray(jax_final), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_shared_signal_feeds_every_chain_the_mean_acceptance(backend):
    array = torch.tensor if backend == "torch" else jnp.asarray
    acceptance = array(np.array([0.1, 0.5, 0.9], dtype=np.float32))
    start = array(np.log(INITIAL_STEPS))
    shared = dual_averaging_adaptation(TARGET, per_chain=False)
    per_chain = dual_averaging_adaptation(TARGET, per_chain=True)
    mean = array(np.full(3, np.float32(np.asarray(acceptance).mean())))
    got = shared.update(shared.init(start), acceptance)
    want = per_chain.update(per_chain.init(start), mean)
    for a, b in zip(got, want):
        assert np.asarray(a).shape == (3,)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _mala_acceptance(log_step, backend: str, slope_scale: float = 1.0):
    """MALA's stationary acceptance 2 Phi(-c h^(3/2)) (Roberts & Rosenthal 1998) with c such that
    h = 1 gives TARGET, shared by every chain (the chains' mean of a cross-chain run);
    ``slope_scale`` steepens it (h^(3/2 x slope_scale))."""
    x = 0.5622 * ((1.5 * slope_scale) * log_step).exp() if backend == "torch" else \
        0.5622 * jnp.exp((1.5 * slope_scale) * log_step)
    if backend == "torch":
        return 2.0 * (1.0 - 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0))))
    return 2.0 * (1.0 - jax.scipy.stats.norm.cdf(x))


def _run_cross_chain(backend: str, start: float, iterations: int, slope_scale: float = 1.0, noise=None):
    array = torch.tensor if backend == "torch" else jnp.asarray
    adaptation = step_size_adaptation("cross_chain", TARGET, True)
    state = adaptation.init(array(np.full(3, np.log(start), dtype=np.float32)))
    for t in range(iterations):
        acceptance = _mala_acceptance(state.log_step_size, backend, slope_scale)
        if noise is not None:
            acceptance = (acceptance + array(noise[t])).clip(0.0, 1.0)
        state = adaptation.update(state, acceptance)
    return state, adaptation.final(state)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("start", [1e-3, 1e3])
def test_cross_chain_reaches_the_target_within_twenty_steps(backend, start):
    # The step with acceptance TARGET is 1 here: from 1000x off either way, 20 updates put the
    # final step within 2% of it (acceptance within 0.01), and it is one step for every chain.
    state, final = _run_cross_chain(backend, start, 20)
    final = np.asarray(final)
    np.testing.assert_allclose(np.exp(final), 1.0, rtol=0.02)
    assert np.all(final == final[0])
    accepted = np.asarray(_mala_acceptance(state.log_step_size_average, backend))
    np.testing.assert_allclose(accepted, TARGET, atol=0.01)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_ten_updates_from_a_step_too_large_leave_dual_averaging_far_off_and_cross_chain_near(backend):
    # Why the scheme exists: mala-imh's 20-step warmup makes 10 MALA updates. From a step 1000x
    # too large, dual averaging's average (even fed the noise-free mean) still accepts < 0.1,
    # where the cross-chain step accepts within 0.03 of TARGET.
    array = torch.tensor if backend == "torch" else jnp.asarray
    dual = dual_averaging_adaptation(TARGET, per_chain=False)
    state = dual.init(array(np.full(3, np.log(1e3), dtype=np.float32)))
    for _ in range(10):
        state = dual.update(state, _mala_acceptance(state.log_step_size, backend))
    assert float(np.asarray(_mala_acceptance(dual.final(state), backend))[0]) < 0.1
    _, final = _run_cross_chain(backend, 1e3, 10)
    np.testing.assert_allclose(np.asarray(_mala_acceptance(final, backend)), TARGET, atol=0.03)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cross_chain_stays_stable_on_a_steeper_curve_and_averages_noise(backend):
    # Three times MALA's slope (inside the gain's stable range) converges; a mean acceptance
    # with 1000 chains' noise (sd 0.5 / sqrt(1000)) leaves the final step within 5%.
    _, final = _run_cross_chain(backend, 1e2, 30, slope_scale=3.0)
    np.testing.assert_allclose(np.exp(np.asarray(final)), 1.0, rtol=0.02)
    noise = np.random.default_rng(0).normal(0.0, 0.5 / math.sqrt(1000), size=(30, 3)).astype(np.float32)
    _, final = _run_cross_chain(backend, 1e-2, 30, noise=noise.mean(1, keepdims=True).repeat(3, 1))
    np.testing.assert_allclose(np.exp(np.asarray(final)), 1.0, rtol=0.05)


def test_cross_chain_torch_and_jax_give_the_same_numbers():
    for a, b in zip(_run_cross_chain("torch", 1e-2, 25), _run_cross_chain("jax", 1e-2, 25)):
        for x, y in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cross_chain_option_builds_a_shared_step_sampler(backend):
    from ppl_ebm.kernels.registry import get_sampler

    for name in ("mala", "mala-imh", "ex2mcmc"):
        spec = get_sampler(name)
        sampler = spec.build(backend, spec.validate({"step_size_adaptation": "cross_chain"}))
        sampler = sampler.local() if name == "ex2mcmc" else sampler  # its MALA steps
        assert (sampler.step_size_adaptation, sampler.per_chain_step_size) == ("cross_chain", False), name
    with pytest.raises(ValueError, match="step_size_adaptation must be one of .*'cross_chain'.*got 'adam'"):
        get_sampler("mala").validate({"step_size_adaptation": "adam"})
    with pytest.raises(TypeError, match="step_size_adaptation must be one of"):
        get_sampler("mala").validate({"step_size_adaptation": 1})


def test_adaptation_by_name():
    assert step_size_adaptation(None, TARGET, True) is None
    assert step_size_adaptation("dual_averaging", TARGET, True) is not None
    assert step_size_adaptation("cross_chain", TARGET, True) is not None
    with pytest.raises(ValueError, match="step-size adaptation must be None or one of"):
        step_size_adaptation("chees", TARGET, True)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_fixed_step_is_kept_and_the_sampler_stays_hashable(backend):
    from ppl_ebm.kernels.registry import get_sampler

    spec = get_sampler("mala")
    options = spec.validate({"step_size": 0.3, "adapt_step_size": False})
    sampler = spec.build(backend, options)
    assert sampler.step_size_adaptation is None and hash(sampler) == hash(spec.build(backend, options))
    assert spec.build(backend, spec.validate({})).step_size_adaptation == "dual_averaging"
    if backend == "torch":
        from ppl_ebm.kernels.samplers_torch import langevin_params

        def potential_and_grad(z):
            return 0.5 * (z * z).sum(-1), z

        params, key, start = langevin_params(options, 5), torch.Generator().manual_seed(0), torch.zeros(4, 2)
    else:
        from ppl_ebm.kernels.samplers_jax import langevin_params

        def potential_and_grad(z):
            return 0.5 * jnp.sum(z * z, -1), z

        params, key, start = langevin_params(options, 5), jax.random.key(0), jnp.zeros((4, 2))
    state = sampler.init(start, potential_and_grad, params)
    assert state.adaptation is None
    for i in range(8):
        step_key = key if backend == "torch" else jax.random.fold_in(key, i)
        state, _ = sampler.step(step_key, state, potential_and_grad, params)
    np.testing.assert_allclose(np.asarray(state.step_size), 0.3, rtol=1e-7)


def _kinds(cond, every, iterations):
    kernel = cycle.cycle_kernel(cond, every, lambda x: x * 0, lambda x: x * 0 + 1)
    return [int(kernel(i, i)) for i in iterations]


def test_cycle_kernel_takes_the_other_kernel_every_kth_step():
    # Step j (0-based, warmup included) is the other kernel when (j + 1) % k == 0.
    expected = [0, 0, 1, 0, 0, 1, 0, 0, 1, 0]
    assert _kinds(cycle.python_cond, 3, range(10)) == expected
    step = jax.jit(lambda i: cycle.cycle_kernel(jax.lax.cond, 3, lambda x: x * 0, lambda x: x * 0 + 1)(i, i))
    assert [int(step(jnp.asarray(i))) for i in range(10)] == expected
    assert _kinds(cycle.python_cond, 2, range(6)) == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("cond", [cycle.python_cond, jax.lax.cond])
def test_cycle_kernel_without_a_cycle_is_the_base_kernel(cond):
    assert _kinds(cond, None, range(5)) == [0] * 5


def test_python_cond_runs_only_the_branch_taken():
    calls = []
    kernel = cycle.cycle_kernel(cycle.python_cond, 2, lambda: calls.append("base"), lambda: calls.append("other"))
    for i in range(4):
        kernel(i)
    assert calls == ["base", "other", "base", "other"]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_step_rescale_keeps_the_sum_of_cubed_effective_steps(backend):
    # From the identity to the variances (4, 1, 0.25): the effective steps step x m_i / sigma_i^2
    # go from step x (1/4, 1, 4) to new step x (1, 1, 1); equal sums of cubes give the factor.
    from ppl_ebm.kernels.adaptation.mass_matrix import step_rescale

    array = torch.tensor if backend == "torch" else jnp.asarray
    variances = np.array([[4.0, 1.0, 0.25]], dtype=np.float32)
    want = np.cbrt(np.mean(np.array([0.25, 1.0, 4.0]) ** 3))
    factor = step_rescale(array(np.ones_like(variances)), array(variances), array(np.ones_like(variances)))
    np.testing.assert_allclose(np.asarray(factor), [want], rtol=1e-6)
    eye = np.eye(3, dtype=np.float32)
    dense = step_rescale(array(eye[None]), array(np.diag(variances[0])[None]), array(eye))
    np.testing.assert_allclose(np.asarray(dense), [want], rtol=1e-6)
