"""How many Langevin steps before the draws count: the mixing-time study (``ppl-ebm mixing``).

Three views, for ULA, MALA and ``mala-imh`` (MALA whose every k-th step is an independence
step from the prior, ``independence_every=k``, default 2) on a zoo model's DDLS target (JAX
kernels, the fast CPU path):

1. progression (DDLS Fig. 5): many chains from the prior; every ``every`` steps the EMD of
   ``G(z)`` to fresh data and the mean energy, with the step where each plateaus;
2. R-hat against iteration: rank R-hat over the second half of the draws so far, and nested
   R-hat (Margossian et al. 2022) of the current states of superchains that share their start;
3. the L-lag coupling bound on TV(pi_t, pi) (Biswas, Jacob & Vanetti 2019) from meeting times
   of coupled pairs started from the prior (for ULA, pi is its own biased stationary law).
   ``mala-imh`` couples its independence steps by a common proposal and uniform
   (:func:`ppl_ebm.kernels.coupling_jax.coupled_independence_step`), on the uncoupled kernel's cycle.

The default target is the 25-Gaussians NS-GAN, whose highest density lies among the prior's
draws. On the WGAN-GP models it lies at ``|z|`` = 21-26, beyond every prior draw, so there
the views measured the drift outwards, not the forgetting of the start. The target check
(:mod:`ppl_ebm.targets.target_check`) runs first and goes in the report.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ppl_ebm.diagnostics import arviz_compat
from ppl_ebm.data import toy as datasets
from ppl_ebm import metrics
from ppl_ebm.kernels.cycle import check_lagged_cycle
from ppl_ebm.diagnostics.mixing import mixing_time, nested_rhat, tv_upper_bound
from ppl_ebm.targets.target_check import checked_target
from ppl_ebm.kernels.registry import get_sampler, sampler_names
from ppl_ebm.validation import check_positive_ints
from ppl_ebm.zoo.store import latent_ebm_of, load_model

__all__ = ["SAMPLERS", "MixingConfig", "plateau_step", "run_mixing"]

SAMPLERS = sampler_names("coupling")  # the registry's samplers with coupled kernels


@dataclass
class MixingConfig:
    model: str = "25gaussians-nsgan"
    samplers: tuple[str, ...] = SAMPLERS
    chains: int = 1000
    steps: int = 1000
    every: int = 20
    ula_step_size: float = 0.003
    mala_step_size: float | None = None  # None: the median adapted step of a 200-step pilot
    superchains: int = 50
    pairs: int = 200
    lag: int = 100
    max_iterations: int = 5000
    # mala-imh: every k-th step an independence step (the sampler study's choice, 2); the lag
    # must be a multiple of it (see ppl_ebm.kernels.cycle.check_lagged_cycle).
    independence_every: int = 2
    raw_critic: bool = False
    check_target: bool = True
    seed: int = 0

    def validate(self) -> "MixingConfig":
        check_positive_ints(self, ("chains", "steps", "every", "superchains", "pairs", "lag", "max_iterations"))
        if set(self.samplers) - set(SAMPLERS) or not self.samplers:
            raise ValueError(f"samplers must be a non-empty subset of {SAMPLERS}, got {self.samplers!r}.")
        if any(_cycles(sampler) for sampler in self.samplers):
            if self.independence_every is None:  # None would make mala-imh plain MALA
                raise ValueError("independence_every must be an int >= 2 for mala-imh, got None.")
            check_lagged_cycle("mala", self.lag, self.independence_every)
        if self.steps % self.every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of every ({self.every}).")
        if self.chains % self.superchains or self.chains // self.superchains < 2:
            raise ValueError(f"chains ({self.chains}) must split into {self.superchains} superchains of >= 2.")
        if self.max_iterations <= self.lag:
            raise ValueError(f"max_iterations ({self.max_iterations}) must exceed the lag ({self.lag}).")
        return self


def plateau_step(steps: np.ndarray, values: np.ndarray, tail: float = 0.2) -> int | None:
    """First checkpoint from which the series stays within the band it keeps at the end:
    the last ``tail`` fraction's mean +- max(3 of its std, 2% of |mean|). None when that end
    is still moving: a line fitted to it changes across it by more than 2% of |mean| and more
    than 3 of its own standard errors (a series still falling at the last step would otherwise
    get a "plateau" wherever it entered the band of its last values)."""
    steps, values = np.asarray(steps, dtype=np.float64), np.asarray(values, dtype=np.float64)
    count = max(3, int(round(tail * len(values))))
    last_steps, last = steps[-count:], values[-count:]
    centre, width = last.mean(), max(3.0 * last.std(ddof=1), 0.02 * abs(last.mean()))
    slope, intercept = np.polyfit(last_steps, last, 1)
    residual = last - (slope * last_steps + intercept)
    spread = np.sqrt(np.sum((last_steps - last_steps.mean()) ** 2))
    slope_se = np.sqrt(np.sum(residual**2) / max(count - 2, 1)) / spread
    change = abs(slope) * (last_steps[-1] - last_steps[0])
    if change > 0.02 * abs(centre) and abs(slope) > 3.0 * slope_se:
        return None
    outside = np.nonzero(np.abs(values - centre) > width)[0]
    return int(steps[0] if outside.size == 0 else steps[min(outside[-1] + 1, len(steps) - 1)])


def _cycles(sampler: str) -> bool:
    """Whether the registry's entry interleaves independence steps by default (mala-imh)."""
    return get_sampler(sampler).validate({}).get("independence_every") is not None


def _kernel(sampler: str, config: MixingConfig) -> tuple[str, dict[str, Any]]:
    """The Langevin kernel (``"ula"``/``"mala"``) a study sampler runs, and its options."""
    options = {"independence_every": config.independence_every} if _cycles(sampler) else {}
    return get_sampler(sampler).kernel, options


def _progression(ebm_jax, sampler, step, config, data, log) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from ppl_ebm.sampling import sample

    # Superchains: groups of chains sharing one prior draw as start, for nested R-hat.
    group = config.chains // config.superchains
    starts = np.asarray(ebm_jax.prior_sample(jax.random.key(config.seed + 1), config.superchains))
    initial = np.repeat(starts, group, axis=0)
    kernel, options = _kernel(sampler, config)
    options["step_size"] = step
    if kernel == "mala":
        options["adapt_step_size"] = False
    start = time.perf_counter()
    result = sample(ebm_jax, kernel, "jax", num_chains=config.chains, num_warmup=0, num_samples=config.steps,
                    seed=config.seed, thinning=config.every, initial_params=initial, progress_bar=False, **options)
    seconds = time.perf_counter() - start
    latents = result.latents  # (chains, steps / every, dim)
    checkpoints = np.arange(1, latents.shape[1] + 1) * config.every
    generate = jax.jit(ebm_jax.generate)
    potential = jax.jit(ebm_jax.potential)
    emd, energy, rhat, rhat_nested = [], [], [], []
    for index in range(latents.shape[1]):
        z = jnp.asarray(latents[:, index])
        emd.append(metrics.emd(np.asarray(generate(z)), data, seed=config.seed))
        energy.append(float(jnp.mean(potential(z))))
        window = latents[:, index // 2 : index + 1]
        rhat.append(float(np.max(arviz_compat.rhat(window))) if window.shape[1] >= 4 else float("nan"))
        rhat_nested.append(float(np.max(nested_rhat(latents[:, index : index + 1], config.superchains))))
    log(f"  {sampler}: {config.chains} chains x {config.steps} steps in {seconds:.1f} s")
    return {
        "step_size": step, "steps": checkpoints.tolist(), "emd": emd, "mean_energy": energy, "rhat": rhat,
        "nested_rhat": rhat_nested, "emd_plateau_step": plateau_step(checkpoints, emd),
        "energy_plateau_step": plateau_step(checkpoints, energy),
        "acceptance_mean": float(np.mean(result.stats["acceptance"])), "seconds": seconds,
        "independence_acceptance_mean": (float(np.mean(result.stats["independence_acceptance"]))
                                         if "independence_acceptance" in result.stats else None),
    }


def _coupling(ebm_jax, sampler, step, config, log) -> dict[str, Any]:
    import jax

    from ppl_ebm.kernels.coupling_jax import lagged_meeting_times
    from ppl_ebm.kernels.langevin_jax import prior_proposal

    # The coupled chains move in unconstrained space, as the sampler's own do.
    keys = jax.random.split(jax.random.key(config.seed + 2), 3)
    x0 = ebm_jax.prior_sample_unconstrained(keys[0], config.pairs)
    y0 = ebm_jax.prior_sample_unconstrained(keys[1], config.pairs)
    kernel, options = _kernel(sampler, config)
    if "independence_every" in options:
        options["proposal"] = prior_proposal(ebm_jax)
    start = time.perf_counter()
    tau = np.asarray(lagged_meeting_times(keys[2], x0, y0, ebm_jax.potential_and_grad, kernel, step, config.lag,
                                          config.max_iterations, **options))
    seconds = time.perf_counter() - start
    met = tau > 0
    out: dict[str, Any] = {"lag": config.lag, "pairs": config.pairs, "max_iterations": config.max_iterations,
                           "met_fraction": float(met.mean()), "seconds": seconds,
                           "meeting_time_median": float(np.median(tau[met])) if met.any() else None,
                           "meeting_time_mean": float(np.mean(tau[met])) if met.any() else None,
                           "meeting_time_q90": float(np.quantile(tau[met], 0.9)) if met.any() else None}
    log(f"  {sampler} coupling: {met.mean():.0%} of {config.pairs} pairs met within {config.max_iterations} "
        f"steps ({seconds:.1f} s)")
    if met.all():
        bound = tv_upper_bound(tau, config.lag, np.arange(0, int(tau.max()) + 1, max(1, config.every // 2)))
        out.update(iterations=bound.iterations.tolist(), tv_bound=bound.bound.tolist(),
                   tv_bound_se=bound.standard_error.tolist(), mixing_time_tv_quarter=mixing_time(bound, 0.25))
    else:
        # Unmet pairs: the bound is unknown; tau > max_iterations for them, so the chain has
        # not provably mixed by then (a lower estimate of the bound is still shown).
        censored = np.where(met, tau, config.max_iterations + 1)
        bound = tv_upper_bound(censored, config.lag, np.arange(0, config.max_iterations + 1, config.every))
        out.update(iterations=bound.iterations.tolist(), tv_bound_lower_estimate=bound.bound.tolist(),
                   mixing_time_tv_quarter=None)
    return out


def run_mixing(config: MixingConfig, log=print) -> dict[str, Any]:
    """Run the three views for each sampler; returns a JSON-ready dict (see module docstring)."""
    from ppl_ebm.sampling import sample

    config = config.validate()
    model = load_model(config.model)
    ebm = latent_ebm_of(model, calibrated=not config.raw_critic and "calibration" in model.config)
    ebm_jax = ebm.to_jax()
    data = datasets.sample_dataset(model.dataset, config.chains, seed=10_000 + config.seed)
    check = checked_target(ebm, config.seed, log) if config.check_target else None
    out: dict[str, Any] = {"model": model.name, "dataset": model.dataset, "config": asdict(config),
                           "target_check": check, "samplers": {}}
    for sampler in config.samplers:
        step = config.ula_step_size
        kernel, options = _kernel(sampler, config)
        if kernel == "mala":
            step = config.mala_step_size
            if step is None:  # a short pilot run of the sampler itself adapts it (target acceptance 0.574)
                pilot = sample(ebm_jax, "mala", "jax", num_chains=min(config.chains, 500), num_warmup=200,
                               num_samples=10, seed=config.seed + 3, progress_bar=False, **options)
                step = float(np.median(pilot.stats["step_size"]))
        log(f"[{sampler}] step {step:.3g}")
        out["samplers"][sampler] = {
            "progression": _progression(ebm_jax, sampler, step, config, data, log),
            "coupling": _coupling(ebm_jax, sampler, step, config, log),
        }
    return out
