"""The options of the PPLs' own NUTS and HMC that :func:`ppl_ebm.sample` passes on, each checked.

Pyro and NumPyro check few of their kernels' arguments: a negative or NaN step size "runs"
without moving (NumPyro) or loops in its step-size search (Pyro), a string fails deep inside a
traced program. So the registry's ``"nuts"`` and ``"hmc"`` entries check here what the PPLs
would take, by the names the PPLs use; what the front door sets itself (``model``,
``potential_fn``, ``transforms``, ``init_strategy``) is not an option. ``max_leapfrog_steps`` is
ours, not the PPLs': HMC's cap on leapfrog steps per iteration (:mod:`ppl_ebm.ppl.numpyro_hmc_cap`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from ppl_ebm.validation import ArgumentTypeError, check_bool, check_int, check_real

__all__ = ["PPL_OPTIONS", "check_ppl_options"]


def _max_tree_depth(name: str, value: Any) -> int:
    return check_int(name, value, 1)


def _num_steps(name: str, value: Any) -> int | None:
    return None if value is None else check_int(name, value, 1)


def _jit_options(name: str, value: Any) -> dict | None:
    if value is not None and not isinstance(value, Mapping):
        raise ArgumentTypeError(f"{name} must be a dict of torch.jit.trace options or None, got {value!r}.")
    return value


_positive = partial(check_real, low=0.0)
_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "step_size": _positive,
    "trajectory_length": partial(check_real, low=0.0, allow_none=True),
    "num_steps": _num_steps,
    "target_accept_prob": partial(check_real, low=0.0, high=1.0),
    "max_tree_depth": _max_tree_depth,
    "max_leapfrog_steps": _max_tree_depth,  # an int >= 1 too
    "min_stepsize": _positive,
    "max_stepsize": _positive,
    "jit_options": _jit_options,
    **{name: check_bool for name in (
        "adapt_step_size", "adapt_mass_matrix", "full_mass", "dense_mass", "use_multinomial_sampling",
        "jit_compile", "ignore_jit_warnings", "find_heuristic_step_size", "forward_mode_differentiation",
        "regularize_mass_matrix")},
}

_COMMON = ("step_size", "adapt_step_size", "adapt_mass_matrix", "target_accept_prob")
#: (kernel, backend) -> the option names that kernel takes on that backend.
PPL_OPTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("NUTS", "torch"): (*_COMMON, "full_mass", "use_multinomial_sampling", "max_tree_depth", "jit_compile",
                        "jit_options", "ignore_jit_warnings"),
    ("HMC", "torch"): (*_COMMON, "full_mass", "trajectory_length", "num_steps", "jit_compile", "jit_options",
                       "ignore_jit_warnings", "min_stepsize", "max_stepsize", "max_leapfrog_steps"),
    ("NUTS", "jax"): (*_COMMON, "dense_mass", "trajectory_length", "max_tree_depth", "find_heuristic_step_size",
                      "forward_mode_differentiation", "regularize_mass_matrix"),
    ("HMC", "jax"): (*_COMMON, "dense_mass", "trajectory_length", "num_steps", "find_heuristic_step_size",
                     "forward_mode_differentiation", "regularize_mass_matrix", "max_leapfrog_steps"),
}


def check_ppl_options(kernel: str, options: Mapping[str, Any], backend: str | None = None) -> dict[str, Any]:
    """``options`` checked for the PPL ``kernel`` (``"NUTS"``/``"HMC"``) on ``backend`` (None: the
    names either PPL takes); unknown names refused with the list. No defaults are filled:
    the PPL's own apply."""
    backends = ("torch", "jax") if backend is None else (backend,)
    known = sorted({name for b in backends for name in PPL_OPTIONS[(kernel, b)]})
    unknown = sorted(set(options) - set(known))
    if unknown:
        where = "Pyro's" if backend == "torch" else "NumPyro's" if backend == "jax" else "the PPLs'"
        raise ValueError(f"Unknown option(s) {unknown} for {where} {kernel}; it takes {known}.")
    return {name: _CHECKS[name](name, value) for name, value in options.items()}
