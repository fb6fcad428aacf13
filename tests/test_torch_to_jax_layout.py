"""ppl_ebm.nets.torch_to_jax computes convolutions channels-last (NHWC/HWIO) but keeps torch's NCHW interface.

Correctness only: the translated conv nets agree with torch (outputs, input gradients,
parameter gradients, forward-mode derivatives), also inside ``jax.lax.scan`` (where the
samplers evaluate them) and under ``jax.vmap``, and so does a module mixing every
layout-sensitive operation the translator supports between its convolutions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ppl_ebm.nets.architectures import conv_critic, conv_generator
from ppl_ebm.nets.torch_to_jax import torch_to_jax

LATENT = 8


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    # float32 on both sides, reductions of at most a few hundred terms (as in test_torch_to_jax).
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


def _warm_batch_norms(module: nn.Module, example: torch.Tensor) -> nn.Module:
    # Random affine parameters and running statistics away from (0, 1), so that every
    # BatchNorm term is exercised; train-mode forwards also run spectral-norm iterations.
    with torch.no_grad():
        for submodule in module.modules():
            if isinstance(submodule, (nn.BatchNorm2d, nn.GroupNorm)) and submodule.affine:
                submodule.weight.uniform_(0.5, 1.5)
                submodule.bias.normal_(0.0, 0.2)
        module.train()
        for _ in range(3):
            module(example)
    return module.eval()


def _generator(spectral: bool = True) -> nn.Module:
    return _warm_batch_norms(conv_generator(LATENT, 3, base_width=4, image_size=16), torch.randn(8, LATENT))


def _critic(spectral_norm: bool = True) -> nn.Module:
    critic = conv_critic(3, base_width=4, image_size=16, spectral_norm=spectral_norm)
    return _warm_batch_norms(critic, torch.randn(4, 3, 16, 16))


class LayoutMix(nn.Module):
    """Every layout-sensitive operation between convolutions that the translator supports.

    Convolutions (module and functional, transposed), BatchNorm2d with running and batch
    statistics, GroupNorm, broadcasting with a (C, 1, 1) parameter, a residual add of a
    channels-first tensor, channel and height concatenation, reductions over channel,
    height or spatial axes (with and without keepdim), shape queries, indexing, permute,
    reshape and flatten.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.norm = nn.BatchNorm2d(6)
        self.group_norm = nn.GroupNorm(3, 6)
        self.scale = nn.Parameter(torch.rand(6, 1, 1) + 0.5)
        self.kernel = nn.Parameter(0.2 * torch.randn(4, 12, 3, 3))
        self.up = nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)
        self.batch_norm = nn.BatchNorm2d(3, track_running_stats=False)
        self.head = nn.Linear(3 * 8 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norm(self.conv(x)), 0.2)
        h = self.group_norm(h) * self.scale + 0.1
        h = h + torch.cat([x, x], dim=1)  # channels-last + channels-first
        h = h - h.mean(1, keepdim=True)
        h = torch.cat([h, torch.sqrt(h.abs() + 1.0)], dim=1)
        h = F.conv2d(h, self.kernel, stride=2, padding=1)  # (N, 4, 4, 4)
        pooled = h.mean(dim=(2, 3))  # (N, 4)
        columns = torch.sum(h, 2)  # (N, 4, 4): the kept (C, W) axes in torch order
        h = torch.cat([h, torch.tanh(h)], dim=2)  # (N, 4, 8, 4)
        up = self.batch_norm(self.up(h))  # (N, 3, 16, 8)
        n, channels = up.size(0), up.shape[1]
        picked = up[:, :, ::2].permute(0, 2, 3, 1).reshape(n, -1)  # (N, 8 * 8 * 3 / 2)
        return torch.cat(
            [self.head(picked[:, : channels * 8 * 4]), pooled, columns.flatten(1), up.sum((1, 2, 3))[:, None]],
            dim=1,
        )


def _layout_mix() -> nn.Module:
    torch.manual_seed(3)
    return _warm_batch_norms(LayoutMix(), torch.randn(4, 3, 8, 8))


CASES: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "conv_generator": (_generator, (LATENT,)),
    "conv_critic_spectral_norm": (_critic, (3, 16, 16)),
    "layout_mix": (_layout_mix, (3, 8, 8)),
}


@functools.cache
def _translated(case: str) -> tuple[nn.Module, Callable, dict, tuple[int, ...]]:
    torch.manual_seed(0)
    build, input_shape = CASES[case]
    module = build()
    apply_fn, params = torch_to_jax(module, torch.randn(5, *input_shape))
    return module, apply_fn, params, input_shape


def _inputs(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _torch_value_and_grad(module: nn.Module, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    x = x.clone().requires_grad_(True)
    output = module.eval()(x)
    output.sum().backward()
    return output.detach().numpy(), x.grad.numpy()


def test_generator_and_critic_inside_scan() -> None:
    # The latent EBM's shape, as the samplers run it: a lax.scan whose body evaluates
    # critic(generator(z)) plus a Gaussian prior and its gradient, and moves z along it.
    # torch repeats the same steps; the images, the critic's values and input gradient, the
    # potential and its gradient must agree at every step.
    generator, generator_fn, generator_params, _ = _translated("conv_generator")
    critic, critic_fn, critic_params, _ = _translated("conv_critic_spectral_norm")
    z0 = _inputs(4, LATENT, seed=3)
    step_size, steps = 0.05, 3

    def critic_total(images: jax.Array) -> jax.Array:
        return jnp.sum(critic_fn(critic_params, images))

    def potential(z: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        images = generator_fn(generator_params, z)
        return 0.5 * jnp.sum(z**2) + critic_total(images), (images, critic_fn(critic_params, images))

    def body(z: jax.Array, _: None) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        (value, (images, critic_values)), gradient = jax.value_and_grad(potential, has_aux=True)(z)
        return z - step_size * gradient, (value, gradient, images, critic_values, jax.grad(critic_total)(images))

    scan = jax.jit(lambda z: jax.lax.scan(body, z, None, length=steps))
    z_final, results = scan(jnp.asarray(z0.numpy()))

    z = z0.clone()
    for step in range(steps):
        z.requires_grad_(True)
        images = generator(z)
        images.retain_grad()
        critic_values = critic(images)
        value = 0.5 * (z**2).sum() + critic_values.sum()
        value.backward()
        expected = (value, z.grad, images, critic_values, images.grad)
        for actual, wanted in zip(results, expected):
            _assert_close(actual[step], wanted.detach().numpy())
        z = (z - step_size * z.grad).detach()
    _assert_close(z_final, z.numpy())


def test_layout_mix_inside_scan_under_vmap() -> None:
    # Every layout-sensitive operation, in a scan body mapping over chains (a batch each).
    module, apply_fn, params, input_shape = _translated("layout_mix")
    xs = _inputs(2, 2, 3, *input_shape, seed=1)  # (steps, chains, batch, C, H, W)

    def total(x: jax.Array) -> tuple[jax.Array, jax.Array]:
        output = apply_fn(params, x)
        return jnp.sum(output), output

    def body(carry: jax.Array, x: jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        (values, outputs), gradients = jax.vmap(jax.value_and_grad(total, has_aux=True))(x)
        return carry + jnp.sum(values), (outputs, gradients)

    _, (outputs, gradients) = jax.jit(lambda xs: jax.lax.scan(body, jnp.zeros(()), xs))(jnp.asarray(xs.numpy()))
    outputs, gradients = np.asarray(outputs), np.asarray(gradients)
    for x, output, gradient in zip(
        xs.flatten(0, 1), outputs.reshape(-1, *outputs.shape[2:]), gradients.reshape(-1, *gradients.shape[2:])
    ):
        expected_output, expected_gradient = _torch_value_and_grad(module, x)
        _assert_close(output, expected_output)
        _assert_close(gradient, expected_gradient)


def test_parameter_gradients_match_torch() -> None:
    # The convolutions' derivative is written by hand (a custom_jvp): the kernel and bias
    # gradients (Conv2d, functional conv2d, ConvTranspose2d, norms) must still be torch's.
    module, apply_fn, params, input_shape = _translated("layout_mix")
    x = _inputs(3, *input_shape, seed=4)
    gradients = jax.jit(jax.grad(lambda params: jnp.sum(apply_fn(params, x.numpy()) ** 2)))(params)
    module.eval().zero_grad()
    (module(x) ** 2).sum().backward()
    expected = {name: parameter.grad.numpy() for name, parameter in module.named_parameters() if name in gradients}
    largest = max(float(np.abs(gradient).max()) for gradient in expected.values())
    for name, gradient in expected.items():
        if np.abs(gradient).max() < 1e-5 * largest:
            # Zero up to rounding, e.g. the bias of a conv feeding a batch-statistics
            # BatchNorm: both sides must be rounding noise on the scale of the others.
            assert np.abs(np.asarray(gradients[name])).max() < 1e-5 * largest, name
        else:
            _assert_close(gradients[name], gradient)
    assert len(expected) >= 6


def test_forward_mode_matches_torch() -> None:
    module, apply_fn, params, input_shape = _translated("layout_mix")
    x, tangent = _inputs(3, *input_shape, seed=5), _inputs(3, *input_shape, seed=6)
    output, output_tangent = jax.jit(lambda x, t: jax.jvp(lambda x: apply_fn(params, x), (x,), (t,)))(
        x.numpy(), tangent.numpy()
    )
    expected, expected_tangent = torch.autograd.functional.jvp(module.eval(), x, tangent)
    _assert_close(output, expected.detach().numpy())
    _assert_close(output_tangent, expected_tangent.detach().numpy())


def test_unbatched_image_input() -> None:
    # torch convolutions take one (C, H, W) image too; vmap over images uses that.
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.ConvTranspose2d(4, 2, 3, stride=2), nn.Tanh(), nn.Flatten(0)
    ).eval()
    apply_fn, params = torch_to_jax(module, torch.randn(3, 7, 7))
    xs = _inputs(4, 3, 7, 7, seed=7)
    outputs, gradients = jax.jit(
        jax.vmap(jax.value_and_grad(lambda x: jnp.sum(apply_fn(params, x) ** 2), has_aux=False))
    )(xs.numpy())
    direct = apply_fn(params, xs[0].numpy())
    for x, output, gradient in zip(xs, outputs, gradients):
        x = x.clone().requires_grad_(True)
        value = (module(x) ** 2).sum()
        value.backward()
        _assert_close(output, value.detach().numpy())
        _assert_close(gradient, x.grad.numpy())
    with torch.no_grad():
        _assert_close(direct, module(xs[0]).numpy())


def _convolutions(jaxpr: jax.extend.core.Jaxpr) -> list:
    found = []
    for equation in jaxpr.eqns:
        if equation.primitive.name == "conv_general_dilated":
            found.append(equation.params["dimension_numbers"])
        for value in equation.params.values():
            for inner in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(inner, jax.extend.core.ClosedJaxpr):
                    found += _convolutions(inner.jaxpr)
                elif isinstance(inner, jax.extend.core.Jaxpr):
                    found += _convolutions(inner)
    return found


@pytest.mark.parametrize("case", ["conv_generator", "conv_critic_spectral_norm"])
def test_value_and_input_gradient_convolve_channels_last(case: str) -> None:
    # What makes the scan fast on XLA:CPU: every convolution of the potential's value and
    # input gradient, the transposed ones included, is NHWC x HWIO -> NHWC. (Channels-first
    # or HWOI-labelled ones run many times slower inside a loop body, jax-ml/jax#12868.)
    _, apply_fn, params, input_shape = _translated(case)
    jaxpr = jax.make_jaxpr(jax.value_and_grad(lambda x: jnp.sum(apply_fn(params, x))))(jnp.zeros((2, *input_shape)))
    specs = {(tuple(d.lhs_spec), tuple(d.rhs_spec), tuple(d.out_spec)) for d in _convolutions(jaxpr.jaxpr)}
    nhwc, hwio = (0, 3, 1, 2), (3, 2, 0, 1)
    assert specs == {(nhwc, hwio, nhwc)}
