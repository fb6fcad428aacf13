"""The GPU path of both backends, on a machine with a CUDA GPU (skipped elsewhere, CI included).

The same checks as on the CPU, with ``device="cuda"``: the samplers against the closed-form
Gaussian target, and torch and its JAX translation agreeing on the SN-GAN-sized conv EBM
there. Run on a GPU machine with ``python -m pytest -q tests/test_gpu.py``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from problems import assert_moments, ula_stationary_covariance

import ppl_ebm

has_gpu = torch.cuda.is_available() and any(device.platform == "gpu" for device in jax.devices())
pytestmark = pytest.mark.skipif(not has_gpu, reason="needs a CUDA GPU visible to both torch and JAX")

RUN = dict(num_chains=2048, num_warmup=300, num_samples=400, seed=5, progress_bar=False)


@pytest.fixture
def problem():
    # Built per test: device= moves the torch networks in place.
    return ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0)


@pytest.fixture
def fp32():
    """Full fp32 for the duration of a test: TF32 matmuls (torch's cuDNN default, JAX's GPU
    default) round the energies at ~1e-3, which the exact checks below would see."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with jax.default_matmul_precision("float32"):
        yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_mala_on_the_gpu_matches_the_closed_form(problem, fp32, backend):
    result = ppl_ebm.sample(problem.ebm, "mala", backend, device="cuda", **RUN)
    assert_moments(result.latents, problem.mean, problem.covariance, f"mala/{backend} on cuda")
    if backend == "torch":
        assert next(problem.ebm.generator.parameters()).device.type == "cuda"


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_mala_with_independence_steps_on_the_gpu(problem, fp32, backend):
    result = ppl_ebm.sample(problem.ebm, "mala", backend, device="cuda", independence_every=3, **RUN)
    assert_moments(result.latents, problem.mean, problem.covariance, f"mala-imh/{backend} on cuda")
    assert 0 < np.mean(result.stats["independence_acceptance"]) < 1


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_ula_on_the_gpu_matches_its_biased_law(problem, fp32, backend):
    step = 0.3
    result = ppl_ebm.sample(problem.ebm, "ula", backend, device="cuda", step_size=step, **RUN)
    biased = ula_stationary_covariance(problem.covariance, step, np.sqrt(step))
    assert_moments(result.latents, problem.mean, biased, f"ula/{backend} on cuda")
    with pytest.raises(AssertionError):
        assert_moments(result.latents, problem.mean, problem.covariance, "ula vs unbiased")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_same_seed_same_draws_on_the_gpu(problem, fp32, backend):
    run = dict(RUN, num_chains=64, num_warmup=20, num_samples=30)
    first = ppl_ebm.sample(problem.ebm, "mala", backend, device="cuda", **run)
    second = ppl_ebm.sample(problem.ebm, "mala", backend, device="cuda", **run)
    np.testing.assert_array_equal(first.latents, second.latents)


def test_conv_ebm_torch_and_jax_agree_on_the_gpu(fp32):
    from ppl_ebm.nets.architectures import conv_critic, conv_generator

    torch.manual_seed(0)
    ebm = ppl_ebm.LatentEBM(conv_generator(128, 3, 64, 32), conv_critic(3, 64, 32)).to(torch.device("cuda"))
    z = torch.randn(256, 128, device="cuda")
    energy, grad = ebm.potential_and_grad(z)
    with jax.default_device(jax.devices("gpu")[0]):
        ebm_jax = ebm.to_jax()
        energy_jax, grad_jax = ebm_jax.potential_and_grad(jax.numpy.asarray(z.cpu().numpy()))
    np.testing.assert_allclose(np.asarray(energy_jax), energy.cpu().numpy(), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(grad_jax), grad.cpu().numpy(), rtol=1e-3, atol=1e-3)
