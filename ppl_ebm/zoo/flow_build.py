"""Zoo entry of a normalizing flow on a 2-D toy set (``ppl-ebm train-flow``), the flow base model of
Xiao, Yan & Amit (2020); ``ppl-ebm train-latent-ebm --base <set>-flow`` trains its latent EBM.

The folder is an ordinary toy zoo folder, as the VAE's (:mod:`ppl_ebm.zoo.latent_build`): the
generator is the flow's forward map G: z -> x (``affine_autoregressive_flow``, Pyro's transforms;
JAX evaluates it through NumPyro's twin), the critic a zero energy (E = 0), so loaded as a latent
EBM the folder *is* the flow, ``critic_output="energy"`` and ``base_model_type="flow"``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ppl_ebm import baselines
from ppl_ebm import data as datasets
from ppl_ebm.nets.registry import build_network
from ppl_ebm.targets.latent_ebm import LatentEBM
from ppl_ebm.training.flow import FlowConfig, train_flow
from ppl_ebm.zoo.latent_build import (BASE_TYPE_KEY, _EVAL_SAMPLES, _command, _energy_config, _machine, _plot_curve,
                                      _rows, _scores, card_closing, card_metrics_note, plot_point_panels)
from ppl_ebm.zoo.store import save_model

__all__ = ["train_flow_zoo_model", "write_flow_card"]


def train_flow_zoo_model(config: FlowConfig, name: str, output: Path, progress_bar: bool = True,
                         command: str | None = None, eval_samples: int = _EVAL_SAMPLES) -> Path:
    """Train a toy flow, score its samples G(z), z ~ N(0, I), write ``output/name`` and its card."""
    config = config.validate()
    draw = lambda n, seed: datasets.sample_dataset(config.dataset, n, seed)  # noqa: E731
    trained = train_flow(config, draw, progress_bar=progress_bar)
    energy_config = _energy_config(width=8, depth=1)
    with torch.random.fork_rng(devices=[]):
        zero_energy = build_network(energy_config)
    with torch.no_grad():
        zero_energy[-1].weight.zero_()
        zero_energy[-1].bias.zero_()
    ebm = LatentEBM(trained.flow, zero_energy, critic_output="energy")
    generated = baselines.generator_only(ebm, eval_samples, 0).samples
    test = torch.as_tensor(draw(eval_samples, 10_000), dtype=torch.float32)
    with torch.no_grad():
        test_log_likelihood = float(trained.flow.log_prob(test).mean())
    folder = save_model(
        Path(output) / name, name, trained.flow, zero_energy, config, "energy",
        generator_config=config.generator_config(), critic_config=energy_config, data_dim=2,
        extra={BASE_TYPE_KEY: "flow", "generator_metrics": _scores(generated, config.dataset, eval_samples),
               "test_log_likelihood": test_log_likelihood, "training_seconds": trained.seconds,
               "command": _command(command), "history": trained.history, "machine": _machine()},
    )
    _plot_curve(folder / "learning_curve.png", trained.history["iteration"], trained.history["log_likelihood"],
                "mean log-likelihood (training batches)")
    _plot_flow(folder / "samples.png", test.numpy(), generated)
    write_flow_card(folder)
    return folder


def _plot_flow(path: Path, data: np.ndarray, samples: np.ndarray) -> None:
    plot_point_panels(path, data, {"data": data, "flow G(z), z ~ N(0, I)": samples})


def _best(training: dict, history: dict) -> str:
    if not training.get("keep_best"):
        return ""
    return (f"; weights of the best held-out log-likelihood kept: step {history['best_iteration'][0]}, "
            f"{max(history['held_out_log_likelihood']):.3f} nats (2000 points of their own seed)")


def write_flow_card(folder: Path) -> None:
    """``MODEL_CARD.md`` of a flow folder (``ppl-ebm train-flow``), from its config.json."""
    folder = Path(folder)
    full = json.loads((folder / "config.json").read_text())
    training, name = full["training"], full["name"]
    text = f"""# {name}

Normalizing flow on `{training['dataset']}` (the flow base model of Xiao, Yan & Amit 2020): G: z -> x
is {training['layers']} inverse autoregressive layers, Pyro's `AffineAutoregressive` on a MADE
2-{'-'.join([str(training['width'])] * training['depth'])}-4 (ReLU; the autoregressive order alternates
between layers), p0 = N(0, I) in 2 dimensions, trained by maximum likelihood. JAX evaluates the same
weights through NumPyro's `InverseAutoregressiveTransform`. The critic is a zero energy (E = 0), so
as a latent EBM this folder is the flow itself.

## Reproduce

```bash
{full.get('command', '(not recorded)')}
```

Seed {training['seed']}; {training['iterations']} Adam steps (lr {training['learning_rate']} decayed by a cosine to 0,
gradients clipped to norm {training.get('clip_norm', '-')}), batch
{training['batch_size']}{_best(training, full['history'])}; {full['training_seconds']:.0f} s ({full.get('machine', '')}); final mean
log-likelihood of the training batches {full['history']['log_likelihood'][-1]:.3f}, of
{full['generator_metrics']['eval_samples']} fresh test points (seed 10000) {full['test_log_likelihood']:.3f}.
Learning curve: `learning_curve.png`; data and flow samples: `samples.png`.

## Flow samples G(z), z ~ N(0, I)

| metric | value |
|---|---|
{_rows(full['generator_metrics'])}

""" + card_metrics_note(full)
    text += card_closing(full, "`generator.safetensors` (the flow), `critic.safetensors` (E = 0), `config.json`, the figures")
    (folder / "MODEL_CARD.md").write_text(text)
