"""DDLS on an image GAN of the zoo (``ppl-ebm compare --model digits-dcgan``): generator only, DRS,
MH-GAN, DOT, DDLS with the paper's Langevin settings, ULA at the swept step, MALA, i-SIR and Ex2MCMC,
scored by the Frechet distance, the Inception-style score and precision / recall on the zoo
classifier's features, and with ``inception_weights`` (``--inception-weights``) also by the
standard FID and IS (:mod:`ppl_ebm.metrics.standard_inception`: torch-fidelity on the user's
Inception weights, columns ``fid_inception``, ``is_inception`` / ``is_inception_std``).

Protocol (DDLS Alg. 1): every chain starts at a prior draw and its final state is one sample;
``num_samples`` chains per method. Test reference: the data set's held-out split (never seen by
the GAN or the classifier); floor: ``num_samples`` train images against it. The ULA step of the
``ula`` rows is chosen by a sweep scored against *train* images (validation), never the held-out
test images, because seed 002 found DDLS makes images worse at an untuned step; the sweep's
figures are in ``metrics.json`` and the report, so a bad step shows as a worse FD.

- ``ula-paper/<backend>``: DDLS App. B.2: step 0.01, noise std 0.1 (= sqrt(step)), the step x0.1
  every 200 steps with the noise annealed alongside (``noise^2 / step`` fixed), ``paper_steps``
  steps (the paper: 1000); the FD every ``trace_every`` steps is kept (DDLS Fig. 5).
- ``ula/<backend>``: ``langevin_steps`` constant steps at the sweep's best step.
- ``mala/<backend>``: ``langevin_steps`` steps, the first half warmup adapting the step (dual
  averaging, per chain) and a diagonal mass matrix.
- ``mala-imh/<backend>``: MALA with an independence step from the prior every few steps (the
  registry's default), split as MALA's.
- ``nuts/<backend>`` (NumPyro / Pyro): ``hmc_chains`` chains from the first prior draws,
  ``hmc_warmup`` + ``hmc_draws`` steps, the pooled draws thinned evenly to ``num_samples`` images
  (the toy compare's NUTS rows; a tree per image would cost thousands of gradients each).
- Every MCMC row also has ESS (bulk and tail, the worst coordinate), R-hat and ESS per second and
  per gradient over its kept draws (the toy compare's columns); ``-`` where a run keeps fewer than
  4 draws a chain (``ula``: only the final state).
- ``isir/<backend>``, ``ex2mcmc/<backend>`` (Samsonov et al. 2022): the registry's samplers, the
  same ``langevin_steps`` steps split as MALA's. With ``trace_samplers`` (``--trace-samplers``) the
  FD every ``trace_every`` steps of these exact samplers' draws is kept too, beside their starts'
  (the ex2mcmc paper's FID against steps; warmup states are not kept, so not traced).
  ``ex2mcmc_protocol`` (``--ex2mcmc-protocol``) runs these three in the ex2mcmc paper's own setting
  instead (its DCGAN configs): ``langevin_steps`` counts the paper's steps, one of which is 3 MALA
  steps for MALA and one i-SIR step then 3 MALA steps for Ex2MCMC (so both take the same gradients
  and Ex2MCMC's global moves come on top), one i-SIR step for i-SIR; the step starts at 0.01 and
  adapts towards acceptance 0.67, with no mass matrix. The paper adapts the step along the whole
  run; ours adapts in the first tenth of the steps (warmup) and then keeps it, so that the draws
  come from one fixed kernel.
- ``drs``, ``mh_gan``, ``dot``: the latent-space baselines of :mod:`ppl_ebm.baselines`, as the toy
  compare runs them (:func:`ppl_ebm.studies.compare.run_baseline`).

Every MCMC method starts from the same prior draws (``torch.Generator`` seeded with ``seed``), so the
torch and JAX rows of one sampler differ only by their chains' random moves. DDLS, DRS and MH-GAN
read the calibrated critic (DDLS 5.2, ``ppl-ebm calibrate``) when the model has one; ``raw_critic``
uses the GAN's own critic read as a logit for DDLS. Figures (:mod:`.image_figures`): the paper's
chains every ``paper_steps / 10`` steps (DDLS Fig. 3) and the nearest train images of DDLS samples
in the classifier's feature space (DDLS Fig. 4).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ppl_ebm.data.images import load_images
from ppl_ebm.kernels.registry import BACKENDS
from ppl_ebm.metrics.frechet import frechet_distance
from ppl_ebm.metrics.image_scores import classifier_outputs, image_scores
from ppl_ebm.sampling import sample
from ppl_ebm.studies.compare import mcmc_diagnostics, mcmc_samples, run_baseline
from ppl_ebm.studies.image_figures import chain_frames, nearest_train_images
from ppl_ebm.studies.image_compare_report import saturated_fraction
from ppl_ebm.validation import check_positive_ints
from ppl_ebm.zoo.classifiers import load_classifier
from ppl_ebm.zoo.image_build import generate_images
from ppl_ebm.zoo.store import latent_ebm_of, load_model

__all__ = ["DEFAULT_IMAGE_METHODS", "IMAGE_BASELINES", "IMAGE_METHODS", "ImageCompareConfig", "ImageCompareOutput",
           "run_image_compare"]

IMAGE_BASELINES = ("drs", "mh_gan", "dot")
IMAGE_METHODS = ("generator",) + IMAGE_BASELINES + tuple(
    f"{s}/{b}" for b in BACKENDS for s in ("ula-paper", "ula", "mala", "mala-imh", "isir", "ex2mcmc", "nuts"))
DEFAULT_IMAGE_METHODS = ("generator", "drs", "mh_gan", "dot", "ula-paper/jax", "ula/jax", "mala/jax", "mala/torch",
                         "isir/jax", "ex2mcmc/jax")
# Fresh sets of generator images whose FD spread is the table's noise scale.
_NOISE_SEEDS = 10
# The DDLS sample of the nearest-train-images figure: the first of these that ran.
_FIGURE_METHODS = ("mala/jax", "mala/torch", "ula/jax", "ula/torch", "ula-paper/jax", "ula-paper/torch")
PAPER_ULA = {"step_size": 0.01, "noise_scale": 0.1, "decay_rate": 0.1, "decay_every": 200}
# The ex2mcmc paper's DCGAN settings (its configs mala.yml, ex2mcmc.yml, isir.yml, mmc_dcgan.yml): our
# sampler steps per paper step, and the MALA options of both samplers.
EX2MCMC_STEPS_PER_STEP = {"mala": 3, "ex2mcmc": 4, "isir": 1}
EX2MCMC_PAPER_MALA = {"step_size": 0.01, "target_accept_prob": 0.67, "mass_matrix": "none"}
IMAGE_SWEEP_STEPS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)


@dataclass
class ImageCompareConfig:
    """What ``ppl-ebm compare --model <image model>`` runs; the defaults take a few minutes on 2 cores."""

    model: str = "digits-dcgan"
    methods: tuple[str, ...] = DEFAULT_IMAGE_METHODS
    num_samples: int = 500
    langevin_steps: int = 100
    paper_steps: int = 1000
    trace_every: int = 10
    # Also the FD every trace_every steps along the exact samplers' draws (MALA, i-SIR, Ex2MCMC):
    # the ex2mcmc paper's FID-against-steps curve. Their first half of the steps is warmup, whose
    # states are not kept, so such a trace has step 0 (the starts) and then the draws.
    trace_samplers: bool = False
    # MALA, i-SIR and Ex2MCMC in the ex2mcmc paper's setting (the module's docstring).
    ex2mcmc_protocol: bool = False
    # NUTS: a few long chains from the first prior draws, their pooled draws thinned evenly to
    # num_samples images (the toy compare's NUTS rows; one chain per image would be thousands of trees).
    hmc_chains: int = 4
    hmc_warmup: int = 200
    hmc_draws: int = 250
    # ESS / R-hat columns on at most this many chains (ArviZ's cost grows with chains x draws).
    diagnostics_max_chains: int = 500
    ula_step_size: float | None = None
    sweep_steps: tuple[float, ...] = IMAGE_SWEEP_STEPS
    sweep_chains: int = 250
    mh_gan_chain_length: int = 640
    raw_critic: bool = False
    figure_chains: int = 8
    seed: int = 0
    data_root: str | None = None
    progress_bar: bool = True
    device: str | None = None
    # The standard FID/IS (torch-fidelity, the ``fid`` extra) on the Inception weights at this path.
    inception_weights: str | None = None
    inception_splits: int = 10

    def validate(self) -> "ImageCompareConfig":
        unknown = set(self.methods) - set(IMAGE_METHODS)
        if unknown:
            raise ValueError(f"Unknown method(s) {sorted(unknown)} for an image model; choose from {list(IMAGE_METHODS)}.")
        check_positive_ints(self, ("num_samples", "langevin_steps", "paper_steps", "trace_every", "sweep_chains",
                                   "mh_gan_chain_length", "figure_chains", "inception_splits", "hmc_chains",
                                   "hmc_warmup", "hmc_draws", "diagnostics_max_chains"))
        nuts = [m for m in self.methods if m.startswith("nuts/")]
        if nuts and self.hmc_chains * self.hmc_draws < self.num_samples:
            raise ValueError(f"hmc_chains x hmc_draws ({self.hmc_chains * self.hmc_draws}) must be >= num_samples "
                             f"({self.num_samples}) for {nuts[0]}: its images are its pooled draws. Give more "
                             "--hmc-chains or fewer --num-samples.")
        if nuts and self.hmc_chains > self.num_samples:
            raise ValueError(f"hmc_chains ({self.hmc_chains}) must be <= num_samples ({self.num_samples}): NUTS "
                             "starts from the first of the run's prior draws.")
        outside = [m for m in self.methods if m.split("/")[0] in ("mala-imh", "nuts")]
        if self.ex2mcmc_protocol and outside:
            raise ValueError(f"ex2mcmc_protocol covers mala, isir and ex2mcmc (the paper's samplers); {outside} "
                             "have no setting there: run them without --ex2mcmc-protocol.")
        if self.langevin_steps < 2:
            raise ValueError(f"langevin_steps must be >= 2 (MALA: warmup and draws), got {self.langevin_steps}.")
        if self.num_samples < 4 or self.sweep_chains < 4:
            raise ValueError("num_samples and sweep_chains must be >= 4 (precision/recall's k = 3 neighbours).")
        if self.ula_step_size is None and not self.sweep_steps and any(m.startswith("ula/") for m in self.methods):
            raise ValueError("ULA needs a step size: give ula_step_size or a non-empty sweep to choose it.")
        if any(not step > 0 for step in self.sweep_steps) or (self.ula_step_size is not None
                                                              and not self.ula_step_size > 0):
            raise ValueError("step sizes must be > 0.")
        from ppl_ebm.drivers.devices import check_device

        check_device(self.device)  # both backends, before any sampling: a missing GPU fails at once
        if self.inception_weights is not None:
            if self.num_samples < 2 * self.inception_splits:  # the IS of a part of one image is 1
                raise ValueError(f"num_samples ({self.num_samples}) must be >= 2 x inception_splits "
                                 f"({self.inception_splits}) with --inception-weights: the IS is averaged over that "
                                 "many parts of the samples.")
            from ppl_ebm.metrics.standard_inception import check_inception_weights

            check_inception_weights(self.inception_weights)  # library, path and file, before any sampling
        return self


@dataclass
class ImageCompareOutput:
    config: ImageCompareConfig
    model_config: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    samples: dict[str, np.ndarray]
    sweep: dict[str, Any]
    traces: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    standard_metrics: dict[str, Any] | None = None  # what fid_inception / is_inception are, when computed

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "image",
            "dataset": self.model_config["training"]["dataset"],
            "model": self.model_config["name"],
            "classifier": self.model_config["classifier"],
            "seed": self.config.seed,
            "num_samples": self.config.num_samples,
            "metrics": "fd: Frechet distance of the classifier's penultimate features (FID's formula) against the "
                       "held-out split; score: the Inception Score's formula on its softmax; precision/recall: "
                       "Kynkaanniemi et al. 2019, k = 3" + (
                           "; fid_inception, is_inception / is_inception_std: the standard FID and IS on the "
                           "Inception network (see standard_metrics)" if self.standard_metrics else ""),
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.config).items()},
            **({"standard_metrics": self.standard_metrics} if self.standard_metrics else {}),
            "methods": self.metrics,
            "sweep": self.sweep,
            "traces": self.traces,
            "critic": "raw" if self.config.raw_critic or "calibration" not in self.model_config else "calibrated",
            "chain_figure": {k: v for k, v in self.figures.get("chains", {}).items() if k != "images"},
            "nearest_train": {k: v for k, v in self.figures.get("nearest", {}).items() if k != "images"},
        }


def _images(ebm, latents: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        z = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32)).to(ebm.device)
        return ebm.generate(z).cpu().numpy()


def _run(method: str, ebm, config: ImageCompareConfig, ula_step: float | None, starts: np.ndarray):
    sampler, backend = method.split("/")
    if sampler == "nuts":
        return sample(ebm, "nuts", backend, num_chains=config.hmc_chains, num_warmup=config.hmc_warmup,
                      num_samples=config.hmc_draws, seed=config.seed, progress_bar=config.progress_bar,
                      device=config.device, initial_params=starts[: config.hmc_chains])
    common = dict(num_chains=config.num_samples, seed=config.seed, progress_bar=config.progress_bar,
                  device=config.device, initial_params=starts)
    if sampler == "ula-paper":
        return sample(ebm, "ula", backend, num_warmup=0, num_samples=config.paper_steps,
                      thinning=config.trace_every, **common, **PAPER_ULA)
    if sampler == "ula":
        return sample(ebm, "ula", backend, num_warmup=0, num_samples=config.langevin_steps, step_size=ula_step,
                      thinning=config.langevin_steps, **common)
    warmup = _sampler_warmup(config)  # MALA, MALA-IMH, i-SIR, Ex2MCMC
    if config.ex2mcmc_protocol:
        per = EX2MCMC_STEPS_PER_STEP[sampler]
        options = {} if sampler == "isir" else EX2MCMC_PAPER_MALA
        # thinning = per: one draw a paper step. Our Ex2MCMC cycle is 3 MALA steps then i-SIR (cycle.py:
        # the other kernel at (j + 1) % 4 == 0); one step less of warmup makes every kept draw the state
        # after i-SIR then 3 MALA steps, the paper's step and the state its FID is computed on.
        return sample(ebm, sampler, backend, num_warmup=per * warmup - (sampler == "ex2mcmc"),
                      num_samples=per * (config.langevin_steps - warmup), thinning=per, **common, **options)
    return sample(ebm, sampler, backend, num_warmup=warmup, num_samples=config.langevin_steps - warmup, **common)


def _sampler_warmup(config: ImageCompareConfig) -> int:
    """Warmup of MALA, i-SIR and Ex2MCMC in ``langevin_steps``' units: half (ours), a tenth with
    ``ex2mcmc_protocol`` (the paper adapts along the run, we in warmup only: the module's docstring)."""
    return max(config.langevin_steps // 10, 1) if config.ex2mcmc_protocol else config.langevin_steps // 2


def _fd_trace(features, reference: np.ndarray, start_fd: float, latents: np.ndarray,
              kept: dict[int, int]) -> dict[str, list]:
    """FD against ``reference`` at step 0 (``start_fd``: the chains' starts, shared by every traced
    method) and at every step of ``kept`` (step -> index of ``latents``' draw axis holding the state
    after that step)."""
    fds = [start_fd] + [frechet_distance(features(latents[:, index]), reference) for index in kept.values()]
    return {"step": [0, *kept], "fd": fds}


def _sweep(ebm, validation: np.ndarray, classifier, config: ImageCompareConfig, log) -> dict[str, Any]:
    """seed 002's sweep on images: FD of ULA's final states (``sweep_chains`` chains,
    ``langevin_steps`` steps) against train images, per step size; generator and adapted MALA beside."""
    reference = classifier_outputs(classifier, validation[: config.sweep_chains]).features
    fds = []
    for step in config.sweep_steps:
        log(f"  sweep: ULA step {step:g}")
        result = sample(ebm, "ula", "jax", num_chains=config.sweep_chains, num_warmup=0,
                        num_samples=config.langevin_steps, thinning=config.langevin_steps, seed=config.seed,
                        step_size=step, progress_bar=False, device=config.device)
        fds.append(frechet_distance(classifier_outputs(classifier, _images(ebm, result.latents[:, -1])).features,
                                    reference))
    log("  sweep: MALA adapted")
    warmup = config.langevin_steps // 2
    mala = sample(ebm, "mala", "jax", num_chains=config.sweep_chains, num_warmup=warmup,
                  num_samples=config.langevin_steps - warmup, seed=config.seed, progress_bar=False,
                  device=config.device)
    generator = generate_images(ebm.generator, ebm.latent_dim, config.sweep_chains, config.seed + 1)
    best = int(np.argmin(fds))
    return {
        "sampler": "ula (jax), noise sqrt(step), constant step", "data": "train images (validation), not the "
        "held-out test images of the table", "num_samples": config.sweep_chains, "steps": config.langevin_steps,
        "step_sizes": list(config.sweep_steps), "fd": fds, "best_step_size": config.sweep_steps[best],
        "best_fd": fds[best],
        "mala_adapted_step_size": float(np.median(mala.stats["step_size"])),
        "mala_adapted_fd": frechet_distance(
            classifier_outputs(classifier, _images(ebm, mala.latents[:, -1])).features, reference),
        "generator_fd": frechet_distance(classifier_outputs(classifier, generator).features, reference),
    }


def run_image_compare(config: ImageCompareConfig, log=print) -> ImageCompareOutput:
    """Run every requested method on the image model and score it (see module docstring)."""
    config = config.validate()
    model = load_model(config.model)
    if model.kind != "image":
        raise ValueError(f"{config.model!r} is not an image model; `ppl-ebm compare` runs the toy study on it.")
    dataset = model.dataset
    classifier = load_classifier(model.config["classifier"]).classifier
    ebm = latent_ebm_of(model)
    calibrated = latent_ebm_of(model, calibrated=True) if "calibration" in model.config else ebm
    ddls_ebm = ebm if config.raw_critic else calibrated
    if config.device is not None:
        from ppl_ebm.drivers.devices import torch_device

        for target in {id(ebm): ebm, id(calibrated): calibrated}.values():
            target.to(torch_device(config.device))
    held_out = load_images(dataset, "held_out", config.data_root).images
    train = load_images(dataset, "train", config.data_root).images
    order = np.random.default_rng(config.seed).permutation(len(train))
    floor = train[order[: config.num_samples]]
    validation = train[order[::-1]]  # the sweep's reference: train images, from the other end
    inception, reference_statistics, standard = None, None, None
    if config.inception_weights is not None:
        from ppl_ebm.drivers.devices import torch_device
        from ppl_ebm.metrics.standard_inception import inception_scorer

        log("[inception] the standard FID/IS: Inception features of the held-out split")
        inception = inception_scorer(config.inception_weights,
                                     None if config.device is None else torch_device(config.device))
        reference_statistics = inception.statistics(held_out)
        standard = {**inception.describe(), "splits": config.inception_splits, "reference": "held-out split",
                    "n_reference": int(len(held_out))}

    def standard_scores(images: np.ndarray) -> dict[str, float]:
        return {} if inception is None else inception.scores(images, reference_statistics, config.inception_splits)

    results: dict[str, dict[str, Any]] = {
        "data": {**image_scores(floor, held_out, classifier), **standard_scores(floor), "wall_seconds": None,
                 "note": "train images against the held-out ones: the floor"}}
    samples: dict[str, np.ndarray] = {"data": floor[:64]}
    traces: dict[str, dict[str, list[float]]] = {}
    figures: dict[str, Any] = {}
    all_images: dict[str, np.ndarray] = {}
    sweep: dict[str, Any] = {}
    if config.sweep_steps and any(m.startswith("ula/") for m in config.methods):
        log("[sweep] ULA step sizes and adapted MALA, scored on train images")
        sweep = _sweep(ddls_ebm, validation, classifier, config, log)
    ula_step = config.ula_step_size if config.ula_step_size is not None else sweep.get("best_step_size")
    held_out_features = classifier_outputs(classifier, held_out).features
    # One set of prior draws: the generator row's latents and every chain's start.
    starts = torch.randn(config.num_samples, ebm.latent_dim,
                         generator=torch.Generator().manual_seed(config.seed)).numpy()
    critic = "raw" if ddls_ebm is ebm else "calibrated"
    start_fd = None
    for index, method in enumerate(config.methods, start=1):
        log(f"[{index}/{len(config.methods)}] {method}")
        start = time.perf_counter()
        if method == "generator":
            images = _images(ebm, starts)
            row = {"wall_seconds": time.perf_counter() - start}
        elif method in IMAGE_BASELINES:
            out, seconds = run_baseline(method, ebm, calibrated, config)
            images = out.samples
            row = {"wall_seconds": seconds, "grad_evals": out.stats.get("grad_evals"),
                   "proposals": out.stats.get("proposals"), "acceptance_mean": out.stats.get("acceptance_rate"),
                   "critic": "raw" if method == "dot" or calibrated is ebm else "calibrated"}
        else:
            result = _run(method, ddls_ebm, config, ula_step, starts)
            # Each chain's final state (one chain an image, DDLS Alg. 1), NUTS's pooled draws thinned.
            images = _images(ebm, mcmc_samples(result, config.num_samples))
            row = {"wall_seconds": float(result.stats["wall_seconds"]),
                   "grad_evals": int(np.sum(result.stats["grad_evals"])),
                   "step_size": float(np.median(result.stats["step_size"])),
                   "acceptance_mean": float(np.mean(result.stats["acceptance"])), "critic": critic,
                   **mcmc_diagnostics(result, config)}
            if method.startswith("ula-paper/"):
                row["step_size"], row["final_step_size"] = PAPER_ULA["step_size"], row["step_size"]
                # DDLS Fig. 5: FD of the chains' states every trace_every steps from their starts.
                kept = {config.trace_every * (i + 1): i for i in range(result.latents.shape[1])}
            elif config.trace_samplers and method.split("/")[0] in ("mala", "mala-imh", "isir", "ex2mcmc"):
                first = _sampler_warmup(config) + 1  # the step after which the first draw is kept
                kept = {first + i: i for i in range(result.latents.shape[1]) if (first + i) % config.trace_every == 0}
            else:
                kept = {}
            if kept:
                features = lambda z: classifier_outputs(classifier, _images(ebm, z)).features  # noqa: E731
                if start_fd is None:  # every chain starts from the same prior draws: score them once
                    start_fd = frechet_distance(features(starts), held_out_features)
                traces[method] = _fd_trace(features, held_out_features, start_fd, result.latents, kept)
                row["best_trace_step"] = traces[method]["step"][int(np.argmin(traces[method]["fd"]))]
            if method.startswith("ula-paper/"):
                if "chains" not in figures:  # DDLS Fig. 3
                    figures["chains"] = chain_frames(
                        lambda z: _images(ebm, z), starts, result.latents, config.trace_every, config.figure_chains)
                    figures["chains"]["method"] = method
        results[method] = {**image_scores(images, held_out, classifier), **standard_scores(images), **row}
        samples[method], all_images[method] = images[:64], images
    for method, row in results.items():
        row["saturated"] = saturated_fraction(floor if method == "data" else all_images[method])
    if "generator" in config.methods:
        # The FD's own noise at this size: one table is one draw of every set, and the FD of
        # num_samples images moves by several units from one set of prior draws to the next.
        fds = [frechet_distance(classifier_outputs(classifier, generate_images(
            ebm.generator, ebm.latent_dim, config.num_samples, config.seed + 1 + i)).features, held_out_features)
            for i in range(_NOISE_SEEDS)]
        results["generator"].update(fd_seed_mean=float(np.mean(fds)), fd_seed_std=float(np.std(fds, ddof=1)))
    figure_method = next((m for m in _FIGURE_METHODS if m in all_images), None)
    if figure_method is not None:  # DDLS Fig. 4
        figures["nearest"] = nearest_train_images(all_images[figure_method], train, held_out, classifier,
                                                  num_queries=config.figure_chains)
        figures["nearest"]["method"] = figure_method
    return ImageCompareOutput(config, model.config, results, samples, sweep, traces, figures, standard)
