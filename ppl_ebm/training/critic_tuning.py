"""Fine-tuning a GAN critic into a density-ratio estimator for a frozen generator (DDLS 5.2).

DDLS Theorem 1 reads the critic as ``d(x) = log p_d(x) / p_g(x)``; the target
``p0(z) exp(d(G(z)))`` then pushes forward to the data distribution. A critic taken from the end
of GAN training is not that: a WGAN critic is a Kantorovich potential (on the shipped toy
model it carries a linear trend of ~3 nats across the grid), and an NS-GAN discriminator lags
the last generator update. DDLS Sec. 5.2, after Azadi et al. (DRS) and Turner et al. (MH-GAN),
"fine-tune[s] the pre-trained discriminator ... using the binary cross-entropy loss": with the
generator frozen and fresh real and generated batches every step, the BCE minimiser is exactly
the log density ratio. :func:`fine_tune_critic` does that, starting from the critic's own
weights, in JAX on the translated networks with optax's Adam (the same route as
:mod:`ppl_ebm.training.gan`).

The logistic head of :mod:`ppl_ebm.training.calibration` is then fitted on top of the fine-tuned critic
(on other held-out samples), which is what the Z-statistic reports.

**The tails** (``proposal_scale``). BCE pins the logit down only where real or generated points
fall. DDLS then evaluates it at ``G(z)`` for every ``z`` a sampler visits, and a ReLU critic
extrapolates linearly there: on the shipped WGAN-GP toys the fine-tuned logit grows faster than
``|z|^2 / 2`` somewhere off the data, so the target's highest density sat at ``|z| = 21-26`` and
84-100% of its mass beyond ``|z| = 6``, where no prior draw goes. With ``proposal_scale = s > 1``
the generated batch is ``G(z)``, ``z ~ N(0, s^2 I)``, each term weighted by ``p0(z) / q(z)``: the
weighted fake term is still an expectation under ``p_g``, so the minimiser is the same log ratio
(the optimum is pointwise), but the critic now meets generated points out to ``|z| ~ 3 s`` and
learns a low logit there. The price: far points weigh little (``p0/q`` is 5e-6 at ``|z| = 6``
for ``s = 2``), so the tail is taught, not forced, and a scale can fail (measured: on the DOT-scale
25-Gaussians ``s = 2`` kept the target inside the prior's reach, ``s = 3`` did not; the target
check says which). Unweighted fakes from the mixture ``m = a p0 + (1 - a) q`` would force it:
their minimiser is ``log p_d / G#m``, and Theorem 1 with ``m`` as the latent prior makes
``m(z) exp(d_m(G(z)))`` exact for any generator, but that changes the target's prior, which the
package's targets do not support yet.

**Data the generator misses** (``extended_noise_scale``, DDLS Corollary 1). Theorem 1 maps the
target to ``p_d`` only where ``p_g`` has mass; a WGAN-GP toy generator that misses part of every
mode (the support study in ``diagnostics/``) leaves ratios of thousands where it reaches the data
thinly, which no critic estimates. With ``eps > 0`` the fakes are the extended generator's
``G(z) + eps z'``, ``z' ~ N(0, I)``: its law is ``p_g`` blurred by ``N(0, eps^2 I)``, which covers
the data, and for ``eps`` above the data's own noise the ratio ``p_d / p_g*`` stays bounded. The
critic is then the log ratio for that generator, and the DDLS target is over ``(z, z')``.

**The step's schedule** (``learning_rate_schedule``). With a constant step the result is one Adam
iterate, and its noise is not spread evenly: on the DOT-scale 25-Gaussians (eps twice the mode
std) it sat in the logit's level over each mode, so the target weighted the 25 modes 0.5x to 2x
(the generator's own weights are within 5% of equal) and rejection sampling by it scored W1 three
times the generator's. Decaying the step to 0 (``"cosine"``) averages that noise out: mode weights
0.86-1.14x after 3000 steps (rejection sampling then scored W1 0.67x the generator's), 0.91-1.09x
after 6000. Either change alone did not help there (eps = 0 with the cosine, or eps > 0 with a
constant step); DEVELOPERS.md has the figures.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from tqdm.auto import tqdm

from ppl_ebm.training.optax_scan import scan_chunk
from ppl_ebm.validation import check_positive_ints

__all__ = ["SCHEDULES", "FineTuneConfig", "FineTunedCritic", "fine_tune_critic"]

SCHEDULES = ("constant", "cosine")


class FineTuneConfig(NamedTuple):
    """What a fine-tuning run depends on (stored in the model's config.json)."""

    steps: int = 3000
    learning_rate: float = 1e-3
    batch_size: int = 512
    beta1: float = 0.5
    beta2: float = 0.9
    seed: int = 0
    pool_size: int = 500_000
    # 1: generated batches from the prior (DDLS 5.2 as written); s > 1: from N(0, s^2 I),
    # importance-weighted back to the prior (see the module docstring).
    proposal_scale: float = 1.0
    # eps of DDLS Corollary 1: the generated batch is G(z) + eps z', z' ~ N(0, I) of the data's
    # size, so the critic learns log p_d / p_g* for the extended generator (see the module docstring);
    # 0: the generator itself.
    extended_noise_scale: float = 0.0
    # "constant", or "cosine": the step decays to 0 over the run, so the result is not one noisy
    # Adam iterate (see the module docstring: the noise sits in each mode's level).
    learning_rate_schedule: str = "constant"

    def validate(self) -> "FineTuneConfig":
        check_positive_ints(self, ("steps", "batch_size", "pool_size"))
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)!r}.")
        if not (isinstance(self.proposal_scale, (int, float)) and 1 <= self.proposal_scale <= 10):
            raise ValueError(f"proposal_scale must be a number in [1, 10] (the generated batch's latent std; "
                             f"1 is the prior), got {self.proposal_scale!r}.")
        if not (isinstance(self.extended_noise_scale, (int, float)) and self.extended_noise_scale >= 0):
            raise ValueError(f"extended_noise_scale must be a number >= 0 (eps of DDLS Corollary 1, in data units; "
                             f"0 is the generator itself), got {self.extended_noise_scale!r}.")
        if self.learning_rate_schedule not in SCHEDULES:
            raise ValueError(f"learning_rate_schedule must be one of {SCHEDULES}, got {self.learning_rate_schedule!r}.")
        return self


class FineTunedCritic(NamedTuple):
    critic: torch.nn.Module
    config: FineTuneConfig
    history: dict[str, list[float]]
    seconds: float


def _real_pool(real: Any, size: int, seed: int) -> np.ndarray:
    if callable(real):
        # A seed of its own, apart from training batches and evaluation data.
        return np.asarray(real(size, 50_000 + seed), dtype=np.float32)
    pool = np.asarray(real, dtype=np.float32)
    if pool.ndim < 2 or pool.shape[0] < 2:
        raise ValueError(
            f"real must be a callable (n, seed) -> samples or an array shaped (n, *data_shape) with n >= 2; "
            f"got shape {pool.shape}."
        )
    return pool


def fine_tune_critic(
    generator: torch.nn.Module,
    critic: torch.nn.Module,
    real: Callable[[int, int], np.ndarray] | np.ndarray,
    latent_dim: int,
    config: FineTuneConfig = FineTuneConfig(),
    progress_bar: bool = True,
    log_every: int = 100,
) -> FineTunedCritic:
    """Fine-tune a copy of ``critic`` by BCE, real (label 1) against ``generator`` samples.

    Parameters
    ----------
    generator, critic
        torch modules; the critic returns a logit (an NS-GAN logit or a WGAN critic value),
        one per sample. Neither is modified: the result is a new module with the critic's
        architecture, its parametrizations (spectral norm) baked into plain weights
        (:func:`~ppl_ebm.nets.parametrizations.bake_parametrizations`); load it the same way.
    real
        The data: a callable ``(n, seed) -> array`` (``config.pool_size`` points are drawn once)
        or an array of real samples (e.g. loaded from disk).
    latent_dim
        Dimension of the generator's N(0, I) prior.
    """
    from ppl_ebm.nets.parametrizations import bake_parametrizations
    from ppl_ebm.nets.torch_to_jax import torch_to_jax

    config = config.validate()
    if not (isinstance(latent_dim, int) and latent_dim > 0):
        raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}.")
    pool = _real_pool(real, config.pool_size, config.seed)
    with torch.no_grad():
        probe = generator(torch.zeros(2, latent_dim))
    if tuple(probe.shape[1:]) != tuple(pool.shape[1:]):
        raise ValueError(
            f"Real samples are shaped {tuple(pool.shape[1:])} per point but the generator makes "
            f"{tuple(probe.shape[1:])}; pass data of the generator's output shape."
        )
    # Spectral norm etc. become plain weights: fine-tuning moves the effective weights.
    tuned = bake_parametrizations(copy.deepcopy(critic).eval())
    generator_fn, generator_params = torch_to_jax(generator.eval(), torch.zeros(2, latent_dim))
    critic_fn, critic_params = torch_to_jax(tuned, probe.detach())
    pool_jax = jnp.asarray(pool)
    batch = config.batch_size
    scale = float(config.proposal_scale)
    noise_scale = float(config.extended_noise_scale)

    def fake_weights(z):
        # p0(z) / q(z) for q = N(0, s^2 I): mean 1 under q, so the weighted term stays E_pg.
        squared = jnp.sum(z**2, axis=-1)
        return jnp.exp(latent_dim * jnp.log(scale) - 0.5 * squared * (1.0 - 1.0 / scale**2))

    def loss(params, key):
        # Three keys only with the extended generator, so that eps = 0 keeps the earlier stream bit for bit.
        data_key, noise_key, *output_key = jax.random.split(key, 3 if noise_scale > 0 else 2)
        real_batch = pool_jax[jax.random.randint(data_key, (batch,), 0, pool_jax.shape[0])]
        z = jax.random.normal(noise_key, (batch, latent_dim))
        if scale != 1.0:
            z = scale * z
        fake = generator_fn(generator_params, z)
        if noise_scale > 0:
            # z' is drawn from its prior (never widened): only z's proposal is importance-weighted.
            fake = fake + noise_scale * jax.random.normal(output_key[0], fake.shape)
        real_logit = critic_fn(params, real_batch).reshape(batch)
        fake_logit = critic_fn(params, fake).reshape(batch)
        fake_terms = jax.nn.softplus(fake_logit)
        if scale != 1.0:
            fake_terms = fake_weights(z) * fake_terms
        return jnp.mean(jax.nn.softplus(-real_logit)) + jnp.mean(fake_terms)

    # optax's Adam with torch's eps (1e-8): the update the hand-written Adam this replaced made,
    # to float32 rounding (optax applies the step size after the division). It runs inside the
    # jitted scan with the rest of the step, as the networks train in JAX here.
    rate = (config.learning_rate if config.learning_rate_schedule == "constant"
            else optax.cosine_decay_schedule(config.learning_rate, config.steps))
    adam = optax.adam(rate, b1=config.beta1, b2=config.beta2, eps=1e-8)

    chunk = scan_chunk(loss, adam)  # returns minus the loss per step

    carry = (critic_params, adam.init(critic_params))
    key = jax.random.key(config.seed)
    history: dict[str, list[float]] = {"step": [], "bce": []}
    start = time.perf_counter()
    done = 0
    with tqdm(total=config.steps, disable=not progress_bar, desc="fine-tune critic", mininterval=1.0) as bar:
        while done < config.steps:
            count = min(log_every, config.steps - done)
            key, chunk_key = jax.random.split(key)
            carry, values = chunk(carry, jax.random.split(chunk_key, count))
            done += count
            history["step"].append(done)
            # Two balanced BCE terms: 2 log 2 = 1.386 is chance, 0 is perfect separation.
            history["bce"].append(float(-jnp.mean(values)))
            bar.set_postfix(bce=f"{history['bce'][-1]:.4f}", refresh=False)
            bar.update(count)
    seconds = time.perf_counter() - start
    tuned.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in carry[0].items()})
    return FineTunedCritic(tuned, config, history, seconds)
