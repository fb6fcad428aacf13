"""Logistic calibration of a GAN critic and the calibration test of MH-GAN.

DRS, MH-GAN and DDLS read the critic as a log density ratio, ``d(x) ≈ log p_d(x) / p_g(x)``.
A trained critic rarely is one: an NS-GAN discriminator is over-confident, a WGAN critic is
not a logit at all. DDLS Sec. 5.2 (after Azadi et al. 2019 and Turner et al. 2019) fine-tunes
"the pre-trained discriminator with an additional fully-connected layer and a logistic output
layer using the binary cross-entropy loss" on held-out real and generated samples.

On a critic with one scalar output, that extra fully-connected layer is the affine map
``a d(x) + b`` and the logistic layer its sigmoid, so with the critic frozen the fine-tuning is
a two-parameter logistic regression of the label (real = 1, fake = 0) on ``d(x)``. This is
the ``Beta1`` calibrator of the MH-GAN code (uber-research/metropolis-hastings-gans,
``mhgan/classification.py``: ``LogisticRegression`` on the logit of the score) and the
``Calibrator`` of the DOT code (AkinoriTanaka-phys/DOT, ``MH.py``: ``LogisticRegression`` on
the raw WGAN critic value). We fit it exactly, by Newton's method in float64.

With balanced classes the calibrated logit ``a d(x) + b`` estimates ``log p_d(x) / p_g(x)``:
the Bayes posterior logit under equal priors is that log ratio.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ppl_ebm.targets.latent_ebm import CRITIC_OUTPUTS, critic_output_to_log_tilt

__all__ = [
    "CalibratedCritic",
    "calibration_report",
    "calibration_z_statistic",
    "fit_calibration",
]

# Critic evaluations are chunked so that a held-out set of images fits in memory.
_DEFAULT_BATCH = 65536


def _module_device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


class CalibratedCritic(torch.nn.Module):
    """A frozen critic followed by a logistic head: ``x -> a * d(x) + b``, a calibrated logit.

    Parameters
    ----------
    critic
        torch module returning one value per sample, ``(batch,)`` or ``(batch, 1)``.
    weight, bias
        ``a`` and ``b``; usually set by :func:`fit_calibration`.
    critic_output
        What ``critic`` returns (see :class:`~ppl_ebm.LatentEBM`): ``"logit"`` (NS-GAN logit or
        WGAN critic value, used as is), ``"probability"`` (mapped to its logit first, the MH-GAN
        ``Beta1`` calibrator) or ``"energy"`` (negated first).

    Notes
    -----
    The output has the critic's shape and is a logit, so build the latent EBM with
    ``LatentEBM(generator, CalibratedCritic(...), critic_output="logit")``. Only ``a`` and
    ``b`` are fitted; the critic's weights are left untouched (the extra "fully-connected +
    logistic layer" of DDLS Sec. 5.2 on a scalar critic output; see the module docstring).
    """

    def __init__(
        self,
        critic: torch.nn.Module,
        weight: float = 1.0,
        bias: float = 0.0,
        critic_output: str = "logit",
    ) -> None:
        super().__init__()
        if not isinstance(critic, torch.nn.Module):
            raise TypeError(f"critic must be a torch.nn.Module, got {type(critic).__name__}.")
        if critic_output not in CRITIC_OUTPUTS:
            raise ValueError(f"critic_output must be one of {CRITIC_OUTPUTS}, got {critic_output!r}.")
        for name, value in (("weight", weight), ("bias", bias)):
            if not math.isfinite(float(value)):
                raise ValueError(f"{name} must be finite, got {value!r}.")
        self.critic = critic
        self.critic_output = critic_output
        device, dtype = _module_device_dtype(critic)
        self.weight = torch.nn.Parameter(torch.tensor(float(weight), device=device, dtype=dtype))
        self.bias = torch.nn.Parameter(torch.tensor(float(bias), device=device, dtype=dtype))
        self.fit_stats: dict[str, Any] = {}

    def raw_logit(self, x: torch.Tensor) -> torch.Tensor:
        """The critic's output read as a logit, before calibration (``a = 1, b = 0``)."""
        output = self.critic(x)
        if self.critic_output == "logit":  # a plain branch keeps the module torch.fx-traceable
            return output
        return critic_output_to_log_tilt(output, self.critic_output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * self.raw_logit(x) + self.bias

    def extra_repr(self) -> str:
        return f"weight={self.weight.item():.6g}, bias={self.bias.item():.6g}, critic_output={self.critic_output!r}"


def _as_tensor(samples: Any, name: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(samples) if not isinstance(samples, torch.Tensor) else samples)
    if tensor.ndim < 1 or tensor.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty batch shaped (n, *data_shape); got shape {tuple(tensor.shape)}.")
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    return tensor.to(device=device, dtype=dtype)


def _evaluate(function: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor, batch_size: int) -> np.ndarray:
    """``function`` on ``samples`` in chunks, without gradients, as a float64 vector."""
    values = []
    with torch.no_grad():
        for start in range(0, samples.shape[0], batch_size):
            chunk = samples[start : start + batch_size]
            output = function(chunk)
            if output.numel() != chunk.shape[0]:
                raise ValueError(
                    "The critic must return one value per sample; for a batch of "
                    f"{chunk.shape[0]} it returned shape {tuple(output.shape)}."
                )
            values.append(output.reshape(-1).detach().to("cpu", torch.float64).numpy())
    return np.concatenate(values)


def _eval_mode(module: torch.nn.Module):
    """Context: the module in eval mode (BatchNorm statistics frozen), its mode restored after."""

    class _Context:
        def __enter__(self):
            self.modes = [(sub, sub.training) for sub in module.modules()]
            module.eval()

        def __exit__(self, *exc):
            for sub, training in self.modes:
                sub.training = training

    return _Context()


def _logistic_newton(
    scores: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray, max_iterations: int, tolerance: float
) -> tuple[float, float, int, bool]:
    """Weighted logistic regression of ``labels`` on ``(scores, 1)``: Newton with backtracking.

    The loss ``sum_i w_i [softplus(eta_i) - y_i eta_i]`` is convex; Newton converges in a
    handful of steps unless the classes are separable (then the slope diverges).
    """
    # Standardised feature: the Hessian is well conditioned whatever the critic's scale.
    centre = float(np.average(scores, weights=sample_weight))
    scale = float(np.sqrt(np.average((scores - centre) ** 2, weights=sample_weight)))
    if not scale > 0:
        raise ValueError("The critic returns the same value on every held-out sample; nothing to calibrate.")
    design = np.stack([(scores - centre) / scale, np.ones_like(scores)], axis=1)

    def loss(theta: np.ndarray) -> float:
        eta = design @ theta
        return float(np.sum(sample_weight * (np.logaddexp(0.0, eta) - labels * eta)))

    theta = np.zeros(2)
    current = loss(theta)
    converged = False
    iteration = 0
    for iteration in range(1, max_iterations + 1):
        eta = design @ theta
        probability = 0.5 * (1.0 + np.tanh(0.5 * eta))  # stable sigmoid
        gradient = design.T @ (sample_weight * (probability - labels))
        curvature = sample_weight * probability * (1.0 - probability)
        hessian = (design * curvature[:, None]).T @ design + 1e-12 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        decrement = float(gradient @ step)  # Newton decrement squared
        if decrement < tolerance:
            converged = True
            break
        length = 1.0
        while length > 1e-10:
            candidate = theta - length * step
            value = loss(candidate)
            if value <= current - 0.25 * length * decrement:
                break
            length *= 0.5
        else:  # no decrease left at float64 resolution: at the optimum up to rounding
            converged = decrement < 1e-8
            break
        theta, current = candidate, value
    slope = theta[0] / scale
    return float(slope), float(theta[1] - slope * centre), iteration, converged


def fit_calibration(
    critic: torch.nn.Module,
    real: Any,
    fake: Any,
    *,
    critic_output: str = "logit",
    steps: int = 100,
    tolerance: float = 1e-12,
    batch_size: int = _DEFAULT_BATCH,
) -> CalibratedCritic:
    """Fit the logistic head ``a d(x) + b`` of a frozen critic by binary cross-entropy.

    Parameters
    ----------
    critic
        The trained critic (its weights are not changed).
    real, fake
        HELD-OUT data samples (label 1) and generator samples (label 0), torch tensors or
        numpy arrays shaped ``(n, *data_shape)``; not the ones the GAN was trained on, or the
        critic's over-fitting is calibrated away on the wrong set.
    critic_output
        What the critic returns, see :class:`CalibratedCritic`.
    steps
        Most Newton iterations (it converges in about ten on non-separable data).
    tolerance
        Stop when the squared Newton decrement falls below it.
    batch_size
        Samples per critic evaluation.

    Returns
    -------
    CalibratedCritic
        With ``fit_stats``: ``iterations``, ``converged``, ``bce`` (balanced, at the fit),
        ``n_real``, ``n_fake``.

    Notes
    -----
    The classes are weighted to equal total weight, so that ``a d(x) + b`` estimates
    ``log p_d(x) / p_g(x)`` even when ``len(real) != len(fake)``. DRS, MH-GAN and DDLS all
    calibrate on held-out samples; on a scalar critic output this is a two-parameter
    logistic regression, solved by Newton's method in float64 with a
    backtracking line search (exact, no learning rate to tune).
    """
    if not (isinstance(steps, int) and steps >= 1):
        raise ValueError(f"steps must be an int >= 1, got {steps!r}.")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    calibrated = CalibratedCritic(critic, critic_output=critic_output)
    device, dtype = _module_device_dtype(critic)
    real_tensor = _as_tensor(real, "real", device, dtype)
    fake_tensor = _as_tensor(fake, "fake", device, dtype)
    if real_tensor.shape[1:] != fake_tensor.shape[1:]:
        raise ValueError(
            f"real and fake samples must have the same shape per sample; got {tuple(real_tensor.shape[1:])} "
            f"and {tuple(fake_tensor.shape[1:])}."
        )
    with _eval_mode(critic):
        real_scores = _evaluate(calibrated.raw_logit, real_tensor, batch_size)
        fake_scores = _evaluate(calibrated.raw_logit, fake_tensor, batch_size)
    if not (np.all(np.isfinite(real_scores)) and np.all(np.isfinite(fake_scores))):
        raise ValueError("The critic returned non-finite values on the held-out samples.")
    n_real, n_fake = len(real_scores), len(fake_scores)
    scores = np.concatenate([real_scores, fake_scores])
    labels = np.concatenate([np.ones(n_real), np.zeros(n_fake)])
    sample_weight = np.concatenate([np.full(n_real, 0.5 / n_real), np.full(n_fake, 0.5 / n_fake)])
    weight, bias, iterations, converged = _logistic_newton(scores, labels, sample_weight, steps, tolerance)
    # On one score, separable classes are a gap between the two ranges; the likelihood then
    # keeps rising with the slope and any "converged" fit is only where the steps stopped.
    separated = real_scores.min() > fake_scores.max() or real_scores.max() < fake_scores.min()
    if separated:
        converged = False
        warnings.warn(
            f"The critic separates the held-out real and fake samples perfectly: the "
            f"maximum-likelihood slope is infinite and the fit stopped at a = {weight:.4g}, "
            f"b = {bias:.4g}. Use more (or other) held-out samples.",
            RuntimeWarning,
            stacklevel=2,
        )
    elif not converged:
        warnings.warn(
            f"The calibration did not converge in {steps} Newton steps (a = {weight:.4g}, b = {bias:.4g}).",
            RuntimeWarning,
            stacklevel=2,
        )
    with torch.no_grad():
        calibrated.weight.fill_(weight)
        calibrated.bias.fill_(bias)
    eta = weight * scores + bias
    bce = float(np.sum(sample_weight * (np.logaddexp(0.0, eta) - labels * eta)))
    calibrated.fit_stats = {
        "iterations": iterations,
        "converged": converged,
        "bce": bce,
        "n_real": n_real,
        "n_fake": n_fake,
    }
    return calibrated


def calibration_z_statistic(probabilities: Any, labels: Any) -> float:
    """Dawid's prequential Z statistic, the calibration test of MH-GAN (Turner et al. 2019).

    ``Z = sum_i (y_i - p_i) / sqrt(sum_i p_i (1 - p_i))``; under calibration Z ~ N(0, 1), so
    ``|Z| > 1.96`` rejects calibration at the 5% level. Same formula as ``calib_score`` in
    ``mhgan/classification.py`` of the MH-GAN code.

    Parameters
    ----------
    probabilities
        Predicted P(real | x) in [0, 1], any shape.
    labels
        1 (or True) for real, 0 for generated; same shape.

    Returns
    -------
    float
        Z; ``nan`` when every probability is 0 or 1 and they all match their labels,
        ``±inf`` when they are 0 or 1 and some do not.
    """
    probability = np.asarray(probabilities, dtype=np.float64)
    label = np.asarray(labels)
    if probability.shape != label.shape:
        raise ValueError(
            f"probabilities and labels must have the same shape; got {probability.shape} and {label.shape}."
        )
    if probability.size == 0:
        raise ValueError("probabilities and labels are empty.")
    if not np.all((probability >= 0) & (probability <= 1)):
        raise ValueError("probabilities must lie in [0, 1] (pass sigmoid(logit), not the logit).")
    label = label.astype(np.float64)
    if not np.all((label == 0) | (label == 1)):
        raise ValueError("labels must be 0/1 or booleans (1 = real, 0 = generated).")
    numerator = float(np.sum(label - probability))
    denominator = math.sqrt(float(np.sum(probability * (1.0 - probability))))
    if denominator == 0.0:
        return math.nan if numerator == 0.0 else math.copysign(math.inf, numerator)
    return numerator / denominator


def _classification_scores(real_logits: np.ndarray, fake_logits: np.ndarray) -> dict[str, float]:
    # The logit estimates log p_d / p_g; the posterior of this test set adds its log prior odds.
    offset = math.log(len(real_logits) / len(fake_logits))
    eta = np.concatenate([real_logits, fake_logits]) + offset
    labels = np.concatenate([np.ones(len(real_logits)), np.zeros(len(fake_logits))])
    with np.errstate(over="ignore"):
        probability = 0.5 * (1.0 + np.tanh(0.5 * eta))
    bce = float(np.mean(np.logaddexp(0.0, eta) - labels * eta))
    accuracy = float(np.mean((eta > 0) == (labels == 1)))
    return {"z": calibration_z_statistic(probability, labels), "bce": bce, "accuracy": accuracy}


def calibration_report(
    critic_logit_fn: Callable[[torch.Tensor], torch.Tensor],
    real: Any,
    fake: Any,
    *,
    raw_logit_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = _DEFAULT_BATCH,
) -> dict[str, float]:
    """Z statistic, binary cross-entropy and accuracy of a critic before and after calibration.

    Parameters
    ----------
    critic_logit_fn
        Calibrated logit, e.g. a :class:`CalibratedCritic` (then the "before" numbers use its
        :meth:`~CalibratedCritic.raw_logit` unless ``raw_logit_fn`` is given).
    real, fake
        Held-out real and generated samples NOT used by :func:`fit_calibration` (on the fitting
        set the fitted intercept makes Z exactly 0). The MH-GAN code splits its held-out set in
        halves for this (``calibrate_pred_df``, ``calib_frac=0.5``).
    raw_logit_fn
        The uncalibrated critic read as a logit (sigmoid of the raw output = the "raw"
        calibrator of MH-GAN); omitted from the report when None and not derivable.
    batch_size
        Samples per critic evaluation.

    Returns
    -------
    dict
        ``after_z``, ``after_bce``, ``after_accuracy`` and, with a raw critic, ``before_z``,
        ``before_bce``, ``before_accuracy``; ``n_real``, ``n_fake``; ``weight`` and ``bias``
        for a :class:`CalibratedCritic`. Probabilities are ``sigmoid(logit + log(n_real /
        n_fake))``: the logit estimates ``log p_d / p_g`` and the offset is the test set's prior.
    """
    if raw_logit_fn is None and isinstance(critic_logit_fn, CalibratedCritic):
        raw_logit_fn = critic_logit_fn.raw_logit
    if isinstance(critic_logit_fn, torch.nn.Module):
        device, dtype = _module_device_dtype(critic_logit_fn)
    else:
        device, dtype = torch.device("cpu"), torch.get_default_dtype()
    real_tensor = _as_tensor(real, "real", device, dtype)
    fake_tensor = _as_tensor(fake, "fake", device, dtype)
    module = critic_logit_fn if isinstance(critic_logit_fn, torch.nn.Module) else torch.nn.Module()
    report: dict[str, float] = {"n_real": int(real_tensor.shape[0]), "n_fake": int(fake_tensor.shape[0])}
    with _eval_mode(module):
        functions = [("after", critic_logit_fn)] + ([("before", raw_logit_fn)] if raw_logit_fn is not None else [])
        for prefix, function in functions:
            scores = _classification_scores(
                _evaluate(function, real_tensor, batch_size), _evaluate(function, fake_tensor, batch_size)
            )
            report.update({f"{prefix}_{key}": value for key, value in scores.items()})
    if isinstance(critic_logit_fn, CalibratedCritic):
        report["weight"] = critic_logit_fn.weight.item()
        report["bias"] = critic_logit_fn.bias.item()
    return report
