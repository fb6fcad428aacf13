"""Discriminator Optimal Transport (Tanaka 2019), in latent space by default, and its
estimate of the critic's Lipschitz constant ``K``.

DOT is unchanged by an affine calibration ``a d + b`` of the critic (its ``K`` scales with
``a``, ``b`` has no gradient), so it runs on the GAN's own critic.

References
----------
- A. Tanaka. Discriminator optimal transport. NeurIPS 2019 (DOT); code:
  AkinoriTanaka-phys/DOT, ``DOT.py`` (``eff_k``, ``Transporter_in_latent``) and ``demo_2d.ipynb``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from ppl_ebm.baselines.common import (
    BaselineResult,
    DOTStats,
    as_generator,
    check_common,
    check_int,
    check_positive,
    chunks,
    data_log_tilt,
    generate_and_tilt,
    progress,
    to_numpy,
)

__all__ = ["dot", "estimate_lipschitz"]

_SPACES = ("latent", "target")
# DOT's K estimate: the maximum over 100 pairs (``eff_k(G, D, trial=100)``), averaged over 10
# calls (``demo_2d.ipynb``).
_LIPSCHITZ_PAIRS = 100
_LIPSCHITZ_REPEATS = 10
# DOT's optimiser: Adam(lr, beta1=0, beta2=0.9) as in ``demo_2d.ipynb``, eps 1e-8 (Chainer's and
# torch's default). torch.optim imports torch._dynamo on its first step: ~2 s once per process.
_ADAM_BETAS = (0.0, 0.9)
_ADAM_EPS = 1e-8


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
    num_pairs = check_int("num_pairs", num_pairs, 1)
    repeats = check_int("repeats", repeats, 1)
    _check_space(space)
    if data is not None and space != "target":
        raise ValueError("data only serves target-space pairs (space='target'); latent pairs are drawn from p0.")
    generator = as_generator(seed)
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
                difference = data_log_tilt(ebm, first) - data_log_tilt(ebm, second)
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
    n, batch_size = check_common(n, batch_size)
    steps = check_int("steps", steps, 0)
    lr = check_positive("lr", lr)
    norm_eps = check_positive("norm_eps", norm_eps)
    _check_space(space)
    if clip is not None:
        clip = check_positive("clip", clip)
        if space != "target":
            raise ValueError("clip applies to target-space DOT only (space='target').")
    if data is not None and space != "target":
        raise ValueError(
            "data is only used to estimate K in target space; latent DOT estimates K from latent "
            "pairs (pass space='target', or k=...)."
        )
    generator = as_generator(seed)
    start = time.perf_counter()
    pair_evals = 0
    if k is None:
        k = estimate_lipschitz(ebm, generator, space=space, data=data)
        pair_evals = 2 * _LIPSCHITZ_PAIRS * _LIPSCHITZ_REPEATS
    k = check_positive("k", k)

    z_y = ebm.prior_sample(n, generator=generator)
    latents, samples = [], []
    before, after, distances = [], [], []
    with progress(n * steps, progress_bar, "DOT") as bar:
        for part in chunks(n, batch_size):
            anchor_z = z_y[part]
            with torch.no_grad():
                anchor_x, anchor_tilt = generate_and_tilt(ebm, anchor_z)
            anchor = anchor_z if space == "latent" else anchor_x
            point = anchor.detach().clone().requires_grad_(True)
            adam = torch.optim.Adam([point], lr=lr, betas=_ADAM_BETAS, eps=_ADAM_EPS)

            def objective(value: torch.Tensor) -> torch.Tensor:
                offset = (value - anchor).reshape(value.shape[0], -1)
                distance = torch.sqrt((offset * offset).sum(dim=1) + norm_eps**2)
                tilt = ebm.log_tilt(value) if space == "latent" else data_log_tilt(ebm, value)
                return (distance - tilt.reshape(-1) / k).sum()

            for _ in range(steps):
                with torch.enable_grad():
                    # autograd.grad, not backward: the networks' weights get no .grad
                    (point.grad,) = torch.autograd.grad(objective(point), point)
                adam.step()
                if clip is not None:
                    with torch.no_grad():
                        point.clamp_(-clip, clip)
                bar.update(part.stop - part.start)
            with torch.no_grad():
                final = point.detach()
                if space == "latent":
                    final_x, final_tilt = generate_and_tilt(ebm, final)
                    latents.append(final)
                else:
                    final_x, final_tilt = final, data_log_tilt(ebm, final).to(torch.float64)
                    latents.append(anchor_z)
                samples.append(final_x)
                before.append(anchor_tilt.cpu())
                after.append(final_tilt.cpu())
                distances.append((final - anchor).reshape(final.shape[0], -1).norm(dim=1).cpu())
    # Generator passes: the anchors, one per step and the final ones in latent space, and the
    # pairs of the K estimate unless they came from data.
    generator_passes = (n * steps + 2 * n if space == "latent" else n) + (pair_evals if data is None else 0)
    stats = DOTStats(
        wall_seconds=time.perf_counter() - start,
        proposals=generator_passes,
        critic_evals=n * steps + 2 * n + pair_evals,
        grad_evals=n * steps,
        acceptance_rate=math.nan,
        k=k,
        mean_log_tilt_before=float(torch.cat(before).mean()),
        mean_log_tilt_after=float(torch.cat(after).mean()),
        mean_transport_distance=float(torch.cat(distances).mean()),
        space=space,
    )
    return BaselineResult(to_numpy(torch.cat(samples)), to_numpy(torch.cat(latents)), stats)
