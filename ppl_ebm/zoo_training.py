"""Train, calibrate, score and save one zoo model with its model card (``ppl-ebm train``)."""

from __future__ import annotations

import platform
import shlex
import sys
from pathlib import Path

import torch

from ppl_ebm import baselines, datasets, metrics
from ppl_ebm.calibration import calibration_report, fit_calibration
from ppl_ebm.latent_ebm import LatentEBM
from ppl_ebm.training import TrainingConfig, train_gan
from ppl_ebm.zoo import save_model

__all__ = ["train_zoo_model"]

_EVAL_SAMPLES = 5000


def train_zoo_model(config: TrainingConfig, name: str, output: Path, progress_bar: bool = True,
                    command: str | None = None, eval_samples: int = _EVAL_SAMPLES) -> Path:
    """Train ``config``, fit the calibration head on held-out data, measure the generator
    alone, and write ``output/name`` with weights, ``config.json`` and ``MODEL_CARD.md``.

    Calibration uses ``2 * eval_samples`` held-out real and generated samples per split; the
    generator-only metrics use ``eval_samples`` (the protocol of ``ppl-ebm compare``)."""
    config = config.validate()
    draw = lambda n, seed: datasets.sample_dataset(config.dataset, n, seed)  # noqa: E731
    trained = train_gan(config, draw, progress_bar=progress_bar)
    # NS-GAN discriminators give logits (DDLS Thm. 1); a WGAN critic is used raw (DDLS 3.4).
    critic_output = "logit"
    ebm = LatentEBM(trained.generator, trained.critic, critic_output=critic_output)

    # Calibration (DDLS 5.2): fit on one held-out split, report Z on another (MH-GAN protocol).
    held_out = 2 * eval_samples
    fit_real, test_real = draw(held_out, 30_000 + config.seed), draw(held_out, 40_000 + config.seed)
    fit_fake = baselines.generator_only(ebm, held_out, 30_000 + config.seed).samples
    test_fake = baselines.generator_only(ebm, held_out, 40_000 + config.seed).samples
    calibrated = fit_calibration(trained.critic, fit_real, fit_fake, critic_output=critic_output)
    report = calibration_report(calibrated, test_real, test_fake)

    # Generator-only metrics at the same protocol as `ppl-ebm compare` (seed 0).
    data = draw(eval_samples, 10_000)
    generated = baselines.generator_only(ebm, eval_samples, 0).samples
    scores = {"emd": metrics.emd(generated, data), "data_floor_emd": metrics.emd(draw(eval_samples, 20_000), data),
              "eval_samples": eval_samples}
    if config.dataset in datasets.MODE_DATASETS:
        modes = metrics.mode_metrics(generated, datasets.mode_centers(config.dataset), datasets.mode_std(config.dataset))
        scores.update(modes_recovered=int(modes["modes_recovered"]),
                      high_quality_fraction=float(modes["high_quality_fraction"]),
                      high_quality_std=float(modes["high_quality_std"]))
    calibration = {"weight": float(calibrated.weight.detach()), "bias": float(calibrated.bias.detach()),
                   **{k: float(v) for k, v in report.items() if isinstance(v, (int, float))}}
    command = command or "ppl-ebm " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    folder = save_model(
        Path(output) / name, name, trained.generator, trained.critic, config, critic_output,
        extra={"calibration": calibration, "generator_metrics": scores,
               "training_seconds": trained.seconds, "command": command},
    )
    _write_card(folder, name, config, trained, scores, calibration, command, eval_samples)
    return folder


def _write_card(folder, name, config, trained, scores, calibration, command, eval_samples) -> None:
    history = trained.history
    metric_lines = "\n".join(
        f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |"
        for key, value in scores.items()
    )
    text = f"""# {name}

Toy {config.loss.upper()} on `{config.dataset}` ({'DDLS spec' if config.dataset == '25gaussians' else 'see ppl_ebm.datasets'}),
DOT/DDLS networks: generator {config.latent_dim}-{'-'.join([str(config.generator_width)] * config.depth)}-2,
critic 2-{'-'.join([str(config.critic_width)] * config.depth)}-1, {config.activation}, prior N(0, I).

## Reproduce

```bash
{command}
```

Seed {config.seed}; {config.iterations} generator iterations, {config.critic_steps if config.loss == 'wgan-gp' else 1}
critic step(s) each, batch {config.batch_size}, Adam lr {config.learning_rate} betas
({config.beta1}, {config.beta2}){', gradient penalty ' + str(config.gradient_penalty) if config.loss == 'wgan-gp' else ''}.
Trained in JAX on the translated torch networks in {trained.seconds:.0f} s
({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads on this machine).
Final losses: critic {history['critic_loss'][-1]:.4f}, generator {history['generator_loss'][-1]:.4f}.

## Generator-only metrics

{eval_samples} generator samples (seed 0) against {eval_samples} fresh data points (seed 10000);
exact EMD (W1, Euclidean cost). `data_floor_emd` scores a second fresh data sample: the floor at this size.

| metric | value |
|---|---|
{metric_lines}

## Calibration (DDLS 5.2)

Logistic head `a d(x) + b` on the frozen critic, fitted by BCE on {2 * eval_samples} held-out real and
{2 * eval_samples} generated samples; Z statistic (MH-GAN) on another held-out {2 * eval_samples} + {2 * eval_samples}:
a = {calibration['weight']:.4f}, b = {calibration['bias']:.4f},
Z before {calibration.get('before_z', float('nan')):.2f} -> after {calibration.get('after_z', float('nan')):.2f}.

## Files

`generator.safetensors`, `critic.safetensors` (load with `ppl_ebm.zoo.load_model("{name}")`; no pickle),
`config.json` (architecture, training config, calibration head, these metrics).
"""
    (folder / "MODEL_CARD.md").write_text(text)
