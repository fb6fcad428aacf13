"""Networks by name: a JSON-able :class:`NetworkConfig` and the registry that builds it.

A model folder stores each network as ``{"architecture": name, "options": {...}}``, so loading
it needs only this registry, not the code that trained it (an image GAN with conv nets loads
like the toy MLPs). The zoo's architectures of :mod:`ppl_ebm.nets.architectures` are
registered at the bottom of this file; a new one is one call::

    @register_network("my_critic")
    def my_critic(width: int = 64) -> torch.nn.Module: ...

Options are checked against the builder's signature before it runs (unknown or missing
names, and values whose type does not match the default's), so a typo in a ``config.json``
fails with the allowed names instead of a ``TypeError`` from deep inside torch.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ppl_ebm.nets import architectures

__all__ = [
    "NetworkConfig",
    "build_network",
    "network_builder",
    "network_names",
    "register_network",
]

NetworkBuilder = Callable[..., nn.Module]

_REGISTRY: dict[str, NetworkBuilder] = {}


def register_network(name: str, builder: NetworkBuilder | None = None) -> Any:
    """Register ``builder`` under ``name``; usable as a call or as a decorator.

    Parameters
    ----------
    name
        The architecture name stored in ``NetworkConfig.architecture`` (and in model folders).
    builder
        A function of keyword options returning a ``torch.nn.Module``. Omitted: returns a
        decorator that registers the function it wraps and gives it back unchanged.

    Returns
    -------
    callable
        ``builder`` itself, or the decorator.

    Raises
    ------
    ValueError
        If ``name`` is not a non-empty string or is already registered to another builder
        (names in saved models must keep meaning the same network: pick a new name).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")

    def register(function: NetworkBuilder) -> NetworkBuilder:
        if not callable(function):
            raise ValueError(f"builder for {name!r} must be callable, got {function!r}.")
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not function:
            raise ValueError(
                f"architecture name {name!r} is already registered to {existing.__qualname__}; "
                "saved models refer to networks by this name, so register yours under a new name."
            )
        _REGISTRY[name] = function
        return function

    return register if builder is None else register(builder)


def network_names() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(_REGISTRY)


def network_builder(name: str) -> NetworkBuilder:
    """The builder registered under ``name``.

    Raises
    ------
    ValueError
        For an unregistered name; the message lists the registered ones.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"architecture must be one of {network_names()}, got {name!r}; use a registered name "
            "or register the builder with ppl_ebm.nets.registry.register_network."
        ) from None


_JSON_SCALARS = (bool, int, float, str, type(None))


def _json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON data (tuples become lists, so a round trip compares equal)."""
    if isinstance(value, _JSON_SCALARS):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_value(item, where) for item in value]
    raise ValueError(
        f"{where} must be a JSON value (bool, int, float, str, None or a list of them), got "
        f"{type(value).__name__} {value!r}; store plain numbers and strings in a network config."
    )


@dataclass(frozen=True)
class NetworkConfig:
    """An architecture name and the keyword options of its builder.

    Parameters
    ----------
    architecture
        A name from :func:`network_names`.
    options
        Keyword arguments of the builder, plain JSON values (tuples are stored as lists).

    Examples
    --------
    >>> config = NetworkConfig("toy_critic", {"width": 64, "depth": 2})
    >>> NetworkConfig.from_json(config.to_json()) == config
    True
    """

    architecture: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str) or not self.architecture:
            raise ValueError(f"architecture must be a non-empty string, got {self.architecture!r}.")
        if not isinstance(self.options, Mapping):
            raise ValueError(f"options must be a mapping of keyword options, got {type(self.options).__name__}.")
        plain = {}
        for key, value in self.options.items():
            if not isinstance(key, str):
                raise ValueError(f"options keys must be strings (builder argument names), got {key!r}.")
            plain[key] = _json_value(value, f"options[{key!r}]")
        object.__setattr__(self, "options", plain)

    def __hash__(self) -> int:
        # The options dict is not hashable; the canonical JSON text identifies the config.
        return hash(self.to_json())

    def to_dict(self) -> dict[str, Any]:
        """``{"architecture": ..., "options": {...}}``, as stored in a model's config.json."""
        return {"architecture": self.architecture, "options": dict(self.options)}

    def to_json(self) -> str:
        """The config as JSON text (keys sorted, so equal configs give equal text)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], argument: str = "network config") -> NetworkConfig:
        """Read ``{"architecture": ..., "options": {...}}``.

        Parameters
        ----------
        data
            The mapping (e.g. ``config["generator"]`` of a model folder).
        argument
            What ``data`` is, for error messages (``"generator"``, ``"critic"``).

        Raises
        ------
        ValueError
            If ``data`` is not such a mapping (missing ``architecture``, unknown keys).
        """
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{argument} must be a mapping {{'architecture': name, 'options': {{...}}}}, got "
                f"{type(data).__name__}."
            )
        unknown = sorted(set(data) - {"architecture", "options"})
        if "architecture" not in data or unknown:
            raise ValueError(
                f"{argument} must have the keys 'architecture' and optionally 'options'; got "
                f"{sorted(data)}. Write it as {{'architecture': one of {network_names()}, 'options': {{...}}}}."
            )
        return cls(data["architecture"], data.get("options") or {})

    @classmethod
    def from_json(cls, text: str, argument: str = "network config") -> NetworkConfig:
        """Read the JSON text written by :meth:`to_json`."""
        return cls.from_dict(json.loads(text), argument)

    def validate(self) -> NetworkConfig:
        """Check the name and the options against the builder's signature; returns ``self``.

        Raises
        ------
        ValueError
            For an unregistered name, an option the builder does not take, a required option
            left out, or a value whose type differs from the default's (``int`` where the
            default is an ``int``, ``bool`` for a ``bool``, ``str`` for a ``str``, a number for
            a ``float``).
        """
        builder = network_builder(self.architecture)
        parameters = {
            name: parameter
            for name, parameter in inspect.signature(builder).parameters.items()
            if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        unknown = sorted(set(self.options) - set(parameters))
        if unknown:
            raise ValueError(
                f"options {unknown} are not options of architecture {self.architecture!r}; "
                f"its options are {sorted(parameters)}."
            )
        missing = sorted(
            name for name, parameter in parameters.items()
            if parameter.default is inspect.Parameter.empty and name not in self.options
        )
        if missing:
            raise ValueError(
                f"architecture {self.architecture!r} needs the options {missing}; add them to options."
            )
        for name, value in self.options.items():
            _check_type(self.architecture, name, value, parameters[name].default)
        return self


def _check_type(architecture: str, name: str, value: Any, default: Any) -> None:
    if default is inspect.Parameter.empty or default is None:
        return  # nothing to compare with; the builder checks the value itself
    if isinstance(default, bool):
        expected, ok = "a bool", isinstance(value, bool)
    elif isinstance(default, int):
        expected, ok = "an int", isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        expected, ok = "a number", isinstance(value, (int, float)) and not isinstance(value, bool)
    elif isinstance(default, str):
        expected, ok = "a string", isinstance(value, str)
    else:
        return
    if not ok:
        raise ValueError(
            f"option {name!r} of architecture {architecture!r} must be {expected} (its default is "
            f"{default!r}), got {value!r}."
        )


def build_network(config: NetworkConfig | Mapping[str, Any]) -> nn.Module:
    """Build the torch module a :class:`NetworkConfig` (or its dict form) describes.

    Parameters
    ----------
    config
        A ``NetworkConfig`` or ``{"architecture": ..., "options": {...}}``.

    Returns
    -------
    torch.nn.Module
        Freshly initialised (torch's default initialisation, from torch's global seed).

    Raises
    ------
    ValueError
        For an unknown architecture, bad options (see :meth:`NetworkConfig.validate`), or
        values the builder itself refuses (its message is kept).
    """
    if not isinstance(config, NetworkConfig):
        config = NetworkConfig.from_dict(config)
    config.validate()
    try:
        return network_builder(config.architecture)(**config.options)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"architecture {config.architecture!r} could not be built from options {config.options}: {error}"
        ) from error


# The zoo's architectures. A new one: one more line here, or @register_network on its builder.
register_network("mlp", architectures.mlp)
register_network("toy_generator", architectures.toy_generator)
register_network("toy_critic", architectures.toy_critic)
register_network("batchnorm_generator", architectures.batchnorm_generator)
register_network("conv_generator", architectures.conv_generator)
register_network("conv_critic", architectures.conv_critic)
register_network("image_classifier", architectures.image_classifier)

# Pyro-based; importing it also registers its JAX translation (NumPyro twin) with torch_to_jax.
from ppl_ebm.nets import flows as _flows  # noqa: E402

register_network("affine_autoregressive_flow", _flows.affine_autoregressive_flow)
