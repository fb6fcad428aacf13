"""ppl_ebm.nets.torch_to_jax reproduces torch eval outputs and gradients in JAX."""

from __future__ import annotations

import functools
import gc
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

from ppl_ebm.nets.architectures import conv_critic, conv_generator, toy_critic, toy_generator
from ppl_ebm.nets.torch_to_jax import UnsupportedOperationError, torch_to_jax

BATCH = 7
# Translation sees another batch size than the checks, so apply_fn must not bake it in.
EXAMPLE_BATCH = 5


# ----------------------------------------------------------------------------- modules


class Residual(nn.Module):
    """A user-defined module: fx traces into its forward (residual add, functional calls)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 8)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.SiLU(), nn.Linear(8, 8))
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.inner(x))
        hidden = hidden + self.block(hidden)
        return torch.nn.functional.softplus(self.norm(hidden), beta=2.0) - 0.5 * hidden


class MatmulSum(nn.Module):
    """Parameters used directly (get_attr nodes), matmul and ``.sum(-1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.matrix = nn.Parameter(torch.randn(4, 6))
        self.register_buffer("offset", torch.randn(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.nn.functional.leaky_relu(x @ self.matrix + self.offset, 0.3)
        return (hidden**2).sum(-1) / x.shape[-1] + torch.matmul(x, self.matrix).mean(dim=1)


class ReshapeCat(nn.Module):
    """Shape arithmetic recorded by fx: size()/shape getitem, view/reshape, cat, permute."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = x.reshape(x.shape[0], 3, 2, 2).permute(0, 2, 3, 1).contiguous()
        flat = grid.view(x.size(0), -1)
        joined = torch.cat([flat, torch.exp(-flat.abs())], dim=1)
        pairs = joined.unsqueeze(1).transpose(1, 2).squeeze(-1)
        return self.linear(pairs[:, :12]) * torch.sigmoid(pairs[:, 12:17])


def _warmed_conv_generator() -> nn.Module:
    generator = conv_generator(latent_dim=16, channels=3, base_width=8, image_size=16)
    # Train-mode forwards move the BatchNorm running statistics away from (0, 1), and
    # random affine parameters make sure every BatchNorm term is exercised.
    with torch.no_grad():
        for module in generator.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
        for _ in range(3):
            generator(torch.randn(16, 16))
    return generator


def _warmed_conv_critic() -> nn.Module:
    critic = conv_critic(channels=3, base_width=8, image_size=16, spectral_norm=True)
    # Train-mode forwards run power iterations, so the baked weight differs from the
    # initial one and from the raw parameter.
    with torch.no_grad():
        for _ in range(3):
            critic(torch.randn(4, 3, 16, 16))
    return critic


def _old_style_spectral_norm() -> nn.Module:
    # torch.nn.utils.spectral_norm (hook-based) writes ``weight`` in a forward pre-hook,
    # which fx does not run: the translation must read the hook's eval-mode weight.
    model = nn.Sequential(
        nn.utils.spectral_norm(nn.Linear(2, 16)),
        nn.ELU(),
        nn.utils.spectral_norm(nn.Linear(16, 16)),
        nn.Tanh(),
        nn.utils.spectral_norm(nn.Linear(16, 1)),
    )
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(5, 2))
    return model


@dataclass
class Case:
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


CASES: dict[str, Case] = {
    "toy_generator": Case(toy_generator, (2,)),
    "toy_critic_relu": Case(lambda: toy_critic(activation="relu"), (2,)),
    "toy_critic_leaky_relu": Case(lambda: toy_critic(activation="leaky_relu"), (2,)),
    # Fourier features: a float buffer B (get_attr), F.linear on it, torch.sin / torch.cos, cat.
    "toy_critic_fourier": Case(lambda: toy_critic(width=64, fourier_features=16, fourier_scale=2.0), (2,)),
    "conv_generator": Case(_warmed_conv_generator, (16,)),
    "conv_critic_spectral_norm": Case(_warmed_conv_critic, (3, 16, 16)),
    "residual_module": Case(Residual, (3,)),
    "matmul_parameter_sum": Case(MatmulSum, (4,)),
    "reshape_cat": Case(ReshapeCat, (12,)),
    "old_style_spectral_norm": Case(_old_style_spectral_norm, (2,)),
}


@dataclass
class Translated:
    """One case, translated once; the JAX results are computed lazily and shared by tests."""

    module: nn.Module
    apply_fn: Callable
    params: dict
    input_shape: tuple[int, ...]

    def inputs(self, *batch: int, seed: int) -> torch.Tensor:
        return torch.randn((*batch, *self.input_shape), generator=torch.Generator().manual_seed(seed))

    def torch_eval(self, x: torch.Tensor) -> np.ndarray:
        self.module.eval()
        with torch.no_grad():
            return self.module(x).numpy()

    @functools.cached_property
    def batch_results(self) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        """``(x, output, d sum(output) / dx)`` from one jitted call."""

        def total(x: jax.Array) -> tuple[jax.Array, jax.Array]:
            output = self.apply_fn(self.params, x)
            return jnp.sum(output), output

        # One compilation per case keeps the file fast; it exercises jit, the forward and
        # the input gradient at a batch size (7) other than the example's (5).
        evaluate = jax.jit(jax.value_and_grad(total, has_aux=True))
        x = self.inputs(BATCH, seed=1)
        (_, output), input_gradient = evaluate(jnp.asarray(x.numpy()))
        return x, np.asarray(output), np.asarray(input_gradient)


@pytest.fixture(params=list(CASES))
def translated(request: pytest.FixtureRequest) -> Translated:
    return _translate_case(request.param)


@functools.cache
def _translate_case(name: str) -> Translated:
    torch.manual_seed(0)
    case = CASES[name]
    module = case.build()
    example = torch.randn((EXAMPLE_BATCH, *case.input_shape))
    apply_fn, params = torch_to_jax(module, example)
    return Translated(module, apply_fn, params, case.input_shape)


def _assert_close(actual: np.ndarray, expected: np.ndarray) -> None:
    # Both sides are float32 with reductions of at most a few hundred terms (3x3 convs
    # over <= 64 channels, 512-wide Linear layers), so relative rounding differences stay
    # around 1e-6; atol scaled by the output magnitude covers entries that cancel to ~0.
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# ------------------------------------------------------------------------------- tests


def test_outputs_match_torch_eval(translated: Translated) -> None:
    x, output, _ = translated.batch_results
    expected = translated.torch_eval(x)
    assert output.shape == expected.shape
    assert output.dtype == np.float32
    _assert_close(output, expected)


def test_input_gradients_match_torch_autograd(translated: Translated) -> None:
    x, _, input_gradient = translated.batch_results
    translated.module.eval()
    x_torch = x.clone().requires_grad_(True)
    translated.module(x_torch).sum().backward()
    _assert_close(input_gradient, x_torch.grad.numpy())


def test_params_are_a_flat_float32_pytree(translated: Translated) -> None:
    assert translated.params, "every case has weights"
    assert all(isinstance(name, str) for name in translated.params)
    assert all(
        isinstance(value, jax.Array) and value.dtype == jnp.float32 for value in translated.params.values()
    )


def test_gradients_with_respect_to_params_match_torch() -> None:
    # A parameter and a float buffer read directly (get_attr nodes) both become params
    # entries; the buffer is differentiable in JAX even though torch gives it no grad.
    translated = _translate_case("matmul_parameter_sum")
    x = translated.inputs(BATCH, seed=6)
    gradients = jax.jit(jax.grad(lambda params: jnp.sum(translated.apply_fn(params, x.numpy()))))(translated.params)
    module = translated.module.eval()
    module.zero_grad()
    module(x).sum().backward()
    assert set(gradients) == {"matrix", "offset"}
    _assert_close(np.asarray(gradients["matrix"]), module.matrix.grad.numpy())


@pytest.mark.parametrize("case", ["toy_critic_leaky_relu", "conv_critic_spectral_norm", "reshape_cat"])
def test_vmap_over_chains(case: str) -> None:
    # Samplers map over chains, each call seeing a full batch (3 here). A few cases
    # suffice: every one compiles anew, and shape arithmetic (reshape_cat) and convs are
    # where a batch axis could go wrong.
    translated = _translate_case(case)
    x = translated.inputs(2, 3, seed=4)
    mapped = jax.jit(jax.vmap(translated.apply_fn, in_axes=(None, 0)))
    actual = np.asarray(mapped(translated.params, x.numpy()))
    _assert_close(actual, np.stack([translated.torch_eval(chain) for chain in x]))


def test_per_example_vmap_on_an_mlp() -> None:
    # Unbatched (2,) inputs work for Linear stacks, as in torch.
    torch.manual_seed(0)
    critic = toy_critic(width=32)
    apply_fn, params = torch_to_jax(critic, torch.randn(BATCH, 2))
    x = torch.randn(5, 2)
    per_example = jax.jit(jax.vmap(jax.grad(lambda z: apply_fn(params, z)[0])))(jnp.asarray(x.numpy()))
    x.requires_grad_(True)
    critic(x).sum().backward()
    _assert_close(np.asarray(per_example), x.grad.numpy())


def test_baked_spectral_norm_weight_is_the_eval_weight() -> None:
    translated = _translate_case("conv_critic_spectral_norm")
    critic, params = translated.module.eval(), translated.params
    with torch.no_grad():
        baked = critic[0].weight.numpy()
        raw = critic[0].parametrizations.weight.original.numpy()
    np.testing.assert_allclose(np.asarray(params["0.weight"]), baked, rtol=1e-6)
    assert not np.allclose(baked, raw)


def test_translation_leaves_the_module_as_it_was() -> None:
    torch.manual_seed(0)
    # Training flags, weights, BatchNorm statistics and spectral-norm power-iteration
    # vectors (u, v of both spectral_norm flavours) must all be untouched.
    modules_and_inputs = [
        (_warmed_conv_critic(), torch.randn(2, 3, 16, 16)),
        (_warmed_conv_generator(), torch.randn(2, 16)),
        (_old_style_spectral_norm(), torch.randn(2, 2)),
    ]
    for module, example in modules_and_inputs:
        module.train()
        module[1].eval()  # a mixed state must come back as it was too
        before = {name: value.clone() for name, value in module.state_dict().items()}
        torch_to_jax(module, example)
        assert module.training and not module[1].training
        assert all(submodule.training for index, submodule in enumerate(module) if index != 1)
        after = module.state_dict()
        assert all(torch.equal(before[name], after[name]) for name in before)


def _precisions_in_gradient_program(apply_fn: Callable, params: dict, example: jnp.ndarray) -> set[str]:
    program = jax.jit(lambda p, x: jax.grad(lambda x: apply_fn(p, x).sum())(x)).lower(params, example)
    return set(re.findall(r"<precision (\w+)>", program.as_text()))


def test_precision_is_full_fp32_unless_jax_config_chooses_one() -> None:
    # HIGHEST matches torch's fp32 by default. A precision chosen in JAX's config (TF32 on a
    # GPU, like torch's allow_tf32) must reach every matmul and convolution, forward and
    # gradient: a hard-coded HIGHEST once ran a "TF32" GPU benchmark in full fp32. The CPU
    # ignores the setting numerically, so the lowered program's precision labels are checked.
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    apply_fn, params = torch_to_jax(module, torch.randn(EXAMPLE_BATCH, 3, 8, 8))
    example = jnp.zeros((BATCH, 3, 8, 8))
    assert _precisions_in_gradient_program(apply_fn, params, example) == {"HIGHEST"}
    with jax.default_matmul_precision("tensorfloat32"):
        assert _precisions_in_gradient_program(apply_fn, params, example) == {"HIGH"}
    with jax.default_matmul_precision("bfloat16"):
        assert _precisions_in_gradient_program(apply_fn, params, example) == {"DEFAULT"}


def test_an_unchanged_module_keeps_its_function_and_a_changed_one_gets_a_new_one() -> None:
    # JAX's caches key on apply_fn's identity, so translating the same module again must return
    # the same function (with the weights it has now), and a new one once its structure changed.
    torch.manual_seed(0)
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    example = torch.randn(EXAMPLE_BATCH, 3, 8, 8)
    inputs = torch.randn(BATCH, 3, 8, 8)

    def translated_matches_torch():
        apply_fn, params = torch_to_jax(module, example)
        with torch.no_grad():
            expected = module(inputs).numpy()
        np.testing.assert_allclose(np.asarray(apply_fn(params, inputs.numpy())), expected, rtol=1e-5, atol=1e-5)
        return apply_fn

    first = translated_matches_torch()
    with torch.no_grad():
        module[0].weight.mul_(2.0)
    assert translated_matches_torch() is first
    previous = first
    for change in (lambda: setattr(module[1], "negative_slope", 0.5),
                   lambda: module.insert(2, nn.Tanh()),
                   lambda: setattr(module[0], "padding", (1, 1)) or module.__setitem__(-1, nn.Linear(4 * 8 * 8, 1))):
        change()
        current = translated_matches_torch()
        assert current is not previous
        previous = current


@pytest.mark.parametrize("build", [lambda: nn.LeakyReLU(0.1), lambda: nn.Sequential(nn.Linear(2, 4), nn.ELU(0.5))])
def test_the_kept_translation_does_not_keep_its_module_alive(build: Callable[[], nn.Module]) -> None:
    # The cache's keys are weak; a translated function holding its module (as a bare
    # activation's settings once were) would keep every translated network in memory.
    module = build()
    torch_to_jax(module, torch.randn(3, 2))
    alive = weakref.ref(module)
    del module
    gc.collect()
    assert alive() is None


class WithConstants(nn.Module):
    """Tensor literals in forward: fx lifts them to get_attr constants."""

    def __init__(self) -> None:
        super().__init__()
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x) * torch.tensor([1.0, 2.0]) + torch.arange(2)


def test_tensor_constants_and_dropout() -> None:
    torch.manual_seed(0)
    module = WithConstants().train()
    apply_fn, params = torch_to_jax(module, torch.randn(3, 2))
    # The float literal is a param, the integer one a constant; neither lands on the module.
    assert list(params) == ["_tensor_constant0"]
    assert not [name for name in vars(module) if "constant" in name]
    x = torch.randn(4, 2)
    with torch.no_grad():
        expected = module.eval()(x).numpy()
    _assert_close(np.asarray(apply_fn(params, x.numpy())), expected)


@pytest.mark.parametrize(
    "build",
    [
        lambda: nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1),
        lambda: nn.ConvTranspose2d(4, 6, 4, stride=3, groups=2, dilation=2),
        lambda: nn.ConvTranspose2d(4, 2, (3, 5), stride=(1, 2), padding=(2, 3), output_padding=(0, 1)),
        lambda: nn.Conv2d(4, 6, 4, padding="same", dilation=2, groups=2),
        lambda: nn.Conv2d(4, 6, 3, stride=(2, 1), padding=(0, 2), bias=False),
        # Weightless or per-channel layers share one compilation.
        lambda: nn.Sequential(
            nn.BatchNorm2d(4, track_running_stats=False),
            nn.GELU(approximate="tanh"),
            nn.GroupNorm(2, 4),
            nn.Softplus(beta=2.0, threshold=1.0),
            nn.ELU(alpha=0.5),
        ),
    ],
    ids=[
        "conv_transpose_output_padding",
        "conv_transpose_groups_dilation",
        "conv_transpose_rectangular",
        "conv_same_dilation_groups",
        "conv_strided_no_bias",
        "batch_norm_batch_statistics_gelu_tanh_group_norm_softplus_threshold_elu",
    ],
)
def test_single_layer_settings(build: Callable[[], nn.Module]) -> None:
    # A bare leaf module is the root for the conv cases, which fx alone cannot trace for
    # ConvTranspose2d.
    torch.manual_seed(0)
    layer = build()
    x = torch.randn(3, 4, 9, 10)
    apply_fn, params = torch_to_jax(layer, x)
    with torch.no_grad():
        expected = layer.eval()(x).numpy()
    _assert_close(np.asarray(jax.jit(apply_fn)(params, x.numpy())), expected)


class UsesFFT(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.fft(x).real


class UsesSort(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sort(x, dim=-1).values.sum(-1)


class UsesLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.sum() > 0 else -x


@pytest.mark.parametrize(
    ("module_type", "named"),
    [
        (UsesFFT, "torch.fft.fft (call_function)"),
        (UsesSort, "torch.sort (call_function)"),
        (UsesLSTM, "torch.nn.LSTM (call_module 'rnn')"),
        (DataDependent, "torch.fx could not trace DataDependent"),
    ],
    ids=["fft", "sort", "lstm", "data_dependent_control_flow"],
)
def test_unsupported_operations_are_named_at_translation_time(module_type: type[nn.Module], named: str) -> None:
    torch.manual_seed(0)
    with pytest.raises(UnsupportedOperationError) as raised:
        torch_to_jax(module_type(), torch.randn(3, 4))
    message = str(raised.value)
    assert named in message
    assert "backend='torch'" in message
    if module_type is not DataDependent:
        assert "Supported modules: nn.Linear" in message
