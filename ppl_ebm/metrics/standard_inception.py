"""The standard FID and Inception Score, through torch-fidelity, on Inception weights the user has on disk.

The package's own image metrics (:mod:`ppl_ebm.metrics.image_scores`) put FID's and IS's formulas
on a small digits classifier: comparable between this package's runs, not with published FID/IS.
For users who have the standard Inception weights (the TensorFlow ``inception-2015-12-05`` graph
ported to PyTorch: torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth`` or pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth``, the same state dict under two names), this module scores
images with torch-fidelity's Inception feature extractor and its FID / ISC functions. Nothing is
downloaded: the weights come only from the path given.

Why torch-fidelity (0.4.0) and not pytorch-fid (0.3.0): torch-fidelity's extractor takes a local
weights path (``feature_extractor_weights_path``), resizes to 299 with TensorFlow 1.x's bilinear
rule (bit-compatible with the reference implementations), and computes both FID and IS (from its
``logits_unbiased``, the original code's choice). pytorch-fid's ``fid_inception_v3`` always fetches
its weights by URL (no path argument), resizes with PyTorch's bilinear and has no IS.

Safe loading: torch-fidelity reads a weights path with ``torch.load(weights_only=False)``, which
unpickles arbitrary objects. So the user's file is never handed to it: :func:`load_inception_weights`
reads it with ``torch.load(weights_only=True)`` (or safetensors for ``.safetensors``), keeps only a
flat ``{name: tensor}`` mapping, and the extractor receives those tensors re-serialised in memory by
``torch.save`` (bytes this process wrote from plain tensors, so its unpickling runs nothing foreign).
The extractor's strict ``load_state_dict`` then checks every name and shape against the Inception
architecture; a file that is not these weights fails there with :class:`InceptionWeightsError`.

Images are the package's ``(n, channels, side, side)`` floats in ``[-1, 1]``: they become uint8
``0..255`` and gray images are repeated to 3 channels; torch-fidelity resizes them to 299 x 299.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["FID_EXTRA", "INCEPTION_FILE_NAMES", "STANDARD_SHA256_PREFIX", "InceptionScorer", "InceptionWeightsError",
           "StandardMetricsUnavailable", "check_inception_weights", "images_to_uint8_rgb", "inception_scorer",
           "load_inception_weights"]

FID_EXTRA = "fid"
INCEPTION_FILE_NAMES = ("weights-inception-2015-12-05-6726825d.pth (torch-fidelity)",
                        "pt_inception-2015-12-05-6726825d.pth (pytorch-fid)")
# torch.hub's file names carry the first hex digits of the file's sha256; both names above carry this one.
STANDARD_SHA256_PREFIX = "6726825d"
_FEATURES = ("2048", "logits_unbiased")  # the pool features (FID) and the logits without bias (IS)


class InceptionWeightsError(ValueError):
    """The ``--inception-weights`` file is missing or is not the Inception weights."""


class StandardMetricsUnavailable(ImportError):
    """torch-fidelity (the ``fid`` extra) is not installed."""


def _torch_fidelity():
    try:
        import torch_fidelity  # noqa: F401
        from torch_fidelity import feature_extractor_inceptionv3, metric_fid, metric_isc
    except ImportError as error:
        raise StandardMetricsUnavailable(
            "The standard FID/IS (--inception-weights) need torch-fidelity, which is not installed: "
            f"pip install -e '.[{FID_EXTRA}]' (or pip install 'ppl_ebm[{FID_EXTRA}]'); it downloads nothing at run "
            f"time. ({error})") from error
    return feature_extractor_inceptionv3, metric_fid, metric_isc


def _expected(argument: str) -> str:
    return (f"{argument} expects the standard FID Inception weights as a PyTorch state dict, e.g. "
            f"{' or '.join(INCEPTION_FILE_NAMES)}")


def _reason(error: Exception) -> str:
    """The line of a torch.load failure that says what was wrong (torch's message also advises
    ``weights_only=False``, which this module never does)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    found = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    line = found.group(1) if found else text.strip().splitlines()[0] if text.strip() else ""
    line = line.split(". ")[0].strip().rstrip(".")  # the first sentence: what, not torch's advice
    if not line or "we changed the default value of the `weights_only`" in line:
        line = "not a PyTorch state-dict file"
    return f"{type(error).__name__}: {line[:200]}"


def load_inception_weights(path: str | Path, argument: str = "--inception-weights") -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read without unpickling objects (``weights_only=True`` or safetensors).

    Raises :class:`InceptionWeightsError` (naming ``argument``) when the path is missing, is not a
    file, cannot be read as tensors only, or is not a flat ``{name: tensor}`` mapping.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InceptionWeightsError(f"{argument} {str(path)!r} does not exist. {_expected(argument)}; give the path "
                                    "of that file on this machine (nothing is downloaded).")
    if not path.is_file():
        raise InceptionWeightsError(f"{argument} {str(path)!r} is not a file. {_expected(argument)}.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a pickle with objects, a truncated zip, a text file, ...
        raise InceptionWeightsError(
            f"{argument} {str(path)!r} could not be read as tensors only (torch.load with weights_only=True: "
            f"{_reason(error)}); a file that needs arbitrary unpickling (a pickled model object) is refused, not "
            f"loaded. {_expected(argument)}.") from error
    if not isinstance(state, Mapping) or not state or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InceptionWeightsError(f"{argument} {str(path)!r} holds a {type(state).__name__}, not a flat "
                                    f"{{name: tensor}} state dict. {_expected(argument)}.")
    return dict(state)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def images_to_uint8_rgb(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(n, 1 or 3, h, w)`` floats in ``[-1, 1]`` as torch-fidelity's input: uint8 ``(n, 3, h, w)``, 0..255."""
    images = torch.as_tensor(np.asarray(images, dtype=np.float32) if not isinstance(images, torch.Tensor) else images)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (n, 1 or 3, height, width), got shape {tuple(images.shape)}.")
    if not torch.isfinite(images).all():
        raise ValueError("images have non-finite values; drop those images (a diverged chain) first.")
    pixels = torch.round((images.float().clamp(-1.0, 1.0) + 1.0) * 127.5).to(torch.uint8)
    return pixels.expand(-1, 3, -1, -1).contiguous() if pixels.shape[1] == 1 else pixels


class InceptionScorer:
    """torch-fidelity's Inception (FID pool features, IS logits) on weights from ``weights_path``.

    Building it reads and checks the weights (a few seconds), so build it before long work:
    a wrong file fails at once with :class:`InceptionWeightsError`.
    """

    def __init__(self, weights_path: str | Path, device: str | torch.device | None = None, batch_size: int = 64,
                 argument: str = "--inception-weights"):
        self.path = Path(weights_path).expanduser()
        state = load_inception_weights(self.path, argument)  # the path's own errors first, library or not
        extractor_module, self._metric_fid, self._metric_isc = _torch_fidelity()
        buffer = io.BytesIO()
        torch.save(state, buffer)  # plain tensors re-serialised here: the library's unpickling sees only these
        buffer.seek(0)
        del state
        try:
            extractor = extractor_module.FeatureExtractorInceptionV3(
                "inception-v3-compat", list(_FEATURES), feature_extractor_weights_path=buffer)
        except RuntimeError as error:  # load_state_dict(strict=True): missing / unexpected names, wrong shapes
            raise InceptionWeightsError(
                f"{argument} {str(self.path)!r} is a state dict but not of the FID Inception network: "
                f"{str(error)[:500]}. {_expected(argument)}.") from error
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.extractor = extractor.to(self.device).eval()
        self.batch_size = int(batch_size)
        self.sha256 = _sha256(self.path)

    @property
    def standard(self) -> bool:
        """Whether the file's sha256 starts as the standard weights' file names say (``6726825d``)."""
        return self.sha256.startswith(STANDARD_SHA256_PREFIX)

    def describe(self) -> dict[str, Any]:
        import torch_fidelity

        return {"library": f"torch-fidelity {torch_fidelity.__version__}", "weights_file": self.path.name,
                "weights_sha256": self.sha256, "standard_weights": self.standard,
                "fid_inception": "FID: Frechet distance of the Inception pool features (2048) against the held-out "
                                 "split, torch-fidelity's fid_statistics_to_metric",
                "is_inception": "IS: torch-fidelity's isc_features_to_metric on the Inception logits (unbiased), "
                                "mean and std over the splits",
                "input": "images in [-1, 1] to uint8 0..255, gray repeated to 3 channels, resized to 299 by "
                         "torch-fidelity (TensorFlow 1.x bilinear)"}

    @torch.no_grad()
    def features(self, images: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool features ``(n, 2048)`` and unbiased logits ``(n, 1008)``, float32 on the CPU."""
        pixels = images_to_uint8_rgb(images)
        pools, logits = [], []
        for start in range(0, len(pixels), self.batch_size):
            pool, logit = self.extractor(pixels[start:start + self.batch_size].to(self.device))
            pools.append(pool.cpu())
            logits.append(logit.cpu())
        return torch.cat(pools), torch.cat(logits)

    def statistics(self, images: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
        """FID's ``mu`` / ``sigma`` of ``images`` (reuse them for a reference scored many times)."""
        pool, _ = self.features(images)
        if len(pool) < 2:
            raise ValueError(f"FID needs at least 2 images, got {len(pool)}.")
        return self._metric_fid.fid_features_to_statistics(pool)

    def fid_from_statistics(self, statistics_a: dict[str, np.ndarray], statistics_b: dict[str, np.ndarray]) -> float:
        return float(self._metric_fid.fid_statistics_to_metric(statistics_a, statistics_b, verbose=False)[
            self._metric_fid.KEY_METRIC_FID])

    def fid(self, images_a: np.ndarray | torch.Tensor, images_b: np.ndarray | torch.Tensor) -> float:
        """The FID between two image sets."""
        return self.fid_from_statistics(self.statistics(images_a), self.statistics(images_b))

    def inception_score(self, images: np.ndarray | torch.Tensor, splits: int = 10) -> tuple[float, float]:
        """IS mean and std over ``splits`` parts (Salimans et al.: 10 parts of 50,000 images)."""
        _, logits = self.features(images)
        return self.scores_from_logits(logits, splits)

    def scores_from_logits(self, logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
        if not 1 <= splits <= len(logits):
            raise ValueError(f"splits must be between 1 and the number of images ({len(logits)}), got {splits}.")
        out = self._metric_isc.isc_features_to_metric(logits, splits=splits)
        return float(out[self._metric_isc.KEY_METRIC_ISC_MEAN]), float(out[self._metric_isc.KEY_METRIC_ISC_STD])

    def scores(self, images: np.ndarray, reference_statistics: dict[str, np.ndarray],
               splits: int = 10) -> dict[str, float]:
        """``fid_inception`` against the reference's statistics and ``is_inception`` / ``is_inception_std``,
        from one pass of the network over ``images`` (non-finite images left out, as image_scores does)."""
        images = np.asarray(images, dtype=np.float32)
        images = images[np.isfinite(images.reshape(len(images), -1)).all(axis=1)]
        pool, logits = self.features(images)
        if len(pool) < 2:
            return {"fid_inception": float("nan"), "is_inception": float("nan"), "is_inception_std": float("nan")}
        fid = self.fid_from_statistics(self._metric_fid.fid_features_to_statistics(pool), reference_statistics)
        mean, std = self.scores_from_logits(logits, min(splits, len(logits)))
        return {"fid_inception": fid, "is_inception": mean, "is_inception_std": std}

    def to(self, device: str | torch.device | None) -> "InceptionScorer":
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.extractor = self.extractor.to(self.device)
        return self


_LAST: dict[tuple, InceptionScorer] = {}  # the last scorer built, by (path, mtime, size): one read per file


def inception_scorer(path: str | Path, device: str | torch.device | None = None,
                     argument: str = "--inception-weights") -> InceptionScorer:
    """An :class:`InceptionScorer` of ``path`` on ``device``, reused while the file is unchanged (the
    check at the CLI boundary and the run read the weights once)."""
    if not Path(path).expanduser().is_file():
        return InceptionScorer(path, device, argument=argument)  # raises the missing-path error
    stat = Path(path).expanduser().resolve().stat()
    key = (str(Path(path).expanduser().resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _LAST:
        scorer = InceptionScorer(path, argument=argument)
        _LAST.clear()
        _LAST[key] = scorer
    return _LAST[key].to(device)


def check_inception_weights(path: str | Path, argument: str = "--inception-weights") -> None:
    """Fail now (library missing, bad path, not the weights) rather than after a long run."""
    inception_scorer(path, argument=argument)
