"""The front door: bad input fails fast, results convert to ArviZ, models, the CLI, examples."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from problems import assert_moments
from script_loader import load_script

import ppl_ebm
from ppl_ebm.diagnostics import arviz_compat


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=2)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(sampler="gibbs"), "sampler must be one of"),
        (dict(backend="tensorflow"), "backend must be one of"),
        (dict(num_chains=0), "num_chains must be an int >= 1"),
        (dict(num_samples=10, thinning=3), "multiple of thinning"),
        (dict(num_warmup=-1), "num_warmup must be an int >= 0"),
        (dict(sampler="ula", target_accept_prob=0.8), "Unknown option"),
        (dict(initial_params=np.zeros((3, 5))), "initial_params must be shaped"),
        (dict(sampler="ula", step_size=-0.1), "step_size must be a finite number > 0"),
    ],
)
def test_bad_arguments_fail_before_sampling(problem, kwargs, message):
    arguments = dict(sampler="mala", backend="torch", num_chains=4, num_warmup=2, num_samples=4, progress_bar=False)
    arguments.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=message):
        ppl_ebm.sample(problem.ebm, **arguments)


def test_bad_target_and_kernel_arguments(problem):
    with pytest.raises(TypeError, match="target must be"):
        ppl_ebm.sample(42, "mala", "torch")
    with pytest.raises(ValueError, match="only be sampled with backend='jax'"):
        ppl_ebm.sample(problem.ebm.to_jax(), "mala", "torch")
    from ppl_ebm.ppl import numpyro_kernels, pyro_kernels

    for module in (pyro_kernels, numpyro_kernels):
        with pytest.raises(ValueError, match="exactly one of `model` or `potential_fn`"):
            module.MALA()
        with pytest.raises(ValueError, match="target_accept_prob"):
            module.MALA(potential_fn=lambda z: z.sum(-1), target_accept_prob=1.5)
        with pytest.raises(ValueError, match="num_chains"):
            module.ULA(potential_fn=lambda z: z.sum(-1), num_chains=0)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_result_stats_and_arviz(problem, backend):
    result = ppl_ebm.sample(problem.ebm, "mala", backend, num_chains=6, num_warmup=20, num_samples=30,
                            thinning=2, progress_bar=False, return_generated=True)
    assert result.latents.shape == (6, 15, 2) and result.latents.dtype == np.float32
    assert result.generated.shape == (6, 15, 3)
    for key in ("acceptance", "step_size", "divergences", "nonfinite", "grad_evals"):
        assert result.stats[key].shape == (6,), key
    np.testing.assert_array_equal(result.stats["grad_evals"], 51)
    for key in ("wall_seconds", "warmup_seconds", "sampling_seconds"):
        assert result.stats[key] >= 0
    assert result.stats["wall_seconds"] >= result.stats["sampling_seconds"]
    data = result.to_arviz()
    posterior = data.posterior if arviz_compat.ARVIZ_MAJOR < 1 else data["posterior"]
    assert posterior["z"].shape == (6, 15, 2)
    assert posterior["generated"].shape == (6, 15, 3)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_model_target_with_constrained_sites(backend):
    # A general model (not a latent EBM) through our kernel: a positive site needs the
    # unconstrained transform and its Jacobian. Posterior of a Gamma-Poisson is Gamma(a+sum, b+n).
    counts = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.float32)
    if backend == "torch":
        import pyro
        import pyro.distributions as dist

        def model():
            rate = pyro.sample("rate", dist.Gamma(2.0, 1.0))
            with pyro.plate("data", len(counts)):
                pyro.sample("y", dist.Poisson(rate), obs=torch.as_tensor(counts))
    else:
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        def model():
            rate = numpyro.sample("rate", dist.Gamma(2.0, 1.0))
            with numpyro.plate("data", len(counts)):
                numpyro.sample("y", dist.Poisson(rate), obs=jnp.asarray(counts))

    result = ppl_ebm.sample(model, "mala", backend, num_chains=128, num_warmup=300, num_samples=300,
                            seed=5, progress_bar=False)
    shape, rate = 2.0 + counts.sum(), 1.0 + len(counts)
    rates = result.posterior["rate"][..., None]
    assert_moments(rates, np.array([shape / rate]), np.array([[shape / rate**2]]), f"gamma-poisson/{backend}")


def test_inverse_problem_example_recovers_exact_posterior():
    example = load_script("examples", "inverse_problem")
    results, mean, covariance = example.main(
        ["--samplers", "mala", "--chains", "64", "--warmup", "300", "--samples", "300"]
    )
    for name, result in results.items():
        assert_moments(result.posterior["z"], mean, covariance, name)


def test_cli_compare_at_toy_size(tmp_path, capsys):
    from ppl_ebm.cli import main

    code = main(["compare", "--model", "gaussian", "--samplers", "ula", "mala", "--backends", "torch", "--chains", "16",
                 "--warmup", "20", "--samples", "40", "--output", str(tmp_path), "--no-progress"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["methods"]) == {"ula/torch", "mala/torch"}
    assert metrics["methods"]["mala/torch"]["ess_bulk_min"] > 0
    assert "ess_bulk_min" in (tmp_path / "report.md").read_text()
    assert "mala/torch" in capsys.readouterr().out


def test_cli_rejects_bad_numbers(capsys):
    from ppl_ebm.cli import main

    with pytest.raises(SystemExit):
        main(["compare", "--model", "gaussian", "--chains", "0"])
    assert "--chains must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the zoo path validates before loading or sampling anything
        main(["compare", "--chains", "0"])
    assert "langevin_chains must be a positive int, got 0" in capsys.readouterr().err
