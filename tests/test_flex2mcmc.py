"""FlEx2MCMC (Samsonov et al. 2022): Ex2MCMC whose i-SIR proposal is a flow trained in warmup.

The flow's log density is exact both ways (its draws' own pass and the inversion), it starts as
the prior, learns the target in warmup and is frozen after it; the sampler passes Ex2MCMC's
moment checks (closed-form Gaussian, two modes) on both backends and through the PPLs' MCMC."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pyro
import pytest
import torch
from numpyro.infer import MCMC as NumPyroMCMC
from problems import assert_moments, two_mode_problem
from pyro.infer import MCMC as PyroMCMC

import ppl_ebm
from ppl_ebm import LatentEBM
from ppl_ebm.diagnostics.summary import summarize
from ppl_ebm.kernels import flex2mcmc_jax, flex2mcmc_torch
from ppl_ebm.kernels.registry import get_sampler
from ppl_ebm.nets.flows import flow_params, numpyro_transforms
from ppl_ebm.ppl import numpyro_kernels, pyro_kernels
from ppl_ebm.ppl.numpyro_model import numpyro_model
from ppl_ebm.ppl.pyro_model import pyro_model

TINY = dict(num_chains=4, num_warmup=7, num_samples=10, seed=0, progress_bar=False)
RUN = dict(num_chains=256, num_warmup=300, num_samples=400, seed=5, progress_bar=False)
# JAX compiles the flow's training into each chunk program: two layers halve that time.
JAX_FLOW = dict(flow_layers=2)
CENTER, SCALE = np.array([2.0, -1.0]), 0.5  # the shifted target, far from the prior N(0, I)


class ShiftedGaussian(torch.nn.Module):
    """With the identity generator and the N(0, I) prior, the log tilt whose latent target is
    exactly N(CENTER, SCALE^2 I)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("center", torch.tensor(CENTER, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -((x - self.center) ** 2).sum(-1) / (2 * SCALE**2) + 0.5 * (x * x).sum(-1)


@pytest.fixture(scope="module")
def shifted():
    generator = torch.nn.Linear(2, 2)
    with torch.no_grad():
        generator.weight.copy_(torch.eye(2))
        generator.bias.zero_()
    return LatentEBM(generator, ShiftedGaussian(), critic_output="logit", latent_dim=2)


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=1)


def _random_flow(layers: int = 3, width: int = 8):
    """A flow away from the identity: its output layers drawn, as after training."""
    flow = flex2mcmc_torch.identity_flow(2, layers, width)
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for transform in flow.transforms:
            for weight in (transform.arn.layers[-1].weight, transform.arn.layers[-1].bias):
                weight.copy_(0.5 * torch.randn(weight.shape, generator=generator))
    return flow


def _normal_log_prob(z: np.ndarray) -> np.ndarray:
    return -0.5 * (z * z).sum(-1) - np.log(2 * np.pi)


@pytest.mark.parametrize("options, message", [
    ({"flow_layers": 0}, "flow_layers must be an int >= 1"),
    ({"flow_width": 2.5}, "flow_width must be an int >= 1"),
    ({"flow_learning_rate": 0.0}, "flow_learning_rate must be"),
    ({"flow_learning_rate": "fast"}, "flow_learning_rate must be"),
    ({"flow_train_steps": -1}, "flow_train_steps must be an int >= 0"),
    ({"flow_train_steps": True}, "flow_train_steps must be an int >= 0"),
    ({"mala_steps": 0}, "mala_steps must be an int >= 1"),
    ({"num_particles": 1}, "num_particles must be an int >= 2"),
    ({"independence_every": 2}, "Unknown option"),
])
def test_bad_options_are_refused(problem, options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ppl_ebm.sample(problem.ebm, "flex2mcmc", "torch", **TINY, **options)


def test_registry_entry():
    spec = get_sampler("flex2mcmc")
    options = spec.validate({})
    assert (options["num_particles"], options["mala_steps"]) == (10, 3)  # Ex2MCMC's
    # Checkpoints hold the flow and its optimiser (tests/test_draw_store.py resumes it bit for bit);
    # a run over processes is refused (each would train its own flow: tests/test_bad_input.py).
    assert spec.backends == ("torch", "jax") and spec.has("streaming") and not spec.has("processes")


def test_torch_log_q_is_exact_both_ways():
    # Draws score by their own pass (one network pass per layer); any point by inversion.
    flow = _random_flow()
    proposal = flex2mcmc_torch.flow_proposal(flow)
    u, potential = proposal.sample_with_potential(torch.Generator().manual_seed(0), (64, 2), torch.float32, "cpu")
    torch.testing.assert_close(potential, proposal.potential(u), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(potential, -flow.log_prob(u).detach(), rtol=1e-4, atol=1e-4)
    # Change of variables by autograd: log q(G(z)) = log N(z) - log |det dG/dz|.
    z = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    jacobians = torch.stack([torch.autograd.functional.jacobian(flow, row[None])[0, :, 0] for row in z])
    log_q = _normal_log_prob(z.numpy()) - torch.linalg.slogdet(jacobians).logabsdet.numpy()
    np.testing.assert_allclose(-proposal.potential(flow(z).detach()).numpy(), log_q, rtol=1e-4, atol=1e-4)
    assert abs(float(potential.std())) > 0.1  # not the identity: the check has power


def test_jax_log_q_is_exact_both_ways_and_mirrors_torch():
    flow = _random_flow()
    params = flow_params(flow)
    proposal = flex2mcmc_jax.flow_proposal(flow, params)
    score = jax.jit(proposal.potential)  # jitted: NumPyro's flow op by op is slow
    u, potential = jax.jit(proposal.sample_with_potential, static_argnums=(1, 2))(jax.random.key(0), (64, 2),
                                                                                   jnp.float32)
    np.testing.assert_allclose(potential, score(u), rtol=1e-4, atol=1e-4)
    # The same weights score the same points as Pyro's flow.
    torch_potential = flex2mcmc_torch.flow_proposal(flow).potential(torch.tensor(np.array(u)))
    np.testing.assert_allclose(potential, torch_potential.numpy(), rtol=1e-4, atol=1e-4)
    z = jax.random.normal(jax.random.key(1), (16, 2))
    push = numpyro_transforms(flow, params)

    def forward(row):
        for transform in push:
            row = transform(row)
        return row

    log_det = jnp.linalg.slogdet(jax.jit(jax.vmap(jax.jacfwd(forward)))(z))[1]
    log_q = _normal_log_prob(np.asarray(z)) - np.asarray(log_det)
    np.testing.assert_allclose(-score(jax.jit(jax.vmap(forward))(z)), log_q, rtol=1e-4, atol=1e-4)


def test_the_flow_starts_as_the_prior_in_both_backends():
    flow = flex2mcmc_torch.identity_flow(3, 4, 32)
    u = torch.randn(32, 3, generator=torch.Generator().manual_seed(2))
    prior = 0.5 * (u * u).sum(-1) + 1.5 * np.log(2 * np.pi)
    torch.testing.assert_close(flex2mcmc_torch.flow_proposal(flow).potential(u), prior)
    params = flex2mcmc_jax.identity_flow(3, 4, 32)  # the same weights as torch's
    for mine, theirs in zip(jax.tree.leaves(params), jax.tree.leaves(flow_params(flow))):
        np.testing.assert_array_equal(mine, theirs)
    jax_potential = jax.jit(flex2mcmc_jax.flow_proposal(flow, params).potential)(jnp.asarray(u.numpy()))
    np.testing.assert_allclose(jax_potential, prior.numpy(), rtol=1e-5)


def _flow_moments(backend: str, state, width: int = 32, layers: int = 4) -> tuple[np.ndarray, np.ndarray]:
    if backend == "torch":
        draws = flex2mcmc_torch.flow_proposal(state.flow.flow).sample(
            torch.Generator().manual_seed(9), (4000, 2), torch.float32, "cpu").numpy()
    else:
        template = flex2mcmc_jax._template(2, layers, width)
        draw = jax.jit(lambda params: flex2mcmc_jax.flow_proposal(template, params).sample(
            jax.random.key(9), (4000, 2), jnp.float32))
        draws = np.asarray(draw(state.flow.params))
    return draws.mean(0), draws.std(0)


def _flow_weights(backend: str, state) -> list[np.ndarray]:
    if backend == "torch":
        return [p.detach().numpy().copy() for p in state.flow.flow.parameters()]
    return [np.asarray(leaf) for leaf in jax.tree.leaves(state.flow.params)]


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_the_flow_learns_the_target_in_warmup_then_is_frozen(shifted, backend):
    # On N((2, -1), 0.5^2 I) the prior N(0, I) is a poor proposal (i-SIR keeps a fresh particle
    # ~18% of the time); after warmup q must sit near the target, not near the prior, and stay.
    options = get_sampler("flex2mcmc").validate({"flow_layers": 2} if backend == "jax" else {})
    sampler = get_sampler("flex2mcmc").build(backend, options)
    num_warmup, chains = 120, 256
    if backend == "torch":
        from ppl_ebm.kernels.langevin_torch import batched_value_and_grad
        from ppl_ebm.kernels.samplers_torch import langevin_params

        potential_and_grad = batched_value_and_grad(shifted.potential)
        params = langevin_params(options, num_warmup)
        state = sampler.init(torch.randn(chains, 2, generator=torch.Generator().manual_seed(0)), potential_and_grad,
                             params)
        rng = torch.Generator().manual_seed(1)

        def step(state, i):
            with torch.no_grad():
                return sampler.step(rng, state, potential_and_grad, params)
    else:
        from ppl_ebm.kernels.langevin_jax import batched_value_and_grad
        from ppl_ebm.kernels.samplers_jax import langevin_params

        potential_and_grad = batched_value_and_grad(shifted.to_jax().potential)
        params = langevin_params(options, num_warmup)
        state = sampler.init(jax.random.normal(jax.random.key(0), (chains, 2)), potential_and_grad, params)
        jitted = jax.jit(lambda key, state: sampler.step(key, state, potential_and_grad, params))

        def step(state, i):
            return jitted(jax.random.key(i), state)

    start_mean, start_sd = _flow_moments(backend, state, layers=sampler.flow_layers)
    np.testing.assert_allclose(start_mean, 0.0, atol=0.1)
    np.testing.assert_allclose(start_sd, 1.0, atol=0.1)
    for i in range(num_warmup):
        state, _ = step(state, i)
    mean, sd = _flow_moments(backend, state, layers=sampler.flow_layers)
    # Closer to the target than the prior is, by far: the prior is 2.2 and 0.5 away.
    assert np.linalg.norm(mean - CENTER) < 0.25 * np.linalg.norm(CENTER), mean
    assert np.all(np.abs(sd - SCALE) < 0.25 * (1 - SCALE)), sd
    frozen = _flow_weights(backend, state)
    accepted = []
    for i in range(num_warmup, num_warmup + 40):
        state, info = step(state, i)
        if (i + 1) % sampler.ex2mcmc.every == 0:
            accepted.append(float(np.mean(np.asarray(info.acceptance_probability))))
    for before, after in zip(frozen, _flow_weights(backend, state)):
        np.testing.assert_array_equal(before, after)
    assert np.mean(accepted) > 0.6, accepted


@pytest.mark.usefixtures("one_torch_thread")
def test_flex2mcmc_keeps_more_proposals_than_ex2mcmc(shifted):
    # The same target, budget and seed: only the proposal differs.
    run = dict(num_chains=256, num_warmup=200, num_samples=200, seed=2, progress_bar=False)
    ex2 = ppl_ebm.sample(shifted, "ex2mcmc", "torch", **run)
    flex = ppl_ebm.sample(shifted, "flex2mcmc", "torch", **run)
    covariance = SCALE**2 * np.eye(2)
    assert_moments(flex.latents, CENTER, covariance, "flex2mcmc/shifted")
    assert ex2.stats["independence_acceptance"].mean() < 0.3
    assert flex.stats["independence_acceptance"].mean() > ex2.stats["independence_acceptance"].mean() + 0.4
    np.testing.assert_array_equal(flex.stats["grad_evals"], ex2.stats["grad_evals"])  # training costs none
    np.testing.assert_array_equal(flex.stats["potential_evals"], ex2.stats["potential_evals"])


@pytest.mark.usefixtures("one_torch_thread")  # i-SIR's small per-step tensors: threads only wait
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_flex2mcmc_reaches_the_mode_weights(backend):
    # test_independence_moves' two-mode target and budget, which MALA misses by many MCSE.
    ebm, mean, covariance = two_mode_problem()
    result = ppl_ebm.sample(ebm, "flex2mcmc", backend, **RUN, **(JAX_FLOW if backend == "jax" else {}))
    assert_moments(result.latents, mean, covariance, f"flex2mcmc/{backend}")
    assert summarize(result)["rhat_max"] < 1.1
    assert 0.5 < result.stats["independence_acceptance"].mean() < 1  # Ex2MCMC's is ~0.47 here
    assert abs(result.stats["acceptance"].mean() - 0.574) < 0.05


@pytest.mark.usefixtures("one_torch_thread")
def test_flex2mcmc_in_pyro_mcmc(problem):
    pyro.set_rng_seed(3)
    kernel = pyro_kernels.SamplerKernel("flex2mcmc", pyro_model(problem.ebm), num_chains=128)
    mcmc = PyroMCMC(kernel, num_samples=400, warmup_steps=200, disable_progbar=True)
    mcmc.run()
    draws = mcmc.get_samples()["z"].numpy().swapaxes(0, 1)
    assert draws.shape == (128, 400, 2)
    assert_moments(draws, problem.mean, problem.covariance, "pyro MCMC(flex2mcmc)")
    assert 0 < kernel.diagnostics()["acceptance rate"] < 1


def test_flex2mcmc_in_numpyro_mcmc(problem):
    kernel = numpyro_kernels.SamplerKernel("flex2mcmc", numpyro_model(problem.ebm), num_chains=128, **JAX_FLOW)
    mcmc = NumPyroMCMC(kernel, num_warmup=200, num_samples=400, progress_bar=False)
    mcmc.run(jax.random.key(4))
    draws = np.asarray(mcmc.get_samples()["z"]).swapaxes(0, 1)
    assert draws.shape == (128, 400, 2)
    assert_moments(draws, problem.mean, problem.covariance, "numpyro MCMC(flex2mcmc)")


@pytest.mark.usefixtures("one_torch_thread")
def test_until_converged_continues_the_chains(problem):
    # until="converged" passes the final state back in: the flow (a module in torch's state)
    # goes with it, past warmup, so it is not trained again.
    result = ppl_ebm.sample(problem.ebm, "flex2mcmc", "torch", num_chains=16, num_warmup=50, num_samples=50, seed=0,
                            progress_bar=False, until="converged", max_samples=400)
    assert result.latents.shape[0] == 16 and result.latents.shape[1] > 50
    # A gradient a step and 9 particles an i-SIR step, as Ex2MCMC's: the evaluations of one long run.
    steps = 50 + result.latents.shape[1]
    np.testing.assert_array_equal(result.stats["potential_evals"], 1 + steps + steps // 4 * 9)
