"""A VAE on the 2-D toy sets and on the image sets: the base generator of Xiao, Yan & Amit (2020)
(Sec. 5.1 / Fig. 1 on toys, Sec. 5.3 on images).

Encoder ``2 -> width x depth -> 2 * latent_dim`` (mean and log-variance of q(z | x)) and decoder
``latent_dim -> width x depth -> 2`` (the mean of p(x | z)), both the zoo's toy MLPs (Tanaka's
fully connected structure, as the paper says), prior N(0, I). The likelihood is N(x; G(z), sigma^2 I)
with one learned log sigma: a fixed sigma would have to be guessed per data set. The decoder's
*mean* is the latent EBM's generator G (the paper's Fig. 1 plots decoded means; adding the decoder
noise would blur every mode by sigma).

Trained with Adam (the paper's optimiser, lr 1e-3; optax); the reparameterised negative ELBO is
written here because it is a few lines of the standard Gaussian formulas, where a PPL's SVI would
add a guide/model pair around the same loss.

On an image set (``digits``; :mod:`ppl_ebm.data.images`, its train split) the decoder is the zoo's
DCGAN-style :func:`~ppl_ebm.nets.architectures.conv_generator` (``generator_width``; tanh output,
so the mean is in the images' [-1, 1]) and the encoder the body of
:func:`~ppl_ebm.nets.architectures.conv_critic` (``encoder_width``, no spectral norm) with a
``2 * latent_dim`` head. That run is torch (Adam), as the image GANs
(:mod:`ppl_ebm.training.image_gan`): the decoder's BatchNorm statistics are state updated in
train mode, which the torch-to-JAX translator (written for evaluation) does not carry. The
trained decoder (eval mode) translates to JAX for the latent EBM.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from tqdm.auto import tqdm

from ppl_ebm.nets.architectures import conv_critic, mlp
from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.training.optax_scan import scan_chunk
from ppl_ebm.validation import check_positive_ints

__all__ = ["TrainedVAE", "VAEConfig", "gaussian_elbo", "is_image_dataset", "train_image_vae", "train_vae"]


def is_image_dataset(name: str) -> bool:
    """Whether ``name`` is one of :mod:`ppl_ebm.data.images`' sets (else a 2-D toy set)."""
    from ppl_ebm.data.images import IMAGE_DATASETS

    return name in IMAGE_DATASETS


class VAEConfig(NamedTuple):
    """Everything that determines a toy VAE run (stored in the model's config.json)."""

    dataset: str
    iterations: int = 5000
    batch_size: int = 256
    learning_rate: float = 1e-3
    latent_dim: int = 2
    width: int = 128
    depth: int = 3
    activation: str = "relu"
    seed: int = 0
    generator_width: int = 8  # image sets: the conv decoder's base width
    encoder_width: int = 16  # image sets: the conv encoder's base width

    def validate(self) -> "VAEConfig":
        check_positive_ints(self, ("iterations", "batch_size", "latent_dim", "width", "depth", "generator_width",
                                   "encoder_width"))
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        return self

    def decoder_config(self, data_dim: int = 2) -> NetworkConfig:
        """The decoder mean's :class:`NetworkConfig` (a registered toy generator, or on an image set
        ``conv_generator``), what the zoo stores."""
        if is_image_dataset(self.dataset):
            from ppl_ebm.data.images import image_spec

            channels, side, _ = image_spec(self.dataset).shape
            return NetworkConfig("conv_generator", {"latent_dim": self.latent_dim, "channels": channels,
                                                    "base_width": self.generator_width, "image_size": side})
        return NetworkConfig("toy_generator", {"latent_dim": self.latent_dim, "data_dim": data_dim,
                                               "width": self.width, "depth": self.depth,
                                               "activation": self.activation})


class TrainedVAE(NamedTuple):
    encoder: torch.nn.Module
    decoder: torch.nn.Module
    log_sigma: float
    config: VAEConfig
    history: dict[str, list[float]]
    seconds: float


def gaussian_elbo(key: jax.Array, x: jax.Array, encoder_fn, encoder_params, decoder_fn, decoder_params,
                 log_sigma: jax.Array, latent_dim: int) -> jax.Array:
    """Per-point ELBO (one reparameterised draw): E_q log N(x; G(z), sigma^2 I) - KL(q || N(0, I))."""
    out = encoder_fn(encoder_params, x)
    mean, log_var = out[:, :latent_dim], out[:, latent_dim:]
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(key, mean.shape)
    residual = (x - decoder_fn(decoder_params, z)) / jnp.exp(log_sigma)
    log_likelihood = -0.5 * jnp.sum(residual**2, -1) - x.shape[-1] * (log_sigma + 0.5 * math.log(2 * math.pi))
    kl = 0.5 * jnp.sum(mean**2 + jnp.exp(log_var) - 1.0 - log_var, -1)
    return log_likelihood - kl


def train_vae(config: VAEConfig, sample_data: Callable[[int, int], np.ndarray], progress_bar: bool = True,
              pool_size: int = 200_000, log_every: int = 100) -> TrainedVAE:
    """Train a toy VAE on batches drawn with replacement from ``pool_size`` samples of
    ``sample_data(n, seed)`` (its own seed, never an evaluation one); history holds the mean ELBO
    of every ``log_every`` iterations.

    As :func:`ppl_ebm.training.gan.train_gan`: torch modules (seeded torch init) translated to
    JAX, trained there in compiled chunks of ``log_every`` steps with optax's Adam (eager torch
    ran ~6 iterations a second on a loaded 2-core machine), weights written back to torch."""
    from ppl_ebm.nets.torch_to_jax import torch_to_jax

    config = config.validate()
    torch.manual_seed(config.seed)
    data_dim = 2
    encoder = mlp(data_dim, [config.width] * config.depth, 2 * config.latent_dim, config.activation)
    decoder = build_network(config.decoder_config(data_dim))
    encoder_fn, encoder_params = torch_to_jax(encoder, torch.zeros(2, data_dim))
    decoder_fn, decoder_params = torch_to_jax(decoder, torch.zeros(2, config.latent_dim))
    pool = jnp.asarray(sample_data(pool_size, config.seed * 1_000_003 + 17), dtype=jnp.float32)
    adam = optax.adam(config.learning_rate)

    def loss(params, key):
        batch_key, noise_key = jax.random.split(key)
        batch = pool[jax.random.randint(batch_key, (config.batch_size,), 0, pool.shape[0])]
        return -jnp.mean(gaussian_elbo(noise_key, batch, encoder_fn, params[0], decoder_fn, params[1], params[2],
                                       config.latent_dim))

    chunk = scan_chunk(loss, adam)

    params = (encoder_params, decoder_params, jnp.asarray(-1.0))
    carry, key = (params, adam.init(params)), jax.random.key(config.seed)
    history: dict[str, list[float]] = {"iteration": [], "elbo": []}
    start, done = time.perf_counter(), 0
    with tqdm(total=config.iterations, disable=not progress_bar, desc="train VAE", mininterval=1.0) as bar:
        while done < config.iterations:
            steps = min(log_every, config.iterations - done)
            key, chunk_key = jax.random.split(key)
            carry, elbos = chunk(carry, jax.random.split(chunk_key, steps))
            done += steps
            history["iteration"].append(done)
            history["elbo"].append(float(jnp.mean(elbos)))
            bar.set_postfix(elbo=f"{history['elbo'][-1]:.3f}", refresh=False)
            bar.update(steps)
    seconds = time.perf_counter() - start
    trained = carry[0]
    encoder.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in trained[0].items()})
    decoder.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in trained[1].items()})
    return TrainedVAE(encoder.eval(), decoder.eval(), float(trained[2]), config, history, seconds)


def image_encoder(config: VAEConfig) -> torch.nn.Sequential:
    """The conv encoder of an image VAE: ``conv_critic``'s body (no spectral norm) with a
    ``2 * latent_dim`` linear head (mean and log-variance)."""
    from ppl_ebm.data.images import image_spec

    channels, side, _ = image_spec(config.dataset).shape
    body = conv_critic(channels, config.encoder_width, side, spectral_norm=False)
    head = body[-1]
    body[-1] = torch.nn.Linear(head.in_features, 2 * config.latent_dim)
    return body


def train_image_vae(config: VAEConfig, train_images: np.ndarray, progress_bar: bool = True,
                    log_every: int = 100) -> TrainedVAE:
    """Train an image VAE (conv encoder, DCGAN-style decoder mean, one learned sigma) on
    ``train_images`` ``(n, C, H, W)`` in [-1, 1], batches drawn with replacement
    (``torch.Generator`` seeded by ``config.seed``, nets from ``torch.manual_seed(config.seed)``);
    torch Adam at ``config.learning_rate``. History: the mean ELBO (nats per image) of every
    ``log_every`` iterations. Returns CPU modules in eval mode."""
    config = config.validate()
    torch.manual_seed(config.seed)
    encoder, decoder = image_encoder(config), build_network(config.decoder_config())
    log_sigma = torch.nn.Parameter(torch.tensor(-1.0))
    adam = torch.optim.Adam([*encoder.parameters(), *decoder.parameters(), log_sigma], lr=config.learning_rate)
    data = torch.as_tensor(train_images, dtype=torch.float32)
    batches = torch.Generator().manual_seed(config.seed)
    dim = int(np.prod(data.shape[1:]))
    history: dict[str, list[float]] = {"iteration": [], "elbo": []}
    encoder.train()
    decoder.train()
    start, running = time.perf_counter(), []
    with tqdm(total=config.iterations, disable=not progress_bar, desc="train VAE", mininterval=1.0) as bar:
        for iteration in range(1, config.iterations + 1):
            x = data[torch.randint(len(data), (config.batch_size,), generator=batches)]
            out = encoder(x)
            mean, log_var = out[:, :config.latent_dim], out[:, config.latent_dim:]
            z = mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape, generator=batches)
            residual = ((x - decoder(z)) / torch.exp(log_sigma)).flatten(1)
            log_likelihood = -0.5 * residual.pow(2).sum(1) - dim * (log_sigma + 0.5 * math.log(2 * math.pi))
            kl = 0.5 * (mean**2 + log_var.exp() - 1.0 - log_var).sum(1)
            elbo = (log_likelihood - kl).mean()
            adam.zero_grad(set_to_none=True)
            (-elbo).backward()
            adam.step()
            running.append(elbo.item())
            if iteration % log_every == 0 or iteration == config.iterations:
                history["iteration"].append(iteration)
                history["elbo"].append(float(np.mean(running)))
                bar.set_postfix(elbo=f"{history['elbo'][-1]:.2f}", refresh=False)
                bar.update(len(running))
                running = []
    seconds = time.perf_counter() - start
    return TrainedVAE(encoder.eval(), decoder.eval(), float(log_sigma.detach()), config, history, seconds)
