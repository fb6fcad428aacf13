"""sample(..., draws_dir=...): draws streamed to disk equal the in-memory run bit for bit, and
a run interrupted (an exception, or SIGKILL of the process) resumes to the same draws."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ppl_ebm
from ppl_ebm.drivers import draw_store

RUN = dict(num_chains=6, num_warmup=150, num_samples=500, seed=3, thinning=2, progress_bar=False)
# "mala-imh": MALA with independence steps, whose state holds one more running mean.
OPTIONS = {"ula": ("ula", {"step_size": 0.05}), "mala": ("mala", {}), "mala-imh": ("mala", {"independence_every": 3}),
           # i-SIR steps between MALA steps: particles, adaptation and both running means.
           "ex2mcmc": ("ex2mcmc", {}),
           # ... and a flow trained in warmup with its optimiser's moments (resumed in warmup: mid-training).
           "flex2mcmc": ("flex2mcmc", {"flow_layers": 2, "flow_width": 8})}


@pytest.fixture(scope="module")
def ebm():
    return ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0).ebm


class _Interrupted(Exception):
    pass


def _interrupt_after(monkeypatch, checkpoints: int) -> None:
    original = draw_store.DrawStore.checkpoint
    calls = {"n": 0}

    def checkpoint(self, state, progress):
        original(self, state, progress)
        calls["n"] += 1
        if calls["n"] == checkpoints:
            raise _Interrupted

    monkeypatch.setattr(draw_store.DrawStore, "checkpoint", checkpoint)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("method", ["ula", "mala", "mala-imh", "ex2mcmc", "flex2mcmc"])
@pytest.mark.parametrize("checkpoints, resumed_at", [(1, 100), (3, 250)])  # in warmup / in sampling
def test_interrupted_run_resumes_to_the_same_draws(ebm, tmp_path, monkeypatch, backend, method, checkpoints, resumed_at):
    sampler, options = OPTIONS[method]
    memory = ppl_ebm.sample(ebm, sampler, backend, **RUN, **options)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, checkpoints)
        with pytest.raises(_Interrupted):
            ppl_ebm.sample(ebm, sampler, backend, **RUN, draws_dir=tmp_path / "run", **options)
    resumed = ppl_ebm.sample(ebm, sampler, backend, **RUN, draws_dir=tmp_path / "run", **options)
    assert resumed.stats["resumed_at_iteration"] == resumed_at
    assert isinstance(resumed.latents, np.memmap)
    np.testing.assert_array_equal(np.asarray(resumed.latents), memory.latents)
    np.testing.assert_array_equal(resumed.stats["step_size"], memory.stats["step_size"])
    np.testing.assert_array_equal(resumed.stats["acceptance"], memory.stats["acceptance"])
    if "independence_every" in options or sampler in ("ex2mcmc", "flex2mcmc"):
        np.testing.assert_array_equal(resumed.stats["independence_acceptance"], memory.stats["independence_acceptance"])
    # A finished run is returned as it is, without sampling.
    again = ppl_ebm.sample(ebm, sampler, backend, **RUN, draws_dir=tmp_path / "run", **options)
    assert again.stats["resumed_at_iteration"] == RUN["num_warmup"] + RUN["num_samples"]
    np.testing.assert_array_equal(np.asarray(again.latents), memory.latents)


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import ppl_ebm
    from ppl_ebm.drivers import draw_store

    original = draw_store.DrawStore.write
    calls = {"n": 0}

    def write(self, start, block):
        calls["n"] += 1
        if calls["n"] == 4:  # killed while handing over the 4th chunk, after 3 checkpoints
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, start, block)

    draw_store.DrawStore.write = write
    ebm = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0).ebm
    ppl_ebm.sample(ebm, "ula", "torch", num_chains=6, num_warmup=0, num_samples=1000, seed=1,
                   progress_bar=False, draws_dir=sys.argv[1], step_size=0.05)
    """
)


def test_sigkilled_process_resumes_without_losing_draws(ebm, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    child = subprocess.run([sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    saved = draw_store.DrawStore(tmp_path / "run", (6, 1000, 3)).load_checkpoint()
    assert saved is not None and saved[1]["iteration"] == 300
    partial = np.load(tmp_path / "run" / "draws.npy").swapaxes(0, 1)[:, :300].copy()
    memory = ppl_ebm.sample(ebm, "ula", "torch", num_chains=6, num_warmup=0, num_samples=1000, seed=1,
                            progress_bar=False, step_size=0.05)
    np.testing.assert_array_equal(partial, memory.latents[:, :300])  # finished draws survived the kill
    resumed = ppl_ebm.sample(ebm, "ula", "torch", num_chains=6, num_warmup=0, num_samples=1000, seed=1,
                             progress_bar=False, draws_dir=tmp_path / "run", step_size=0.05)
    assert resumed.stats["resumed_at_iteration"] == 300
    np.testing.assert_array_equal(np.asarray(resumed.latents), memory.latents)


def test_refusals(ebm, tmp_path):
    ppl_ebm.sample(ebm, "ula", "jax", num_chains=2, num_warmup=0, num_samples=10, progress_bar=False,
                   draws_dir=tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["shape"] == [2, 10, 3] and meta["settings"]["sampler"] == "ula"
    with pytest.raises(ValueError, match="differs in: num_samples"):
        ppl_ebm.sample(ebm, "ula", "jax", num_chains=2, num_warmup=0, num_samples=20, progress_bar=False,
                       draws_dir=tmp_path / "run")
    other = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=1).ebm
    with pytest.raises(ValueError, match="differs in: target"):
        ppl_ebm.sample(other, "ula", "jax", num_chains=2, num_warmup=0, num_samples=10, progress_bar=False,
                       draws_dir=tmp_path / "run")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a ppl_ebm draw store"):
        ppl_ebm.sample(ebm, "ula", "jax", num_chains=2, num_samples=10, progress_bar=False, draws_dir=tmp_path / "notes")
    with pytest.raises(ValueError, match="draws_dir streams"):
        ppl_ebm.sample(ebm, "nuts", "jax", num_chains=2, num_samples=10, draws_dir=tmp_path / "nuts")
    with pytest.raises(ValueError, match="draws_dir streams"):
        ppl_ebm.sample(ebm, "ula", "jax", num_chains=2, num_samples=10, until="converged", draws_dir=tmp_path / "u")


def test_chunks_are_bounded_in_bytes():
    assert draw_store.chunk_draws(1, 10_000, 128) == draw_store.CHUNK_BYTES // (4 * 10_000 * 128)
    assert draw_store.chunk_draws(1, 10, 2) == draw_store.CHUNK_STEPS
    assert draw_store.chunk_draws(7, 10, 2) == draw_store.CHUNK_STEPS // 7
    assert draw_store.chunk_draws(1000, 10, 2) == 1
