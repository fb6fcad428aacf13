"""Generator-only, DRS, MH-GAN and DOT on a latent EBM with a closed-form target.

``G(z) = z`` in 2-D and ``d(x) = -a/2 |x - m|^2`` make the DDLS / DRS / MH-GAN target
``p0(z) exp(d(G(z)))`` a Gaussian with precision ``(1 + a) I`` and mean ``a m / (1 + a)``.
DRS and MH-GAN return independent draws (one rejection loop, or one chain, per sample), so
the tolerances are Z_THRESHOLD standard errors of i.i.d. means and variances.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from problems import Z_THRESHOLD

from ppl_ebm.baselines import BaselineResult, dot, drs, estimate_lipschitz, generator_only, mh_gan
from ppl_ebm.baselines.common import generate_and_tilt
from ppl_ebm.targets.gaussian import QuadraticCritic
from ppl_ebm.targets.latent_ebm import LatentEBM

STRENGTH = 1.0  # a
CENTER = np.array([1.0, 0.5])  # m
EXACT_MEAN = STRENGTH * CENTER / (1 + STRENGTH)
EXACT_VARIANCE = 1 / (1 + STRENGTH)
# E_p0[exp(d)] = (1 + a)^(-dim/2) exp(-a |m|^2 / (2 (1 + a))): exact rejection's acceptance.
EXACT_ACCEPTANCE = (1 + STRENGTH) ** -1 * math.exp(-STRENGTH * CENTER @ CENTER / (2 * (1 + STRENGTH)))


# Small tensors: run torch on one thread (see conftest.one_torch_thread).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _identity_generator() -> torch.nn.Linear:
    generator = torch.nn.Linear(2, 2)
    with torch.no_grad():
        generator.weight.copy_(torch.eye(2))
        generator.bias.zero_()
    return generator


class LinearCritic(torch.nn.Module):
    def __init__(self, direction):
        super().__init__()
        self.register_buffer("direction", torch.as_tensor(direction, dtype=torch.float32))

    def forward(self, x):
        return x @ self.direction


@pytest.fixture(scope="module")
def ebm() -> LatentEBM:
    critic = QuadraticCritic(torch.tensor(CENTER, dtype=torch.float32), STRENGTH * torch.eye(2))
    return LatentEBM(_identity_generator(), critic)


def _assert_iid_moments(draws, mean, variance, label):
    """Per-coordinate mean and variance within Z_THRESHOLD i.i.d. standard errors; for a
    Gaussian, se(mean) = sqrt(var / n) and se(var) = var sqrt(2 / (n - 1))."""
    draws = np.asarray(draws, dtype=np.float64)
    count = draws.shape[0]
    z_mean = (draws.mean(0) - mean) / np.sqrt(variance / count)
    z_variance = (draws.var(0, ddof=1) - variance) / (variance * np.sqrt(2 / (count - 1)))
    assert np.all(np.abs(z_mean) < Z_THRESHOLD), f"{label}: mean {draws.mean(0)} vs {mean}, z={z_mean}"
    assert np.all(np.abs(z_variance) < Z_THRESHOLD), f"{label}: var {draws.var(0)} vs {variance}, z={z_variance}"


def test_generator_only_is_the_prior(ebm):
    result = generator_only(ebm, 20000, seed=0, batch_size=7000, progress_bar=True)
    assert isinstance(result, BaselineResult)
    assert result.samples.shape == result.latents.shape == (20000, 2)
    _assert_iid_moments(result.samples, np.zeros(2), 1.0, "generator")
    np.testing.assert_array_equal(result.samples, result.latents)  # G is the identity
    assert result.stats["proposals"] == 20000 and result.stats["acceptance_rate"] == 1.0
    again = generator_only(ebm, 20000, seed=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(again.latents, result.latents)


def test_drs_at_gamma_zero_is_exact_rejection_sampling(ebm):
    # gamma = 0 and the true bound log M = sup d = 0: acceptance exp(d - log M) up to O(eps).
    result = drs(ebm, 20000, seed=1, gamma=0.0, log_max_ratio=0.0, pilot=0, batch_size=8192)
    _assert_iid_moments(result.latents, EXACT_MEAN, EXACT_VARIANCE, "DRS gamma=0")
    np.testing.assert_array_equal(result.samples, result.latents)
    stats = result.stats
    # Acceptance counts candidates up to the n-th acceptance: a negative binomial, whose
    # rate has the binomial standard error to first order.
    candidates = 20000 / stats["acceptance_rate"]
    standard_error = math.sqrt(EXACT_ACCEPTANCE * (1 - EXACT_ACCEPTANCE) / candidates)
    assert abs(stats["acceptance_rate"] - EXACT_ACCEPTANCE) < Z_THRESHOLD * standard_error
    assert stats["max_ratio_updates"] == 0 and stats["log_max_ratio"] == 0.0
    assert stats["proposals"] == stats["critic_evals"] >= candidates


def _drs_quadrature_moments(gamma: float, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of p0(z) sigmoid(F(z) - gamma) / Z with log M = 0, by 2-D Gauss-Hermite."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # integrates against N(0, 1)
    weights = weights / weights.sum()
    z = np.stack(np.meshgrid(nodes, nodes, indexing="ij"), -1).reshape(-1, 2)
    prior_weight = np.outer(weights, weights).reshape(-1)
    delta = -0.5 * STRENGTH * ((z - CENTER) ** 2).sum(-1)
    f = delta - np.log(-np.expm1(delta - eps))
    tilt = prior_weight / (1 + np.exp(-(f - gamma)))
    tilt /= tilt.sum()
    mean = tilt @ z
    return mean, tilt @ (z - mean) ** 2


def test_drs_percentile_gamma_samples_its_own_tilted_target(ebm):
    # With the true bound passed, D*_M stays 0 and the default gamma (95th percentile of F over
    # the pilot) gives a fixed acceptance sigmoid(F - gamma): the draws follow
    # p0 sigmoid(F - gamma) / Z exactly, whose moments quadrature gives.
    result = drs(ebm, 20000, seed=2, log_max_ratio=0.0, pilot=5000)
    gamma = result.stats["gamma"]
    assert result.stats["log_max_ratio"] == 0.0 and gamma > 0
    mean, variance = _drs_quadrature_moments(gamma, 1e-6)
    draws = result.latents.astype(np.float64)
    z_mean = (draws.mean(0) - mean) / np.sqrt(variance / len(draws))
    assert np.all(np.abs(z_mean) < Z_THRESHOLD), (draws.mean(0), mean)
    # Variance: se of a sample variance without assuming normality, sqrt((m4 - var^2) / n).
    centred = draws - draws.mean(0)
    se_variance = np.sqrt(((centred**4).mean(0) - centred.var(0) ** 2) / len(draws))
    assert np.all(np.abs(centred.var(0) - variance) < Z_THRESHOLD * se_variance), (centred.var(0), variance)
    # And the DRS baseline moves the generator towards the DDLS target.
    assert np.all(np.abs(draws.mean(0) - EXACT_MEAN) < 0.5 * np.abs(EXACT_MEAN))
    assert np.all(draws.var(0) < 0.8)


def test_drs_estimates_log_m_from_the_pilot(ebm):
    result = drs(ebm, 2000, seed=3, pilot=10000)
    stats = result.stats
    # sup d = 0; 10000 prior draws come within ~1e-3 of it and never above.
    assert -0.01 < stats["log_max_ratio"] <= 0.0
    assert stats["proposals"] > 10000 and 0 < stats["acceptance_rate"] < 1
    assert result.latents.shape == (2000, 2)
    repeat = drs(ebm, 2000, seed=3, pilot=10000)
    np.testing.assert_array_equal(repeat.latents, result.latents)


def test_drs_stops_when_nothing_is_accepted(ebm):
    with pytest.raises(RuntimeError, match="max_proposals"):
        drs(ebm, 10, seed=0, gamma=0.0, log_max_ratio=60.0, pilot=0, max_proposals=5000, batch_size=1000)


def test_mh_gan_chains_reach_the_target(ebm):
    # The independence sampler with weight w = exp(d) <= 1 is uniformly ergodic:
    # TV(P^t, pi) <= (1 - E_p0[w] / sup w)^t (Mengersen & Tweedie 1996, Thm 2.1), here
    # (1 - 0.366)^64 < 1e-12, so 64 proposals suffice as well as MH-GAN's 640.
    result = mh_gan(ebm, 5000, seed=4, chain_length=64, batch_size=2500)
    _assert_iid_moments(result.latents, EXACT_MEAN, EXACT_VARIANCE, "MH-GAN")
    np.testing.assert_array_equal(result.samples, result.latents)
    stats = result.stats
    assert stats["proposals"] == 5000 * 64 and stats["restarted"] == 0
    assert 0.3 < stats["acceptance_rate"] < 0.9


def test_mh_gan_from_real_samples(ebm):
    real = np.random.default_rng(5).normal(size=(300, 2)) * np.sqrt(EXACT_VARIANCE) + EXACT_MEAN
    result = mh_gan(ebm, 5000, seed=5, chain_length=64, initial_real=real)
    _assert_iid_moments(result.latents, EXACT_MEAN, EXACT_VARIANCE, "MH-GAN real start")
    assert np.all(np.isfinite(result.latents))
    assert result.stats["critic_evals"] == 5000 * 65


def test_mh_gan_restarts_chains_stuck_at_their_real_sample(ebm):
    # A real start at the critic's peak m (d = 0 = sup d) with one proposal: the chain moves
    # with probability E_p0[exp(d)], otherwise it restarts from its generator draw.
    real = torch.tensor(CENTER, dtype=torch.float32).reshape(1, 2)
    result = mh_gan(ebm, 4000, seed=6, chain_length=1, initial_real=real)
    stuck = 1 - EXACT_ACCEPTANCE
    standard_error = math.sqrt(stuck * (1 - stuck) / 4000)
    assert abs(result.stats["restarted"] / 4000 - stuck) < Z_THRESHOLD * standard_error
    # Every chain returns a generator draw (its own latent), never the real point.
    assert np.all(np.isfinite(result.latents))
    np.testing.assert_array_equal(result.samples, result.latents)
    # With one proposal the output is the prior draw whatever happened: N(0, I).
    _assert_iid_moments(result.latents, np.zeros(2), 1.0, "one proposal")


def _critic(points):
    return -0.5 * STRENGTH * ((np.asarray(points, dtype=np.float64) - CENTER) ** 2).sum(-1)


def test_dot_raises_the_critic_and_moves_little_when_k_is_large(ebm):
    # Target space returns the anchors y = z_y as latents, so each sample's gain is known.
    result = dot(ebm, 1000, seed=7, space="target")  # K estimated as DOT does
    stats = result.stats
    assert stats["k"] > 0 and stats["grad_evals"] == 100 * 1000
    gain = _critic(result.samples) - _critic(result.latents)
    # z* beats z_y on |z - z_y| - d / K up to Adam's dither (~lr), so d never drops by more
    # than about K lr; on average it rises, by many standard errors of the paired gains.
    assert np.all(gain > -stats["k"] * 0.05)
    assert gain.mean() > Z_THRESHOLD * gain.std() / np.sqrt(len(gain))
    assert stats["mean_log_tilt_after"] - stats["mean_log_tilt_before"] == pytest.approx(gain.mean(), abs=1e-4)
    stiff = dot(ebm, 1000, seed=7, k=1e6)
    # The transport cost dominates: Adam only dithers around z_y by about lr.
    assert stiff.stats["mean_transport_distance"] < 0.05
    assert stiff.stats["mean_transport_distance"] < stats["mean_transport_distance"]
    anchors = generator_only(ebm, 1000, seed=7).latents  # k given: z_y are the first draws
    assert np.max(np.linalg.norm(stiff.latents - anchors, axis=1)) < 0.05


def test_dot_reaches_its_optimum_in_both_spaces(ebm):
    # argmin_z |z - z_y| - d(z) / K for d = -a/2 |z - m|^2: points farther than K / a from m
    # stop at distance K / a on their ray to m; nearer points stay (|grad d| / K < 1 there).
    k = 0.5
    result = dot(ebm, 1000, seed=8, k=k, steps=200, lr=0.02, space="target")
    start, final = result.latents, result.samples  # target space: latents are the z_y
    start_radius = np.linalg.norm(start - CENTER, axis=1)
    final_radius = np.linalg.norm(final - CENTER, axis=1)
    # Adam moves each coordinate by ~lr a step: 200 steps reach anything within ~2 of K / a.
    far = (start_radius > k / STRENGTH + 0.1) & (start_radius < 2.5)
    near = start_radius < k / STRENGTH - 0.1
    assert far.sum() > 500 and near.sum() > 20
    assert np.max(np.abs(final_radius[far] - k / STRENGTH)) < 0.05
    cosine = ((final - CENTER) * (start - CENTER)).sum(1) / (final_radius * start_radius)
    assert np.min(cosine[far]) > 0.99
    assert np.max(np.linalg.norm(final - start, axis=1)[near]) < 3 * 0.02
    # With G the identity, latent-space DOT is the same optimisation.
    latent = dot(ebm, 1000, seed=8, k=k, steps=200, lr=0.02)
    np.testing.assert_allclose(latent.samples, final, atol=1e-5)


def test_estimate_lipschitz_of_a_linear_critic():
    # |w . (x1 - x2)| / |x1 - x2| = |w| |cos|: the max over 100 random pairs is within 5% of
    # |w| unless all 100 directions miss +-18 degrees of w (probability 0.8^100 ~ 2e-10).
    direction = [3.0, -4.0]
    ebm = LatentEBM(_identity_generator(), LinearCritic(direction))
    for space in ("latent", "target"):
        estimate = estimate_lipschitz(ebm, 0, space=space)
        assert 0.95 * 5.0 <= estimate <= 5.0 * (1 + 1e-5)
    data = np.random.default_rng(0).normal(size=(500, 2))
    assert 0.95 * 5.0 <= estimate_lipschitz(ebm, 0, space="target", data=data) <= 5.0 * (1 + 1e-5)


def test_log_tilt_of_generated_points_matches_the_ebm(ebm):
    z = ebm.prior_sample(64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x, tilt = generate_and_tilt(ebm, z)
        np.testing.assert_allclose(tilt.numpy(), ebm.log_tilt(z).double().numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(x.numpy(), ebm.generate(z).numpy())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda ebm: generator_only(ebm, 0), "n"),
        (lambda ebm: generator_only(ebm, 2.5), "n"),
        (lambda ebm: generator_only(ebm, 10, seed="x"), "seed"),
        (lambda ebm: generator_only(ebm, 10, batch_size=0), "batch_size"),
        (lambda ebm: drs(ebm, 10, gamma_percentile=101), "gamma_percentile"),
        (lambda ebm: drs(ebm, 10, gamma_percentile=-1), "gamma_percentile"),
        (lambda ebm: drs(ebm, 10, eps=0.0), "eps"),
        (lambda ebm: drs(ebm, 10, pilot=0), "pilot=0 needs"),
        (lambda ebm: drs(ebm, 10, gamma=math.nan), "gamma"),
        (lambda ebm: mh_gan(ebm, 10, chain_length=0), "chain_length"),
        (lambda ebm: mh_gan(ebm, 10, initial_real=np.zeros((4, 3))), "initial_real"),
        (lambda ebm: dot(ebm, 10, steps=-1), "steps"),
        (lambda ebm: dot(ebm, 10, lr=0.0), "lr"),
        (lambda ebm: dot(ebm, 10, k=-1.0), "k"),
        (lambda ebm: dot(ebm, 10, space="pixel"), "space"),
        (lambda ebm: dot(ebm, 10, data=np.zeros((5, 2))), "data"),
        (lambda ebm: dot(ebm, 10, clip=2.0), "clip"),
        (lambda ebm: estimate_lipschitz(ebm, num_pairs=0), "num_pairs"),
    ],
)
def test_bad_arguments_raise_clear_errors(ebm, call, message):
    with pytest.raises(ValueError, match=message):
        call(ebm)


def test_constant_critic_has_no_lipschitz_estimate():
    ebm = LatentEBM(_identity_generator(), LinearCritic([0.0, 0.0]))
    with pytest.raises(ValueError, match="constant"):
        estimate_lipschitz(ebm)


def test_baseline_stats_are_typed_records_with_each_methods_entries(ebm):
    import json

    from ppl_ebm.baselines import BaselineStats, DOTStats, DRSStats, MHGANStats

    runs = {
        "generator": (generator_only(ebm, 50, seed=0), BaselineStats, ()),
        "drs": (drs(ebm, 50, seed=0, pilot=200), DRSStats, ("gamma", "log_max_ratio", "max_ratio_updates", "pilot")),
        "mh_gan": (mh_gan(ebm, 20, seed=0, chain_length=5), MHGANStats, ("restarted", "chain_length")),
        "dot": (dot(ebm, 20, seed=0, steps=3), DOTStats, ("k", "mean_transport_distance", "space")),
    }
    for name, (result, kind, own) in runs.items():
        stats = result.stats
        assert type(stats) is kind, name
        for key in ("wall_seconds", "proposals", "critic_evals", "acceptance_rate", *own):
            assert key in stats, (name, key)
        # Only DOT takes gradients; elsewhere the key is absent, as in the dicts these replaced.
        assert ("grad_evals" in stats) == (name == "dot"), name
        with pytest.raises(KeyError):
            stats["no_such_entry"]
        json.dumps(stats.to_json())  # reports can write them
