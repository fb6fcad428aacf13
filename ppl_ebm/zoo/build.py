"""Train, calibrate, score and save one zoo model with its model card (``ppl-ebm train``,
``ppl-ebm calibrate``)."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ppl_ebm import baselines, metrics
from ppl_ebm import data as datasets
from ppl_ebm.training.calibration import calibration_report, fit_calibration
from ppl_ebm.training.critic_tuning import FineTuneConfig, fine_tune_critic
from ppl_ebm.targets.latent_ebm import LatentEBM
from ppl_ebm.training.gan import TrainingConfig, train_gan
from ppl_ebm.zoo.store import load_model, save_calibrated_critic, save_model

__all__ = [
    "add_network_configs", "calibrate_zoo_model", "calibration_card_section", "paper_emd_scores", "record_compare_in_card", "train_zoo_model",
    "write_card",
]

_EVAL_SAMPLES = 5000


def train_zoo_model(config: TrainingConfig, name: str, output: Path, progress_bar: bool = True,
                    command: str | None = None, eval_samples: int = _EVAL_SAMPLES,
                    fine_tune: FineTuneConfig | None = FineTuneConfig(), init_from: str | Path | None = None) -> Path:
    """Train ``config``, measure the generator alone, write ``output/name`` (weights,
    ``config.json``, ``MODEL_CARD.md``), then calibrate it (:func:`calibrate_zoo_model`).

    The generator-only metrics use ``eval_samples`` samples (the protocol of ``ppl-ebm compare``).
    ``fine_tune=None`` skips the critic's fine-tuning (the logistic head is still fitted).
    ``init_from`` (a zoo name or folder) continues that model's training for
    ``config.iterations`` more generator iterations; the card records it."""
    config = config.validate()
    draw = lambda n, seed: datasets.sample_dataset(config.dataset, n, seed)  # noqa: E731
    initial, lineage = None, {}
    if init_from is not None:
        start = load_model(init_from)
        if start.dataset != config.dataset:
            raise ValueError(f"init_from model {start.name!r} was trained on {start.dataset!r}, not {config.dataset!r}.")
        initial = (start.generator, start.critic)
        previous = start.config.get("total_iterations", start.config["training"]["iterations"])
        lineage = {"init_from": {"name": start.name, "command": start.config.get("command"), "iterations": previous},
                   "total_iterations": previous + config.iterations}
    trained = train_gan(config, draw, progress_bar=progress_bar, initial=initial)
    # NS-GAN discriminators give logits (DDLS Thm. 1); a WGAN critic is used raw (DDLS 3.4).
    critic_output = "logit"
    ebm = LatentEBM(trained.generator, trained.critic, critic_output=critic_output)

    # Generator-only metrics at the same protocol as `ppl-ebm compare` (seed 0).
    data = draw(eval_samples, 10_000)
    generated = baselines.generator_only(ebm, eval_samples, 0).samples
    floor = draw(eval_samples, 20_000)
    scores = {"emd": metrics.emd(generated, data), "data_floor_emd": metrics.emd(floor, data),
              "eval_samples": eval_samples, **paper_emd_scores(generated, floor, draw)}
    if datasets.dataset_spec(config.dataset).has_modes:
        modes = metrics.mode_metrics(generated, datasets.mode_centers(config.dataset), datasets.mode_std(config.dataset))
        scores.update(modes_recovered=int(modes["modes_recovered"]),
                      high_quality_fraction=float(modes["high_quality_fraction"]),
                      high_quality_std=float(modes["high_quality_std"]))
    command = command or "ppl-ebm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    generator_config, critic_config = config.network_configs(data_dim=2)
    folder = save_model(
        Path(output) / name, name, trained.generator, trained.critic, config, critic_output,
        generator_config=generator_config, critic_config=critic_config, data_dim=2,
        extra={"generator_metrics": scores, "training_seconds": trained.seconds, "command": command,
               "final_losses": {"critic": trained.history["critic_loss"][-1],
                                "generator": trained.history["generator_loss"][-1]},
               "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", **lineage},
    )
    write_card(folder)
    return calibrate_zoo_model(folder, fine_tune, progress_bar=progress_bar, eval_samples=eval_samples,
                               command=command)


def calibrate_zoo_model(model: str | Path, fine_tune: FineTuneConfig | None = FineTuneConfig(),
                        progress_bar: bool = True, eval_samples: int = _EVAL_SAMPLES,
                        command: str | None = None, root: str | Path | None = None) -> Path:
    """Calibrate a zoo model in place (DDLS Sec. 5.2): fine-tune its critic by BCE against the
    frozen generator (:func:`~ppl_ebm.training.critic_tuning.fine_tune_critic`; skipped when
    ``fine_tune`` is None), fit the logistic head on top on one held-out split, and report
    the MH-GAN Z statistic on another, before (the GAN's critic read as a logit), with the head
    alone on the GAN's critic, and after. Writes ``critic_calibrated.safetensors``, the
    ``calibration`` entry of ``config.json`` and the card.

    Toy models draw fresh data from their sampler (``eval_samples`` decides the held-out sizes).
    Image models (``root``: the user's data folder, for sets other than digits) fine-tune on the
    train split (the GAN's own training data) and fit and test the head on the two halves of the
    held-out split, which neither the GAN nor the fine-tuning saw."""
    loaded = load_model(model)
    latent_dim, seed = loaded.config["training"]["latent_dim"], loaded.config["training"]["seed"]
    # DDLS Corollary 1: with eps > 0 the critic is calibrated against G(z) + eps z', and the head too.
    noise_scale = fine_tune.extended_noise_scale if fine_tune is not None else 0.0
    tuning_real, (fit_real, fit_fake), (test_real, test_fake) = _calibration_sets(loaded, eval_samples, seed, root,
                                                                                  noise_scale)
    head_only = fit_calibration(loaded.critic, fit_real, fit_fake, critic_output=loaded.config["critic_output"])
    head_only_report = calibration_report(head_only, test_real, test_fake)
    calibration: dict[str, Any] = {}
    critic = loaded.critic
    if fine_tune is not None:
        tuned = fine_tune_critic(loaded.generator, loaded.critic, tuning_real, latent_dim, fine_tune, progress_bar)
        critic = tuned.critic
        calibration["fine_tune"] = {**tuned.config._asdict(), "seconds": tuned.seconds,
                                    "final_bce": tuned.history["bce"][-1]}
    calibrated = fit_calibration(critic, fit_real, fit_fake, critic_output="logit")
    report = calibration_report(calibrated, test_real, test_fake, raw_logit_fn=head_only.raw_logit)
    calibration.update(
        weight=float(calibrated.weight.detach()), bias=float(calibrated.bias.detach()),
        head_only={"weight": float(head_only.weight.detach()), "bias": float(head_only.bias.detach()),
                   "after_z": head_only_report["after_z"], "after_bce": head_only_report["after_bce"]},
        **{k: float(v) for k, v in report.items() if isinstance(v, (int, float)) and k not in ("weight", "bias")},
        n_fit_real=len(fit_real), n_fit_fake=len(fit_fake),
        command=command or "ppl-ebm " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    )
    if fine_tune is None:
        # No fine-tuned weights: the head sits on the GAN's own critic.
        folder = loaded.directory
        config = json.loads((folder / "config.json").read_text())
        config["calibration"] = calibration
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    else:
        folder = save_calibrated_critic(loaded.directory, critic, calibration)
    if loaded.kind == "image":
        from ppl_ebm.zoo.image_build import write_image_card

        write_image_card(folder)
    else:
        write_card(folder)
    return folder


def _calibration_sets(loaded, eval_samples: int, seed: int, root: str | Path | None, noise_scale: float = 0.0):
    """The fine-tuning's real data, then (real, fake) to fit the head and (real, fake) to test it;
    the fakes from the extended generator G(z) + eps z' when ``noise_scale`` (eps) > 0."""
    if loaded.kind == "image":
        if noise_scale > 0:
            raise ValueError("extended_noise_scale (DDLS Corollary 1) is supported for toy models only; "
                             f"{loaded.name!r} is an image model: leave it at 0.")
        from ppl_ebm.data.images import load_images
        from ppl_ebm.zoo.image_build import generate_images

        latent_dim = loaded.config["training"]["latent_dim"]
        train = load_images(loaded.dataset, "train", root).images
        held_out = load_images(loaded.dataset, "held_out", root).images
        held_out = held_out[np.random.default_rng(seed).permutation(len(held_out))]
        half = len(held_out) // 2
        # More generated than real images: they are free, and the fit weights the classes equally.
        n_fake = min(len(train), 10_000)
        fit_fake = generate_images(loaded.generator, latent_dim, n_fake, 30_000 + seed)
        test_fake = generate_images(loaded.generator, latent_dim, n_fake, 40_000 + seed)
        return train, (held_out[:half], fit_fake), (held_out[half:], test_fake)
    if root is not None:
        raise ValueError(f"root applies to image models; {loaded.name!r} draws its toy data set {loaded.dataset!r}.")
    draw = lambda n, s: datasets.sample_dataset(loaded.dataset, n, s)  # noqa: E731
    ebm = LatentEBM(loaded.generator, loaded.critic, critic_output=loaded.config["critic_output"],
                    extended_noise_scale=noise_scale if noise_scale > 0 else None)
    held_out = 2 * eval_samples
    fit_fake = baselines.generator_only(ebm, held_out, 30_000 + seed).samples
    test_fake = baselines.generator_only(ebm, held_out, 40_000 + seed).samples
    return draw, (draw(held_out, 30_000 + seed), fit_fake), (draw(held_out, 40_000 + seed), test_fake)


def add_network_configs(model: str | Path) -> Path:
    """Add the ``"generator"`` / ``"critic"`` network configs to a toy model folder written
    before they were stored, from its training config; every other key and the weights stay.

    The configs are checked by loading the folder afterwards (the weights must fit); on a
    mismatch the folder is left as it was.

    Parameters
    ----------
    model
        A model folder (or zoo name) whose config.json has a ``"training"`` entry.

    Returns
    -------
    Path
        The folder.
    """
    from ppl_ebm.zoo.store import NETWORK_KEYS, model_dir

    folder = model_dir(model)
    path = folder / "config.json"
    text = path.read_text()
    config = json.loads(text)
    if all(key in config for key in NETWORK_KEYS):
        return folder
    if "training" not in config:
        raise ValueError(f"{path} has no 'training' entry to derive the network configs from; add them by hand.")
    generator_config, critic_config = TrainingConfig(**config["training"]).network_configs(config.get("data_dim", 2))
    # Insert after "data_dim" (where save_model writes them), keeping the other keys' order.
    updated: dict[str, Any] = {}
    for key, value in config.items():
        updated[key] = value
        if key == "data_dim":
            updated.update(generator=generator_config.to_dict(), critic=critic_config.to_dict())
    updated.setdefault("generator", generator_config.to_dict())
    updated.setdefault("critic", critic_config.to_dict())
    path.write_text(json.dumps(updated, indent=2) + "\n")
    try:
        load_model(folder)
    except Exception:
        path.write_text(text)
        raise
    return folder


def _table(rows: dict[str, Any]) -> str:
    return "\n".join(
        f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |" for key, value in rows.items()
    )


def paper_emd_scores(generated: np.ndarray, floor: np.ndarray, draw, points: int = metrics.PAPER_POINTS,
                     repeats: int = metrics.PAPER_REPEATS) -> dict[str, float]:
    """The papers' EMD (W2^2, POT's default cost) of the generator and of a fresh data sample (the
    floor): ``points`` samples against ``points`` fresh data points, mean and std over ``repeats``
    (:func:`ppl_ebm.metrics.w2sq_repeated`); fewer points when fewer samples were drawn."""
    points = min(points, len(generated), len(floor))
    scores = {}
    for prefix, samples in (("", generated), ("data_floor_", floor)):
        result = metrics.w2sq_repeated(samples, draw, num_points=points, repeats=repeats, seed=0)
        scores[f"{prefix}w2sq_{points}_mean"] = result.mean
        scores[f"{prefix}w2sq_{points}_std"] = result.std
    return scores


def calibration_card_section(full: dict[str, Any], default_n: int) -> str:
    """The "Calibration (DDLS 5.2)" section of a model card from its parsed config.json ("" when
    the model is not calibrated); ``default_n``: held-out size of records that do not state it."""
    calibration = full.get("calibration")
    if not calibration:
        return ""
    tune = calibration.get("fine_tune")
    text = "\n## Calibration (DDLS 5.2)\n\n"
    if calibration.get("command"):
        text += f"```bash\n{calibration['command']}\n```\n\n"
    if tune:
        text += (
            f"The critic fine-tuned by BCE against the frozen generator (`critic_calibrated.safetensors`): "
            f"{tune['steps']} Adam steps, lr {tune['learning_rate']}"
            f"{' decayed to 0 by a cosine' if tune.get('learning_rate_schedule') == 'cosine' else ''}, "
            f"batch {tune['batch_size']} real + "
            f"{tune['batch_size']} generated, seed {tune['seed']}, {tune['seconds']:.0f} s, final BCE "
            f"{tune['final_bce']:.4f} (chance 1.3863). "
        )
        scale = tune.get("proposal_scale", 1.0)
        if scale != 1.0:
            text += (f"The generated batches' latents were drawn from N(0, {scale:g}^2 I) and each term weighted "
                     f"by p0(z) / q(z), so the minimiser is the same log ratio but the critic also met points "
                     f"G(z) far from the data and learned a low logit there (the BCE above is the weighted one). ")
        noise_scale = tune.get("extended_noise_scale", 0.0)
        if noise_scale > 0:
            text += (f"The generated points were DDLS Corollary 1's extended generator G(z) + {noise_scale:g} z', "
                     f"z' ~ N(0, I), here and for the head below, so the calibrated critic is the log ratio for "
                     f"that generator and its DDLS target is over (z, z') (`load_latent_ebm(calibrated=True)` "
                     f"builds it so). ")
        text += "Then a logistic head "
    else:
        text += "A logistic head "
    n_real = int(calibration.get("n_fit_real", calibration.get("n_real", default_n)))
    n_fake = int(calibration.get("n_fit_fake", n_real))
    head = calibration.get("head_only")
    # Only a fine-tuned critic has a head-only fit to compare with (the head alone is "calibrated").
    head_row = ("" if head is None else
                f"| GAN critic + logistic head | {head['after_z']:.2f} | {head['after_bce']:.4f} |\n")
    text += f"""`a d(x) + b` fitted by BCE on {n_real} held-out real and {n_fake} generated samples:
a = {calibration['weight']:.4f}, b = {calibration['bias']:.4f}. MH-GAN Z statistic and BCE on another held-out split
({int(calibration.get('n_real', n_real))} real, {int(calibration.get('n_fake', n_fake))} generated):

| critic | Z | BCE |
|---|---|---|
| GAN critic read as a logit | {calibration.get('before_z', float('nan')):.2f} | {calibration.get('before_bce', float('nan')):.4f} |
{head_row}| {'fine-tuned critic + logistic head' if tune else 'calibrated'} | {calibration.get('after_z', float('nan')):.2f} | {calibration.get('after_bce', float('nan')):.4f} |
"""
    return text


def write_card(folder: Path) -> None:
    """Write ``MODEL_CARD.md`` from the folder's ``config.json`` (so that calibrating again, or
    recording results, rewrites it whole)."""
    folder = Path(folder)
    full = json.loads((folder / "config.json").read_text())
    from ppl_ebm.zoo.latent_build import BASE_TYPE_KEY, write_latent_card

    if BASE_TYPE_KEY in full:  # a VAE or latent EBM (ppl-ebm train-vae / train-latent-ebm)
        return write_latent_card(folder)
    name, config = full["name"], TrainingConfig(**full["training"])
    losses = full.get("final_losses")
    scores = full.get("generator_metrics", {})
    eval_samples = scores.get("eval_samples", _EVAL_SAMPLES)
    text = f"""# {name}

Toy {config.loss.upper()} on `{config.dataset}` ({'DDLS spec' if config.dataset == '25gaussians' else 'see ppl_ebm.data.toy'}),
DOT/DDLS networks: generator {config.latent_dim}-{'-'.join([str(config.generator_width)] * config.depth)}-2,
critic 2-{'-'.join([str(config.critic_width)] * config.depth)}-1, {config.activation}, prior N(0, I).

## Reproduce

```bash
{full.get('command', '(not recorded)')}
```

Seed {config.seed}; {config.iterations} generator iterations, {config.critic_steps if config.loss == 'wgan-gp' else 1}
critic step(s) each, batch {config.batch_size}, Adam lr {config.learning_rate} betas
({config.beta1}, {config.beta2}){', gradient penalty ' + str(config.gradient_penalty) if config.loss == 'wgan-gp' else ''}.
Trained in JAX on the translated torch networks in {full.get('training_seconds', float('nan')):.0f} s
({full.get('machine', 'this machine')}).
"""
    if full.get("init_from"):
        start = full["init_from"]
        text += (f"Continued from `{start['name']}` ({start['iterations']} iterations, made by `{start['command']}`): "
                 f"{full['total_iterations']} generator iterations in all.\n")
    if losses:
        text += f"Final losses: critic {losses['critic']:.4f}, generator {losses['generator']:.4f}.\n"
    text += f"""
## Generator-only metrics

{eval_samples} generator samples (seed 0) against {eval_samples} fresh data points (seed 10000);
`emd`: ours, the exact W1 (Euclidean cost) on all of them. `w2sq_<n>_mean` / `_std`: the EMD as
DOT, DDLS Table 2 and ex2mcmc compute it (`ot.emd2` on `ot.dist`, POT's default squared Euclidean
cost, W2^2), n generator samples against n fresh data points, mean and std over 10 repeats, each its
own data draw. `data_floor_*` score a second fresh data sample the same way: the floor at this size.

| metric | value |
|---|---|
{_table({k: v for k, v in scores.items() if k != 'eval_samples'})}
"""
    calibration = full.get("calibration")
    text += calibration_card_section(full, 2 * eval_samples)
    results = full.get("compare_results")
    if results:
        text += "\n" + results.rstrip() + "\n"
    text += f"""
## Files

`generator.safetensors`, `critic.safetensors`{', `critic_calibrated.safetensors`' if calibration and calibration.get('fine_tune') else ''}
(load with `ppl_ebm.zoo.load_model("{name}")`; safetensors, no pickle), `config.json` (architecture,
training config, calibration, these metrics).
"""
    (folder / "MODEL_CARD.md").write_text(text)


def record_compare_in_card(folder: Path, metrics: dict[str, Any], command: str) -> None:
    """Store a ``ppl-ebm compare`` result (its ``metrics.json``) in the model's config and card,
    so that the card carries the measured DDLS figures beside the generator-only ones."""
    from ppl_ebm.studies.compare_report import format_compare_table, format_paired_ratios

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    sweep = metrics.get("sweep") or {}
    text = (
        "## DDLS and baselines (`ppl-ebm compare`)\n\n"
        f"```bash\n{command}\n```\n\n"
        f"{metrics['num_samples']} samples per method against {metrics['num_samples']} fresh data points, seed "
        f"{metrics['seed']}; {metrics['emd']}.\n\n{format_compare_table(metrics['methods'], markdown=True)}\n"
    )
    paired = format_paired_ratios(metrics["methods"], markdown=True)
    if paired:
        text += f"\n{paired}\n"
    if sweep:
        text += (
            f"\nULA step chosen on validation data: {sweep['best_step_size']:g} (sweep "
            + ", ".join(f"{s:g}: {e:.4f}" for s, e in zip(sweep["step_sizes"], sweep["emd"]))
            + f"; MALA adapted step {sweep['mala_adapted_step_size']:.3g}: {sweep['mala_adapted_emd']:.4f}, "
            f"{sweep['mala_over_best']:.2f}x the best fixed step).\n"
        )
    config["compare_results"] = text
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_card(folder)
