"""The standard targets with analytic truth (issue 20): the stated truths against exact draws,
the Pyro and NumPyro models against the closed-form density, the front door, bad options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ppl_ebm
from ppl_ebm.targets.standard import STANDARD_TARGETS, log_uniform_scales, standard_target

Z = 5.0  # standard errors


def _split(target, flat):
    """A flat point as the models' site values."""
    values, start = {}, 0
    for name, size in target.sites:
        values[name] = flat[start:start + size]
        start += size
    return values


@pytest.mark.parametrize("name", sorted(STANDARD_TARGETS))
def test_stated_truth_matches_exact_draws(name):
    target = standard_target(name)
    n = 50_000 if target.dim > 20 else 200_000
    draws = target.exact_sample(n, seed=1)
    assert draws.shape == (n, target.dim)
    assert target.true_mean.shape == target.true_var.shape == (target.dim,)
    mean = draws.mean(0)
    centred = draws - mean
    var = (centred**2).mean(0)
    se_mean = np.sqrt(var / n)
    se_var = np.sqrt(((centred**4).mean(0) - var**2) / n)
    assert np.all(np.abs(mean - target.true_mean) < Z * se_mean), (name, mean, target.true_mean)
    assert np.all(np.abs(var - target.true_var) < Z * se_var), (name, var, target.true_var)


def test_closed_form_truths():
    assert np.allclose(standard_target("banana").true_var, [100.0, 19.0])
    assert np.allclose(standard_target("funnel").true_var, [9.0] + [np.exp(4.5)] * 9)
    mixture = standard_target("mixture", weight=0.3, means=(-3.0, 3.0), scales=(1.0, 1.0))
    assert np.allclose(mixture.true_mean, 1.2) and np.allclose(mixture.true_var, 1.0 + 9.0 - 1.44)
    # x1 ~ N(1, 10), y2 ~ N(x1^2, 0.1): E y2 = 11, Var y2 = 0.1 + 2 * 10^2 + 4 * 1 * 10 = 240.1.
    rosenbrock = standard_target("rosenbrock")
    assert rosenbrock.dim == 5
    assert np.allclose(rosenbrock.true_mean[:3], [1.0, 11.0, 11.0])
    assert np.allclose(rosenbrock.true_var[:3], [10.0, 240.1, 240.1])
    gaussian = standard_target("gaussian")
    assert gaussian.dim == 100 and np.isclose(gaussian.true_var[0], 1000.0, rtol=1e-6)
    assert np.array_equal(np.sqrt(gaussian.true_var).astype(np.float32), log_uniform_scales(100, 0))
    sd = np.sqrt(gaussian.true_var)
    assert sd.min() >= 1.0 and sd.max() <= 10**1.5 + 1e-3


@pytest.mark.parametrize("name", sorted(STANDARD_TARGETS))
def test_pyro_and_numpyro_models_have_the_closed_form_density(name):
    import pyro
    from numpyro.infer.util import log_density

    target = standard_target(name, dim=6) if name in ("gaussian", "funnel") else standard_target(name)
    points = target.exact_sample(4, seed=3)
    for point in points:
        values = _split(target, point)
        torch_values = {k: torch.as_tensor(v.reshape(()) if k in ("v", "x1", "x2") else v, dtype=torch.float64)
                        for k, v in values.items()}
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)  # the model's constants in float64, to compare at 1e-9
        try:
            trace = pyro.poutine.trace(pyro.poutine.condition(target.pyro_model, torch_values)).get_trace()
            pyro_lp = float(trace.log_prob_sum())
        finally:
            torch.set_default_dtype(default)
        jax_values = {k: np.asarray(v.reshape(()) if k in ("v", "x1", "x2") else v, np.float32)
                      for k, v in values.items()}
        numpyro_lp = float(log_density(target.numpyro_model, (), {}, jax_values)[0])
        exact = float(target.log_density(point))
        assert np.isclose(pyro_lp, exact, rtol=1e-9, atol=1e-8), (name, pyro_lp, exact)
        assert np.isclose(numpyro_lp, exact, rtol=1e-5, atol=1e-2), (name, numpyro_lp, exact)
    assert target.log_density(points).shape == (4,)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_front_door_smoke(backend, one_torch_thread):
    target = standard_target("banana")
    model = target.pyro_model if backend == "torch" else target.numpyro_model
    result = ppl_ebm.sample(model, "mala", backend, num_chains=4, num_warmup=10, num_samples=8, seed=0,
                            progress_bar=False)
    latents = np.asarray(result.latents)
    assert latents.shape == (4, 8, target.dim)
    assert np.all(np.isfinite(latents))


@pytest.mark.parametrize("name, options, message", [
    ("nope", {}, "name must be one of"),
    ("gaussian", dict(dim=0), "dim must be an integer >= 1"),
    ("gaussian", dict(seed=-1), "seed must be"),
    ("gaussian", dict(width=3), r"Unknown option\(s\) \['width'\]"),
    ("funnel", dict(dim=1), "dim must be an integer >= 2"),
    ("funnel", dict(scale=0.0), "scale must be a finite number > 0"),
    ("banana", dict(b=float("nan")), "b must be a finite number"),
    ("banana", dict(scale="10"), "scale must be a finite number > 0"),
    ("mixture", dict(weight=1.0), r"weight must be in \(0, 1\)"),
    ("mixture", dict(means=(1.0,)), "means must be a pair"),
    ("mixture", dict(scales=(1.0, -1.0)), "scales must be a finite number > 0"),
    ("rosenbrock", dict(n1=7), r"n1 must be an integer in \[2, 6\]"),
    ("rosenbrock", dict(n2=0), "n2 must be an integer >= 1"),
    ("rosenbrock", dict(a=-1.0), "a must be a finite number > 0"),
    ("rosenbrock", dict(mu=True), "mu must be a finite number"),
])
def test_bad_options_are_refused(name, options, message):
    with pytest.raises(ValueError, match=message):
        standard_target(name, **options)
