"""The object every sampler returns through :func:`ppl_ebm.sample`, and its run statistics."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Record", "SampleResult", "SamplerStats", "jsonable"]


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars turned into lists and Python numbers, tuples into
    lists, recursively through dicts and lists: what :func:`json.dumps` writes (NaN included,
    as ``NaN``)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


class Record(Mapping[str, Any]):
    """Read-only mapping view of a dataclass's fields, for records that replaced string-keyed
    dicts: ``record["name"]``, ``get``, ``keys``, ``items``, ``in``, iteration and ``len`` behave
    as on the dict the record replaced.

    A field holding ``None`` is an absent key (a statistic this run does not have), so
    ``"independence_acceptance" in stats`` is False for plain MALA, as with the old dicts;
    a name that is no field raises :class:`KeyError` like a dict. Equality is the mapping's
    (as a dict's, it compares values, so records holding arrays raise on ``==`` as those
    dicts did).
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str) or key not in self._field_names():
            raise KeyError(key)
        value = getattr(self, key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._field_names() if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    @classmethod
    def _field_names(cls) -> dict[str, None]:
        # An ordered set of the field names: the keys in the order the dataclass declares them.
        return dict.fromkeys(item.name for item in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """The present keys and their values as stored (numpy arrays stay arrays)."""
        return dict(self.items())

    def to_json(self) -> dict[str, Any]:
        """:meth:`to_dict` made JSON-able by :func:`jsonable` (arrays as lists)."""
        return jsonable(self.to_dict())


#: Per-chain fields of :class:`SamplerStats`: 1-d arrays with one entry per chain.
_PER_CHAIN_FIELDS: tuple[str, ...] = (
    "acceptance", "step_size", "divergences", "nonfinite", "stopped", "grad_evals", "independence_acceptance",
    "potential_evals", "capped_iterations",
)


@dataclass(frozen=True, eq=False)
class SamplerStats(Record):
    """Statistics of one sampling run, as :attr:`SampleResult.stats`.

    A read-only mapping as well (:class:`Record`): ``stats["acceptance"]``,
    ``stats.get("independence_acceptance")`` and ``"converged" in stats`` read it as the dict
    it replaced did; optional fields left ``None`` are absent keys.

    Attributes
    ----------
    acceptance : numpy.ndarray
        ``(chain,)`` mean acceptance probability after warmup (1.0 for ULA; MALA with
        ``independence_every`` and ``ex2mcmc``: over their Langevin steps; ``isir``: the
        probability that a fresh particle is kept).
    step_size : numpy.ndarray
        ``(chain,)`` final step size.
    divergences : numpy.ndarray
        ``(chain,)`` int: divergent transitions (NUTS/HMC; 0 for Langevin).
    nonfinite : numpy.ndarray
        ``(chain,)`` int: non-finite potentials or gradients met (MALA rejects them, ULA stops
        the chain).
    stopped : numpy.ndarray
        ``(chain,)`` bool: ULA chains stopped by a non-finite value.
    grad_evals : numpy.ndarray
        ``(chain,)`` int: potential-gradient evaluations, warmup included.
    potential_evals : numpy.ndarray or None
        ``(chain,)`` int: potential evaluations, warmup included, gradients' own among them;
        only for samplers that also evaluate the potential alone (``isir``, ``ex2mcmc``:
        their N - 1 proposals per i-SIR step). Absent: every potential came with its gradient.
    wall_seconds : float
        The whole :func:`ppl_ebm.sample` call, as a stopwatch around it reads: set-up, compile,
        warmup, sampling and constrain (a bare driver call: its own loop). Never less than the
        sum of the parts below; the rest is the driver's bookkeeping (kernel initialisation,
        ``until="converged"``'s checks between blocks).
    setup_seconds : float
        Before the sampler's loop: the target built (a model traced, a latent EBM translated
        to JAX), memory checked, starting points drawn.
    compile_seconds : float
        Compilation of the sampler's programs (JAX's tracing and XLA; NumPyro's NUTS/HMC too);
        0 where nothing compiles (torch); NaN where it is not measured apart.
    warmup_seconds, sampling_seconds : float
        The loop's warmup and sampling, compilation left out (it is ``compile_seconds``).
    constrain_seconds : float
        After sampling: the draws mapped to their sites' support (a model's constrain pass)
        and, with ``return_generated``, pushed through the generator.
        The timing fields are summed over sessions when a ``draws_dir`` run was resumed.
    budget_stopped : bool
        Whether ``max_seconds`` cut the run short.
    stopped_in : str or None
        ``"warmup"`` (no draws kept) or ``"sampling"`` when ``max_seconds`` cut the run;
        absent otherwise.
    capped_iterations : numpy.ndarray or None
        ``(chain,)`` int, HMC only: iterations whose trajectory the leapfrog cap
        (``max_leapfrog_steps``) shortened, warmup included.
    independence_acceptance : numpy.ndarray or None
        ``(chain,)``: only for MALA with ``independence_every``: mean acceptance of its
        independence steps after warmup; for ``ex2mcmc``, of its i-SIR steps.
    resumed_at_iteration : int or None
        ULA/MALA: the iteration this call started from (0 unless a ``draws_dir`` run was
        resumed); None for NUTS/HMC.
    converged, convergence_history, steps_taken, target_rhat, target_ess
        Only with ``until="converged"`` (:mod:`ppl_ebm.drivers.convergence`): whether the
        targets were met; one ``{"draws", "rhat_max", "ess_bulk_min", "ess_tail_min"}`` dict
        per check; steps per chain, warmup included; the targets asked for.
    inverse_mass_matrix : numpy.ndarray or None
        Our MALA-family samplers and ULA with ``mass_matrix`` ``"diag"`` or ``"dense"``: the
        inverse mass matrix (the target's covariance as estimated in warmup) the moves used
        after warmup. Shared by every chain (32 chains or more): ``(dim,)`` diagonal or
        ``(dim, dim)`` dense; one per chain (fewer chains): ``(chain, dim)`` or
        ``(chain, dim, dim)``. The identity where warmup was under 20 steps. None otherwise.
    """

    acceptance: np.ndarray
    step_size: np.ndarray
    divergences: np.ndarray
    nonfinite: np.ndarray
    stopped: np.ndarray
    grad_evals: np.ndarray
    wall_seconds: float
    compile_seconds: float
    warmup_seconds: float
    sampling_seconds: float
    budget_stopped: bool
    setup_seconds: float = 0.0
    constrain_seconds: float = 0.0
    stopped_in: str | None = None
    capped_iterations: np.ndarray | None = None
    independence_acceptance: np.ndarray | None = None
    potential_evals: np.ndarray | None = None
    resumed_at_iteration: int | None = None
    converged: bool | None = None
    convergence_history: list[dict[str, float]] | None = None
    steps_taken: int | None = None
    target_rhat: float | None = None
    target_ess: float | None = None
    inverse_mass_matrix: np.ndarray | None = None

    def __post_init__(self) -> None:
        # One chain count for every per-chain field: a driver that mixed up shapes fails here,
        # not later inside ArviZ's export or a report's sum.
        chains = None
        for name in _PER_CHAIN_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            array = np.asarray(value)
            if array.ndim != 1 or (chains is not None and array.shape[0] != chains):
                raise ValueError(f"{name} must have shape (chain,) like the other per-chain statistics "
                                 f"({chains if chains is not None else 'chain'},); got {array.shape}.")
            chains = array.shape[0]
            object.__setattr__(self, name, array)  # frozen: the dataclass's own way to normalise


@dataclass
class SampleResult:
    """Draws and run statistics of one sampling run.

    Attributes
    ----------
    latents
        Post-warmup latent draws, shape ``(chain, draw, latent_dim)`` (float32 numpy).
    stats
        The run's statistics: a :class:`SamplerStats` from every sampler of
        :func:`ppl_ebm.sample` (see there for its keys). A hand-built result may hold any
        mapping of the same keys instead; readers use only the mapping interface.
    sampler, backend
        What produced the draws (``"ula"``, ``"mala"``, ``"nuts"``, ``"hmc"``;
        ``"torch"`` or ``"jax"``).
    site
        Name of the latent site the draws belong to.
    generated
        ``G(z)`` for every draw, shape ``(chain, draw, *data_shape)``, when requested.
    posterior
        Draws per model site (constrained), ``(chain, draw, *site_shape)``; for a latent EBM
        just ``{site: latents}``.
    extra
        Sampler settings, kept for reports.
    """

    latents: np.ndarray
    stats: SamplerStats | Mapping[str, Any]
    sampler: str
    backend: str
    site: str = "z"
    generated: np.ndarray | None = None
    posterior: dict[str, np.ndarray] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_chains(self) -> int:
        return int(self.latents.shape[0])

    @property
    def num_draws(self) -> int:
        return int(self.latents.shape[1])

    @property
    def total_grad_evals(self) -> int:
        return int(np.sum(self.stats["grad_evals"]))

    def to_arviz(self):
        """ArviZ object of the draws: ``InferenceData`` (ArviZ 0.23) or ``DataTree`` (ArviZ 1.x).

        The posterior holds the latent site (dims ``chain, draw, latent_dim``) and, when
        present, ``generated``; ``sample_stats`` holds the per-chain statistics broadcast
        over draws where ArviZ expects that shape.
        """
        from ppl_ebm.diagnostics.arviz_compat import to_arviz

        posterior = dict(self.posterior) if self.posterior else {self.site: self.latents}
        if self.generated is not None:
            posterior["generated"] = self.generated
        return to_arviz(posterior, per_chain_stats=self.stats)

    def __repr__(self) -> str:
        return (
            f"SampleResult(sampler={self.sampler!r}, backend={self.backend!r}, "
            f"chains={self.num_chains}, draws={self.num_draws}, "
            f"latent_dim={self.latents.shape[-1]}, "
            f"wall_seconds={self.stats.get('wall_seconds', float('nan')):.3g})"
        )
