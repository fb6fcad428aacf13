"""The sampler registry: a sampler is one entry here.

Each :class:`SamplerSpec` names the sampler, its options (default and check each), what it can
do (``capabilities``) and how to build it on each backend. The front door
(:func:`ppl_ebm.sample`), the CLI, the studies and the couplings read this table; no other file
lists sampler names. Adding a sampler is one :func:`register` call plus its kernel files.

Capabilities:

- ``"streaming"``: draws written to disk as they come, with resumable checkpoints (``draws_dir``);
- ``"processes"``: chains split over processes (torchrun, jax.distributed), one block each;
- ``"until"``: ``until="converged"`` continues the same chains;
- ``"max_seconds"``: a wall-clock budget;
- ``"coupling"``: coupled kernels for L-lag meeting times (:mod:`ppl_ebm.kernels.coupling_jax`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ppl_ebm.kernels.adaptation.mass_matrix import MASS_MATRICES
from ppl_ebm.kernels.adaptation.step_schedule import StepSchedule
from ppl_ebm.kernels.adaptation.step_size import ADAPTATIONS
from ppl_ebm.kernels.cycle import check_independence_every
from ppl_ebm.validation import ArgumentTypeError, check_bool, check_int, check_real

__all__ = [
    "BACKENDS", "Option", "SamplerSpec", "check_step_size_adaptation", "coupled_kernels", "get_sampler",
    "langevin_param_values", "our_step_adaptation", "register", "sampler_names", "step_adaptation",
]

BACKENDS = ("torch", "jax")


@dataclass(frozen=True)
class Option:
    """One sampler option: its default and a check that returns the value or raises ValueError."""

    name: str
    default: Any
    check: Callable[[Any], Any] = lambda value: value
    help: str = ""


@dataclass(frozen=True)
class SamplerSpec:
    """A sampler: ``family`` ``"langevin"`` (our batched kernels, built as
    :class:`~ppl_ebm.kernels.samplers_jax.LangevinSampler`), ``"ppl"`` (the PPL's own NUTS/HMC,
    whose options are checked by :mod:`ppl_ebm.kernels.ppl_options` and passed to its kernel)
    or ``"blackjax"`` (a BlackJAX many-chain sampler with its own warmup, run by
    :mod:`ppl_ebm.drivers.run_blackjax` from ``kernels/<module>_jax.py``); ``kernel`` is the
    Langevin kernel (``"ula"``, ``"mala"``), the PPL class name (``"NUTS"``, ``"HMC"``) or the
    BlackJAX sampler's name. ``backends``: where it runs."""

    name: str
    family: str
    kernel: str
    description: str
    options: tuple[Option, ...] = ()
    capabilities: frozenset[str] = field(default_factory=frozenset)
    # Its own kernel files kernels/<module>_torch.py and <module>_jax.py, each with build(kernel,
    # options); None: the ULA/MALA LangevinSampler of kernels/samplers_*.
    module: str | None = None
    backends: tuple[str, ...] = BACKENDS

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def validate(self, options: Mapping[str, Any], backend: str | None = None) -> dict[str, Any]:
        """Options with defaults filled in, each checked; unknown names refused. A PPL's
        options are checked by the names that PPL takes on ``backend`` (None: either PPL)."""
        if self.family == "ppl":
            from ppl_ebm.kernels.ppl_options import check_ppl_options

            return check_ppl_options(self.kernel, options, backend)
        known = {option.name: option for option in self.options}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"Unknown option(s) {unknown} for sampler {self.name!r}; it takes {sorted(known)}.")
        resolved = {name: options.get(name, option.default) for name, option in known.items()}
        for name, option in known.items():
            resolved[name] = option.check(resolved[name])
        if self.kernel == "ula":
            StepSchedule(resolved["step_size"], resolved["noise_scale"], resolved["decay_rate"],
                         resolved["decay_every"], resolved["noise_decay_rate"]).validate()
        return resolved

    def build(self, backend: str, options: Mapping[str, Any]):
        """The pure Langevin sampler for ``backend`` from validated ``options`` (family "langevin")."""
        if self.family != "langevin":
            raise ValueError(f"{self.name!r} runs inside the PPL's own driver; it has no pure kernel to build.")
        if self.module is not None:
            from importlib import import_module

            return import_module(f"ppl_ebm.kernels.{self.module}_{backend}").build(self.kernel, options)
        if backend == "torch":
            from ppl_ebm.kernels.samplers_torch import LangevinSampler
        else:
            from ppl_ebm.kernels.samplers_jax import LangevinSampler
        # The adaptation is chosen by name (the sampler is a hashable key of compiled programs);
        # the option adapt_step_size=False (and ULA, which has no such option) is a fixed step.
        return LangevinSampler(
            self.kernel, options.get("independence_every"), *step_adaptation(options, adapt_by_default=False),
            options.get("mass_matrix", "none"),
        )


_SAMPLERS: dict[str, SamplerSpec] = {}


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add a sampler; its name must be new."""
    if spec.name in _SAMPLERS:
        raise ValueError(f"A sampler named {spec.name!r} is already registered.")
    _SAMPLERS[spec.name] = spec
    return spec


def sampler_names(capability: str | None = None, family: str | None = None) -> tuple[str, ...]:
    """Registered names, in registration order, optionally those with a capability or of a family."""
    return tuple(name for name, spec in _SAMPLERS.items()
                 if (capability is None or spec.has(capability)) and (family is None or spec.family == family))


def coupled_kernels() -> tuple[str, ...]:
    """The Langevin kernels (``SamplerSpec.kernel``) of the samplers with coupled kernels."""
    return tuple(dict.fromkeys(_SAMPLERS[name].kernel for name in sampler_names("coupling")))


def get_sampler(name: str) -> SamplerSpec:
    """The entry for ``name``; a clear error listing the names otherwise."""
    if not isinstance(name, str) or name not in _SAMPLERS:
        raise ValueError(f"sampler must be one of {sampler_names()}, got {name!r}.")
    return _SAMPLERS[name]


def step_adaptation(options: Mapping[str, Any], adapt_by_default: bool = True) -> tuple[str | None, bool]:
    """``(step_size_adaptation, per_chain_step_size)`` of a sampler with MALA steps from its validated
    options: the scheme's name (None: ``adapt_step_size=False``, a fixed step) and whether each
    chain keeps its own step. The cross-chain scheme always shares one step, so a run split over
    processes reduces its acceptance across them (``per_chain_step_size`` is set False for it)."""
    if not options.get("adapt_step_size", adapt_by_default):
        return None, bool(options.get("per_chain_step_size", True))
    name = options.get("step_size_adaptation", "dual_averaging")
    return name, bool(options.get("per_chain_step_size", True)) and name != "cross_chain"


def our_step_adaptation(spec: "SamplerSpec", name: str) -> dict[str, str]:
    """``{"step_size_adaptation": name}`` for a sampler that takes the option (our MALA family),
    else nothing: how the studies set one scheme for all of ours and leave the baselines alone."""
    return {"step_size_adaptation": name} if any(o.name == "step_size_adaptation" for o in spec.options) else {}


def langevin_param_values(options: Mapping[str, Any], num_warmup: int) -> tuple:
    """``(step_size, noise_scale, decay_rate, decay_every, noise_decay_rate, target_accept_prob,
    num_warmup)`` with the Nones resolved: noise ``sqrt(step_size)`` (DDLS Eq. 4), no decay
    (``decay_every`` 0), noise decay ``sqrt(decay_rate)`` (keeps ``noise^2 / step`` fixed)."""
    step_size = float(options.get("step_size", math.nan))  # nan: a sampler without a step (i-SIR)
    noise_scale = options.get("noise_scale")
    decay_rate = float(options.get("decay_rate", 0.1))
    noise_decay_rate = options.get("noise_decay_rate")
    return (
        step_size,
        math.sqrt(step_size) if noise_scale is None else float(noise_scale),
        decay_rate,
        int(options.get("decay_every") or 0),
        math.sqrt(decay_rate) if noise_decay_rate is None else float(noise_decay_rate),
        float(options.get("target_accept_prob", 0.574)),
        int(num_warmup),
    )


# -- option checks (ppl_ebm.validation's, so every entry point words them alike) --------------
def _positive_float(name: str, allow_none: bool = False) -> Callable[[Any], float | None]:
    return lambda value: check_real(name, value, low=0.0, allow_none=allow_none)


def _rate(name: str, allow_none: bool = False) -> Callable[[Any], float | None]:
    return lambda value: check_real(name, value, low=0.0, high=1.0, high_open=False, allow_none=allow_none)


def _probability(value) -> float:
    return check_real("target_accept_prob", value, low=0.0, high=1.0)


def _boolean(name: str) -> Callable[[Any], bool]:
    return lambda value: check_bool(name, value)


def _steps_or_none(name: str) -> Callable[[Any], int | None]:
    return lambda value: None if value is None else check_int(name, value, 1)


def _one_of(name: str, choices) -> Callable[[Any], str]:
    """A check that a value is one of the strings ``choices``: a wrong type is refused as such."""
    def check(value) -> str:
        if not isinstance(value, str):
            raise ArgumentTypeError(f"{name} must be one of {choices}, got {value!r} ({type(value).__name__}).")
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
        return value
    return check


_mass_matrix = _one_of("mass_matrix", MASS_MATRICES)
#: ``value`` if it names a step-size adaptation scheme; a clear error otherwise (the studies use it too).
check_step_size_adaptation = _one_of("step_size_adaptation", sorted(ADAPTATIONS))


def _required_independence_every(value) -> int:
    if value is None:
        raise ValueError("independence_every must be an int >= 2 for mala-imh (use 'mala' for plain MALA).")
    return check_independence_every(value)


_OURS = frozenset({"streaming", "processes", "until", "max_seconds", "coupling"})
_ULA_OPTIONS = (
    Option("step_size", 0.01, _positive_float("step_size"), "step size eps (DDLS Alg. 1)"),
    Option("noise_scale", None,
           lambda value: check_real("noise_scale", value, low=0.0, low_open=False, allow_none=True),
           "noise std; None: sqrt(step_size)"),
    Option("decay_rate", 0.1, _rate("decay_rate"), "multiply the step by this every decay_every steps (DDLS App. B.2)"),
    Option("decay_every", None, _steps_or_none("decay_every"), "None: constant step"),
    Option("noise_decay_rate", None, _rate("noise_decay_rate", allow_none=True),
           "None: sqrt(decay_rate), keeping noise^2/step fixed"),
    # Off by default: ULA's step is not re-tuned after the matrix changes, and DDLS's fixed
    # step and noise are meant in the latent space's own units.
    Option("mass_matrix", "none", _mass_matrix,
           "inverse mass matrix adapted in warmup's windows: 'none', 'diag' or 'dense'"),
)


def _mala_options(independence_every: Option) -> tuple[Option, ...]:
    return (
        Option("step_size", 0.01, _positive_float("step_size"), "initial step size"),
        Option("adapt_step_size", True, _boolean("adapt_step_size"), "adapt the step in warmup (step_size_adaptation)"),
        Option("target_accept_prob", 0.574, _probability, "0.574: Roberts & Rosenthal 1998"),
        Option("per_chain_step_size", True, _boolean("per_chain_step_size"), "one adapted step per chain"),
        Option("step_size_adaptation", "dual_averaging", check_step_size_adaptation,
               "'dual_averaging' (Stan, NumPyro; a few hundred warmup steps) or 'cross_chain' (one step for all "
               "chains moved by their mean acceptance: tens of warmup steps, many chains)"),
        # Diagonal by default, as NumPyro's and Stan's NUTS: one step cannot serve coordinates
        # whose scales differ (a warmup under 20 steps adapts nothing, so short runs are as before).
        Option("mass_matrix", "diag", _mass_matrix,
               "inverse mass matrix adapted in warmup (pooled over chains when >= 32, else per chain): "
               "'none', 'diag' or 'dense'"),
        independence_every,
    )


register(SamplerSpec("ula", "langevin", "ula", "unadjusted Langevin, DDLS Alg. 1", _ULA_OPTIONS, _OURS))
register(SamplerSpec(
    "mala", "langevin", "mala", "Metropolis-adjusted Langevin, per-chain dual averaging",
    _mala_options(Option("independence_every", None, check_independence_every,
                         "every k-th step an independence step from the prior")),
    _OURS,
))
register(SamplerSpec(
    "mala-imh", "langevin", "mala", "MALA whose every k-th step (default 2) is an independence step from the prior",
    _mala_options(Option("independence_every", 2, _required_independence_every, "k >= 2")),
    _OURS,
))
register(SamplerSpec("nuts", "ppl", "NUTS", "the PPL's own NUTS (Pyro / NumPyro)", (), frozenset({"max_seconds"})))
register(SamplerSpec("hmc", "ppl", "HMC", "the PPL's own HMC (Pyro / NumPyro)", (), frozenset({"max_seconds"})))
# i-SIR and Ex2MCMC (Samsonov et al. 2022): kernels/isir_torch.py, isir_jax.py; no coupled kernel yet.
_GLOBAL = frozenset({"streaming", "processes", "until", "max_seconds"})
_PARTICLES = Option("num_particles", 10, lambda n: check_int("num_particles", n, 2), "N: the state and N - 1 proposals")
register(SamplerSpec(
    "isir", "langevin", "isir", "iterated SIR: the state and N - 1 prior draws, one kept by its weight",
    (_PARTICLES,), _GLOBAL, module="isir",
))
_MALA_STEPS = Option("mala_steps", 3, lambda k: check_int("mala_steps", k, 1), "k MALA steps per i-SIR step")
register(SamplerSpec(
    "ex2mcmc", "langevin", "ex2mcmc", "Ex2MCMC: every i-SIR step followed by mala_steps MALA steps",
    (_PARTICLES, _MALA_STEPS, *_mala_options(None)[:-1]), _GLOBAL, module="isir",
))
# FlEx2MCMC (kernels/flex2mcmc_*.py): Ex2MCMC proposing from a flow trained in warmup. Its
# checkpoints hold the flow and its optimiser; not split over processes: each would train its own
# flow on its own chains, and the draws would not be one process's.
register(SamplerSpec(
    "flex2mcmc", "langevin", "flex2mcmc", "FlEx2MCMC: Ex2MCMC whose i-SIR proposal is a normalizing flow trained "
    "in warmup (maximum likelihood on the chains), then frozen",
    (_PARTICLES, _MALA_STEPS, *_mala_options(None)[:-1],
     Option("flow_layers", 4, lambda n: check_int("flow_layers", n, 1), "affine autoregressive (IAF) layers"),
     Option("flow_width", 32, lambda n: check_int("flow_width", n, 1),
            "MADE hidden width (raised to the latent dimension if smaller)"),
     Option("flow_learning_rate", 1e-3, _positive_float("flow_learning_rate"), "Adam's learning rate"),
     Option("flow_train_steps", 5, lambda n: check_int("flow_train_steps", n, 0),
            "Adam steps per i-SIR step in warmup (0: the flow stays the prior)")),
    frozenset({"streaming", "until", "max_seconds"}), module="flex2mcmc",
))
# Many-chain baselines through BlackJAX (JAX only; kernels/chees_jax.py, meads_jax.py, mams_jax.py).
register(SamplerSpec(
    "chees", "blackjax", "chees", "ChEES-HMC (BlackJAX): jittered HMC, step and trajectory length tuned across chains",
    (Option("step_size", 0.1, _positive_float("step_size"), "initial step size (BlackJAX's test)"),
     Option("learning_rate", 0.5, _positive_float("learning_rate"), "Adam's rate for the trajectory length"),
     Option("target_accept_prob", 0.651, _probability, "harmonic-mean acceptance (Hoffman et al. 2021)"),
     Option("max_leapfrog_steps", 1000, lambda n: check_int("max_leapfrog_steps", n, 1), "cap per trajectory")),
    frozenset(), module="chees", backends=("jax",),
))
register(SamplerSpec(
    "meads", "blackjax", "meads", "MEADS (BlackJAX): generalised HMC tuned from cross-chain statistics over 4 folds",
    (), frozenset(), module="meads", backends=("jax",),
))
register(SamplerSpec(
    "mams", "blackjax", "mams", "MAMS (BlackJAX): adjusted microcanonical Langevin, random trajectory lengths, "
    "tuned by BlackJAX's adjusted-MCLMC tuner",
    (Option("target_accept_prob", 0.9, _probability, "0.9: the MAMS authors' target"),
     Option("tuning_chains", 16, lambda n: check_int("tuning_chains", n, 1),
            "chains BlackJAX's tuner runs on (then all chains burn in with the pooled kernel)")),
    frozenset(), module="mams", backends=("jax",),
))
