"""A digest of everything that decides a run's draws, so a draw store is never resumed (or its
finished draws returned) for another target.

What is digested, walking values recursively:

- a torch module: for it and every submodule, its class, train/eval mode, every parameter
  and buffer (persistent or not) with dtype and shape, and every plain attribute its
  ``forward`` may read (``self.scale = 2.0``, ``self.negative_slope``, a tensor kept as an
  attribute), the torch base class's own bookkeeping excepted;
- a latent EBM (torch or JAX): every attribute: the networks (modules, or JAX parameters and
  the translated functions), critic output, temperature, ``extended_noise_scale``, latent
  sizes and the prior with its parameters;
- a model callable: its qualified name, its code, default arguments and closure, plus the
  ``model_args`` and ``model_kwargs`` it is called with (its module's globals are not read);
- functions by qualified name and code, never by ``repr`` (which holds a memory address that
  changes between processes, and would refuse every resume).

The sampler, its options, the seed and the chain layout are the store's other settings
(:func:`ppl_ebm.sampling._open_store`).
"""

from __future__ import annotations

import hashlib
import numbers
import sys
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["fingerprint"]

_MAX_DEPTH = 12


def fingerprint(target: Any, initial_params: Any = None, model_args: tuple = (), model_kwargs: Mapping | None = None
                ) -> str:
    """A 16-hex-digit digest of ``target`` (and the model's arguments and the starting points)."""
    digest = hashlib.sha256()
    _Walker(digest).walk(target)
    if model_args or model_kwargs:
        _Walker(digest).walk((tuple(model_args), dict(model_kwargs or {})))
    if initial_params is not None:
        digest.update(np.asarray(initial_params, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def _module_bookkeeping() -> frozenset[str]:
    import torch

    return frozenset(vars(torch.nn.Module()))


class _Walker:
    def __init__(self, digest):
        self.digest = digest
        self.seen: set[int] = set()
        self.bookkeeping: frozenset[str] | None = None

    def put(self, *parts: Any) -> None:
        for part in parts:
            self.digest.update(part if isinstance(part, bytes) else repr(part).encode())
            self.digest.update(b"\x00")

    def walk(self, value: Any, depth: int = 0) -> None:
        if depth > _MAX_DEPTH:
            self.put("<deep>", _qualname(type(value)))
            return
        if value is None or isinstance(value, (bool, str, bytes, numbers.Number, type(Ellipsis))):
            self.put(type(value).__name__, value)
            return
        if isinstance(value, type):
            self.put("type", _qualname(value))
            return
        if id(value) in self.seen:  # shared or cyclic: once is enough
            self.put("<seen>")
            return
        self.seen.add(id(value))
        # A torch object exists only if torch was imported: a JAX run's fingerprint never loads it.
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.nn.Module):
            self.module(value, depth)
        elif torch is not None and isinstance(value, torch.Tensor):
            array = value.detach().cpu()
            self.put("tensor", str(array.dtype), tuple(array.shape))
            # reshape(-1): a 0-d tensor (a calibration head's scalar) cannot be viewed as bytes; same bytes otherwise.
            self.put(array.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if array.numel() else b"")
        elif torch is not None and isinstance(value, (torch.device, torch.dtype, torch.Size)):
            self.put(str(value))
        elif isinstance(value, np.ndarray) or (hasattr(value, "__array__") and hasattr(value, "shape")
                                               and hasattr(value, "dtype")):
            array = np.asarray(value)
            self.put("array", str(array.dtype), array.shape, np.ascontiguousarray(array).tobytes())
        elif isinstance(value, Mapping):
            self.put("mapping", len(value))
            for key in sorted(value, key=repr):
                self.walk(key, depth + 1)
                self.walk(value[key], depth + 1)
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            self.put(type(value).__name__, len(items))
            for item in items:
                self.walk(item, depth + 1)
        elif isinstance(value, functools_partial_type()):
            self.put("partial")
            self.walk((value.func, value.args, value.keywords), depth + 1)
        elif isinstance(value, (types.FunctionType, types.MethodType)):
            self.function(value, depth)
        elif isinstance(value, types.CodeType):
            self.code(value, depth)
        elif isinstance(value, (types.BuiltinFunctionType, types.ModuleType)):
            self.put(type(value).__name__, getattr(value, "__module__", ""), getattr(value, "__qualname__",
                                                                                    getattr(value, "__name__", "")))
        else:
            self.put("object", _qualname(type(value)))
            attributes = getattr(value, "__dict__", None)
            if attributes is not None:
                self.walk(dict(attributes), depth + 1)
            elif hasattr(value, "__slots__"):
                self.walk({name: getattr(value, name, None) for name in value.__slots__}, depth + 1)
            if callable(value) and not isinstance(value, type) and attributes is None:
                self.put(getattr(value, "__qualname__", ""))

    def module(self, module, depth: int) -> None:
        if self.bookkeeping is None:
            self.bookkeeping = _module_bookkeeping()
        for name, sub in module.named_modules():
            self.put("module", name, _qualname(type(sub)), sub.training)
            for key, tensor in list(sub.named_parameters(recurse=False)) + list(sub.named_buffers(recurse=False)):
                self.put(key)
                self.walk(tensor, depth + 1)
            extras = {key: item for key, item in vars(sub).items() if key not in self.bookkeeping}
            self.walk(extras, depth + 1)
            # Hooks change what forward computes: their functions count too.
            for hooks in (sub._forward_hooks, sub._forward_pre_hooks):
                for hook in hooks.values():
                    self.walk(hook, depth + 1)

    def function(self, function, depth: int) -> None:
        if isinstance(function, types.MethodType):
            self.put("method", function.__func__.__qualname__)
            self.walk(function.__self__, depth + 1)
            return
        self.put("function", function.__module__, function.__qualname__)
        self.code(function.__code__, depth)
        self.walk((function.__defaults__, function.__kwdefaults__), depth + 1)
        for cell in function.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                contents = None
            self.walk(contents, depth + 1)

    def code(self, code: types.CodeType, depth: int) -> None:
        self.put("code", code.co_code, code.co_names)
        for constant in code.co_consts:
            self.walk(constant, depth + 1)


def functools_partial_type():
    import functools

    return functools.partial


def _qualname(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"
