"""A pixel-space EBM trained with a replay buffer (Du & Mordatch 2019): the baseline the latent
EBM (Xiao, Yan & Amit 2020) is compared with in the paper's last row.

p(x) ∝ exp(-E_theta(x)) on the image pixels themselves (no generator). Maximum likelihood:
E_data[dE/dtheta] - E_{p}[dE/dtheta], the model expectation from *persistent* short-run Langevin:
each step draws ``batch_size`` chains' starts, a fraction ``reinit`` from uniform noise on the pixel
range and the rest from a replay buffer of ``buffer_size`` past negatives, runs ``train_steps``
ULA moves, clips to the pixel range, and writes the results back into the buffer. The loss adds
``energy_regularisation`` x (E(x+)^2 + E(x-)^2) (Du & Mordatch's alpha) and Adam's gradient is
clipped to global norm ``clip_norm``.

Du & Mordatch's step on pixels in [0, 1] is x <- x - lambda dE/dx + sigma xi with lambda = 10,
sigma = 0.005. On this package's [-1, 1] pixels (y = 2x - 1) the same move is
y <- y - 4 lambda dE/dy + 2 sigma xi, i.e. the package's ULA kernel (drift step_size / 2, noise
``noise_scale``) with step_size = 8 lambda = 80 and noise_scale = 2 sigma = 0.01, the defaults.
The chains are the package's pure kernel (``LangevinSampler("ula").step``) on flattened pixels in a
``lax.fori_loop`` inside the jitted training step, as :mod:`ppl_ebm.training.latent_ebm`.
"""

from __future__ import annotations

import copy
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from tqdm.auto import tqdm

from ppl_ebm.kernels.samplers_jax import LangevinParams, LangevinSampler
from ppl_ebm.validation import check_positive_ints

__all__ = ["PixelEBMTrainingConfig", "TrainedPixelEBM", "pixel_langevin", "train_pixel_ebm"]

LOW, HIGH = -1.0, 1.0  # the package's image range


class PixelEBMTrainingConfig(NamedTuple):
    """Du & Mordatch 2019's settings mapped to [-1, 1] pixels (stored in the model's config.json)."""

    iterations: int = 2000
    batch_size: int = 64
    buffer_size: int = 10_000
    reinit: float = 0.05  # fraction of chains restarted from uniform noise
    step_size: float = 80.0  # ULA drift step_size / 2 = 40 on [-1, 1] = Du & Mordatch's 10 on [0, 1]
    noise_scale: float = 0.01  # = their 0.005 on [0, 1]
    train_steps: int = 60
    energy_regularisation: float = 1.0
    learning_rate: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.999
    clip_norm: float = 0.1
    seed: int = 0

    def validate(self) -> "PixelEBMTrainingConfig":
        check_positive_ints(self, ("iterations", "batch_size", "buffer_size", "train_steps"))
        for name in ("step_size", "noise_scale", "learning_rate", "clip_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        if not 0 <= self.reinit <= 1:
            raise ValueError(f"reinit must be in [0, 1], got {self.reinit!r}.")
        if not self.energy_regularisation >= 0:
            raise ValueError(f"energy_regularisation must be >= 0, got {self.energy_regularisation!r}.")
        return self


class TrainedPixelEBM(NamedTuple):
    energy: torch.nn.Module  # the final weights
    config: PixelEBMTrainingConfig
    buffer: np.ndarray  # (buffer_size, *image_shape): the replay buffer at the end
    history: dict[str, list[float]]
    seconds: float


def _potential_and_grad(energy_fn, params, image_shape):
    def summed(x):
        per_chain = energy_fn(params, x.reshape(-1, *image_shape)).reshape(-1)
        return jnp.sum(per_chain), per_chain

    def potential_and_grad(x):
        (_, potential), grad = jax.value_and_grad(summed, has_aux=True)(x)
        return potential, grad

    return potential_and_grad


def pixel_langevin(key: jax.Array, energy_fn, params, start: jax.Array, steps: int, step_size: float,
                   noise_scale: float) -> jax.Array:
    """``steps`` ULA moves (drift step_size / 2, noise ``noise_scale``) of the chains at ``start``
    ``(n, *image_shape)`` on E, through the package's pure kernel; returns the final images,
    clipped to [-1, 1] (Du & Mordatch clamp to the pixel range)."""
    image_shape = tuple(start.shape[1:])
    target = _potential_and_grad(energy_fn, params, image_shape)
    sampler = LangevinSampler("ula")
    one, zero = jnp.asarray(1.0), jnp.asarray(0, jnp.int32)
    params_ = LangevinParams(jnp.asarray(step_size, jnp.float32), jnp.asarray(noise_scale, jnp.float32), one, zero,
                             one, jnp.asarray(0.5), zero)
    state = sampler.init(start.reshape(len(start), -1), target, params_)

    def move(index, state):
        return sampler.step(jax.random.fold_in(key, index), state, target, params_)[0]

    final = jax.lax.fori_loop(0, steps, move, state).position
    return jnp.clip(final, LOW, HIGH).reshape(start.shape)


def train_pixel_ebm(energy: torch.nn.Module, train: np.ndarray, config: PixelEBMTrainingConfig = PixelEBMTrainingConfig(),
                    progress_bar: bool = True) -> TrainedPixelEBM:
    """Train ``energy`` (a torch module on ``(n, *image_shape)`` images, initial weights as given)
    on the images ``train`` in [-1, 1]. Returns a copy with the final weights; ``energy`` is untouched."""
    from ppl_ebm.nets.torch_to_jax import torch_to_jax

    config = config.validate()
    train = jnp.asarray(train, dtype=jnp.float32)
    image_shape = tuple(train.shape[1:])
    energy_fn, params = torch_to_jax(energy, torch.zeros(2, *image_shape))
    optimiser = optax.chain(optax.clip_by_global_norm(config.clip_norm),
                            optax.adam(config.learning_rate, b1=config.beta1, b2=config.beta2))
    n_noise = int(round(config.reinit * config.batch_size))

    def loss(params, positive, negative):
        e_pos, e_neg = energy_fn(params, positive).reshape(-1), energy_fn(params, negative).reshape(-1)
        regulariser = jnp.mean(e_pos**2) + jnp.mean(e_neg**2)
        return jnp.mean(e_pos) - jnp.mean(e_neg) + config.energy_regularisation * regulariser, (e_pos, e_neg)

    @jax.jit
    def train_step(params, state, buffer, key):
        data_key, pick_key, noise_key, chain_key = jax.random.split(key, 4)
        slots = jax.random.choice(pick_key, buffer.shape[0], (config.batch_size,), replace=False)
        noise = jax.random.uniform(noise_key, (config.batch_size, *image_shape), minval=LOW, maxval=HIGH)
        start = jnp.where((jnp.arange(config.batch_size) < n_noise).reshape(-1, *[1] * len(image_shape)),
                          noise, buffer[slots])
        negative = jax.lax.stop_gradient(pixel_langevin(chain_key, energy_fn, params, start, config.train_steps,
                                                        config.step_size, config.noise_scale))
        buffer = buffer.at[slots].set(negative)
        positive = train[jax.random.randint(data_key, (config.batch_size,), 0, train.shape[0])]
        (value, (e_pos, e_neg)), grads = jax.value_and_grad(loss, has_aux=True)(params, positive, negative)
        updates, state = optimiser.update(grads, state, params)
        return optax.apply_updates(params, updates), state, buffer, value, jnp.mean(e_pos) - jnp.mean(e_neg)

    key = jax.random.key(config.seed)
    key, buffer_key = jax.random.split(key)
    buffer = jax.random.uniform(buffer_key, (config.buffer_size, *image_shape), minval=LOW, maxval=HIGH)
    state = optimiser.init(params)
    history: dict[str, list[float]] = {"iteration": [], "loss": [], "energy_gap": []}
    start = time.perf_counter()
    with tqdm(total=config.iterations, disable=not progress_bar, desc="train pixel EBM", mininterval=1.0) as bar:
        for iteration in range(1, config.iterations + 1):
            key, step_key = jax.random.split(key)
            params, state, buffer, value, gap = train_step(params, state, buffer, step_key)
            bar.update(1)
            if iteration % 10 == 0 or iteration == config.iterations:
                history["iteration"].append(iteration)
                history["loss"].append(float(value))
                history["energy_gap"].append(float(gap))  # E(data) - E(negatives)
    seconds = time.perf_counter() - start
    trained = copy.deepcopy(energy)
    trained.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()})
    return TrainedPixelEBM(trained.eval(), config, np.asarray(buffer), history, seconds)
