"""Training the toy GANs of the model zoo: WGAN-GP and a non-saturating GAN.

WGAN-GP follows Gulrajani et al.'s toy recipe (gan_toy.py: 5 critic steps per generator step,
batch 256, gradient-penalty weight 0.1 for the toy sets) with the DOT/DDLS networks
(G 2-256-256-256-2, D 2-512-512-512-1) and DDLS's N(0, I) prior; Adam lr 1e-4,
betas (0.5, 0.9) (DDLS Sec. 5.1). The non-saturating GAN's discriminator returns logits, as
DDLS Theorem 1 needs. Training runs in JAX on the translated torch networks; the
checkpoints are torch modules (saved as safetensors by :mod:`ppl_ebm.zoo.store`, with the
networks' :class:`~ppl_ebm.nets.registry.NetworkConfig`). The optimiser is optax's Adam.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from tqdm.auto import tqdm

from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.validation import check_positive_ints

__all__ = ["LOSSES", "TrainingConfig", "TrainedGAN", "build_networks", "train_gan"]

#: The GAN losses :func:`train_gan` knows (``ppl-ebm train --loss`` reads this).
LOSSES = ("wgan-gp", "nsgan")


class TrainingConfig(NamedTuple):
    """Everything that determines a training run (stored in the model's config.json)."""

    dataset: str
    loss: str = "wgan-gp"
    iterations: int = 20000
    batch_size: int = 256
    critic_steps: int = 5
    gradient_penalty: float = 0.1
    learning_rate: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.9
    latent_dim: int = 2
    generator_width: int = 256
    critic_width: int = 512
    depth: int = 3
    activation: str = "relu"
    seed: int = 0

    def validate(self) -> "TrainingConfig":
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}.")
        check_positive_ints(self, ("iterations", "batch_size", "critic_steps", "latent_dim", "generator_width",
                                   "critic_width", "depth"))
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        return self

    def network_configs(self, data_dim: int = 2) -> tuple[NetworkConfig, NetworkConfig]:
        """The generator's and the critic's :class:`~ppl_ebm.nets.registry.NetworkConfig`.

        The DOT/DDLS toy MLPs: ``toy_generator`` (``latent_dim -> generator_width x depth ->
        data_dim``) and ``toy_critic`` (``data_dim -> critic_width x depth -> 1``). These are
        what a model folder stores, so loading it needs no training code.
        """
        generator = NetworkConfig("toy_generator", {
            "latent_dim": self.latent_dim, "data_dim": data_dim, "width": self.generator_width,
            "depth": self.depth, "activation": self.activation,
        })
        critic = NetworkConfig("toy_critic", {
            "data_dim": data_dim, "width": self.critic_width, "depth": self.depth, "activation": self.activation,
        })
        return generator, critic


class TrainedGAN(NamedTuple):
    generator: torch.nn.Module
    critic: torch.nn.Module
    config: TrainingConfig
    history: dict[str, list[float]]
    seconds: float


def build_networks(config: TrainingConfig, data_dim: int = 2) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The toy generator and critic of ``config``, built through the network registry.

    Parameters
    ----------
    config
        The training config; its architecture fields give the networks (see
        :meth:`TrainingConfig.network_configs`).
    data_dim
        Width of the data points.

    Returns
    -------
    generator, critic
        Freshly initialised torch modules (torch's global seed).
    """
    generator_config, critic_config = config.network_configs(data_dim)
    return build_network(generator_config), build_network(critic_config)


def _adam(config: TrainingConfig) -> optax.GradientTransformation:
    # torch.optim.Adam's update (bias-corrected, eps 1e-8 added outside the square root), as
    # the hand-written Adam this replaced; it stays inside the jitted training step. optax
    # multiplies by the step after dividing ((m / c1) / (sqrt(v / c2) + eps) * -lr instead
    # of lr * (m / c1) / (...)), so weights agree with the old code to float32 rounding, not bit
    # for bit.
    return optax.adam(config.learning_rate, b1=config.beta1, b2=config.beta2, eps=1e-8)


def _losses(generator_fn, critic_fn, config: TrainingConfig):
    def critic_loss(critic_params, generator_params, real, key):
        noise_key, alpha_key = jax.random.split(key)
        z = jax.random.normal(noise_key, (config.batch_size, config.latent_dim))
        fake = jax.lax.stop_gradient(generator_fn(generator_params, z))
        real_out, fake_out = critic_fn(critic_params, real), critic_fn(critic_params, fake)
        if config.loss == "nsgan":
            return jnp.mean(jax.nn.softplus(-real_out)) + jnp.mean(jax.nn.softplus(fake_out))
        # Gulrajani et al. Alg. 1: penalise (|grad D(x_hat)| - 1)^2 on random interpolates.
        alpha = jax.random.uniform(alpha_key, (config.batch_size, 1))
        interpolates = alpha * real + (1 - alpha) * fake
        grad = jax.grad(lambda x: jnp.sum(critic_fn(critic_params, x)))(interpolates)
        penalty = jnp.mean((jnp.sqrt(jnp.sum(grad**2, axis=1) + 1e-12) - 1.0) ** 2)
        return jnp.mean(fake_out) - jnp.mean(real_out) + config.gradient_penalty * penalty

    def generator_loss(generator_params, critic_params, key):
        z = jax.random.normal(key, (config.batch_size, config.latent_dim))
        fake_out = critic_fn(critic_params, generator_fn(generator_params, z))
        if config.loss == "nsgan":  # non-saturating: maximise log D(G(z))
            return jnp.mean(jax.nn.softplus(-fake_out))
        return -jnp.mean(fake_out)

    return critic_loss, generator_loss


def train_gan(
    config: TrainingConfig,
    sample_data: Callable[[int, int], np.ndarray],
    progress_bar: bool = True,
    log_every: int = 100,
    pool_size: int = 1_000_000,
    initial: tuple[torch.nn.Module, torch.nn.Module] | None = None,
) -> TrainedGAN:
    """Train a toy GAN and return it as torch modules.

    The torch networks are initialised with torch's defaults (seeded), translated to JAX with
    :func:`ppl_ebm.nets.torch_to_jax.torch_to_jax`, trained there (one compiled program per
    ``log_every`` iterations: XLA runs these nets ~2.4x faster than torch on the CPU), and the
    trained weights are written back into the torch modules. Real batches are drawn with
    replacement from ``pool_size`` fresh samples of ``sample_data(n, seed)``. ``initial`` (a
    generator and critic of ``config``'s architecture) continues an earlier run from its weights
    (fresh Adam state); those modules are not modified.
    """
    from ppl_ebm.nets.torch_to_jax import torch_to_jax

    config = config.validate()
    torch.manual_seed(config.seed)
    generator, critic = build_networks(config)
    if initial is not None:
        try:
            generator.load_state_dict(initial[0].state_dict())
            critic.load_state_dict(initial[1].state_dict())
        except RuntimeError as error:
            raise ValueError(f"initial networks do not fit the config's architecture: {error}") from error
    generator_fn, generator_params = torch_to_jax(generator, torch.zeros(2, config.latent_dim))
    critic_fn, critic_params = torch_to_jax(critic, torch.zeros(2, 2))
    # A seed of its own for the data, so real batches never meet evaluation seeds.
    pool = jnp.asarray(sample_data(pool_size, config.seed * 1_000_003 + 17))
    critic_loss, generator_loss = _losses(generator_fn, critic_fn, config)
    critic_steps = config.critic_steps if config.loss == "wgan-gp" else 1
    adam = _adam(config)

    def iteration(carry, key):
        generator_params, critic_params, generator_adam, critic_adam = carry
        keys = jax.random.split(key, critic_steps + 1)

        def critic_update(index, inner):
            params, state = inner
            data_key, loss_key = jax.random.split(keys[index])
            real = pool[jax.random.randint(data_key, (config.batch_size,), 0, pool.shape[0])]
            grads = jax.grad(critic_loss)(params, generator_params, real, loss_key)
            updates, state = adam.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        critic_params, critic_adam = jax.lax.fori_loop(
            0, critic_steps, critic_update, (critic_params, critic_adam)
        )
        real = pool[jax.random.randint(keys[0], (config.batch_size,), 0, pool.shape[0])]
        c_loss = critic_loss(critic_params, generator_params, real, keys[-1])
        g_loss, grads = jax.value_and_grad(generator_loss)(generator_params, critic_params, keys[-1])
        updates, generator_adam = adam.update(grads, generator_adam, generator_params)
        generator_params = optax.apply_updates(generator_params, updates)
        return (generator_params, critic_params, generator_adam, critic_adam), (c_loss, g_loss)

    @jax.jit
    def chunk(carry, keys):
        return jax.lax.scan(iteration, carry, keys)

    carry = (generator_params, critic_params, adam.init(generator_params), adam.init(critic_params))
    key = jax.random.key(config.seed)
    history: dict[str, list[float]] = {"iteration": [], "critic_loss": [], "generator_loss": []}
    start = time.perf_counter()
    done = 0
    with tqdm(total=config.iterations, disable=not progress_bar, desc=f"train {config.loss}",
              mininterval=1.0) as bar:
        while done < config.iterations:
            steps = min(log_every, config.iterations - done)
            key, chunk_key = jax.random.split(key)
            carry, (c_losses, g_losses) = chunk(carry, jax.random.split(chunk_key, steps))
            done += steps
            history["iteration"].append(done)
            history["critic_loss"].append(float(c_losses[-1]))
            history["generator_loss"].append(float(g_losses[-1]))
            bar.set_postfix(critic=f"{history['critic_loss'][-1]:.3f}", gen=f"{history['generator_loss'][-1]:.3f}",
                            refresh=False)
            bar.update(steps)
    seconds = time.perf_counter() - start
    generator.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in carry[0].items()})
    critic.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in carry[1].items()})
    return TrainedGAN(generator.eval(), critic.eval(), config, history, seconds)
