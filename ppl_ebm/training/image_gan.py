"""Training the image GANs of the zoo: a DCGAN and an SN-GAN on the conv nets of :mod:`ppl_ebm.nets`.

- ``dcgan``: :func:`~ppl_ebm.nets.architectures.conv_generator` and
  :func:`~ppl_ebm.nets.architectures.conv_critic` without spectral norm, the non-saturating loss
  (Goodfellow et al.; Radford et al.'s recipe: Adam lr 2e-4, betas (0.5, 0.999), batch 64).
- ``sngan``: the same nets with spectral norm on every critic layer
  (``torch.nn.utils.parametrizations.spectral_norm``) and the hinge loss (Miyato et al. 2018,
  their setting "C": lr 2e-4, betas (0.5, 0.999), one critic step per generator step).

The discriminator's output is read as a logit by DDLS (Theorem 1 for the NS loss; for hinge it
is the raw critic, as DDLS 3.4 uses a WGAN's). Training runs in torch with ``torch.optim.Adam``,
not in JAX as the toy GANs: the generator's BatchNorm statistics and the spectral norm's power
iteration are state updated in train mode, which the torch-to-JAX translator (written for
evaluation) does not carry; torch also puts the run on a GPU with ``device=``.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ppl_ebm.data.images import image_spec
from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.validation import check_positive_ints

__all__ = ["IMAGE_GANS", "IMAGE_LOSSES", "ImageGANConfig", "TrainedImageGAN", "train_image_gan"]

#: The image GAN recipes: architecture -> (spectral norm on the critic, loss).
IMAGE_GANS = {"dcgan": (False, "nsgan"), "sngan": (True, "hinge")}
IMAGE_LOSSES = ("nsgan", "hinge")


class ImageGANConfig(NamedTuple):
    """Everything that determines an image GAN's training (stored in the model's config.json)."""

    dataset: str = "digits"
    architecture: str = "dcgan"
    loss: str = ""  # "" = the architecture's (IMAGE_GANS)
    iterations: int = 3000
    batch_size: int = 64
    learning_rate: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    latent_dim: int = 32
    generator_width: int = 16
    critic_width: int = 32
    seed: int = 0

    def validate(self) -> "ImageGANConfig":
        image_spec(self.dataset)
        if self.architecture not in IMAGE_GANS:
            raise ValueError(f"architecture must be one of {sorted(IMAGE_GANS)}, got {self.architecture!r}.")
        if self.loss not in ("", *IMAGE_LOSSES):
            raise ValueError(f"loss must be one of {IMAGE_LOSSES} (or '' for the architecture's), got {self.loss!r}.")
        check_positive_ints(self, ("iterations", "batch_size", "latent_dim", "generator_width", "critic_width"))
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}.")
        return self._replace(loss=self.loss or IMAGE_GANS[self.architecture][1])

    def network_configs(self) -> tuple[NetworkConfig, NetworkConfig]:
        """The generator's and critic's :class:`~ppl_ebm.nets.registry.NetworkConfig` (what the zoo stores)."""
        channels, side, _ = image_spec(self.dataset).shape
        generator = NetworkConfig("conv_generator", {"latent_dim": self.latent_dim, "channels": channels,
                                                     "base_width": self.generator_width, "image_size": side})
        critic = NetworkConfig("conv_critic", {"channels": channels, "base_width": self.critic_width,
                                               "image_size": side,
                                               "spectral_norm": IMAGE_GANS[self.architecture][0]})
        return generator, critic


class TrainedImageGAN(NamedTuple):
    generator: torch.nn.Module
    critic: torch.nn.Module
    config: ImageGANConfig
    history: dict[str, list[float]]
    seconds: float


def _critic_loss(loss: str, real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    if loss == "hinge":
        return F.relu(1 - real_out).mean() + F.relu(1 + fake_out).mean()
    return F.softplus(-real_out).mean() + F.softplus(fake_out).mean()


def _generator_loss(loss: str, fake_out: torch.Tensor) -> torch.Tensor:
    if loss == "hinge":
        return -fake_out.mean()
    return F.softplus(-fake_out).mean()  # non-saturating: maximise log D(G(z))


def train_image_gan(config: ImageGANConfig, train_images: np.ndarray, device: str = "cpu",
                    progress_bar: bool = True, log_every: int = 100) -> TrainedImageGAN:
    """Train ``config``'s GAN on ``train_images`` ``(n, C, H, W)`` in ``[-1, 1]``; returns CPU modules in eval mode.

    Real batches are drawn with replacement (``torch.Generator`` seeded by ``config.seed``); the
    networks are initialised from ``torch.manual_seed(config.seed)``.
    """
    from ppl_ebm.drivers.devices import torch_device

    config = config.validate()
    target = torch_device(device)
    expected = image_spec(config.dataset).shape
    if tuple(train_images.shape[1:]) != expected:
        raise ValueError(f"train_images must be (n, {', '.join(map(str, expected))}) for {config.dataset}, "
                         f"got {tuple(train_images.shape)}.")
    torch.manual_seed(config.seed)
    generator_config, critic_config = config.network_configs()
    generator, critic = build_network(generator_config).to(target), build_network(critic_config).to(target)
    betas = (config.beta1, config.beta2)
    generator_adam = torch.optim.Adam(generator.parameters(), lr=config.learning_rate, betas=betas)
    critic_adam = torch.optim.Adam(critic.parameters(), lr=config.learning_rate, betas=betas)
    data = torch.as_tensor(train_images, dtype=torch.float32, device=target)
    batches = torch.Generator(device=target).manual_seed(config.seed)
    history: dict[str, list[float]] = {"iteration": [], "critic_loss": [], "generator_loss": []}
    generator.train()
    critic.train()
    start = time.perf_counter()
    with tqdm(total=config.iterations, disable=not progress_bar, desc=f"train {config.architecture}",
              mininterval=1.0) as bar:
        for iteration in range(1, config.iterations + 1):
            real = data[torch.randint(len(data), (config.batch_size,), device=target, generator=batches)]
            z = torch.randn(config.batch_size, config.latent_dim, device=target, generator=batches)
            fake = generator(z)
            critic_loss = _critic_loss(config.loss, critic(real), critic(fake.detach()))
            critic_adam.zero_grad(set_to_none=True)
            critic_loss.backward()
            critic_adam.step()
            generator_loss = _generator_loss(config.loss, critic(fake))
            generator_adam.zero_grad(set_to_none=True)
            generator_loss.backward()
            generator_adam.step()
            if iteration % log_every == 0 or iteration == config.iterations:
                history["iteration"].append(iteration)
                history["critic_loss"].append(critic_loss.item())
                history["generator_loss"].append(generator_loss.item())
                bar.set_postfix(critic=f"{history['critic_loss'][-1]:.3f}",
                                gen=f"{history['generator_loss'][-1]:.3f}", refresh=False)
                bar.update(log_every if iteration % log_every == 0 else iteration % log_every)
    seconds = time.perf_counter() - start
    return TrainedImageGAN(generator.cpu().eval(), critic.cpu().eval(), config, history, seconds)
