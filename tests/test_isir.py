"""i-SIR and Ex2MCMC (Samsonov et al. 2022): the kernels' own contract. Their moments are
checked with every sampler's (test_samplers_gaussian, test_independence_moves, test_ppl_drivers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ppl_ebm
from ppl_ebm.kernels import isir_jax, isir_torch
from ppl_ebm.kernels.langevin_torch import batched_value_and_grad
from ppl_ebm.kernels.registry import get_sampler
from ppl_ebm.kernels.samplers_torch import langevin_params

TINY = dict(num_chains=4, num_warmup=7, num_samples=10, seed=0, progress_bar=False)


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=1)


@pytest.mark.parametrize("sampler, options, message", [
    ("isir", {"num_particles": 1}, "num_particles must be an int >= 2"),
    ("isir", {"num_particles": True}, "num_particles must be an int >= 2"),
    ("isir", {"num_particles": 2.5}, "num_particles must be an int >= 2"),
    ("isir", {"step_size": 0.1}, "Unknown option"),
    ("ex2mcmc", {"mala_steps": 0}, "mala_steps must be an int >= 1"),
    ("ex2mcmc", {"independence_every": 2}, "Unknown option"),
    ("ex2mcmc", {"target_accept_prob": 1.5}, "target_accept_prob must be a finite number in"),
])
def test_bad_options_are_refused(problem, sampler, options, message):
    with pytest.raises(ValueError, match=message):
        ppl_ebm.sample(problem.ebm, sampler, "torch", **TINY, **options)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_evaluations_are_counted_honestly(problem, backend):
    run = TINY if backend == "torch" else {**TINY, "num_warmup": 0}  # one compiled program per sampler
    steps = run["num_warmup"] + run["num_samples"]
    isir = ppl_ebm.sample(problem.ebm, "isir", backend, num_particles=5, **run).stats
    np.testing.assert_array_equal(isir["grad_evals"], 0)  # potentials only
    np.testing.assert_array_equal(isir["potential_evals"], 1 + steps * 4)
    ex2 = ppl_ebm.sample(problem.ebm, "ex2mcmc", backend, num_particles=5, mala_steps=2, **run).stats
    isir_steps = steps // 3  # steps 2, 5, 8, ... of the cycle MALA, MALA, i-SIR
    # A gradient at the start, per MALA step and at each i-SIR step's kept particle.
    np.testing.assert_array_equal(ex2["grad_evals"], 1 + steps)
    np.testing.assert_array_equal(ex2["potential_evals"], 1 + steps + isir_steps * 4)
    if backend == "torch":  # every potential of MALA comes with its gradient
        assert "potential_evals" not in ppl_ebm.sample(problem.ebm, "mala", backend, **TINY).stats


def test_particles_are_one_potential_call_without_gradients(problem):
    # chains x (N - 1) proposals in one (chains * (N - 1), dim) batch, potential only; Ex2MCMC's
    # i-SIR step adds one gradient at the kept particles, (chains, dim).
    calls = []

    def potential(z):
        calls.append((tuple(z.shape), torch.is_grad_enabled()))
        return problem.ebm.potential(z)

    potential_and_grad = batched_value_and_grad(potential)
    for name, options in (("isir", {}), ("ex2mcmc", {"mala_steps": 1})):
        spec = get_sampler(name)
        resolved = spec.validate({"num_particles": 6, **options})
        sampler, params = spec.build("torch", resolved), langevin_params(resolved, num_warmup=0)
        state = sampler.init(torch.zeros(50, 2), potential_and_grad, params)
        calls.clear()
        with torch.no_grad():
            state, _ = sampler.step(torch.Generator().manual_seed(0), state._replace(iteration=1), potential_and_grad,
                                    params)
        expected = [((250, 2), False)] + ([((50, 2), True)] if name == "ex2mcmc" else [])
        assert calls == expected, name


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_two_particles_keep_the_fresh_one_with_barkers_probability(backend):
    # N = 2 is the independence sampler with Barker's acceptance w1 / (w0 + w1); on U = |x|^2/2
    # with the N(0, I) proposal every weight is 1, so a fresh particle is kept half the time.
    chains = 4000
    if backend == "torch":
        state = isir_torch.isir_init(torch.zeros(chains, 2), lambda z: 0.5 * (z * z).sum(-1))
        new, info = isir_torch.isir_step(torch.Generator().manual_seed(1), state,
                                         lambda z: 0.5 * (z * z).sum(-1), 2)
        moved, probability = info.accepted.numpy(), info.acceptance_probability.numpy()
        position = new.position.numpy()
    else:
        import jax
        import jax.numpy as jnp

        def step(key):
            state = isir_jax.isir_init(jnp.zeros((chains, 2)), lambda z: 0.5 * jnp.sum(z * z, -1))
            return isir_jax.isir_step(key, state, lambda z: 0.5 * jnp.sum(z * z, -1), 2)

        new, info = jax.jit(step)(jax.random.key(1))
        moved, probability = np.asarray(info.accepted), np.asarray(info.acceptance_probability)
        position = np.asarray(new.position)
    np.testing.assert_allclose(probability, 0.5, rtol=1e-6)
    assert abs(moved.mean() - 0.5) < 4.5 * np.sqrt(0.25 / chains)
    assert np.all((np.abs(position).sum(-1) > 0) == moved)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_non_finite_particles_are_never_kept_and_are_counted(backend):
    # +inf beyond z0 > 1: such particles get weight 0, so no chain ever goes there; with a
    # gradient function (Ex2MCMC's i-SIR step) the kept particles' gradients are finite.
    if backend == "torch":
        from ppl_ebm.kernels.langevin_torch import batched_value_and_grad as value_and_grad

        def potential(z):
            energy = 0.5 * (z**2).sum(-1)
            return torch.where(z[:, 0] > 1.0, torch.full_like(energy, float("inf")), energy)

        kernel, keys, start = isir_torch, [torch.Generator().manual_seed(0)] * 30, torch.zeros(300, 2)
    else:
        import jax
        import jax.numpy as jnp

        from ppl_ebm.kernels.langevin_jax import batched_value_and_grad as value_and_grad

        def potential(z):
            return jnp.where(z[:, 0] > 1.0, jnp.inf, 0.5 * jnp.sum(z**2, axis=-1))

        kernel, keys, start = isir_jax, jax.random.split(jax.random.key(0), 30), jnp.zeros((300, 2))
    for gradient in (None, value_and_grad(potential)):
        state = kernel.isir_init(start, potential)

        def step(key, state):
            return kernel.isir_step(key, state, potential, 4, potential_and_grad_fn=gradient)

        step = step if backend == "torch" else jax.jit(step)
        for key in keys:
            state, info = step(key, state)
            position = np.asarray(state.position)
            assert np.isfinite(position).all() and (position[:, 0] <= 1.0).all()
            assert np.isfinite(np.asarray(state.potential)).all() and np.isfinite(np.asarray(state.grad)).all()
        moved = np.abs(position).sum(-1) > 0
        assert moved.mean() > 0.9 and int(np.asarray(state.nonfinite_count).sum()) > 0
