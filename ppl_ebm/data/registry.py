"""Data sets by name: the one place that lists them.

Each name maps to a :class:`DatasetSpec`: its sampler ``(n, seed) -> float32 array``, its
kind (``"toy2d"``: points in the plane), the sample-quality metrics of :mod:`ppl_ebm.metrics`
that apply to it, and, for Gaussian mixtures, the mixture's parameters (from which the mode
centres and the mode std come). :func:`sample_dataset`, ``ppl-ebm train --dataset`` and the
zoo read this registry; a new data set is one :func:`register_dataset` call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logsumexp

from ppl_ebm.data import toy

__all__ = [
    "DATASETS",
    "KINDS",
    "METRICS",
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

#: Kinds of data set: ``"toy2d"`` (points in the plane, ``(n, 2)``).
KINDS: tuple[str, ...] = ("toy2d",)
#: Metric names (functions of :mod:`ppl_ebm.metrics`) a spec may list as applying to it.
METRICS: tuple[str, ...] = ("emd", "wasserstein2", "sliced_wasserstein", "mode_metrics")
#: The distances that apply to any set of points.
_DISTANCES = ("emd", "wasserstein2", "sliced_wasserstein")


@dataclass(frozen=True)
class DatasetSpec:
    """What the package knows about one data set.

    Parameters
    ----------
    name
        The registry key.
    sampler
        ``sampler(n, seed=...)`` returns ``n`` points, ``float32``, deterministic in ``seed``.
    kind
        One of :data:`KINDS`.
    metrics
        Names from :data:`METRICS` that apply; ``"mode_metrics"`` (DDLS Table 1's modes
        recovered and high-quality fraction) only for sets with well-separated modes.
    mixture
        For Gaussian-mixture sets, a function returning the weights ``(k,)``, means ``(k, 2)``
        and per-coordinate variances ``(k, 2)``; None otherwise.
    description
        One line for listings.
    """

    name: str
    sampler: Callable[..., np.ndarray]
    kind: str
    metrics: tuple[str, ...]
    mixture: Callable[[], toy.Mixture] | None = None
    description: str = ""

    @property
    def has_modes(self) -> bool:
        """Whether DDLS's mode metrics apply (and :meth:`mode_centers` is defined)."""
        return "mode_metrics" in self.metrics

    def mode_centers(self) -> np.ndarray:
        """The mode centres ``(k, 2)``, float64; raises ValueError for sets without modes."""
        self._check_modes()
        return self.mixture()[1].copy()

    def mode_std(self) -> float:
        """The pooled per-coordinate std of the modes, ``sqrt(mean of the variances)``."""
        self._check_modes()
        return float(np.sqrt(np.mean(self.mixture()[2])))

    def _check_modes(self) -> None:
        if not self.has_modes:
            raise ValueError(
                f"data set {self.name!r} has no discrete, well-separated modes (mode-based metrics are "
                f"defined for {dataset_names(with_modes=True)}); use a distance such as the EMD instead"
            )


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    sampler: Callable[..., np.ndarray],
    *,
    kind: str = "toy2d",
    metrics: tuple[str, ...] = _DISTANCES,
    mixture: Callable[[], toy.Mixture] | None = None,
    description: str = "",
) -> DatasetSpec:
    """Register a data set under ``name``; see :class:`DatasetSpec` for the arguments.

    Returns
    -------
    DatasetSpec
        The registered entry.

    Raises
    ------
    ValueError
        If ``name`` is taken or empty, ``kind`` or a metric is unknown, or ``"mode_metrics"``
        is listed without a ``mixture`` to take the modes from.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")
    if name in _REGISTRY:
        raise ValueError(f"data set name {name!r} is already registered; register yours under a new name.")
    if not callable(sampler):
        raise ValueError(f"sampler must be callable as sampler(n, seed=...), got {sampler!r}.")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    metrics = tuple(metrics)
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"metrics must be names from {METRICS}, got unknown {unknown}.")
    if "mode_metrics" in metrics and mixture is None:
        raise ValueError("metrics lists 'mode_metrics' but mixture is None; pass the mixture the modes come from.")
    spec = DatasetSpec(name, sampler, kind, metrics, mixture, description)
    _REGISTRY[name] = spec
    return spec


def dataset_names(kind: str | None = None, with_modes: bool | None = None) -> list[str]:
    """Registered names, sorted; optionally only those of one ``kind`` and/or with(out) modes."""
    return sorted(
        name for name, spec in _REGISTRY.items()
        if (kind is None or spec.kind == kind) and (with_modes is None or spec.has_modes == with_modes)
    )


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of ``name``.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the valid names.
    """
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown data set {name!r}; valid names: {dataset_names()}. Pass one of them, or register "
            "yours with ppl_ebm.data.registry.register_dataset."
        ) from None


def sample_dataset(name: str, n: int, seed: int = 0) -> np.ndarray:
    """Sample ``n`` points of the registered data set ``name``.

    Parameters
    ----------
    name : str
        One of :func:`dataset_names`.
    n : int
        Number of points (>= 1).
    seed : int, default 0
        Seed.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(n, 2)`` for the ``"toy2d"`` sets.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones) or ``n < 1``.
    """
    spec = dataset_spec(name)
    return spec.sampler(toy.check_sample_count(n), seed=seed)


def mode_centers(name: str) -> np.ndarray:
    """The mode centres of a mixture data set, for DDLS Table 1's mode metrics.

    Parameters
    ----------
    name : str
        One of ``dataset_names(with_modes=True)``.

    Returns
    -------
    numpy.ndarray
        ``float64`` array ``(k, 2)`` (for ``"biased2gaussians"`` the heavy mode first).

    Raises
    ------
    ValueError
        For sets without discrete modes (the Swiss Roll; the spirals, whose 200 components
        overlap) and for unknown names.
    """
    return dataset_spec(name).mode_centers()


def mode_std(name: str) -> float:
    """The per-coordinate standard deviation of the modes of a mixture data set.

    Exact for the isotropic sets (0.1 for ``"25gaussians"``, ``0.05/2.828`` for
    ``"25gaussians_gulrajani"``, ``sqrt(5)`` for ``"biased2gaussians"``). The components of
    ``"4gaussians"`` are anisotropic and differ; for it this is the pooled value
    ``sqrt(mean of the 8 per-coordinate variances)`` (about 2.45), which is what
    :func:`ppl_ebm.metrics.sample_quality.mode_metrics`'s ``high_quality_std`` returns for exact
    samples; use :func:`mixture_parameters` for the exact covariances.

    Raises
    ------
    ValueError
        For sets without discrete modes and for unknown names.
    """
    return dataset_spec(name).mode_std()


def _mixture(name: str) -> toy.Mixture:
    spec = dataset_spec(name)
    if spec.mixture is None:
        raise ValueError(
            f"data set {name!r} is not a Gaussian mixture: it has no mixture parameters; the mixtures are "
            f"{sorted(n for n, s in _REGISTRY.items() if s.mixture is not None)}."
        )
    return spec.mixture()


def mixture_parameters(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and covariances of a Gaussian-mixture data set.

    Parameters
    ----------
    name : str
        A registered set with a mixture (all but ``"swissroll"``, the spirals included).

    Returns
    -------
    weights : numpy.ndarray
        ``(k,)``, summing to 1.
    means : numpy.ndarray
        ``(k, 2)``.
    covariances : numpy.ndarray
        ``(k, 2, 2)``, diagonal.
    """
    weights, means, var = _mixture(name)
    covs = np.zeros((var.shape[0], 2, 2))
    covs[:, 0, 0] = var[:, 0]
    covs[:, 1, 1] = var[:, 1]
    return weights.copy(), means.copy(), covs


def log_density(name: str, x: np.ndarray) -> np.ndarray:
    """Exact log density of a Gaussian-mixture data set at the points ``x``.

    Parameters
    ----------
    name : str
        A registered set with a mixture.
    x : array_like
        ``(m, 2)`` points.

    Returns
    -------
    numpy.ndarray
        ``float64`` array ``(m,)``.
    """
    weights, means, var = _mixture(name)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (m, 2), got {x.shape}")
    diff = x[:, None, :] - means[None, :, :]  # (m, k, 2)
    log_comp = -0.5 * np.sum(diff**2 / var[None], axis=-1) - 0.5 * np.sum(np.log(2 * np.pi * var), axis=-1)[None]
    return logsumexp(log_comp + np.log(weights)[None], axis=1)


class _Samplers(Mapping[str, Callable[..., np.ndarray]]):
    """Read-only, live view name -> sampler (what ``DATASETS`` was: later registrations show)."""

    def __getitem__(self, name: str) -> Callable[..., np.ndarray]:
        return _REGISTRY[name].sampler  # a KeyError for unknown names, as a Mapping must

    def __iter__(self) -> Iterator[str]:
        return iter(list(_REGISTRY))

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __repr__(self) -> str:
        return f"DATASETS({dataset_names()})"


#: name -> sampler ``f(n, seed=...)``, a live read-only view of the registry.
DATASETS: Mapping[str, Callable[..., np.ndarray]] = _Samplers()


def __getattr__(name: str) -> Any:
    # MODE_DATASETS was a tuple; computed on access so that it follows later registrations.
    if name == "MODE_DATASETS":
        return tuple(dataset_names(with_modes=True))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_MODES = (*_DISTANCES, "mode_metrics")

register_dataset("25gaussians", toy.twenty_five_gaussians, metrics=_MODES,
                 mixture=toy.twenty_five_gaussians_mixture,
                 description="DDLS Sec. 5.1: 5x5 grid, spacing 1, std 0.1")
register_dataset("25gaussians_gulrajani", toy.twenty_five_gaussians_gulrajani, metrics=_MODES,
                 mixture=lambda: toy.twenty_five_gaussians_mixture("gulrajani"),
                 description="WGAN-GP toy / DOT recipe: spacing 2/2.828, std 0.05/2.828")
register_dataset("swissroll", toy.swiss_roll, description="scikit-learn's Swiss Roll, DOT's rescaling")
register_dataset("4gaussians", toy.four_gaussians, metrics=_MODES, mixture=toy.four_gaussians_mixture,
                 description="Dai et al. (2017): 4 anisotropic Gaussians, equal weights")
register_dataset("biased2gaussians", toy.biased_two_gaussians, metrics=_MODES,
                 mixture=toy.biased_two_gaussians_mixture,
                 description="Dai et al. (2017): 2 Gaussians, weights 0.9 / 0.1")
# The spirals are a mixture (exact density), but their 200 components overlap: no modes to count.
register_dataset("twospirals", toy.two_spirals, mixture=toy.two_spirals_mixture,
                 description="Dai et al. (2017): two spirals of 100 Gaussians each")
