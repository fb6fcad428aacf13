"""``ppl-ebm train-pixel-ebm``: the pixel-space EBM baseline (Du & Mordatch 2019) on an image set,
written as a folder beside the zoo: ``energy.safetensors`` (a ``conv_critic`` read as an energy),
``pixel_ebm.json`` (network, training settings, scores, cost) and ``MODEL_CARD.md``.

The folder has no ``config.json`` on purpose: it is not a generator/critic zoo model (there is no
generator to sample), so ``ppl-ebm compare`` and the zoo listing leave it out; load it with
:func:`load_pixel_ebm`. The card scores 1437 (at most ``eval_samples``) images two ways against
the held-out split, as the VAE / latent EBM cards: ``train_steps`` ULA moves from uniform noise
(short-run, as the paper's baseline row) and random replay-buffer entries (the persistent chains),
and sets them beside the figures of ``<output>/<dataset>-vae-latent-ebm`` when that folder exists.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.training.pixel_ebm import PixelEBMTrainingConfig, pixel_langevin, train_pixel_ebm
from ppl_ebm.zoo.store import save_weights

__all__ = ["load_pixel_ebm", "train_pixel_ebm_model"]

CONFIG_FILE = "pixel_ebm.json"
WEIGHTS_FILE = "energy.safetensors"


def _network_config(dataset: str, width: int) -> NetworkConfig:
    from ppl_ebm.data.images import image_spec

    channels, side, _ = image_spec(dataset).shape
    return NetworkConfig("conv_critic", {"channels": channels, "base_width": width, "image_size": side,
                                         "spectral_norm": False})


def load_pixel_ebm(folder: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The energy (a torch module, eval mode; E(x) = its output) and the folder's ``pixel_ebm.json``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    energy = build_network(NetworkConfig(config["energy"]["architecture"], config["energy"]["options"]))
    energy.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return energy.eval(), config


def train_pixel_ebm_model(dataset: str, name: str, output: Path, config: PixelEBMTrainingConfig, width: int,
                          progress_bar: bool, command: str, eval_samples: int, machine: str) -> Path:
    import jax

    from ppl_ebm.data.images import load_images
    from ppl_ebm.nets.torch_to_jax import torch_to_jax
    from ppl_ebm.zoo.image_build import EVAL_CAP
    from ppl_ebm.zoo.latent_build import _image_metrics, _plot_curve, _plot_image_rows

    train = load_images(dataset, "train").images
    network = _network_config(dataset, width)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        energy = build_network(network)
    trained = train_pixel_ebm(energy, train, config, progress_bar=progress_bar)

    n = min(len(train), EVAL_CAP, eval_samples, config.buffer_size)
    energy_fn, params = torch_to_jax(trained.energy, torch.zeros(2, *train.shape[1:]))
    noise = jax.random.uniform(jax.random.key(0), (n, *train.shape[1:]), minval=-1.0, maxval=1.0)
    short_run = np.asarray(pixel_langevin(jax.random.key(1), energy_fn, params, noise, config.train_steps,
                                          config.step_size, config.noise_scale))
    from_buffer = trained.buffer[np.random.default_rng(0).permutation(len(trained.buffer))[:n]]
    floor = train[np.random.default_rng(0).permutation(len(train))[:n]]
    scores = _image_metrics({"short_run_from_noise": short_run, "replay_buffer": from_buffer, "data_floor": floor},
                            dataset)

    folder = Path(output) / name
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(trained.energy, folder / WEIGHTS_FILE)
    iterations = config.iterations
    full = {"name": name, "dataset": dataset, "image_shape": list(train.shape[1:]),
            "energy": {"architecture": network.architecture, "options": network.options},
            "training": {"width": width, **config._asdict()}, "metrics": scores, "n_eval": int(n),
            "training_seconds": trained.seconds, "seconds_per_iteration": trained.seconds / iterations,
            # per training iteration: train_steps input-gradients of E on batch_size chains, then one
            # parameter gradient on 2 x batch_size images
            "energy_gradient_evaluations_per_iteration": config.train_steps + 1,
            "history": trained.history, "command": command, "machine": machine}
    latent = Path(output) / f"{dataset}-vae-latent-ebm" / "config.json"
    if latent.is_file():
        reference = json.loads(latent.read_text())
        full["latent_ebm_reference"] = {
            "name": reference["name"], "vae": reference["generator_metrics"]["generator"],
            "latent_ebm": reference["latent_ebm_metrics"], "training_seconds": reference["training_seconds"],
            "iterations": reference["training"]["iterations"], "batch_size": reference["training"]["batch_size"],
            "train_steps": reference["training"]["train_steps"], "sample_steps": reference["training"]["sample_steps"],
            "eval_every": reference["training"]["eval_every"], "eval_samples": reference["training"]["eval_samples"]}
    (folder / CONFIG_FILE).write_text(json.dumps(full, indent=2) + "\n")
    _plot_curve(folder / "learning_curve.png", trained.history["iteration"], trained.history["energy_gap"],
                "E(data) - E(negatives)")
    _plot_image_rows(folder / "samples.png", {"train images": floor[:64],
                                              f"pixel EBM, {config.train_steps} ULA steps from noise": short_run[:64],
                                              "pixel EBM, replay buffer": from_buffer[:64]})
    (folder / "MODEL_CARD.md").write_text(_card(full))
    return folder


def _row(label: str, m: dict[str, Any]) -> str:
    return f"| {label} | {m['fd']:.3f} | {m['score']:.3f} | {m['precision']:.3f} | {m['recall']:.3f} |"


def _card(full: dict[str, Any]) -> str:
    t, m, n = full["training"], full["metrics"], full["n_eval"]
    options = full["energy"]["options"]
    rows = [_row(f"pixel EBM, {t['train_steps']} ULA steps from uniform noise (short-run)", m["short_run_from_noise"]),
            _row("pixel EBM, replay-buffer entries (persistent chains)", m["replay_buffer"])]
    cost = [f"| pixel EBM (this) | {t['iterations']} | {t['batch_size']} | {t['train_steps']} + 1 | "
            f"{full['training_seconds']:.0f} | {full['seconds_per_iteration']:.3f} |"]
    reference = full.get("latent_ebm_reference")
    if reference:
        rows = [_row(f"VAE prior draws (`{reference['name']}`'s card)", reference["vae"]),
                _row(f"latent EBM (`{reference['name']}`'s card)", reference["latent_ebm"])] + rows
        evals = reference["iterations"] // reference["eval_every"]
        cost.insert(0, f"| latent EBM (`{reference['name']}`) | {reference['iterations']} | {reference['batch_size']} | "
                       f"{reference['train_steps']} + 1 (through the decoder, 16-d latent), plus {evals} evaluations "
                       f"of {reference['eval_samples']} x {reference['sample_steps']} steps | "
                       f"{reference['training_seconds']:.0f} | {reference['training_seconds'] / reference['iterations']:.3f} |")
    rows.append(_row("train images (floor)", m["data_floor"]))
    return f"""# {full['name']}

Pixel-space EBM baseline (Du & Mordatch 2019; the last row of Xiao, Yan & Amit 2020's comparison):
p(x) ∝ exp(-E(x)) on the {full['dataset']} pixels in [-1, 1], no generator. E is `conv_critic` {options}
(`{WEIGHTS_FILE}`, E(x) = its output), trained by maximum likelihood with persistent short-run
Langevin from a replay buffer of {t['buffer_size']}: each step {1 - t['reinit']:.0%} of the {t['batch_size']} chains restart
from the buffer and {t['reinit']:.0%} from uniform noise on [-1, 1], run {t['train_steps']} ULA steps (the package's
`LangevinSampler("ula")` kernel: drift step_size / 2 = {t['step_size'] / 2:g} x the energy's gradient, noise
{t['noise_scale']:g}; Du & Mordatch's step 10 and noise 0.005 on [0, 1] pixels, mapped to [-1, 1]), are clipped
to [-1, 1] and written back. Loss E(x+) - E(x-) + alpha (E(x+)^2 + E(x-)^2) with alpha = {t['energy_regularisation']:g};
Adam lr {t['learning_rate']:g}, betas ({t['beta1']:g}, {t['beta2']:g}), gradient clipped to global norm {t['clip_norm']:g}.
Final weights (no early stopping).

## Reproduce

```bash
{full['command']}
```

Seed {t['seed']}; {t['iterations']} steps, training {full['training_seconds']:.0f} s ({full['machine']}).
Energy gap E(data) - E(negatives) over training: `learning_curve.png`; train images, short-run
samples from noise and buffer entries: `samples.png`.

## Samples against the held-out images

On the zoo classifier `digits-cnn`'s features (`ppl_ebm.metrics.image_scores`), against the
held-out images: {n} images per row (noise and buffer draws: seed 0), the floor {n} train images.
FD: Frechet distance of the penultimate features; score: the Inception Score's formula on the
classifier's softmax (1 to 10); precision / recall: Kynkaanniemi et al. 2019, k = 3.
Same protocol as the VAE / latent EBM card, whose rows are copied here.

| images | FD | score | precision | recall |
|---|---|---|---|---|
{chr(10).join(rows)}

## Cost

Energy-gradient evaluations per training iteration: the Langevin steps' input gradients on the
batch of chains, plus one parameter gradient.

| model | iterations | batch | energy gradients per iteration | training s | s per iteration |
|---|---|---|---|---|---|
{chr(10).join(cost)}

## Files

`{WEIGHTS_FILE}`, `{CONFIG_FILE}` (network, settings, scores, history), the figures. Not a
generator/critic zoo model (no `config.json`, so `ppl-ebm compare` and the zoo listing skip it);
load with `ppl_ebm.zoo.pixel_build.load_pixel_ebm("models/{full['name']}")` (safetensors, no pickle).
"""
