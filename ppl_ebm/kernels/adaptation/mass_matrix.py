"""Mass-matrix adaptation in warmup: the window schedule and the variance estimates, written once
for torch and JAX (arithmetic operators, ``.sum(0)`` and indexing only, as :mod:`.dual_averaging`).

A single scalar step per chain cannot serve coordinates whose scales differ by 10x: the step
is set by the narrowest direction and the widest one then moves by a random walk of tiny steps.
Preconditioned Langevin moves (:func:`ppl_ebm.kernels.langevin_jax.mala_step`) take the inverse
mass matrix ``C`` (an estimate of the target's covariance) so that every direction moves on
its own scale; this module estimates ``C`` during warmup.

**Windows** (Stan's, as NumPyro's ``build_adaptation_schedule``): an initial buffer of 75 steps
(the chains leave their start; step size only), then windows of 25, 50, 100, ... steps, the
last stretched to end where the terminal buffer of 50 steps begins (step size only, under the
final matrix). Warmups shorter than 150 use 15% / 75% / 10%; under 20 steps nothing is adapted.
At each window's end ``C`` becomes the window's estimate, the draws are forgotten, and the
step-size dual averaging restarts from the current averaged step (a new ``C`` changes what a
step means).

**Estimates.** With many chains (``>= CROSS_CHAIN_MIN_CHAINS``) all chains pool their draws:
each step adds ``chains`` draws of one law, so one window's estimate rests on ``chains x
window`` draws and every chain shares one ``C`` (leading axis 1). With fewer chains each chain
keeps its own within-chain estimate (Stan's, one ``C`` per chain, leading axis ``chains``),
since a few chains that have not yet met would otherwise add their distance to the variance.
Either way the sums are merged by Chan et al.'s parallel Welford update, stable in float32,
and regularised towards the identity as Stan does: ``n/(n+5) C + 1e-3 * 5/(n+5) I``.

Shapes: ``"diag"`` stores ``(groups, dim)``, ``"dense"`` ``(groups, dim, dim)``; ``groups`` is 1
(pooled) or ``chains``; both broadcast against ``(chains, dim)`` positions.

Pooled or not is decided from the *run's* number of chains (:func:`pooled`) and handed to
:func:`welford_update` explicitly, never read back from the shape: a torchrun rank holds a
block of the chains, and a block of one chain of per-chain matrices holds one group too.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = [
    "CROSS_CHAIN_MIN_CHAINS", "MASS_MATRICES", "MassState", "WelfordState", "pooled", "regularised_covariance",
    "welford_merge",
    "reported_inverse_mass", "step_rescale", "welford_init", "welford_update", "window_flags",
]

MASS_MATRICES = ("none", "diag", "dense")
# At 32 chains one 25-step window already pools 800 draws: enough for a variance per
# coordinate; fewer chains keep Stan's per-chain estimates.
CROSS_CHAIN_MIN_CHAINS = 32
# Stan's defaults (init_buffer, base window, term_buffer) and its minimum warmup.
INIT_BUFFER, BASE_WINDOW, TERM_BUFFER, MIN_WARMUP = 75, 25, 50, 20


class WelfordState(NamedTuple):
    """Draws seen in the current window (a 0-d count, the same for every group), their mean
    ``(groups, dim)`` and the sum of squared deviations ``(groups, dim)`` or ``(groups, dim, dim)``."""

    count: Any
    mean: Any
    m2: Any


class MassState(NamedTuple):
    """A sampler's preconditioning: the ``Preconditioner`` its moves use now (the inverse mass
    matrix and its factors, :func:`ppl_ebm.kernels.langevin_jax.preconditioner`) and the current
    window's :class:`WelfordState`."""

    preconditioner: Any
    welford: WelfordState


def pooled(num_chains: int) -> bool:
    """Whether a run of ``num_chains`` chains (all of them, over every process) pools one estimate."""
    return num_chains >= CROSS_CHAIN_MIN_CHAINS


def welford_init(mean_zeros: Any, m2_zeros: Any) -> WelfordState:
    """An empty window from zeros shaped as the mean and the second moments."""
    return WelfordState(m2_zeros.sum() * 0.0, mean_zeros, m2_zeros)


def _outer(vector: Any, dense: bool) -> Any:
    return vector[..., :, None] * vector[..., None, :] if dense else vector * vector


def welford_update(state: WelfordState, position: Any, pooled: bool) -> WelfordState:
    """Add one step's positions ``(chains, dim)``: to the one pooled group as ``chains`` draws
    (``pooled``), or one draw to each chain's group (Chan, Golub & LeVeque's merge of two
    batches' moments). ``pooled`` is the run's decision (:func:`pooled` of all its chains), a
    Python bool: the two cases differ in structure, not in values."""
    dense = state.m2.ndim == state.mean.ndim + 1
    if pooled:
        batch = position.shape[0]
        batch_mean = position.sum(0)[None] / batch
        batch_m2 = _outer(position - batch_mean, dense).sum(0)[None]
    else:
        batch, batch_mean, batch_m2 = 1, position, 0.0
    return welford_merge(state, batch, batch_mean, batch_m2)


def welford_merge(state: WelfordState, batch: Any, batch_mean: Any, batch_m2: Any) -> WelfordState:
    """Merge a batch's count, mean and centred second moments into ``state`` (Chan et al.); a
    batch pooled over processes (``torchrun``) comes here with its moments all-reduced."""
    dense = state.m2.ndim == state.mean.ndim + 1
    delta = batch_mean - state.mean
    count = state.count + batch
    mean = state.mean + delta * (batch / count)
    m2 = state.m2 + batch_m2 + _outer(delta, dense) * (state.count * batch / count)
    return WelfordState(count, mean, m2)


def regularised_covariance(state: WelfordState, identity: Any) -> Any:
    """The window's covariance (or variances) shrunk towards ``identity`` (ones for a diagonal,
    the identity matrix for a dense one) as Stan does, so a short window cannot give a
    singular or wildly small ``C``."""
    count = state.count
    covariance = state.m2 / (count - 1.0)
    return covariance * (count / (count + 5.0)) + identity * (1e-3 * 5.0 / (count + 5.0))


def step_rescale(old_inverse_mass: Any, new_inverse_mass: Any, identity: Any) -> Any:
    """The factor, one per group of chains (shape ``(groups,)``), that keeps MALA's acceptance
    when the inverse mass matrix changes from ``old`` to ``new``; ``identity`` is the window's
    (ones shaped as a diagonal matrix, or the ``(dim, dim)`` identity whose product picks a dense
    matrix's diagonal).

    MALA's acceptance on a Gaussian falls with ``sum_i h_i^3``, ``h_i = step m_i / sigma_i^2``
    the effective step of coordinate ``i`` (Roberts & Rosenthal 2001, inhomogeneous scales).
    The new matrix estimates ``sigma_i^2``, so keeping that sum gives ``new step = old step x
    mean_i((m_old,i / m_new,i)^3)^(1/3)``: the old step was held down by the smallest scale, the
    new one is not. Stan re-runs its step-size heuristic after each window instead; a warmup of
    tens of steps has no steps to spare for that (a 20-step warmup closes its window 2 steps
    before the end). Arithmetic only, for both backends."""
    dense = old_inverse_mass.ndim != identity.ndim
    old = (old_inverse_mass * identity).sum(-1) if dense else old_inverse_mass
    new = (new_inverse_mass * identity).sum(-1) if dense else new_inverse_mass
    return ((old / new) ** 3).mean(-1) ** (1.0 / 3.0)


def window_flags(done: Any, num_warmup: Any) -> tuple[Any, Any]:
    """``(collecting, closing)`` after the step that brought the chains to ``done`` steps:
    whether that step's positions belong to an adaptation window, and whether it closes one.

    Pure integer arithmetic so that ``done`` and ``num_warmup`` may be Python ints (torch) or
    traced JAX integers (one compiled program serves every warmup length). With ``a`` the
    initial buffer, ``w`` the base window and ``t`` the terminal buffer, window ``k`` ends after
    ``a + w (2^(k+1) - 1)`` steps unless the next one would pass ``num_warmup - t``, in which
    case it stretches to end there.
    """
    small = (num_warmup < INIT_BUFFER + BASE_WINDOW + TERM_BUFFER) * 1
    init = small * (15 * num_warmup // 100) + (1 - small) * INIT_BUFFER
    term = small * (num_warmup // 10) + (1 - small) * TERM_BUFFER
    window = small * (num_warmup - init - term) + (1 - small) * BASE_WINDOW
    window = window + (window <= 0) * 1  # never divide by zero (then MIN_WARMUP disables)
    last = num_warmup - term
    enabled = num_warmup >= MIN_WARMUP
    collecting = enabled & (done > init) & (done <= last)
    steps = done - init
    doublings = steps // window + 1
    doubling_end = (steps > 0) & (steps % window == 0) & ((doublings & (doublings - 1)) == 0)
    next_fits = init + window * (2 * doublings - 1) <= last
    closing = collecting & ((doubling_end & next_fits) | (done == last))
    return collecting, closing


def reported_inverse_mass(inverse_mass: Any) -> Any:
    """The stats' form of a stored inverse mass matrix: the one shared by every chain without
    its leading axis of 1, ``(dim,)`` or ``(dim, dim)``; per-chain ones as stored."""
    return inverse_mass[0] if inverse_mass.shape[0] == 1 else inverse_mass
