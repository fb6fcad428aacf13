"""DDLS's synthetic experiments end to end (Tables 1 and 2, and seed 002's step-size sweep).

One call loads a zoo model, draws ``num_samples`` samples with the generator alone, with the
baselines (DRS, MH-GAN, DOT) and with DDLS under every sampler x backend, and scores each
against fresh data: exact EMD (W1, Euclidean cost), the mode metrics of DDLS Table 1, and for
the MCMC methods ESS, R-hat, ESS/s and ESS per gradient. A ULA step-size sweep shows how the
step decides the result, with MALA's adapted step beside it.

Protocol (DDLS Sec. 5.1 and Alg. 1): every Langevin chain starts from a prior draw and the
final state of each of ``num_samples`` chains is one sample. DRS, MH-GAN and DDLS use the
model's calibrated critic (DDLS Sec. 5.2: fine-tuned by BCE against the frozen generator, then a
logistic head) when it has one; DOT uses the GAN's own critic, as Tanaka does. ULA's step is
chosen by the sweep against a *validation* data sample (never the test sample the table is
scored on), because seed 002 found that the step decides everything and the paper's 0.01 is not
good for every model; the paper's setting stays visible in the sweep.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ppl_ebm import baselines, metrics
from ppl_ebm.data import toy as datasets
from ppl_ebm.diagnostics.estimators import MIN_DRAWS
from ppl_ebm.diagnostics.summary import summarize
from ppl_ebm.kernels.registry import BACKENDS, get_sampler, sampler_names
from ppl_ebm.sampling import sample
from ppl_ebm.validation import check_positive_ints
from ppl_ebm.targets.target_check import checked_target
from ppl_ebm.zoo.store import latent_ebm_of, load_model

__all__ = ["ALL_METHODS", "BASELINES", "COMPARE_MODEL", "DEFAULT_METHODS", "CompareConfig", "CompareOutput", "run_baseline",
           "run_compare"]

BASELINES = ("generator", "drs", "mh_gan", "dot")
# Every registered sampler on both backends, e.g. "mala-imh/jax": MALA whose every
# INDEPENDENCE_EVERY-th step (the registry's default) is an independence step from the prior.
MCMC_METHODS = tuple(f"{s}/{b}" for b in BACKENDS for s in sampler_names() if b in get_sampler(s).backends)
INDEPENDENCE_EVERY = get_sampler("mala-imh").validate({})["independence_every"]
ALL_METHODS = BASELINES + MCMC_METHODS
# NUTS/HMC build deep trees on these rough critic landscapes (Pyro's NUTS took minutes per
# chain here), so the few-minute default leaves them out; name them in ``methods`` to add them.
# i-SIR and Ex2MCMC (prior proposals, importance-weighted) are the samplers that reach the
# Corollary 1 target of the default model in 100 steps; ULA (Alg. 1) and MALA do not (DEVELOPERS.md).
DEFAULT_METHODS = BASELINES + ("ula/torch", "mala/torch", "ula/jax", "mala/jax", "isir/jax", "ex2mcmc/jax")
# The main job's model: DDLS Table 2's own setting, a WGAN-GP on the DOT-scale 25-Gaussians, its
# critic calibrated against DDLS Corollary 1's extended generator G(z) + eps z' (the generator alone
# misses 15.7% of the data within one component std; see ppl_ebm.training.critic_tuning).
COMPARE_MODEL = "25gaussians-gulrajani-wgan-gp"
SWEEP_STEPS = (1e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 1e-1)
PAPER_STEP_SIZE = 0.01  # DDLS Alg. 1 / App. B.2 (noise std 0.1 = sqrt(step))


@dataclass
class CompareConfig:
    """What ``ppl-ebm compare`` runs; the defaults finish in a few minutes on 2 cores.

    ``langevin_chains`` (default: ``num_samples``) Langevin chains of ``langevin_steps`` steps
    start from prior draws; with at least ``num_samples`` chains each contributes its final
    state (DDLS Alg. 1); with fewer, their post-warmup draws are pooled and thinned evenly to
    ``num_samples`` (always so for NUTS/HMC's few long chains). ``ula_step_size=None`` takes
    the sweep's best step on validation data (noise std sqrt(step)); a number fixes it (the
    paper's is 0.01). ``raw_critic=True`` runs DDLS on the GAN's critic instead of the
    calibrated one.
    """

    model: str = COMPARE_MODEL
    methods: tuple[str, ...] = DEFAULT_METHODS
    num_samples: int = 5000
    langevin_chains: int | None = None
    langevin_steps: int = 100
    ula_step_size: float | None = None
    hmc_chains: int = 4
    hmc_warmup: int = 200
    hmc_draws: int = 1250
    mh_gan_chain_length: int = 640
    sweep_steps: tuple[float, ...] = SWEEP_STEPS
    sweep_chains: int = 1000
    seed: int = 0
    raw_critic: bool = False
    diagnostics_max_chains: int = 500
    progress_bar: bool = True
    device: str | None = None
    # The papers' "EMD" (W2^2, POT's default cost) at this many points, mean and std over repeats;
    # None: the papers' 1000, or num_samples when a toy-size run draws fewer.
    w2sq_points: int | None = None
    w2sq_repeats: int = metrics.PAPER_REPEATS

    @property
    def w2sq_num_points(self) -> int:
        return min(metrics.PAPER_POINTS, self.num_samples) if self.w2sq_points is None else self.w2sq_points

    @property
    def chains(self) -> int:
        return self.num_samples if self.langevin_chains is None else self.langevin_chains

    def validate(self) -> "CompareConfig":
        unknown = set(self.methods) - set(ALL_METHODS)
        if unknown:
            raise ValueError(f"Unknown method(s) {sorted(unknown)}; choose from {list(ALL_METHODS)}.")
        check_positive_ints(self, ("num_samples", "langevin_steps", "hmc_chains", "hmc_warmup", "hmc_draws",
                                   "mh_gan_chain_length", "sweep_chains", "diagnostics_max_chains", "w2sq_repeats"))
        if self.w2sq_points is not None:
            check_positive_ints(self, ("w2sq_points",))
            if self.w2sq_points > self.num_samples:
                raise ValueError(f"w2sq_points ({self.w2sq_points}) must be <= num_samples ({self.num_samples}): "
                                 "each repeat draws that many of a method's samples.")
        if self.w2sq_repeats < 2:
            raise ValueError(f"w2sq_repeats must be >= 2 (a spread needs two), got {self.w2sq_repeats!r}.")
        if self.langevin_steps < 2:
            raise ValueError(f"langevin_steps must be >= 2 (warmup and draws), got {self.langevin_steps!r}.")
        if self.ula_step_size is None and not self.sweep_steps and any(m.startswith("ula/") for m in self.methods):
            raise ValueError("ULA needs a step size: give ula_step_size or a non-empty sweep to choose it.")
        if self.ula_step_size is not None and not self.ula_step_size > 0:
            raise ValueError(f"ula_step_size must be > 0, got {self.ula_step_size!r}.")
        if self.langevin_chains is not None:
            check_positive_ints(self, ("langevin_chains",))
        langevin_draws = self.langevin_steps - self.langevin_steps // 2
        if self.chains * langevin_draws < self.num_samples:
            raise ValueError(
                f"langevin_chains x post-warmup steps ({self.chains} x {langevin_draws}) must be "
                f">= num_samples ({self.num_samples})."
            )
        if self.hmc_chains * self.hmc_draws < self.num_samples:
            raise ValueError(
                f"hmc_chains x hmc_draws ({self.hmc_chains * self.hmc_draws}) must be >= num_samples "
                f"({self.num_samples})."
            )
        if any(step <= 0 for step in self.sweep_steps):
            raise ValueError(f"sweep_steps must be > 0, got {self.sweep_steps}.")
        from ppl_ebm.drivers.devices import check_device

        check_device(self.device)  # both backends, before any sampling: a missing GPU fails at once
        return self


@dataclass
class CompareOutput:
    config: CompareConfig
    model_config: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    samples: dict[str, np.ndarray]
    data: np.ndarray
    sweep: dict[str, Any]
    traces: dict[str, np.ndarray] = field(default_factory=dict)
    target_check: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        points = self.config.w2sq_num_points
        return {
            "dataset": self.model_config["training"]["dataset"],
            "model": self.model_config["name"],
            "seed": self.config.seed,
            "num_samples": self.config.num_samples,
            "emd": "ours: exact W1 (Euclidean cost) by POT ot.emd2 with numItermax=1e8, convergence checked, "
                   f"{self.config.num_samples} samples against {self.config.num_samples} fresh data points",
            f"w2sq_{points}": (
                "EMD as DOT/DDLS/ex2mcmc compute it: ot.emd2 on ot.dist (POT's default squared Euclidean cost, "
                f"i.e. W2^2), {points} samples against {points} fresh data points, mean and std (ddof 1) over "
                f"{self.config.w2sq_repeats} repeats, each its own data draw"),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()},
            "methods": self.metrics,
            "sweep": self.sweep,
            "target_check": self.target_check,
        }


_NULL_MCMC = dict.fromkeys(
    ("ess_bulk_min", "ess_tail_min", "rhat_max", "ess_per_second", "ess_per_grad", "acceptance_mean"), None
)


def _score(samples: np.ndarray, data: np.ndarray, dataset: str, config: CompareConfig) -> dict[str, Any]:
    scores: dict[str, Any] = {"emd": metrics.emd(samples, data, seed=config.seed)}
    # The papers' figure beside ours; the same data draws for every method (paired by the seed).
    paper = metrics.w2sq_repeated(samples, lambda n, seed: datasets.sample_dataset(dataset, n, seed=seed),
                                  config.w2sq_num_points, config.w2sq_repeats, seed=config.seed)
    scores[f"w2sq_{config.w2sq_num_points}_mean"] = paper.mean
    scores[f"w2sq_{config.w2sq_num_points}_std"] = paper.std
    # Per repeat, so that two methods can be compared pair by pair (the repeats' data draws are shared).
    scores[f"w2sq_{config.w2sq_num_points}_values"] = list(paper.values)
    try:
        centers, std = datasets.mode_centers(dataset), datasets.mode_std(dataset)
    except ValueError:  # no discrete modes (Swiss Roll, spirals)
        scores.update(modes_recovered=None, high_quality_fraction=None, high_quality_std=None)
        return scores
    modes = metrics.mode_metrics(samples, centers, std)
    scores.update(
        modes_recovered=int(modes["modes_recovered"]),
        num_modes=int(modes["num_modes"]),
        high_quality_fraction=float(modes["high_quality_fraction"]),
        high_quality_std=float(modes["high_quality_std"]),
    )
    return scores


def _generate(ebm, latents: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        z = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32)).to(ebm.device)
        return ebm.generate(z).cpu().numpy()


def mcmc_samples(result, num_samples: int) -> np.ndarray:
    """Latents used for the sample metrics: final states of the first chains (DDLS), or the
    pooled draws thinned evenly when there are fewer chains than samples (NUTS/HMC)."""
    if result.num_chains >= num_samples:
        return result.latents[:num_samples, -1]
    pooled = result.latents.reshape(-1, result.latents.shape[-1])
    index = np.linspace(0, len(pooled) - 1, num_samples).round().astype(int)
    return pooled[index]


def _run_mcmc(method: str, ebm, config: CompareConfig, ula_step_size: float | None):
    sampler, backend = method.split("/")
    spec = get_sampler(sampler)
    if spec.family == "langevin":
        # DDLS Alg. 1 runs a fixed number of steps from prior draws and keeps the last state;
        # we split those steps into warmup (MALA adapts there) and draws for the diagnostics.
        warmup = config.langevin_steps // 2
        options = {"step_size": ula_step_size} if spec.kernel == "ula" else {}
        return sample(
            ebm, sampler, backend, num_chains=config.chains, num_warmup=warmup,
            num_samples=config.langevin_steps - warmup, seed=config.seed, progress_bar=config.progress_bar,
            device=config.device, **options,
        )
    return sample(
        ebm, sampler, backend, num_chains=config.hmc_chains, num_warmup=config.hmc_warmup,
        num_samples=config.hmc_draws, seed=config.seed, progress_bar=config.progress_bar, device=config.device,
    )


def mcmc_diagnostics(result, config) -> dict[str, Any]:
    """ESS, R-hat and rates of a run; None where its chains hold fewer than MIN_DRAWS draws (a
    DDLS run of a few steps is scored by its final states, but ESS and R-hat need 4, as ArviZ).
    ``config`` carries ``diagnostics_max_chains`` and ``seed`` (the toy and image compare configs do)."""
    if result.num_draws < MIN_DRAWS:
        return {key: None for key in ("ess_bulk_min", "ess_tail_min", "rhat_max", "ess_per_second", "ess_per_grad")}
    summary = summarize(result, max_chains=config.diagnostics_max_chains, seed=config.seed)
    return {
        "ess_bulk_min": summary.get("ess_bulk_min_scaled", summary["ess_bulk_min"]),
        "ess_tail_min": summary.get("ess_tail_min_scaled", summary["ess_tail_min"]),
        "rhat_max": summary["rhat_max"],
        "ess_per_second": summary["ess_per_second"],
        "ess_per_grad": summary["ess_per_grad"],
    }


def run_baseline(method: str, ebm, calibrated_ebm, config):
    """One of :data:`BASELINES` on the latent EBM, with its wall time. DRS and MH-GAN read the
    calibrated critic (their own papers calibrate it), DOT the GAN's own (a WGAN critic's
    Lipschitz transport). ``config`` carries ``num_samples``, ``seed``, ``mh_gan_chain_length``
    and ``progress_bar`` (the toy and the image compare configs both do)."""
    start = time.perf_counter()
    if method == "generator":
        out = baselines.generator_only(ebm, config.num_samples, config.seed)
    elif method == "drs":
        out = baselines.drs(calibrated_ebm, config.num_samples, config.seed, progress_bar=config.progress_bar)
    elif method == "mh_gan":
        out = baselines.mh_gan(
            calibrated_ebm, config.num_samples, config.seed, chain_length=config.mh_gan_chain_length,
            progress_bar=config.progress_bar,
        )
    else:
        out = baselines.dot(ebm, config.num_samples, config.seed, progress_bar=config.progress_bar)
    return out, time.perf_counter() - start


def _sweep(ebm, data: np.ndarray, config: CompareConfig, log) -> dict[str, Any]:
    """seed 002's sweep: EMD of ULA's final states against the step size (noise sqrt(step)),
    beside MALA with its adapted step, all at ``sweep_chains`` samples against ``data`` (the
    validation sample)."""
    data = data[: config.sweep_chains]
    emds = []
    for step in config.sweep_steps:
        log(f"  sweep: ULA step {step:g}")
        result = sample(
            ebm, "ula", "jax", num_chains=config.sweep_chains, num_warmup=0,
            num_samples=config.langevin_steps, seed=config.seed, step_size=step, progress_bar=False,
            device=config.device,
        )
        emds.append(metrics.emd(_generate(ebm, result.latents[:, -1]), data, seed=config.seed))
    adapted = {}
    for name, sampler in (("mala", "mala"), ("mala_imh", "mala-imh")):
        log(f"  sweep: {name} adapted")
        adapted[name] = sample(
            ebm, sampler, "jax", num_chains=config.sweep_chains, num_warmup=config.langevin_steps // 2,
            num_samples=config.langevin_steps - config.langevin_steps // 2, seed=config.seed, progress_bar=False,
            device=config.device,
        )
    mala, mala_imh = adapted["mala"], adapted["mala_imh"]
    mala_emd = metrics.emd(_generate(ebm, mala.latents[:, -1]), data, seed=config.seed)
    mala_imh_emd = metrics.emd(_generate(ebm, mala_imh.latents[:, -1]), data, seed=config.seed)
    generator = baselines.generator_only(ebm, config.sweep_chains, config.seed + 1)
    best = int(np.argmin(emds))
    return {
        "sampler": "ula (jax), noise sqrt(step)",
        "data": "validation sample (not the test sample of the table)",
        "num_samples": config.sweep_chains,
        "steps": config.langevin_steps,
        "step_sizes": list(config.sweep_steps),
        "emd": emds,
        "best_step_size": config.sweep_steps[best],
        "best_emd": emds[best],
        "mala_adapted_step_size": float(np.median(mala.stats["step_size"])),
        "mala_adapted_emd": mala_emd,
        "mala_over_best": mala_emd / emds[best],
        # The same with independence steps from the prior (every INDEPENDENCE_EVERY-th step).
        "mala_imh_adapted_step_size": float(np.median(mala_imh.stats["step_size"])),
        "mala_imh_adapted_emd": mala_imh_emd,
        "mala_imh_over_best": mala_imh_emd / emds[best],
        "generator_emd": metrics.emd(generator.samples, data, seed=config.seed),
    }


def run_compare(config: CompareConfig, log=print) -> CompareOutput:
    """Run every requested method on the zoo model and score it (see module docstring)."""
    config = config.validate()
    model = load_model(config.model)
    dataset = model.dataset
    ebm = latent_ebm_of(model)
    calibrated = latent_ebm_of(model, calibrated=True) if "calibration" in model.config else ebm
    ddls_ebm = ebm if config.raw_critic else calibrated
    if config.device is not None:  # the torch baselines follow the networks' device
        from ppl_ebm.drivers.devices import torch_device

        for target in {id(ebm): ebm, id(calibrated): calibrated}.values():
            target.to(torch_device(config.device))
    # Fresh test, floor and validation data under seeds that no training or calibration used.
    data = datasets.sample_dataset(dataset, config.num_samples, seed=10_000 + config.seed)
    reference = datasets.sample_dataset(dataset, config.num_samples, seed=20_000 + config.seed)
    validation = datasets.sample_dataset(dataset, config.sweep_chains, seed=60_000 + config.seed)
    results: dict[str, dict[str, Any]] = {}
    samples: dict[str, np.ndarray] = {"data": reference}
    traces: dict[str, np.ndarray] = {}
    results["data"] = {**_score(reference, data, dataset, config), **_NULL_MCMC,
                       "grad_evals": None, "wall_seconds": None, "note": "a second fresh data sample: the floor of W1 and of W2^2"}
    # Where the DDLS target's highest density is: beyond the prior, exact samplers drift off the data.
    check = checked_target(ddls_ebm, config.seed, log)
    sweep: dict[str, Any] = {}
    if config.sweep_steps:
        log("[sweep] ULA step sizes and adapted MALA on validation data")
        sweep = _sweep(ddls_ebm, validation, config, log)
    ula_step = config.ula_step_size if config.ula_step_size is not None else sweep.get("best_step_size")
    for index, method in enumerate(config.methods, start=1):
        log(f"[{index}/{len(config.methods)}] {method}")
        if method in BASELINES:
            out, seconds = run_baseline(method, ebm, calibrated, config)
            samples[method] = out.samples
            results[method] = {
                **_score(out.samples, data, dataset, config), **_NULL_MCMC,
                "grad_evals": out.stats.get("grad_evals"), "wall_seconds": seconds,
                "proposals": out.stats.get("proposals"), "acceptance_mean": out.stats.get("acceptance_rate"),
            }
            continue
        result = _run_mcmc(method, ddls_ebm, config, ula_step)
        x = _generate(ddls_ebm, mcmc_samples(result, config.num_samples))
        samples[method] = x
        traces[method] = result.latents[:4]
        results[method] = {
            **_score(x, data, dataset, config),
            **mcmc_diagnostics(result, config),
            "acceptance_mean": float(np.mean(result.stats["acceptance"])),
            "grad_evals": int(np.sum(result.stats["grad_evals"])),
            "wall_seconds": float(result.stats["wall_seconds"]),
            "step_size": float(np.median(result.stats["step_size"])),
            "critic": "raw" if config.raw_critic else "calibrated",
            "chains": result.num_chains,
            "draws_per_chain": result.num_draws,
        }
    return CompareOutput(config, model.config, results, samples, data, sweep, traces, check)
