"""Our kernels and the latent EBM model through the PPLs' own MCMC drivers, and alone."""

from __future__ import annotations

import jax
import numpy as np
import pyro
import pytest
import torch
from numpyro.infer import MCMC as NumPyroMCMC
from numpyro.infer import NUTS as NumPyroNUTS
from problems import assert_moments
from pyro.infer import MCMC as PyroMCMC
from pyro.infer import NUTS as PyroNUTS

import ppl_ebm
from ppl_ebm.ppl import numpyro_kernels, pyro_kernels
from ppl_ebm.kernels.langevin_torch import langevin_init, mala_step, ula_step
from ppl_ebm.ppl.numpyro_model import numpyro_model
from ppl_ebm.ppl.pyro_model import pyro_model


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=1)


def test_pyro_model_potential_equals_latent_ebm_potential(problem):
    from pyro.infer.mcmc.util import initialize_model

    _, potential_fn, _, _ = initialize_model(pyro_model(problem.ebm))
    z = torch.randn(2)
    np.testing.assert_allclose(
        float(potential_fn({"z": z})), float(problem.ebm.potential(z[None])[0]), rtol=1e-5
    )


def test_pyro_nuts_on_pyro_model(problem):
    pyro.set_rng_seed(0)
    mcmc = PyroMCMC(PyroNUTS(pyro_model(problem.ebm)), num_samples=600, warmup_steps=200, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples(group_by_chain=True)["z"].numpy()
    assert_moments(draws, problem.mean, problem.covariance, "pyro NUTS(model)")


def test_numpyro_nuts_on_numpyro_model(problem):
    mcmc = NumPyroMCMC(
        NumPyroNUTS(numpyro_model(problem.ebm)), num_warmup=200, num_samples=500, num_chains=4,
        chain_method="vectorized", progress_bar=False,
    )
    mcmc.run(jax.random.key(0))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["z"])
    assert_moments(draws, problem.mean, problem.covariance, "numpyro NUTS(model)")


@pytest.mark.parametrize("kernel_name", ["ULA", "MALA"])
def test_our_kernels_in_pyro_mcmc(problem, kernel_name):
    pyro.set_rng_seed(1)
    options = {"step_size": 0.05} if kernel_name == "ULA" else {}
    kernel = getattr(pyro_kernels, kernel_name)(pyro_model(problem.ebm), num_chains=128, **options)
    mcmc = PyroMCMC(kernel, num_samples=400, warmup_steps=200, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["z"].numpy().swapaxes(0, 1)  # (chains, draws, dim)
    assert draws.shape == (128, 400, 2)
    covariance = problem.covariance
    if kernel_name == "ULA":
        from problems import ula_stationary_covariance

        covariance = ula_stationary_covariance(covariance, 0.05, np.sqrt(0.05))
    assert_moments(draws, problem.mean, covariance, f"pyro MCMC({kernel_name})")
    assert "acceptance rate" in kernel.diagnostics()


@pytest.mark.parametrize("kernel_name", ["ULA", "MALA"])
def test_our_kernels_in_numpyro_mcmc(problem, kernel_name):
    options = {"step_size": 0.05} if kernel_name == "ULA" else {}
    kernel = getattr(numpyro_kernels, kernel_name)(numpyro_model(problem.ebm), num_chains=128, **options)
    mcmc = NumPyroMCMC(kernel, num_warmup=200, num_samples=400, progress_bar=False)
    mcmc.run(jax.random.key(2))
    draws = np.asarray(mcmc.get_samples()["z"]).swapaxes(0, 1)
    assert draws.shape == (128, 400, 2)
    covariance = problem.covariance
    if kernel_name == "ULA":
        from problems import ula_stationary_covariance

        covariance = ula_stationary_covariance(covariance, 0.05, np.sqrt(0.05))
    assert_moments(draws, problem.mean, covariance, f"numpyro MCMC({kernel_name})")


@pytest.mark.usefixtures("one_torch_thread")  # i-SIR's small per-step tensors: threads only wait
@pytest.mark.parametrize("sampler", ["isir", "ex2mcmc"])
def test_registry_samplers_in_pyro_mcmc(problem, sampler):
    pyro.set_rng_seed(3)
    kernel = pyro_kernels.SamplerKernel(sampler, pyro_model(problem.ebm), num_chains=128)
    mcmc = PyroMCMC(kernel, num_samples=400, warmup_steps=200, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["z"].numpy().swapaxes(0, 1)
    assert draws.shape == (128, 400, 2)
    assert_moments(draws, problem.mean, problem.covariance, f"pyro MCMC({sampler})")
    assert 0 < kernel.diagnostics()["acceptance rate"] < 1


@pytest.mark.parametrize("sampler", ["isir", "ex2mcmc"])
def test_registry_samplers_in_numpyro_mcmc(problem, sampler):
    kernel = numpyro_kernels.SamplerKernel(sampler, numpyro_model(problem.ebm), num_chains=128)
    mcmc = NumPyroMCMC(kernel, num_warmup=200, num_samples=400, progress_bar=False)
    mcmc.run(jax.random.key(4))
    draws = np.asarray(mcmc.get_samples()["z"]).swapaxes(0, 1)
    assert draws.shape == (128, 400, 2)
    assert_moments(draws, problem.mean, problem.covariance, f"numpyro MCMC({sampler})")


def test_sampler_kernel_refuses_the_ppls_own_samplers(problem):
    with pytest.raises(ValueError, match="PPL's own kernel"):
        pyro_kernels.SamplerKernel("nuts", pyro_model(problem.ebm))
    with pytest.raises(ValueError, match="PPL's own kernel"):
        numpyro_kernels.SamplerKernel("hmc", numpyro_model(problem.ebm))


def test_kernels_with_batched_potential_fn_alone():
    # A kernel without any driver, on a plain potential: setup, then sample.
    scales = torch.tensor([0.2, 1.0, 3.0])

    def potential(z):
        return 0.5 * ((z / scales) ** 2).sum(-1)

    kernel = pyro_kernels.MALA(potential_fn=potential, num_chains=200, seed=0, initial_params=torch.randn(200, 3))
    kernel.setup(300)
    draws = []
    for iteration in range(700):
        params = kernel.sample(None)
        if iteration >= 300:
            draws.append(params["z"])
    draws = torch.stack(draws, dim=1).numpy()
    assert_moments(draws, np.zeros(3), np.diag(scales.numpy() ** 2), "MALA alone")


def test_non_finite_values_are_rejected_or_stop_the_chain():
    # A potential that is +inf beyond z0 > 1: MALA must reject those proposals, ULA must stop.
    def potential(z):
        energy = 0.5 * (z**2).sum(-1)
        return torch.where(z[:, 0] > 1.0, torch.full_like(energy, float("inf")), energy)

    def potential_and_grad(z):
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            value = potential(z)
            (grad,) = torch.autograd.grad(value.sum(), z)
        return value.detach(), grad

    rng = torch.Generator().manual_seed(0)
    start = torch.zeros(500, 2)
    state = langevin_init(start, potential_and_grad)
    for _ in range(100):
        state, info = mala_step(rng, state, potential_and_grad, 0.5)
        assert torch.all(state.position[:, 0] <= 1.0)
        assert torch.isfinite(state.potential).all()
    assert int(state.nonfinite_count.sum()) > 0
    assert bool(state.active.all())

    state = langevin_init(start, potential_and_grad)
    for _ in range(100):
        state, info = ula_step(rng, state, potential_and_grad, 0.5, 0.7)
        assert torch.isfinite(state.position).all() and torch.all(state.position[:, 0] <= 1.0)
    stopped = ~state.active
    assert int(stopped.sum()) > 0
    np.testing.assert_array_equal(state.nonfinite_count.numpy(), stopped.numpy().astype(np.int64))


def test_front_door_reports_non_finite_counts_for_jax():
    import jax.numpy as jnp

    from ppl_ebm.drivers import run_jax
    from ppl_ebm.kernels.registry import get_sampler
    from ppl_ebm.kernels.samplers_jax import langevin_params

    def potential(z):
        energy = 0.5 * jnp.sum(z**2, axis=-1)
        return jnp.where(z[:, 0] > 1.0, jnp.inf, energy)

    spec = get_sampler("ula")
    options = spec.validate({"step_size": 0.5, "noise_scale": 0.7})
    sampler, params = spec.build("jax", options), langevin_params(options, num_warmup=0)
    problem = run_jax.JaxProblem(None, lambda _: potential)
    chain = run_jax.init_chain(sampler, params, problem, jnp.zeros((300, 2)), jax.random.key(0))
    _, latents, stats = run_jax.run_langevin(sampler, params, problem, chain, 100, progress_bar=False)
    assert np.isfinite(latents).all() and (latents[..., 0] <= 1.0).all()
    assert stats["stopped"].sum() > 0
    np.testing.assert_array_equal(stats["nonfinite"], stats["stopped"].astype(np.int64))
