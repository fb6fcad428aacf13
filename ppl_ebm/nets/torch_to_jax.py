"""Evaluate a torch module in JAX with the same weights.

``torchax`` does not import with the torch this project pins, so the JAX backend
translates the module itself: :func:`torch.fx.symbolic_trace` records the forward
pass as a graph of module calls, functions and tensor methods, and every node is
mapped to a ``jax.numpy`` / ``jax.lax`` equivalent. The weights are read once, at
translation time, in eval mode; the result is a pure function of ``(params, x)``
that ``jax.jit``, ``jax.grad`` and ``jax.vmap`` can transform.

Layout: the function takes and returns torch (channels-first, NCHW) arrays, but computes
its convolutions channels-last (NHWC activations, HWIO kernels). XLA:CPU runs NCHW
convolutions and their gradients inside a ``lax.scan``/``while`` body tens of times slower
than outside one (jax-ml/jax#12868), and the samplers evaluate the potential in such a
loop. A convolution's output is kept as a :class:`_ChannelsLast` value (an NHWC array
standing for the NCHW tensor torch has there); operations that do not care about the
layout (element-wise ones, BatchNorm/GroupNorm, convolutions, channel concatenation,
reductions, shape queries) work on it directly, and every other operation (view, flatten,
Linear, indexing, the output, ...) first gets it back in torch layout, so each
translation stays exact whatever the graph does between convolutions. The convolutions'
derivative is spelled out (:func:`_channels_last_conv`) so that the input gradient's
convolutions are NHWC x HWIO as well.
"""

from __future__ import annotations

import builtins
import copy
import operator
import weakref
from functools import partial
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from jax import lax
from jax.custom_derivatives import SymbolicZero
from torch import nn
from torch.nn.utils.spectral_norm import SpectralNorm as _OldSpectralNorm
from torch.nn.utils.weight_norm import WeightNorm as _OldWeightNorm

__all__ = ["UnsupportedOperationError", "register_module_translation", "torch_to_jax"]

Array = jax.Array


def _precision() -> lax.Precision | None:
    """The precision of the translated matmuls and convolutions, read when they are traced.

    XLA's default on a GPU/TPU is reduced precision (TF32/bf16 passes), while torch's CPU
    results are full fp32 and the energies and gradients must match them: so HIGHEST unless
    the user has chosen a default in JAX's config (``jax_default_matmul_precision``, e.g.
    ``"tensorfloat32"`` as torch's ``allow_tf32``), which then applies. A fixed HIGHEST
    overrode that choice and ran a GPU benchmark's "TF32" JAX path in full fp32.
    """
    return None if jax.config.jax_default_matmul_precision is not None else lax.Precision.HIGHEST


# env key of the forward's result; not a valid Python identifier, so no fx node has it.
_OUTPUT = "<output>"
# The last translation of each module object: its structure and its apply_fn. Translating an
# unchanged module again returns the same apply_fn (with fresh params), because JAX's caches key
# on the function's identity (a LatentEBMJax's tree structure holds it): without this, every
# sample() of a torch model on the JAX backend traced and compiled its programs anew.
_TRANSLATIONS: weakref.WeakKeyDictionary[nn.Module, tuple[Hashable, Callable[..., Any]]] = (
    weakref.WeakKeyDictionary()
)
_TORCH_BACKEND_HINT = "rewrite the module with supported operations or use backend='torch'"


class UnsupportedOperationError(NotImplementedError):
    """A module uses an operation :func:`torch_to_jax` cannot translate."""


# --------------------------------------------------------------------------- helpers


def _to_jax(tensor: torch.Tensor) -> Array:
    """Copy a floating tensor to a float32 JAX array."""
    return jnp.asarray(tensor.detach().to("cpu", torch.float32).numpy())


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _shape_arguments(arguments: tuple[Any, ...], keywords: dict[str, Any], name: str) -> tuple[Any, ...]:
    # torch accepts both x.view(2, 3) and x.view((2, 3)) (and shape=/dims= keywords).
    if name in keywords:
        return tuple(keywords[name])
    if len(arguments) == 1 and isinstance(arguments[0], (tuple, list)):
        return tuple(arguments[0])
    return tuple(arguments)


def _axes(dim: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    return tuple(dim) if isinstance(dim, (tuple, list)) else dim


# ------------------------------------------------------------------- channels-last layout


class _ChannelsLast:
    """A torch-layout ``(*batch, C, H, W)`` tensor stored channels-last as ``(*batch, H, W, C)``.

    ``shape`` and ``ndim`` are those of the torch tensor it stands for (3-D, unbatched, or
    4-D), so shape queries need no transpose. Only apply functions and translations marked
    :func:`_layout_aware` ever see one; all others get :meth:`torch_layout`.
    """

    __slots__ = ("data", "_torch")

    def __init__(self, data: Array) -> None:
        self.data = data
        self._torch: Array | None = None

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def shape(self) -> tuple[int, ...]:
        *batch, height, width, channels = self.data.shape
        return (*batch, channels, height, width)

    def torch_layout(self) -> Array:
        # Cached: a value read by several layout-dependent operations is transposed once.
        if self._torch is None:
            self._torch = jnp.moveaxis(self.data, -1, -3)
        return self._torch


def _layout_aware(function: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``function`` as taking :class:`_ChannelsLast` arguments as they are."""
    function._channels_last = True  # type: ignore[attr-defined]
    return function


def _is_layout_aware(function: Callable[..., Any]) -> bool:
    return getattr(function, "_channels_last", False)


def _torch_layout(value: Any) -> Any:
    """``value`` (an argument, possibly a tuple/list/dict of them) with every array in torch layout."""
    if isinstance(value, _ChannelsLast):
        return value.torch_layout()
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple output
        return type(value)(*(_torch_layout(item) for item in value))
    if isinstance(value, (tuple, list)):
        return type(value)(_torch_layout(item) for item in value)
    if isinstance(value, dict):
        return {key: _torch_layout(item) for key, item in value.items()}
    return value


def _channels_last_data(input: Array | _ChannelsLast) -> Array:
    """The channels-last array of a 3-D ``(C, H, W)`` or 4-D ``(N, C, H, W)`` torch tensor."""
    if isinstance(input, _ChannelsLast):
        return input.data
    return jnp.moveaxis(input, -3, -1)


def _stored_axis(axis: int, ndim: int) -> int:
    """Where torch axis ``axis`` of a ``ndim``-D tensor lies in its channels-last array."""
    axis %= ndim
    if axis < ndim - 3:
        return axis  # batch
    return ndim - 1 if axis == ndim - 3 else axis - 1  # C goes last, H and W move up


def _is_array(value: Any) -> bool:
    return isinstance(value, (jax.Array, np.ndarray))


def _pointwise(function: Callable[..., Any]) -> Callable[..., Any]:
    """Layout-aware form of an element-wise ``function`` (broadcasting its array arguments).

    With a :class:`_ChannelsLast` argument, the other arrays are broadcast to its rank and
    moved channels-last too (an element-wise operation commutes with a transpose applied
    to all its broadcast operands) and the result stays channels-last; anything else (mixed
    ranks, arrays of higher rank) runs in torch layout.
    """

    def apply(*args: Any, **kwargs: Any) -> Any:
        values = [*args, *kwargs.values()]
        ranks = {value.ndim for value in values if isinstance(value, _ChannelsLast)}
        if len(ranks) != 1 or any(_is_array(value) and value.ndim > min(ranks) for value in values):
            return function(*_torch_layout(args), **_torch_layout(kwargs))
        ndim = ranks.pop()

        def stored(value: Any) -> Any:
            if isinstance(value, _ChannelsLast):
                return value.data
            if _is_array(value) and value.ndim > 0:
                return jnp.moveaxis(jnp.reshape(value, (1,) * (ndim - value.ndim) + value.shape), -3, -1)
            return value  # Python numbers, 0-d arrays, flags, strings

        output = function(*[stored(arg) for arg in args], **{key: stored(arg) for key, arg in kwargs.items()})
        return _ChannelsLast(output)

    return _layout_aware(apply)


# ------------------------------------------------------------- functional building blocks
# Each mirrors the torch signature, so fx's recorded args/kwargs can be passed as they are;
# tensor methods share them because fx passes ``self`` as the first argument.


def _linear(input: Array, weight: Array, bias: Array | None = None) -> Array:
    output = jnp.matmul(input, weight.T, precision=_precision())
    return output if bias is None else output + bias


def _matmul(input: Array, other: Array) -> Array:
    return jnp.matmul(input, other, precision=_precision())


def _conv_padding(
    padding: str | int | Sequence[int], kernel: Sequence[int], dilation: tuple[int, int]
) -> list[tuple[int, int]]:
    if padding == "valid":
        return [(0, 0), (0, 0)]
    if padding == "same":
        # torch puts the odd extra pixel of an even kernel on the high side.
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return [(total // 2, total - total // 2) for total in totals]
    return [(p, p) for p in _pair(padding)]


def _channels_last_conv(batch: Array, kernel: Array, **settings: Any) -> Array:
    """``lax.conv_general_dilated`` of an NHWC batch with an HWIO kernel, differentiable in both.

    Same values as the plain call; only the derivative is written out. JAX transposes the
    input tangent's convolution into the input gradient's with the kernel's I and O labels
    swapped: from an HWIO forward that gives an HWOI ("01oi") convolution, which XLA:CPU
    leaves to its slow generic loop inside a ``scan``/``while`` body (outside one it
    relabels it). The input tangent is therefore convolved with the explicitly transposed
    kernel labelled HWOI, so the input gradient comes out an HWIO convolution with a
    (constant-folded) flipped kernel. A ``custom_jvp`` keeps forward mode working too.
    """

    def convolve(lhs: Array, rhs: Array, rhs_spec: str) -> Array:
        return lax.conv_general_dilated(
            lhs, rhs, dimension_numbers=("NHWC", rhs_spec, "NHWC"), precision=_precision(), **settings
        )

    @jax.custom_jvp
    def conv(batch: Array, kernel: Array) -> Array:
        return convolve(batch, kernel, "HWIO")

    def conv_jvp(primals: tuple[Array, Array], tangents: tuple[Any, Any]) -> tuple[Array, Array]:
        batch, kernel = primals
        batch_tangent, kernel_tangent = tangents
        output = convolve(batch, kernel, "HWIO")
        terms = []
        if not isinstance(batch_tangent, SymbolicZero):
            terms.append(convolve(batch_tangent, jnp.swapaxes(kernel, 2, 3), "HWOI"))
        if not isinstance(kernel_tangent, SymbolicZero):
            terms.append(convolve(batch, kernel_tangent, "HWIO"))
        tangent = sum(terms[1:], terms[0]) if terms else lax.zeros_like_array(output)
        return output, tangent

    conv.defjvp(conv_jvp, symbolic_zeros=True)
    return conv(batch, kernel)


def _batched_conv(convolve: Callable[[Array], Array], input: Array | _ChannelsLast) -> _ChannelsLast:
    # torch convolutions also take one unbatched (C, H, W) image; lax needs a batch axis.
    data = _channels_last_data(input)
    if data.ndim == 3:
        return _ChannelsLast(convolve(data[None])[0])
    return _ChannelsLast(convolve(data))


@_layout_aware
def _conv2d(
    input: Array | _ChannelsLast,
    weight: Array,
    bias: Array | None = None,
    stride: int | Sequence[int] = 1,
    padding: str | int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
) -> _ChannelsLast:
    weight, bias = _torch_layout(weight), _torch_layout(bias)
    dilation = _pair(dilation)
    pads = _conv_padding(padding, weight.shape[2:], dilation)
    kernel = jnp.transpose(weight, (2, 3, 1, 0))  # OIHW -> HWIO

    def convolve(batch: Array) -> Array:
        output = _channels_last_conv(
            batch,
            kernel,
            window_strides=_pair(stride),
            padding=pads,
            rhs_dilation=dilation,
            feature_group_count=groups,
        )
        return output if bias is None else output + bias

    return _batched_conv(convolve, input)


@_layout_aware
def _conv_transpose2d(
    input: Array | _ChannelsLast,
    weight: Array,
    bias: Array | None = None,
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    output_padding: int | Sequence[int] = 0,
    groups: int = 1,
    dilation: int | Sequence[int] = 1,
) -> _ChannelsLast:
    weight, bias = _torch_layout(weight), _torch_layout(bias)
    # A transposed convolution is the gradient of a convolution: dilate the input by
    # the stride, pad by dilation*(k-1)-padding (plus output_padding at the high end)
    # and convolve with the spatially flipped kernel whose in/out axes are swapped.
    in_channels, out_per_group, kernel_h, kernel_w = weight.shape
    kernel = (
        weight.reshape(groups, in_channels // groups, out_per_group, kernel_h, kernel_w)
        .transpose(0, 2, 1, 3, 4)
        .reshape(groups * out_per_group, in_channels // groups, kernel_h, kernel_w)
    )
    kernel = jnp.flip(kernel, axis=(2, 3)).transpose(2, 3, 1, 0)  # OIHW -> HWIO
    dilation = _pair(dilation)
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + extra)
        for d, k, p, extra in zip(dilation, (kernel_h, kernel_w), _pair(padding), _pair(output_padding))
    ]

    def convolve(batch: Array) -> Array:
        output = _channels_last_conv(
            batch,
            kernel,
            window_strides=(1, 1),
            padding=pads,
            lhs_dilation=_pair(stride),
            rhs_dilation=dilation,
            feature_group_count=groups,
        )
        return output if bias is None else output + bias

    return _batched_conv(convolve, input)


def _relu(input: Array, inplace: bool = False) -> Array:
    return jax.nn.relu(input)


def _leaky_relu(input: Array, negative_slope: float = 0.01, inplace: bool = False) -> Array:
    # Strict inequality, as in torch: the slope branch (and its gradient) at 0.
    return jnp.where(input > 0, input, negative_slope * input)


def _elu(input: Array, alpha: float = 1.0, inplace: bool = False) -> Array:
    # expm1 of the clipped input keeps the unused branch finite, so its gradient is too.
    return jnp.where(input > 0, input, alpha * jnp.expm1(jnp.minimum(input, 0.0)))


def _gelu(input: Array, approximate: str = "none") -> Array:
    return jax.nn.gelu(input, approximate=approximate == "tanh")


def _silu(input: Array, inplace: bool = False) -> Array:
    return jax.nn.silu(input)


def _softplus(input: Array, beta: float = 1.0, threshold: float = 20.0) -> Array:
    scaled = beta * input
    # logaddexp is stable in both branches, so the untaken one cannot poison the gradient.
    return jnp.where(scaled > threshold, input, jnp.logaddexp(scaled, 0.0) / beta)


def _tanh(input: Array) -> Array:
    return jnp.tanh(input)


def _sigmoid(input: Array) -> Array:
    return jax.nn.sigmoid(input)


def _add(input: Any, other: Any, *, alpha: float = 1) -> Any:
    return input + other if alpha == 1 else input + alpha * other


def _sub(input: Any, other: Any, *, alpha: float = 1) -> Any:
    return input - other if alpha == 1 else input - alpha * other


def _mul(input: Any, other: Any) -> Any:
    return input * other


def _div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Any:
    quotient = jnp.true_divide(input, other)
    if rounding_mode == "trunc":
        return jnp.trunc(quotient)
    if rounding_mode == "floor":
        return jnp.floor(quotient)
    return quotient


def _neg(input: Array) -> Array:
    return -input


def _pow(input: Any, exponent: Any) -> Any:
    return jnp.power(input, exponent)


def _exp(input: Array) -> Array:
    return jnp.exp(input)


def _log(input: Array) -> Array:
    return jnp.log(input)


def _sin(input: Array) -> Array:
    return jnp.sin(input)


def _cos(input: Array) -> Array:
    return jnp.cos(input)


def _sqrt(input: Array) -> Array:
    return jnp.sqrt(input)


def _abs(input: Array) -> Array:
    return jnp.abs(input)


def _clamp(input: Array, min: Any = None, max: Any = None) -> Array:
    # where() rather than clip(): torch passes the gradient through at the bounds,
    # clip's min/max split it in half there.
    output = input
    if min is not None:
        output = jnp.where(output < min, min, output)
    if max is not None:
        output = jnp.where(output > max, max, output)
    return output


def _sum(input: Array, dim: int | Sequence[int] | None = None, keepdim: bool = False, *, dtype: Any = None) -> Array:
    return jnp.sum(input, axis=_axes(dim), keepdims=keepdim)


def _mean(input: Array, dim: int | Sequence[int] | None = None, keepdim: bool = False, *, dtype: Any = None) -> Array:
    return jnp.mean(input, axis=_axes(dim), keepdims=keepdim)


def _cat(tensors: Sequence[Array], dim: int = 0) -> Array:
    return jnp.concatenate(list(tensors), axis=dim)


def _stack(tensors: Sequence[Array], dim: int = 0) -> Array:
    return jnp.stack(list(tensors), axis=dim)


def _flatten(input: Array, start_dim: int = 0, end_dim: int = -1) -> Array:
    if input.ndim == 0:
        return input.reshape(1)
    start, end = start_dim % input.ndim, end_dim % input.ndim
    return input.reshape(*input.shape[:start], -1, *input.shape[end + 1 :])


def _unflatten(input: Array, dim: int, sizes: Sequence[int]) -> Array:
    dim = dim % input.ndim
    return input.reshape(*input.shape[:dim], *sizes, *input.shape[dim + 1 :])


def _reshape(input: Array, *shape: Any, **keywords: Any) -> Array:
    return jnp.reshape(input, _shape_arguments(shape, keywords, "shape"))


def _permute(input: Array, *dims: Any, **keywords: Any) -> Array:
    return jnp.transpose(input, _shape_arguments(dims, keywords, "dims"))


def _transpose(input: Array, dim0: int, dim1: int) -> Array:
    return jnp.swapaxes(input, dim0, dim1)


def _squeeze(input: Array, dim: int | Sequence[int] | None = None) -> Array:
    if dim is None:
        return jnp.squeeze(input)
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    # torch silently keeps axes whose size is not 1; jnp.squeeze would raise.
    return jnp.squeeze(input, axis=tuple(d for d in dims if input.shape[d] == 1))


def _unsqueeze(input: Array, dim: int) -> Array:
    return jnp.expand_dims(input, dim if dim >= 0 else dim + input.ndim + 1)


def _size(input: Array, dim: int | None = None) -> tuple[int, ...] | int:
    return tuple(input.shape) if dim is None else input.shape[dim]


def _dim(input: Array) -> int:
    return input.ndim


def _same(input: Array, *arguments: Any, **keywords: Any) -> Array:
    # contiguous() and float() change memory layout or dtype only; everything here is float32.
    return input


_ATTRIBUTES = {"shape": lambda array: tuple(array.shape), "ndim": lambda array: array.ndim}


def _getattr(obj: Any, name: str) -> Any:
    return _ATTRIBUTES[name](obj)


_FUNCTIONS: dict[Callable[..., Any], Callable[..., Any]] = {
    operator.add: operator.add,
    operator.sub: operator.sub,
    operator.mul: operator.mul,
    operator.truediv: operator.truediv,
    operator.floordiv: operator.floordiv,
    operator.neg: operator.neg,
    operator.pow: operator.pow,
    operator.matmul: _matmul,
    operator.getitem: operator.getitem,
    builtins.getattr: _getattr,
    torch.add: _add,
    torch.sub: _sub,
    torch.mul: _mul,
    torch.div: _div,
    torch.neg: _neg,
    torch.pow: _pow,
    torch.matmul: _matmul,
    torch.mm: _matmul,
    torch.bmm: _matmul,
    torch.cat: _cat,
    torch.concat: _cat,
    torch.stack: _stack,
    torch.sum: _sum,
    torch.mean: _mean,
    torch.flatten: _flatten,
    torch.reshape: _reshape,
    torch.tanh: _tanh,
    torch.sigmoid: _sigmoid,
    torch.relu: _relu,
    torch.exp: _exp,
    torch.log: _log,
    torch.sin: _sin,  # Fourier features (architectures.FourierFeatures)
    torch.cos: _cos,
    torch.sqrt: _sqrt,
    torch.abs: _abs,
    torch.clamp: _clamp,
    torch.clip: _clamp,
    torch.squeeze: _squeeze,
    torch.unsqueeze: _unsqueeze,
    torch.transpose: _transpose,
    torch.permute: _permute,
    F.relu: _relu,
    F.leaky_relu: _leaky_relu,
    F.elu: _elu,
    F.gelu: _gelu,
    F.silu: _silu,
    F.softplus: _softplus,
    F.sigmoid: _sigmoid,
    F.tanh: _tanh,
    F.linear: _linear,
    F.conv2d: _conv2d,
    F.conv_transpose2d: _conv_transpose2d,
}

_METHODS: dict[str, Callable[..., Any]] = {
    "add": _add,
    "sub": _sub,
    "mul": _mul,
    "div": _div,
    "neg": _neg,
    "pow": _pow,
    "matmul": _matmul,
    "sum": _sum,
    "mean": _mean,
    "flatten": _flatten,
    "reshape": _reshape,
    "view": _reshape,
    "squeeze": _squeeze,
    "unsqueeze": _unsqueeze,
    "permute": _permute,
    "transpose": _transpose,
    "size": _size,
    "dim": _dim,
    "contiguous": _same,
    "float": _same,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "relu": _relu,
    "exp": _exp,
    "log": _log,
    "sin": _sin,
    "cos": _cos,
    "sqrt": _sqrt,
    "abs": _abs,
    "clamp": _clamp,
    "clip": _clamp,
}


def _channels_last_reduction(reduce: Callable[..., Array]) -> Callable[..., Any]:
    """Layout-aware form of ``torch.sum``/``torch.mean``: reduces the channels-last array."""

    @_layout_aware
    def apply(
        input: Array | _ChannelsLast,
        dim: int | Sequence[int] | None = None,
        keepdim: bool = False,
        *,
        dtype: Any = None,
    ) -> Any:
        if not isinstance(input, _ChannelsLast):
            return reduce(input, dim, keepdim, dtype=dtype)
        if dim is None:  # a full reduction (all-ones shape with keepdim) has no layout
            return reduce(input.data, None, keepdim, dtype=dtype)
        ndim = input.ndim
        dims = sorted({d % ndim for d in ((dim,) if isinstance(dim, int) else dim)})
        if not dims:
            return reduce(input.torch_layout(), dim, keepdim, dtype=dtype)
        output = reduce(input.data, tuple(_stored_axis(d, ndim) for d in dims), keepdim, dtype=dtype)
        if keepdim:
            return _ChannelsLast(output)
        # The kept axes come out in channels-last order; put them back in torch order
        # (e.g. a global pool (N, C, H, W).mean((2, 3)) is already (N, C)).
        kept = [_stored_axis(axis, ndim) for axis in range(ndim) if axis not in dims]
        order = sorted(kept)
        return jnp.transpose(output, [order.index(axis) for axis in kept])

    return apply


@_layout_aware
def _channels_last_cat(tensors: Sequence[Array | _ChannelsLast], dim: int = 0) -> Any:
    tensors = list(tensors)
    ranks = {tensor.ndim for tensor in tensors}
    if len(ranks) != 1 or not any(isinstance(tensor, _ChannelsLast) for tensor in tensors):
        return _cat(_torch_layout(tensors), dim)
    ndim = ranks.pop()
    return _ChannelsLast(
        jnp.concatenate([_channels_last_data(tensor) for tensor in tensors], axis=_stored_axis(dim, ndim))
    )


# Operations that take _ChannelsLast values as they are. Everything else in _FUNCTIONS and
# _METHODS gets its arguments in torch layout.
for _table, _names in (
    (
        _FUNCTIONS,
        [
            *(operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv),
            *(operator.neg, operator.pow),
            *(torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.pow, torch.tanh, torch.sigmoid),
            *(torch.relu, torch.exp, torch.log, torch.sin, torch.cos, torch.sqrt, torch.abs, torch.clamp),
            torch.clip,
            *(F.relu, F.leaky_relu, F.elu, F.gelu, F.silu, F.softplus, F.sigmoid, F.tanh),
        ],
    ),
    (
        _METHODS,
        [
            *("add", "sub", "mul", "div", "neg", "pow", "tanh", "sigmoid", "relu", "exp", "log"),
            *("sin", "cos", "sqrt", "abs", "clamp", "clip"),
        ],
    ),
):
    for _name in _names:
        _table[_name] = _pointwise(_table[_name])
for _table, _sum_key, _mean_key, _cat_keys in (
    (_FUNCTIONS, torch.sum, torch.mean, (torch.cat, torch.concat)),
    (_METHODS, "sum", "mean", ()),
):
    _table[_sum_key] = _channels_last_reduction(_sum)
    _table[_mean_key] = _channels_last_reduction(_mean)
    for _name in _cat_keys:
        _table[_name] = _channels_last_cat
# Shape queries read the torch shape a _ChannelsLast reports; contiguous()/float() pass it on.
for _function in (_size, _dim, _getattr, _same):
    _layout_aware(_function)
del _table, _names, _name, _sum_key, _mean_key, _cat_keys, _function


# ------------------------------------------------------------------- module translators
# Each takes (qualified name, module) and returns (fn(params, *args, **kwargs), params).

_ModuleTranslation = tuple[Callable[..., Any], dict[str, Array]]


def _key(name: str, attribute: str) -> str:
    # name is "" when the root module itself is the only call.
    return f"{name}.{attribute}" if name else attribute


def _weights(name: str, module: nn.Module, *attributes: str) -> dict[str, Array]:
    # Reading the attribute (not named_parameters) gives what forward() uses: the
    # parametrization's output for parametrizations.spectral_norm, the hook-written
    # tensor for the old-style spectral_norm/weight_norm.
    found = {}
    for attribute in attributes:
        value = getattr(module, attribute, None)
        if value is not None:
            found[_key(name, attribute)] = _to_jax(value)
    return found


def _translate_linear(name: str, module: nn.Linear) -> _ModuleTranslation:
    params = _weights(name, module, "weight", "bias")

    def apply(params: dict[str, Array], input: Array) -> Array:
        return _linear(input, params[_key(name, "weight")], params.get(_key(name, "bias")))

    return apply, params


def _check_zero_padding(module: nn.Module) -> None:
    if module.padding_mode != "zeros":
        raise UnsupportedOperationError(
            f"{type(module).__name__} with padding_mode={module.padding_mode!r} is not supported by "
            f"ppl_ebm.nets.torch_to_jax (only 'zeros'); {_TORCH_BACKEND_HINT}"
        )


def _translate_conv2d(name: str, module: nn.Conv2d) -> _ModuleTranslation:
    _check_zero_padding(module)
    params = _weights(name, module, "weight", "bias")
    settings = dict(stride=module.stride, padding=module.padding, dilation=module.dilation, groups=module.groups)

    @_layout_aware
    def apply(params: dict[str, Array], input: Array | _ChannelsLast) -> _ChannelsLast:
        return _conv2d(input, params[_key(name, "weight")], params.get(_key(name, "bias")), **settings)

    return apply, params


def _translate_conv_transpose2d(name: str, module: nn.ConvTranspose2d) -> _ModuleTranslation:
    _check_zero_padding(module)
    params = _weights(name, module, "weight", "bias")
    settings = dict(
        stride=module.stride,
        padding=module.padding,
        output_padding=module.output_padding,
        groups=module.groups,
        dilation=module.dilation,
    )

    @_layout_aware
    def apply(params: dict[str, Array], input: Array | _ChannelsLast) -> _ChannelsLast:
        return _conv_transpose2d(input, params[_key(name, "weight")], params.get(_key(name, "bias")), **settings)

    return apply, params


def _translate_batch_norm(name: str, module: nn.modules.batchnorm._BatchNorm) -> _ModuleTranslation:
    params = _weights(name, module, "weight", "bias", "running_mean", "running_var")
    epsilon = module.eps

    def normalize(params: dict[str, Array], input: Array, channel_axis: int) -> Array:
        # Statistics broadcast over the channel axis: 1 of (N, C) or (N, C, *spatial) in
        # torch layout, the last one of channels-last (N, H, W, C).
        shape = tuple(-1 if axis == channel_axis else 1 for axis in range(input.ndim))
        if _key(name, "running_mean") in params:
            mean = params[_key(name, "running_mean")].reshape(shape)
            variance = params[_key(name, "running_var")].reshape(shape)
        else:
            # track_running_stats=False: torch normalises with the batch's own statistics
            # even in eval mode.
            axes = tuple(axis for axis in range(input.ndim) if axis != channel_axis)
            mean = jnp.mean(input, axis=axes, keepdims=True)
            variance = jnp.var(input, axis=axes, keepdims=True)
        output = (input - mean) * lax.rsqrt(variance + epsilon)
        if _key(name, "weight") in params:
            output = output * params[_key(name, "weight")].reshape(shape)
        if _key(name, "bias") in params:
            output = output + params[_key(name, "bias")].reshape(shape)
        return output

    @_layout_aware
    def apply(params: dict[str, Array], input: Array | _ChannelsLast) -> Array | _ChannelsLast:
        if isinstance(input, _ChannelsLast) and input.ndim == 4:  # BatchNorm2d after a conv
            return _ChannelsLast(normalize(params, input.data, channel_axis=3))
        return normalize(params, _torch_layout(input), channel_axis=1)

    return apply, params


def _translate_layer_norm(name: str, module: nn.LayerNorm) -> _ModuleTranslation:
    params = _weights(name, module, "weight", "bias")
    axes = tuple(range(-len(module.normalized_shape), 0))
    epsilon = module.eps

    def apply(params: dict[str, Array], input: Array) -> Array:
        mean = jnp.mean(input, axis=axes, keepdims=True)
        variance = jnp.var(input, axis=axes, keepdims=True)
        output = (input - mean) * lax.rsqrt(variance + epsilon)
        if _key(name, "weight") in params:
            output = output * params[_key(name, "weight")]
        if _key(name, "bias") in params:
            output = output + params[_key(name, "bias")]
        return output

    return apply, params


def _translate_group_norm(name: str, module: nn.GroupNorm) -> _ModuleTranslation:
    params = _weights(name, module, "weight", "bias")
    groups, epsilon = module.num_groups, module.eps

    def affine(params: dict[str, Array], output: Array, shape: tuple[int, ...]) -> Array:
        if _key(name, "weight") in params:
            output = output * params[_key(name, "weight")].reshape(shape)
        if _key(name, "bias") in params:
            output = output + params[_key(name, "bias")].reshape(shape)
        return output

    @_layout_aware
    def apply(params: dict[str, Array], input: Array | _ChannelsLast) -> Array | _ChannelsLast:
        if isinstance(input, _ChannelsLast) and input.ndim == 4:
            # Channels-last (N, H, W, C): group g holds channels g*C/G ... (g+1)*C/G - 1.
            data = input.data
            grouped = data.reshape(*data.shape[:3], groups, -1)
            mean = jnp.mean(grouped, axis=(1, 2, 4), keepdims=True)
            variance = jnp.var(grouped, axis=(1, 2, 4), keepdims=True)
            output = ((grouped - mean) * lax.rsqrt(variance + epsilon)).reshape(data.shape)
            return _ChannelsLast(affine(params, output, (1, 1, 1, -1)))
        input = _torch_layout(input)
        grouped = input.reshape(input.shape[0], groups, -1)
        mean = jnp.mean(grouped, axis=-1, keepdims=True)
        variance = jnp.var(grouped, axis=-1, keepdims=True)
        output = ((grouped - mean) * lax.rsqrt(variance + epsilon)).reshape(input.shape)
        return affine(params, output, (1, -1) + (1,) * (input.ndim - 2))

    return apply, params


def _stateless(
    function: Callable[[nn.Module], Callable[[Array], Array]], pointwise: bool = True
) -> Callable[..., _ModuleTranslation]:
    """Translator for a weightless module whose JAX form depends only on its settings.

    ``pointwise`` ones (activations, identities) take a channels-last input and return
    their result channels-last as well.
    """

    def translate(name: str, module: nn.Module) -> _ModuleTranslation:
        elementwise = function(module)
        if pointwise:
            elementwise = _pointwise(elementwise)
        apply = lambda params, input: elementwise(input)  # noqa: E731
        return (_layout_aware(apply) if pointwise else apply), {}

    return translate


# Order matters only for subclasses; a module matches the first type it is an instance of.
_MODULES: list[tuple[type[nn.Module], Callable[..., _ModuleTranslation]]] = [
    (nn.Linear, _translate_linear),
    (nn.Conv2d, _translate_conv2d),
    (nn.ConvTranspose2d, _translate_conv_transpose2d),
    (nn.BatchNorm1d, _translate_batch_norm),
    (nn.BatchNorm2d, _translate_batch_norm),
    (nn.LayerNorm, _translate_layer_norm),
    (nn.GroupNorm, _translate_group_norm),
    (nn.ReLU, _stateless(lambda m: _relu)),
    # Settings are read here, at translation (partial), not when traced: the translated function
    # must not hold the module (torch_to_jax's cache holds functions under weak module keys).
    (nn.LeakyReLU, _stateless(lambda m: partial(_leaky_relu, negative_slope=m.negative_slope))),
    (nn.ELU, _stateless(lambda m: partial(_elu, alpha=m.alpha))),
    (nn.GELU, _stateless(lambda m: partial(_gelu, approximate=m.approximate))),
    (nn.SiLU, _stateless(lambda m: _silu)),
    (nn.Tanh, _stateless(lambda m: _tanh)),
    (nn.Sigmoid, _stateless(lambda m: _sigmoid)),
    (nn.Softplus, _stateless(lambda m: partial(_softplus, beta=m.beta, threshold=m.threshold))),
    (nn.Identity, _stateless(lambda m: lambda x: x)),
    # Dropout is the identity in eval mode, the mode the translation reproduces.
    *[
        (dropout, _stateless(lambda m: lambda x: x))
        for dropout in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
    ],
    (nn.Flatten, _stateless(lambda m: partial(_flatten, start_dim=m.start_dim, end_dim=m.end_dim), pointwise=False)),
    (nn.Unflatten, _stateless(lambda m: partial(_unflatten, dim=m.dim, sizes=tuple(m.unflattened_size)),
                              pointwise=False)),
]
# register_module_translation puts registered types first (they win the isinstance lookup); the
# error message lists the built-in ones first, in this order, whatever was imported before.
_BUILTIN_MODULE_COUNT = len(_MODULES)


def register_module_translation(module_type: type[nn.Module], translator: Callable[..., _ModuleTranslation]) -> None:
    """Translate every ``module_type`` module as one leaf call: ``translator(name, module)`` returns
    ``(apply(params, input), params)`` with the weights under keys starting ``name.`` (as the
    built-in translations above). For modules fx cannot trace whose JAX twin exists elsewhere
    (:mod:`ppl_ebm.nets.flows`: Pyro's transforms, translated to NumPyro's)."""
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)) or not callable(translator):
        raise ValueError(f"need an nn.Module subclass and a callable, got {module_type!r}, {translator!r}.")
    if not any(existing is module_type for existing, _ in _MODULES):
        _MODULES.insert(0, (module_type, translator))


def _module_translator(module: nn.Module) -> Callable[..., _ModuleTranslation] | None:
    for module_type, translator in _MODULES:
        # A subclass that overrides forward() computes something else: trace into it.
        if isinstance(module, module_type) and type(module).forward is module_type.forward:
            return translator
    return None


class _Tracer(torch.fx.Tracer):
    """fx tracer that keeps every translatable module a leaf, subclasses included.

    Parametrized modules (``ParametrizedLinear``) and user subclasses that only change
    ``__init__`` are then read through their attributes rather than traced into.
    """

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return _module_translator(module) is not None or super().is_leaf_module(module, qualified_name)


# ------------------------------------------------------------------------ error messages


def _public_name(function: Callable[..., Any]) -> str:
    """The dotted name users write, e.g. ``torch.fft.fft`` rather than ``torch._C._fft.fft_fft``."""
    if function is builtins.getattr:
        return "getattr"
    if getattr(function, "__module__", None) == "_operator" or function in vars(operator).values():
        return f"operator.{function.__name__}"
    namespaces = [
        ("torch.nn.functional", F),
        ("torch", torch),
        ("torch.fft", torch.fft),
        ("torch.linalg", torch.linalg),
        ("torch.special", torch.special),
    ]
    for prefix, namespace in namespaces:
        for attribute, value in vars(namespace).items():
            if value is function and not attribute.startswith("_"):
                return f"{prefix}.{attribute}"
    return torch.fx.node._get_qualified_name(function)


def _module_type_name(module: nn.Module) -> str:
    module_type = type(module)
    if getattr(nn, module_type.__name__, None) is module_type:
        return f"torch.nn.{module_type.__name__}"
    return f"{module_type.__module__}.{module_type.__qualname__}"


def _supported_summary() -> str:
    registered = _MODULES[: len(_MODULES) - _BUILTIN_MODULE_COUNT]
    modules = ", ".join(f"nn.{module_type.__name__}" for module_type, _ in _MODULES[len(registered):])
    if registered:
        modules += "; registered modules: " + ", ".join(f"{t.__module__}.{t.__name__}" for t, _ in registered)
    functions = ", ".join(sorted({_public_name(function) for function in _FUNCTIONS}))
    methods = ", ".join(f"Tensor.{name}" for name in _METHODS)
    attributes = ", ".join(f"Tensor.{name}" for name in _ATTRIBUTES)
    return f"modules: {modules}; functions: {functions}; methods: {methods}, {attributes}"


def _unsupported_reason(node: torch.fx.Node, root: nn.Module) -> str | None:
    """Why ``node`` cannot be translated, or ``None`` when it can."""
    if node.op == "call_function":
        if node.target not in _FUNCTIONS:
            return f"{_public_name(node.target)} (call_function)"
        if node.target is builtins.getattr and node.args[1] not in _ATTRIBUTES:
            return f"Tensor.{node.args[1]} (attribute)"
    elif node.op == "call_method" and node.target not in _METHODS:
        return f"Tensor.{node.target} (call_method)"
    elif node.op == "call_module":
        module = root.get_submodule(node.target)
        if _module_translator(module) is None:
            return f"{_module_type_name(module)} (call_module '{node.target}')"
        if isinstance(module, nn.ConvTranspose2d) and (len(node.args) > 1 or node.kwargs):
            return f"torch.nn.ConvTranspose2d with output_size (call_module '{node.target}')"
        # fx does not run the hooks of leaf modules; only the weight-writing pre-hooks of the
        # old-style spectral_norm/weight_norm are accounted for (by reading the weight).
        if module._forward_hooks or any(
            not isinstance(hook, (_OldSpectralNorm, _OldWeightNorm)) for hook in module._forward_pre_hooks.values()
        ):
            return f"forward hooks on {_module_type_name(module)} (call_module '{node.target}')"
    return None


# ---------------------------------------------------------------------------- translation


def _trace(module: nn.Module) -> tuple[torch.fx.Graph, nn.Module]:
    """The fx graph of ``module.forward`` and the module its node targets refer to."""
    if _module_translator(module) is not None:
        # fx always traces into the root, even a leaf type such as a bare ConvTranspose2d
        # (whose forward branches on shapes): record it as one call instead; target ""
        # names the root itself in get_submodule.
        graph = torch.fx.Graph()
        graph.output(graph.call_module("", (graph.placeholder("input"),)))
        return graph, module
    # fx stores tensor constants of the forward (torch.tensor(...) literals) as attributes
    # of the traced root; a shallow copy (sharing submodules, parameters and buffers)
    # keeps them off the user's module.
    root = copy.copy(module)
    try:
        graph = _Tracer().trace(root)
    except Exception as error:
        raise UnsupportedOperationError(
            f"torch.fx could not trace {type(module).__name__} ({type(error).__name__}: {error}); "
            "ppl_ebm.nets.torch_to_jax needs a forward pass without data-dependent Python control flow "
            "(if/for/while on tensor values, .item(), len() of tensors); "
            f"{_TORCH_BACKEND_HINT}"
        ) from error
    # The GraphModule also holds the tensor constants fx lifts out of the forward.
    return graph, torch.fx.GraphModule(root, graph)


def _translate(
    graph: torch.fx.Graph, root: nn.Module
) -> tuple[list[Callable[[dict[str, Array], dict[str, Any], Array], None]], dict[str, Array], dict[str, Any]]:
    """Turn every fx node into a step ``step(params, env, input)`` writing ``env[node.name]``;
    also returns the params and the non-float constants the steps read."""
    problems = [reason for node in graph.nodes if (reason := _unsupported_reason(node, root))]
    if problems:
        unique = list(dict.fromkeys(problems))
        raise UnsupportedOperationError(
            f"{'; '.join(unique)}: not supported by ppl_ebm.nets.torch_to_jax. "
            f"Supported {_supported_summary()}. To sample anyway, {_TORCH_BACKEND_HINT}."
        )

    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    required = [node for node in placeholders if not node.args]
    if len(required) != 1:
        raise UnsupportedOperationError(
            "ppl_ebm.nets.torch_to_jax translates modules with exactly one required tensor input; "
            f"this forward takes {len(required)} ({', '.join(str(n.target) for n in required)}); "
            f"{_TORCH_BACKEND_HINT}"
        )

    params: dict[str, Array] = {}
    constants: dict[str, Any] = {}
    steps = []
    for node in graph.nodes:
        steps.append(_step(node, root, params, constants, is_input=node is required[0]))
    return steps, params, constants


def _step(
    node: torch.fx.Node,
    root: nn.Module,
    params: dict[str, Array],
    constants: dict[str, Any],
    is_input: bool,
) -> Callable[[dict[str, Array], dict[str, Any], Array], None]:
    name = node.name

    def arguments(env: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        def lookup(argument: torch.fx.Node) -> Any:
            return env[argument.name]

        return torch.fx.node.map_arg(node.args, lookup), torch.fx.node.map_arg(node.kwargs, lookup)

    if node.op == "placeholder":
        default = node.args[0] if node.args else None

        def step(params: dict[str, Array], env: dict[str, Any], input: Array) -> None:
            env[name] = input if is_input else default

    elif node.op == "get_attr":
        value = operator.attrgetter(node.target)(root)
        if not isinstance(value, torch.Tensor):
            raise UnsupportedOperationError(
                f"attribute {node.target!r} of type {type(value).__name__} (get_attr) is not a tensor; "
                f"{_TORCH_BACKEND_HINT}"
            )
        key = node.target
        if value.is_floating_point():
            params[key] = _to_jax(value)
        else:
            # Integer/bool buffers (indices, masks) are not differentiable: keep them out of
            # params so jax.grad over params still sees only float32 leaves.
            constants[key] = jnp.asarray(value.detach().cpu().numpy())

        def step(params: dict[str, Array], env: dict[str, Any], input: Array) -> None:
            env[name] = params[key] if key in params else constants[key]

    elif node.op == "call_module":
        module = root.get_submodule(node.target)
        apply, module_params = _module_translator(module)(node.target, module)
        params.update(module_params)

        aware = _is_layout_aware(apply)

        def step(params: dict[str, Array], env: dict[str, Any], input: Array) -> None:
            args, kwargs = arguments(env)
            if not aware:
                args, kwargs = _torch_layout(args), _torch_layout(kwargs)
            env[name] = apply(params, *args, **kwargs)

    elif node.op in ("call_function", "call_method"):
        function = _FUNCTIONS[node.target] if node.op == "call_function" else _METHODS[node.target]
        aware = _is_layout_aware(function)

        def step(params: dict[str, Array], env: dict[str, Any], input: Array) -> None:
            args, kwargs = arguments(env)
            if not aware:
                args, kwargs = _torch_layout(args), _torch_layout(kwargs)
            env[name] = function(*args, **kwargs)

    elif node.op == "output":

        def step(params: dict[str, Array], env: dict[str, Any], input: Array) -> None:
            env[_OUTPUT] = _torch_layout(arguments(env)[0][0])

    else:  # pragma: no cover - fx has no other opcodes
        raise UnsupportedOperationError(f"fx node kind {node.op!r}; {_TORCH_BACKEND_HINT}")
    return step


def torch_to_jax(module: nn.Module, example_input: torch.Tensor) -> tuple[Callable[..., Any], dict[str, Array]]:
    """Translate a torch module into a pure JAX function with the same weights.

    Parameters
    ----------
    module
        The network, e.g. a generator or critic. It is traced with :mod:`torch.fx`, so
        its forward pass must not branch on tensor values. Its training flags are
        restored afterwards; its weights and buffers are not modified.
    example_input
        One input the module accepts. It runs one eval-mode forward pass (so the
        pre-hooks of the old-style :func:`torch.nn.utils.spectral_norm` write the
        weight they use) and fixes the expected output shape, which the translation
        is checked against. Its batch size does not constrain ``apply_fn``.

    Returns
    -------
    apply_fn
        ``apply_fn(params, x)`` equals ``module.eval()(x)`` in float32 for any batch
        size; ``x`` is cast to float32. Pure, so ``jax.jit``, ``jax.grad`` and
        ``jax.vmap`` (over an extra leading axis, each call seeing the input shape the
        module expects) apply. Translating the same module object again, its structure
        unchanged, returns the same function (only ``params`` are new), so programs JAX
        compiled for it are reused.
    params
        Flat dict ``qualified name -> float32 array`` (a pytree): the module's
        current weights as its eval forward uses them (spectral-normalised weights
        baked, BatchNorm running statistics) and any floating tensors the forward
        reads directly.

    Raises
    ------
    UnsupportedOperationError
        At translation time, naming every operation or module type without a JAX
        form, or when fx cannot trace the forward pass. Use ``backend="torch"`` then.
    """
    training_flags = {submodule: submodule.training for submodule in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            reference = module(example_input)
            graph, root = _trace(module)
            steps, params, constants = _translate(graph, root)
    finally:
        for submodule, flag in training_flags.items():
            submodule.training = flag
    structure = _structure(module, graph, params, constants)
    cached = _TRANSLATIONS.get(module)
    if cached is not None and cached[0] == structure:
        apply_fn = cached[1]
    else:

        def apply_fn(params: dict[str, Array], x: Any) -> Any:
            env: dict[str, Any] = {}
            input = jnp.asarray(x, dtype=jnp.float32)
            for step in steps:
                step(params, env, input)
            return env[_OUTPUT]

    _check_output_shapes(apply_fn, params, example_input, reference)
    _TRANSLATIONS[module] = (structure, apply_fn)
    return apply_fn, params


def _structure(
    module: nn.Module, graph: torch.fx.Graph, params: dict[str, Array], constants: dict[str, Any]
) -> Hashable:
    """Everything a translation's steps depend on except the float weights: the traced code
    (Python scalars of the forward are inlined there), every submodule's type and settings
    (``extra_repr``: strides, eps, slopes ...), the params' names, shapes and dtypes, and the
    values of the non-float constants baked into the steps."""
    return (
        graph.python_code("self").src,
        tuple((name, type(sub).__module__, type(sub).__qualname__, sub.extra_repr())
              for name, sub in module.named_modules()),
        tuple((key, tuple(value.shape), str(value.dtype)) for key, value in params.items()),
        tuple((key, str(value.dtype), np.asarray(value).tobytes()) for key, value in constants.items()),
    )


def _check_output_shapes(
    apply_fn: Callable[..., Any], params: dict[str, Array], example_input: torch.Tensor, reference: Any
) -> None:
    # Abstract evaluation costs no FLOPs and catches translation bugs (and shape errors)
    # here rather than inside a sampler.
    abstract = jax.eval_shape(apply_fn, params, jax.ShapeDtypeStruct(tuple(example_input.shape), jnp.float32))
    expected = [tuple(leaf.shape) for leaf in jax.tree.leaves(reference) if isinstance(leaf, torch.Tensor)]
    translated = [tuple(leaf.shape) for leaf in jax.tree.leaves(abstract)]
    if expected != translated:
        raise RuntimeError(
            f"ppl_ebm.nets.torch_to_jax produced output shapes {translated} where the module gives {expected}; "
            "this is a bug in the translation, please report it and use backend='torch' meanwhile"
        )
