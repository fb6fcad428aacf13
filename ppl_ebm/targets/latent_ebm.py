"""The latent energy-based model of a generator and a critic (torch).

One sign convention throughout ppl_ebm: potential = energy = -log density, here with the
prior's normalising constant included so that it equals the potential of the Pyro model.

DDLS (Che et al. 2020), Theorem 1 and Sec. 3.4::

    U(z) = -log p0(z) - d(G(z))          critic_output="logit"  (NS-GAN logit, WGAN critic)
    U(z) = -log p0(z) - logit(D(G(z)))   critic_output="probability"
    U(z) = -log p0(z) + E(G(z))          critic_output="energy" (Xiao et al.; Dai et al.)

with p0 = N(0, I) by default (or another prior, ``prior=``), an optional temperature T (the
target is exp(-U(z) / T)) and the optional extended generator of Corollary 1,
G*(z, z') = G(z) + eps * z', z' ~ N(0, I) of the data's size, which makes z' part of the latent.

Samplers work in unconstrained space u, z = T(u) with T = biject_to(p0.support) (the identity
for N(0, I)): ``potential(u) = U(T(u)) / T - log|det dT/du|``, the density Pyro and NumPyro give
a ``z ~ p0`` sample statement plus a factor (see :mod:`ppl_ebm.targets.priors`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch
from torch.distributions import Distribution

from ppl_ebm.targets.priors import LatentPrior, as_latent_prior
from ppl_ebm.validation import check_real

__all__ = ["CRITIC_OUTPUTS", "LatentEBM", "critic_output_to_log_tilt"]

CRITIC_OUTPUTS = ("logit", "probability", "energy")
_PROBE_BATCH = 2


def critic_output_to_log_tilt(output: torch.Tensor, critic_output: str) -> torch.Tensor:
    """Map a critic's raw output to the log tilt ``t(x)`` with ``p(x) ∝ p_g(x) exp(t(x))``.

    A probability D is turned into its logit as ``log D - log1p(-D)`` after clamping to the
    open interval, so a saturated sigmoid gives a large finite logit instead of ``inf``.
    """
    if critic_output == "logit":
        return output
    if critic_output == "energy":
        return -output
    finfo = torch.finfo(output.dtype)
    probability = output.clamp(finfo.tiny, 1.0 - finfo.eps)
    return torch.log(probability) - torch.log1p(-probability)


def _check_float32(module: torch.nn.Module, role: str) -> None:
    """Refuse networks whose floating tensors are not float32, before the shape probe would
    blame their dtype on the latent size. float32 is the one precision ppl_ebm samples in: the
    chains, the draws files and the JAX translation are float32, so a float64 model would be
    silently rounded and a half-precision one has too little range for the gradients."""
    dtypes = {tensor.dtype for tensor in [*module.parameters(), *module.buffers()] if tensor.is_floating_point()}
    other = sorted(str(dtype) for dtype in dtypes - {torch.float32})
    if other:
        raise ValueError(
            f"The {role}'s parameters/buffers are {', '.join(other)}; ppl_ebm samples in float32 only (chains, "
            f"draws files and the JAX translation). Convert it with {role}.float() before building the LatentEBM."
        )


def _first_linear_in_features(module: torch.nn.Module) -> int | None:
    for submodule in module.modules():
        if isinstance(submodule, torch.nn.Linear):
            return int(submodule.in_features)
    return None


class LatentEBM:
    """Latent EBM ``p(z) ∝ exp(-U(z) / T)`` of a generator and a critic.

    Parameters
    ----------
    generator
        torch module mapping latents ``(batch, base_latent_dim)`` to samples ``(batch, *data_shape)``.
    critic
        torch module mapping samples to one value per sample (``(batch,)`` or ``(batch, 1)``).
    critic_output
        What the critic returns: ``"logit"`` (an NS-GAN discriminator logit d, or a WGAN critic's
        raw output, DDLS Sec. 3.4), ``"probability"`` (a sigmoid output D in (0, 1)) or
        ``"energy"`` (an energy E(x), added to the potential).
    latent_dim
        Dimension of the generator's input; inferred from the first ``Linear`` layer when None.
    temperature
        T > 0; the target is ``exp(-U(z) / T)``. T = 1 is DDLS.
    extended_noise_scale
        eps of DDLS Corollary 1; when set, the latent is ``(z, z')`` with ``z'`` of the data's
        size and ``G*(z, z') = G(z) + eps z'``.
    prior
        The latent prior p0 the generator was trained with: ``"normal"`` (N(0, I), the
        default), ``"uniform"`` (the box [-1, 1]^d) or a ``torch.distributions.Distribution``
        with event shape ``(latent_dim,)`` (e.g. ``Independent(Uniform(-2 * ones, 2 * ones), 1)``,
        ``MultivariateNormal``). Only ``"normal"`` or a distribution over the whole latent
        ``(z, z')`` goes with ``extended_noise_scale``.

    Notes
    -----
    Both networks are put in eval mode: in train mode BatchNorm would couple the chains of a batch.
    Shapes are checked here, on a probe batch, so that a mismatch fails before any sampling.
    """

    def __init__(
        self,
        generator: torch.nn.Module,
        critic: torch.nn.Module,
        critic_output: str = "logit",
        latent_dim: int | None = None,
        temperature: float = 1.0,
        extended_noise_scale: float | None = None,
        prior: str | Distribution | LatentPrior = "normal",
    ) -> None:
        if not isinstance(generator, torch.nn.Module) or not isinstance(critic, torch.nn.Module):
            raise TypeError(
                "LatentEBM expects torch.nn.Module instances for generator and critic, got "
                f"{type(generator).__name__} and {type(critic).__name__}."
            )
        if critic_output not in CRITIC_OUTPUTS:
            raise ValueError(
                f"critic_output must be one of {CRITIC_OUTPUTS}, got {critic_output!r}. Use "
                "'logit' for a discriminator logit or WGAN critic, 'probability' for a sigmoid "
                "output, 'energy' for an energy to add."
            )
        temperature = check_real("temperature", temperature, low=0.0)
        extended_noise_scale = check_real("extended_noise_scale", extended_noise_scale, low=0.0, allow_none=True)
        _check_float32(generator, "generator")
        _check_float32(critic, "critic")
        self.generator = generator.eval()
        self.critic = critic.eval()
        self.critic_output = critic_output
        self.temperature = float(temperature)
        self.extended_noise_scale = None if extended_noise_scale is None else float(extended_noise_scale)
        if latent_dim is None:
            latent_dim = _first_linear_in_features(generator)
            if latent_dim is None:
                raise ValueError(
                    "Cannot infer latent_dim: the generator has no Linear layer. "
                    "Pass latent_dim=<size of the generator's input>."
                )
        if isinstance(latent_dim, bool) or not isinstance(latent_dim, numbers.Integral) or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive int, got {latent_dim!r}.")
        self.base_latent_dim = int(latent_dim)
        self.data_shape = self._probe_shapes()
        self.data_size = math.prod(self.data_shape)
        self.latent_dim = self.base_latent_dim + (
            self.data_size if self.extended_noise_scale is not None else 0
        )
        if isinstance(prior, str) and prior == "uniform" and self.extended_noise_scale is not None:
            raise ValueError(
                "prior='uniform' with extended_noise_scale would put the box on Corollary 1's "
                "noise latent z' too, which is N(0, I). Pass prior as a distribution over all "
                f"{self.latent_dim} latent coordinates, or leave extended_noise_scale=None."
            )
        self.prior = as_latent_prior(prior, self.latent_dim, self.device)

    # -- validation -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for tensor in list(self.generator.parameters()) + list(self.generator.buffers()):
            return tensor.device
        return torch.device("cpu")

    def _probe_shapes(self) -> tuple[int, ...]:
        z = torch.randn(_PROBE_BATCH, self.base_latent_dim, device=self.device)
        with torch.no_grad():
            try:
                x = self.generator(z)
            except Exception as error:  # the module's own error is kept as the cause
                raise ValueError(
                    f"The generator does not accept latents of shape {tuple(z.shape)}: {error}. "
                    "Pass latent_dim=<size of the generator's input>."
                ) from error
            if not isinstance(x, torch.Tensor) or x.ndim < 2 or x.shape[0] != _PROBE_BATCH:
                raise ValueError(
                    "The generator must return a tensor shaped (batch, *data_shape); for latents "
                    f"of shape {tuple(z.shape)} it returned {getattr(x, 'shape', type(x))}."
                )
            try:
                output = self.critic(x)
            except Exception as error:
                raise ValueError(
                    f"The generator's output of shape {tuple(x.shape)} does not fit the critic: "
                    f"{error}. Check that the critic takes the generator's samples as input."
                ) from error
        if not isinstance(output, torch.Tensor) or tuple(output.shape) not in (
            (_PROBE_BATCH,),
            (_PROBE_BATCH, 1),
        ):
            raise ValueError(
                "The critic must return one value per sample, shaped (batch,) or (batch, 1); "
                f"for a batch of {_PROBE_BATCH} it returned shape {tuple(getattr(output, 'shape', ()))}."
            )
        if self.critic_output == "probability" and bool(((output < 0) | (output > 1)).any()):
            raise ValueError(
                "critic_output='probability' but the critic returned values outside [0, 1] "
                f"({output.flatten().tolist()}). Use critic_output='logit' for raw outputs."
            )
        return tuple(int(size) for size in x.shape[1:])

    def check_latents(self, z: torch.Tensor) -> None:
        """Raise a ValueError unless ``z`` is shaped ``(..., latent_dim)``."""
        if z.ndim < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(
                f"Latents must be shaped (..., {self.latent_dim}); got {tuple(z.shape)}."
            )

    # -- the model ---------------------------------------------------------------------------
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """``G(z)``, or ``G(z) + eps z'`` for the extended generator; ``z`` is ``(..., latent_dim)``."""
        batch_shape = z.shape[:-1]
        flat = z.reshape(-1, self.latent_dim)
        x = self.generator(flat[:, : self.base_latent_dim])
        if self.extended_noise_scale is not None:
            noise = flat[:, self.base_latent_dim :].reshape(x.shape)
            x = x + self.extended_noise_scale * noise
        return x.reshape(*batch_shape, *self.data_shape)

    def log_tilt(self, z: torch.Tensor) -> torch.Tensor:
        """``d(G(z))`` (or ``-E(G(z))``): the log density of the target relative to the prior."""
        batch_shape = z.shape[:-1]
        x = self.generate(z).reshape(-1, *self.data_shape)
        output = self.critic(x).reshape(-1)
        return critic_output_to_log_tilt(output, self.critic_output).reshape(batch_shape)

    def prior_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """``log p0(z)`` of constrained latents (``log N(z; 0, I)`` summed over the latent
        dimension for the default prior)."""
        return self.prior.log_prob(z)

    def constrain(self, u: torch.Tensor) -> torch.Tensor:
        """``z = T(u)``, T = ``biject_to(p0.support)``; ``u`` itself (the same object) for N(0, I)."""
        return self.prior.constrain(u)

    def unconstrain(self, z: torch.Tensor) -> torch.Tensor:
        """``u = T^{-1}(z)``; ``z`` itself (the same object) for N(0, I)."""
        return self.prior.unconstrain(z)

    def potential(self, u: torch.Tensor) -> torch.Tensor:
        """Potential in unconstrained space, shape ``u.shape[:-1]``.

        ``-(log p0(T(u)) + d(G(T(u)))) / T_temp - log|det dT/du|``: the temperature tempers the
        target's density in z, the Jacobian only carries it to u. For N(0, I), T is the
        identity and this is DDLS's ``U(z) / T = (-log p0(z) - d(G(z))) / T``.
        """
        if self.prior.is_standard_normal:
            return -(self.prior_log_density(u) + self.log_tilt(u)) / self.temperature
        z = self.prior.constrain(u)
        energy = -(self.prior.log_prob(z) + self.log_tilt(z)) / self.temperature
        return energy - self.prior.log_abs_det_jacobian(u, z)

    def potential_and_grad(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Potential and its gradient in ``u`` for a batch of independent chains.

        Only ``u`` requires a gradient, so autograd skips the weight gradients.
        """
        with torch.enable_grad():
            u = u.detach().requires_grad_(True)
            potential = self.potential(u)
            (grad,) = torch.autograd.grad(potential.sum(), u)
        return potential.detach(), grad

    def prior_potential(self, u: torch.Tensor) -> torch.Tensor:
        """The prior's potential in unconstrained space, ``-log p0(T(u)) - log|det dT/du|``.

        The exact -log density of ``prior_sample_unconstrained``'s draws (change of variables),
        so an independence Metropolis-Hastings step proposing ``y`` from them accepts with
        ``log_ratio = U(x) - U(y) + prior_potential(y) - prior_potential(x)``. For N(0, I)
        it is ``|u|^2 / 2 + d/2 log(2 pi)``.
        """
        if self.prior.is_standard_normal:
            return -self.prior_log_density(u)
        z = self.prior.constrain(u)
        return -self.prior.log_prob(z) - self.prior.log_abs_det_jacobian(u, z)

    def prior_sample(self, num: int | Sequence[int], generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw constrained latents ``z ~ p0``, shape ``(*num, latent_dim)`` (inputs of ``generate``)."""
        shape = (num,) if isinstance(num, int) else tuple(num)
        return self.prior.sample(shape, self.device, generator)

    def prior_sample_unconstrained(
        self, num: int | Sequence[int], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """``unconstrain(prior_sample(num, generator))``: prior draws in u, where chains start."""
        return self.unconstrain(self.prior_sample(num, generator))

    # -- the Target protocol (ppl_ebm.targets.protocol) ------------------------------------
    @property
    def dim(self) -> int:
        return self.latent_dim

    @property
    def site_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"z": (self.latent_dim,)}

    def initial_positions(self, num_chains: int, rng: torch.Generator | None = None) -> torch.Tensor:
        """Prior draws in u, where chains start (DDLS Alg. 1 starts at ``z0 ~ p0``)."""
        return self.prior_sample_unconstrained(num_chains, generator=rng)

    def sites(self, u: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"z": constrain(u)}``: the latents in the prior's support."""
        return {"z": self.constrain(u)}

    def to(self, device) -> "LatentEBM":
        """Move the generator, critic and prior to ``device`` in place (as ``nn.Module.to``); returns self."""
        self.generator.to(device)
        self.critic.to(device)
        self.prior = self.prior.to(device)
        return self

    def to_jax(self):
        """The same model, with the same weights, evaluated in JAX (see :class:`LatentEBMJax`)."""
        from ppl_ebm.targets.latent_ebm_jax import LatentEBMJax

        return LatentEBMJax.from_torch(self)

    def __repr__(self) -> str:
        extended = (
            "" if self.extended_noise_scale is None else f", extended_noise_scale={self.extended_noise_scale}"
        )
        prior = "" if self.prior.is_standard_normal else f", prior={self.prior!r}"
        return (
            f"LatentEBM(latent_dim={self.latent_dim}, data_shape={self.data_shape}, "
            f"critic_output={self.critic_output!r}, temperature={self.temperature}{extended}{prior})"
        )
