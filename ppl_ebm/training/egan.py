"""Calibrated energy GANs of Dai et al. (2017): EGAN-Ent-NN, EGAN-Ent-VI, EGAN-Const and the GAN baseline.

The discriminator is an energy c(x) (low on data). Its loss is ``mean c(real) - mean c(fake)``
(Eq. 1; with the released code's optional hinge ``mean max(mean c(real) - c(fake), -margin)``);
the generator minimises ``mean c(G(z)) + alpha * K`` with K the negative entropy of its
samples estimated by nearest neighbours (``egan-ent-nn``, Eq. 10-11) or by the variational
bound of an inference network (``egan-ent-vi``, Eq. 12-16), or K = 0 (``egan-const``). ``gan``
is the binary GAN of the released ``binary_gan.py``: P(real | x) = sigmoid(-c(x)), so its
discriminator is read as an energy as well.

Everything not in the paper is the authors' released code (``cegan_iclr2017/synthetic``):
networks D 2-128-128-1 (ReLU), G 4-128(BN)-128(BN)-2, Q 2-128-128-2*4; weights N(0, std)
with the per-data-set std, zero biases; batch 500; Adam(beta1 = 0) at 2e-4 with the
generator's rate 10x, decayed per epoch (200 batches of the 100k training points) after a
per-data-set epoch; the energy gap schedule (train only D while ``cost_d > gap_high``, only G
while ``cost_d < gap_low``, both in between); the kNN weight ``knn_scale`` per data set.
``critic_average_decay`` (not in the paper; 0 = off) saves an exponential moving average of the
critic's weights instead of its last iterate: the energy levels of separate modes oscillate as
the generator's mass moves between them, and the average damps that.
``entropy_weight`` here is the per-point weight ``alpha = batch_size * knn_scale`` of the score
(the code sums the entropy term over the batch while averaging the energy).

Training runs in JAX on the translated torch networks (as :mod:`ppl_ebm.training.gan`); the
generator is translated from a twin whose batch norms use batch statistics, and the saved
torch generator gets population statistics from one pass over 100k noise draws, so that a
sample in eval mode does not depend on its batch. The optimiser is optax's Adam.
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

from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.training.entropy import KNN_NEIGHBOURS, gaussian_negative_log_likelihood, knn_score
from ppl_ebm.validation import check_int, check_positive_ints, check_real

__all__ = ["EGAN_LOSSES", "EGANConfig", "TrainedEGAN", "paper_config", "train_egan"]

#: The losses :func:`train_egan` knows (``ppl-ebm train --loss`` offers them beside the GAN losses).
EGAN_LOSSES = ("egan-ent-nn", "egan-ent-vi", "egan-const", "gan")
#: Points of the training set (the paper's "100K training samples"); 200 batches of 500 make an epoch.
TRAIN_SIZE = 100_000


class EGANConfig(NamedTuple):
    """Everything that determines an energy-GAN training run (stored in the model's config.json)."""

    dataset: str
    loss: str = "egan-ent-nn"
    iterations: int = 20_000
    batch_size: int = 500
    learning_rate: float = 2e-4
    generator_lr_multiplier: float = 10.0
    beta1: float = 0.0
    beta2: float = 0.999
    lr_decay: float = 0.985
    lr_decay_start_epoch: int = 10
    lr_min: float = 1e-5
    entropy_weight: float = 0.5
    knn_neighbours: int = KNN_NEIGHBOURS
    gap_low: float | None = -10.0
    gap_high: float | None = 0.1
    margin: float | None = None
    latent_dim: int = 4
    width: int = 128
    critic_init_std: float = 0.01
    generator_init_std: float = 0.001
    train_size: int = TRAIN_SIZE
    critic_average_decay: float = 0.0
    seed: int = 0
    knn_normalise: bool = False
    lr_decay_every: int = 0
    critic_activation: str = "relu"
    generator_output: str = "none"

    def validate(self) -> "EGANConfig":
        if self.loss not in EGAN_LOSSES:
            raise ValueError(f"loss must be one of {EGAN_LOSSES}, got {self.loss!r}.")
        check_positive_ints(self, ("iterations", "batch_size", "latent_dim", "width", "train_size"))
        check_int("knn_neighbours", self.knn_neighbours, 1)
        check_int("lr_decay_start_epoch", self.lr_decay_start_epoch, 0)
        check_int("seed", self.seed, 0)
        check_int("lr_decay_every", self.lr_decay_every, 0)
        if not isinstance(self.knn_normalise, bool):
            raise ValueError(f"knn_normalise must be a bool, got {self.knn_normalise!r}.")
        if self.critic_activation not in ("relu", "leaky_relu"):
            raise ValueError(f"critic_activation must be 'relu' or 'leaky_relu', got {self.critic_activation!r}.")
        if self.generator_output not in ("none", "tanh"):
            raise ValueError(f"generator_output must be 'none' or 'tanh', got {self.generator_output!r}.")
        if self.loss == "egan-ent-nn" and self.batch_size <= self.knn_neighbours:
            raise ValueError(f"batch_size must exceed knn_neighbours ({self.knn_neighbours}) for egan-ent-nn, "
                             f"got {self.batch_size}.")
        for name in ("learning_rate", "generator_lr_multiplier", "critic_init_std", "generator_init_std"):
            check_real(name, getattr(self, name), low=0.0)
        check_real("lr_min", self.lr_min, low=0.0, low_open=False)
        check_real("beta1", self.beta1, low=0.0, high=1.0, low_open=False)
        check_real("beta2", self.beta2, low=0.0, high=1.0)
        check_real("lr_decay", self.lr_decay, low=0.0, high=1.0, high_open=False)
        check_real("entropy_weight", self.entropy_weight, low=0.0, low_open=False)
        check_real("critic_average_decay", self.critic_average_decay, low=0.0, high=1.0, low_open=False)
        check_real("margin", self.margin, low=0.0, allow_none=True)
        low = check_real("gap_low", self.gap_low, allow_none=True)
        high = check_real("gap_high", self.gap_high, allow_none=True)
        if low is not None and high is not None and not low < high:
            raise ValueError(f"gap_low must be < gap_high, got {low} and {high}.")
        return self

    def image_shape(self) -> tuple[int, ...] | None:
        """``(channels, side, side)`` of an image data set (digits), None for a toy set of 2-D points."""
        from ppl_ebm.data.images import IMAGE_DATASETS

        return tuple(IMAGE_DATASETS[self.dataset].shape) if self.dataset in IMAGE_DATASETS else None

    def data_shape(self) -> tuple[int, ...]:
        """The shape of one data point: ``(2,)`` on the toy sets, the image shape on an image set."""
        return self.image_shape() or (2,)

    def data_dim(self) -> int:
        return int(np.prod(self.data_shape()))

    def network_configs(self, data_dim: int | None = None) -> tuple[NetworkConfig, NetworkConfig]:
        """The generator's and the critic's :class:`NetworkConfig` (what the model folder stores).

        On an image set both are the same fully connected nets on the flattened image, the
        generator reshaping its output to images and the critic flattening its input."""
        data_dim = self.data_dim() if data_dim is None else data_dim
        generator = {"latent_dim": self.latent_dim, "data_dim": data_dim, "width": self.width, "depth": 2}
        critic = {"data_dim": data_dim, "width": self.width, "depth": 2, "activation": self.critic_activation}
        if self.generator_output != "none":
            generator["output_activation"] = self.generator_output
        shape = self.image_shape()
        if shape is not None:
            generator["image_shape"] = critic["image_shape"] = list(shape)
        return NetworkConfig("batchnorm_generator", generator), NetworkConfig("toy_critic", critic)

    def inference_config(self, data_dim: int | None = None) -> NetworkConfig:
        """Q(z | x) for ``egan-ent-vi``: ``data_dim -> width x 2 -> 2 latent_dim`` (mean, log std); on
        an image set it takes the flattened image."""
        data_dim = self.data_dim() if data_dim is None else data_dim
        return NetworkConfig("mlp", {"in_features": data_dim, "hidden": [self.width, self.width],
                                     "out_features": 2 * self.latent_dim, "activation": "relu"})


#: Per-data-set settings of the released code (``egan_knn_state.py``); ``iterations`` is its
#: number of epochs times 200 batches.
_PAPER_SETTINGS: dict[str, dict] = {
    "4gaussians": dict(iterations=20_000, lr_decay=0.985, lr_decay_start_epoch=10, entropy_weight=500 * 1e-3,
                       gap_low=-10.0, gap_high=0.1, margin=None, critic_init_std=0.01, generator_init_std=0.001),
    "biased2gaussians": dict(iterations=20_000, lr_decay=0.985, lr_decay_start_epoch=0, entropy_weight=500 * 3e-4,
                             gap_low=-0.2, gap_high=0.1, margin=10.0, critic_init_std=0.01,
                             generator_init_std=0.001),
    "twospirals": dict(iterations=100_000, lr_decay=0.99, lr_decay_start_epoch=200, entropy_weight=500 * 5e-4,
                       gap_low=-10.0, gap_high=0.1, margin=10.0, critic_init_std=0.1, generator_init_std=0.01),
    # The released digits code (``knn_nist/exp_state.py``, ``egan_knn.py``): noise 10, batch 200, Adam(beta1 = 0)
    # at 1e-4 with the generator's rate x25, x0.8 at each of its 20 epochs after the first (spread here
    # over our iterations, ``lr_decay_every``), gap schedule (-1.2, 0.1), no margin in its D cost, the
    # unit-norm kNN direction of Eq. 11, leaky ReLU in D, a squashing output in G (sigmoid on [0, 1]; tanh
    # on our [-1, 1]). Ours (see DEVELOPERS.md): fully connected networks of width 512; the entropy
    # weight 0.4 per point (the code's 2e-2 summed over 200 is 4 per point, which with our critic let
    # the generator drift to noise) and weights N(0, 0.02) (the code's 0.005 suits its conv nets with
    # batch norm; with ours the critic stayed too flat and ranked noise below real digits).
    "digits": dict(iterations=4_000, batch_size=200, learning_rate=1e-4, generator_lr_multiplier=25.0,
                   lr_decay=0.8, lr_decay_start_epoch=1, lr_decay_every=200, lr_min=1e-7,
                   entropy_weight=0.4, knn_normalise=True, gap_low=-1.2, gap_high=0.1, margin=None,
                   latent_dim=10, width=512, critic_init_std=0.02, generator_init_std=0.02,
                   critic_activation="leaky_relu", generator_output="tanh"),
}


def paper_config(dataset: str, loss: str = "egan-ent-nn", **overrides) -> EGANConfig:
    """The released code's settings for one of Dai et al.'s data sets, with ``overrides``.

    The GAN baseline trains D and G at every step (no gap schedule) at the same rates; the
    entropy weight applies to ``egan-ent-nn`` and ``egan-ent-vi`` alike.
    """
    if dataset not in _PAPER_SETTINGS:
        raise ValueError(f"dataset must be one of {sorted(_PAPER_SETTINGS)} for the paper's settings, got {dataset!r}.")
    settings = dict(_PAPER_SETTINGS[dataset])
    if loss == "gan":
        settings.update(gap_low=None, gap_high=None, margin=None)
    settings.update(overrides)
    if dataset == "digits":
        from ppl_ebm.data.images import load_images

        # The whole train split is the training set; the code's 20 rate decays spread over the run.
        settings.setdefault("train_size", len(load_images(dataset, "train").images))
        if "lr_decay_every" not in overrides:
            settings["lr_decay_every"] = max(settings["iterations"] // 20, 1)
    return EGANConfig(dataset=dataset, loss=loss, **settings).validate()


class TrainedEGAN(NamedTuple):
    generator: torch.nn.Module
    critic: torch.nn.Module
    inference: torch.nn.Module | None
    config: EGANConfig
    history: dict[str, list[float]]
    seconds: float


def _initialise(module: torch.nn.Module, std: float) -> None:
    # The released code: Linear weights N(0, std), biases 0; batch norms keep scale 1, shift 0.
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0.0, std)
                layer.bias.zero_()


def _batch_statistics_twin(generator: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``generator`` whose batch norms normalise with the batch's statistics (training mode)."""
    import copy

    twin = copy.deepcopy(generator)
    for layer in twin.modules():
        if isinstance(layer, torch.nn.BatchNorm1d):
            layer.track_running_stats = False
            layer.running_mean = None
            layer.running_var = None
            layer.num_batches_tracked = None
    return twin


def set_population_statistics(generator: torch.nn.Module, latent_dim: int, num_draws: int = 100_000,
                              seed: int = 0) -> torch.nn.Module:
    """Set every batch norm's running statistics to those of ``num_draws`` noise draws (one pass)."""
    norms = [layer for layer in generator.modules() if isinstance(layer, torch.nn.BatchNorm1d)]
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average: one batch gives its own statistics
    generator.train()
    with torch.no_grad():
        generator(torch.randn(num_draws, latent_dim, generator=torch.Generator().manual_seed(seed)))
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    return generator.eval()


def _learning_rate(config: EGANConfig, iteration: jax.Array) -> jax.Array:
    # The code multiplies lr by lr_decay once per epoch after lr_decay_start_epoch, while above lr_min.
    epoch = iteration // (config.lr_decay_every or max(config.train_size // config.batch_size, 1))
    decays = jnp.maximum(epoch - config.lr_decay_start_epoch, 0)
    rate = config.learning_rate * config.lr_decay ** decays.astype(jnp.float32)
    floor = config.learning_rate * config.lr_decay ** math.ceil(
        math.log(config.lr_min / config.learning_rate) / math.log(config.lr_decay)) if (
        config.lr_decay < 1 and config.lr_min < config.learning_rate) else config.learning_rate
    return jnp.maximum(rate, floor)


def train_egan(
    config: EGANConfig,
    sample_data: Callable[[int, int], np.ndarray],
    progress_bar: bool = True,
    log_every: int = 200,
) -> TrainedEGAN:
    """Train one of :data:`EGAN_LOSSES` and return the torch networks.

    Parameters
    ----------
    config
        The run (see :func:`paper_config` for the paper's settings per data set).
    sample_data
        ``sample_data(n, seed)``: the training set is ``config.train_size`` points drawn with
        seed ``config.seed * 1_000_003 + 17``; batches are drawn from it with replacement.
    progress_bar, log_every
        A tqdm bar; one compiled program per ``log_every`` iterations, whose last losses go
        into ``history``.

    Returns
    -------
    TrainedEGAN
        Generator (eval mode, population batch-norm statistics), critic (outputs the energy),
        the inference network for ``egan-ent-vi`` (else None), the config, the loss history and
        the training wall time in seconds.
    """
    from ppl_ebm.nets.torch_to_jax import torch_to_jax

    config = config.validate()
    torch.manual_seed(config.seed)
    generator_config, critic_config = config.network_configs()
    generator, critic = build_network(generator_config), build_network(critic_config)
    shape = config.data_shape()
    _initialise(generator, config.generator_init_std)
    _initialise(critic, config.critic_init_std)
    use_vi = config.loss == "egan-ent-vi"
    inference = build_network(config.inference_config()) if use_vi else None
    if inference is not None:
        _initialise(inference, config.critic_init_std)
    twin = _batch_statistics_twin(generator)
    generator_fn, generator_params = torch_to_jax(twin, torch.zeros(2, config.latent_dim))
    critic_fn, critic_params = torch_to_jax(critic, torch.zeros(2, *shape))
    if inference is not None:
        inference_fn, inference_params = torch_to_jax(inference, torch.zeros(2, config.data_dim()))
    else:
        inference_fn, inference_params = None, {}
    pool = jnp.asarray(sample_data(config.train_size, config.seed * 1_000_003 + 17), dtype=jnp.float32)
    if pool.shape[1:] != shape:
        raise ValueError(f"sample_data gave points of shape {pool.shape[1:]}, the networks take {shape}.")
    adam = optax.scale_by_adam(b1=config.beta1, b2=config.beta2, eps=1e-8)
    is_gan, alpha = config.loss == "gan", config.entropy_weight

    def energy(params, x):
        return critic_fn(params, x)[:, 0]

    def critic_loss(params, real, fake):
        real_energy, fake_energy = energy(params, real), energy(params, fake)
        if is_gan:  # -log sigmoid(-c(real)) - log(1 - sigmoid(-c(fake)))
            return jnp.mean(jax.nn.softplus(real_energy)) + jnp.mean(jax.nn.softplus(-fake_energy))
        if config.margin is not None:
            return jnp.mean(jnp.maximum(jnp.mean(real_energy) - fake_energy, -config.margin))
        return jnp.mean(real_energy) - jnp.mean(fake_energy)

    def inference_nll(params, z, x):
        out = inference_fn(params, x.reshape(x.shape[0], -1))
        return gaussian_negative_log_likelihood(z, out[:, : config.latent_dim], out[:, config.latent_dim:])

    def generator_loss(params, critic_params, inference_params, z):
        x = generator_fn(params, z)
        fake_energy = energy(critic_params, x)
        loss = jnp.mean(jax.nn.softplus(fake_energy)) if is_gan else jnp.mean(fake_energy)
        if config.loss == "egan-ent-nn":
            flat = x.reshape(x.shape[0], -1)  # images: the neighbours are found on the flattened pixels
            score = jax.lax.stop_gradient(knn_score(flat, config.knn_neighbours, normalise=config.knn_normalise))
            loss = loss + alpha * jnp.mean(jnp.sum(score * flat, axis=1))
        elif use_vi:
            loss = loss + alpha * jnp.mean(inference_nll(inference_params, z, x))
        return loss

    def masked_step(apply, params, state, grads, rate):
        updates, new_state = adam.update(grads, state, params)
        new_params = optax.apply_updates(params, jax.tree.map(lambda u: -rate * u, updates))
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)  # noqa: E731
        return pick(new_params, params), pick(new_state, state)

    def iteration(carry, key):
        (g_params, c_params, q_params, g_state, c_state, q_state, gap, step, c_average) = carry
        data_key, noise_key = jax.random.split(key)
        real = pool[jax.random.randint(data_key, (config.batch_size,), 0, pool.shape[0])]
        z = jax.random.normal(noise_key, (config.batch_size, config.latent_dim))
        fake = jax.lax.stop_gradient(generator_fn(g_params, z))
        # All gradients at the pre-update parameters, as the released code's single update.
        c_loss, c_grads = jax.value_and_grad(critic_loss)(c_params, real, fake)
        g_loss, g_grads = jax.value_and_grad(generator_loss)(g_params, c_params, q_params, z)
        train_critic = jnp.bool_(True) if config.gap_low is None else gap > config.gap_low
        train_generator = jnp.bool_(True) if config.gap_high is None else gap < config.gap_high
        rate = _learning_rate(config, step)
        c_params, c_state = masked_step(train_critic, c_params, c_state, c_grads, rate)
        g_params, g_state = masked_step(train_generator, g_params, g_state, g_grads,
                                        rate * config.generator_lr_multiplier)
        if use_vi:
            q_grads = jax.grad(lambda p: jnp.mean(inference_nll(p, z, fake)))(q_params)
            q_params, q_state = masked_step(jnp.bool_(True), q_params, q_state, q_grads, rate)
        decay = config.critic_average_decay
        c_average = jax.tree.map(lambda a, p: decay * a + (1 - decay) * p, c_average, c_params)
        carry = (g_params, c_params, q_params, g_state, c_state, q_state, c_loss, step + 1, c_average)
        return carry, (c_loss, g_loss, train_critic, train_generator)

    @jax.jit
    def chunk(carry, keys):
        return jax.lax.scan(iteration, carry, keys)

    # gap starts at 1.0 as in the released code: above gap_high, so the critic moves first.
    carry = (generator_params, critic_params, inference_params, adam.init(generator_params),
             adam.init(critic_params), adam.init(inference_params), jnp.float32(1.0), jnp.int32(0), critic_params)
    key = jax.random.key(config.seed)
    history: dict[str, list[float]] = {"iteration": [], "critic_loss": [], "generator_loss": [],
                                       "critic_update_fraction": [], "generator_update_fraction": []}
    start = time.perf_counter()
    done = 0
    with tqdm(total=config.iterations, disable=not progress_bar, desc=f"train {config.loss}", mininterval=1.0) as bar:
        while done < config.iterations:
            steps = min(log_every, config.iterations - done)
            key, chunk_key = jax.random.split(key)
            carry, (c_losses, g_losses, critic_steps, generator_steps) = chunk(carry, jax.random.split(chunk_key, steps))
            done += steps
            history["iteration"].append(done)
            history["critic_loss"].append(float(c_losses[-1]))
            history["generator_loss"].append(float(g_losses[-1]))
            history["critic_update_fraction"].append(float(jnp.mean(critic_steps)))
            history["generator_update_fraction"].append(float(jnp.mean(generator_steps)))
            bar.set_postfix(critic=f"{history['critic_loss'][-1]:.3f}", gen=f"{history['generator_loss'][-1]:.3f}",
                            refresh=False)
            bar.update(steps)
    seconds = time.perf_counter() - start
    _load(generator, carry[0], allow_missing_statistics=True)
    # The exponential average of the critic's weights when asked for (see critic_average_decay).
    _load(critic, carry[8] if config.critic_average_decay > 0 else carry[1])
    set_population_statistics(generator, config.latent_dim, seed=config.seed)
    if inference is not None:
        _load(inference, carry[2])
        inference.eval()
    return TrainedEGAN(generator, critic.eval(), inference, config, history, seconds)


def _load(module: torch.nn.Module, params: dict, allow_missing_statistics: bool = False) -> None:
    missing, unexpected = module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in params.items()},
                                                 strict=False)
    statistics = ("running_mean", "running_var", "num_batches_tracked")
    missing = [k for k in missing if not (allow_missing_statistics and k.rsplit(".", 1)[-1] in statistics)]
    if missing or unexpected:
        raise RuntimeError(f"trained weights do not fit the module: missing {missing}, unexpected {unexpected}")
