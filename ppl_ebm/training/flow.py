"""A normalizing flow on the 2-D toy sets: a base generator for a latent EBM (Xiao, Yan & Amit 2020).

G is :class:`~ppl_ebm.nets.flows.AffineAutoregressiveFlow` (Pyro's ``AffineAutoregressive``
transforms; p0 = N(0, I) in the data's 2 dimensions), trained by maximum likelihood,
log p(x) = log N(G^{-1}(x); 0, I) - log|det dG/dz|. The torch module is built and seeded in torch;
training runs on its NumPyro twin (:func:`~ppl_ebm.nets.flows.flow_log_prob`, the same weights) in
compiled chunks with optax's Adam (gradients clipped to a global norm, learning rate decayed by a cosine to 0), as
:mod:`ppl_ebm.training.vae` does, and the weights are written back into the torch module.
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

from ppl_ebm.nets.flows import AffineAutoregressiveFlow, flow_log_prob, flow_params
from ppl_ebm.nets.registry import NetworkConfig, build_network
from ppl_ebm.training.optax_scan import scan_chunk
from ppl_ebm.validation import check_positive_ints

__all__ = ["FlowConfig", "TrainedFlow", "train_flow"]


class FlowConfig(NamedTuple):
    """Everything that determines a toy flow run (stored in the model's config.json)."""

    dataset: str
    iterations: int = 10000
    batch_size: int = 256
    learning_rate: float = 1e-3  # peak of a cosine decay to 0 over the run
    clip_norm: float = 1.0  # gradients clipped to this global norm
    layers: int = 8
    width: int = 64
    depth: int = 2
    seed: int = 0
    latent_dim: int = 2  # a flow's latent is the data's dimension
    keep_best: bool = False  # keep the weights of the best held-out log-likelihood (checked every 100 steps)

    def validate(self) -> "FlowConfig":
        check_positive_ints(self, ("iterations", "batch_size", "layers", "width", "depth", "latent_dim"))
        for name in ("learning_rate", "clip_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")
        if self.latent_dim != 2:
            raise ValueError(f"a flow on the 2-D sets has latent_dim 2, got {self.latent_dim!r}.")
        return self

    def generator_config(self) -> NetworkConfig:
        """G's :class:`NetworkConfig` (what the zoo stores)."""
        return NetworkConfig("affine_autoregressive_flow", {"data_dim": self.latent_dim, "layers": self.layers,
                                                            "width": self.width, "depth": self.depth})


class TrainedFlow(NamedTuple):
    flow: AffineAutoregressiveFlow
    config: FlowConfig
    history: dict[str, list[float]]  # iteration, mean log-likelihood of the chunk's batches
    seconds: float


def _write_back(flow: AffineAutoregressiveFlow, params: list[tuple]) -> None:
    with torch.no_grad():
        for transform, layer_params in zip(flow.transforms, params):
            dense = [p for p in layer_params if p]
            for linear, (weight, bias) in zip(transform.arn.layers, dense):
                linear.weight.copy_(torch.from_numpy(np.array(weight).T))
                linear.bias.copy_(torch.from_numpy(np.array(bias)))


def train_flow(config: FlowConfig, sample_data: Callable[[int, int], np.ndarray], progress_bar: bool = True,
               pool_size: int = 200_000, log_every: int = 100) -> TrainedFlow:
    """Train the flow by maximum likelihood on batches drawn with replacement from ``pool_size``
    samples of ``sample_data(n, seed)`` (its own seed, never an evaluation one)."""
    config = config.validate()
    torch.manual_seed(config.seed)
    flow = build_network(config.generator_config())
    params = flow_params(flow)
    pool = jnp.asarray(sample_data(pool_size, config.seed * 1_000_003 + 23), dtype=jnp.float32)
    # Plain Adam at 1e-3 trained Swiss Roll to -0.7 nats and then blew up (log-likelihood -1e14 at
    # step ~9000): IAF's exp(log_scale) makes rare huge gradients; clipping and a decaying rate
    # are the usual cure. With both, Swiss Roll still met a non-finite gradient (NaN weights): such
    # an update is skipped (optax.apply_if_finite; 20 in a row stop the run with NaN weights). It
    # then jumped from -0.8 to -6e13 nats near step 3500 and did not recover (a thin manifold: the
    # inverse expands by up to exp(5) a layer, and a point just off the learned roll lands far out
    # in z): ``keep_best`` keeps the best held-out weights (early stopping).
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.iterations)
    adam = optax.apply_if_finite(optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(schedule)), 20)

    def loss(params, key):
        batch = pool[jax.random.randint(key, (config.batch_size,), 0, pool.shape[0])]
        return -jnp.mean(flow_log_prob(flow, params, batch))

    chunk = scan_chunk(loss, adam)

    held_out = jnp.asarray(sample_data(2000, config.seed * 1_000_003 + 37), dtype=jnp.float32)
    held_out_log_likelihood = jax.jit(lambda params: jnp.mean(flow_log_prob(flow, params, held_out)))
    carry, key = (params, adam.init(params)), jax.random.key(config.seed)
    history: dict[str, list[float]] = {"iteration": [], "log_likelihood": []}
    best = (-float("inf"), 0, params)
    start, done = time.perf_counter(), 0
    with tqdm(total=config.iterations, disable=not progress_bar, desc="train flow", mininterval=1.0) as bar:
        while done < config.iterations:
            steps = min(log_every, config.iterations - done)
            key, chunk_key = jax.random.split(key)
            carry, values = chunk(carry, jax.random.split(chunk_key, steps))
            done += steps
            history["iteration"].append(done)
            history["log_likelihood"].append(float(jnp.mean(values)))
            history.setdefault("skipped_updates", []).append(int(carry[1].total_notfinite))
            if config.keep_best:
                current = float(held_out_log_likelihood(carry[0]))
                history.setdefault("held_out_log_likelihood", []).append(current)
                if current > best[0]:  # NaN never is
                    best = (current, done, carry[0])
            bar.set_postfix(log_likelihood=f"{history['log_likelihood'][-1]:.3f}", refresh=False)
            bar.update(steps)
    seconds = time.perf_counter() - start
    if config.keep_best:
        history["best_iteration"] = [best[1]]
    _write_back(flow, best[2] if config.keep_best else carry[0])
    return TrainedFlow(flow.eval(), config, history, seconds)
