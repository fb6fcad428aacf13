"""Latent priors other than N(0, I): the box, other distributions, sampling in unconstrained space.

The closed form: with ``G(z) = a * z`` (diagonal), ``d(x) = -|x - m|^2 / (2 s^2)``, the box prior
[-1, 1]^d and temperature T, the target is per coordinate ``N(m_i / a_i, T s^2 / a_i^2)``
truncated to [-1, 1] (the prior's density is constant on the box, so tempering leaves it flat).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as ndist
import pyro
import pytest
import torch
from numpyro.infer import MCMC as NumPyroMCMC
from numpyro.infer import NUTS as NumPyroNUTS
from problems import Z_THRESHOLD, assert_moments
from pyro.infer import MCMC as PyroMCMC
from pyro.infer import NUTS as PyroNUTS
from scipy import stats
from torch.distributions import (
    Bernoulli,
    Independent,
    LogNormal,
    MultivariateNormal,
    Normal,
    Uniform,
)

import ppl_ebm
from ppl_ebm.nets import architectures as networks
from ppl_ebm.ppl.numpyro_model import numpyro_model
from ppl_ebm.ppl.pyro_model import pyro_model
from ppl_ebm.targets.gaussian import QuadraticCritic
from ppl_ebm.targets.latent_ebm import LatentEBM
from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax

SCALES = np.array([1.0, 0.6])  # a: G(z) = a * z
TRUNCATED_MEANS = np.array([0.7, -0.4])  # m / a
CRITIC_SD = 0.6  # s
TEMPERATURE = 0.7

# False-alarm probability of one chi-square check: the two-sided tail beyond Z_THRESHOLD.
FALSE_ALARM = 2 * stats.norm.sf(Z_THRESHOLD)


def _diagonal_generator(scales) -> torch.nn.Linear:
    generator = torch.nn.Linear(len(scales), len(scales), bias=False)
    with torch.no_grad():
        generator.weight.copy_(torch.diag(torch.as_tensor(scales, dtype=torch.float32)))
    return generator


def _box_problem(temperature: float = TEMPERATURE, prior="uniform"):
    """The EBM and each coordinate's truncated Gaussian on [-1, 1] (scipy frozen distributions)."""
    center = torch.as_tensor(SCALES * TRUNCATED_MEANS, dtype=torch.float32)
    critic = QuadraticCritic(center, torch.eye(2) / CRITIC_SD**2)
    ebm = LatentEBM(_diagonal_generator(SCALES), critic, latent_dim=2, temperature=temperature, prior=prior)
    # The float32 weights the networks hold define the exact answer.
    a = ebm.generator.weight.detach().diag().double().numpy()
    m = critic.center.double().numpy() / a
    sd = np.sqrt(temperature / critic.precision.diag().double().numpy()) / a
    marginals = [stats.truncnorm((-1 - mu) / s, (1 - mu) / s, loc=mu, scale=s) for mu, s in zip(m, sd)]
    return ebm, marginals


def _truth(marginals) -> tuple[np.ndarray, np.ndarray]:
    return np.array([m.mean() for m in marginals]), np.diag([m.var() for m in marginals])


# -- the potential in u-space against the closed form ----------------------------------------------


def test_box_potential_is_truncated_gaussian_plus_log_jacobian():
    ebm, marginals = _box_problem()
    u = torch.randn(400, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float32) * 3.0
    with torch.no_grad():
        potential = ebm.potential(u).double().numpy()
        z = ebm.constrain(u).double().numpy()
    u64 = u.double().numpy()
    sigmoid = 1.0 / (1.0 + np.exp(-u64))
    np.testing.assert_allclose(z, -1.0 + 2.0 * sigmoid, rtol=1e-6, atol=1e-6)
    # log|dz/du| of z = -1 + 2 sigmoid(u), written independently of torch's transform.
    log_jacobian = np.sum(np.log(2.0) - np.logaddexp(0.0, -u64) - np.logaddexp(0.0, u64), axis=-1)
    expected = -sum(m.logpdf(z[:, i]) for i, m in enumerate(marginals)) - log_jacobian
    offset = potential - expected
    # Equal up to one constant (the normaliser); float32 evaluation of values of size ~10.
    np.testing.assert_allclose(offset, np.median(offset), atol=1e-4 * (1 + np.abs(expected).max()))


def test_temperature_tempers_the_density_in_z_not_the_jacobian():
    cold, _ = _box_problem(temperature=0.5)
    warm, _ = _box_problem(temperature=1.0)
    u = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        jacobian = cold.prior.log_abs_det_jacobian(u, cold.constrain(u))
        energy = -(warm.prior_log_density(warm.constrain(u)) + warm.log_tilt(warm.constrain(u)))
        torch.testing.assert_close(cold.potential(u), 2.0 * energy - jacobian)


# -- NUTS on the PPL models reproduces the truncated Gaussian --------------------------------------


def test_numpyro_nuts_on_box_prior_model(one_torch_thread):
    ebm, marginals = _box_problem()
    mcmc = NumPyroMCMC(
        NumPyroNUTS(numpyro_model(ebm.to_jax())), num_warmup=200, num_samples=400, num_chains=4,
        chain_method="vectorized", progress_bar=False,
    )
    mcmc.run(jax.random.key(0))
    draws = np.asarray(mcmc.get_samples(group_by_chain=True)["z"])
    assert np.all(np.abs(draws) <= 1.0)
    assert_moments(draws, *_truth(marginals), "numpyro NUTS, box prior")


def test_pyro_nuts_on_box_prior_model(one_torch_thread):
    ebm, marginals = _box_problem()
    pyro.set_rng_seed(0)
    mcmc = PyroMCMC(PyroNUTS(pyro_model(ebm)), num_samples=500, warmup_steps=150, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples(group_by_chain=True)["z"].numpy()
    assert np.all(np.abs(draws) <= 1.0)
    assert_moments(draws, *_truth(marginals), "pyro NUTS, box prior")


def test_ppl_models_potentials_equal_the_ebm_potential_in_u():
    from numpyro.infer.util import initialize_model as numpyro_initialize
    from pyro.infer.mcmc.util import initialize_model as pyro_initialize

    ebm, _ = _box_problem()
    jax_ebm = ebm.to_jax()
    u = torch.tensor([0.3, -2.5])
    _, pyro_potential, _, _ = pyro_initialize(pyro_model(ebm))
    _, numpyro_potential, _, _ = numpyro_initialize(jax.random.key(0), numpyro_model(jax_ebm))
    with torch.no_grad():
        expected = float(ebm.potential(u[None])[0])
    assert float(pyro_potential({"z": u}).detach()) == pytest.approx(expected, rel=1e-5)
    assert float(numpyro_potential({"z": jnp.asarray(u.numpy())})) == pytest.approx(expected, rel=1e-5)


# -- the normal prior: unchanged ---------------------------------------------------------------------


def test_normal_prior_results_unchanged():
    torch.manual_seed(0)
    generator, critic = networks.toy_generator(), networks.toy_critic()
    ebm = LatentEBM(generator, critic, temperature=0.7)
    assert LatentEBM(generator, critic, temperature=0.7, prior="normal").prior.is_standard_normal
    z = torch.randn(16, 2)
    with torch.no_grad():
        # The formula before priors existed, op for op.
        before = -(
            (-0.5 * (z * z).sum(-1) - 0.5 * 2 * math.log(2 * math.pi)) + critic(generator(z)).reshape(-1)
        ) / 0.7
        assert torch.equal(ebm.potential(z), before)
        assert torch.equal(ebm.prior_potential(z), 0.5 * (z * z).sum(-1) + 0.5 * 2 * math.log(2 * math.pi))
    assert ebm.constrain(z) is z and ebm.unconstrain(z) is z
    draws = ebm.prior_sample(7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(draws, torch.randn(7, 2, generator=torch.Generator().manual_seed(3)))
    unconstrained = ebm.prior_sample_unconstrained(7, generator=torch.Generator().manual_seed(3))
    assert torch.equal(unconstrained, draws)

    jax_ebm = ebm.to_jax()
    w = jnp.asarray(z.numpy())
    assert jax_ebm.constrain(w) is w and jax_ebm.unconstrain(w) is w
    key = jax.random.key(4)
    assert np.array_equal(jax_ebm.prior_sample(key, 5), jax.random.normal(key, (5, 2), dtype=jnp.float32))
    assert np.array_equal(jax_ebm.prior_sample_unconstrained(key, 5), jax_ebm.prior_sample(key, 5))
    before_jax = -((-0.5 * jnp.sum(w * w, axis=-1) - 0.5 * 2 * math.log(2 * math.pi))
                   + jax_ebm.log_tilt(w)) / 0.7
    assert np.array_equal(jax_ebm.potential(w), before_jax)
    assert np.array_equal(jax_ebm.prior_potential(w), -jax_ebm.prior_log_density(w))


# -- prior_sample_unconstrained and prior_potential agree --------------------------------------------

_COVARIANCE = torch.tensor([[1.0, 0.3], [0.3, 0.5]])


def _priors():
    ones = torch.ones(2)
    yield "box", "uniform"
    yield "wide_box", Independent(Uniform(-2.0 * ones, 2.0 * ones), 1)
    yield "diagonal_normal", Independent(Normal(torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5])), 1)
    yield "multivariate_normal", MultivariateNormal(torch.tensor([0.2, -0.1]), covariance_matrix=_COVARIANCE)


def _jax_truncated_prior_ebm(ebm: LatentEBM) -> LatentEBMJax:
    jax_ebm = ebm.to_jax()
    prior = ndist.TruncatedNormal(jnp.array([0.3, -0.2]), jnp.array([0.8, 1.5]), low=jnp.array([-1.0, -2.0]),
                                  high=jnp.array([1.5, 0.5])).to_event(1)
    return LatentEBMJax(
        jax_ebm.generator_fn, jax_ebm.generator_params, jax_ebm.critic_fn, jax_ebm.critic_params,
        critic_output=jax_ebm.critic_output, base_latent_dim=2, data_shape=jax_ebm.data_shape, prior=prior,
    )


def _backend_cases():
    torch.manual_seed(0)
    generator, critic = networks.toy_generator(), networks.toy_critic()
    for name, prior in _priors():
        ebm = LatentEBM(generator, critic, prior=prior)
        yield f"torch-{name}", ebm
        yield f"jax-{name}", ebm.to_jax()
    yield "jax-truncated_normal", _jax_truncated_prior_ebm(LatentEBM(generator, critic))


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _draw_unconstrained(ebm, num: int, seed: int):
    if isinstance(ebm, LatentEBM):
        return ebm.prior_sample_unconstrained(num, generator=torch.Generator().manual_seed(seed))
    return ebm.prior_sample_unconstrained(jax.random.key(seed), num)


def _call(ebm, method: str, u: np.ndarray) -> np.ndarray:
    if isinstance(ebm, LatentEBM):
        with torch.no_grad():
            return _as_numpy(getattr(ebm, method)(torch.as_tensor(u, dtype=torch.float32)))
    # Jitted: one compile instead of an eager dispatch per primitive over the large grids.
    return _as_numpy(jax.jit(getattr(ebm, method))(jnp.asarray(u, dtype=jnp.float32)))


@pytest.mark.parametrize("name, ebm", list(_backend_cases()))
def test_prior_potential_is_minus_log_density_of_unconstrained_draws(name, ebm):
    # Histogram of u-draws against the bin masses of exp(-prior_potential(u)), integrated on a
    # fine grid: one chi-square test of both the draws' law and the density (with its constant).
    num, edges = 40_000, np.linspace(-6.0, 6.0, 13)
    u = _as_numpy(_draw_unconstrained(ebm, num, seed=1))
    assert np.all(np.isfinite(u))
    fine = np.linspace(-6.0, 6.0, 12 * 40 + 1)
    mids = (fine[:-1] + fine[1:]) / 2
    grid = np.stack(np.meshgrid(mids, mids, indexing="ij"), axis=-1).reshape(-1, 2)
    density = np.exp(-_call(ebm, "prior_potential", grid)).reshape(len(mids), len(mids)) * (fine[1] - fine[0]) ** 2
    masses = density.reshape(12, 40, 12, 40).sum(axis=(1, 3)).ravel()
    assert masses.sum() <= 1.0 + 1e-3, f"{name}: exp(-prior_potential) integrates to {masses.sum()} > 1"
    counts, _, _ = np.histogram2d(u[:, 0], u[:, 1], bins=[edges, edges])
    expected = num * masses
    counts = counts.ravel()
    # Bins expecting fewer than 5 draws are pooled with the outside of the grid.
    keep = expected >= 5
    observed = np.append(counts[keep], num - counts[keep].sum())
    predicted = np.append(expected[keep], num - expected[keep].sum())
    statistic = np.sum((observed - predicted) ** 2 / predicted)
    p_value = stats.chi2.sf(statistic, len(observed) - 1)
    assert p_value > FALSE_ALARM, f"{name}: chi-square {statistic:.1f} on {len(observed) - 1} dof, p={p_value:.2g}"


@pytest.mark.parametrize("name, ebm", list(_backend_cases()))
def test_prior_potential_by_change_of_variables(name, ebm):
    # -log p0(T(u)) - log|det dT/du| with the Jacobian by central differences in float64.
    u = np.random.default_rng(2).normal(size=(50, 2)) * 1.5
    z = _call(ebm, "constrain", u)
    step = 1e-2
    columns = []
    for i in range(2):
        shift = np.zeros(2)
        shift[i] = step
        columns.append((_call(ebm, "constrain", u + shift) - _call(ebm, "constrain", u - shift)) / (2 * step))
    jacobian = np.stack(columns, axis=-1)
    log_det = np.log(np.abs(np.linalg.det(jacobian)))
    expected = -_call(ebm, "prior_log_density", z) - log_det
    # float32 central differences over a 2e-2 step: relative error ~1e-4 on the Jacobian.
    np.testing.assert_allclose(_call(ebm, "prior_potential", u), expected, atol=2e-3)
    np.testing.assert_allclose(_call(ebm, "unconstrain", z), u, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name, prior", list(_priors()))
def test_constrained_prior_draws_have_the_prior_moments(name, prior):
    ebm = LatentEBM(*_toy_nets(), prior=prior)
    jax_ebm = ebm.to_jax()
    num = 20_000
    distribution = ebm.prior.distribution
    mean = distribution.mean.double().numpy()
    variance = distribution.variance.double().numpy()
    # Fourth central moments for the variance's standard error: (b-a)^4/80 uniform, 3 s^4 normal.
    fourth = 1.8 * variance**2 if name.endswith("box") else 3.0 * variance**2
    for label, z in (
        ("torch", ebm.constrain(ebm.prior_sample_unconstrained(num, generator=torch.Generator().manual_seed(5)))),
        ("jax", jax_ebm.constrain(jax_ebm.prior_sample_unconstrained(jax.random.key(5), num))),
    ):
        z = _as_numpy(z)
        if name.endswith("box"):
            bound = 1.0 if name == "box" else 2.0
            assert np.all(np.abs(z) <= bound), f"{label} {name}: draws outside the box"
        z_mean = (z.mean(0) - mean) / np.sqrt(variance / num)
        z_var = (z.var(0) - variance) / np.sqrt((fourth - variance**2) / num)
        assert np.all(np.abs(z_mean) < Z_THRESHOLD), f"{label} {name}: mean {z.mean(0)} vs {mean}"
        assert np.all(np.abs(z_var) < Z_THRESHOLD), f"{label} {name}: variance {z.var(0)} vs {variance}"


def _toy_nets(seed: int = 0):
    torch.manual_seed(seed)
    return networks.toy_generator(), networks.toy_critic()


# -- torch and JAX mirrors agree ------------------------------------------------------------------


@pytest.mark.parametrize("name, prior", list(_priors()))
def test_torch_and_jax_priors_agree(name, prior):
    ebm = LatentEBM(*_toy_nets(1), prior=prior, temperature=0.8)
    jax_ebm = ebm.to_jax()
    assert jax_ebm.prior.latent_dim == 2 and jax_ebm.prior.name == ebm.prior.name
    u = torch.randn(32, 2, generator=torch.Generator().manual_seed(6)) * 2.0
    w = jnp.asarray(u.numpy())
    potential, grad = ebm.potential_and_grad(u)
    # The JAX EBM passed through jit as an argument: the prior's parameters are leaves.
    jax_potential, jax_grad = jax.jit(lambda target, x: target.potential_and_grad(x))(jax_ebm, w)
    scale = float(potential.abs().max()) + 1.0
    np.testing.assert_allclose(np.asarray(jax_potential), potential.numpy(), rtol=1e-4, atol=1e-4 * scale)
    grad_scale = float(grad.abs().max()) + 1.0
    np.testing.assert_allclose(np.asarray(jax_grad), grad.numpy(), rtol=1e-4, atol=1e-4 * grad_scale)
    for method in ("constrain", "prior_potential"):
        with torch.no_grad():
            expected = getattr(ebm, method)(u).numpy()
        np.testing.assert_allclose(np.asarray(getattr(jax_ebm, method)(w)), expected, rtol=1e-5, atol=1e-5)
    z = ebm.constrain(u)
    np.testing.assert_allclose(np.asarray(jax_ebm.unconstrain(jnp.asarray(z.numpy()))), ebm.unconstrain(z).numpy(),
                               rtol=1e-4, atol=1e-4)
    leaves = jax.tree_util.tree_leaves(jax_ebm.prior)
    assert len(leaves) == len(jax_ebm.prior.params) == 2 and all(isinstance(leaf, jax.Array) for leaf in leaves)


# -- bad priors fail up front, naming the argument --------------------------------------------------


@pytest.mark.parametrize(
    "prior, message",
    [
        ("gaussian", "prior must be one of"),
        (3.0, "prior must be a string or a torch.distributions.Distribution"),
        (Normal(torch.zeros(2), 1.0), "prior must have event shape \\(2,\\)"),
        (Independent(Uniform(-torch.ones(3), torch.ones(3)), 1), "prior must have event shape \\(2,\\)"),
        (Independent(Normal(torch.zeros(4, 2), 1.0), 1), "batch shape"),
        (Independent(Bernoulli(0.5 * torch.ones(2)), 1), "prior must be continuous"),
    ],
)
def test_bad_priors_raise_value_errors_naming_the_argument(prior, message):
    with pytest.raises(ValueError, match=message):
        LatentEBM(*_toy_nets(), prior=prior)


def test_bad_priors_on_the_jax_side():
    generator, critic = _toy_nets()
    with pytest.raises(ValueError, match="prior='uniform' with extended_noise_scale"):
        LatentEBM(generator, critic, prior="uniform", extended_noise_scale=0.1)
    untranslatable = LatentEBM(generator, critic, prior=Independent(LogNormal(torch.zeros(2), 1.0), 1))
    with pytest.raises(ValueError, match="prior=.* has no JAX translation: supported are"):
        untranslatable.to_jax()
    jax_ebm = LatentEBM(generator, critic).to_jax()
    pieces = (jax_ebm.generator_fn, jax_ebm.generator_params, jax_ebm.critic_fn, jax_ebm.critic_params)
    settings = {"critic_output": "logit", "base_latent_dim": 2, "data_shape": (2,)}
    for prior, message in [
        (ndist.Gamma(jnp.ones(2)).to_event(1), "is not supported on the JAX side"),
        (ndist.Normal(0.0, 1.0), "prior must have event shape \\(2,\\)"),
        ("box", "prior must be one of"),
        (torch.zeros(2), "prior must be a string, a NumPyro distribution"),
    ]:
        with pytest.raises(ValueError, match=message):
            LatentEBMJax(*pieces, **settings, prior=prior)


# -- our kernels through the front door: chains move in u, draws come back in the support --------
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("sampler", ["mala", "mala-imh"])
def test_front_door_samples_the_box_prior_target(one_torch_thread, backend, sampler):
    # mala-imh's independence steps must propose from the prior in u (the box pushed through
    # T^-1) and weigh it by prior_potential: with N(0, I) in u its stationary law would be wrong.
    ebm, marginals = _box_problem()
    result = ppl_ebm.sample(ebm, sampler, backend, num_chains=64, num_warmup=300, num_samples=400, seed=0,
                            progress_bar=False)
    assert np.all(np.abs(result.latents) <= 1.0)
    assert result.posterior["z"] is result.latents
    assert_moments(result.latents, *_truth(marginals), f"{sampler}/{backend}, box prior")
    generated = ppl_ebm.sample(ebm, sampler, backend, num_chains=4, num_warmup=5, num_samples=5, seed=0,
                               progress_bar=False, return_generated=True)
    np.testing.assert_allclose(generated.generated, generated.latents * ebm.generator.weight.detach().diag().numpy(),
                               rtol=1e-5, atol=1e-6)


def test_front_door_starts_box_prior_chains_where_asked():
    ebm, _ = _box_problem()
    start = np.full((3, 2), 0.5, dtype=np.float32)  # in the prior's support, as result.latents are
    result = ppl_ebm.sample(ebm, "mala", "torch", num_chains=3, num_warmup=0, num_samples=1, seed=0,
                            progress_bar=False, initial_params=start, step_size=1e-8, adapt_step_size=False)
    np.testing.assert_allclose(result.latents[:, 0], start, atol=1e-4)
