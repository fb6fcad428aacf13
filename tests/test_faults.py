"""Faults: damaged files, a store of another target, a full disk, read-only folders, a killed
process. Each ends in an error naming the file (never suggesting to unpickle it) or in a
correct resume; none in a silent wrong answer or lost draws."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import ppl_ebm
from ppl_ebm import LatentEBM
from ppl_ebm.drivers import draw_store
from problems import save_tiny_model

RUN = dict(num_chains=2, num_warmup=0, num_samples=6, seed=1, progress_bar=False)


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0)


def _finished(problem, folder, **options):
    return ppl_ebm.sample(problem.ebm, "ula", "torch", **RUN, draws_dir=folder, **options)


# -- resume of another target: refused, never mixed or returned ---------------------------------
def test_another_extended_noise_scale_is_another_target(problem, tmp_path):
    first = LatentEBM(problem.ebm.generator, problem.ebm.critic, latent_dim=2, extended_noise_scale=0.1)
    second = LatentEBM(problem.ebm.generator, problem.ebm.critic, latent_dim=2, extended_noise_scale=0.5)
    ppl_ebm.sample(first, "ula", "torch", **RUN, draws_dir=tmp_path / "run")
    with pytest.raises(ValueError, match="differs in: target"):
        ppl_ebm.sample(second, "ula", "torch", **RUN, draws_dir=tmp_path / "run")


class _ScaledCritic(torch.nn.Module):
    """A critic whose output depends on a plain attribute, in no state_dict."""

    def __init__(self, scale: float):
        super().__init__()
        self.linear = torch.nn.Linear(3, 1)
        torch.nn.init.constant_(self.linear.weight, 0.1)
        self.scale = scale

    def forward(self, x):
        return self.scale * self.linear(x)


def test_a_critic_differing_in_a_plain_attribute_is_another_target(problem, tmp_path):
    from ppl_ebm.drivers.fingerprint import fingerprint

    first = LatentEBM(problem.ebm.generator, _ScaledCritic(1.0), latent_dim=2)
    second = LatentEBM(problem.ebm.generator, _ScaledCritic(3.0), latent_dim=2)
    ppl_ebm.sample(first, "ula", "torch", **RUN, draws_dir=tmp_path / "run")
    # Finished: the second target's call must not get the first one's draws back.
    with pytest.raises(ValueError, match="differs in: target"):
        ppl_ebm.sample(second, "ula", "torch", **RUN, draws_dir=tmp_path / "run")
    # Their JAX translations differ too (the scale is a constant of the translated program).
    assert fingerprint(first.to_jax()) != fingerprint(second.to_jax())


def test_a_non_persistent_buffer_and_a_model_argument_count(problem, tmp_path):
    from ppl_ebm.drivers.fingerprint import fingerprint

    critic = _ScaledCritic(1.0)
    critic.register_buffer("shift", torch.zeros(1), persistent=False)
    before = fingerprint(LatentEBM(problem.ebm.generator, critic, latent_dim=2))
    critic.shift += 1
    assert fingerprint(LatentEBM(problem.ebm.generator, critic, latent_dim=2)) != before

    def model(data):
        pass

    assert fingerprint(model, model_args=(np.zeros(3),)) != fingerprint(model, model_args=(np.ones(3),))


@pytest.mark.parametrize("change, name", [(dict(seed=2), "seed"), (dict(num_chains=3), "num_chains"),
                                          (dict(step_size=0.02), "options")])
def test_another_run_setting_is_refused(problem, tmp_path, change, name):
    _finished(problem, tmp_path / "run")
    arguments = {**RUN, **change}
    with pytest.raises(ValueError, match=f"differs in: .*{name}"):
        ppl_ebm.sample(problem.ebm, "ula", "torch", **arguments, draws_dir=tmp_path / "run")


# -- damaged store files: the file is named, unpickling never suggested -------------------------
def _pickled_npz(path):
    with open(path, "wb") as handle:
        np.savez(handle, **{"state.x": np.array([object()], dtype=object)})


STORE_DAMAGE = [
    ("meta.json", lambda p: p.write_text("{truncated")),
    ("meta.json", lambda p: p.write_text("[1, 2]")),
    ("state.npz", lambda p: p.write_bytes(b"PK\x03\x04garbage")),
    ("state.npz", lambda p: p.write_bytes(p.read_bytes()[:40])),
    ("state.npz", _pickled_npz),
    ("state.npz", lambda p: np.savez(p, other=np.zeros(2))),
    ("draws.npy", lambda p: p.write_bytes(p.read_bytes()[:60])),
    ("draws.npy", lambda p: p.write_bytes(b"not an npy file at all")),
]


@pytest.mark.parametrize("case", range(len(STORE_DAMAGE)))
def test_a_damaged_store_file_is_named(problem, tmp_path, case):
    name, damage = STORE_DAMAGE[case]
    _finished(problem, tmp_path / "run")
    damage(tmp_path / "run" / name)
    with pytest.raises(ValueError, match=name) as error:
        _finished(problem, tmp_path / "run")
    assert "pickle" not in str(error.value).lower()


# -- damaged model files --------------------------------------------------------------------------
WEIGHT_DAMAGE = [
    ("generator.safetensors", lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])),
    ("critic.safetensors", lambda p: p.write_bytes(b"\x00" * 16)),
    ("critic.safetensors", lambda p: p.write_bytes(b"")),
    ("generator.safetensors", lambda p: p.write_bytes(b"\xff" * 8 + b"{}")),
]


@pytest.mark.parametrize("case", range(len(WEIGHT_DAMAGE)))
def test_a_damaged_weights_file_is_named(tmp_path, case):
    from ppl_ebm.zoo import load_model

    name, damage = WEIGHT_DAMAGE[case]
    folder = save_tiny_model(tmp_path / "tiny")
    damage(folder / name)
    with pytest.raises(ValueError, match=name) as error:
        load_model(folder)
    assert "pickle" not in str(error.value).lower()


# -- a full disk, a read-only folder -------------------------------------------------------------
def test_a_full_disk_keeps_the_checkpointed_draws_and_resumes(problem, tmp_path, monkeypatch):
    memory = ppl_ebm.sample(problem.ebm, "ula", "torch", num_chains=2, num_warmup=0, num_samples=300, seed=1,
                            progress_bar=False)
    original, calls = os.pwrite, {"n": 0}

    def pwrite(fd, data, offset):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(fd, data, offset)

    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", pwrite)
        with pytest.raises(OSError, match="draws.npy.*resume") as error:
            ppl_ebm.sample(problem.ebm, "ula", "torch", num_chains=2, num_warmup=0, num_samples=300, seed=1,
                           progress_bar=False, draws_dir=tmp_path / "run")
    assert error.value.errno == errno.ENOSPC
    resumed = ppl_ebm.sample(problem.ebm, "ula", "torch", num_chains=2, num_warmup=0, num_samples=300, seed=1,
                             progress_bar=False, draws_dir=tmp_path / "run")
    assert resumed.stats["resumed_at_iteration"] == 100
    np.testing.assert_array_equal(np.asarray(resumed.latents), memory.latents)


def test_a_store_larger_than_the_disk_is_refused_before_sampling(problem, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10, 10, 10))
    with pytest.raises(OSError, match="draws_dir.*free"):
        _finished(problem, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _read_only(monkeypatch, folder):
    """A read-only folder: chmod where it binds (not for root, who writes anyway), else os.access says no."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False if str(path) == str(folder)
                            else real(path, mode, *a, **k))


def test_a_read_only_folder_is_refused_before_any_work(problem, tmp_path, monkeypatch, capsys):
    from ppl_ebm.cli import main as cli

    locked = tmp_path / "locked"
    locked.mkdir()
    _read_only(monkeypatch, locked)
    try:
        with pytest.raises(PermissionError, match="draws_dir.*not writable"):
            _finished(problem, locked / "run")
        with pytest.raises(SystemExit):
            cli(["compare", "--model", "gaussian", "--output", str(locked / "out")])
        assert "--output" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


# -- a study's output path that is a file: refused before the study, not after --------------------
def test_cli_studies_check_output_before_running(tmp_path, monkeypatch, capsys):
    from ppl_ebm import cli
    from ppl_ebm.studies import compare, mixing

    ran = []
    monkeypatch.setattr(compare, "run_compare", lambda *a, **k: ran.append("compare"))
    monkeypatch.setattr(mixing, "run_mixing", lambda *a, **k: ran.append("mixing"))
    taken = tmp_path / "taken"
    taken.write_text("")
    for argv in (["compare", "--output", str(taken)], ["mixing", "--output", str(taken)]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        assert "--output" in capsys.readouterr().err
    assert ran == []


# -- Pyro NUTS on fewer than 4 draws: the draws come back ---------------------------------------
def test_pyro_nuts_with_three_draws_returns_them(problem):
    result = ppl_ebm.sample(problem.ebm, "nuts", "torch", num_chains=1, num_warmup=3, num_samples=3,
                            progress_bar=False)
    assert result.latents.shape == (1, 3, 2)
    assert np.isfinite(result.stats["acceptance"]).all()


# -- a killed process, then a resume in a new one: bit-equal ------------------------------------
_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import ppl_ebm
    from ppl_ebm.drivers import draw_store

    original = draw_store.DrawStore.checkpoint
    calls = {"n": 0}

    def checkpoint(self, state, progress):
        original(self, state, progress)
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    draw_store.DrawStore.checkpoint = checkpoint
    ebm = ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0).ebm
    ppl_ebm.sample(ebm, "mala", "torch", num_chains=3, num_warmup=50, num_samples=200, seed=4,
                   progress_bar=False, draws_dir=sys.argv[1])
    """
)


def test_killed_process_resumes_in_a_new_one(problem, tmp_path):
    # Also shows the fingerprint is the same in another process (no memory address in it).
    import signal

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    child = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    arguments = dict(num_chains=3, num_warmup=50, num_samples=200, seed=4, progress_bar=False)
    memory = ppl_ebm.sample(problem.ebm, "mala", "torch", **arguments)
    resumed = ppl_ebm.sample(problem.ebm, "mala", "torch", **arguments, draws_dir=tmp_path / "run")
    assert resumed.stats["resumed_at_iteration"] == 150  # 50 warmup + one chunk
    np.testing.assert_array_equal(np.asarray(resumed.latents), memory.latents)


def count_cases() -> dict[str, int]:
    return {"another target or run": 1 + 2 + 2 + 3, "damaged store files": len(STORE_DAMAGE),
            "damaged weights": len(WEIGHT_DAMAGE), "disk and permissions": 3, "lost work": 2, "killed process": 1}
