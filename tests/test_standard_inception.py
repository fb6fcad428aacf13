"""The standard FID / IS path (torch-fidelity on the user's Inception weights), without the real weights.

The real weights are not on the test machines, so the test writes its own file: the Inception
architecture (torchvision's ``inception_v3`` with 1008 classes and no aux head, whose state-dict
names and shapes are the standard FID weights' and torch-fidelity's extractor's) at random He
init, saved as a state dict. The scorer loads it through the user's path. Skipped when
torch-fidelity (the ``fid`` extra) is not installed. 4 digits per set at 299 x 299 on the CPU,
12 images through the network in all, on one torch thread (two threads on the 2 shared cores ran
the network several times slower in wall time).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from ppl_ebm.cli import main as cli
from ppl_ebm.data.images import load_images
from ppl_ebm.metrics.standard_inception import (InceptionScorer, InceptionWeightsError, StandardMetricsUnavailable,
                                                images_to_uint8_rgb, load_inception_weights)

N_IMAGES = 4


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    import torchvision

    pytest.importorskip("torch_fidelity")
    torch.manual_seed(0)
    network = torchvision.models.inception_v3(num_classes=1008, aux_logits=False, init_weights=False, weights=None)
    for module in network.modules():  # He init keeps the activations O(1) through the 94 conv layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("inception") / "weights-inception-random.pth"
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def scorer(weights_file, one_torch_thread):
    import torch_fidelity.feature_extractor_inceptionv3 as extractor_module

    def no_download(*args, **kwargs):
        raise AssertionError("the scorer tried to download weights")

    original = extractor_module.load_state_dict_from_url
    extractor_module.load_state_dict_from_url = no_download
    try:
        yield InceptionScorer(weights_file)
    finally:
        extractor_module.load_state_dict_from_url = original


def test_images_become_three_channel_uint8():
    gray = np.array([-1.0, 0.0, 1.0, 2.0], dtype=np.float32).reshape(1, 1, 2, 2)
    pixels = images_to_uint8_rgb(gray)
    assert pixels.dtype == torch.uint8 and pixels.shape == (1, 3, 2, 2)
    assert pixels[0, :, 0, 0].tolist() == [0, 0, 0] and pixels[0, 1].flatten().tolist() == [0, 128, 255, 255]
    with pytest.raises(ValueError, match="non-finite"):
        images_to_uint8_rgb(np.full((1, 1, 2, 2), np.nan, dtype=np.float32))


def test_fid_is_zero_on_one_set_and_grows_with_a_shift_and_noise(scorer):
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    images = load_images("digits", "held_out").images[:N_IMAGES]
    rng = np.random.default_rng(0)
    moved = np.clip(images + 0.3 + rng.normal(0.0, 0.5, images.shape), -1, 1).astype(np.float32)
    # One pass of the network over both sets.
    pool, logits = scorer.features(np.concatenate([images, moved]))
    assert pool.shape == (2 * N_IMAGES, 2048) and logits.shape == (2 * N_IMAGES, 1008)
    statistics = [scorer._metric_fid.fid_features_to_statistics(part) for part in pool.split(N_IMAGES)]
    # torch-fidelity's FID takes the eigenvalues of a 2048 x 2048 product (about 20 s of one core here,
    # 5x slower with two BLAS threads on the 2 shared cores): two of them, on one thread.
    with threadpool_limits(1):
        same, moved_fid = (scorer.fid_from_statistics(s, statistics[0]) for s in statistics)
    # Same set: 0 up to float32 features and the eigenvalue route of torch-fidelity's formula.
    assert moved_fid > 0 and abs(same) < 1e-3 * moved_fid
    mean, std = scorer.scores_from_logits(logits[:N_IMAGES], splits=2)
    assert 1.0 <= mean <= 1008 and std >= 0
    # A fresh pass over the same images, in another batch: the same features (deterministic to rounding).
    again, _ = scorer.features(images)
    torch.testing.assert_close(again, pool[:N_IMAGES], rtol=1e-4, atol=1e-6)
    assert scorer.describe()["standard_weights"] is False  # a random file: not the standard sha256
    print(f"standard inception test: {time.perf_counter() - start:.1f} s")


class Payload:  # an object that only arbitrary unpickling would rebuild: refused, never run
    pass


def test_bad_paths_and_files_fail_with_the_argument_named(tmp_path):
    with pytest.raises(InceptionWeightsError, match=r"--inception-weights .*does not exist.*pt_inception"):
        load_inception_weights(tmp_path / "missing.pth")
    with pytest.raises(InceptionWeightsError, match="is not a file"):
        load_inception_weights(tmp_path)
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(InceptionWeightsError, match="weights_only=True"):
        load_inception_weights(text)
    pickled = tmp_path / "object.pth"
    torch.save({"model": Payload()}, pickled)
    with pytest.raises(InceptionWeightsError, match="weights_only=True"):
        load_inception_weights(pickled)
    nested = tmp_path / "nested.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, nested)
    with pytest.raises(InceptionWeightsError, match="not a flat"):
        load_inception_weights(nested)


def test_a_state_dict_of_another_network_is_refused(tmp_path, weights_file, one_torch_thread):
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    with pytest.raises(InceptionWeightsError, match="not of the FID Inception network"):
        InceptionScorer(other)
    wrong_shape = tmp_path / "wrong_shape.pth"
    state = torch.load(weights_file, weights_only=True)
    state["fc.weight"] = torch.zeros(1000, 2048)  # torchvision's ImageNet head, not the FID graph's 1008
    torch.save(state, wrong_shape)
    with pytest.raises(InceptionWeightsError, match="size mismatch"):
        InceptionScorer(wrong_shape)


def test_the_library_missing_is_one_clear_error(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # as if not installed
    path = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(StandardMetricsUnavailable, match=r"torch-fidelity.*\[fid\]"):
        InceptionScorer(path)


def _cli_error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_the_cli_stops_at_once_on_a_bad_path_a_bad_file_or_a_toy_model(tmp_path, capsys, monkeypatch):
    base = ["compare", "--model", "digits-sngan", "--output", str(tmp_path / "out"), "--inception-weights"]
    error = _cli_error(base + [str(tmp_path / "missing.pth")], capsys)
    assert "--inception-weights" in error and "does not exist" in error and "nothing is downloaded" in error
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    error = _cli_error(base + [str(text)], capsys)
    assert "--inception-weights" in error and "weights_only=True" in error
    error = _cli_error(base[:-1] + ["--num-samples", "10", "--inception-weights", str(text)], capsys)
    assert "inception_splits" in error  # parts of one image would make the IS 1
    error = _cli_error(["compare", "--model", "25gaussians-nsgan", "--inception-weights", str(text)], capsys)
    assert "--inception-weights" in error and "image models" in error
    import sys

    monkeypatch.setitem(sys.modules, "torch_fidelity", None)
    tensors = tmp_path / "tensors.pth"
    torch.save({"a": torch.zeros(1)}, tensors)  # readable as tensors: the missing library is the error
    error = _cli_error(base + [str(tensors)], capsys)
    assert "torch-fidelity" in error and "[fid]" in error
    assert not (tmp_path / "out").exists()  # nothing ran


class _PixelNetwork(torch.nn.Module):
    """A stand-in for the Inception network in the compare's wiring test: pixel means as "features"."""

    def forward(self, x):
        x = x.float().mean(dim=1).flatten(1) / 255  # (n, h * w)
        return torch.cat([x, x ** 2], dim=1), torch.cat([x, -x], dim=1) * 5


def test_the_image_compare_reports_the_standard_columns_beside_the_classifiers(tmp_path, monkeypatch, capsys,
                                                                             one_torch_thread):
    """The wiring: ``--inception-weights`` -> fid_inception / is_inception in metrics.json, the table and
    the report. The Inception network itself is swapped for a cheap one (it is tested above); torch-fidelity's
    FID and IS functions are the real ones."""
    import json

    pytest.importorskip("torch_fidelity")
    from torch_fidelity import metric_fid, metric_isc

    from ppl_ebm.metrics import standard_inception

    weights = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"stand-in")

    def stand_in(path, device=None, argument="--inception-weights"):
        scorer = object.__new__(standard_inception.InceptionScorer)
        scorer._metric_fid, scorer._metric_isc = metric_fid, metric_isc
        scorer.path, scorer.sha256, scorer.batch_size = weights, "0" * 64, 64
        scorer.device, scorer.extractor = torch.device("cpu"), _PixelNetwork()
        return scorer

    monkeypatch.setattr(standard_inception, "inception_scorer", stand_in)
    output = tmp_path / "out"
    assert cli(["compare", "--model", "digits-sngan", "--methods", "generator", "--num-samples", "20",
                "--sweep", "--output", str(output), "--no-progress", "--inception-weights", str(weights)]) == 0
    result = json.loads((output / "metrics.json").read_text())
    for method in ("data", "generator"):
        row = result["methods"][method]
        assert np.isfinite(row["fid_inception"]) and row["fid_inception"] > 0, method
        assert row["is_inception"] > 1 and row["is_inception_std"] > 0 and np.isfinite(row["fd"]), method
    standard = result["standard_metrics"]
    assert standard["library"].startswith("torch-fidelity") and standard["weights_file"] == weights.name
    assert standard["standard_weights"] is False and standard["splits"] == 10 and standard["n_reference"] == 360
    assert "fid_inception" in result["metrics"]
    report = (output / "report.md").read_text()
    assert "| FID (Inception) | IS (Inception) |" in report and "not FID/IS" in report
    assert "not comparable" in report  # the sha256 is not the standard file's
    assert "FID (Inception)" in capsys.readouterr().out
