"""FlEx2MCMC as a pure sampler kernel, JAX core (mirrors :mod:`ppl_ebm.kernels.flex2mcmc_torch`).

Samsonov, Lagutin, Gabrié, Durmus, Naumov, Moulines (2022), "Local-Global MCMC kernels: the
best of both worlds" (NeurIPS), FlEx2MCMC: Ex2MCMC (:mod:`ppl_ebm.kernels.isir_jax`) whose
i-SIR proposal is a normalizing flow ``q`` over the latent, trained while sampling.

- **The flow** is the package's (:mod:`ppl_ebm.nets.flows`): ``flow_layers`` affine
  autoregressive (IAF) layers, NumPyro's ``InverseAutoregressiveTransform`` here and Pyro's
  ``AffineAutoregressive`` in torch, with one weight layout. Its output layers start at zero, so
  every layer is the identity and ``q`` starts as the prior N(0, I): the first i-SIR steps are
  Ex2MCMC's.
- **Its direction.** IAF draws in one network pass per layer and gets ``log q`` at its own draws
  from that pass (the log scales it computed); scoring any other point inverts it, ``dim`` passes
  per layer. An i-SIR step draws ``chains x (N - 1)`` proposals and scores ``chains`` states
  (particle 0), so IAF puts the sequential passes on the N - 1 times smaller set (a MAF would
  put them on the proposals). The training below scores chain positions too, by the same
  inversion, during warmup only. Both are exact: :func:`flow_proposal`'s two ways to ``log q``
  are tested against each other and a change of variables. In high dimensions the inversion is
  the cost; this sampler is meant for low-dimensional latents.
- **Training**: during warmup only, at each i-SIR step, ``train_steps`` Adam steps (``optax.adam``;
  ``torch.optim.Adam``) of maximum likelihood (the forward KL, KL(target || q)) on the chains'
  current positions pooled over chains. The paper's loss adds the backward KL, KL(q || target),
  which needs the target's gradient at reparametrised flow draws; we keep the forward KL only:
  it needs no target evaluation (the stats' counts stay the Ex2MCMC ones), and it is
  mass-covering, as an importance proposal must be (the backward KL is mode-seeking: a mode
  ``q`` misses gets no proposals and, once a chain is there, huge weights).
- **Frozen after warmup**: from then on the kernel is a fixed i-SIR + MALA cycle, which leaves the
  target invariant (an adaptive kernel that kept learning from its own chains would not be
  guaranteed to). The warmup's draws are not kept, as any sampler's.

The state is :class:`FlexState`: :class:`~ppl_ebm.kernels.samplers_jax.SamplerState`'s fields
(the MALA steps and their adaptation ``_replace`` it as theirs) plus :class:`FlowState`, the
flow's weights and optax's state, a pytree the compiled chunks carry. The i-SIR and MALA steps
are Ex2MCMC's own, given :func:`flow_proposal` as the i-SIR proposal. The target's prior
proposal (``proposal``) is not used: the flow's base is N(0, I), a valid i-SIR proposal for any
target (the latent EBMs' prior).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ppl_ebm.kernels.adaptation.mass_matrix import MassState
from ppl_ebm.kernels.isir_jax import ISIRSampler
from ppl_ebm.kernels.langevin_jax import LangevinInfo, LangevinState, PotentialAndGrad, Proposal
from ppl_ebm.kernels.samplers_jax import LangevinParams
from ppl_ebm.nets.flows import flow_log_prob, flow_params, numpyro_transforms

__all__ = ["FlexState", "Flex2MCMCSampler", "FlowProposal", "FlowState", "build", "flow_init", "flow_proposal",
           "flow_train", "identity_flow"]


@lru_cache(maxsize=8)
def _template(dim: int, layers: int, width: int):
    """The torch flow whose shapes (and, at the start, weights) the NumPyro twin takes."""
    from ppl_ebm.kernels.flex2mcmc_torch import identity_flow as torch_identity_flow

    return torch_identity_flow(dim, layers, width)


def identity_flow(dim: int, layers: int, width: int) -> list[tuple]:
    """The weights (:func:`ppl_ebm.nets.flows.flow_params` layout) of torch's
    :func:`~ppl_ebm.kernels.flex2mcmc_torch.identity_flow`: the same flow at the identity."""
    return flow_params(_template(dim, layers, width))


class FlowState(NamedTuple):
    """The proposal's flow: its NumPyro weights and ``optax.adam``'s state."""

    params: Any
    opt_state: Any


def flow_init(position: jax.Array, layers: int, width: int, learning_rate: float) -> FlowState:
    """The identity flow over ``position``'s dimension, with a fresh Adam."""
    params = identity_flow(position.shape[1], layers, width)
    return FlowState(params, optax.adam(learning_rate).init(params))


def flow_train(flow_state: FlowState, position: jax.Array, steps: int, layers: int, width: int,
               learning_rate: float) -> FlowState:
    """``steps`` Adam steps of maximum likelihood, ``-mean log q``, on the finite rows of
    ``position`` (chains, dim): one batch, all chains pooled. A chain at a non-finite point is
    left out (its weight 0) rather than poisoning the flow."""
    template, optimizer = _template(position.shape[1], layers, width), optax.adam(learning_rate)
    finite = jnp.all(jnp.isfinite(position), axis=1)
    data = jnp.where(finite[:, None], position, 0.0)
    weight = finite / jnp.maximum(jnp.sum(finite), 1)

    def loss(params):
        return -jnp.sum(weight * flow_log_prob(template, params, data))

    def one(_, current: FlowState) -> FlowState:
        grads = jax.grad(loss)(current.params)
        updates, opt_state = optimizer.update(grads, current.opt_state, current.params)
        return FlowState(optax.apply_updates(current.params, updates), opt_state)

    return jax.lax.fori_loop(0, steps, one, flow_state)


class FlowProposal(NamedTuple):
    """The flow as i-SIR's proposal: :class:`~ppl_ebm.kernels.langevin_jax.Proposal`'s
    ``sample`` and ``potential`` (``-log q`` of any point: the inversion), and
    ``sample_with_potential``, draws with ``-log q`` at them from the same pass, which
    :func:`ppl_ebm.kernels.isir_jax.isir_step` uses when a proposal has it."""

    sample: Any
    potential: Any
    sample_with_potential: Any


def flow_proposal(template, params) -> FlowProposal:
    """``q``: base N(0, I) pushed through the IAF layers of ``params`` (``template``'s shapes).
    ``-log q(u) = -log N(z; 0, I) + sum_layers log |det|`` along the draw's own path, the same
    quantity as ``-flow_log_prob(u)`` (the constant included, so the two ways agree)."""
    import numpyro.distributions as dist

    transforms = numpyro_transforms(template, params)

    def sample_with_potential(rng_key, shape, dtype):
        z = jax.random.normal(rng_key, shape, dtype=dtype)
        log_q = dist.Normal(jnp.zeros(shape[-1], dtype), 1.0).to_event(1).log_prob(z)
        for transform in transforms:
            u, log_scale = transform.call_with_intermediates(z)
            log_q = log_q - transform.log_abs_det_jacobian(z, u, log_scale)
            z = u
        return z, -log_q

    return FlowProposal(
        lambda *args: sample_with_potential(*args)[0],
        lambda position: -flow_log_prob(template, params, position),
        sample_with_potential,
    )


class FlexState(NamedTuple):
    """:class:`~ppl_ebm.kernels.samplers_jax.SamplerState`'s fields, in its order, plus ``flow``
    (:class:`FlowState`). The drivers read the shared fields only; checkpoints keep every leaf."""

    iteration: jax.Array
    langevin: LangevinState
    step_size: jax.Array
    adaptation: Any
    mean_acceptance: jax.Array
    mean_independence_acceptance: jax.Array | None
    mass: MassState | None
    flow: FlowState

    @property
    def position(self) -> jax.Array:
        return self.langevin.position


class Flex2MCMCSampler(NamedTuple):
    """The structure of a FlEx2MCMC sampler; its methods are the pure kernel.

    ex2mcmc: the Ex2MCMC sampler it runs (particles, MALA steps and their adaptation);
    flow_layers, flow_width: the flow's IAF layers and MADE hidden width; learning_rate,
    train_steps: Adam's rate and its steps per i-SIR step in warmup. Plain values: the key of
    compiled programs.
    """

    ex2mcmc: ISIRSampler
    flow_layers: int = 4
    flow_width: int = 32
    learning_rate: float = 1e-3
    train_steps: int = 5

    @property
    def name(self) -> str:
        return "flex2mcmc"

    def pooled_mass(self, chains: int) -> bool:
        """Its MALA steps' (:meth:`~ppl_ebm.kernels.isir_jax.ISIRSampler.pooled_mass`)."""
        return self.ex2mcmc.pooled_mass(chains)

    def with_num_chains(self, num_chains: int) -> "Flex2MCMCSampler":
        """This sampler for a run of ``num_chains`` chains (its Ex2MCMC sampler's)."""
        return self._replace(ex2mcmc=self.ex2mcmc.with_num_chains(num_chains))

    def evaluations(self, iteration: int) -> tuple[int, int]:
        """Ex2MCMC's (:meth:`~ppl_ebm.kernels.isir_jax.ISIRSampler.evaluations`): training the
        flow evaluates no potential, drawing from it neither."""
        return self.ex2mcmc.evaluations(iteration)

    def init(self, position: jax.Array, potential_and_grad_fn: PotentialAndGrad, params: LangevinParams) -> FlexState:
        """Ex2MCMC's start (potentials and gradients at ``position``) and the identity flow."""
        state = self.ex2mcmc.init(position, potential_and_grad_fn, params)
        return FlexState(*state, flow=flow_init(position, self.flow_layers, self.flow_width, self.learning_rate))

    def step(
        self,
        rng_key: jax.Array,
        state: FlexState,
        potential_and_grad_fn: PotentialAndGrad,
        params: LangevinParams,
        proposal: Proposal | None = None,
    ) -> tuple[FlexState, LangevinInfo]:
        """One transition of every chain: Ex2MCMC's cycle, its i-SIR step proposing from the
        flow (trained first while in warmup). ``proposal`` (the target's prior) is not used."""
        return self.ex2mcmc.cycle_step(rng_key, state, potential_and_grad_fn, params,
                                       lambda s: self._global(rng_key, s, potential_and_grad_fn, params))

    def _global(self, rng_key, state, potential_and_grad_fn, params):
        position = state.langevin.position
        flow = jax.lax.cond(
            state.iteration < params.num_warmup,
            lambda f: flow_train(f, position, self.train_steps, self.flow_layers, self.flow_width,
                                 self.learning_rate),
            lambda f: f,
            state.flow,
        )
        proposal = flow_proposal(_template(position.shape[1], self.flow_layers, self.flow_width), flow.params)
        return self.ex2mcmc._global(rng_key, state._replace(flow=flow), potential_and_grad_fn, params, proposal)


def build(kernel: str, options: dict) -> Flex2MCMCSampler:
    """The sampler of the registry's ``"flex2mcmc"`` entry from its validated options."""
    from ppl_ebm.kernels.isir_jax import build as build_ex2mcmc

    return Flex2MCMCSampler(
        build_ex2mcmc("ex2mcmc", options), options["flow_layers"], options["flow_width"],
        options["flow_learning_rate"], options["flow_train_steps"],
    )
