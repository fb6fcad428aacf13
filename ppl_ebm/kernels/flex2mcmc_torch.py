"""FlEx2MCMC as a pure sampler kernel, torch core (mirrored name for name in
:mod:`ppl_ebm.kernels.flex2mcmc_jax`; see there for the design).

The flow is the package's :class:`~ppl_ebm.nets.flows.AffineAutoregressiveFlow` (Pyro's
``AffineAutoregressive`` transforms), trained by ``torch.optim.Adam``. Torch's optimiser owns
its moments, so :class:`FlowState` holds the module and its optimiser (JAX's holds the weights
and optax's state); the warmup updates them in place and nothing touches them afterwards. A
checkpoint writes the module's ``state_dict`` and the optimiser's moments, and a resumed run loads
them in place (:meth:`ppl_ebm.drivers.run_torch._Advance.restore_state`).
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any, NamedTuple

import torch

from ppl_ebm.kernels import random_torch
from ppl_ebm.kernels.adaptation.mass_matrix import MassState
from ppl_ebm.kernels.isir_torch import ISIRSampler
from ppl_ebm.kernels.langevin_torch import LangevinInfo, LangevinState, PotentialAndGrad, Proposal
from ppl_ebm.kernels.samplers_torch import LangevinParams
from ppl_ebm.nets.flows import AffineAutoregressiveFlow

__all__ = ["FlexState", "Flex2MCMCSampler", "FlowProposal", "FlowState", "build", "flow_init", "flow_proposal",
           "flow_train", "identity_flow"]

_INIT_SEED = 0  # the hidden layers' initial weights: fixed, so a run repeats from its seed alone


@lru_cache(maxsize=8)
def _identity_flow(dim: int, layers: int, width: int) -> AffineAutoregressiveFlow:
    with torch.random.fork_rng(devices=[]):  # leave the caller's global generator where it was
        torch.manual_seed(_INIT_SEED)
        flow = AffineAutoregressiveFlow(dim, layers, max(width, dim), depth=2)
    with torch.no_grad():
        for transform in flow.transforms:
            # A zero output layer: every layer's mean 0 and log scale 0, so G is the identity
            # and q starts as the prior N(0, I); the hidden layers stay random, so the output
            # layer's gradient is not zero and training starts at once.
            transform.arn.layers[-1].weight.zero_()
            transform.arn.layers[-1].bias.zero_()
    return flow


def identity_flow(dim: int, layers: int, width: int) -> AffineAutoregressiveFlow:
    """A new flow over the latent (``dim``) at the identity: ``layers`` Pyro IAF layers, MADE
    hidden width ``max(width, dim)`` (MADE needs one unit per input at least), two hidden layers.
    Its weights are the same on every call and in both backends
    (:func:`ppl_ebm.kernels.flex2mcmc_jax.identity_flow` takes them from here)."""
    return copy.deepcopy(_identity_flow(dim, layers, width))


class FlowState(NamedTuple):
    """The proposal's flow and its ``torch.optim.Adam`` (JAX: weights and optax's state)."""

    flow: AffineAutoregressiveFlow
    optimizer: torch.optim.Optimizer


def flow_init(position: torch.Tensor, layers: int, width: int, learning_rate: float) -> FlowState:
    """The identity flow on ``position``'s device and dtype, with a fresh Adam."""
    flow = identity_flow(position.shape[1], layers, width).to(device=position.device, dtype=position.dtype)
    return FlowState(flow, torch.optim.Adam(flow.parameters(), lr=learning_rate))


def flow_train(flow_state: FlowState, position: torch.Tensor, steps: int) -> FlowState:
    """See :func:`ppl_ebm.kernels.flex2mcmc_jax.flow_train` (here the module and Adam update in place)."""
    finite = torch.isfinite(position).all(1)
    data = torch.where(finite[:, None], position, torch.zeros_like(position)).detach()
    weight = finite.to(position.dtype) / finite.sum().clamp_min(1)
    with torch.enable_grad():  # the drivers step under no_grad
        for _ in range(steps):
            flow_state.optimizer.zero_grad(set_to_none=True)
            # A new tensor each step: Pyro's transforms cache their last (x, y) pair by identity,
            # and the same ``data`` would be inverted with the previous step's weights.
            loss = -(weight * flow_state.flow.log_prob(data.clone())).sum()
            loss.backward()
            flow_state.optimizer.step()
    return flow_state


class FlowProposal(NamedTuple):
    """See :class:`ppl_ebm.kernels.flex2mcmc_jax.FlowProposal`."""

    sample: Any
    potential: Any
    sample_with_potential: Any


def flow_proposal(flow: AffineAutoregressiveFlow) -> FlowProposal:
    """See :func:`ppl_ebm.kernels.flex2mcmc_jax.flow_proposal`."""

    def sample_with_potential(rng, shape, dtype, device):
        z = random_torch.normal(rng, shape, dtype, device)
        with torch.no_grad():
            log_q = flow.base_distribution(device).log_prob(z)
            for transform in flow.transforms:
                u = transform(z)
                # Pyro caches this layer's log scale from the call just made: no second pass.
                log_q = log_q - transform.log_abs_det_jacobian(z, u)
                z = u
        return z, -log_q

    def potential(position):
        with torch.no_grad():  # a clone: never the (x, y) pair Pyro's transforms cached last
            return -flow.log_prob(position.clone())

    return FlowProposal(lambda *args: sample_with_potential(*args)[0], potential, sample_with_potential)


class FlexState(NamedTuple):
    """See :class:`ppl_ebm.kernels.flex2mcmc_jax.FlexState`."""

    iteration: int
    langevin: LangevinState
    step_size: torch.Tensor
    adaptation: Any
    mean_acceptance: torch.Tensor
    mean_independence_acceptance: torch.Tensor | None
    mass: MassState | None
    flow: FlowState

    @property
    def position(self) -> torch.Tensor:
        return self.langevin.position


class Flex2MCMCSampler(NamedTuple):
    """See :class:`ppl_ebm.kernels.flex2mcmc_jax.Flex2MCMCSampler`."""

    ex2mcmc: ISIRSampler
    flow_layers: int = 4
    flow_width: int = 32
    learning_rate: float = 1e-3
    train_steps: int = 5

    @property
    def name(self) -> str:
        return "flex2mcmc"

    def pooled_mass(self, chains: int) -> bool:
        """See :meth:`ppl_ebm.kernels.flex2mcmc_jax.Flex2MCMCSampler.pooled_mass`."""
        return self.ex2mcmc.pooled_mass(chains)

    def with_num_chains(self, num_chains: int) -> "Flex2MCMCSampler":
        """See :meth:`ppl_ebm.kernels.flex2mcmc_jax.Flex2MCMCSampler.with_num_chains`."""
        return self._replace(ex2mcmc=self.ex2mcmc.with_num_chains(num_chains))

    def evaluations(self, iteration: int) -> tuple[int, int]:
        """See :meth:`ppl_ebm.kernels.flex2mcmc_jax.Flex2MCMCSampler.evaluations`."""
        return self.ex2mcmc.evaluations(iteration)

    def init(self, position: torch.Tensor, potential_and_grad_fn: PotentialAndGrad,
             params: LangevinParams) -> FlexState:
        """See :meth:`ppl_ebm.kernels.flex2mcmc_jax.Flex2MCMCSampler.init`."""
        state = self.ex2mcmc.init(position, potential_and_grad_fn, params)
        return FlexState(*state, flow=flow_init(position, self.flow_layers, self.flow_width, self.learning_rate))

    def step(
        self,
        rng_key: torch.Generator | None,
        state: FlexState,
        potential_and_grad_fn: PotentialAndGrad,
        params: LangevinParams,
        proposal: Proposal | None = None,
    ) -> tuple[FlexState, LangevinInfo]:
        """See :meth:`ppl_ebm.kernels.flex2mcmc_jax.Flex2MCMCSampler.step`."""
        return self.ex2mcmc.cycle_step(rng_key, state, potential_and_grad_fn, params,
                                       lambda s: self._global(rng_key, s, potential_and_grad_fn, params))

    def _global(self, rng_key, state, potential_and_grad_fn, params):
        if state.iteration < params.num_warmup:
            flow_train(state.flow, state.langevin.position, self.train_steps)
        return self.ex2mcmc._global(rng_key, state, potential_and_grad_fn, params, flow_proposal(state.flow.flow))


def build(kernel: str, options: dict) -> Flex2MCMCSampler:
    """See :func:`ppl_ebm.kernels.flex2mcmc_jax.build`."""
    from ppl_ebm.kernels.isir_torch import build as build_ex2mcmc

    return Flex2MCMCSampler(
        build_ex2mcmc("ex2mcmc", options), options["flow_layers"], options["flow_width"],
        options["flow_learning_rate"], options["flow_train_steps"],
    )

