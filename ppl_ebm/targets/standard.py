"""Standard targets with analytic truth, as Pyro and NumPyro models, for comparing samplers.

Each :class:`StandardTarget` holds a Pyro model (``backend="torch"``) and a NumPyro model
(``backend="jax"``) of the same density, both without arguments, so ``ppl_ebm.sample(target.pyro_model,
...)`` and ``ppl_ebm.sample(target.numpyro_model, ...)`` run them; the exact per-coordinate mean and
variance in the flat order the front door reports (``result.latents``: the sites sorted by name, each
flattened); the normalised log density of a flat point; and exact i.i.d. draws.
Every truth is closed form or derived exactly (rational arithmetic for the Rosenbrock), never estimated.

* ``gaussian``: ``x ~ N(0, diag(sd^2))``, ``sd`` log-uniform in ``[1, 10^1.5]`` from a seed, the first
  ``10^1.5`` (variance ratio 1000). Mean 0, variance ``sd^2``.
* ``funnel`` (Neal): ``v ~ N(0, 3^2)``, ``x_i | v ~ N(0, e^v)`` (variance ``e^v``), ``i < dim``.
  Mean 0; ``Var v = 9``, ``Var x_i = E[e^v] = e^{9/2}``.
* ``banana`` (Haario's twisted Gaussian): ``x1 ~ N(0, s^2)``, ``x2 | x1 ~ N(b (x1^2 - s^2), 1)``
  (``s = 10``, ``b = 0.03``). ``E x2 = 0``, ``Var x2 = 1 + b^2 Var(x1^2) = 1 + 2 b^2 s^4`` (19).
* ``mixture``: ``w N(m1, s1^2 I) + (1 - w) N(m2, s2^2 I)`` per coordinate; mean
  ``w m1 + (1-w) m2``, variance ``w (s1^2 + m1^2) + (1-w)(s2^2 + m2^2) - mean^2``.
* ``rosenbrock`` (hybrid Rosenbrock, Pagani, Wiegand and Nadarajah 2022):
  ``exp(-a (x1 - mu)^2 - b sum_{j<=n2} sum_{2<=i<=n1} (x_{j,i} - x_{j,i-1}^2)^2)``, ``x_{j,1} = x1``,
  i.e. ``x1 ~ N(mu, 1/(2a))``, ``x_{j,i} | x_{j,i-1} ~ N(x_{j,i-1}^2, 1/(2b))``; the moments follow from
  ``E[y_i^k] = sum_m C(k, m) E[y_{i-1}^{2m}] E[eps^{k-m}]`` down to the Gaussian ``x1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import numpy as np

__all__ = ["STANDARD_TARGETS", "StandardTarget", "log_uniform_scales", "standard_target"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class StandardTarget:
    """A target with exact moments, as Pyro and NumPyro models with the same sites.

    ``sites`` are ``(name, size)`` in the flat order of ``true_mean``/``true_var`` and of the front
    door's ``result.latents`` (names sorted). ``log_density(x)`` is the normalised log density of
    flat points ``x`` (..., dim) (every one here is a chain of Gaussian conditionals, so it is
    closed form). ``exact_sample(n, seed)`` gives ``n`` i.i.d. flat draws (n, dim).
    """

    name: str
    dim: int
    sites: tuple
    pyro_model: Callable
    numpyro_model: Callable
    true_mean: np.ndarray
    true_var: np.ndarray
    log_density: Callable
    exact_sample: Callable | None = None
    options: dict = field(default_factory=dict)


def log_uniform_scales(dim: int, seed: int) -> np.ndarray:
    """Standard deviations log-uniform in ``[1, 10^1.5]`` (seeded), the first the widest (float32)."""
    sd = 10.0 ** np.random.default_rng(seed).uniform(0.0, 1.5, dim)
    sd[0] = 10.0**1.5
    return sd.astype(np.float32)


# --- option checks -------------------------------------------------------------------------------

def _int(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def _real(name, value, positive=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}.")
    return float(value)


def _normal_logpdf(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - np.log(sd) - _HALF_LOG_2PI


def _flat(sites, draws):
    return np.concatenate([np.asarray(draws[name], dtype=np.float64).reshape(-1, size) for name, size in sites],
                          axis=-1)


def _float(value):
    import torch

    return torch.as_tensor(value, dtype=torch.get_default_dtype())


# --- the targets ---------------------------------------------------------------------------------

def gaussian(dim: int = 100, seed: int = 0) -> StandardTarget:
    dim, seed = _int("dim", dim, 1), _int("seed", seed, 0)
    sd = log_uniform_scales(dim, seed)
    sd64 = sd.astype(np.float64)

    def pyro_model():
        import pyro
        import pyro.distributions as dist

        pyro.sample("x", dist.Normal(_float(np.zeros(dim)), _float(sd)).to_event(1))

    def numpyro_model():
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        numpyro.sample("x", dist.Normal(jnp.zeros(dim), jnp.asarray(sd)).to_event(1))

    def exact_sample(n, seed=0):
        return np.random.default_rng(seed).standard_normal((n, dim)) * sd64

    return StandardTarget("gaussian", dim, (("x", dim),), pyro_model, numpyro_model, np.zeros(dim), sd64**2,
                          lambda x: _normal_logpdf(np.asarray(x, np.float64), 0.0, sd64).sum(-1), exact_sample,
                          options=dict(dim=dim, seed=seed))


def funnel(dim: int = 10, scale: float = 3.0) -> StandardTarget:
    dim, scale = _int("dim", dim, 2), _real("scale", scale, positive=True)
    k = dim - 1

    def pyro_model():
        import pyro
        import pyro.distributions as dist

        v = pyro.sample("v", dist.Normal(_float(0.0), _float(scale)))
        pyro.sample("x", dist.Normal(_float(np.zeros(k)), (v / 2).exp().expand([k])).to_event(1))

    def numpyro_model():
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        v = numpyro.sample("v", dist.Normal(0.0, scale))
        numpyro.sample("x", dist.Normal(jnp.zeros(k), jnp.exp(v / 2) * jnp.ones(k)).to_event(1))

    def log_density(x):
        x = np.asarray(x, np.float64)
        v = x[..., 0]
        return _normal_logpdf(v, 0.0, scale) + _normal_logpdf(x[..., 1:], 0.0, np.exp(v / 2)[..., None]).sum(-1)

    def exact_sample(n, seed=0):
        rng = np.random.default_rng(seed)
        v = scale * rng.standard_normal(n)
        return np.concatenate([v[:, None], np.exp(v / 2)[:, None] * rng.standard_normal((n, k))], axis=1)

    var = np.concatenate([[scale**2], np.full(k, math.exp(scale**2 / 2))])
    return StandardTarget("funnel", dim, (("v", 1), ("x", k)), pyro_model, numpyro_model, np.zeros(dim), var,
                          log_density, exact_sample, options=dict(dim=dim, scale=scale))


def banana(b: float = 0.03, scale: float = 10.0) -> StandardTarget:
    b, scale = _real("b", b), _real("scale", scale, positive=True)
    s2 = scale**2

    def pyro_model():
        import pyro
        import pyro.distributions as dist

        x1 = pyro.sample("x1", dist.Normal(_float(0.0), _float(scale)))
        pyro.sample("x2", dist.Normal(b * (x1**2 - s2), _float(1.0)))

    def numpyro_model():
        import numpyro
        import numpyro.distributions as dist

        x1 = numpyro.sample("x1", dist.Normal(0.0, scale))
        numpyro.sample("x2", dist.Normal(b * (x1**2 - s2), 1.0))

    def log_density(x):
        x = np.asarray(x, np.float64)
        return _normal_logpdf(x[..., 0], 0.0, scale) + _normal_logpdf(x[..., 1], b * (x[..., 0] ** 2 - s2), 1.0)

    def exact_sample(n, seed=0):
        rng = np.random.default_rng(seed)
        x1 = scale * rng.standard_normal(n)
        return np.stack([x1, b * (x1**2 - s2) + rng.standard_normal(n)], axis=1)

    var = np.array([s2, 1.0 + 2.0 * b**2 * s2**2])
    return StandardTarget("banana", 2, (("x1", 1), ("x2", 1)), pyro_model, numpyro_model, np.zeros(2), var,
                          log_density, exact_sample, options=dict(b=b, scale=scale))


def mixture(dim: int = 2, weight: float = 0.3, means: tuple = (-3.0, 3.0), scales: tuple = (1.0, 1.0)
            ) -> StandardTarget:
    dim, weight = _int("dim", dim, 1), _real("weight", weight)
    if not 0.0 < weight < 1.0:
        raise ValueError(f"weight must be in (0, 1), got {weight!r}.")
    for name, pair, positive in (("means", means, False), ("scales", scales, True)):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"{name} must be a pair of numbers (one per component), got {pair!r}.")
        for value in pair:
            _real(name, value, positive=positive)
    m = np.array(means, np.float64)
    s = np.array(scales, np.float64)
    w = np.array([weight, 1.0 - weight])
    loc = np.repeat(m[:, None], dim, axis=1)
    sd = np.repeat(s[:, None], dim, axis=1)

    def pyro_model():
        import pyro
        import pyro.distributions as dist

        pyro.sample("x", dist.MixtureSameFamily(dist.Categorical(probs=_float(w)),
                                                dist.Normal(_float(loc), _float(sd)).to_event(1)))

    def numpyro_model():
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        numpyro.sample("x", dist.MixtureSameFamily(dist.Categorical(probs=jnp.asarray(w)),
                                                   dist.Normal(jnp.asarray(loc), jnp.asarray(sd)).to_event(1)))

    def log_density(x):
        x = np.asarray(x, np.float64)[..., None, :]
        parts = np.log(w) + _normal_logpdf(x, loc, sd).sum(-1)
        top = parts.max(-1, keepdims=True)
        return (top + np.log(np.exp(parts - top).sum(-1, keepdims=True)))[..., 0]

    def exact_sample(n, seed=0):
        rng = np.random.default_rng(seed)
        which = (rng.uniform(size=n) >= weight).astype(int)
        return m[which][:, None] + s[which][:, None] * rng.standard_normal((n, dim))

    mean = float(w @ m)
    var = float(w @ (s**2 + m**2)) - mean**2
    return StandardTarget("mixture", dim, (("x", dim),), pyro_model, numpyro_model, np.full(dim, mean),
                          np.full(dim, var), log_density, exact_sample,
                          options=dict(dim=dim, weight=weight, means=tuple(m), scales=tuple(s)))


def _gaussian_moments(mu: Fraction, var: Fraction, order: int) -> list:
    """``E[(mu + sqrt(var) z)^k]``, k = 0..order, exactly (odd powers of the standard normal vanish)."""
    out = []
    for k in range(order + 1):
        total = Fraction(0)
        for m in range(0, k + 1, 2):
            double_factorial = math.prod(range(m - 1, 0, -2))
            total += math.comb(k, m) * mu ** (k - m) * var ** (m // 2) * double_factorial
        out.append(total)
    return out


def _rosenbrock_moments(mu, a, b, n1):
    """Exact mean and variance of each level ``y_1 = x1, y_i | y_{i-1} ~ N(y_{i-1}^2, 1/(2b))``."""
    mu, a, b = Fraction(mu), Fraction(a), Fraction(b)
    orders = [2 ** (n1 - i + 1) for i in range(1, n1 + 1)]  # level i needs moments up to this order
    moments = _gaussian_moments(mu, 1 / (2 * a), orders[0])
    noise = _gaussian_moments(Fraction(0), 1 / (2 * b), orders[1] if n1 > 1 else 0)
    levels = [moments]
    for i in range(1, n1):
        previous = levels[-1]
        levels.append([sum(math.comb(k, m) * previous[2 * m] * noise[k - m] for m in range(k + 1))
                       for k in range(orders[i] + 1)])
    return [(float(level[1]), float(level[2] - level[1] ** 2)) for level in levels]


def rosenbrock(n1: int = 3, n2: int = 2, mu: float = 1.0, a: float = 1 / 20, b: float = 100 / 20
               ) -> StandardTarget:
    n1, n2 = _int("n1", n1, 2), _int("n2", n2, 1)
    if n1 > 6:
        raise ValueError(f"n1 must be an integer in [2, 6] (its moments need x1's of order 2^n1), got {n1!r}.")
    mu, a, b = _real("mu", mu), _real("a", a, positive=True), _real("b", b, positive=True)
    sd1, sd = 1.0 / math.sqrt(2 * a), 1.0 / math.sqrt(2 * b)
    dim = (n1 - 1) * n2 + 1
    # Site "x1" (the root), then "y2", ..., "y<n1>" of size n2: y<i>[j] = x_{j+1, i}. Names sort in this order.
    sites = (("x1", 1),) + tuple((f"y{i}", n2) for i in range(2, n1 + 1))

    def pyro_model():
        import pyro
        import pyro.distributions as dist

        previous = pyro.sample("x1", dist.Normal(_float(mu), _float(sd1))) * _float(np.ones(n2))
        for i in range(2, n1 + 1):
            previous = pyro.sample(f"y{i}", dist.Normal(previous**2, _float(sd)).to_event(1))

    def numpyro_model():
        import jax.numpy as jnp
        import numpyro
        import numpyro.distributions as dist

        previous = numpyro.sample("x1", dist.Normal(mu, sd1)) * jnp.ones(n2)
        for i in range(2, n1 + 1):
            previous = numpyro.sample(f"y{i}", dist.Normal(previous**2, sd).to_event(1))

    def log_density(x):
        x = np.asarray(x, np.float64)
        out = _normal_logpdf(x[..., 0], mu, sd1)
        previous = np.repeat(x[..., :1], n2, axis=-1)
        for level in range(n1 - 1):
            current = x[..., 1 + level * n2: 1 + (level + 1) * n2]
            out = out + _normal_logpdf(current, previous**2, sd).sum(-1)
            previous = current
        return out

    def exact_sample(n, seed=0):
        rng = np.random.default_rng(seed)
        x1 = mu + sd1 * rng.standard_normal(n)
        columns, previous = [x1[:, None]], np.repeat(x1[:, None], n2, axis=1)
        for _ in range(n1 - 1):
            previous = previous**2 + sd * rng.standard_normal((n, n2))
            columns.append(previous)
        return np.concatenate(columns, axis=1)

    levels = _rosenbrock_moments(mu, a, b, n1)
    mean = np.array([levels[0][0]] + [levels[i][0] for i in range(1, n1) for _ in range(n2)])
    var = np.array([levels[0][1]] + [levels[i][1] for i in range(1, n1) for _ in range(n2)])
    return StandardTarget("rosenbrock", dim, sites, pyro_model, numpyro_model, mean, var, log_density, exact_sample,
                          options=dict(n1=n1, n2=n2, mu=mu, a=a, b=b))


STANDARD_TARGETS = {"gaussian": gaussian, "funnel": funnel, "banana": banana, "mixture": mixture,
                    "rosenbrock": rosenbrock}


def standard_target(name: str, **options) -> StandardTarget:
    """The standard target ``name`` (one of :data:`STANDARD_TARGETS`) with its ``options``.

    Unknown names and options, and options of the wrong type or range, raise ``ValueError``
    naming them.
    """
    if name not in STANDARD_TARGETS:
        raise ValueError(f"name must be one of {sorted(STANDARD_TARGETS)}, got {name!r}.")
    build = STANDARD_TARGETS[name]
    known = list(build.__code__.co_varnames[:build.__code__.co_argcount])
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for standard target {name!r}; it takes {known}.")
    return build(**options)
