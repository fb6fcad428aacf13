"""Image data sets: scikit-learn's digits offline, MNIST / Fashion-MNIST / CIFAR-10 from the user's disk.

An image set is a finite collection with a fixed train / held-out split, not a sampler, so it has a
registry of its own (:data:`IMAGE_DATASETS`) beside the toy sets' (:mod:`ppl_ebm.data.registry`,
whose entries draw ``(n, 2)`` points from a seed). :func:`load_images` returns float32 images
``(n, channels, side, side)`` in ``[-1, 1]`` (the range of the generators' ``tanh``) and int64
labels.

- ``digits``: scikit-learn's 1797 8x8 handwritten digits (they ship with scikit-learn: no file, no
  download). Held out: 360 images (20%, stratified by label, ``random_state=0``); train: the
  other 1437. 8x8 is already a side the conv nets take (``4 * 2**k``), so no padding.
- ``mnist``, ``fashion-mnist``: torchvision's readers of the idx-ubyte files under
  ``root/MNIST/raw`` / ``root/FashionMNIST/raw`` (``download=False``); the 28x28 images are
  padded by 2 background pixels to 32x32 so the conv nets (``4 * 2**k``) apply.
  Split: the files' own train / test (``held_out`` = test).
- ``cifar10``: torchvision's reader of ``root/cifar-10-batches-py`` (``download=False``), 32x32x3.

Nothing here downloads: a missing folder is an error naming the folder and the files expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["IMAGE_DATASETS", "SPLITS", "ImageSet", "ImageSpec", "image_dataset_names", "image_spec", "load_images"]

#: The splits every image set has.
SPLITS = ("train", "held_out")
#: Images scikit-learn's digits hold out (20% of 1797, stratified by label).
DIGITS_HELD_OUT = 360
#: The seed of the digits split: fixed, so every model and metric sees the same held-out images.
DIGITS_SPLIT_SEED = 0


class ImageSet(NamedTuple):
    """Images ``(n, channels, side, side)`` float32 in ``[-1, 1]`` and their int64 labels."""

    images: np.ndarray
    labels: np.ndarray
    name: str
    split: str


@dataclass(frozen=True)
class ImageSpec:
    """One image set: its shape, class count, loader and the files a folder must hold."""

    name: str
    shape: tuple[int, int, int]
    num_classes: int
    loader: Callable[[str, Path | None, bool], ImageSet]
    needs_root: bool
    expected_files: tuple[str, ...] = ()
    description: str = ""


def _to_unit_range(pixels: np.ndarray, maximum: float) -> np.ndarray:
    return (pixels.astype(np.float32) / np.float32(maximum / 2) - 1.0).astype(np.float32)


def _digits(split: str, root: Path | None, verify: bool) -> ImageSet:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    train, held_out = train_test_split(index, test_size=DIGITS_HELD_OUT, stratify=digits.target,
                                       random_state=DIGITS_SPLIT_SEED)
    chosen = np.sort(train if split == "train" else held_out)
    images = _to_unit_range(digits.images[chosen], 16.0)[:, None]  # pixel values are 0..16
    return ImageSet(images, digits.target[chosen].astype(np.int64), "digits", split)


def _missing(name: str, folder: Path, files: tuple[str, ...]) -> FileNotFoundError:
    return FileNotFoundError(
        f"{name}: expected the files {', '.join(files)} in {folder}, which "
        f"{'lacks ' + ', '.join(f for f in files if not (folder / f).is_file()) if folder.is_dir() else 'does not exist'}. "
        f"Nothing is downloaded: copy the {name} files there (the layout torchvision's download=True "
        "makes), or pass root= / --data-root the folder that holds them."
    )


def _check_files(name: str, root: Path, spec: "ImageSpec") -> None:
    folder = root / Path(spec.expected_files[0]).parent
    files = tuple(Path(f).name for f in spec.expected_files)
    if not all((root / f).is_file() for f in spec.expected_files):
        raise _missing(name, folder, files)


def _mnist_like(torchvision_class: str, name: str):
    def load(split: str, root: Path | None, verify: bool) -> ImageSet:
        import torchvision.datasets

        _check_files(name, root, IMAGE_DATASETS[name])
        dataset = getattr(torchvision.datasets, torchvision_class)(str(root), train=split == "train", download=False)
        pixels = np.asarray(dataset.data, dtype=np.uint8)
        # 28 -> 32 with background pixels: the conv nets' sides are 4 * 2**k.
        images = np.pad(_to_unit_range(pixels, 255.0), ((0, 0), (2, 2), (2, 2)), constant_values=-1.0)[:, None]
        return ImageSet(images.astype(np.float32), np.asarray(dataset.targets, dtype=np.int64), name, split)

    return load


def _cifar10(split: str, root: Path | None, verify: bool) -> ImageSet:
    import torchvision.datasets

    _check_files("cifar10", root, IMAGE_DATASETS["cifar10"])
    reader = torchvision.datasets.CIFAR10
    if not verify:
        # torchvision checks each file's MD5 against the official release before reading it (its
        # batches are pickles); files made elsewhere (the tests' tiny ones) need that check off.
        # Only the checksums are dropped (class attributes, no torchvision method replaced).
        reader = type("CIFAR10Unverified", (torchvision.datasets.CIFAR10,), {
            "train_list": [[file, None] for file, _ in torchvision.datasets.CIFAR10.train_list],
            "test_list": [[file, None] for file, _ in torchvision.datasets.CIFAR10.test_list],
            "meta": {**torchvision.datasets.CIFAR10.meta, "md5": None},
        })
    try:
        dataset = reader(str(root), train=split == "train", download=False)
    except RuntimeError as error:  # torchvision: "Dataset not found or corrupted."
        raise ValueError(
            f"cifar10: the files in {root / 'cifar-10-batches-py'} are not the official CIFAR-10 release "
            f"(torchvision: {error}); restore them, or pass verify_checksums=False for files you made yourself."
        ) from None
    pixels = np.asarray(dataset.data, dtype=np.uint8).transpose(0, 3, 1, 2)  # NHWC -> NCHW
    return ImageSet(_to_unit_range(pixels, 255.0), np.asarray(dataset.targets, dtype=np.int64), "cifar10", split)


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                "t10k-labels-idx1-ubyte")
_CIFAR_FILES = tuple(f"cifar-10-batches-py/{f}" for f in
                     (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"))

IMAGE_DATASETS: dict[str, ImageSpec] = {
    "digits": ImageSpec("digits", (1, 8, 8), 10, _digits, False,
                        description="scikit-learn's 8x8 digits (offline; 1437 train / 360 held out)"),
    "mnist": ImageSpec("mnist", (1, 32, 32), 10, _mnist_like("MNIST", "mnist"), True,
                       tuple(f"MNIST/raw/{f}" for f in _MNIST_FILES), "MNIST from root/MNIST/raw, padded to 32x32"),
    "fashion-mnist": ImageSpec("fashion-mnist", (1, 32, 32), 10, _mnist_like("FashionMNIST", "fashion-mnist"), True,
                               tuple(f"FashionMNIST/raw/{f}" for f in _MNIST_FILES),
                               "Fashion-MNIST from root/FashionMNIST/raw, padded to 32x32"),
    "cifar10": ImageSpec("cifar10", (3, 32, 32), 10, _cifar10, True, _CIFAR_FILES,
                         "CIFAR-10 from root/cifar-10-batches-py"),
}


def image_dataset_names() -> list[str]:
    """The image sets' names, sorted."""
    return sorted(IMAGE_DATASETS)


def image_spec(name: str) -> ImageSpec:
    """The entry of ``name``; a ValueError listing the names otherwise."""
    try:
        return IMAGE_DATASETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"image data set must be one of {image_dataset_names()}, got {name!r}.") from None


def load_images(name: str, split: str = "train", root: str | os.PathLike | None = None,
                verify_checksums: bool = True) -> ImageSet:
    """Load an image set's split.

    Parameters
    ----------
    name
        ``"digits"`` (offline, ships with scikit-learn), ``"mnist"``, ``"fashion-mnist"`` or
        ``"cifar10"`` (from ``root``).
    split
        ``"train"`` or ``"held_out"`` (digits: the fixed 1437 / 360 split; the others: the
        files' train / test).
    root
        The folder holding the torchvision layout (``root/MNIST/raw/...``,
        ``root/FashionMNIST/raw/...``, ``root/cifar-10-batches-py/...``); required for all but
        digits, ignored by digits.
    verify_checksums
        CIFAR-10 only: check the files' MD5 against the official release before torchvision
        unpickles them (default). Turn off only for files you wrote yourself.

    Returns
    -------
    ImageSet
        ``images`` float32 ``(n, channels, side, side)`` in ``[-1, 1]``, ``labels`` int64 ``(n,)``.

    Raises
    ------
    ValueError
        For an unknown name or split, or a missing ``root``.
    FileNotFoundError
        When ``root`` lacks the expected files (the message lists them).
    """
    spec = image_spec(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}.")
    if spec.needs_root:
        if root is None:
            raise ValueError(f"{name} is read from your disk: pass root= (CLI: --data-root) the folder holding "
                             f"{', '.join(spec.expected_files[:1])} and the other files; nothing is downloaded.")
        root = Path(root).expanduser()
    return spec.loader(split, root, verify_checksums)
