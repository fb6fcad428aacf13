"""Data sets: the samplers of the toy 2-D sets (``toy``), the registry of names (``registry``) and the
image sets (``images``: digits offline, MNIST / Fashion-MNIST / CIFAR-10 from the user's disk)."""

from ppl_ebm.data.images import IMAGE_DATASETS, ImageSet, image_dataset_names, load_images
from ppl_ebm.data.registry import (
    DATASETS,
    DatasetSpec,
    dataset_names,
    dataset_spec,
    log_density,
    mixture_parameters,
    mode_centers,
    mode_std,
    register_dataset,
    sample_dataset,
)

__all__ = [
    "DATASETS",
    "IMAGE_DATASETS",
    "ImageSet",
    "image_dataset_names",
    "load_images",
    "DatasetSpec",
    "dataset_names",
    "dataset_spec",
    "log_density",
    "mixture_parameters",
    "mode_centers",
    "mode_std",
    "register_dataset",
    "sample_dataset",
]
