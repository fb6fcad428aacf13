"""Device selection: 'cpu' runs the same chains as the default; a GPU this machine lacks, or a
bad name, is refused before any sampling, by sample() and by ppl-ebm compare's config."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import ppl_ebm
from ppl_ebm.drivers.devices import jax_device, torch_device
from ppl_ebm.studies.compare import CompareConfig

no_gpu = pytest.mark.skipif(torch.cuda.is_available() or jax.default_backend() == "gpu", reason="a GPU is present")


@pytest.fixture(scope="module")
def ebm():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0).ebm


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_cpu_device_gives_the_default_run(ebm, backend):
    run = dict(num_chains=4, num_warmup=20, num_samples=30, seed=2, progress_bar=False)
    default = ppl_ebm.sample(ebm, "mala", backend, **run)
    on_cpu = ppl_ebm.sample(ebm, "mala", backend, device="cpu", **run)
    np.testing.assert_array_equal(on_cpu.latents, default.latents)


@no_gpu
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("name", ["cuda", "gpu:0", "cuda:3"])
def test_missing_gpu_is_refused_with_advice(ebm, backend, name):
    with pytest.raises(ValueError, match="device='cpu'"):
        ppl_ebm.sample(ebm, "ula", backend, num_chains=2, num_samples=5, device=name)


@no_gpu
def test_compare_config_checks_the_device_first():
    with pytest.raises(ValueError, match="no CUDA GPU|no GPU backend"):
        CompareConfig(device="cuda").validate()


def test_device_names():
    assert torch_device("CPU") == torch.device("cpu")
    assert jax_device("cpu").platform == "cpu"
    for bad in ("tpu", "cuda:x", ""):
        with pytest.raises(ValueError, match="'cpu', 'cuda'"):
            torch_device(bad)
