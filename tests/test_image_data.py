"""Image data sets (ppl_ebm.data.images): scikit-learn's digits offline, and MNIST / Fashion-MNIST /
CIFAR-10 read through torchvision from tiny files in torchvision's formats that the tests write."""

from __future__ import annotations

import pickle  # the tests write CIFAR-10's pickled batches themselves; the package never unpickles
import numpy as np
import pytest

from ppl_ebm.data import images as image_data
from ppl_ebm.data import load_images
from problems import write_idx_ubyte, write_tiny_mnist


def test_digits_split_is_fixed_stratified_and_in_range():
    train, held_out = load_images("digits", "train"), load_images("digits", "held_out")
    assert train.images.shape == (1437, 1, 8, 8) and held_out.images.shape == (360, 1, 8, 8)
    assert train.images.dtype == np.float32 and train.labels.dtype == np.int64
    assert train.images.min() == -1.0 and train.images.max() == 1.0
    # Stratified: 36 (or 35/37 where a class has an odd count) held-out images per class.
    assert np.all(np.abs(np.bincount(held_out.labels, minlength=10) - 36) <= 1)
    # The two splits partition the 1797 images: every image's row appears once overall.
    from sklearn.datasets import load_digits

    rows = {row.tobytes(): count for row, count in zip(*np.unique(
        (load_digits().images / 8 - 1).astype(np.float32).reshape(1797, -1), axis=0, return_counts=True))}
    seen: dict[bytes, int] = {}
    for row in np.concatenate([train.images, held_out.images]).reshape(1797, -1):
        seen[row.tobytes()] = seen.get(row.tobytes(), 0) + 1
    assert seen == rows
    again = load_images("digits", "held_out")
    assert np.array_equal(again.images, held_out.images) and np.array_equal(again.labels, held_out.labels)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_mnist_formats_read_through_torchvision_and_padded(tmp_path, name, folder):
    pixels, labels = write_tiny_mnist(tmp_path, folder)
    pixels["train"][0, 0, 0], pixels["train"][0, 0, 1] = 0, 255
    write_idx_ubyte(tmp_path / folder / "raw" / "train-images-idx3-ubyte", pixels["train"])
    for split, key in (("train", "train"), ("held_out", "t10k")):
        loaded = load_images(name, split, root=tmp_path)
        assert loaded.images.shape == (len(labels[key]), 1, 32, 32) and loaded.images.dtype == np.float32
        np.testing.assert_array_equal(loaded.labels, labels[key])
        inner = loaded.images[:, 0, 2:30, 2:30]
        np.testing.assert_allclose(inner, pixels[key] / 127.5 - 1, atol=1e-6)
        border = np.ones((32, 32), bool)
        border[2:30, 2:30] = False
        assert np.all(loaded.images[:, 0][:, border] == -1.0)  # padded with background
    train = load_images(name, "train", root=tmp_path)
    assert train.images[0, 0, 2, 2] == -1.0 and train.images[0, 0, 2, 3] == 1.0


def _write_cifar(root) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    written = {}
    for file in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        rows = rng.integers(0, 256, (2, 3072)).astype(np.uint8)  # R, G, B planes of 1024 each
        written[file] = rows
        with open(folder / file, "wb") as handle:
            pickle.dump({"data": rows, "labels": [int(v) for v in rng.integers(0, 10, 2)]}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)
    return written


def test_cifar10_format_read_through_torchvision(tmp_path):
    written = _write_cifar(tmp_path)
    train = load_images("cifar10", "train", root=tmp_path, verify_checksums=False)
    held_out = load_images("cifar10", "held_out", root=tmp_path, verify_checksums=False)
    assert train.images.shape == (10, 3, 32, 32) and held_out.images.shape == (2, 3, 32, 32)
    expected = written["test_batch"].reshape(2, 3, 32, 32) / 127.5 - 1  # channel-first planes
    np.testing.assert_allclose(held_out.images, expected, atol=1e-6)
    # torchvision's checksums: files not from the official release are refused by default.
    with pytest.raises(ValueError, match="not the official CIFAR-10 release.*verify_checksums=False"):
        load_images("cifar10", "train", root=tmp_path)


def test_missing_files_and_bad_arguments_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"MNIST/raw, which does not exist.*Nothing is downloaded"):
        load_images("mnist", root=tmp_path)
    write_idx_ubyte(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte", np.zeros((1, 28, 28)))
    with pytest.raises(FileNotFoundError, match=r"lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte"):
        load_images("mnist", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="data_batch_1.*test_batch, batches.meta in .*cifar-10-batches-py"):
        load_images("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="pass root="):
        load_images("fashion-mnist")
    with pytest.raises(ValueError, match="image data set must be one of"):
        load_images("svhn")
    with pytest.raises(ValueError, match="split must be one of"):
        load_images("digits", "test")
    assert image_data.image_dataset_names() == ["cifar10", "digits", "fashion-mnist", "mnist"]
