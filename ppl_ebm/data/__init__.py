"""Data sets: the samplers of the toy 2-D sets (``toy``) and the registry of names (``registry``)."""

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
