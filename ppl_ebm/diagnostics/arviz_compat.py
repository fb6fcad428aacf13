"""One small adapter over ArviZ 0.23 and ArviZ 1.x.

ppl_ebm supports two ArviZ generations (see ``pyproject.toml``):

- **ArviZ 0.23** (Python 3.11): ``arviz.InferenceData``; diagnostics ``arviz.ess``,
  ``arviz.rhat``, ``arviz.mcse`` on an ``xarray.Dataset``.
- **ArviZ 1.x** (Python >= 3.12): ``xarray.DataTree`` built by ``arviz_base.from_dict``;
  diagnostics ``arviz_stats.ess``, ``arviz_stats.rhat``, ``arviz_stats.mcse``, whose
  array layer accepts numpy arrays with ``chain_axis``/``draw_axis``.

Everything else in ppl_ebm goes through this module, so the difference lives in one
place. ArviZ is imported lazily: importing this module is cheap.

The diagnostics (:func:`ess`, :func:`rhat`, :func:`mcse`) take a numpy array
``(chain, draw, *event)`` and return a float64 array of shape ``event`` whose values
are those of ArviZ's own implementation (rank-normalised split R-hat and bulk/tail ESS
of Vehtari et al. 2021). Neither ArviZ generation has a vectorised path over event
dimensions: both evaluate their 2-D ``(chain, draw)`` kernel once per event element
(``make_ufunc``), so this module adds no loop of its own; callers that need to bound
memory on huge arrays chunk the event dimensions (see
:func:`ppl_ebm.diagnostics.summary.summarize`).

References
----------
Vehtari, A., Gelman, A., Simpson, D., Carpenter, B. and Bürkner, P.-C. (2021).
Rank-normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC. *Bayesian Analysis* 16(2), 667-718.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ARVIZ_MAJOR",
    "PER_CHAIN_RENAMES",
    "PER_CHAIN_COUNTS",
    "to_arviz",
    "ess",
    "rhat",
    "mcse",
    "pareto_khat",
]


def _detect_major() -> int:
    """Major version of the installed ArviZ (0 when only 0.x, 1 for the 1.x split packages)."""
    try:
        version = importlib.metadata.version("arviz")
    except importlib.metadata.PackageNotFoundError:
        try:
            importlib.metadata.version("arviz-base")
        except importlib.metadata.PackageNotFoundError:
            return 0
        return 1
    try:
        return int(version.split(".")[0])
    except ValueError:  # pragma: no cover - exotic version strings
        return 0


#: Major version of the installed ArviZ: ``0`` (0.23, ``InferenceData``) or ``1`` (``DataTree``).
ARVIZ_MAJOR: int = _detect_major()

#: Per-chain statistics (shape ``(chain,)``) that are rates or settings, broadcast over
#: draws into ``sample_stats`` under the ArviZ name on the right.
PER_CHAIN_RENAMES: dict[str, str] = {
    "acceptance": "acceptance_rate",
    "step_size": "step_size",
    "stopped": "chain_stopped",
}

#: Per-chain statistics that are *totals over the run*. Broadcasting them over draws
#: would make a sum over draws wrong, so they go to the attributes instead, as
#: ``{key}_per_chain`` (array) and ``{key}_total``.
PER_CHAIN_COUNTS: tuple[str, ...] = ("divergences", "nonfinite", "grad_evals")
# Statistics with no place in ArviZ's sample_stats (a matrix over the latent dimensions).
NOT_SAMPLE_STATS: tuple[str, ...] = ("inverse_mass_matrix",)


def _arviz023():
    """Import ArviZ 0.23 without its refactor ``FutureWarning``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ArviZ is undergoing a major refactor.*")
        import arviz

    return arviz


def _check_draws(draws: Any) -> np.ndarray:
    arr = np.asarray(draws, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"draws must have shape (chain, draw, *event); got shape {arr.shape}")
    return arr


def _as_dataset(arr: np.ndarray):
    """``xarray.Dataset`` with one variable ``x`` and dims ``chain, draw, x_dim_0, ...``.

    Built directly rather than through ``az.convert_to_dataset`` to skip coordinate
    creation and its "more chains than draws" warning (many-chain runs are normal here);
    the values ArviZ computes from it are identical.
    """
    import xarray as xr

    dims = ("chain", "draw", *(f"x_dim_{i}" for i in range(arr.ndim - 2)))
    return xr.Dataset({"x": (dims, arr)})


def ess(
    draws: Any,
    method: str = "bulk",
    *,
    prob: float | Sequence[float] | None = None,
    relative: bool = False,
) -> np.ndarray:
    """Effective sample size by ArviZ's implementation, per event element.

    Parameters
    ----------
    draws
        Array ``(chain, draw, *event)``; cast to float64.
    method
        Any ArviZ ESS method: ``"bulk"`` (rank-normalised split ESS), ``"tail"``
        (min of the ESS of the 5% and 95% quantile indicators), ``"mean"`` (split ESS
        of the raw draws, no rank normalisation), ``"sd"``, ``"quantile"``, ``"median"``,
        ``"mad"``, ``"z_scale"``, ``"folded"``, ``"identity"``, ``"local"``.
    prob
        Quantile(s) for ``"tail"``, ``"quantile"``, ``"local"``. For ``"tail"`` the
        default is 0.05, i.e. quantiles 5% and 95% as in Vehtari et al. (2021) and
        ArviZ 0.23; it is passed explicitly on ArviZ 1.x, whose dataset-level default
        (``rcParams["stats.ci_prob"]`` = 0.89) would give different numbers.
    relative
        Return ESS divided by the number of draws (``chain * draw``).

    Returns
    -------
    numpy.ndarray
        Shape ``event`` (0-d for a ``(chain, draw)`` input).

    References
    ----------
    Vehtari et al. (2021), Bayesian Analysis 16(2), 667-718.
    """
    arr = _check_draws(draws)
    if method == "tail" and prob is None:
        prob = 0.05
    if ARVIZ_MAJOR >= 1:
        import arviz_stats

        out = arviz_stats.ess(
            arr, method=method, relative=relative, prob=prob, chain_axis=0, draw_axis=1
        )
        return np.asarray(out, dtype=np.float64)
    az = _arviz023()
    kwargs: dict[str, Any] = {"method": method, "relative": relative}
    if prob is not None:
        kwargs["prob"] = prob
    return np.asarray(az.ess(_as_dataset(arr), **kwargs)["x"].values, dtype=np.float64)


def rhat(draws: Any, method: str = "rank") -> np.ndarray:
    """R-hat by ArviZ's implementation, per event element.

    Parameters
    ----------
    draws
        Array ``(chain, draw, *event)``; cast to float64.
    method
        ``"rank"`` (default: max of the rank-normalised split R-hat and the folded
        one, Vehtari et al. 2021), ``"split"``, ``"folded"``, ``"z_scale"``,
        ``"identity"``.

    Returns
    -------
    numpy.ndarray
        Shape ``event``.
    """
    arr = _check_draws(draws)
    if ARVIZ_MAJOR >= 1:
        import arviz_stats

        return np.asarray(
            arviz_stats.rhat(arr, method=method, chain_axis=0, draw_axis=1), dtype=np.float64
        )
    az = _arviz023()
    return np.asarray(az.rhat(_as_dataset(arr), method=method)["x"].values, dtype=np.float64)


def mcse(draws: Any, method: str = "mean", *, prob: float | None = None) -> np.ndarray:
    """Monte Carlo standard error by ArviZ's implementation, per event element.

    Parameters
    ----------
    draws
        Array ``(chain, draw, *event)``; cast to float64.
    method
        ``"mean"`` (sd / sqrt(ESS-mean)), ``"sd"``, ``"median"``, ``"quantile"``.
    prob
        Quantile for ``"quantile"``.

    Returns
    -------
    numpy.ndarray
        Shape ``event``.
    """
    arr = _check_draws(draws)
    if ARVIZ_MAJOR >= 1:
        import arviz_stats

        out = arviz_stats.mcse(arr, method=method, prob=prob, chain_axis=0, draw_axis=1)
        return np.asarray(out, dtype=np.float64)
    az = _arviz023()
    kwargs: dict[str, Any] = {"method": method}
    if prob is not None:
        kwargs["prob"] = prob
    return np.asarray(az.mcse(_as_dataset(arr), **kwargs)["x"].values, dtype=np.float64)


def pareto_khat(log_weights: Any) -> float:
    """Pareto k-hat of importance log weights (1-D, any normalisation) by ArviZ's PSIS.

    Vehtari et al. (2024): a self-normalised importance estimate is reliable when k-hat is
    below ``min(1 - 1 / log10(S), 0.7)`` for ``S`` draws; above it the weights' variance is
    infinite or nearly so and the estimate's standard error cannot be trusted.
    """
    lw = np.asarray(log_weights, dtype=np.float64).reshape(-1)
    # Degenerate weights overflow in ArviZ's smoothing weights: k-hat still comes out (large).
    with np.errstate(over="ignore"):
        if ARVIZ_MAJOR >= 1:
            from arviz_stats.base import array_stats

            _, khat = array_stats.psislw(lw, r_eff=1.0, axis=-1)
        else:
            _, khat = _arviz023().psislw(lw)
    return float(np.asarray(khat))


def _attr_value(value: Any) -> Any:
    """Scalar as a plain Python value (bools as ints, which netCDF can store)."""
    if isinstance(value, str):
        return value
    item = np.asarray(value).item()
    if isinstance(item, bool):
        return int(item)
    return item


def _split_stats(
    per_chain_stats: Mapping[str, Any] | None, n_chain: int, n_draw: int
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Sort SampleResult.stats into ``sample_stats`` arrays and attributes."""
    sample_stats: dict[str, np.ndarray] = {}
    attrs: dict[str, Any] = {}
    broadcast: list[str] = []
    for key, value in (per_chain_stats or {}).items():
        # Not per chain nor per draw, whatever its shape may happen to match: left out.
        if value is None or key in NOT_SAMPLE_STATS:
            continue
        if isinstance(value, str) or np.ndim(value) == 0:
            try:
                attrs[key] = _attr_value(value)
            except (TypeError, ValueError):
                continue
            continue
        arr = np.asarray(value)
        if arr.dtype == object:
            continue
        if arr.shape == (n_chain,):
            if key in PER_CHAIN_COUNTS:
                attrs[f"{key}_per_chain"] = arr.copy()
                attrs[f"{key}_total"] = _attr_value(arr.sum())
                if key == "divergences" and not np.any(arr):
                    # No transition diverged anywhere: an all-False per-draw flag is exact.
                    sample_stats["diverging"] = np.zeros((n_chain, n_draw), dtype=bool)
                continue
            name = PER_CHAIN_RENAMES.get(key, key)
            sample_stats[name] = np.repeat(arr[:, None], n_draw, axis=1)
            broadcast.append(name)
        elif arr.shape[:2] == (n_chain, n_draw):
            sample_stats[key] = arr
        # Any other shape has no place in the ArviZ schema and is left out.
    if broadcast:
        attrs["broadcast_from_per_chain"] = ",".join(broadcast)
    return sample_stats, attrs


def to_arviz(
    posterior: Mapping[str, Any],
    per_chain_stats: Mapping[str, Any] | None = None,
    sample_stats: Mapping[str, Any] | None = None,
    *,
    attrs: Mapping[str, Any] | None = None,
):
    """Build an ``InferenceData`` (ArviZ 0.23) or a ``DataTree`` (ArviZ 1.x).

    Parameters
    ----------
    posterior
        ``{name: array (chain, draw, *shape)}``. A variable with one event dimension
        gets the dimension name ``{name}_dim`` (e.g. ``z_dim`` for the latent site);
        more event dimensions are named ``{name}_dim_0``, ``{name}_dim_1``, ...
    per_chain_stats
        :attr:`ppl_ebm.result.SampleResult.stats`. Sorted as follows:

        - per-chain rates/settings of shape ``(chain,)`` are broadcast to
          ``(chain, draw)`` (constant along ``draw``) into ``sample_stats``:
          ``acceptance`` -> ``acceptance_rate`` (the chain's mean post-warmup
          acceptance probability), ``step_size`` -> ``step_size`` (final step size),
          ``stopped`` -> ``chain_stopped`` (bool); any other ``(chain,)`` array keeps
          its name. Their names are listed in the attribute
          ``broadcast_from_per_chain``;
        - per-chain totals (``divergences``, ``nonfinite``, ``grad_evals``) are not
          broadcast (a sum over draws would then be wrong): they go to the attributes
          as ``{key}_per_chain`` (array) and ``{key}_total``. ``diverging``, ArviZ's
          per-draw bool, is added only when no chain diverged (all ``False``, which
          is exact); with divergences the kernels record counts, not the draws, so
          no ``diverging`` is invented;
        - arrays already shaped ``(chain, draw, ...)`` go to ``sample_stats`` as they are;
        - scalars (``wall_seconds``, ``compile_seconds``, ``warmup_seconds``,
          ``sampling_seconds``, ...) go to the attributes (bools as ints);
        - anything else is left out.

        Attributes are the root attributes: ``idata.attrs`` on 0.23, ``dt.attrs`` on 1.x.
    sample_stats
        Extra per-draw statistics ``{name: (chain, draw, ...)}`` (e.g. a real per-draw
        ``diverging`` or ``lp``); they override those derived from ``per_chain_stats``.
    attrs
        Extra root attributes.

    Returns
    -------
    arviz.InferenceData or xarray.DataTree
    """
    post = {name: np.asarray(value) for name, value in posterior.items()}
    if not post:
        raise ValueError("posterior must hold at least one variable")
    shapes = {name: arr.shape[:2] for name, arr in post.items()}
    n_chain, n_draw = next(iter(shapes.values()))
    for name, arr in post.items():
        if arr.ndim < 2 or arr.shape[:2] != (n_chain, n_draw):
            raise ValueError(
                f"posterior[{name!r}] must have shape (chain={n_chain}, draw={n_draw}, ...); "
                f"got {arr.shape}"
            )
    dims: dict[str, list[str]] = {}
    for name, arr in post.items():
        if arr.ndim == 3:
            dims[name] = [f"{name}_dim"]
        elif arr.ndim > 3:
            dims[name] = [f"{name}_dim_{i}" for i in range(arr.ndim - 2)]

    stats, root_attrs = _split_stats(per_chain_stats, n_chain, n_draw)
    for name, value in (sample_stats or {}).items():
        arr = np.asarray(value)
        if arr.shape[:2] != (n_chain, n_draw):
            raise ValueError(
                f"sample_stats[{name!r}] must have shape (chain, draw, ...); got {arr.shape}"
            )
        stats[name] = arr
    for name, arr in stats.items():
        if arr.ndim == 3:
            dims.setdefault(name, [f"{name}_dim"])
        elif arr.ndim > 3:
            dims.setdefault(name, [f"{name}_dim_{i}" for i in range(arr.ndim - 2)])
    root_attrs.update(attrs or {})

    if ARVIZ_MAJOR >= 1:
        import arviz_base

        groups: dict[str, dict[str, np.ndarray]] = {"posterior": post}
        if stats:
            groups["sample_stats"] = stats
        return arviz_base.from_dict(
            groups,
            dims=dims,
            check_conventions=False,  # thousands of short chains are normal here
            attrs={"/": root_attrs} if root_attrs else None,
        )

    az = _arviz023()
    with warnings.catch_warnings():
        # Many-chain runs (chains > draws) are normal for batched Langevin samplers.
        warnings.filterwarnings("ignore", message="More chains .* than draws")
        return az.from_dict(
            posterior=post,
            sample_stats=stats or None,
            dims=dims,
            attrs=dict(root_attrs),
        )
