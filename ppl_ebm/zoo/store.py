"""The model zoo: small trained checkpoints loaded by name, safely.

A model is a folder with ``config.json`` (the networks' architectures, the training config,
critic output kind, calibration), ``generator.safetensors``, ``critic.safetensors`` (the critic
as GAN training left it), optionally ``critic_calibrated.safetensors`` (the critic fine-tuned by
BCE against the frozen generator, DDLS Sec. 5.2; see :mod:`ppl_ebm.training.critic_tuning`) and
``MODEL_CARD.md``. Weights load through safetensors only: nothing is unpickled. Folders are
looked up in ``$PPL_EBM_MODELS`` (if set) and then in the repository's ``models/``.

The networks are built from ``config.json``'s ``"generator"`` and ``"critic"`` entries, each a
:class:`~ppl_ebm.nets.registry.NetworkConfig` (``{"architecture": ..., "options": {...}}``),
through the network registry; the fine-tuned critic has the critic's architecture. Loading
imports no training code, so any registered architecture (the toy MLPs, the conv nets of an
image GAN) loads by name.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors.torch import load_file, save_file

from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.targets.latent_ebm import LatentEBM

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_KINDS",
    "ZooModel",
    "latent_ebm_of",
    "list_models",
    "load_latent_ebm",
    "load_model",
    "model_dir",
    "model_kind",
    "save_calibrated_critic",
    "save_model",
    "save_weights",
]

DEFAULT_MODEL = "25gaussians-wgan-gp"
_REPO_MODELS = Path(__file__).resolve().parents[2] / "models"
CALIBRATED_CRITIC_FILE = "critic_calibrated.safetensors"
#: The config.json keys holding the networks' :class:`NetworkConfig`.
NETWORK_KEYS = ("generator", "critic")


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
    def kind(self) -> str:
        """``"toy2d"`` or ``"image"`` (:data:`MODEL_KINDS`)."""
        return model_kind(self.config)

    @property
    def dataset(self) -> str | None:
        """The training data set's name, or None when the folder records no training."""
        return (self.config.get("training") or {}).get("dataset")

    def network_config(self, role: str) -> NetworkConfig:
        """The :class:`NetworkConfig` of ``role``, ``"generator"`` or ``"critic"``."""
        return _network_config(self.config, role, self.directory)


def _search_paths() -> list[Path]:
    paths = [Path(p) for p in os.environ.get("PPL_EBM_MODELS", "").split(os.pathsep) if p]
    return [*paths, _REPO_MODELS]


#: Kinds of zoo model: ``"toy2d"`` (GANs of 2-D points; a config.json without ``"kind"``) and
#: ``"image"`` (image GANs, :mod:`ppl_ebm.zoo.image_build`).
MODEL_KINDS = ("toy2d", "image")


def model_kind(config: Mapping[str, Any]) -> str:
    """The kind of the model whose parsed config.json is ``config`` (see :data:`MODEL_KINDS`)."""
    return config.get("kind", "toy2d")


def _kind_of_folder(folder: Path) -> str | None:
    try:
        return model_kind(json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError, AttributeError):  # a broken folder: load_model names the problem
        return None


def list_models(kind: str | None = None) -> list[str]:
    """Names of the models found in the search paths; only those of ``kind`` when given."""
    if kind is not None and kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS} or None, got {kind!r}.")
    names = set()
    for root in _search_paths():
        if root.is_dir():
            for folder in root.iterdir():
                if (folder / "config.json").is_file() and (kind is None or _kind_of_folder(folder) == kind):
                    names.add(folder.name)
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


def read_config(directory: Path) -> dict[str, Any]:
    """``directory/config.json`` parsed and checked for what loading reads: a clear error naming the
    file when it is not JSON, not an object, or lacks ``name`` or a valid ``critic_output``."""
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); fix or restore it.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, got a {type(config).__name__}.")
    from ppl_ebm.targets.latent_ebm import CRITIC_OUTPUTS

    if not isinstance(config.get("name"), str):
        raise ValueError(f"{path} has no \"name\" (a string): the model's name, e.g. the folder's.")
    if config.get("critic_output") not in CRITIC_OUTPUTS:
        raise ValueError(f"{path}: \"critic_output\" must be one of {CRITIC_OUTPUTS}, got "
                         f"{config.get('critic_output')!r}; it says how the critic's output is read.")
    return config


def save_weights(module: torch.nn.Module, path: Path | str) -> None:
    """``module``'s state as a safetensors file (detached and contiguous, as safetensors requires)."""
    save_file({k: v.detach().contiguous() for k, v in module.state_dict().items()}, str(path))


def _load_weights(module: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"Missing weights file {path}.")
    try:
        state = load_file(str(path))
    except Exception as error:  # safetensors' own error names neither the file nor a remedy
        raise ValueError(
            f"{path} is not a readable safetensors file ({type(error).__name__}: {error}); it is truncated or "
            "damaged. Restore it from the model's source, or re-save the model with ppl_ebm.zoo.save_model."
        ) from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not fit the architecture in config.json: {error}") from error


def _network_config(config: dict[str, Any], role: str, directory: Path) -> NetworkConfig:
    if role not in NETWORK_KEYS:
        raise ValueError(f"role must be one of {NETWORK_KEYS}, got {role!r}.")
    if role not in config:
        raise ValueError(
            f"{directory / 'config.json'} has no {role!r} network config "
            "({\"architecture\": ..., \"options\": {...}}), which loading builds the network from. "
            "A folder written before network configs were stored: add them with "
            "ppl_ebm.zoo.build.add_network_configs(folder) (toy GANs, from the training config)."
        )
    return NetworkConfig.from_dict(config[role], argument=f"{role!r} in {directory / 'config.json'}")


def _build(config: NetworkConfig, directory: Path) -> torch.nn.Module:
    try:
        return build_network(config)
    except ValueError as error:
        raise ValueError(f"{directory / 'config.json'}: {error}") from error


def load_model(name_or_path: str | Path = DEFAULT_MODEL) -> ZooModel:
    """Load a zoo model (or a folder in the zoo's layout) with safetensors; no pickle.

    Parameters
    ----------
    name_or_path
        A zoo name (see :func:`list_models`) or a model folder.

    Returns
    -------
    ZooModel
        The networks, built from ``config.json``'s ``"generator"`` / ``"critic"`` network configs
        through :func:`~ppl_ebm.nets.registry.build_network`, with the stored weights, in eval mode.

    Raises
    ------
    FileNotFoundError
        For an unknown name or a missing weights file.
    ValueError
        For a config.json without network configs, with an unknown architecture or bad
        options, or weights that do not fit the architecture.
    """
    directory = model_dir(name_or_path)
    config = read_config(directory)
    generator_config = _network_config(config, "generator", directory)
    critic_config = _network_config(config, "critic", directory)
    generator, critic = _build(generator_config, directory), _build(critic_config, directory)
    _load_weights(generator, directory / "generator.safetensors")
    _load_weights(critic, directory / "critic.safetensors")
    calibrated_critic = None
    if (config.get("calibration") or {}).get("fine_tune") is not None:
        # Fine-tuning keeps the critic's architecture (critic_tuning copies the module) with its
        # parametrizations (spectral norm) baked into plain weights.
        from ppl_ebm.nets.parametrizations import bake_parametrizations

        calibrated_critic = bake_parametrizations(_build(critic_config, directory))
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
        # A critic calibrated against DDLS Corollary 1's extended generator G(z) + eps z' is the log
        # ratio for that generator only: its target is over (z, z').
        noise_scale = calibrated_noise_scale(model.config)
        if noise_scale > 0:
            ebm_options.setdefault("extended_noise_scale", noise_scale)
        return LatentEBM(model.generator, critic, critic_output="logit", **ebm_options)
    return LatentEBM(model.generator, critic, critic_output=model.config["critic_output"], **ebm_options)


def calibrated_noise_scale(config: dict[str, Any]) -> float:
    """eps of DDLS Corollary 1 the model's calibrated critic was fine-tuned with (0: none)."""
    fine_tune = (config.get("calibration") or {}).get("fine_tune") or {}
    return float(fine_tune.get("extended_noise_scale", 0.0))


def _as_dict(training: Any) -> dict[str, Any] | None:
    if training is None:
        return None
    if hasattr(training, "_asdict"):  # a NamedTuple config such as TrainingConfig
        return dict(training._asdict())
    if isinstance(training, Mapping):
        return dict(training)
    raise ValueError(f"training must be a NamedTuple config, a mapping or None, got {type(training).__name__}.")


def _check_fits(module: torch.nn.Module, config: NetworkConfig, role: str) -> None:
    """Build ``config`` and load ``module``'s weights into it, so a wrong config fails at save time."""
    try:
        # Building initialises weights from torch's global generator; saving must not move it.
        with torch.random.fork_rng(devices=[]):
            build_network(config).load_state_dict(module.state_dict(), strict=True)
    except (RuntimeError, ValueError) as error:
        raise ValueError(
            f"{role}_config {config.to_dict()} does not describe the {role} module: {error}. "
            f"Pass the NetworkConfig the {role} was built from."
        ) from error


def save_model(
    directory: Path,
    name: str,
    generator: torch.nn.Module,
    critic: torch.nn.Module,
    training: Any = None,
    critic_output: str = "logit",
    extra: dict[str, Any] | None = None,
    *,
    generator_config: NetworkConfig | None = None,
    critic_config: NetworkConfig | None = None,
    data_dim: int | None = None,
) -> Path:
    """Write a model folder (weights as safetensors, config.json); returns the folder.

    Parameters
    ----------
    directory
        The folder to write (created if needed).
    name
        The model's name, stored in config.json.
    generator, critic
        The torch modules.
    training
        The training config (a NamedTuple such as
        :class:`~ppl_ebm.training.gan.TrainingConfig`, or a mapping), stored under
        ``"training"``; None stores none.
    critic_output
        How the critic's output is read (see :class:`~ppl_ebm.targets.latent_ebm.LatentEBM`).
    extra
        More config.json keys (metrics, the command, ...).
    generator_config, critic_config
        The networks' :class:`NetworkConfig`, which :func:`load_model` builds them from. When
        omitted they come from ``training.network_configs(data_dim)`` if ``training`` has that
        method (:class:`~ppl_ebm.training.gan.TrainingConfig` does); otherwise they are required.
        Each is checked by building it and loading the module's weights into it.
    data_dim
        Width of the data points, stored as ``"data_dim"`` when given (default 2 when the
        network configs come from ``training``).

    Raises
    ------
    ValueError
        If a network config is missing or does not describe its module.
    """
    directory = Path(directory)
    if generator_config is None or critic_config is None:
        if not hasattr(training, "network_configs"):
            raise ValueError(
                "generator_config and critic_config are required unless training has network_configs() "
                "(a TrainingConfig); pass the NetworkConfig each network was built from."
            )
        data_dim = 2 if data_dim is None else data_dim
        from_training = training.network_configs(data_dim)
        generator_config = generator_config or from_training[0]
        critic_config = critic_config or from_training[1]
    _check_fits(generator, generator_config, "generator")
    _check_fits(critic, critic_config, "critic")
    directory.mkdir(parents=True, exist_ok=True)
    save_weights(generator, directory / "generator.safetensors")
    save_weights(critic, directory / "critic.safetensors")
    config: dict[str, Any] = {"name": name, "critic_output": critic_output}
    if data_dim is not None:
        config["data_dim"] = data_dim
    config["generator"] = generator_config.to_dict()
    config["critic"] = critic_config.to_dict()
    training_dict = _as_dict(training)
    if training_dict is not None:
        config["training"] = training_dict
    config.update(extra or {})
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory


def save_calibrated_critic(directory: Path, critic: torch.nn.Module, calibration: dict[str, Any]) -> Path:
    """Add a fine-tuned critic and its calibration record to an existing model folder."""
    directory = model_dir(directory)
    # load_model rebuilds the calibrated critic with its parametrizations baked into plain
    # weights (see there), so a critic that still carries them (spectral norm) is baked here, on
    # a copy in eval mode: the stored weights are the eval-mode function the caller calibrated.
    from ppl_ebm.nets.parametrizations import bake_parametrizations

    plain = bake_parametrizations(copy.deepcopy(critic).eval())
    save_weights(plain, directory / CALIBRATED_CRITIC_FILE)
    config = json.loads((directory / "config.json").read_text())
    config["calibration"] = calibration
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return directory
