"""Coupled kernels and the L-lag TV bound, on a 1-D Gaussian target where TV is computable.

Target U(z) = z^2 / 2 (pi = N(0, 1)), chains started from pi_0 = N(4, 0.5^2).
ULA with step h is the AR(1) chain z' = a z + sqrt(h) n, a = 1 - h/2: its law after t steps is
N(4 a^t, 0.25 a^(2t) + v (1 - a^(2t))) and its stationary law N(0, v), v = h / (1 - a^2), so
TV(pi_t, pi_h) is a 1-D integral. MALA's law after t steps is propagated on a fine grid with
its exact transition kernel (proposal density x acceptance, plus the rejection mass); so is
MALA's with independence steps from N(0, 1), on the target N(1, 0.5^2) (on N(0, 1) itself
every jump would be accepted and every pair would meet at the first one).
The L-lag bound (Biswas, Jacob & Vanetti 2019) must lie above the true TV at every t (up to its
Monte Carlo error) and fall to ~0 once the chains have mixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from problems import Z_THRESHOLD, two_mode_problem
from scipy.stats import norm

import ppl_ebm
from ppl_ebm.kernels import coupling_jax, coupling_torch, langevin_jax, langevin_torch
from ppl_ebm.diagnostics.mixing import mixing_time, tv_upper_bound

pytestmark = pytest.mark.usefixtures("one_torch_thread")

START_MEAN, START_SD = 4.0, 0.5
STANDARD = (0.0, 1.0)  # the target N(mean, sd^2)
OFF_PRIOR = (1.0, 0.5)  # narrower than and off N(0, 1): independence steps are sometimes refused


def _gaussian_potential_and_grad(backend: str, target=STANDARD):
    mean, sd = target
    if backend == "jax":
        return lambda z: (0.5 * jnp.sum(((z - mean) / sd) ** 2, axis=-1), (z - mean) / sd**2)
    return lambda z: (0.5 * (((z - mean) / sd) ** 2).sum(-1), (z - mean) / sd**2)


def _meeting_times(backend: str, sampler: str, step: float, lag: int, pairs: int, seed: int, every=None,
                   target=STANDARD) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0 = (START_MEAN + START_SD * rng.standard_normal((pairs, 1))).astype(np.float32)
    y0 = (START_MEAN + START_SD * rng.standard_normal((pairs, 1))).astype(np.float32)
    potential_and_grad = _gaussian_potential_and_grad(backend, target)
    if backend == "jax":
        tau = coupling_jax.lagged_meeting_times(jax.random.key(seed), jnp.asarray(x0), jnp.asarray(y0),
                                                potential_and_grad, sampler, step, lag, 5000, independence_every=every)
        return np.asarray(tau)
    tau = coupling_torch.lagged_meeting_times(torch.Generator().manual_seed(seed), torch.from_numpy(x0),
                                              torch.from_numpy(y0), potential_and_grad, sampler, step, lag, 5000,
                                              independence_every=every)
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


def _metropolis_kernel(log_target, log_q_forward, log_q_backward, dx) -> np.ndarray:
    """Row x of the grid: proposal density x acceptance to each y, the rejection mass on x."""
    log_alpha = np.minimum(0.0, log_target[None, :] - log_target[:, None] + log_q_backward - log_q_forward)
    kernel = np.exp(log_q_forward + log_alpha) * dx
    np.fill_diagonal(kernel, 0.0)
    kernel[np.diag_indices_from(kernel)] = 1.0 - kernel.sum(axis=1)
    return kernel


def _mala_exact_tv(step: float, iterations: np.ndarray, every=None, target=STANDARD) -> np.ndarray:
    """MALA's marginal law propagated on a grid with its exact kernels (step j an independence
    step from N(0, 1) when (j + 1) % every == 0, the samplers' cycle); TV to the target."""
    grid = np.linspace(-7.0, 11.0, 1801)
    dx = grid[1] - grid[0]
    x, y = grid[:, None], grid[None, :]
    log_target = norm.logpdf(grid, *target)
    drift = lambda v: v - 0.5 * step * (v - target[0]) / target[1] ** 2  # noqa: E731
    mala = _metropolis_kernel(log_target, norm.logpdf(y, drift(x), np.sqrt(step)),
                              norm.logpdf(x, drift(y), np.sqrt(step)), dx)
    independence = _metropolis_kernel(log_target, norm.logpdf(y) + 0.0 * x, norm.logpdf(x) + 0.0 * y, dx)
    mass = norm.pdf(grid, START_MEAN, START_SD) * dx
    mass /= mass.sum()
    target_mass = np.exp(log_target) * dx
    target_mass /= target_mass.sum()
    out, t = [], 0
    for wanted in iterations:
        while t < wanted:
            mass = mass @ (independence if every is not None and (t + 1) % every == 0 else mala)
            t += 1
        out.append(0.5 * np.abs(mass - target_mass).sum())
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
@pytest.mark.parametrize("sampler, step, every, target",
                         [("ula", 0.1, None, STANDARD), ("mala", 0.5, None, STANDARD), ("mala", 0.1, 2, OFF_PRIOR)])
def test_lag_coupling_bound_lies_above_the_exact_tv(backend, sampler, step, every, target):
    lag, pairs = 20, 2000
    tau = _meeting_times(backend, sampler, step, lag, pairs, seed=1, every=every, target=target)
    assert np.all(tau > lag)
    iterations = np.arange(0, 121, 5)
    bound = tv_upper_bound(tau, lag, iterations)
    exact = _ula_exact_tv(step, iterations) if sampler == "ula" else _mala_exact_tv(step, iterations, every, target)
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


@pytest.mark.parametrize("sampler, step, every, target", [("ula", 0.1, None, STANDARD), ("mala", 0.1, 2, OFF_PRIOR)])
def test_backends_agree_on_meeting_times(sampler, step, every, target):
    # The same law of tau: compare means within their joint Monte Carlo error.
    jax_tau = _meeting_times("jax", sampler, step, 10, 2000, seed=2, every=every, target=target).astype(float)
    torch_tau = _meeting_times("torch", sampler, step, 10, 2000, seed=3, every=every, target=target).astype(float)
    se = np.sqrt(jax_tau.var(ddof=1) / jax_tau.size + torch_tau.var(ddof=1) / torch_tau.size)
    assert abs(jax_tau.mean() - torch_tau.mean()) < Z_THRESHOLD * se


def test_bound_rejects_censored_and_bad_input():
    with pytest.raises(ValueError, match="did not meet"):
        tv_upper_bound(np.array([30, -1]), lag=10)
    with pytest.raises(ValueError, match="exceed the lag"):
        tv_upper_bound(np.array([5, 30]), lag=10)
    with pytest.raises(ValueError, match="lag must be"):
        tv_upper_bound(np.array([30]), lag=0)
    potential_and_grad = _gaussian_potential_and_grad("jax")
    with pytest.raises(ValueError, match="sampler must be"):
        coupling_jax.lagged_meeting_times(jax.random.key(0), jnp.zeros((2, 1)), jnp.zeros((2, 1)),
                                          potential_and_grad, "nuts", 0.1, 2, 10)
    for backend, module, zeros in (("jax", coupling_jax, jnp.zeros((2, 1))),
                                   ("torch", coupling_torch, torch.zeros((2, 1)))):
        potential_and_grad = _gaussian_potential_and_grad(backend)
        # lag 5 with a cycle of 2 would pair X's MALA step with Y's jump.
        with pytest.raises(ValueError, match="must be a multiple of independence_every"):
            module.lagged_meeting_times(None, zeros, zeros, potential_and_grad, "mala", 0.1, 5, 10,
                                        independence_every=2)
        with pytest.raises(ValueError, match="a MALA option"):
            module.lagged_meeting_times(None, zeros, zeros, potential_and_grad, "ula", 0.1, 4, 10,
                                        independence_every=2)
    # A bound computed by hand: tau = 25, L = 10 -> ceil((15 - t) / 10) = 2, 1, 0 at t = 0, 5, 15.
    bound = tv_upper_bound(np.array([25, 25]), lag=10, iterations=[0, 5, 15])
    np.testing.assert_array_equal(bound.bound, [2.0, 1.0, 0.0])


def test_nested_rhat_separates_forgotten_from_remembered_starts():
    from ppl_ebm.diagnostics.mixing import nested_rhat

    rng = np.random.default_rng(0)
    mixed = rng.standard_normal((64, 1, 2))  # one draw per chain, all from the same law
    assert nested_rhat(mixed, superchains=8).max() < 1.1
    stuck = mixed + np.repeat(np.arange(8.0), 8)[:, None, None]  # each superchain keeps its start
    assert nested_rhat(stuck, superchains=8).min() > 2.0
    with pytest.raises(ValueError, match="groups of >= 2"):
        nested_rhat(rng.standard_normal((4, 500, 1)), superchains=4)


@pytest.mark.parametrize("chains_per_superchain, draws", [(20, 1), (4, 1), (10, 5)])
def test_nested_rhat_reference_is_what_independent_draws_read(chains_per_superchain, draws):
    # 2000 replicates of the mixed case: the mean of sqrt(1 + B/W) agrees with the first-order
    # value within its MCSE plus the second-order term (-var(B/W)/8 ~ 1e-3), and a fixed 1.01
    # is out of reach at m = 20 (the study's defaults), which is why the report uses it.
    from ppl_ebm.diagnostics.mixing import nested_rhat, nested_rhat_reference

    rng = np.random.default_rng(1)
    superchains = 50
    values = np.array([nested_rhat(rng.standard_normal((superchains * chains_per_superchain, draws, 1)),
                                   superchains)[0] for _ in range(2000)])
    reference = nested_rhat_reference(chains_per_superchain, draws)
    mcse = values.std(ddof=1) / np.sqrt(values.size)
    assert abs(values.mean() - reference) < 4.5 * mcse + 2e-3, (values.mean(), reference, mcse)
    if (chains_per_superchain, draws) == (20, 1):
        assert np.mean(values < 1.01) < 0.01
    with pytest.raises(ValueError, match=">= 2 chains per superchain"):
        nested_rhat_reference(1, 1)


def _independence_steps(backend: str, ebm, x0: np.ndarray, y0: np.ndarray, seed: int):
    """One coupled independence step from (x0, y0), and one uncoupled step from each of x0, y0."""
    if backend == "jax":
        potential_and_grad = ebm.to_jax().potential_and_grad
        init = lambda z: langevin_jax.langevin_init(jnp.asarray(z), potential_and_grad)  # noqa: E731
        keys = jax.random.split(jax.random.key(seed), 3)
        x, y, met = coupling_jax.coupled_independence_step(keys[0], init(x0), init(y0), potential_and_grad)
        alone = [langevin_jax.independence_step(key, init(z), potential_and_grad)[0] for key, z in
                 zip(keys[1:], (x0, y0))]
    else:
        potential_and_grad = ebm.potential_and_grad
        init = lambda z: langevin_torch.langevin_init(torch.from_numpy(z), potential_and_grad)  # noqa: E731
        rng = torch.Generator().manual_seed(seed)
        x, y, met = coupling_torch.coupled_independence_step(rng, init(x0), init(y0), potential_and_grad)
        alone = [langevin_torch.independence_step(rng, init(z), potential_and_grad)[0] for z in (x0, y0)]
    positions = [np.asarray(state.position, np.float64) for state in (x, y, *alone)]
    return positions[0], positions[1], np.asarray(met), positions[2], positions[3]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_coupled_independence_step_has_the_uncoupled_kernel_as_marginals(backend):
    problem = ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0)
    sd = np.sqrt(np.diag(problem.covariance))
    n = 100_000
    rng = np.random.default_rng(0)
    # X from one point in the target's tail, Y from the prior: the two chains' ratios differ.
    x0 = np.tile(problem.mean + 2.5 * sd, (n, 1)).astype(np.float32)
    y0 = rng.standard_normal((n, 2)).astype(np.float32)
    x, y, met, x_alone, y_alone = _independence_steps(backend, problem.ebm, x0, y0, seed=1)
    # Both chains accepted the one common proposal exactly when the pair met.
    assert np.all(x[met] == y[met]) and not np.any(np.all(x[~met] == y[~met], axis=1))
    assert 0.05 < met.mean() < 0.95
    # Each marginal is the uncoupled kernel's law from the same starts: the move probability
    # and the mean of the new state, within the combined error of two independent samples.
    for label, coupled, alone, start in (("x", x, x_alone, x0), ("y", y, y_alone, y0)):
        moved, moved_alone = np.any(coupled != start, axis=1), np.any(alone != start, axis=1)
        p = 0.5 * (moved.mean() + moved_alone.mean())
        assert abs(moved.mean() - moved_alone.mean()) < Z_THRESHOLD * np.sqrt(2 * p * (1 - p) / n), label
        se = np.sqrt((coupled.var(0) + alone.var(0)) / n)
        np.testing.assert_array_less(np.abs(coupled.mean(0) - alone.mean(0)), Z_THRESHOLD * se, err_msg=label)


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_repeated_coupled_independence_steps_keep_the_gaussian_target(backend):
    # X drawn from the exact target stays there under repeated coupled steps, whatever Y does.
    problem = ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0)
    n = 50_000
    rng = np.random.default_rng(2)
    x = rng.multivariate_normal(problem.mean, problem.covariance, n).astype(np.float32)
    y = (3.0 + rng.standard_normal((n, 2))).astype(np.float32)
    met_fraction = []
    for seed in range(10):
        x, y, _, _, _ = _independence_steps(backend, problem.ebm, x.astype(np.float32), y.astype(np.float32), seed)
        met_fraction.append(np.all(x == y, axis=1).mean())
    sd = np.sqrt(np.diag(problem.covariance))
    np.testing.assert_array_less(np.abs(x.mean(0) - problem.mean), Z_THRESHOLD * sd / np.sqrt(n))
    # Var of a Gaussian sample variance: 2 sd^4 / n.
    np.testing.assert_array_less(np.abs(x.var(0) - sd**2), Z_THRESHOLD * sd**2 * np.sqrt(2.0 / n))
    assert 0 < met_fraction[0] < met_fraction[-1]  # met pairs stay met, and more meet


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_independence_steps_make_pairs_in_different_modes_meet(backend):
    # Two modes Langevin steps do not cross: plain MALA pairs started one chain in each mode
    # stay apart, MALA with independence steps meets them all.
    ebm, _, _ = two_mode_problem(separation=1.5, scale=0.35)
    rng = np.random.default_rng(3)
    x0 = (np.array([1.5, 0.0]) + 0.35 * rng.standard_normal((200, 2))).astype(np.float32)
    y0 = (np.array([-1.5, 0.0]) + 0.35 * rng.standard_normal((200, 2))).astype(np.float32)
    met = {}
    for every in (None, 2):
        if backend == "jax":
            tau = coupling_jax.lagged_meeting_times(jax.random.key(4), jnp.asarray(x0), jnp.asarray(y0),
                                                    ebm.to_jax().potential_and_grad, "mala", 0.05, 10, 1000,
                                                    independence_every=every)
        else:
            tau = coupling_torch.lagged_meeting_times(torch.Generator().manual_seed(4), torch.from_numpy(x0),
                                                      torch.from_numpy(y0), ebm.potential_and_grad, "mala", 0.05, 10,
                                                      1000, independence_every=every)
        met[every] = np.asarray(tau) > 0
    assert met[2].all() and met[None].mean() < 0.05


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_coupled_independence_step_under_a_box_prior_is_the_samplers_own_step(backend):
    # Under a prior other than N(0, I) the independence step proposes from the prior in u and
    # weighs it by prior_potential; the coupled step must do the same, so that its marginal is
    # the kernel ppl_ebm.sample runs: same random numbers, same moves as the uncoupled step.
    ebm = ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0).ebm
    box = ppl_ebm.LatentEBM(ebm.generator, ebm.critic, prior="uniform")
    if backend == "torch":
        coupling, langevin, target = coupling_torch, langevin_torch, box
        start = target.prior_sample_unconstrained(64, generator=torch.Generator().manual_seed(1))

        def rng():
            return torch.Generator().manual_seed(5)
    else:
        coupling, langevin, target = coupling_jax, langevin_jax, box.to_jax()
        start = target.prior_sample_unconstrained(jax.random.key(1), 64)

        def rng():
            return jax.random.key(5)
    potential_and_grad = langevin.batched_value_and_grad(target.potential)
    proposal = langevin.prior_proposal(target)
    assert proposal is not None
    state = langevin.langevin_init(start, potential_and_grad)
    alone, _ = langevin.independence_step(rng(), state, potential_and_grad, proposal)
    coupled_x, coupled_y, met = coupling.coupled_independence_step(rng(), state, state, potential_and_grad, proposal)
    np.testing.assert_array_equal(np.asarray(coupled_x.position), np.asarray(alone.position))
    np.testing.assert_array_equal(np.asarray(met), np.asarray(alone.position != start).any(-1))
    # And not the N(0, I) step: the proposals differ in law, so the moves differ.
    default, _ = langevin.independence_step(rng(), state, potential_and_grad)
    assert not np.array_equal(np.asarray(default.position), np.asarray(alone.position))
