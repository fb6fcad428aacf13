"""The model zoo: load and save models (``store``), train and calibrate them with a card (``build``; image
GANs: ``image_build``), and the feature classifiers of the image metrics (``classifiers``)."""

from ppl_ebm.zoo.store import (
    DEFAULT_MODEL,
    MODEL_KINDS,
    ZooModel,
    latent_ebm_of,
    list_models,
    load_latent_ebm,
    load_model,
    model_dir,
    model_kind,
    save_calibrated_critic,
    save_model,
)

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
]
