"""The model zoo: load and save models (``store``), train and calibrate them with a card (``build``)."""

from ppl_ebm.zoo.store import (
    DEFAULT_MODEL,
    ZooModel,
    latent_ebm_of,
    list_models,
    load_latent_ebm,
    load_model,
    model_dir,
    save_calibrated_critic,
    save_model,
)

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
