"""Coupled kernels and the L-lag TV bound, on a 1-D Gaussian target where TV is computable.

Target U(z) = z^2 / 2 (pi = N(0, 1)), chains started from pi_0 = N(4, 0.5^2).
ULA with step h is the AR(1) chain z' = a z + sqrt(h) n, a = 1 - h/2: its law after t steps is
N(4 a^t, 0.25 a^(2t) + v (1 - a^(2t))) and its stationary law N(0, v), v = h / (1 - a^2), so
TV(pi_t, pi_h) is a 1-D integral. MALA's law after t steps is propagated on a fine grid with
its exact transition kernel (proposal density x acceptance, plus the rejection mass).
The L-lag bound (Biswas, Jacob & Vanetti 2019) must lie above the true TV at every t (up to its
Monte Carlo error) and fall to ~0 once the chains have mixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from problems import Z_THRESHOLD
from scipy.stats import norm

from ppl_ebm import coupling_jax, coupling_torch
from ppl_ebm.mixing import mixing_time, tv_upper_bound

pytestmark = pytest.mark.usefixtures("one_torch_thread")

START_MEAN, START_SD = 4.0, 0.5


def _potential_and_grad_jax(z):
    return 0.5 * jnp.sum(z * z, axis=-1), z


def _potential_and_grad_torch(z):
    return 0.5 * (z * z).sum(-1), z


def _meeting_times(backend: str, sampler: str, step: float, lag: int, pairs: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0 = (START_MEAN + START_SD * rng.standard_normal((pairs, 1))).astype(np.float32)
    y0 = (START_MEAN + START_SD * rng.standard_normal((pairs, 1))).astype(np.float32)
    if backend == "jax":
        tau = coupling_jax.lagged_meeting_times(
            jax.random.key(seed), jnp.asarray(x0), jnp.asarray(y0), _potential_and_grad_jax, sampler, step, lag, 5000
        )
        return np.asarray(tau)
    tau = coupling_torch.lagged_meeting_times(
        torch.Generator().manual_seed(seed), torch.from_numpy(x0), torch.from_numpy(y0), _potential_and_grad_torch,
        sampler, step, lag, 5000,
    )
    return tau.numpy()


def _tv_gaussians(mean_a, sd_a, mean_b, sd_b) -> float:
    grid = np.linspace(-15, 15, 60001)
    return 0.5 * np.trapezoid(np.abs(norm.pdf(grid, mean_a, sd_a) - norm.pdf(grid, mean_b, sd_b)), grid)


def _ula_exact_tv(step: float, iterations: np.ndarray) -> np.ndarray:
    a = 1.0 - step / 2.0
    stationary = step / (1.0 - a * a)
    out = []
    for t in iterations:
        variance = START_SD**2 * a ** (2 * t) + stationary * (1.0 - a ** (2 * t))
        out.append(_tv_gaussians(START_MEAN * a**t, np.sqrt(variance), 0.0, np.sqrt(stationary)))
    return np.array(out)


def _mala_exact_tv(step: float, iterations: np.ndarray) -> np.ndarray:
    """MALA's marginal law propagated on a grid with its exact kernel; TV to N(0, 1)."""
    grid = np.linspace(-7.0, 11.0, 1801)
    dx = grid[1] - grid[0]
    x, y = grid[:, None], grid[None, :]
    mean = x - 0.5 * step * x
    log_q_forward = norm.logpdf(y, mean, np.sqrt(step))
    log_q_backward = norm.logpdf(x, y - 0.5 * step * y, np.sqrt(step))
    log_alpha = np.minimum(0.0, 0.5 * x * x - 0.5 * y * y + log_q_backward - log_q_forward)
    kernel = np.exp(log_q_forward + log_alpha) * dx
    np.fill_diagonal(kernel, 0.0)
    kernel[np.diag_indices_from(kernel)] = 1.0 - kernel.sum(axis=1)
    mass = norm.pdf(grid, START_MEAN, START_SD) * dx
    mass /= mass.sum()
    target = norm.pdf(grid) * dx
    target /= target.sum()
    out, t = [], 0
    for wanted in iterations:
        while t < wanted:
            mass = mass @ kernel
            t += 1
        out.append(0.5 * np.abs(mass - target).sum())
    return np.array(out)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_reflection_maximal_coupling_is_maximal_with_exact_marginals(backend):
    n = 200_000
    mean_x = np.zeros((n, 2), np.float32)
    mean_y = np.tile(np.array([[0.5, 0.0]], np.float32), (n, 1))
    if backend == "jax":
        x, y, met = coupling_jax.reflection_maximal_coupling(jax.random.key(0), jnp.asarray(mean_x),
                                                             jnp.asarray(mean_y), 1.0)
    else:
        x, y, met = coupling_torch.reflection_maximal_coupling(torch.Generator().manual_seed(0),
                                                               torch.from_numpy(mean_x), torch.from_numpy(mean_y), 1.0)
    x, y, met = np.asarray(x, np.float64), np.asarray(y, np.float64), np.asarray(met)
    # The best any coupling can do: P(x = y) = 1 - TV = 2 Phi(-|dmu| / (2 sigma)).
    expected = 2.0 * norm.cdf(-0.25)
    assert abs(met.mean() - expected) < Z_THRESHOLD * np.sqrt(expected * (1 - expected) / n)
    assert np.all(x[met] == y[met]) and not np.any(np.all(x[~met] == y[~met], axis=1))
    for sample, mean in ((x, mean_x[0]), (y, mean_y[0])):
        np.testing.assert_array_less(np.abs(sample.mean(0) - mean), Z_THRESHOLD / np.sqrt(n))
        # Var of the sample variance of N(0,1) is 2/n.
        np.testing.assert_array_less(np.abs(sample.var(0) - 1.0), Z_THRESHOLD * np.sqrt(2.0 / n))


@pytest.mark.parametrize("backend", ["jax", "torch"])
@pytest.mark.parametrize("sampler, step", [("ula", 0.1), ("mala", 0.5)])
def test_lag_coupling_bound_lies_above_the_exact_tv(backend, sampler, step):
    lag, pairs = 20, 2000
    tau = _meeting_times(backend, sampler, step, lag, pairs, seed=1)
    assert np.all(tau > lag)
    iterations = np.arange(0, 121, 5)
    bound = tv_upper_bound(tau, lag, iterations)
    exact = _ula_exact_tv(step, iterations) if sampler == "ula" else _mala_exact_tv(step, iterations)
    # The bound is an expectation estimated from `pairs` pairs: it may dip below the truth by
    # its Monte Carlo error only (plus a hair for the grid when the truth is computed on one).
    slack = Z_THRESHOLD * np.nan_to_num(bound.standard_error) + 2e-3
    assert np.all(bound.bound + slack >= np.minimum(exact, 1.0)), np.c_[iterations, bound.bound, exact]
    # And it is informative: from > 1 near the start (TV ~ 1) to ~0 once mixed, with the
    # bound's mixing time no earlier than the true one and not wildly later.
    assert bound.bound[0] > 0.9 and exact[0] > 0.9
    true_time = int(iterations[np.argmax(exact <= 0.25)])
    bound_time = mixing_time(bound, 0.25)
    assert bound_time is not None and true_time <= bound_time + 5 <= 3 * true_time + 40


def test_backends_agree_on_meeting_times():
    # The same law of tau: compare means within their joint Monte Carlo error.
    jax_tau = _meeting_times("jax", "ula", 0.1, 10, 2000, seed=2).astype(float)
    torch_tau = _meeting_times("torch", "ula", 0.1, 10, 2000, seed=3).astype(float)
    se = np.sqrt(jax_tau.var(ddof=1) / jax_tau.size + torch_tau.var(ddof=1) / torch_tau.size)
    assert abs(jax_tau.mean() - torch_tau.mean()) < Z_THRESHOLD * se


def test_bound_rejects_censored_and_bad_input():
    with pytest.raises(ValueError, match="did not meet"):
        tv_upper_bound(np.array([30, -1]), lag=10)
    with pytest.raises(ValueError, match="exceed the lag"):
        tv_upper_bound(np.array([5, 30]), lag=10)
    with pytest.raises(ValueError, match="lag must be"):
        tv_upper_bound(np.array([30]), lag=0)
    with pytest.raises(ValueError, match="sampler must be"):
        coupling_jax.lagged_meeting_times(jax.random.key(0), jnp.zeros((2, 1)), jnp.zeros((2, 1)),
                                          _potential_and_grad_jax, "nuts", 0.1, 2, 10)
    # A bound computed by hand: tau = 25, L = 10 -> ceil((15 - t) / 10) = 2, 1, 0 at t = 0, 5, 15.
    bound = tv_upper_bound(np.array([25, 25]), lag=10, iterations=[0, 5, 15])
    np.testing.assert_array_equal(bound.bound, [2.0, 1.0, 0.0])


def test_nested_rhat_separates_forgotten_from_remembered_starts():
    from ppl_ebm.mixing import nested_rhat

    rng = np.random.default_rng(0)
    mixed = rng.standard_normal((64, 1, 2))  # one draw per chain, all from the same law
    assert nested_rhat(mixed, superchains=8).max() < 1.1
    stuck = mixed + np.repeat(np.arange(8.0), 8)[:, None, None]  # each superchain keeps its start
    assert nested_rhat(stuck, superchains=8).min() > 2.0
    with pytest.raises(ValueError, match="groups of >= 2"):
        nested_rhat(rng.standard_normal((4, 500, 1)), superchains=4)
