"""The generator-entropy terms of Dai et al. (2017), Sec. 4: nearest neighbours and a variational bound.

Maximising the generator's entropy H(p_gen) is what makes the energy GAN's discriminator a
density model (Prop. 3.1, Eq. 5: c*(x) = -log p_data(x) + const). The generator never has a
density, so two estimates stand in for it:

* :func:`knn_score` -- Eq. 10: the score d log p_gen(x_i) / dx_i of a Gaussian fitted to the k
  nearest neighbours of x_i in the batch. As the authors' released code
  (``cegan_iclr2017/synthetic/egan_knn.py``) does it: k = 20, the mean over the neighbours
  without x_i, divided by the per-coordinate variance of x_i and its neighbours (the fitted
  Gaussian's bandwidth); the unit-norm rescaling of Eq. 11 is commented out there and not used
  here. Minimising ``sum(stop_gradient(score) * x)`` then moves each x_i down its local
  density, which is -grad H by the reparametrisation of Eq. 9.
* :func:`gaussian_negative_log_likelihood` -- Eq. 14-16: -log q(z | x) of a diagonal Gaussian
  inference network, whose batch mean is the upper bound U(q) on H(z | x), so
  H(x) >= H(z) - U(q) (up to the dropped constant H(x | z)).

:func:`knn_entropy` (Kozachenko and Leonenko, 1987) is not used in training: it measures a
generator's entropy for its model card and checks the neighbour machinery against Gaussians
of known entropy in the tests.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln

from ppl_ebm.validation import check_finite_rows, check_int

__all__ = ["KNN_NEIGHBOURS", "gaussian_entropy", "gaussian_negative_log_likelihood", "knn_entropy", "knn_score"]

#: Neighbours of each generated point (the released code's ``argsort(...)[:, :21]``, self included).
KNN_NEIGHBOURS = 20


def knn_score(x: jax.Array, k: int = KNN_NEIGHBOURS, normalise: bool = False) -> jax.Array:
    """Nearest-neighbour estimate of the score grad log p_gen at every point of a batch (Dai et al. Eq. 10).

    ``(mu_i - x_i) / var_i`` with ``mu_i`` the mean of the ``k`` nearest other points of the
    batch and ``var_i`` the per-coordinate variance of ``x_i`` with those neighbours: the score
    of the Gaussian fitted to the neighbourhood, as the authors' code computes it.

    Parameters
    ----------
    x
        ``(n, d)`` batch of generated points, ``n > k``.
    k
        Number of neighbours.
    normalise
        Return the unit-norm direction ``(mu_i - x_i) / ||mu_i - x_i||`` instead (Eq. 11, as the
        released digits code ``knn_nist/egan_knn.py`` does; no variance division).

    Returns
    -------
    jax.Array
        ``(n, d)``; not differentiated through (callers apply ``stop_gradient``).
    """
    if x.ndim != 2 or x.shape[0] <= k:
        raise ValueError(f"x must be (n, d) with n > k = {k}, got shape {x.shape}.")
    squared = jnp.sum(x**2, axis=1)
    distance = squared[:, None] + squared[None, :] - 2.0 * x @ x.T
    # top_k of -distance: the point itself (distance 0) comes first.
    _, index = jax.lax.top_k(-distance, k + 1)
    neighbourhood = x[index]  # (n, k + 1, d), self first
    mean = jnp.mean(neighbourhood[:, 1:], axis=1)
    if normalise:
        direction = mean - x
        return direction / jnp.sqrt(jnp.sum(direction**2, axis=1, keepdims=True) + 1e-12)
    variance = jnp.var(neighbourhood, axis=1)
    return (mean - x) / variance


def gaussian_negative_log_likelihood(z: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """-log q(z | x) of a diagonal Gaussian with the inference network's ``mean`` and ``log_std`` (Eq. 15-16).

    Returns a ``(n,)`` array; its mean over draws of the generator's joint is U(q).
    """
    return jnp.sum(log_std + 0.5 * ((z - mean) / jnp.exp(log_std)) ** 2 + 0.5 * math.log(2 * math.pi), axis=1)


def gaussian_entropy(covariance: np.ndarray) -> float:
    """Closed-form entropy (nats) of a Gaussian with this covariance: ``0.5 log det(2 pi e Sigma)``."""
    covariance = np.atleast_2d(np.asarray(covariance, dtype=np.float64))
    sign, logdet = np.linalg.slogdet(2 * np.pi * np.e * covariance)
    if sign <= 0:
        raise ValueError("covariance must be positive definite.")
    return 0.5 * float(logdet)


def knn_entropy(x: np.ndarray, k: int = 3) -> float:
    """Kozachenko-Leonenko k-nearest-neighbour estimate of the entropy (nats) of the points ``x``.

    ``H = psi(n) - psi(k) + log V_d + d mean(log eps_i)`` with ``eps_i`` the distance of x_i to
    its k-th nearest neighbour and ``V_d`` the volume of the unit d-ball (Kraskov et al. 2004,
    Eq. 20). Consistent; its bias shrinks as n grows.

    Parameters
    ----------
    x
        ``(n, d)`` finite points, ``n > k``, all distinct.
    k
        The neighbour whose distance is used.
    """
    x = check_finite_rows("x", np.asarray(x, dtype=np.float64))
    k = check_int("k", k, 1)
    n, d = x.shape
    if n <= k:
        raise ValueError(f"x needs more than k = {k} points, got {n}.")
    distance, _ = cKDTree(x).query(x, k=k + 1)
    eps = distance[:, -1]
    if np.any(eps <= 0):
        raise ValueError("x has repeated points; the k-NN entropy estimate needs distinct points.")
    log_unit_ball = 0.5 * d * np.log(np.pi) - gammaln(0.5 * d + 1)
    return float(digamma(n) - digamma(k) + log_unit_ball + d * np.mean(np.log(eps)))
