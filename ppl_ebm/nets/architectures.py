"""Generator and critic architectures of the model zoo.

The toy networks follow the 2-D experiments of DOT (Tanaka, 2019) and DDLS
(Che et al., 2020); the convolutional ones follow the "standard CNN" of the
SN-GAN paper (Miyato et al., 2018), a CIFAR-10 architecture both papers build on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = ["mlp", "toy_generator", "toy_critic", "batchnorm_generator", "conv_generator", "conv_critic",
           "image_classifier"]  # the builders (the registry's architectures); ACTIVATION_NAMES and
# FourierFeatures (toy_critic's input layer) are public too

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    # 0.2 is the slope the DOT/DDLS toy critics use.
    "leaky_relu": partial(nn.LeakyReLU, negative_slope=0.2),
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}
ACTIVATION_NAMES = tuple(sorted(_ACTIVATIONS))  # the ``activation`` options, for command-line choices


def _activation(name: str) -> nn.Module:
    try:
        return _ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}.") from None


def _check_sizes(minimum: int = 1, **sizes: object) -> None:
    # Torch accepts some bad sizes (a width of 0 builds an empty layer) and fails late on
    # others, so sizes are checked here, where the message can name the argument.
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")


def mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    activation: str = "relu",
) -> nn.Sequential:
    """Fully connected network with an activation between its Linear layers.

    Parameters
    ----------
    in_features, out_features
        Input and output widths.
    hidden
        Widths of the hidden layers, in order (may be empty: a single Linear layer).
    activation
        ``"relu"``, ``"leaky_relu"`` (slope 0.2), ``"elu"``, ``"tanh"`` or ``"softplus"``.

    Returns
    -------
    torch.nn.Sequential
        ``Linear, act, Linear, act, ..., Linear``; the output layer has no activation.
    """
    _check_sizes(in_features=in_features, out_features=out_features)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise ValueError(f"hidden must be a sequence of layer widths, got {hidden!r}.")
    _check_sizes(**{f"hidden[{index}]": width for index, width in enumerate(hidden)})
    _activation(activation)  # an unknown name fails before any layer is built
    widths = [in_features, *hidden, out_features]
    layers: list[nn.Module] = []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if index < len(widths) - 2:
            layers.append(_activation(activation))
    return nn.Sequential(*layers)


def toy_generator(
    latent_dim: int = 2,
    data_dim: int = 2,
    width: int = 256,
    depth: int = 3,
    activation: str = "relu",
) -> nn.Sequential:
    """Toy generator ``latent_dim -> width x depth -> data_dim`` (DOT/DDLS 2-D experiments).

    Parameters
    ----------
    latent_dim, data_dim
        Input and output widths.
    width, depth
        Width and number of the hidden layers.
    activation
        Hidden activation, see :func:`mlp`.

    Returns
    -------
    torch.nn.Sequential
        Maps ``(batch, latent_dim)`` to ``(batch, data_dim)``.
    """
    _check_sizes(width=width)
    _check_sizes(minimum=0, depth=depth)
    return mlp(latent_dim, [width] * depth, data_dim, activation)


class FourierFeatures(nn.Module):
    """``x -> [x, sin(2 pi B x), cos(2 pi B x)]`` with a fixed random ``B`` (Tancik et al. 2020).

    A ReLU MLP on raw 2-D points learns structure finer than its input's scale slowly (the
    spectral bias Tancik et al. describe); sinusoids of random frequencies hand it that
    structure as input features. ``B`` (``num_features x in_features``, entries N(0, scale^2),
    drawn from torch's global stream, so a seeded build draws the same ``B``) is a buffer, not a
    parameter: it is saved with the weights, so a loaded network is exactly the trained
    function, and training leaves it fixed. ``scale`` is in the data's units: a frequency ``b``
    has period ``1 / |b|``.
    """

    def __init__(self, in_features: int, num_features: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("frequencies", torch.randn(num_features, in_features) * scale)

    def extra_repr(self) -> str:
        num_features, in_features = self.frequencies.shape
        return f"in_features={in_features}, num_features={num_features}"

    @property
    def out_features(self) -> int:
        num_features, in_features = self.frequencies.shape
        return in_features + 2 * num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.linear is x @ B^T; the raw x is kept so the low-frequency trend needs no sinusoid.
        projection = F.linear(x, self.frequencies) * (2 * math.pi)
        return torch.cat([x, torch.sin(projection), torch.cos(projection)], dim=-1)


def toy_critic(
    data_dim: int = 2,
    width: int = 512,
    depth: int = 3,
    activation: str = "relu",
    image_shape: Sequence[int] | None = None,
    fourier_features: int = 0,
    fourier_scale: float = 1.0,
) -> nn.Sequential:
    """Toy critic ``data_dim -> width x depth -> 1`` (DOT/DDLS 2-D experiments).

    Parameters
    ----------
    data_dim
        Input width.
    width, depth
        Width and number of the hidden layers.
    activation
        Hidden activation, see :func:`mlp`.
    image_shape
        ``(channels, side, side)``: the critic takes images of this shape and flattens them
        first (``data_dim`` must be their size); None takes flat points.
    fourier_features
        ``m`` > 0: the MLP reads :class:`FourierFeatures` of its input (``data_dim + 2 m``
        values: x, sin and cos of ``m`` random projections); 0: the raw input.
    fourier_scale
        Standard deviation of the random frequencies (data units; used when ``m`` > 0).

    Returns
    -------
    torch.nn.Sequential
        Maps ``(batch, data_dim)`` (or ``(batch, *image_shape)``) to ``(batch, 1)``; the
        trailing axis is kept so the critic has the same output shape as the convolutional one.
        The last module is always the output Linear (a zero energy zeroes it).
    """
    _check_sizes(width=width)
    _check_sizes(minimum=0, depth=depth, fourier_features=fourier_features)
    if isinstance(fourier_scale, bool) or not isinstance(fourier_scale, (int, float)) \
            or not math.isfinite(fourier_scale) or fourier_scale <= 0:
        raise ValueError(f"fourier_scale must be a finite number > 0, got {fourier_scale!r}.")
    front: list[nn.Module] = []
    if image_shape is not None:
        _check_image_shape(image_shape, data_dim)
        front.append(nn.Flatten())
    in_features = data_dim
    if fourier_features:
        features = FourierFeatures(data_dim, fourier_features, float(fourier_scale))
        front.append(features)
        in_features = features.out_features
    network = mlp(in_features, [width] * depth, 1, activation)
    return nn.Sequential(*front, *network) if front else network


def _check_image_shape(image_shape: Sequence[int], data_dim: int) -> tuple[int, ...]:
    if isinstance(image_shape, (str, bytes)) or not isinstance(image_shape, Sequence) or not image_shape:
        raise ValueError(f"image_shape must be a sequence of sizes, got {image_shape!r}.")
    _check_sizes(**{f"image_shape[{index}]": size for index, size in enumerate(image_shape)})
    size = 1
    for value in image_shape:
        size *= value
    if size != data_dim:
        raise ValueError(f"image_shape {list(image_shape)} has {size} values, but data_dim is {data_dim}.")
    return tuple(image_shape)


def batchnorm_generator(
    latent_dim: int = 4,
    data_dim: int = 2,
    width: int = 128,
    depth: int = 2,
    output_activation: str = "none",
    image_shape: Sequence[int] | None = None,
) -> nn.Sequential:
    """Dai et al.'s (2017) toy generator: ``latent_dim -> (Linear, BatchNorm1d, ReLU) x depth -> data_dim``.

    The defaults are the released code's (``cegan_iclr2017/synthetic/network.py``: noise 4,
    two hidden layers of 128 with batch norm). In eval mode the batch norms use their running
    statistics, so a sample does not depend on the other points of its batch.

    Parameters
    ----------
    latent_dim, data_dim
        Input and output widths.
    width, depth
        Width and number of the hidden layers.
    output_activation
        ``"none"`` (a linear output, the toy sets) or ``"tanh"`` (images in ``[-1, 1]``; the
        released digits code ends in a sigmoid for pixels in ``[0, 1]``).
    image_shape
        ``(channels, side, side)``: reshape the output to images of this shape (``data_dim``
        must be their size); None keeps flat points.

    Returns
    -------
    torch.nn.Sequential
        Maps ``(batch, latent_dim)`` to ``(batch, data_dim)`` (or ``(batch, *image_shape)``).
    """
    _check_sizes(latent_dim=latent_dim, data_dim=data_dim, width=width)
    _check_sizes(minimum=0, depth=depth)
    if output_activation not in ("none", "tanh"):
        raise ValueError(f"output_activation must be 'none' or 'tanh', got {output_activation!r}.")
    shape = None if image_shape is None else _check_image_shape(image_shape, data_dim)
    layers: list[nn.Module] = []
    width_in = latent_dim
    for _ in range(depth):
        layers += [nn.Linear(width_in, width), nn.BatchNorm1d(width), nn.ReLU()]
        width_in = width
    layers.append(nn.Linear(width_in, data_dim))
    if output_activation == "tanh":
        layers.append(nn.Tanh())
    if shape is not None:
        layers.append(nn.Unflatten(1, shape))
    return nn.Sequential(*layers)


def _upsampling_steps(image_size: int) -> int:
    # Both conv nets work on a 4x4 feature map at their narrow end, so the image
    # side must be 4 times a power of two.
    _check_sizes(image_size=image_size)
    steps = (image_size // 4).bit_length() - 1
    if image_size < 8 or 4 * 2**steps != image_size:
        raise ValueError(f"image_size must be 4 * 2**k with k >= 1 (8, 16, 32, 64, ...), got {image_size}")
    return steps


def conv_generator(
    latent_dim: int = 128,
    channels: int = 3,
    base_width: int = 64,
    image_size: int = 32,
) -> nn.Sequential:
    """DCGAN / SN-GAN "standard CNN" generator.

    ``Linear(latent -> 4*4*8w)``, reshape to ``(8w, 4, 4)``, then
    ``ConvTranspose2d(4, stride 2, pad 1) + BatchNorm2d + ReLU`` blocks that double the
    side and halve the width (not below ``w``) up to ``image_size``, then
    ``Conv2d(3x3, pad 1) + Tanh`` to ``channels``.

    Parameters
    ----------
    latent_dim
        Width of the latent input.
    channels
        Channels of the image.
    base_width
        ``w`` above; 64 gives the SN-GAN widths 512-256-128-64 at ``image_size=32``.
    image_size
        Side of the square output, ``4 * 2**k`` with ``k >= 1``.

    Returns
    -------
    torch.nn.Sequential
        Maps ``(batch, latent_dim)`` to ``(batch, channels, image_size, image_size)`` in ``[-1, 1]``.
    """
    _check_sizes(latent_dim=latent_dim, channels=channels, base_width=base_width)
    width = base_width * 8
    layers: list[nn.Module] = [nn.Linear(latent_dim, 4 * 4 * width), nn.Unflatten(1, (width, 4, 4))]
    for _ in range(_upsampling_steps(image_size)):
        next_width = max(base_width, width // 2)
        layers += [
            nn.ConvTranspose2d(width, next_width, kernel_size=4, stride=2, padding=1),
            nn.BatchNorm2d(next_width),
            nn.ReLU(),
        ]
        width = next_width
    layers += [nn.Conv2d(width, channels, kernel_size=3, padding=1), nn.Tanh()]
    return nn.Sequential(*layers)


def conv_critic(
    channels: int = 3,
    base_width: int = 64,
    image_size: int = 32,
    spectral_norm: bool = True,
) -> nn.Sequential:
    """SN-GAN "standard CNN" critic.

    Per stage a ``Conv2d(3x3, stride 1)`` and a downsampling ``Conv2d(4x4, stride 2)``,
    each followed by ``LeakyReLU(0.1)``, doubling the width from ``w`` until the map is
    4x4; then ``Conv2d(3x3)`` to the next width, ``Flatten`` and ``Linear -> 1``.

    Parameters
    ----------
    channels
        Channels of the image.
    base_width
        ``w`` above; 64 gives the SN-GAN widths 64-128-256-512 at ``image_size=32``.
    image_size
        Side of the square input, ``4 * 2**k`` with ``k >= 1``.
    spectral_norm
        Wrap every Conv2d and Linear in
        :func:`torch.nn.utils.parametrizations.spectral_norm` (the SN-GAN critic).

    Returns
    -------
    torch.nn.Sequential
        Maps ``(batch, channels, image_size, image_size)`` to ``(batch, 1)``.
    """
    _check_sizes(channels=channels, base_width=base_width)
    wrap = _spectral_norm if spectral_norm else (lambda layer: layer)
    layers: list[nn.Module] = []
    width_in = channels
    steps = _upsampling_steps(image_size)
    for step in range(steps):
        width = base_width * 2**step
        layers += [
            wrap(nn.Conv2d(width_in, width, kernel_size=3, stride=1, padding=1)),
            nn.LeakyReLU(0.1),
            wrap(nn.Conv2d(width, width, kernel_size=4, stride=2, padding=1)),
            nn.LeakyReLU(0.1),
        ]
        width_in = width
    final_width = base_width * 2**steps
    layers += [
        wrap(nn.Conv2d(width_in, final_width, kernel_size=3, stride=1, padding=1)),
        nn.LeakyReLU(0.1),
        nn.Flatten(),
        wrap(nn.Linear(final_width * 4 * 4, 1)),
    ]
    return nn.Sequential(*layers)


def image_classifier(
    channels: int = 1,
    image_size: int = 8,
    base_width: int = 32,
    feature_width: int = 128,
    num_classes: int = 10,
) -> nn.Sequential:
    """Small conv classifier whose penultimate layer is the feature space of the image metrics.

    Per stage ``Conv2d(3x3) + ReLU`` and a downsampling ``Conv2d(4x4, stride 2) + ReLU``,
    doubling the width from ``w`` until the map is 4x4; then ``Flatten``,
    ``Linear -> feature_width + ReLU`` (the features: ``model[:-1](x)``) and
    ``Linear -> num_classes`` (logits: ``model(x)``).

    Parameters
    ----------
    channels, image_size
        The images' channels and side (``4 * 2**k``, ``k >= 1``).
    base_width
        ``w`` above.
    feature_width
        Width of the feature layer (the Frechet distance's and precision/recall's space).
    num_classes
        Number of classes.

    Returns
    -------
    torch.nn.Sequential
        Maps ``(batch, channels, image_size, image_size)`` to ``(batch, num_classes)`` logits.
    """
    _check_sizes(channels=channels, base_width=base_width, feature_width=feature_width, num_classes=num_classes)
    layers: list[nn.Module] = []
    width_in = channels
    for step in range(_upsampling_steps(image_size)):
        width = base_width * 2**step
        layers += [
            nn.Conv2d(width_in, width, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, kernel_size=4, stride=2, padding=1), nn.ReLU(),
        ]
        width_in = width
    layers += [nn.Flatten(), nn.Linear(width_in * 4 * 4, feature_width), nn.ReLU(), nn.Linear(feature_width, num_classes)]
    return nn.Sequential(*layers)
