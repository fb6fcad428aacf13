"""The DDLS paper's baselines: generator only, DRS, MH-GAN and DOT, batched in torch.

All samplers read the critic through a :class:`~ppl_ebm.LatentEBM` (``ebm.generate``,
``ebm.log_tilt`` = ``d(G(z))``, ``ebm.critic``, ``ebm.critic_output``). DRS and MH-GAN treat
``d`` as the log density ratio ``log p_d / p_g``, which needs a calibrated critic: build the
EBM with a :class:`~ppl_ebm.training.calibration.CalibratedCritic` for them (DDLS Sec. 5.2, Azadi et al.
2019, Turner et al. 2019). DOT is unchanged by an affine calibration ``a d + b`` (its ``K``
scales with ``a``, ``b`` has no gradient).

References
----------
- S. Azadi, C. Olsson, T. Darrell, I. Goodfellow, A. Odena. Discriminator rejection sampling.
  ICLR 2019 (DRS).
- R. Turner, J. Hung, E. Frank, Y. Saatci, J. Yosinski. Metropolis-Hastings generative
  adversarial networks. ICML 2019 (MH-GAN); code: uber-research/metropolis-hastings-gans,
  ``mhgan/mh.py`` (``rejection_sample``, ``mh_sample``) and ``mhgan/demo_mhgan.py``.
- A. Tanaka. Discriminator optimal transport. NeurIPS 2019 (DOT); code:
  AkinoriTanaka-phys/DOT, ``DOT.py`` (``eff_k``, ``Transporter_in_latent``) and ``demo_2d.ipynb``.
- T. Che et al. Your GAN is secretly an energy-based model and you should use discriminator
  driven latent sampling. NeurIPS 2020 (DDLS).
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from ppl_ebm.targets.latent_ebm import critic_output_to_log_tilt

__all__ = [
    "BaselineResult",
    "dot",
    "drs",
    "estimate_lipschitz",
    "generator_only",
    "mh_gan",
]

# DRS draws this many candidates per round until enough are accepted.
_DRS_BATCH = 10000
_SPACES = ("latent", "target")
# DOT's K estimate: the maximum over 100 pairs (``eff_k(G, D, trial=100)``), averaged over 10
# calls (``demo_2d.ipynb``).
_LIPSCHITZ_PAIRS = 100
_LIPSCHITZ_REPEATS = 10


class BaselineResult(NamedTuple):
    """Output of a baseline sampler.

    Attributes
    ----------
    samples
        ``G(z)`` of the returned latents (DOT in target space: the transported points),
        shape ``(n, *data_shape)``, float32.
    latents
        The returned latents, shape ``(n, latent_dim)`` (DOT in target space: the starting
        latents ``z_y`` of the transported points).
    stats
        ``wall_seconds``; ``proposals``: generator evaluations (every latent pushed through G,
        pilot draws included); ``critic_evals``; ``acceptance_rate`` (``nan`` where it has no
        meaning); plus each method's own entries (see its docstring).
    """

    samples: np.ndarray
    latents: np.ndarray
    stats: dict[str, Any]


# -- helpers --------------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}.")
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def _as_generator(seed: int | torch.Generator) -> torch.Generator:
    """A CPU torch.Generator: the one given, or a fresh one seeded with the int given."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an int or a torch.Generator, got {seed!r}.")
    return torch.Generator().manual_seed(int(seed))


def _uniform(count: int, generator: torch.Generator) -> torch.Tensor:
    # float64 so that tiny acceptance probabilities are not rounded to 0.
    return torch.rand(count, generator=generator, dtype=torch.float64)


def _chunks(total: int, size: int | None) -> Iterator[slice]:
    size = total if size is None else size
    for start in range(0, total, size):
        yield slice(start, min(start + size, total))


def _progress(total: int, enabled: bool, description: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=description, mininterval=0.5, leave=False)


def _data_shape(ebm: Any) -> tuple[int, ...]:
    return tuple(getattr(ebm, "data_shape"))


def _data_log_tilt(ebm: Any, x: torch.Tensor) -> torch.Tensor:
    """``d(x)`` for data-space points ``x`` (what ``ebm.log_tilt`` gives for ``x = G(z)``)."""
    output = ebm.critic(x.reshape(-1, *_data_shape(ebm))).reshape(-1)
    return critic_output_to_log_tilt(output, getattr(ebm, "critic_output", "logit"))


def _generate_and_tilt(ebm: Any, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``G(z)`` and ``d(G(z))`` (float64) with one generator pass: ``ebm.log_tilt`` without recomputing G."""
    x = ebm.generate(z)
    return x, _data_log_tilt(ebm, x).to(torch.float64)


def _log_tilt(ebm: Any, z: torch.Tensor, batch_size: int | None) -> torch.Tensor:
    return torch.cat([ebm.log_tilt(z[part]).reshape(-1).to(torch.float64) for part in _chunks(z.shape[0], batch_size)])


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()


def _check_common(n: Any, batch_size: Any) -> tuple[int, int | None]:
    n = _check_int("n (the number of samples)", n, 1)
    if batch_size is not None:
        batch_size = _check_int("batch_size", batch_size, 1)
    return n, batch_size


# -- generator only -------------------------------------------------------------------------


def generator_only(
    ebm: Any,
    n: int,
    seed: int | torch.Generator = 0,
    *,
    batch_size: int | None = None,
    progress_bar: bool = False,
) -> BaselineResult:
    """Plain GAN samples: ``z ~ p0 = N(0, I)``, ``x = G(z)``.

    Parameters
    ----------
    ebm
        A :class:`~ppl_ebm.LatentEBM`.
    n
        Number of samples.
    seed
        int or ``torch.Generator`` (CPU) for the latent draws.
    batch_size
        Latents per generator call (all at once when None).
    progress_bar
        Show a tqdm bar over batches.

    Returns
    -------
    BaselineResult
        ``stats``: ``wall_seconds``, ``proposals`` (= n), ``critic_evals`` (0),
        ``acceptance_rate`` (1: every draw is kept).
    """
    n, batch_size = _check_common(n, batch_size)
    generator = _as_generator(seed)
    start = time.perf_counter()
    z = ebm.prior_sample(n, generator=generator)
    parts = []
    with torch.no_grad(), _progress(n, progress_bar, "generator") as bar:
        for part in _chunks(n, batch_size):
            parts.append(ebm.generate(z[part]))
            bar.update(part.stop - part.start)
    x = torch.cat(parts)
    stats = {
        "wall_seconds": time.perf_counter() - start,
        "proposals": n,
        "critic_evals": 0,
        "acceptance_rate": 1.0,
    }
    return BaselineResult(_to_numpy(x), _to_numpy(z), stats)


# -- DRS ------------------------------------------------------------------------------------


def _drs_f(log_tilt: torch.Tensor, log_max: torch.Tensor, eps: float) -> torch.Tensor:
    """``F = D_delta - log(1 - exp(D_delta - eps))`` with ``D_delta = D~ - D*_M`` (Azadi et al.;
    ``rejection_sample`` in ``mhgan/mh.py``). ``sigmoid(F) ≈ exp(D_delta)``: exact rejection at gamma = 0."""
    delta = log_tilt - log_max
    # log(1 - e^u) = log(-expm1(u)), accurate for u near 0 (D~ at the running max).
    return delta - torch.log(-torch.expm1(delta - eps))


def drs(
    ebm: Any,
    n: int,
    seed: int | torch.Generator = 0,
    *,
    gamma_percentile: float = 95.0,
    pilot: int = 10000,
    eps: float = 1e-6,
    gamma: float | None = None,
    log_max_ratio: float | None = None,
    batch_size: int = _DRS_BATCH,
    max_proposals: int | None = None,
    progress_bar: bool = False,
) -> BaselineResult:
    """Discriminator Rejection Sampling (Azadi et al. 2019), as the MH-GAN code implements it.

    For each candidate ``z ~ p0`` with ``D~ = d(G(z))`` (the calibrated logit):
    ``D*_M <- max(D*_M, D~)``, ``F = D~ - D*_M - log(1 - exp(D~ - D*_M - eps)) - gamma``,
    accept with probability ``sigmoid(F)``. Candidates are drawn in batches until ``n`` are
    accepted; the running maximum runs over the candidates in order (``np.maximum.accumulate``
    in ``rejection_sample``, ``mhgan/mh.py``).

    Parameters
    ----------
    ebm
        A :class:`~ppl_ebm.LatentEBM` whose critic is a calibrated logit.
    n
        Number of accepted samples to return.
    seed
        int or ``torch.Generator`` (CPU).
    gamma_percentile
        ``gamma`` is this percentile of ``F`` over the pilot draws; 95 in Azadi et al. and the
        MH-GAN code (``shift_percent=95.0``).
    pilot
        Burn-in draws that estimate ``D*_M = log M`` as their maximum (the MH-GAN code uses
        156 batches of 64 = 9984, ``max_est_batches`` in ``demo_mhgan.py``). Not returned as
        samples. May be 0 when ``gamma`` and ``log_max_ratio`` are both given.
    eps
        The ``epsilon`` of ``F`` (1e-6, as in ``rejection_sample``); keeps ``log(1 - exp(.))``
        finite at the maximum.
    gamma
        Use this shift instead of the percentile. ``gamma=0`` with a true bound
        ``log_max_ratio >= sup d`` is exact rejection sampling of ``p0(z) exp(d(G(z)))``
        (acceptance ``exp(D~ - log M)`` up to O(eps)), the DDLS target of Sec. 3.2.
    log_max_ratio
        A known bound on ``d``; ``D*_M`` starts at ``max(log_max_ratio, pilot maximum)``.
    batch_size
        Candidates per round.
    max_proposals
        Stop with a RuntimeError after this many candidates (default ``1000 * n + pilot``).
    progress_bar
        Show a tqdm bar over accepted samples.

    Returns
    -------
    BaselineResult
        ``stats``: ``wall_seconds``; ``proposals`` (pilot + candidates, all pushed through G
        and the critic); ``critic_evals``; ``acceptance_rate`` (accepted / candidates up to
        the n-th acceptance, pilot excluded); ``gamma``; ``log_max_ratio`` (final ``D*_M``);
        ``max_ratio_updates`` (candidates that raised ``D*_M`` above its pilot value: where
        this is not 0 the pilot under-estimated M); ``pilot``.

    Notes
    -----
    The MH-GAN code takes the percentile over each 640-candidate batch; here ``gamma`` is taken
    once, over the pilot (with ``D*_M`` the pilot maximum), so that the acceptance rule stays
    fixed while sampling. Candidates with a non-finite ``d`` are rejected.
    """
    n, _ = _check_common(n, None)
    batch_size = _check_int("batch_size", batch_size, 1)
    pilot = _check_int("pilot", pilot, 0)
    eps = _check_positive("eps", eps)
    if gamma is None:
        if (
            isinstance(gamma_percentile, bool)
            or not isinstance(gamma_percentile, numbers.Real)
            or not 0.0 <= gamma_percentile <= 100.0
        ):
            raise ValueError(f"gamma_percentile must be a number in [0, 100], got {gamma_percentile!r}.")
    elif not math.isfinite(gamma):
        raise ValueError(f"gamma must be a finite number or None, got {gamma!r}.")
    if log_max_ratio is not None and not math.isfinite(log_max_ratio):
        raise ValueError(f"log_max_ratio must be a finite number or None, got {log_max_ratio!r}.")
    if pilot == 0 and (gamma is None or log_max_ratio is None):
        raise ValueError(
            "pilot=0 needs both gamma and log_max_ratio: the pilot draws estimate log M and the "
            "gamma percentile. Pass pilot >= 1 (10000 is the MH-GAN code's size)."
        )
    if max_proposals is None:
        max_proposals = 1000 * n + pilot
    max_proposals = _check_int("max_proposals", max_proposals, 1)

    generator = _as_generator(seed)
    start = time.perf_counter()
    proposals = 0
    with torch.no_grad():
        log_max = torch.tensor(-math.inf if log_max_ratio is None else float(log_max_ratio), dtype=torch.float64)
        if pilot > 0:
            pilot_tilt = _log_tilt(ebm, ebm.prior_sample(pilot, generator=generator), batch_size).cpu()
            proposals += pilot
            pilot_tilt = pilot_tilt[torch.isfinite(pilot_tilt)]
            if pilot_tilt.numel() == 0:
                raise RuntimeError("The critic returned no finite value on the pilot draws.")
            log_max = torch.maximum(log_max, pilot_tilt.max())
            if gamma is None:
                pilot_f = _drs_f(pilot_tilt, log_max, eps)
                gamma = float(np.percentile(pilot_f.numpy(), float(gamma_percentile)))
        pilot_log_max = float(log_max)

        kept_z, kept_x = [], []
        accepted = 0
        candidates_used = 0
        updates = 0
        with _progress(n, progress_bar, "DRS") as bar:
            while accepted < n:
                if proposals >= max_proposals:
                    raise RuntimeError(
                        f"DRS accepted {accepted} of {n} samples in {proposals} proposals "
                        f"(max_proposals={max_proposals}); the acceptance rate is too low. Check "
                        "the critic's calibration, gamma and log M, or raise max_proposals."
                    )
                count = min(batch_size, max_proposals - proposals)
                z = ebm.prior_sample(count, generator=generator)
                x, tilt = _generate_and_tilt(ebm, z)
                tilt = tilt.cpu()
                proposals += count
                finite_tilt = torch.where(torch.isfinite(tilt), tilt, torch.full_like(tilt, -math.inf))
                running_max = torch.maximum(log_max, torch.cummax(finite_tilt, dim=0).values)
                updates += int((finite_tilt > pilot_log_max).sum())
                log_max = running_max[-1]
                acceptance = torch.sigmoid(_drs_f(tilt, running_max, eps) - gamma)
                accept = _uniform(count, generator) <= acceptance  # nan -> False
                index = torch.nonzero(accept).reshape(-1)
                needed = n - accepted
                if index.numel() >= needed:
                    candidates_used += int(index[needed - 1]) + 1
                    index = index[:needed]
                else:
                    candidates_used += count
                index = index.to(z.device)
                kept_z.append(z[index])
                kept_x.append(x[index])
                accepted += int(index.numel())
                bar.update(int(index.numel()))
    z_out = torch.cat(kept_z)
    x_out = torch.cat(kept_x)
    stats = {
        "wall_seconds": time.perf_counter() - start,
        "proposals": proposals,
        "critic_evals": proposals,
        "acceptance_rate": n / candidates_used,
        "gamma": float(gamma),
        "log_max_ratio": float(log_max),
        "max_ratio_updates": updates,
        "pilot": pilot,
    }
    return BaselineResult(_to_numpy(x_out), _to_numpy(z_out), stats)


# -- MH-GAN ---------------------------------------------------------------------------------


def mh_gan(
    ebm: Any,
    n: int,
    seed: int | torch.Generator = 0,
    *,
    chain_length: int = 640,
    initial_real: Any = None,
    batch_size: int | None = None,
    progress_bar: bool = False,
) -> BaselineResult:
    """MH-GAN (Turner et al. 2019): independence Metropolis-Hastings with generator proposals.

    One chain per output sample, all chains advanced together. A proposal ``z' ~ p0`` is
    accepted with probability ``min(1, exp(d(G(z')) - d(x)))`` with ``d`` the calibrated logit,
    i.e. ``((1/D_old) - 1) / ((1/D_new) - 1)`` with ``D = sigmoid(d)`` (``accept_prob_MH_disc``
    in ``mhgan/mh.py``). The chain's final state is returned. Its stationary law is
    ``p0(z) exp(d(G(z))) / Z``, the DDLS target (DDLS Sec. 3.2).

    Parameters
    ----------
    ebm
        A :class:`~ppl_ebm.LatentEBM` whose critic is a calibrated logit.
    n
        Number of chains = samples returned.
    seed
        int or ``torch.Generator`` (CPU).
    chain_length
        Generator proposals per chain; 640 in MH-GAN (10 batches of 64, ``chain_batches`` in
        ``demo_mhgan.py``).
    initial_real
        Held-out real samples ``(m, *data_shape)``. When given, each chain starts at a real
        sample drawn at random (as ``enhance_samples`` in ``demo_mhgan.py`` does, to remove
        burn-in), and every one of the ``chain_length`` draws is a proposal. A chain that never
        leaves its real sample is restarted from its first generator proposal over the same
        proposals (the code's fallback, ``cap_out``). When None, each chain starts at its first
        generator draw and the other ``chain_length - 1`` draws are proposals (the same
        fallback chain).
    batch_size
        Chains advanced together (all when None).
    progress_bar
        Show a tqdm bar over chain steps.

    Returns
    -------
    BaselineResult
        ``stats``: ``wall_seconds``; ``proposals`` (= ``n * chain_length`` generator draws);
        ``critic_evals`` (+ n for the real starting points); ``acceptance_rate`` (accepted
        moves / MH proposals of the main chains); ``restarted`` (chains that never left their
        real starting point, 0 without ``initial_real``); ``chain_length``.

    Notes
    -----
    A proposal or state with a non-finite ``d`` never wins a comparison it would need ``nan``
    arithmetic for: ``nan`` proposals are rejected.
    """
    n, batch_size = _check_common(n, batch_size)
    chain_length = _check_int("chain_length", chain_length, 1)
    generator = _as_generator(seed)
    real = None
    if initial_real is not None:
        real = initial_real if isinstance(initial_real, torch.Tensor) else torch.as_tensor(np.asarray(initial_real))
        data_shape = _data_shape(ebm)
        if real.ndim != len(data_shape) + 1 or tuple(real.shape[1:]) != data_shape or real.shape[0] < 1:
            raise ValueError(
                f"initial_real must be shaped (m, *{data_shape}) with m >= 1; got {tuple(real.shape)}."
            )
    start = time.perf_counter()
    latents, samples = [], []
    accepted_moves = 0
    mh_proposals = 0
    restarted = 0
    with torch.no_grad(), _progress(n * chain_length, progress_bar, "MH-GAN") as bar:
        for part in _chunks(n, batch_size):
            chains = part.stop - part.start
            z = ebm.prior_sample(chains, generator=generator)
            x, tilt = _generate_and_tilt(ebm, z)
            bar.update(chains)
            if real is None:
                moved = torch.ones(chains, dtype=torch.bool)
                fallback = None
            else:
                # Main chain at a real sample, fallback chain at the first generator draw; the
                # first generator draw is also the main chain's first proposal.
                index = torch.randint(real.shape[0], (chains,), generator=generator)
                real_x = real[index].to(device=x.device, dtype=x.dtype)
                real_tilt = _data_log_tilt(ebm, real_x).to(torch.float64).cpu()
                fallback = (z, x, tilt)
                accept = _accept(real_tilt, tilt.cpu(), generator)
                moved = accept.clone()
                accepted_moves += int(accept.sum())
                mh_proposals += chains
                z = torch.where(_column(accept, z), z, torch.full_like(z, math.nan))
                x = torch.where(_column(accept, x), x, real_x)
                tilt = torch.where(accept.to(tilt.device), tilt, real_tilt.to(tilt.device))
            for _ in range(chain_length - 1):
                proposal_z = ebm.prior_sample(chains, generator=generator)
                proposal_x, proposal_tilt = _generate_and_tilt(ebm, proposal_z)
                accept = _accept(tilt.cpu(), proposal_tilt.cpu(), generator)
                z, x, tilt = _move(accept, (z, x, tilt), (proposal_z, proposal_x, proposal_tilt))
                moved |= accept
                accepted_moves += int(accept.sum())
                mh_proposals += chains
                if fallback is not None:
                    fallback_accept = _accept(fallback[2].cpu(), proposal_tilt.cpu(), generator)
                    fallback = _move(fallback_accept, fallback, (proposal_z, proposal_x, proposal_tilt))
                bar.update(chains)
            if fallback is not None:
                stuck = ~moved
                restarted += int(stuck.sum())
                z, x, _ = _move(stuck, (z, x, tilt), fallback)
            latents.append(z)
            samples.append(x)
    critic_evals = n * chain_length + (0 if real is None else n)
    stats = {
        "wall_seconds": time.perf_counter() - start,
        "proposals": n * chain_length,
        "critic_evals": critic_evals,
        "acceptance_rate": accepted_moves / mh_proposals if mh_proposals else math.nan,
        "restarted": restarted,
        "chain_length": chain_length,
    }
    return BaselineResult(_to_numpy(torch.cat(samples)), _to_numpy(torch.cat(latents)), stats)


def _column(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-chain mask broadcast over the trailing axes of ``like``, on its device."""
    return mask.to(like.device).reshape(-1, *([1] * (like.ndim - 1)))


def _accept(current_tilt: torch.Tensor, proposal_tilt: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Independence-MH test ``log u <= d(x') - d(x)``; a nan difference rejects."""
    log_ratio = proposal_tilt - current_tilt
    return torch.log(_uniform(log_ratio.shape[0], generator)) <= log_ratio


def _move(accept: torch.Tensor, state: tuple, proposal: tuple) -> tuple:
    return tuple(torch.where(_column(accept, old), new, old) for old, new in zip(state, proposal))


# -- DOT ------------------------------------------------------------------------------------


def _check_space(space: str) -> None:
    if space not in _SPACES:
        raise ValueError(f"space must be one of {_SPACES}, got {space!r}.")


def estimate_lipschitz(
    ebm: Any,
    seed: int | torch.Generator = 0,
    *,
    num_pairs: int = _LIPSCHITZ_PAIRS,
    repeats: int = _LIPSCHITZ_REPEATS,
    space: str = "latent",
    data: Any = None,
) -> float:
    """DOT's estimate of the Lipschitz constant ``K`` of the critic, from random pairs.

    Each repeat takes the maximum of ``|d(u1) - d(u2)| / ||u1 - u2||`` over ``num_pairs``
    random pairs; the estimate is the mean over ``repeats`` (DOT ``eff_k`` / ``eff_K`` with
    ``trial=100``, averaged over 10 calls in ``demo_2d.ipynb``).

    Parameters
    ----------
    ebm
        A :class:`~ppl_ebm.LatentEBM`.
    seed
        int or ``torch.Generator`` (CPU).
    num_pairs, repeats
        Pairs per maximum and maxima averaged.
    space
        ``"latent"``: ``u = z ~ p0`` and the function ``d(G(z))`` (``eff_k``, for latent DOT);
        ``"target"``: ``u = x`` and the function ``d(x)`` (``eff_K``), with ``x = G(z)`` or,
        when ``data`` is given, rows of ``data``.
    data
        Samples ``(m, *data_shape)`` to draw target-space pairs from; target space only.

    Returns
    -------
    float
        The estimate of K (> 0).
    """
    num_pairs = _check_int("num_pairs", num_pairs, 1)
    repeats = _check_int("repeats", repeats, 1)
    _check_space(space)
    if data is not None and space != "target":
        raise ValueError("data only serves target-space pairs (space='target'); latent pairs are drawn from p0.")
    generator = _as_generator(seed)
    data_tensor = None
    if data is not None:
        data_tensor = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
        if data_tensor.shape[0] < 2:
            raise ValueError("data must hold at least 2 samples to form pairs.")
    maxima = []
    with torch.no_grad():
        for _ in range(repeats):
            if space == "latent":
                first = ebm.prior_sample(num_pairs, generator=generator)
                second = ebm.prior_sample(num_pairs, generator=generator)
                difference = ebm.log_tilt(first) - ebm.log_tilt(second)
            else:
                if data_tensor is None:
                    first = ebm.generate(ebm.prior_sample(num_pairs, generator=generator))
                    second = ebm.generate(ebm.prior_sample(num_pairs, generator=generator))
                else:
                    device = getattr(ebm, "device", torch.device("cpu"))
                    rows = torch.randint(data_tensor.shape[0], (2, num_pairs), generator=generator)
                    first = data_tensor[rows[0]].to(device=device, dtype=torch.get_default_dtype())
                    second = data_tensor[rows[1]].to(device=device, dtype=torch.get_default_dtype())
                difference = _data_log_tilt(ebm, first) - _data_log_tilt(ebm, second)
            distance = (first - second).reshape(num_pairs, -1).norm(dim=1)
            valid = distance > 0
            if bool(valid.any()):
                maxima.append(float((difference.abs()[valid] / distance[valid]).max()))
    estimate = float(np.mean(maxima)) if maxima else math.nan
    if not (math.isfinite(estimate) and estimate > 0):
        raise ValueError(
            f"The Lipschitz estimate is {estimate}: the critic looks constant (or non-finite) on "
            "the pairs drawn. Pass k explicitly."
        )
    return estimate


class _Adam:
    """Adam on one tensor, in place; Chainer's/torch's update with DOT's betas (0, 0.9).

    Written out because ``torch.optim`` imports ``torch._dynamo`` on first use (seconds).
    """

    def __init__(self, parameter: torch.Tensor, lr: float, betas: tuple[float, float] = (0.0, 0.9), eps: float = 1e-8):
        self.parameter, self.lr, self.betas, self.eps = parameter, lr, betas, eps
        self.first = torch.zeros_like(parameter)
        self.second = torch.zeros_like(parameter)
        self.count = 0

    @torch.no_grad()
    def step(self, gradient: torch.Tensor) -> None:
        beta1, beta2 = self.betas
        self.count += 1
        self.first.mul_(beta1).add_(gradient, alpha=1.0 - beta1)
        self.second.mul_(beta2).addcmul_(gradient, gradient, value=1.0 - beta2)
        first = self.first / (1.0 - beta1**self.count)
        second = self.second / (1.0 - beta2**self.count)
        self.parameter.sub_(self.lr * first / (second.sqrt() + self.eps))


def dot(
    ebm: Any,
    n: int,
    seed: int | torch.Generator = 0,
    *,
    steps: int = 100,
    lr: float = 0.01,
    k: float | None = None,
    data: Any = None,
    space: str = "latent",
    norm_eps: float = 1e-3,
    clip: float | None = None,
    batch_size: int | None = None,
    progress_bar: bool = False,
) -> BaselineResult:
    """Discriminator Optimal Transport (Tanaka 2019), in latent space by default.

    For each ``z_y ~ p0`` minimise ``||z - z_y||_2 - d(G(z)) / K`` over ``z`` from ``z = z_y``
    with ``Adam(lr, betas=(0, 0.9))`` for ``steps`` steps and return ``x = G(z*)``
    (``Transporter_in_latent`` in DOT's ``DOT.py``; 100 steps of Adam(0.01, 0, 0.9) as in
    ``demo_2d.ipynb``). ``space="target"`` transports ``x`` from ``y = G(z_y)`` with
    ``||x - y|| - d(x) / K`` instead (``Transporter_in_target``, DOT's 2-D experiments).

    Parameters
    ----------
    ebm
        A :class:`~ppl_ebm.LatentEBM` (raw or calibrated critic: DOT is invariant to
        ``a d + b`` when K is estimated).
    n
        Number of samples.
    seed
        int or ``torch.Generator`` (CPU).
    steps, lr
        Adam steps and learning rate.
    k
        Lipschitz constant K; estimated by :func:`estimate_lipschitz` in the same space
        when None (with ``data`` in target space).
    data
        Target space only: samples to estimate K from (instead of generated pairs).
    space
        ``"latent"`` or ``"target"``.
    norm_eps
        The norm is ``sqrt(||.||^2 + norm_eps^2)``, differentiable at ``z = z_y`` (DOT adds
        0.001 inside its norm for the same reason).
    clip
        Target space: clamp ``x`` to ``[-clip, clip]`` after each step (DOT's 2-D code uses 2).
    batch_size
        Samples optimised together (all when None); the samples are independent.
    progress_bar
        Show a tqdm bar over steps.

    Returns
    -------
    BaselineResult
        ``latents``: ``z*`` (latent space) or ``z_y`` (target space). ``stats``:
        ``wall_seconds``; ``proposals`` (generator evaluations: n per step and the final
        ones, K's pairs included); ``critic_evals``; ``grad_evals`` (n * steps);
        ``acceptance_rate`` (nan); ``k``; ``mean_log_tilt_before``, ``mean_log_tilt_after``
        (mean ``d`` at the start and at the end); ``mean_transport_distance`` (mean
        ``||z* - z_y||`` or ``||x* - y||``).

    Notes
    -----
    DOT's own latent code projects the gradient for a normal prior in 128 dimensions
    (``z.grad - z (z.grad . z) / sqrt(128)``); that projection is specific to its CIFAR models
    and not applied here. Adam acts coordinate-wise, so optimising the summed objective of a
    batch runs the n problems independently.
    """
    n, batch_size = _check_common(n, batch_size)
    steps = _check_int("steps", steps, 0)
    lr = _check_positive("lr", lr)
    norm_eps = _check_positive("norm_eps", norm_eps)
    _check_space(space)
    if clip is not None:
        clip = _check_positive("clip", clip)
        if space != "target":
            raise ValueError("clip applies to target-space DOT only (space='target').")
    if data is not None and space != "target":
        raise ValueError(
            "data is only used to estimate K in target space; latent DOT estimates K from latent "
            "pairs (pass space='target', or k=...)."
        )
    generator = _as_generator(seed)
    start = time.perf_counter()
    pair_evals = 0
    if k is None:
        k = estimate_lipschitz(ebm, generator, space=space, data=data)
        pair_evals = 2 * _LIPSCHITZ_PAIRS * _LIPSCHITZ_REPEATS
    k = _check_positive("k", k)

    z_y = ebm.prior_sample(n, generator=generator)
    latents, samples = [], []
    before, after, distances = [], [], []
    with _progress(n * steps, progress_bar, "DOT") as bar:
        for part in _chunks(n, batch_size):
            anchor_z = z_y[part]
            with torch.no_grad():
                anchor_x, anchor_tilt = _generate_and_tilt(ebm, anchor_z)
            anchor = anchor_z if space == "latent" else anchor_x
            point = anchor.detach().clone().requires_grad_(True)
            adam = _Adam(point, lr)

            def objective(value: torch.Tensor) -> torch.Tensor:
                offset = (value - anchor).reshape(value.shape[0], -1)
                distance = torch.sqrt((offset * offset).sum(dim=1) + norm_eps**2)
                tilt = ebm.log_tilt(value) if space == "latent" else _data_log_tilt(ebm, value)
                return (distance - tilt.reshape(-1) / k).sum()

            for _ in range(steps):
                with torch.enable_grad():
                    # autograd.grad, not backward: the networks' weights get no .grad
                    (gradient,) = torch.autograd.grad(objective(point), point)
                adam.step(gradient)
                if clip is not None:
                    with torch.no_grad():
                        point.clamp_(-clip, clip)
                bar.update(part.stop - part.start)
            with torch.no_grad():
                final = point.detach()
                if space == "latent":
                    final_x, final_tilt = _generate_and_tilt(ebm, final)
                    latents.append(final)
                else:
                    final_x, final_tilt = final, _data_log_tilt(ebm, final).to(torch.float64)
                    latents.append(anchor_z)
                samples.append(final_x)
                before.append(anchor_tilt.cpu())
                after.append(final_tilt.cpu())
                distances.append((final - anchor).reshape(final.shape[0], -1).norm(dim=1).cpu())
    # Generator passes: the anchors, one per step and the final ones in latent space, and the
    # pairs of the K estimate unless they came from data.
    generator_passes = (n * steps + 2 * n if space == "latent" else n) + (pair_evals if data is None else 0)
    stats = {
        "wall_seconds": time.perf_counter() - start,
        "proposals": generator_passes,
        "critic_evals": n * steps + 2 * n + pair_evals,
        "grad_evals": n * steps,
        "acceptance_rate": math.nan,
        "k": k,
        "mean_log_tilt_before": float(torch.cat(before).mean()),
        "mean_log_tilt_after": float(torch.cat(after).mean()),
        "mean_transport_distance": float(torch.cat(distances).mean()),
        "space": space,
    }
    return BaselineResult(_to_numpy(torch.cat(samples)), _to_numpy(torch.cat(latents)), stats)
