"""Baking a module's parametrizations (spectral norm) into plain weights.

A spectral-norm layer computes ``W / sigma(W)`` from its raw weight and the power iteration's
``u, v`` buffers, state that only moves in train mode. Fine-tuning a critic by BCE (DDLS 5.2,
:mod:`ppl_ebm.training.critic_tuning`) trains the layer's effective weight itself (the
torch-to-JAX translator hands it the weight the layer computes in eval mode), so the fine-tuned
critic is the same architecture with plain weights: it starts as exactly the eval-mode function
of the trained critic, and no power iteration rescales it afterwards.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import parametrize

__all__ = ["bake_parametrizations"]


def bake_parametrizations(module: nn.Module) -> nn.Module:
    """Replace every parametrized tensor of ``module`` (in place) by its current value.

    Returns ``module``; in eval mode its function is unchanged (to rounding).
    """
    for layer in list(module.modules()):
        if parametrize.is_parametrized(layer):
            values = {name: getattr(layer, name).detach().clone() for name in layer.parametrizations.keys()}
            # Not parametrize.remove_parametrizations: it deletes the property from the layer's
            # generated class, which a deep copy shares with the original module, breaking it.
            layer.__class__ = layer.__class__.__bases__[0]
            del layer._modules["parametrizations"]
            for name, value in values.items():
                layer.register_parameter(name, nn.Parameter(value))
    return module
