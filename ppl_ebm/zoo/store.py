"""The model zoo: small trained checkpoints loaded by name, safely.

A model is a folder with ``config.json`` (architecture, training config, critic output kind,
calibration), ``generator.safetensors``, ``critic.safetensors`` (the critic as GAN training left
it), optionally ``critic_calibrated.safetensors`` (the critic fine-tuned by BCE against the frozen
generator, DDLS Sec. 5.2; see :mod:`ppl_ebm.training.critic_tuning`) and ``MODEL_CARD.md``.
Weights load through safetensors only: nothing is unpickled. Folders are looked up in
``$PPL_EBM_MODELS`` (if set) and then in the repository's ``models/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file

from ppl_ebm.targets.latent_ebm import LatentEBM
from ppl_ebm.training.gan import TrainingConfig, build_networks

__all__ = [
    "DEFAULT_MODEL",
    "ZooModel",
    "latent_ebm_of",
    "list_models",
    "load_latent_ebm",
    "load_model",
    "model_dir",
    "save_calibrated_critic",
    "save_model",
]

DEFAULT_MODEL = "25gaussians-wgan-gp"
_REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
CALIBRATED_CRITIC_FILE = "critic_calibrated.safetensors"


class ZooModel(NamedTuple):
    """A loaded model: networks in eval mode, the parsed config and its folder.

    ``calibrated_critic`` is the fine-tuned critic (None when the folder has none); the
    logistic head fitted on top of it is ``config["calibration"]``."""

    generator: torch.nn.Module
    critic: torch.nn.Module
    config: dict[str, Any]
    directory: Path
    calibrated_critic: torch.nn.Module | None = None

    @property
    def name(self) -> str:
        return self.config["name"]

    @property
    def dataset(self) -> str:
        return self.config["training"]["dataset"]


def _search_paths() -> list[Path]:
    paths = [Path(p) for p in os.environ.get("PPL_EBM_MODELS", "").split(os.pathsep) if p]
    return [*paths, _REPO_MODELS]


def list_models() -> list[str]:
    """Names of the models found in the search paths."""
    names = set()
    for root in _search_paths():
        if root.is_dir():
            names.update(p.name for p in root.iterdir() if (p / "config.json").is_file())
    return sorted(names)


def model_dir(name_or_path: str | Path) -> Path:
    """The folder of a zoo name or an explicit folder path; a clear error if neither exists."""
    candidate = Path(name_or_path)
    if (candidate / "config.json").is_file():
        return candidate
    for root in _search_paths():
        if (root / str(name_or_path) / "config.json").is_file():
            return root / str(name_or_path)
    raise FileNotFoundError(
        f"No model {str(name_or_path)!r}: not a folder with config.json and not a zoo name. "
        f"Zoo models: {', '.join(list_models()) or '(none found)'}."
    )


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"Missing weights file {path}.")
    state = load_file(str(path))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit the architecture in config.json: {error}") from error


def load_model(name_or_path: str | Path = DEFAULT_MODEL) -> ZooModel:
    """Load a zoo model (or a folder in the zoo's layout) with safetensors; no pickle."""
    directory = model_dir(name_or_path)
    config = json.loads((directory / "config.json").read_text())
    training = TrainingConfig(**config["training"]).validate()
    generator, critic = build_networks(training, data_dim=config.get("data_dim", 2))
    _load_weights(generator, directory / "generator.safetensors")
    _load_weights(critic, directory / "critic.safetensors")
    calibrated_critic = None
    if (config.get("calibration") or {}).get("fine_tune") is not None:
        _, calibrated_critic = build_networks(training, data_dim=config.get("data_dim", 2))
        _load_weights(calibrated_critic, directory / CALIBRATED_CRITIC_FILE)
        calibrated_critic.eval()
    return ZooModel(generator.eval(), critic.eval(), config, directory, calibrated_critic)


def load_latent_ebm(
    name_or_path: str | Path = DEFAULT_MODEL, calibrated: bool = False, **ebm_options: Any
) -> LatentEBM:
    """The zoo model as a :class:`LatentEBM`; ``calibrated=True`` uses the calibrated critic
    (DDLS Sec. 5.2: the fine-tuned critic when the model has one, with the logistic head
    fitted on held-out data on top)."""
    model = load_model(name_or_path)
    return latent_ebm_of(model, calibrated, **ebm_options)


def latent_ebm_of(model: ZooModel, calibrated: bool = False, **ebm_options: Any) -> LatentEBM:
    critic = model.critic
    if calibrated:
        from ppl_ebm.training.calibration import CalibratedCritic

        head = model.config.get("calibration")
        if head is None:
            raise ValueError(f"Model {model.name!r} has no calibration head in its config.json.")
        if model.calibrated_critic is not None:  # fine-tuned by BCE: its output is a logit
            critic = CalibratedCritic(model.calibrated_critic, head["weight"], head["bias"], "logit")
        else:
            critic = CalibratedCritic(critic, head["weight"], head["bias"], model.config["critic_output"])
        return LatentEBM(model.generator, critic, critic_output="logit", **ebm_options)
    return LatentEBM(model.generator, critic, critic_output=model.config["critic_output"], **ebm_options)


def save_model(
    directory: Path,
    name: str,
    generator: torch.nn.Module,
    critic: torch.nn.Module,
    training: TrainingConfig,
    critic_output: str,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a model folder (weights as safetensors, config.json); returns the folder."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, str(directory / "generator.safetensors"))
    save_file({k: v.contiguous() for k, v in critic.state_dict().items()}, str(directory / "critic.safetensors"))
    config = {
        "name": name,
        "critic_output": critic_output,
        "data_dim": 2,
        "training": training._asdict(),
        **(extra or {}),
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def save_calibrated_critic(directory: Path, critic: torch.nn.Module, calibration: dict[str, Any]) -> Path:
    """Add a fine-tuned critic and its calibration record to an existing model folder."""
    directory = model_dir(directory)
    save_file({k: v.contiguous() for k, v in critic.state_dict().items()}, str(directory / CALIBRATED_CRITIC_FILE))
    config = json.loads((directory / "config.json").read_text())
    config["calibration"] = calibration
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
