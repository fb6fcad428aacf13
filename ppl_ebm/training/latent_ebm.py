"""Maximum-likelihood training of a latent EBM on a frozen generator (Xiao, Yan & Amit 2020).

p(z) ∝ p0(z) exp(-E_theta(G(z))) with G fixed (a VAE decoder's mean, a flow's forward map). The
gradient of the log-likelihood (eq. 2 with eq. 6) is E_data[dE/dtheta] - E_{p(z)}[dE(G(z))/dtheta];
the second expectation uses short-run *non-persistent* Langevin (eq. 7) started afresh from p0
at every step (App. B.2: eps = 0.01, 60 steps; 100 to sample), plus ``energy_regularisation``
x (E(x+)^2 + E(x-)^2) (App. B.2's 0.1, Du & Mordatch's form). Sec. 5.3 stops training when the
held-out sample quality worsens: every ``eval_every`` steps the latent EBM is sampled with
``sample_steps`` steps, scored by exact W1 against held-out data, and the best energy is kept;
``patience`` evaluations without improvement stop the run.

JAX only: the chains are the package's own pure kernel (``LangevinSampler("ula").step``) on the
package's :class:`~ppl_ebm.targets.latent_ebm_jax.LatentEBMJax` target, called inside the jitted
training step (``lax.fori_loop`` over the 60 moves, then the parameter gradient and optax's Adam
in the same program). Torch would re-trace nothing but pays Python overhead for each of the
60 x steps kernel calls, and the translated networks run faster under XLA on the CPU
(see :mod:`ppl_ebm.training.gan`). The energy is a torch module translated by
:func:`~ppl_ebm.nets.torch_to_jax.torch_to_jax`, and the trained weights are written back into it.
"""

from __future__ import annotations

import copy
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

from ppl_ebm.kernels.samplers_jax import LangevinParams, LangevinSampler
from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax
from ppl_ebm.validation import check_positive_ints

__all__ = ["LatentEBMTrainingConfig", "TrainedEnergy", "latent_langevin", "train_latent_ebm"]


class LatentEBMTrainingConfig(NamedTuple):
    """The settings of App. B.2 and Sec. 5.3 (stored in the zoo entry's config.json)."""

    iterations: int = 1000  # the paper's VAE budget (200 for flows), Sec. 5.4
    batch_size: int = 128
    step_size: float = 0.01  # eps of eq. 7: drift eps / 2, noise sqrt(eps)
    train_steps: int = 60
    sample_steps: int = 100
    energy_regularisation: float = 0.1
    learning_rate: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    eval_every: int = 50
    eval_samples: int = 1000
    patience: int = 4
    seed: int = 0

    def validate(self) -> "LatentEBMTrainingConfig":
        check_positive_ints(self, ("iterations", "batch_size", "train_steps", "sample_steps", "eval_every",
                                   "eval_samples", "patience"))
        for name in ("step_size", "learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        if not self.energy_regularisation >= 0:
            raise ValueError(f"energy_regularisation must be >= 0, got {self.energy_regularisation!r}.")
        return self


class TrainedEnergy(NamedTuple):
    energy: torch.nn.Module  # the best energy by held-out W1 (Sec. 5.3)
    config: LatentEBMTrainingConfig
    history: dict[str, list[float]]
    best_iteration: int  # 0: the initial energy (a zoo build's: E = 0, the base) was never beaten
    stopped_early: bool
    seconds: float


def _ebm(generator_fn, generator_params, energy_fn, energy_params, latent_dim, data_shape) -> LatentEBMJax:
    return LatentEBMJax(generator_fn, generator_params, energy_fn, energy_params, critic_output="energy",
                        base_latent_dim=latent_dim, data_shape=data_shape)


def latent_langevin(key: jax.Array, ebm: LatentEBMJax, num: int, steps: int, step_size: float,
                    every: int | None = None) -> jax.Array:
    """Eq. 7 from p0: ``steps`` ULA moves (drift step_size / 2, noise sqrt(step_size)) of ``num``
    fresh chains through the package's pure kernel; returns the final latents ``(num, dim)``, or
    with ``every`` the start and every ``every``-th state ``(steps // every + 1, num, dim)``
    (the paper's Fig. 3: chains shown every 10 steps from prior draws)."""
    sampler = LangevinSampler("ula")
    eps = jnp.asarray(step_size, jnp.float32)
    one, zero = jnp.asarray(1.0), jnp.asarray(0, jnp.int32)
    params = LangevinParams(eps, jnp.sqrt(eps), one, zero, one, jnp.asarray(0.5), zero)
    init_key, key = jax.random.split(key)
    state = sampler.init(ebm.initial_positions(num, init_key), ebm.potential_and_grad, params)

    def move(index, state):
        return sampler.step(jax.random.fold_in(key, index), state, ebm.potential_and_grad, params)[0]

    if every is None:
        return jax.lax.fori_loop(0, steps, move, state).position

    def block(state, start):
        state = jax.lax.fori_loop(start, start + every, move, state)
        return state, state.position

    _, path = jax.lax.scan(block, state, jnp.arange(0, steps - steps % every, every))
    return jnp.concatenate([state.position[None], path])


def train_latent_ebm(
    generator: torch.nn.Module,
    energy: torch.nn.Module,
    latent_dim: int,
    sample_data: Callable[[int, int], np.ndarray],
    config: LatentEBMTrainingConfig = LatentEBMTrainingConfig(),
    score: Callable[[np.ndarray, np.ndarray], float] | None = None,
    progress_bar: bool = True,
    pool_size: int = 100_000,
    pool: np.ndarray | None = None,
    held_out: np.ndarray | None = None,
) -> TrainedEnergy:
    """Train ``energy`` (a torch module, initial weights as given) by eq. 6 on the frozen ``generator``.

    ``sample_data(n, seed)`` draws training data (a pool of ``pool_size``) and the held-out set;
    ``score(samples, held_out)`` measures sample quality (lower is better; default exact W1).
    ``pool`` / ``held_out`` give fixed arrays instead (an image set's training images and the
    images early stopping scores against; ``sample_data`` may then be None).
    Returns a copy of ``energy`` with the best weights; ``energy`` itself is not modified.
    """
    from ppl_ebm.metrics import emd
    from ppl_ebm.nets.torch_to_jax import torch_to_jax

    config = config.validate()
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}.")
    score = score or (lambda samples, data: emd(samples, data, seed=config.seed))
    with torch.no_grad():
        data_shape = tuple(generator(torch.zeros(1, latent_dim)).shape[1:])
    generator_fn, generator_params = torch_to_jax(generator, torch.zeros(2, latent_dim))
    energy_fn, energy_params = torch_to_jax(energy, torch.zeros(2, *data_shape))
    if pool is None:
        pool = sample_data(pool_size, config.seed * 1_000_003 + 29)
    if held_out is None:
        held_out = sample_data(config.eval_samples, config.seed * 1_000_003 + 31)
    pool, held_out = jnp.asarray(pool, dtype=jnp.float32), np.asarray(held_out)
    adam = optax.adam(config.learning_rate, b1=config.beta1, b2=config.beta2)

    # Buffers (a Fourier-feature energy's frequencies B, batch-norm statistics) are translated
    # into params like the weights, but torch never trains them: stop their gradient, so Adam's
    # update of them is exactly zero and B stays the one saved with the energy.
    buffers = frozenset(name for name, _ in energy.named_buffers())

    def loss(params, positive, negative):
        params = {k: jax.lax.stop_gradient(v) if k in buffers else v for k, v in params.items()}
        e_pos, e_neg = energy_fn(params, positive).reshape(-1), energy_fn(params, negative).reshape(-1)
        regulariser = jnp.mean(e_pos**2) + jnp.mean(e_neg**2)
        return jnp.mean(e_pos) - jnp.mean(e_neg) + config.energy_regularisation * regulariser, (e_pos, e_neg)

    @jax.jit
    def train_step(params, state, key):
        data_key, chain_key = jax.random.split(key)
        ebm = _ebm(generator_fn, generator_params, energy_fn, params, latent_dim, data_shape)
        z = jax.lax.stop_gradient(latent_langevin(chain_key, ebm, config.batch_size, config.train_steps,
                                                  config.step_size))
        negative = generator_fn(generator_params, z)
        positive = pool[jax.random.randint(data_key, (config.batch_size,), 0, pool.shape[0])]
        (value, (e_pos, e_neg)), grads = jax.value_and_grad(loss, has_aux=True)(params, positive, negative)
        updates, state = adam.update(grads, state, params)
        return optax.apply_updates(params, updates), state, value, jnp.mean(e_pos) - jnp.mean(e_neg)

    @jax.jit
    def draw(params, key):
        ebm = _ebm(generator_fn, generator_params, energy_fn, params, latent_dim, data_shape)
        return generator_fn(generator_params, latent_langevin(key, ebm, config.eval_samples, config.sample_steps,
                                                              config.step_size))

    eval_key = jax.random.key(config.seed + 7919)  # one key: every evaluation scores the same chains' noise
    # Step 0 scores the initial energy's own ULA samples, as every later evaluation, so the weights
    # kept when nothing beats step 0 are the ones scored (with a zero energy: the untilted base).
    initial = float(score(np.asarray(draw(energy_params, eval_key)), held_out))
    history: dict[str, list[float]] = {"iteration": [], "loss": [], "energy_gap": [], "eval_iteration": [0],
                                       "held_out_score": [initial]}
    best = (history["held_out_score"][0], 0, energy_params)
    params, state, key = energy_params, adam.init(energy_params), jax.random.key(config.seed)
    start, stale, stopped = time.perf_counter(), 0, False
    with tqdm(total=config.iterations, disable=not progress_bar, desc="train latent EBM", mininterval=1.0) as bar:
        for iteration in range(1, config.iterations + 1):
            key, step_key = jax.random.split(key)
            params, state, value, gap = train_step(params, state, step_key)
            bar.update(1)
            if iteration % 10 == 0:
                history["iteration"].append(iteration)
                history["loss"].append(float(value))
                history["energy_gap"].append(float(gap))  # E(data) - E(model samples)
            if iteration % config.eval_every == 0 or iteration == config.iterations:
                current = float(score(np.asarray(draw(params, eval_key)), held_out))
                history["eval_iteration"].append(iteration)
                history["held_out_score"].append(current)
                bar.set_postfix(score=f"{current:.4f}", best=f"{best[0]:.4f}", refresh=False)
                if math.isfinite(current) and current < best[0]:
                    best, stale = (current, iteration, params), 0
                else:
                    stale += 1
                    if stale >= config.patience:
                        stopped = True
                        break
    seconds = time.perf_counter() - start
    trained = copy.deepcopy(energy)
    trained.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in best[2].items()})
    return TrainedEnergy(trained.eval(), config, history, best[1], stopped, seconds)
