"""Samplers by gradients to low bias and ESS per gradient on targets with known truth
(``ppl-ebm samplers``, its second part; issue 20, items 4 and 6).

Every sampler runs through the front door on the JAX backend (``sample(target, sampler,
"jax")``) with the same chains, warmup and draws, on the standard targets (NumPyro models,
truth in closed form) and on the zoo's latent EBMs (:func:`ppl_ebm.studies.bias.latent_ebm_truth`:
quadrature for a 2-D latent, importance sampling from the prior for a larger one, e.g. the
digits GAN's 32-d latent). Per row: the metrics of
:func:`ppl_ebm.studies.bias.bias_metrics`, ESS (bulk, worst coordinate) per 1000 gradients,
ESS/s with and without compile, R-hat. A run is *converged* when R-hat < 1.01 and its worst
bias stays under 0.01; ratios are taken between our best and BlackJAX's best converged run,
and where either side has none converged the line says so and compares unconverged runs.

Tuning, each as its authors recommend: our MALA family with per-chain dual averaging to 0.574
and the diagonal mass matrix from cross-chain statistics (our defaults; ``step_size_adaptation=
"cross_chain"`` for warmups of tens of steps); NumPyro's NUTS with
its defaults (0.8, diagonal mass in Stan's windows; chains vectorised); ChEES as BlackJAX
ships it (0.651 harmonic-mean acceptance, Adam 0.5); MEADS with its defaults (4 folds);
MAMS with BlackJAX's adjusted-MCLMC tuner at the authors' settings (0.9, fractions 0.1).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ppl_ebm.diagnostics.summary import summarize
from ppl_ebm.kernels.registry import check_step_size_adaptation, get_sampler, our_step_adaptation, sampler_names
from ppl_ebm.sampling import sample
from ppl_ebm.studies.bias import THRESHOLD, bias_metrics, latent_ebm_truth, standard_truth
from ppl_ebm.targets.standard import STANDARD_TARGETS, standard_target
from ppl_ebm.validation import check_positive_ints

__all__ = ["BIAS_SAMPLERS", "BiasStudyConfig", "RHAT_CONVERGED", "headline", "prior_bias", "run_bias_study", "run_row"]

RHAT_CONVERGED = 1.01
#: Samplers the bias part can run: ours and the PPL's NUTS and BlackJAX's, JAX backend.
BIAS_SAMPLERS = tuple(s for s in sampler_names() if "jax" in get_sampler(s).backends and get_sampler(s).kernel != "ula"
                      and s != "hmc")


@dataclass
class BiasStudyConfig:
    targets: tuple[str, ...] = ("gaussian", "banana", "25gaussians-nsgan", "swissroll-wgan-gp")
    samplers: tuple[str, ...] = ("mala", "mala-imh", "ex2mcmc", "nuts", "chees", "meads", "mams")
    chains: int = 128
    nuts_chains: int = 16  # vectorised NUTS waits for its deepest tree: fewer chains, same per-chain steps
    warmup: int = 300
    draws: int = 300
    quadrature_points: int = 500  # the first grid; doubled until its own error is 1% of the bias threshold
    importance_draws: int = 200_000  # a larger latent's first prior draws; doubled the same way
    step_size_adaptation: str = "dual_averaging"  # our MALA family's (the registry's option)
    seed: int = 0

    def validate(self) -> "BiasStudyConfig":
        unknown = set(self.samplers) - set(BIAS_SAMPLERS)
        if unknown:
            raise ValueError(f"Unknown sampler(s) {sorted(unknown)} for the bias study; choose from {list(BIAS_SAMPLERS)}.")
        check_positive_ints(self, ("chains", "nuts_chains", "warmup", "draws", "quadrature_points", "importance_draws"))
        check_step_size_adaptation(self.step_size_adaptation)
        if self.importance_draws < 1000:
            raise ValueError(f"importance_draws must be >= 1000 (its standard error and k-hat need them), got "
                             f"{self.importance_draws!r}.")
        return self


def _target(name: str, config: BiasStudyConfig, log):
    """(the model the front door samples, its truth, its target check or None)."""
    if name in STANDARD_TARGETS:
        target = standard_target(name)
        return target.numpyro_model, standard_truth(target), None
    from ppl_ebm.targets.target_check import checked_target
    from ppl_ebm.zoo.store import latent_ebm_of, load_model

    model = load_model(name)
    ebm = latent_ebm_of(model, calibrated="calibration" in model.config)
    check = checked_target(ebm, config.seed, log)
    return ebm, latent_ebm_truth(ebm, check, config.quadrature_points, config.importance_draws, config.seed,
                                  log), check


def prior_bias(ebm, truth, draws: int = 100_000, seed: int = 0) -> float:
    """``b2_max`` of the prior's own draws, where a latent EBM's chains start: under the
    threshold, every sampler is at low bias before its first step, and gradients to low bias
    cannot tell samplers apart on that target (the digits DCGAN's tilt moves E[z^2] by 5%)."""
    import torch

    with torch.no_grad():
        z = ebm.prior_sample(draws, torch.Generator(device=ebm.device).manual_seed(seed)).double().cpu().numpy()
    return float(np.max(truth.b2((z**2).mean(axis=0))))


def warm_target(model, chains: int, seed: int) -> float:
    """Prepare ``model`` for the JAX front door once, untimed by any row; the seconds it took.

    The first call on a target traces it and compiles its initialisation (a NumPyro model: 4.6 s
    for the 2-D banana on a quiet machine, 0.04 s at the next call; a latent EBM: its translation
    to JAX). Every row's clock counts its call's set-up, so without this the sampler that happens
    to run first on a target is charged that one-time cost (in a standard-set run at load, MALA,
    first on every target, was charged 20-40 s of it: its ESS/s without compile is over a run of
    well under a second).
    """
    from ppl_ebm.sampling import _jax_target  # the front door's own preparation, not a copy of it

    start = time.perf_counter()
    _jax_target(model, chains, seed, None, (), {})
    return time.perf_counter() - start


def run_row(model, truth, sampler: str, chains: int, warmup: int, draws: int, seed: int,
            step_size_adaptation: str = "dual_averaging") -> dict[str, Any]:
    """One sampler on one target: the bias metrics, ESS per gradient and per second.
    ``step_size_adaptation``: our MALA family's scheme (the baselines keep their own tuning)."""
    result = sample(model, sampler, "jax", num_chains=chains, num_warmup=warmup, num_samples=draws, seed=seed,
                    progress_bar=False, **our_step_adaptation(get_sampler(sampler), step_size_adaptation))
    stats = result.stats
    summary = summarize(result, max_chains=None, engine="fast")
    row = bias_metrics(np.asarray(result.latents), truth, float(np.mean(stats["grad_evals"])), warmup, draws)
    converged = bool(summary["rhat_max"] < RHAT_CONVERGED and row["grads_to_low_bias"] is not None)
    return {**row, "sampler": sampler, "family": get_sampler(sampler).family, "chains": chains,
            "ess_bulk_min": summary["ess_bulk_min"], "grads": int(np.sum(stats["grad_evals"])),
            "grads_per_chain": float(np.mean(stats["grad_evals"])), "ess_per_kgrad": 1000 * summary["ess_per_grad"],
            # i-SIR's proposals cost a potential each, no gradient: shown beside the gradients, not in them.
            "potentials_only_per_chain": float(np.mean(stats["potential_evals"]) - np.mean(stats["grad_evals"]))
            if "potential_evals" in stats else 0.0,
            "rhat_max": summary["rhat_max"], "converged": converged,
            "ess_per_second": summary["ess_per_second"], "ess_per_second_no_compile": summary["ess_per_second_no_compile"],
            "wall_seconds": float(stats["wall_seconds"]), "compile_seconds": float(stats["compile_seconds"]),
            "acceptance": float(np.nanmean(stats["acceptance"]))}


def _best(rows: list[dict], key: str, lower: bool) -> tuple[dict | None, bool]:
    """The best row by ``key`` among the converged ones (flag True), else among all with a value."""
    for pool, converged in (([r for r in rows if r["converged"]], True), (rows, False)):
        pool = [r for r in pool if r.get(key) is not None]
        if pool:
            return (min if lower else max)(pool, key=lambda r: r[key]), converged
    return None, False


def headline(rows: list[dict]) -> list[str]:
    """Our best against BlackJAX's best: gradients to low bias, ESS/s with and without compile."""
    ours = [r for r in rows if r["family"] == "langevin"]
    theirs = [r for r in rows if r["family"] == "blackjax"]
    lines = []
    for key, title, lower in (("grads_to_low_bias", "gradients to low bias", True),
                              ("ess_per_second", "ESS/s (compile included)", False),
                              ("ess_per_second_no_compile", "ESS/s (compile excluded)", False),
                              ("ess_per_kgrad", "ESS per 1000 gradients", False)):
        mine, mine_ok = _best(ours, key, lower)
        best, best_ok = _best(theirs, key, lower)
        if mine is None or best is None:
            who = "ours" if mine is None else "BlackJAX's"
            lines.append(f"{title}: no ratio (no run of {who} has a value"
                         + (f"; bias never under {THRESHOLD})" if key == "grads_to_low_bias" else ")"))
            continue
        ratio = best[key] / mine[key] if lower else mine[key] / best[key]
        marks = "" if mine_ok and best_ok else (" (NOT CONVERGED: " + ", ".join(
            name for name, ok in ((mine["sampler"], mine_ok), (best["sampler"], best_ok)) if not ok) + ")")
        # Even is said so: gradients to low bias are counted on draws, so samplers whose first draw
        # after the same warmup is already unbiased tie there (501 for every one at warmup 500).
        verdict = "even" if ratio == 1 else "ours ahead" if ratio > 1 else f"ours behind by {1 / ratio:.2f}x"
        lines.append(f"{title}: ours {mine['sampler']} {mine[key]:.4g} vs BlackJAX {best['sampler']} {best[key]:.4g}: "
                     f"{ratio:.2f}x ({verdict}){marks}")
    return lines


def run_bias_study(config: BiasStudyConfig, log=print) -> dict[str, Any]:
    """Every sampler on every target (see the module docstring); JSON-ready."""
    config = config.validate()
    out: dict[str, Any] = {"config": asdict(config), "targets": {}}
    for name in config.targets:
        log(f"[{name}] truth")
        model, truth, check = _target(name, config, log)
        setup = warm_target(model, config.chains, config.seed)
        log(f"  target set-up (once, before the rows): {setup:.1f} s")
        rows = []
        for sampler in config.samplers:
            chains = config.nuts_chains if sampler == "nuts" else config.chains
            start = time.perf_counter()
            row = run_row(model, truth, sampler, chains, config.warmup, config.draws, config.seed,
                          config.step_size_adaptation)
            row["study_seconds"] = time.perf_counter() - start
            to = "never" if row["grads_to_low_bias"] is None else f"{row['grads_to_low_bias']:.0f}"
            log(f"  {sampler}: grads to low bias {to} (of {row['grads_per_chain']:.0f}), b2_max {row['b2_max']:.2g}, "
                f"ESS/kgrad {row['ess_per_kgrad']:.3g}, ESS/s {row['ess_per_second']:.3g} "
                f"({row['ess_per_second_no_compile']:.3g} without compile), R-hat {row['rhat_max']:.3f}, "
                f"{row['study_seconds']:.0f} s")
            rows.append(row)
        prior_b2 = None if check is None else prior_bias(model, truth, seed=config.seed)  # a latent EBM's start
        out["targets"][name] = {"truth": truth.source, "target_check": check, "setup_seconds": setup, "rows": rows,
                                "prior_b2_max": prior_b2, "headline": headline(rows)}
    return out
