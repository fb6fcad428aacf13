"""The latent EBM: energy kinds, temperature, extended generator, shape errors, torch = JAX."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import ppl_ebm
from ppl_ebm.nets import architectures as networks
from ppl_ebm.targets.latent_ebm import LatentEBM


def _toy_pair(seed=0, activation="relu"):
    torch.manual_seed(seed)
    return networks.toy_generator(activation=activation), networks.toy_critic(activation=activation)


def test_potential_is_ddls_energy():
    generator, critic = _toy_pair()
    ebm = LatentEBM(generator, critic)
    z = torch.randn(5, 2)
    expected = 0.5 * (z**2).sum(-1) + math.log(2 * math.pi) - critic(generator(z)).squeeze(-1)
    torch.testing.assert_close(ebm.potential(z), expected)
    assert ebm.latent_dim == 2 and ebm.data_shape == (2,)


def test_critic_output_kinds_agree():
    generator, critic = _toy_pair(1)
    z = torch.randn(6, 2)
    logit = LatentEBM(generator, critic, "logit").potential(z)
    probability_critic = torch.nn.Sequential(critic, torch.nn.Sigmoid())
    from_probability = LatentEBM(generator, probability_critic, "probability").potential(z)
    torch.testing.assert_close(from_probability, logit, rtol=1e-4, atol=1e-4)
    energy_critic = torch.nn.Sequential(critic, torch.nn.Linear(1, 1))
    with torch.no_grad():
        energy_critic[1].weight.fill_(-1.0)
        energy_critic[1].bias.zero_()
    torch.testing.assert_close(LatentEBM(generator, energy_critic, "energy").potential(z), logit)


def test_saturated_probability_gives_finite_potential():
    generator = torch.nn.Linear(2, 2)
    critic = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Sigmoid())
    with torch.no_grad():
        critic[0].weight.fill_(1e4)
    ebm = LatentEBM(generator, critic, "probability")
    potential, grad = ebm.potential_and_grad(torch.randn(64, 2) * 10)
    assert torch.isfinite(potential).all() and torch.isfinite(grad).all()


def test_temperature_scales_the_whole_energy():
    generator, critic = _toy_pair(2)
    z = torch.randn(4, 2)
    cold = LatentEBM(generator, critic, temperature=0.5).potential(z)
    torch.testing.assert_close(cold, 2.0 * LatentEBM(generator, critic).potential(z))


def test_extended_generator_adds_data_sized_latent():
    generator, critic = _toy_pair(3)
    ebm = LatentEBM(generator, critic, extended_noise_scale=0.1)
    assert ebm.latent_dim == 4
    z = torch.randn(3, 4)
    torch.testing.assert_close(ebm.generate(z), generator(z[:, :2]) + 0.1 * z[:, 2:])


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda g, c: LatentEBM(g, c, latent_dim=5), "does not accept latents"),
        (lambda g, c: LatentEBM(g, torch.nn.Linear(3, 1)), "does not fit the critic"),
        (lambda g, c: LatentEBM(g, torch.nn.Linear(2, 4)), "one value per sample"),
        (lambda g, c: LatentEBM(g, c, critic_output="sigmoid"), "critic_output must be one of"),
        (lambda g, c: LatentEBM(g, c, critic_output="probability"), "outside \\[0, 1\\]"),
        (lambda g, c: LatentEBM(g, c, temperature=0.0), "temperature"),
        (lambda g, c: LatentEBM(g, c, extended_noise_scale=-1.0), "extended_noise_scale"),
        (lambda g, c: LatentEBM(torch.nn.Tanh(), c), "Cannot infer latent_dim"),
        (lambda g, c: LatentEBM("generator", c), "torch.nn.Module"),
    ],
)
def test_bad_models_fail_up_front_with_clear_errors(make, message):
    generator, critic = _toy_pair(4)
    with torch.no_grad():  # make the probability check meaningful: raw outputs far from [0, 1]
        critic[-1].bias.fill_(5.0)
    with pytest.raises((ValueError, TypeError), match=message):
        make(generator, critic)


def _zoo_and_user_ebms():
    torch.manual_seed(0)
    yield "toy_relu", LatentEBM(*_toy_pair(5))
    yield "toy_leaky", LatentEBM(*_toy_pair(6, "leaky_relu"))
    generator = networks.conv_generator(latent_dim=16, channels=3, base_width=8, image_size=16)
    generator.train()
    with torch.no_grad():  # move BatchNorm's running statistics away from 0/1
        for _ in range(3):
            generator(torch.randn(32, 16))
    critic = networks.conv_critic(channels=3, base_width=8, image_size=16, spectral_norm=True)
    yield "conv_sn", LatentEBM(generator, critic, extended_noise_scale=0.05)
    yield "gaussian", ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4).ebm

    class UserCritic(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = torch.nn.Linear(2, 16)
            self.mix = torch.nn.Parameter(torch.randn(16, 16) / 4)

        def forward(self, x):
            h = torch.tanh(self.inner(x))
            return (h @ self.mix + h).sum(-1) * 0.3

    yield "user", LatentEBM(networks.toy_generator(), UserCritic(), critic_output="energy")


@pytest.mark.parametrize("name, ebm", list(_zoo_and_user_ebms()))
def test_torch_and_jax_potentials_and_gradients_agree(name, ebm):
    jax_ebm = ebm.to_jax()
    z = torch.randn(9, ebm.latent_dim)
    potential, grad = ebm.potential_and_grad(z)
    jax_potential, jax_grad = jax.jit(jax_ebm.potential_and_grad)(jnp.asarray(z.numpy()))
    # float32 through up to ~10 layers: relative 1e-4 of the values' scale.
    scale = float(potential.abs().max()) + 1.0
    np.testing.assert_allclose(np.asarray(jax_potential), potential.numpy(), rtol=1e-4, atol=1e-4 * scale)
    grad_scale = float(grad.abs().max()) + 1.0
    np.testing.assert_allclose(np.asarray(jax_grad), grad.numpy(), rtol=1e-4, atol=1e-4 * grad_scale)
    generated = np.asarray(jax_ebm.generate(jnp.asarray(z.numpy())))
    np.testing.assert_allclose(generated, ebm.generate(z).detach().numpy(), rtol=1e-4, atol=1e-4)


def test_numpyro_model_potential_equals_jax_potential():
    from numpyro.infer.util import initialize_model

    from ppl_ebm.ppl.numpyro_model import numpyro_model

    ebm = LatentEBM(*_toy_pair(7), temperature=0.7).to_jax()
    _, potential_fn, _, _ = initialize_model(jax.random.key(0), numpyro_model(ebm))
    z = jax.random.normal(jax.random.key(1), (2,))
    np.testing.assert_allclose(float(potential_fn({"z": z})), float(ebm.potential(z[None])[0]), rtol=1e-5)
