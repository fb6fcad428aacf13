"""Zoo entries of Xiao, Yan & Amit (2020): a VAE (``ppl-ebm train-vae``, a 2-D toy set or an image
set) and a latent EBM on its decoder (``ppl-ebm train-latent-ebm --base <zoo model>``), each with
its model card.

On an image set (digits) both folders are image-kind zoo entries (``"kind": "image"``, the
``conv_generator`` decoder, a ``conv_critic`` energy read with ``critic_output="energy"``, the
data set's zoo classifier), so ``ppl-ebm compare --model <name>`` runs the image compare
(:mod:`ppl_ebm.studies.image_compare`) on them: its ``generator`` row is the VAE's prior samples,
its sampler rows the latent EBM's. Their cards score images as the image GANs' do
(:func:`~ppl_ebm.zoo.image_build.score_against_held_out`: FD, score, precision/recall on the
classifier's features against the held-out split). Early stopping scores the FD against *train*
images (a fixed subset, the validation of the image compare's sweep), never the held-out split.

Both are ordinary toy zoo folders (``generator.safetensors``, ``critic.safetensors``,
``config.json`` with ``critic_output="energy"``), so :func:`~ppl_ebm.zoo.store.load_latent_ebm`,
``ppl-ebm sample`` and ``ppl-ebm compare`` take them by name. The generator is the VAE decoder's
mean. The base VAE's critic is an energy network whose output layer is zero (E = 0): loaded as a
latent EBM it *is* the base model, p(z) = p0(z). The latent EBM's critic is the learned energy.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppl_ebm import baselines, metrics
from ppl_ebm import data as datasets
from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.targets.latent_ebm import LatentEBM
from ppl_ebm.training.latent_ebm import LatentEBMTrainingConfig, train_latent_ebm
from ppl_ebm.training.vae import VAEConfig, is_image_dataset, train_image_vae, train_vae
from ppl_ebm.zoo.latent_draws import DRAWS_KEY, PairedSampler, draws_summary, emd_over_draws
from ppl_ebm.zoo.store import load_model, save_model

__all__ = ["train_latent_ebm_zoo_model", "train_vae_zoo_model", "write_latent_card"]

_EVAL_SAMPLES = 5000
BASE_TYPE_KEY = "base_model_type"  # config.json key marking the folders written here


def _energy_config(width: int, depth: int, dataset: str | None = None, activation: str = "relu",
                   fourier_features: int = 0, fourier_scale: float = 1.0) -> NetworkConfig:
    """The energy's network: a toy MLP (on ``fourier_features`` Fourier features of x when > 0), or
    on an image set ``conv_critic`` (base width ``width``, no spectral norm; the other options unused)."""
    if dataset is not None and is_image_dataset(dataset):
        from ppl_ebm.data.images import image_spec

        channels, side, _ = image_spec(dataset).shape
        return NetworkConfig("conv_critic", {"channels": channels, "base_width": width, "image_size": side,
                                             "spectral_norm": False})
    options = {"data_dim": 2, "width": width, "depth": depth, "activation": activation}
    if fourier_features:  # only then: the plain energies' config.json stays as it was
        options.update(fourier_features=fourier_features, fourier_scale=float(fourier_scale))
    return NetworkConfig("toy_critic", options)


def _zero_energy(energy_config: NetworkConfig, seed: int | None = None) -> torch.nn.Module:
    """``energy_config``'s network with its output layer zeroed (E = 0), the hidden layers drawn
    with torch seed ``seed`` (None: the global stream's next draws), the global torch RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        energy = build_network(energy_config)
    with torch.no_grad():
        energy[-1].weight.zero_()
        energy[-1].bias.zero_()
    return energy


def _command(command: str | None) -> str:
    return command or "ppl-ebm " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def _scores(samples: np.ndarray, dataset: str, eval_samples: int) -> dict[str, float]:
    """W1 (exact, all points) and the papers' W2^2@1000 of ``samples`` and of the data floor, on
    the protocol of ``ppl-ebm compare`` (test data seed 10000, floor seed 20000)."""
    from ppl_ebm.zoo.build import paper_emd_scores

    draw = lambda n, seed: datasets.sample_dataset(dataset, n, seed)  # noqa: E731
    data, floor = draw(eval_samples, 10_000), draw(eval_samples, 20_000)
    return {"emd": metrics.emd(samples, data), "data_floor_emd": metrics.emd(floor, data),
            "eval_samples": eval_samples, **paper_emd_scores(samples, floor, draw)}


def train_vae_zoo_model(config: VAEConfig, name: str, output: Path, progress_bar: bool = True,
                        command: str | None = None, eval_samples: int = _EVAL_SAMPLES) -> Path:
    """Train a VAE, score its decoded prior draws, write ``output/name`` and its card."""
    config = config.validate()
    if is_image_dataset(config.dataset):
        return _train_image_vae_zoo_model(config, name, output, progress_bar, command, eval_samples)
    draw = lambda n, seed: datasets.sample_dataset(config.dataset, n, seed)  # noqa: E731
    trained = train_vae(config, draw, progress_bar=progress_bar)
    energy_config = _energy_config(width=8, depth=1)
    zero_energy = _zero_energy(energy_config)
    ebm = LatentEBM(trained.decoder, zero_energy, critic_output="energy")
    generated = baselines.generator_only(ebm, eval_samples, 0).samples
    folder = save_model(
        Path(output) / name, name, trained.decoder, zero_energy, config, "energy",
        generator_config=config.decoder_config(), critic_config=energy_config, data_dim=2,
        extra={BASE_TYPE_KEY: "vae", "generator_metrics": _scores(generated, config.dataset, eval_samples),
               "training_seconds": trained.seconds, "log_sigma": trained.log_sigma, "command": _command(command),
               "history": trained.history, "machine": _machine()},
    )
    _plot_curve(folder / "learning_curve.png", trained.history["iteration"], trained.history["elbo"], "ELBO")
    write_latent_card(folder)
    return folder


def train_latent_ebm_zoo_model(base: str | Path, name: str, output: Path,
                               config: LatentEBMTrainingConfig = LatentEBMTrainingConfig(), energy_width: int = 128,
                               energy_depth: int = 3, progress_bar: bool = True, command: str | None = None,
                               eval_samples: int = _EVAL_SAMPLES, energy_activation: str = "relu",
                               energy_fourier_features: int = 0, energy_fourier_scale: float = 1.0) -> Path:
    """Train an energy on ``base``'s generator (:func:`~ppl_ebm.training.latent_ebm.train_latent_ebm`),
    score base and latent-EBM samples (ULA as the paper samples: ``config.sample_steps`` steps of
    ``config.step_size`` from prior draws), write ``output/name`` with the learning curve and card."""
    from ppl_ebm.training.latent_ebm import latent_langevin
    import jax

    config = config.validate()
    base_model = load_model(base)
    dataset = base_model.dataset
    if base_model.kind == "image":
        if energy_fourier_features:
            raise ValueError("Fourier features are an option of the toy MLP energy; an image base's energy is "
                             "conv_critic: drop --energy-fourier-features.")
        return _train_image_latent_ebm_zoo_model(base_model, name, output, config, energy_width, progress_bar,
                                                 command, eval_samples)
    if dataset is None or datasets.dataset_spec(dataset).kind != "toy2d":
        raise ValueError(f"base must be a toy 2-D zoo model (a VAE from ppl-ebm train-vae); {base_model.name!r} "
                         f"was trained on {dataset!r}.")
    latent_dim = int(base_model.config["training"]["latent_dim"])
    energy_config = _energy_config(energy_width, energy_depth, activation=energy_activation,
                                   fourier_features=energy_fourier_features, fourier_scale=energy_fourier_scale)
    # Training starts from E = 0 (hidden layers seeded, output layer zero): step 0 of the early
    # stopping is then the base model itself, and an energy that never beats it is E = 0.
    energy = _zero_energy(energy_config, seed=config.seed)
    draw = lambda n, seed: datasets.sample_dataset(dataset, n, seed)  # noqa: E731
    trained = train_latent_ebm(base_model.generator, energy, latent_dim, draw, config, progress_bar=progress_bar)
    sampler = PairedSampler(base_model.generator, trained.energy, latent_dim, config.sample_steps, config.step_size)
    base_samples, tilted = sampler.draw(eval_samples, 0)
    # Seed 0 again among the draws (seconds at most): the card's row and its repeats are one code path.
    draws = emd_over_draws(sampler, dataset, eval_samples)
    training = {"dataset": dataset, "latent_dim": latent_dim, "base": base_model.name, **config._asdict()}
    folder = save_model(
        Path(output) / name, name, base_model.generator, trained.energy, training, "energy",
        generator_config=base_model.network_config("generator"), critic_config=energy_config, data_dim=2,
        extra={BASE_TYPE_KEY: base_model.config.get(BASE_TYPE_KEY, "generator"), "latent_ebm": True,
               "generator_metrics": _scores(base_samples, dataset, eval_samples),
               "latent_ebm_metrics": _scores(tilted, dataset, eval_samples),
               "training_seconds": trained.seconds, "best_iteration": trained.best_iteration,
               "stopped_early": trained.stopped_early, "history": trained.history, "command": _command(command),
               "machine": _machine(), DRAWS_KEY: draws},
    )
    _plot_curve(folder / "learning_curve.png", trained.history["eval_iteration"], trained.history["held_out_score"],
                "held-out W1 (ULA samples)")
    _plot_samples(folder / "samples.png", draw(eval_samples, 10_000), base_samples, tilted, config.sample_steps)
    path = latent_langevin(jax.random.key(1), sampler.jax_ebm, 16, config.sample_steps, config.step_size, every=10)
    _plot_chains(folder / "chains.png", draw(eval_samples, 10_000), sampler.generate(path))
    write_latent_card(folder)
    return folder


def _image_metrics(images: dict[str, np.ndarray], dataset: str) -> dict[str, Any]:
    from ppl_ebm.zoo.image_build import score_against_held_out

    scores = score_against_held_out(images, dataset)
    if scores is None:
        raise FileNotFoundError(f"the zoo has no classifier for {dataset!r}; train one with "
                                f"`ppl-ebm train-classifier --dataset {dataset}` first.")
    return scores


def _train_image_vae_zoo_model(config: VAEConfig, name: str, output: Path, progress_bar: bool,
                               command: str | None, eval_samples: int) -> Path:
    """An image VAE's zoo folder: decoder mean as the generator, a zero ``conv_critic`` energy,
    scored as the image GANs (n = the train split's size capped at EVAL_CAP and ``eval_samples``:
    prior draws, seed 0, and as many train images, the floor, against the held-out split)."""
    from ppl_ebm.data.images import load_images
    from ppl_ebm.zoo.image_build import EVAL_CAP, classifier_name, generate_images

    train = load_images(config.dataset, "train").images
    trained = train_image_vae(config, train, progress_bar=progress_bar)
    n = min(len(train), EVAL_CAP, eval_samples)
    floor = train[np.random.default_rng(0).permutation(len(train))[:n]]
    generated = generate_images(trained.decoder, config.latent_dim, n)
    scores = _image_metrics({"generator": generated, "data_floor": floor}, config.dataset)
    energy_config = _energy_config(8, 1, config.dataset)
    folder = save_model(
        Path(output) / name, name, trained.decoder, _zero_energy(energy_config), config, "energy",
        generator_config=config.decoder_config(), critic_config=energy_config,
        extra={"kind": "image", "image_shape": list(train.shape[1:]), "classifier": classifier_name(config.dataset),
               BASE_TYPE_KEY: "vae", "generator_metrics": scores, "training_seconds": trained.seconds,
               "log_sigma": trained.log_sigma, "command": _command(command), "history": trained.history,
               "machine": _machine()},
    )
    _plot_curve(folder / "learning_curve.png", trained.history["iteration"], trained.history["elbo"],
                "ELBO (nats per image)")
    _plot_image_rows(folder / "samples.png", {"train images": floor[:64], "VAE prior draws": generated[:64]})
    write_latent_card(folder)
    return folder


def _train_image_latent_ebm_zoo_model(base_model, name: str, output: Path, config: LatentEBMTrainingConfig,
                                      energy_width: int, progress_bar: bool, command: str | None,
                                      eval_samples: int) -> Path:
    """Eq. 6 on an image VAE's decoder: pool = the train split; early stopping on the FD of
    ``config.eval_samples`` ULA samples against as many train images (a seed-``config.seed``
    permutation), never the held-out split. Card scores as the VAE's: n prior draws (seed 0) and
    n ULA samples (``config.sample_steps`` steps of ``config.step_size`` from prior draws, key 0)."""
    import jax

    from ppl_ebm.data.images import load_images
    from ppl_ebm.metrics.frechet import frechet_distance
    from ppl_ebm.metrics.image_scores import classifier_outputs
    from ppl_ebm.nets.torch_to_jax import torch_to_jax
    from ppl_ebm.training.latent_ebm import _ebm, latent_langevin
    from ppl_ebm.zoo.classifiers import load_classifier
    from ppl_ebm.zoo.image_build import EVAL_CAP, generate_images

    dataset = base_model.dataset
    latent_dim = int(base_model.config["training"]["latent_dim"])
    train = load_images(dataset, "train").images
    image_shape = tuple(train.shape[1:])
    validation = train[np.random.default_rng(config.seed).permutation(len(train))[: config.eval_samples]]
    classifier = load_classifier(base_model.config["classifier"]).classifier
    reference = classifier_outputs(classifier, validation).features

    def score(samples: np.ndarray, _validation: np.ndarray) -> float:
        samples = np.asarray(samples, dtype=np.float32)
        if not np.isfinite(samples).all():
            return float("inf")
        return frechet_distance(classifier_outputs(classifier, samples).features, reference)

    energy_config = _energy_config(energy_width, 1, dataset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        energy = build_network(energy_config)
    trained = train_latent_ebm(base_model.generator, energy, latent_dim, None, config, score=score,
                               progress_bar=progress_bar, pool=train, held_out=validation)
    generator_fn, generator_params = torch_to_jax(base_model.generator, torch.zeros(2, latent_dim))
    energy_fn, energy_params = torch_to_jax(trained.energy, torch.zeros(2, *image_shape))
    jax_ebm = _ebm(generator_fn, generator_params, energy_fn, energy_params, latent_dim, image_shape)
    n = min(len(train), EVAL_CAP, eval_samples)
    z = latent_langevin(jax.random.key(0), jax_ebm, n, config.sample_steps, config.step_size)
    tilted = np.asarray(generator_fn(generator_params, z))
    base_images = generate_images(base_model.generator, latent_dim, n)
    floor = train[np.random.default_rng(0).permutation(len(train))[:n]]
    scores = _image_metrics({"generator": base_images, "latent_ebm": tilted, "data_floor": floor}, dataset)
    training = {"dataset": dataset, "latent_dim": latent_dim, "base": base_model.name, "energy_width": energy_width,
                **config._asdict()}
    folder = save_model(
        Path(output) / name, name, base_model.generator, trained.energy, training, "energy",
        generator_config=base_model.network_config("generator"), critic_config=energy_config,
        extra={"kind": "image", "image_shape": list(image_shape), "classifier": base_model.config["classifier"],
               BASE_TYPE_KEY: base_model.config.get(BASE_TYPE_KEY, "generator"), "latent_ebm": True,
               "generator_metrics": {"generator": scores["generator"], "data_floor": scores["data_floor"]},
               "latent_ebm_metrics": scores["latent_ebm"], "training_seconds": trained.seconds,
               "best_iteration": trained.best_iteration, "stopped_early": trained.stopped_early,
               "history": trained.history, "command": _command(command), "machine": _machine()},
    )
    _plot_curve(folder / "learning_curve.png", trained.history["eval_iteration"], trained.history["held_out_score"],
                "FD vs train images (ULA samples)")
    _plot_image_rows(folder / "samples.png", {"train images": floor[:64], "VAE prior draws": base_images[:64],
                                              f"latent EBM (ULA, {config.sample_steps} steps)": tilted[:64]})
    path = latent_langevin(jax.random.key(1), jax_ebm, 8, config.sample_steps, config.step_size, every=10)
    frames = np.asarray(generator_fn(generator_params, path.reshape(-1, latent_dim)))
    frames = frames.reshape(path.shape[0], path.shape[1], *image_shape).swapaxes(0, 1)  # (chains, frames, ...)
    _plot_image_chains(folder / "chains.png", frames)
    write_latent_card(folder)
    return folder


def _grid(images: np.ndarray, columns: int = 8) -> np.ndarray:
    """``(n, C, H, W)`` images in [-1, 1] as one grey/RGB canvas in [0, 1], ``columns`` per row."""
    n, channels, side, _ = images.shape
    rows = -(-n // columns)
    canvas = np.ones((rows * (side + 1), columns * (side + 1), channels), np.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas[r * (side + 1):r * (side + 1) + side, c * (side + 1):c * (side + 1) + side] = \
            (np.clip(image, -1, 1).transpose(1, 2, 0) + 1) / 2
    return canvas[..., 0] if channels == 1 else canvas


def _plot_image_rows(path: Path, sets: dict[str, np.ndarray]) -> None:
    """One 8x8 grid of images per named set, side by side (the paper's Fig. 4 layout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(sets), figsize=(3.2 * len(sets), 3.5))
    for axis, (title, images) in zip(np.atleast_1d(axes), sets.items()):
        axis.imshow(_grid(np.asarray(images)), cmap="gray", vmin=0, vmax=1)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_image_chains(path: Path, frames: np.ndarray) -> None:
    """The paper's Fig. 3 analogue on images: a row per chain, G(z) every 10 ULA steps from a prior draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chains, steps = frames.shape[:2]
    figure, axis = plt.subplots(figsize=(0.5 * steps + 0.5, 0.5 * chains + 0.6))
    axis.imshow(_grid(frames.reshape(chains * steps, *frames.shape[2:]), columns=steps), cmap="gray", vmin=0, vmax=1)
    axis.set_title("chains from prior draws, every 10 ULA steps (left: start)", fontsize=8)
    axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_samples(path: Path, data: np.ndarray, base: np.ndarray, tilted: np.ndarray, steps: int) -> None:
    plot_point_panels(path, data, {"data": data, "base (prior draws)": base,
                                   f"latent EBM (ULA, {steps} steps)": tilted})


def plot_point_panels(path: Path, data: np.ndarray, panels: dict[str, np.ndarray]) -> None:
    """2-D point sets side by side (titles -> points), on the data's axes (its 0.5-99.5 % range, padded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels) - 0.2, 3.4), sharex=True, sharey=True)
    for axis, (title, points) in zip(axes, panels.items()):
        axis.scatter(points[:, 0], points[:, 1], s=1, alpha=0.4)
        axis.set_title(title)
    lo, hi = np.percentile(data, [0.5, 99.5], axis=0)
    pad = 0.15 * (hi - lo)
    axes[0].set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    axes[0].set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_chains(path: Path, data: np.ndarray, chains: np.ndarray) -> None:
    """The paper's Fig. 3 analogue: 16 chains from prior draws, G(z) every 10 ULA steps (dots),
    start marked by a cross, over the data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter(data[:, 0], data[:, 1], s=1, alpha=0.15, color="grey")
    for chain in range(chains.shape[1]):
        axis.plot(chains[:, chain, 0], chains[:, chain, 1], marker=".", linewidth=0.8)
        axis.scatter(chains[0, chain, 0], chains[0, chain, 1], marker="x", color="black")
    axis.set_title("chains from prior draws, every 10 steps")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _plot_curve(path: Path, x: list[float], y: list[float], label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.plot(x, y, marker=".")
    axis.set_xlabel("iteration")
    axis.set_ylabel(label)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _rows(scores: dict[str, Any]) -> str:
    return "\n".join(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in scores.items() if k != "eval_samples")


def write_latent_card(folder: Path) -> None:
    """``MODEL_CARD.md`` of a VAE or latent-EBM folder, from its config.json."""
    folder = Path(folder)
    full = json.loads((folder / "config.json").read_text())
    if full.get("kind") == "image":
        _write_image_latent_card(folder, full)
        return
    training, name = full["training"], full["name"]
    if full.get(BASE_TYPE_KEY) == "flow" and not full.get("latent_ebm"):
        from ppl_ebm.zoo.flow_build import write_flow_card

        return write_flow_card(folder)
    flow = full.get(BASE_TYPE_KEY) == "flow"
    if full.get("latent_ebm"):
        net = full["critic"]["options"]
        text = f"""# {name}

Latent EBM (Xiao, Yan & Amit 2020) p(z) ∝ N(z; 0, I) exp(-E(G(z))) on the frozen generator of
`{training['base']}` (G: {"the flow's forward map" if flow else "the VAE decoder's mean"}), data `{training['dataset']}`. E is a toy MLP
({_energy_layers(net)}; `critic.safetensors`, `critic_output="energy"`), trained by maximum likelihood (eq. 6) with
short-run non-persistent ULA from p0: eps {training['step_size']}, {training['train_steps']} steps in training,
{training['sample_steps']} to sample; energy regularisation {training['energy_regularisation']}; Adam lr
{training['learning_rate']}, batch {training['batch_size']}; W1 of {training['eval_samples']} ULA samples against as many held-out
points (their own seed, not the test data below) every {training['eval_every']} steps, best kept, stop after
{training['patience']} evaluations without improvement (Sec. 5.3).

## Reproduce

```bash
{full.get('command', '(not recorded)')}
```

Seed {training['seed']}; {full['history']['iteration'][-1] if full['history']['iteration'] else 0} of
{training['iterations']} steps run ({'stopped early' if full['stopped_early'] else 'no early stop'}),
best at step {full['best_iteration']}; {full['training_seconds']:.0f} s ({full.get('machine', '')}).
Learning curve: `learning_curve.png`; the paper's Fig. 1 layout (data, base, latent EBM): `samples.png`; its Fig. 3 analogue (chains from prior draws every 10 steps): `chains.png`.

## Base samples vs latent-EBM samples (ULA as the paper, {training['sample_steps']} steps)

| metric | base {'flow' if flow else 'VAE'} (prior draws) | latent EBM |
|---|---|---|
""" + "\n".join(f"| {k} | {full['generator_metrics'][k]:.4f} | {full['latent_ebm_metrics'][k]:.4f} |"
                for k in full["latent_ebm_metrics"] if k != "eval_samples") + "\n"
        if DRAWS_KEY in full:
            text += "\n" + draws_summary(full[DRAWS_KEY])
    else:
        text = f"""# {name}

VAE on `{training['dataset']}` (Xiao, Yan & Amit 2020 Sec. 5.1): encoder and decoder toy MLPs
2-{'-'.join([str(training['width'])] * training['depth'])}-{training['latent_dim']} /
{training['latent_dim']}-{'-'.join([str(training['width'])] * training['depth'])}-2, {training['activation']},
prior N(0, I), Gaussian likelihood with one learned sigma (log sigma {full['log_sigma']:.3f}). The
generator is the decoder's *mean*; the critic is a zero energy (E = 0), so as a latent EBM this
folder is the base model itself.

## Reproduce

```bash
{full.get('command', '(not recorded)')}
```

Seed {training['seed']}; {training['iterations']} Adam steps (lr {training['learning_rate']}), batch
{training['batch_size']}; {full['training_seconds']:.0f} s ({full.get('machine', '')}); final ELBO
{full['history']['elbo'][-1]:.3f}. Learning curve: `learning_curve.png`.

## Decoded prior draws

| metric | value |
|---|---|
{_rows(full['generator_metrics'])}
"""
    text += "\n" + card_metrics_note(full)
    text += card_closing(full, "`generator.safetensors`, `critic.safetensors`, `config.json`, the figures")
    (folder / "MODEL_CARD.md").write_text(text)


def _energy_layers(net: dict[str, Any]) -> str:
    """The toy energy MLP's layers for the card: ``2-256-256-256-1, relu``, or with Fourier features
    their width and what they are."""
    m = net.get("fourier_features", 0)
    layers = f"{2 + 2 * m}-{'-'.join([str(net['width'])] * net['depth'])}-1, {net['activation']}"
    if not m:
        return layers
    return (f"{layers}, on the Fourier features [x, sin 2πBx, cos 2πBx] of x: B {m} x 2, fixed random entries "
            f"N(0, {net['fourier_scale']}^2), saved with the weights")


def card_metrics_note(full: dict[str, Any]) -> str:
    """What the toy cards' metric rows measure (shared by the VAE, latent-EBM and flow cards)."""
    return f"""{full['generator_metrics']['eval_samples']} samples (seed 0) against as many fresh data points (seed 10000);
`emd`: exact W1; `w2sq_<n>_*`: the papers' EMD (W2^2, POT's default cost) at n points, 10 repeats;
`data_floor_*`: a second fresh data sample, the floor at this size.
"""


def card_closing(full: dict[str, Any], files: str) -> str:
    """A toy card's end: the sampler comparison when one was run, then its files and how to load them."""
    results = full.get("compare_results")
    text = "\n" + results.rstrip() + "\n" if results else ""
    return text + f"""
## Files

{files}; load with
`ppl_ebm.zoo.load_latent_ebm("{full['name']}")` (safetensors, no pickle).
"""


def _image_row(label: str, s: dict[str, Any]) -> str:
    return f"| {label} | {s['fd']:.3f} | {s['score']:.3f} | {s['precision']:.3f} | {s['recall']:.3f} |"


def _write_image_latent_card(folder: Path, full: dict[str, Any]) -> None:
    """``MODEL_CARD.md`` of an image VAE or of a latent EBM on one."""
    training, name, metrics = full["training"], full["name"], full["generator_metrics"]
    generator, critic = full["generator"]["options"], full["critic"]["options"]
    n, n_ref = metrics["generator"]["n_generated"], metrics["generator"]["n_reference"]
    rows = ["| images | FD | score | precision | recall |", "|---|---|---|---|---|",
            _image_row("VAE prior draws (base)", metrics["generator"])]
    if full.get("latent_ebm"):
        latent = full["latent_ebm_metrics"]
        rows.append(_image_row(f"latent EBM (ULA, {training['sample_steps']} steps of {training['step_size']})",
                               latent))
    rows.append(_image_row("train images (floor)", metrics["data_floor"]))
    table = "\n".join(rows)
    scoring = f"""On the zoo classifier `{full['classifier']}`'s features (`ppl_ebm.metrics.image_scores`), against the
{n_ref} held-out images: {n} images per row (prior draws and chains' starts: seed 0), the floor {n} train images.
FD: Frechet distance of the penultimate features (FID's formula, not FID's scale); score: the Inception
Score's formula on the classifier's softmax (1 to 10); precision / recall: Kynkaanniemi et al. 2019, k = 3."""
    if full.get("latent_ebm"):
        ratio = latent["fd"] / metrics["generator"]["fd"]
        history = full["history"]
        steps_run = history["eval_iteration"][-1]
        text = f"""# {name}

Latent EBM (Xiao, Yan & Amit 2020) p(z) ∝ N(z; 0, I) exp(-E(G(z))) on the frozen decoder mean of
`{training['base']}` (`conv_generator` {generator}), data `{training['dataset']}`. E is `conv_critic`
{critic} (`critic.safetensors`, `critic_output="energy"`), trained by maximum likelihood (eq. 6) with
short-run non-persistent ULA from p0: eps {training['step_size']}, {training['train_steps']} steps in training,
{training['sample_steps']} to sample; energy regularisation {training['energy_regularisation']}; Adam lr
{training['learning_rate']} betas ({training['beta1']}, {training['beta2']}), batch {training['batch_size']}.
Early stopping (Sec. 5.3): every {training['eval_every']} steps the FD of {training['eval_samples']} ULA samples
against {training['eval_samples']} *train* images (validation; the held-out split is only used below), best kept,
stop after {training['patience']} evaluations without improvement.

## Reproduce

```bash
{full.get('command', '(not recorded)')}
```

Seed {training['seed']}; {steps_run} of {training['iterations']} steps run
({'stopped early' if full['stopped_early'] else 'no early stop'}), best at step {full['best_iteration']};
training {full['training_seconds']:.0f} s ({full.get('machine', '')}). Learning curve (validation FD):
`learning_curve.png`; train images, VAE prior draws and latent-EBM samples: `samples.png`; the paper's
Fig. 3 analogue (8 chains from prior draws, every 10 ULA steps): `chains.png`.

## VAE prior draws vs latent-EBM samples (ULA as the paper)

{scoring}

{table}

FD ratio latent EBM / VAE: {ratio:.3f} (goal <= 0.8).
"""
    else:
        text = f"""# {name}

VAE on `{training['dataset']}` ({'x'.join(map(str, full['image_shape']))} images in [-1, 1]), the base model of
Xiao, Yan & Amit (2020) on images: DCGAN-style decoder `conv_generator` {generator} (its mean is the
generator; tanh output), conv encoder (`conv_critic`'s body, base width {training['encoder_width']}, with a
2 x {training['latent_dim']} head; not stored), prior N(0, I) in {training['latent_dim']} dimensions, Gaussian
likelihood with one learned sigma (log sigma {full['log_sigma']:.3f}). The critic is a zero `conv_critic` energy
(E = 0), so as a latent EBM this folder is the VAE itself.

## Reproduce

```bash
{full.get('command', '(not recorded)')}
```

Seed {training['seed']}; {training['iterations']} Adam steps (torch, lr {training['learning_rate']}), batch
{training['batch_size']}; {full['training_seconds']:.0f} s ({full.get('machine', '')}); final ELBO
{full['history']['elbo'][-1]:.2f} nats per image. Learning curve: `learning_curve.png`; samples: `samples.png`.

## Decoded prior draws

{scoring}

{table}
"""
    if full.get("compare_results"):
        text += "\n" + full["compare_results"].rstrip() + "\n"
    text += f"""
## Files

`generator.safetensors`, `critic.safetensors`, `config.json`, the figures; load with
`ppl_ebm.zoo.load_latent_ebm("{name}")` or `ppl_ebm.zoo.load_model("{name}")` (safetensors, no pickle).
"""
    (folder / "MODEL_CARD.md").write_text(text)
