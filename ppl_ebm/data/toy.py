"""Two-dimensional synthetic data sets of the DDLS paper (Sec. 5.1) and of Dai et al. (2017).

Every sampler is a function of ``(n, seed)`` that returns a ``float32`` array of shape
``(n, 2)`` and is deterministic given ``seed`` (one ``np.random.default_rng(seed)`` per call;
the Swiss Roll goes through scikit-learn's own ``random_state``). The names of the sets, their
kinds and which metrics apply are in :mod:`ppl_ebm.data.registry`, the one list of them.

Sources of the numbers
----------------------
* **25-Gaussians, DDLS** (Che et al. 2020, "Your GAN is secretly an energy-based model",
  Sec. 5.1): "a mixture of twenty-five two-dimensional isotropic Gaussian distributions with
  variance 0.01, and means separated by 1, arranged in a grid". We centre the grid on the
  origin: means ``{-2, -1, 0, 1, 2}^2``, std 0.1, equal weights.
* **25-Gaussians, Gulrajani/DOT recipe** (WGAN-GP toy code, reused by DOT, Tanaka 2019):
  centres ``(2i, 2j)`` for ``i, j in -2..2``, per-coordinate noise std 0.05, then every
  coordinate divided by 2.828. Spacing ``2/2.828``, std ``0.05/2.828``.
* **Swiss Roll** (DDLS: "the implementation from scikit-learn, rescaled as suggested by
  Tanaka (2019)"; DOT recipe): ``make_swiss_roll(n, noise=0.25)``, columns ``[0, 2]``,
  divided by 7.5.
* **Dai et al. (2017)**, "Calibrating energy-based generative adversarial networks",
  Sec. 5.1: "(i) Mixture of 4 Gaussians with equal mixture weights, (ii) Mixture of 200
  Gaussians arranged as two spirals (100 components each spiral), and (iii) Mixture of 2
  Gaussians with highly biased mixture weights, P(c1) = 0.9, P(c2) = 0.1". The paper gives
  no means or covariances; those come from the authors' code (``zihangdai/cegan_iclr2017``,
  ``synthetic/synthetic_data.py``, the "cegan recipe" of the project's REFERENCES.md), where
  they are drawn from a fixed-seed ``np.random.RandomState``. We replayed that code (legacy
  ``RandomState`` streams are stable across NumPy versions) with the ``N=100000`` of its
  ``__main__`` (the paper's "100K training samples") and hard-coded the results below. The
  spiral noise 0.45 also comes from that code (and REFERENCES.md). Where code and paper
  disagree (the code's default builds 100 spiral components in all, 50 a spiral) the paper
  wins: 100 components a spiral, 200 in all.

The mixtures are sampled as mixtures (a component drawn per point with the mixture weights),
not with the fixed per-component counts that some reference scripts use.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "Mixture",
    "check_sample_count",
    "biased_two_gaussians",
    "biased_two_gaussians_mixture",
    "four_gaussians",
    "four_gaussians_mixture",
    "swiss_roll",
    "twenty_five_gaussians",
    "twenty_five_gaussians_gulrajani",
    "twenty_five_gaussians_mixture",
    "two_spirals",
    "two_spirals_mixture",
]

# --- 25-Gaussians -----------------------------------------------------------------------

#: DDLS Sec. 5.1: variance 0.01 -> std 0.1; means 1 apart on a 5x5 grid.
_DDLS_25_STD = 0.1
_DDLS_25_SPACING = 1.0
#: Gulrajani et al. (2017) toy code / DOT: centres (2i, 2j), noise std 0.05, divide by 2.828.
_GULRAJANI_25_SCALE = 2.828
_GULRAJANI_25_STD = 0.05 / _GULRAJANI_25_SCALE
_GULRAJANI_25_SPACING = 2.0 / _GULRAJANI_25_SCALE

# --- Swiss Roll (DOT recipe) --------------------------------------------------------------

_SWISS_ROLL_NOISE = 0.25
_SWISS_ROLL_SCALE = 7.5

# --- Dai et al. (2017), constants replayed from cegan_iclr2017/synthetic/synthetic_data.py --

#: ``gaussian_mixture``: ``RandomState(5)``; ``val = rand() * 10`` after the multinomial
#: draw; means ``(v, v), (-v, v), (v, -v), (-v, -v)`` in that order.
_FOUR_GAUSSIANS_HALF_SEPARATION = 7.659078564803155
#: Diagonal covariances ``diag(rand(2)) * 10`` of the four components (variances, not stds),
#: as drawn when ``N = 100000`` (the draws interleave with the data, so they depend on N).
_FOUR_GAUSSIANS_VARIANCES = np.array(
    [
        [5.184179878729433, 2.9680050157622198],
        [5.555750108227002, 9.225669429669887],
        [9.47124071120456, 4.606486013870912],
        [7.42414686787717, 3.6627290775787125],
    ]
)
#: ``biased_gaussian_mixture``: ``RandomState(2)``; ``val = rand() * 8``; means
#: ``(v, v)`` with weight 0.1 and ``(-v, -v)`` with weight 0.9; covariance ``5 * I``.
_BIASED_HALF_SEPARATION = 3.48795921713603
_BIASED_VARIANCE = 5.0
#: Paper: P(c1) = 0.9, P(c2) = 0.1. Component 0 is the heavy one, at ``(-v, -v)`` as in the code.
_BIASED_WEIGHTS = (0.9, 0.1)
#: ``twospirals``: start 120 degrees, 360 degrees of turn, noise 0.45; 100 components a spiral
#: (paper Sec. 5.1; the code's default NC=100 would give 50).
_SPIRAL_COMPONENTS_EACH = 100
_SPIRAL_START_DEG = 120.0
_SPIRAL_DEGREES = 360.0
_SPIRAL_NOISE = 0.45


def check_sample_count(n: int) -> int:
    """``n`` as an int >= 1, or a ValueError naming it (every sampler of a data set checks this)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return int(n)


def _grid_centers(spacing: float) -> np.ndarray:
    """5x5 grid ``spacing * {-2..2}^2``, row-major in (i, j)."""
    ticks = np.arange(-2, 3, dtype=np.float64) * spacing
    ii, jj = np.meshgrid(ticks, ticks, indexing="ij")
    return np.stack([ii.ravel(), jj.ravel()], axis=1)


def _spiral_centers() -> np.ndarray:
    """The 200 component means of the two spirals (first spiral, then the second).

    From ``cegan_iclr2017``: for angles ``t`` from ``start`` over ``degrees``, spiral one is
    ``(-cos(t) t, sin(t) t)`` and spiral two its point reflection ``(cos(t) t, -sin(t) t)``.
    """
    deg2rad = np.pi / 180.0
    t = (_SPIRAL_START_DEG + np.linspace(0.0, 1.0, _SPIRAL_COMPONENTS_EACH) * _SPIRAL_DEGREES) * deg2rad
    first = np.stack([-np.cos(t) * t, np.sin(t) * t], axis=1)
    return np.concatenate([first, -first], axis=0)


#: A diagonal Gaussian mixture: weights ``(k,)``, means ``(k, 2)``, per-coordinate variances ``(k, 2)``.
Mixture = tuple[np.ndarray, np.ndarray, np.ndarray]


def _equal_weights(means: np.ndarray, var: np.ndarray) -> Mixture:
    return np.full(means.shape[0], 1.0 / means.shape[0]), means, var


def twenty_five_gaussians_mixture(variant: str = "ddls") -> Mixture:
    """Weights, means and per-coordinate variances of the 25-Gaussians grid.

    Parameters
    ----------
    variant : {"ddls", "gulrajani"}, default "ddls"
        See :func:`twenty_five_gaussians`.

    Returns
    -------
    weights, means, variances : numpy.ndarray
        ``(25,)``, ``(25, 2)``, ``(25, 2)``; means row-major in the grid's ``(i, j)``.
    """
    if variant == "ddls":
        means = _grid_centers(_DDLS_25_SPACING)
        return _equal_weights(means, np.full_like(means, _DDLS_25_STD**2))
    if variant == "gulrajani":
        means = _grid_centers(_GULRAJANI_25_SPACING)
        return _equal_weights(means, np.full_like(means, _GULRAJANI_25_STD**2))
    raise ValueError(f"variant must be 'ddls' or 'gulrajani', got {variant!r}")


def four_gaussians_mixture() -> Mixture:
    """Weights, means and per-coordinate variances of :func:`four_gaussians`."""
    v = _FOUR_GAUSSIANS_HALF_SEPARATION
    means = np.array([[v, v], [-v, v], [v, -v], [-v, -v]])
    return _equal_weights(means, _FOUR_GAUSSIANS_VARIANCES.copy())


def biased_two_gaussians_mixture() -> Mixture:
    """Weights, means and per-coordinate variances of :func:`biased_two_gaussians` (heavy mode first)."""
    v = _BIASED_HALF_SEPARATION
    means = np.array([[-v, -v], [v, v]])
    return np.array(_BIASED_WEIGHTS), means, np.full_like(means, _BIASED_VARIANCE)


def two_spirals_mixture() -> Mixture:
    """Weights, means and per-coordinate variances of :func:`two_spirals` (200 components)."""
    means = _spiral_centers()
    return _equal_weights(means, np.full_like(means, _SPIRAL_NOISE**2))


def _sample_diag_mixture(mixture: Mixture, n: int, seed: int) -> np.ndarray:
    n = check_sample_count(n)
    weights, means, var = mixture
    rng = np.random.default_rng(seed)
    k = weights.shape[0]
    if np.allclose(weights, weights[0]):
        comp = rng.integers(0, k, size=n)
    else:
        comp = rng.choice(k, size=n, p=weights)
    noise = rng.standard_normal((n, 2))
    x = means[comp] + noise * np.sqrt(var[comp])
    return x.astype(np.float32)


def twenty_five_gaussians(n: int, seed: int = 0, variant: str = "ddls") -> np.ndarray:
    """Sample the 25-Gaussians mixture.

    Parameters
    ----------
    n : int
        Number of points (>= 1).
    seed : int, default 0
        Seed of ``np.random.default_rng``.
    variant : {"ddls", "gulrajani"}, default "ddls"
        ``"ddls"``: DDLS Sec. 5.1 -- 25 isotropic components with variance 0.01 (std 0.1),
        means on the grid ``{-2, -1, 0, 1, 2}^2`` (spacing 1), equal weights.
        ``"gulrajani"``: the WGAN-GP toy / DOT recipe -- centres ``(2i, 2j)``, ``i, j`` in
        ``-2..2``, noise std 0.05, everything divided by 2.828 (spacing ``2/2.828``, std
        ``0.05/2.828``).

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(n, 2)``.
    """
    return _sample_diag_mixture(twenty_five_gaussians_mixture(variant), n, seed)


def swiss_roll(n: int, seed: int = 0) -> np.ndarray:
    """Sample the Swiss Roll as DOT (Tanaka 2019) and DDLS use it.

    ``sklearn.datasets.make_swiss_roll(n, noise=0.25, random_state=seed)``, columns
    ``[0, 2]``, divided by 7.5.

    Parameters
    ----------
    n : int
        Number of points (>= 1).
    seed : int, default 0
        ``random_state`` passed to scikit-learn.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(n, 2)``.
    """
    from sklearn.datasets import make_swiss_roll

    n = check_sample_count(n)
    x, _ = make_swiss_roll(n, noise=_SWISS_ROLL_NOISE, random_state=seed)
    return (x[:, [0, 2]] / _SWISS_ROLL_SCALE).astype(np.float32)


def four_gaussians(n: int, seed: int = 0) -> np.ndarray:
    """Sample Dai et al.'s (2017) equally weighted mixture of 4 Gaussians.

    Equal weights: paper, Sec. 5.1. Means ``(+-v, +-v)`` with ``v = 7.659078564803155`` and
    diagonal covariances ``diag(5.184, 2.968)``, ``diag(5.556, 9.226)``,
    ``diag(9.471, 4.606)``, ``diag(7.424, 3.663)`` (for the means ``(v, v)``, ``(-v, v)``,
    ``(v, -v)``, ``(-v, -v)``): the paper is silent on them; they are the values the
    authors' ``synthetic_data.gaussian_mixture`` draws from ``RandomState(5)`` with
    ``N = 100000``. The components are not isotropic; see :func:`mixture_parameters`.

    Parameters
    ----------
    n : int
        Number of points (>= 1).
    seed : int, default 0
        Seed of ``np.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(n, 2)``.
    """
    return _sample_diag_mixture(four_gaussians_mixture(), n, seed)


def biased_two_gaussians(n: int, seed: int = 0) -> np.ndarray:
    """Sample Dai et al.'s (2017) mixture of 2 Gaussians with weights 0.9 / 0.1.

    Weights ``P(c1) = 0.9, P(c2) = 0.1``: paper, Sec. 5.1. Means ``(-v, -v)`` (weight 0.9)
    and ``(v, v)`` (weight 0.1) with ``v = 3.48795921713603`` and covariance ``5 I`` (std
    ``sqrt(5)``): the paper is silent on them; they are the values of the authors'
    ``synthetic_data.biased_gaussian_mixture`` (``RandomState(2)``, ``mean_scale=8``,
    ``var_scale=5``, ``mix_weights=[0.1, 0.9]`` for the means ``(v, v), (-v, -v)``).

    Parameters
    ----------
    n : int
        Number of points (>= 1).
    seed : int, default 0
        Seed of ``np.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(n, 2)``.
    """
    return _sample_diag_mixture(biased_two_gaussians_mixture(), n, seed)


def two_spirals(n: int, seed: int = 0) -> np.ndarray:
    """Sample Dai et al.'s (2017) two spirals: an equal-weight mixture of 200 Gaussians.

    100 components a spiral, 200 in all: paper, Sec. 5.1. Geometry and noise from the
    authors' ``synthetic_data.twospirals`` (the paper is silent on them): component angles
    ``t`` evenly spaced (endpoints included) from 120 degrees over 360 degrees; spiral one has
    means ``(-cos(t) t, sin(t) t)``, spiral two ``(cos(t) t, -sin(t) t)``; isotropic noise std
    0.45. (That code's default of 100 components in all is overridden by the paper's 200.)

    Parameters
    ----------
    n : int
        Number of points (>= 1).
    seed : int, default 0
        Seed of ``np.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        ``float32`` array of shape ``(n, 2)``.
    """
    return _sample_diag_mixture(two_spirals_mixture(), n, seed)


def twenty_five_gaussians_gulrajani(n: int, seed: int = 0) -> np.ndarray:
    """Sample the Gulrajani/DOT 25-Gaussians: :func:`twenty_five_gaussians` with ``variant="gulrajani"``."""
    return twenty_five_gaussians(n, seed, variant="gulrajani")


#: Names that moved to :mod:`ppl_ebm.data.registry` (the one place that lists the data sets);
#: still readable here for callers of this module.
_FROM_REGISTRY = frozenset(
    {"DATASETS", "MODE_DATASETS", "log_density", "mixture_parameters", "mode_centers", "mode_std", "sample_dataset"}
)


def __getattr__(name: str) -> Any:
    # Lazily, because the registry imports this module for its samplers.
    if name in _FROM_REGISTRY:
        from ppl_ebm.data import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
