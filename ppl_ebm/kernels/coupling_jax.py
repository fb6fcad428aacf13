"""Coupled ULA and MALA kernels (MALA also with independence steps) and L-lag meeting times,
JAX core (mirrors :mod:`ppl_ebm.kernels.coupling_torch` name for name).

Biswas, Jacob & Vanetti (2019), "Estimating convergence of Markov chains with L-lag couplings":
run X alone for L steps, then advance ``(X_t, Y_{t-L})`` with a coupled kernel whose two
marginals are the sampler's own kernel and that makes the chains meet exactly; the meeting
time ``tau = inf{t > L: X_t = Y_{t-L}}`` gives ``TV(pi_t, pi) <= E[max(0, ceil((tau - L - t) / L))]``
(:func:`ppl_ebm.diagnostics.mixing.tv_upper_bound`). For ULA, ``pi`` is ULA's own stationary law at that
step, not the target: the bound says when the chain has forgotten its start, not its bias.

Both kernels move by a Gaussian ``N(mean(x), scale^2 I)``; the two proposals are drawn from the
reflection-maximal coupling (Bou-Rabee, Eberle & Zimmer 2020; Jacob, O'Leary & Atchade 2020),
which makes them equal with the largest possible probability and reflects the noise otherwise.
MALA then accepts both with one common uniform, so equal proposals accepted together meet.
Once met, a pair stays met (same state, same draws); meeting times are recorded and the pair
is carried along masked.

MALA with ``independence_every=k`` (:mod:`ppl_ebm.kernels.cycle`) interleaves
independence steps from N(0, I); their coupling gives both chains the same proposal and the
same uniform, so a pair meets whenever both accept, whatever the distance between them: the
jump that lets a chain leave its mode is also the one that lets two chains in different modes meet.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ppl_ebm.kernels.cycle import check_lagged_cycle, cycle_kernel
from ppl_ebm.kernels.registry import coupled_kernels
from ppl_ebm.kernels.langevin_jax import (
    LangevinState, Proposal, as_column, independence_log_ratio, is_finite, independence_step, langevin_init,
    mala_step, standard_normal_proposal,
    ula_step,
)

__all__ = [
    "coupled_independence_step", "coupled_mala_step", "coupled_ula_step", "lagged_meeting_times",
    "reflection_maximal_coupling",
]

PotentialAndGrad = Callable[[jax.Array], tuple[jax.Array, jax.Array]]


def reflection_maximal_coupling(
    rng_key: jax.Array, mean_x: jax.Array, mean_y: jax.Array, scale: float | jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw ``x ~ N(mean_x, scale^2 I)`` and ``y ~ N(mean_y, scale^2 I)`` per row, coupled.

    Returns ``(x, y, met)``: ``met`` rows have ``y == x`` exactly, which happens with
    probability ``1 - TV = 2 Phi(-|mean_x - mean_y| / (2 scale))``, the most any coupling gives.
    """
    normal_key, uniform_key = jax.random.split(rng_key)
    scale = as_column(scale, mean_x)
    xi = jax.random.normal(normal_key, mean_x.shape, dtype=mean_x.dtype)
    z = (mean_x - mean_y) / scale
    # Meet with probability min(1, phi(xi + z) / phi(xi)): then y = mean_y + scale (xi + z) = x.
    log_ratio = 0.5 * jnp.sum(xi * xi, axis=-1) - 0.5 * jnp.sum((xi + z) ** 2, axis=-1)
    uniform = jax.random.uniform(uniform_key, log_ratio.shape, dtype=mean_x.dtype)
    met = jnp.log(uniform) <= log_ratio
    norm = jnp.sqrt(jnp.sum(z * z, axis=-1, keepdims=True))
    direction = z / jnp.where(norm > 0, norm, 1.0)
    reflected = xi - 2.0 * jnp.sum(direction * xi, axis=-1, keepdims=True) * direction
    x = mean_x + scale * xi
    y = jnp.where(met[:, None], x, mean_y + scale * reflected)
    return x, y, met


def _evaluate_pair(potential_and_grad_fn: PotentialAndGrad, x: jax.Array, y: jax.Array):
    # One call on both chains of every pair: half the launches, the same arithmetic.
    potential, grad = potential_and_grad_fn(jnp.concatenate([x, y]))
    pairs = x.shape[0]
    return (potential[:pairs], grad[:pairs]), (potential[pairs:], grad[pairs:])


def _move(state: LangevinState, accept: jax.Array, position, potential, grad, nonfinite) -> LangevinState:
    return LangevinState(
        jnp.where(accept[:, None], position, state.position),
        jnp.where(accept, potential, state.potential),
        jnp.where(accept[:, None], grad, state.grad),
        state.active,
        state.nonfinite_count + nonfinite.astype(jnp.int32),
    )


def coupled_ula_step(
    rng_key: jax.Array,
    state_x: LangevinState,
    state_y: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    step_size: float | jax.Array,
    noise_scale: float | jax.Array,
) -> tuple[LangevinState, LangevinState, jax.Array]:
    """One ULA step of both chains of every pair; each marginal is :func:`ula_step`'s kernel.

    Returns the new states and ``met`` (the two new positions are equal)."""
    step = as_column(step_size, state_x.position)
    mean_x = state_x.position - 0.5 * step * state_x.grad
    mean_y = state_y.position - 0.5 * step * state_y.grad
    x, y, met = reflection_maximal_coupling(rng_key, mean_x, mean_y, noise_scale)
    (ux, gx), (uy, gy) = _evaluate_pair(potential_and_grad_fn, x, y)
    fx, fy = is_finite(ux, gx), is_finite(uy, gy)
    # A non-finite proposal stops that chain where it is (as ula_step does); it cannot meet.
    new_x = _move(state_x, fx, x, ux, gx, ~fx)
    new_y = _move(state_y, fy, y, uy, gy, ~fy)
    return new_x, new_y, met & fx & fy


def _mala_log_ratio(state: LangevinState, proposal, potential, grad, step) -> jax.Array:
    forward = proposal - state.position + 0.5 * step * state.grad
    backward = state.position - proposal + 0.5 * step * grad
    log_q = (jnp.sum(forward * forward, axis=-1) - jnp.sum(backward * backward, axis=-1)) / (2.0 * step[:, 0])
    log_ratio = state.potential - potential + log_q
    return jnp.where(is_finite(potential, grad), log_ratio, -jnp.inf)


def coupled_mala_step(
    rng_key: jax.Array,
    state_x: LangevinState,
    state_y: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    step_size: float | jax.Array,
) -> tuple[LangevinState, LangevinState, jax.Array]:
    """One MALA step of both chains of every pair; each marginal is :func:`mala_step`'s kernel.

    Proposals from the reflection-maximal coupling, one uniform for both accept tests."""
    proposal_key, accept_key = jax.random.split(rng_key)
    step = as_column(step_size, state_x.position)
    mean_x = state_x.position - 0.5 * step * state_x.grad
    mean_y = state_y.position - 0.5 * step * state_y.grad
    x, y, proposals_met = reflection_maximal_coupling(proposal_key, mean_x, mean_y, jnp.sqrt(step))
    (ux, gx), (uy, gy) = _evaluate_pair(potential_and_grad_fn, x, y)
    log_uniform = jnp.log(jax.random.uniform(accept_key, ux.shape, dtype=ux.dtype))
    accept_x = log_uniform < _mala_log_ratio(state_x, x, ux, gx, step)
    accept_y = log_uniform < _mala_log_ratio(state_y, y, uy, gy, step)
    new_x = _move(state_x, accept_x, x, ux, gx, ~is_finite(ux, gx))
    new_y = _move(state_y, accept_y, y, uy, gy, ~is_finite(uy, gy))
    return new_x, new_y, proposals_met & accept_x & accept_y


def coupled_independence_step(
    rng_key: jax.Array,
    state_x: LangevinState,
    state_y: LangevinState,
    potential_and_grad_fn: PotentialAndGrad,
    proposal: Proposal | None = None,
) -> tuple[LangevinState, LangevinState, jax.Array]:
    """One independence step from ``proposal`` (default N(0, I); a latent EBM's prior in u) of
    both chains of every pair; each marginal is
    :func:`ppl_ebm.kernels.langevin_jax.independence_step`'s kernel with that proposal.

    Both chains propose the same ``y ~ q`` and test it with one common uniform; a pair
    whose two chains both accept meets at ``y``. Returns the new states and ``met``."""
    proposal = standard_normal_proposal() if proposal is None else proposal
    proposal_key, accept_key = jax.random.split(rng_key)
    position = proposal.sample(proposal_key, state_x.position.shape, state_x.position.dtype)
    potential, grad = potential_and_grad_fn(position)  # one proposal serves both chains
    log_uniform = jnp.log(jax.random.uniform(accept_key, potential.shape, dtype=potential.dtype))
    # independence_step's own ratio, so each marginal of the coupled step is that kernel exactly.
    finite = is_finite(potential, grad)
    accept_x = finite & (log_uniform < independence_log_ratio(state_x, position, potential, proposal))
    accept_y = finite & (log_uniform < independence_log_ratio(state_y, position, potential, proposal))
    new_x = _move(state_x, accept_x, position, potential, grad, ~finite)
    new_y = _move(state_y, accept_y, position, potential, grad, ~finite)
    return new_x, new_y, accept_x & accept_y


def lagged_meeting_times(
    rng_key: jax.Array,
    initial_x: jax.Array,
    initial_y: jax.Array,
    potential_and_grad_fn: PotentialAndGrad,
    sampler: str,
    step_size: float | jax.Array,
    lag: int,
    max_iterations: int,
    noise_scale: float | jax.Array | None = None,
    independence_every: int | None = None,
    proposal: Proposal | None = None,
) -> jax.Array:
    """Meeting times ``tau`` of L-lag coupled chains, one per pair (row of ``initial_x``/``y``).

    ``initial_x`` and ``initial_y`` are independent draws from the initial law ``pi_0``. X runs
    ``lag`` steps alone, then the pair moves with the coupled kernel until it meets or X has
    taken ``max_iterations`` steps. Returns ``tau`` as int32, ``-1`` for pairs that did not meet
    (censored; raise ``max_iterations``). ``noise_scale`` (ULA only) defaults to
    ``sqrt(step_size)``. ``independence_every=k`` (MALA only) makes X's step ``t`` an
    independence step when ``(t + 1) % k == 0``, the uncoupled kernel's cycle; ``lag`` must
    then be a multiple of ``k``, and ``proposal`` is the law its independence steps propose
    from (default N(0, I); a latent EBM's prior in u, as :func:`ppl_ebm.sample` uses).
    """
    kernels = coupled_kernels()
    if sampler not in kernels:
        raise ValueError(f"sampler must be one of {kernels} (a Langevin kernel), got {sampler!r}.")
    every = check_lagged_cycle(sampler, lag, independence_every)
    if noise_scale is None:
        noise_scale = jnp.sqrt(jnp.asarray(step_size, dtype=initial_x.dtype))

    def single(t, key, state):
        if sampler == "ula":
            return ula_step(key, state, potential_and_grad_fn, step_size, noise_scale)[0]
        return cycle_kernel(jax.lax.cond, every, lambda: mala_step(key, state, potential_and_grad_fn, step_size)[0],
                            lambda: independence_step(key, state, potential_and_grad_fn, proposal)[0])(t)

    def coupled(t, key, state_x, state_y):
        # t is X's step index; Y's, t - lag, is at the same phase of the cycle.
        if sampler == "ula":
            return coupled_ula_step(key, state_x, state_y, potential_and_grad_fn, step_size, noise_scale)
        return cycle_kernel(
            jax.lax.cond, every, lambda: coupled_mala_step(key, state_x, state_y, potential_and_grad_fn, step_size),
            lambda: coupled_independence_step(key, state_x, state_y, potential_and_grad_fn, proposal))(t)

    @jax.jit
    def run(rng_key, initial_x, initial_y):
        lag_key, coupled_key = jax.random.split(rng_key)
        state_x = langevin_init(initial_x, potential_and_grad_fn)
        state_y = langevin_init(initial_y, potential_and_grad_fn)
        state_x = jax.lax.fori_loop(0, lag, lambda i, s: single(i, jax.random.fold_in(lag_key, i), s), state_x)
        tau = jnp.full(initial_x.shape[0], -1, dtype=jnp.int32)

        def condition(carry):
            t, _, _, tau = carry
            return (t < max_iterations) & jnp.any(tau < 0)

        def body(carry):
            t, state_x, state_y, tau = carry
            state_x, state_y, met = coupled(t, jax.random.fold_in(coupled_key, t), state_x, state_y)
            tau = jnp.where((tau < 0) & met, t + 1, tau)
            return t + 1, state_x, state_y, tau

        return jax.lax.while_loop(condition, body, (jnp.asarray(lag), state_x, state_y, tau))[3]

    return run(rng_key, initial_x, initial_y)
