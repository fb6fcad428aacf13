"""Samplers compared by ESS at matched wall time on DDLS targets (``ppl-ebm samplers``).

Every method gets the same sampling-time budget: after its warmup, it samples until the
budget has passed (``sample(..., max_seconds=budget)``, at most ``max_draws`` per chain).
A pilot's time per draw, used before, misled NUTS: trajectories lengthen as chains move,
and a 30 s budget ran > 14 min. Reported per method: ESS bulk/tail (min and median over latent dims,
ArviZ), rank R-hat, ESS/s with warmup and compilation included and excluded, ESS per
gradient evaluation, acceptance and divergences; ratios against Pyro NUTS with one chain (how
users run it today) and NumPyro NUTS with vectorised chains. ULA's ESS is for its own
(step-biased) stationary law, as for any fixed-step ULA.

``mala-imh``: MALA whose every other step is an independence step from the prior
(``independence_every=2``), the one listed sampler that jumps between the latent modes.

The default targets are the NS-GAN models. The WGAN-GP models' calibrated targets have
their highest density far beyond the prior (:mod:`ppl_ebm.targets.target_check`: potential -121 at
``|z|`` = 21 on 25-Gaussians, -211 at 26 on Swiss Roll, against >= -2.6 and -8.1 over 100,000
prior draws, generating points far off the data), so chains there drift outwards for
thousands of steps and ESS measures the drift. Each model's check is in the report.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ppl_ebm.diagnostics.summary import summarize
from ppl_ebm.kernels.cycle import check_independence_every
from ppl_ebm.kernels.registry import (
    BACKENDS, check_step_size_adaptation, get_sampler, our_step_adaptation, sampler_names,
)
from ppl_ebm.sampling import sample
from ppl_ebm.targets.target_check import checked_target
from ppl_ebm.validation import check_positive_ints
from ppl_ebm.zoo.store import latent_ebm_of, load_model

__all__ = ["METHODS", "SamplerStudyConfig", "run_sampler_study"]

# "pyro-nuts-1": Pyro's NUTS on one chain, the way users run it today.
# Then every registered sampler on the backends it runs on (the PPL's own first, as before;
# BlackJAX's many-chain baselines last, JAX only).
METHODS = ("pyro-nuts-1",) + tuple(
    f"{s}/{b}" for family in ("ppl", "langevin", "blackjax") for s in sampler_names(family=family)
    for b in get_sampler(s).backends)


@dataclass
class SamplerStudyConfig:
    models: tuple[str, ...] = ("25gaussians-nsgan", "swissroll-nsgan")
    # BlackJAX's baselines (no wall-clock budget) only when named.
    methods: tuple[str, ...] = tuple(m for m in METHODS if not m.startswith(("chees/", "meads/")))
    budget_seconds: float = 30.0
    langevin_chains: int = 1000
    torch_hmc_chains: int = 4
    # NumPyro's vectorised NUTS advances every chain to the deepest tree of any: with 64 chains
    # its 200-step pilot alone ran > 6 min on these targets (2 cores), so 8 chains, 100 warmup.
    jax_hmc_chains: int = 8
    warmup: int = 100
    ula_step_size: float = 0.003
    # mala-imh: every k-th step an independence step; 2 beat 4 on both NS-GAN targets
    # (ESS/s 4,375 vs 1,880 and 1,694 vs 1,171, torch, 10 s budget).
    independence_every: int = 2
    # Our MALA family's warmup step adaptation (the registry's step_size_adaptation option).
    step_size_adaptation: str = "dual_averaging"
    check_target: bool = True
    max_draws: int = 20_000
    seed: int = 0

    def validate(self) -> "SamplerStudyConfig":
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"Unknown method(s) {sorted(unknown)}; choose from {list(METHODS)}.")
        if not self.budget_seconds > 0:
            raise ValueError(f"budget_seconds must be > 0, got {self.budget_seconds!r}.")
        check_positive_ints(self, ("langevin_chains", "torch_hmc_chains", "jax_hmc_chains", "max_draws"))
        if self.independence_every is None:
            raise ValueError("independence_every must be an int >= 2 for the mala-imh methods, got None.")
        check_independence_every(self.independence_every)
        check_step_size_adaptation(self.step_size_adaptation)
        if not (isinstance(self.warmup, int) and self.warmup >= 0):
            raise ValueError(f"warmup must be an int >= 0, got {self.warmup!r}.")
        return self


def _settings(method: str, config: SamplerStudyConfig) -> tuple[str, str, int, dict[str, Any]]:
    if method == "pyro-nuts-1":
        return "nuts", "torch", 1, {}
    sampler, backend = method.split("/")
    spec = get_sampler(sampler)
    if spec.family == "langevin":
        options = {"step_size": config.ula_step_size} if spec.kernel == "ula" else {}
        if spec.validate({}).get("independence_every") is not None:  # mala-imh: the study's cycle length
            options["independence_every"] = config.independence_every
        options.update(our_step_adaptation(spec, config.step_size_adaptation))
        return sampler, backend, config.langevin_chains, options
    if spec.family == "blackjax":  # many-chain baselines: as many chains as ours, BlackJAX's own tuning
        return sampler, backend, config.langevin_chains, {}
    # HMC with 16 leapfrog steps: the default trajectory length 2 pi becomes thousands of steps
    # whenever the step adapts small on these rough critic landscapes. NumPyro keeps num_steps
    # fixed when trajectory_length is None. Pyro keeps trajectory_length = num_steps x the
    # *initial* step and derives the steps from the adapted one: from its default initial step
    # 1.0 that was a trajectory of 16 and > 8 min of warmup on 25-Gaussians; from 0.05 it is 0.8
    # (5 steps at the step Pyro adapts to there, 0.15; 150 iterations ~18 s a chain).
    options = {}
    if sampler == "hmc":
        options = {"num_steps": 16, "trajectory_length": None} if backend == "jax" else {"num_steps": 16,
                                                                                          "step_size": 0.05}
    return sampler, backend, config.torch_hmc_chains if backend == "torch" else config.jax_hmc_chains, options


#: Draws per chain of a method without ``max_seconds`` (BlackJAX's baselines).
UNTIMED_DRAWS = 2000

#: Fewest draws per chain a method is measured on (the budget is exceeded to reach them).
MIN_DRAWS = 20

#: R-hat below which a multi-chain run's ESS is reported as meaningful (Vehtari et al. 2021).
RHAT_CONVERGED = 1.01


def _run(ebm, method: str, config: SamplerStudyConfig, log) -> dict[str, Any]:
    sampler, backend, chains, options = _settings(method, config)
    timed = get_sampler(sampler).has("max_seconds")  # BlackJAX's warmup is one program: no clock to cut it
    run = lambda draws, budget: sample(  # noqa: E731
        ebm, sampler, backend, num_chains=chains, num_warmup=config.warmup, num_samples=draws, seed=config.seed,
        progress_bar=False, max_seconds=budget if timed else None, **options)
    # Without a clock, a fixed length: 2000 draws (or max_draws) a chain.
    result = run(config.max_draws if timed else min(config.max_draws, UNTIMED_DRAWS), config.budget_seconds)
    if result.num_draws < MIN_DRAWS:
        # Too few draws for ESS: the same run again, to MIN_DRAWS draws (its own time is what ESS/s uses).
        log(f"  {method}: {result.num_draws} draws in the budget; running to {MIN_DRAWS}")
        result = run(MIN_DRAWS, None)
    log(f"  {method}: {chains} chain(s), {result.num_draws} draws in {result.stats['sampling_seconds']:.1f} s "
        f"after {result.stats['warmup_seconds']:.1f} s of warmup")
    # Every chain, no extrapolation: the fast engine computes ArviZ's estimators at this size.
    summary = summarize(result, max_chains=None, engine="fast")
    stats = result.stats
    scaled = lambda key: summary.get(f"{key}_scaled", summary[key])  # noqa: E731
    return {
        "sampler": sampler, "backend": backend, "chains": chains, "draws_per_chain": result.num_draws,
        "ess_bulk_min": scaled("ess_bulk_min"), "ess_bulk_median": scaled("ess_bulk_median"),
        "ess_tail_min": scaled("ess_tail_min"), "ess_tail_median": scaled("ess_tail_median"),
        "rhat_max": summary["rhat_max"], "ess_per_second": summary["ess_per_second"],
        "ess_per_second_no_compile": summary["ess_per_second_no_compile"],
        "ess_per_second_sampling": summary["ess_per_second_sampling"], "ess_per_grad": summary["ess_per_grad"],
        "acceptance_mean": float(np.mean(stats["acceptance"])), "divergences": int(np.sum(stats["divergences"])),
        "independence_acceptance": (float(np.mean(stats["independence_acceptance"]))
                                    if "independence_acceptance" in stats else None),
        "grad_evals": int(np.sum(stats["grad_evals"])), "wall_seconds": float(stats["wall_seconds"]),
        "sampling_seconds": float(stats["sampling_seconds"]), "compile_seconds": float(stats["compile_seconds"]),
        "subsampled_chains": bool(summary.get("subsampled", False)),
        # ESS is only meaningful once the chains agree; one chain cannot be checked by R-hat.
        "converged": None if chains < 2 else bool(summary["rhat_max"] < RHAT_CONVERGED),
    }


def run_sampler_study(config: SamplerStudyConfig, log=print) -> dict[str, Any]:
    """Run every method on every model (see module docstring); JSON-ready."""
    config = config.validate()
    out: dict[str, Any] = {"config": asdict(config), "models": {}}
    for name in config.models:
        model = load_model(name)
        ebm = latent_ebm_of(model, calibrated="calibration" in model.config)
        log(f"[{name}]")
        check = checked_target(ebm, config.seed, log) if config.check_target else None
        rows = {}
        for method in config.methods:
            start = time.perf_counter()
            rows[method] = _run(ebm, method, config, log)
            rows[method]["study_seconds"] = time.perf_counter() - start
        ratios = {}
        for baseline in ("pyro-nuts-1", "nuts/jax"):
            if baseline in rows and rows[baseline]["ess_per_second"]:
                best = max(rows, key=lambda m: rows[m]["ess_per_second"] or 0.0)
                ratios[f"best_over_{baseline}"] = {
                    "best": best, "ratio": rows[best]["ess_per_second"] / rows[baseline]["ess_per_second"],
                    "best_converged": rows[best]["converged"], "baseline_converged": rows[baseline]["converged"]}
        out["models"][name] = {"methods": rows, "ratios": ratios, "target_check": check}
    return out
