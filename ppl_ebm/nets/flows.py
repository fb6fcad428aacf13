"""A normalizing flow as a zoo generator: Pyro's affine autoregressive transforms in torch, NumPyro's
twin of the same transforms in JAX, sharing one set of weights.

G(z) maps a standard normal latent z to data x through ``layers`` inverse autoregressive (IAF)
steps, each ``x = exp(log_scale(x_<)) * x + mean(x_<)`` with a MADE network (Kingma et al. 2016;
Germain et al. 2015). Torch: :class:`pyro.distributions.transforms.AffineAutoregressive` on
:class:`pyro.nn.AutoRegressiveNN`. JAX: :class:`numpyro.distributions.flows.InverseAutoregressiveTransform`
on :func:`numpyro.nn.AutoregressiveNN`. NumPyro's MADE is a port of Pyro's (same mask construction,
same output layout, same clamp of the log scale to [-5, 3]); its dense layers hold the transposed
weight matrix, which is the only conversion. Successive layers alternate the autoregressive order
(identity, reversed), so in 2-D each layer is an affine coupling of one coordinate on the other
plus an affine map of the first.

:class:`AffineAutoregressiveFlow` is a registered zoo architecture (``"affine_autoregressive_flow"``)
and a leaf of :func:`~ppl_ebm.nets.torch_to_jax.torch_to_jax`, whose JAX translation is
:func:`numpyro_transforms` applied with the module's weights: every JAX path of the package (the
``LatentEBMJax`` target, latent-EBM training, ``ppl-ebm compare --backend jax``) evaluates G through
NumPyro's transforms. Pyro's MADE cannot be fx-traced itself (it reshapes with ``list(x.size())``).

Why IAF and not splines: the zoo's generators must run in both backends, and NumPyro has no spline
transform (Pyro's and zuko's splines are torch only). Why not NumPyro's block neural autoregressive
flow: it has no inverse, and training G: z -> x by maximum likelihood needs G^{-1}(x) (for IAF an
exact loop of ``dim`` network passes, 2 on the toy sets).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import torch
from torch import nn

__all__ = ["AffineAutoregressiveFlow", "affine_autoregressive_flow", "flow_log_prob", "flow_params",
           "numpyro_transforms"]


def _permutation(layer: int, data_dim: int) -> list[int]:
    order = list(range(data_dim))
    return order if layer % 2 == 0 else order[::-1]


class AffineAutoregressiveFlow(nn.Module):
    """G: z -> x, ``layers`` Pyro ``AffineAutoregressive`` transforms (MADE ``data_dim -> width x depth``),
    alternating orders; p0 = N(0, I) in ``data_dim`` dimensions. ``forward`` is G; :meth:`log_prob`
    the flow's density of data (change of variables through Pyro's ``TransformedDistribution``)."""

    def __init__(self, data_dim: int = 2, layers: int = 8, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        from pyro.distributions.transforms import AffineAutoregressive
        from pyro.nn import AutoRegressiveNN

        if min(data_dim, layers, width, depth) < 1 or width < data_dim:
            raise ValueError(f"need data_dim, layers, depth >= 1 and width >= data_dim, got {data_dim}, {layers}, "
                             f"{width}, {depth}.")
        self.data_dim, self.layers, self.width, self.depth = data_dim, layers, width, depth
        self.transforms = nn.ModuleList(
            AffineAutoregressive(AutoRegressiveNN(data_dim, [width] * depth,
                                                  permutation=torch.tensor(_permutation(k, data_dim))))
            for k in range(layers)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for transform in self.transforms:
            z = transform(z)
        return z

    def base_distribution(self, device: torch.device | str = "cpu"):
        import pyro.distributions as dist

        zero = torch.zeros(self.data_dim, device=device)
        return dist.Normal(zero, torch.ones_like(zero)).to_event(1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) = log N(G^{-1}(x); 0, I) - log |det dG/dz| at G^{-1}(x) (Pyro computes both)."""
        import pyro.distributions as dist

        return dist.TransformedDistribution(self.base_distribution(x.device), list(self.transforms)).log_prob(x)


def affine_autoregressive_flow(data_dim: int = 2, layers: int = 8, width: int = 64,
                               depth: int = 2) -> AffineAutoregressiveFlow:
    """The registered builder (``NetworkConfig("affine_autoregressive_flow", {...})``)."""
    return AffineAutoregressiveFlow(data_dim, layers, width, depth)


# --------------------------------------------------------------------------- the NumPyro twin


def _made(flow: AffineAutoregressiveFlow, layer: int):
    from numpyro.nn import AutoregressiveNN

    return AutoregressiveNN(flow.data_dim, [flow.width] * flow.depth,
                            permutation=jnp.asarray(_permutation(layer, flow.data_dim)))


def flow_params(flow: AffineAutoregressiveFlow) -> list[tuple]:
    """The module's weights as NumPyro's stax parameters, one tuple per layer: ``((W, b), (), ..., (W, b))``
    for ``MaskedDense, Relu, ..., MaskedDense`` (W transposed: NumPyro's dense layers compute x @ W)."""
    params = []
    for transform in flow.transforms:
        dense = []
        for index, linear in enumerate(transform.arn.layers):
            if index:
                dense.append(())  # the nonlinearity's (empty) parameters
            dense.append((jnp.asarray(linear.weight.detach().cpu().numpy().T),
                          jnp.asarray(linear.bias.detach().cpu().numpy())))
        params.append(tuple(dense))
    return params


def _check_twin(flow: AffineAutoregressiveFlow) -> None:
    """The twin assumes Pyro's defaults on every layer: ReLU, no skip connections, the [-5, 3] clamp."""
    for transform in flow.transforms:
        arn = transform.arn
        if (not isinstance(arn.f, nn.ReLU) or arn.skip_layer is not None or transform.stable
                or (transform.log_scale_min_clip, transform.log_scale_max_clip) != (-5.0, 3.0)):
            raise ValueError("the NumPyro twin supports AffineAutoregressive layers with Pyro's defaults only "
                             "(ReLU MADE, no skip connections, stable=False, log-scale clamp [-5, 3]).")


def numpyro_transforms(flow: AffineAutoregressiveFlow, params: list[tuple] | None = None) -> list:
    """NumPyro ``InverseAutoregressiveTransform`` s equal to ``flow``'s layers, with ``params``
    (:func:`flow_params` layout; default the module's own weights). Composed in order they are G."""
    from numpyro.distributions.flows import InverseAutoregressiveTransform

    _check_twin(flow)
    params = flow_params(flow) if params is None else params
    return [InverseAutoregressiveTransform(partial(_made(flow, k)[1], layer_params))
            for k, layer_params in enumerate(params)]


def flow_log_prob(flow: AffineAutoregressiveFlow, params: list[tuple], x: jax.Array) -> jax.Array:
    """The flow's log density of ``x`` in JAX (NumPyro's ``TransformedDistribution``)."""
    import numpyro.distributions as dist

    base = dist.Normal(jnp.zeros(flow.data_dim), 1.0).to_event(1)
    return dist.TransformedDistribution(base, numpyro_transforms(flow, params)).log_prob(x)


def _apply(flow_shape: tuple[int, int, int, int], keys: list[list[str]], params: dict[str, Any], z: jax.Array):
    from numpyro.distributions.flows import InverseAutoregressiveTransform
    from numpyro.nn import AutoregressiveNN

    data_dim, _, width, depth = flow_shape
    for k, layer_keys in enumerate(keys):
        stax_params = []
        for index in range(0, len(layer_keys), 2):
            if index:
                stax_params.append(())
            stax_params.append((params[layer_keys[index]], params[layer_keys[index + 1]]))
        made = AutoregressiveNN(data_dim, [width] * depth, permutation=jnp.asarray(_permutation(k, data_dim)))[1]
        z = InverseAutoregressiveTransform(partial(made, tuple(stax_params)))(z)
    return z


def _translate_flow(name: str, module: AffineAutoregressiveFlow):
    """:func:`~ppl_ebm.nets.torch_to_jax.torch_to_jax`'s translation: NumPyro's transforms with the
    module's weights as flat ``params`` (so jit/grad see them as leaves)."""
    _check_twin(module)
    params, keys = {}, []
    prefix = f"{name}." if name else ""
    for k, layer_params in enumerate(flow_params(module)):
        layer_keys = []
        for index, weights in enumerate(w for w in layer_params if w):
            for part, value in zip(("W", "b"), weights):
                key = f"{prefix}transforms.{k}.made.{index}.{part}"
                params[key] = value
                layer_keys.append(key)
        keys.append(layer_keys)
    shape = (module.data_dim, module.layers, module.width, module.depth)
    return partial(_apply, shape, keys), params


def _register() -> None:
    from ppl_ebm.nets.torch_to_jax import register_module_translation

    register_module_translation(AffineAutoregressiveFlow, _translate_flow)


_register()
