"""sample(..., draws_dir="run.zarr"): the Zarr store equals the in-memory run, resumes a killed
run to the same draws, refuses another target or chain layout, and opens in xarray without
ppl_ebm; ppl-ebm report diagnoses it block by block to ArviZ's numbers."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ppl_ebm
from ppl_ebm.drivers import zarr_store

RUN = dict(num_chains=6, num_warmup=60, num_samples=120, seed=3, thinning=2, progress_bar=False)


@pytest.fixture(scope="module")
def ebm():
    return ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0).ebm


class _Interrupted(Exception):
    pass


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_interrupted_run_resumes_to_the_in_memory_draws(ebm, tmp_path, monkeypatch, backend):
    memory = ppl_ebm.sample(ebm, "mala", backend, **RUN)
    original, calls = zarr_store.ZarrDrawStore.checkpoint, {"n": 0}

    def checkpoint(self, state, progress):
        original(self, state, progress)
        calls["n"] += 1
        if calls["n"] == 2:  # warmup's one checkpoint (60 steps), then the first chunk of draws
            raise _Interrupted

    with monkeypatch.context() as patch:
        patch.setattr(zarr_store.ZarrDrawStore, "checkpoint", checkpoint)
        with pytest.raises(_Interrupted):
            ppl_ebm.sample(ebm, "mala", backend, **RUN, draws_dir=tmp_path / "run.zarr")
    resumed = ppl_ebm.sample(ebm, "mala", backend, **RUN, draws_dir=tmp_path / "run.zarr")
    assert resumed.stats["resumed_at_iteration"] == 160  # 60 warmup + one chunk of 100 steps
    np.testing.assert_array_equal(np.asarray(resumed.latents), memory.latents)
    np.testing.assert_array_equal(resumed.stats["step_size"], memory.stats["step_size"])


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import ppl_ebm
    from ppl_ebm.drivers import zarr_store

    original, calls = zarr_store.ZarrDrawStore.write, {"n": 0}

    def write(self, start, block):
        calls["n"] += 1
        if calls["n"] == 3:  # killed while handing over the 3rd chunk, after 2 checkpoints
            os.kill(os.getpid(), signal.SIGKILL)
        original(self, start, block)

    zarr_store.ZarrDrawStore.write = write
    ebm = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0).ebm
    ppl_ebm.sample(ebm, "ula", "torch", num_chains=6, num_warmup=0, num_samples=400, seed=1,
                   progress_bar=False, draws_dir=sys.argv[1], step_size=0.05)
    """
)


def test_sigkilled_process_resumes_and_the_report_reads_only_finished_draws(ebm, tmp_path):
    from ppl_ebm.diagnostics.stored import open_run

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    store = tmp_path / "run.zarr"
    child = subprocess.run([sys.executable, str(script), str(store)], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    memory = ppl_ebm.sample(ebm, "ula", "torch", num_chains=6, num_warmup=0, num_samples=400, seed=1,
                            progress_bar=False, step_size=0.05)
    partial = open_run(store)
    assert partial.draws.shape == (6, 200, 3)  # two chunks finished: the report reads no NaN
    np.testing.assert_array_equal(np.asarray(partial.draws), memory.latents[:, :200])
    resumed = ppl_ebm.sample(ebm, "ula", "torch", num_chains=6, num_warmup=0, num_samples=400, seed=1,
                             progress_bar=False, draws_dir=store, step_size=0.05)
    assert resumed.stats["resumed_at_iteration"] == 200
    np.testing.assert_array_equal(np.asarray(resumed.latents), memory.latents)


def test_another_target_setting_or_layout_is_refused(ebm, tmp_path):
    small = dict(num_chains=4, num_warmup=0, num_samples=10, progress_bar=False)
    store = tmp_path / "run.zarr"
    ppl_ebm.sample(ebm, "ula", "jax", **small, draws_dir=store)
    other = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=1).ebm
    with pytest.raises(ValueError, match="differs in: target"):
        ppl_ebm.sample(other, "ula", "jax", **small, draws_dir=store)
    with pytest.raises(ValueError, match="differs in: num_samples"):
        ppl_ebm.sample(ebm, "ula", "jax", **{**small, "num_samples": 20}, draws_dir=store)
    # The same run from 2 processes would write other blocks: refused before any draw.
    settings = __import__("zarr").open_group(store, mode="r").attrs["ppl_ebm"]["settings"]
    with pytest.raises(ValueError, match="chain layout"):
        zarr_store.ZarrDrawStore.open(store, settings, (4, 10, 3), block=zarr_store.ChainBlock(0, 2, 0, 2))
    (tmp_path / "mine.zarr").mkdir()
    (tmp_path / "mine.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a ppl_ebm Zarr store"):
        ppl_ebm.sample(ebm, "ula", "jax", **small, draws_dir=tmp_path / "mine.zarr")


_READER = textwrap.dedent(
    """
    import sys
    import xarray as xr
    posterior = xr.open_zarr(sys.argv[1], group="posterior")
    assert "ppl_ebm" not in sys.modules
    z = posterior["z"]
    assert z.dims == ("chain", "draw", "z_dim"), z.dims
    print(posterior.attrs["sampler"], posterior.attrs["seed"], posterior.attrs["target_fingerprint"])
    print(float(z.sum()))
    """
)


def test_xarray_and_arviz_open_the_store_without_ppl_ebm(ebm, tmp_path):
    import arviz
    import xarray as xr

    store = tmp_path / "run.zarr"
    result = ppl_ebm.sample(ebm, "mala", "jax", num_chains=4, num_warmup=10, num_samples=20, seed=5,
                            progress_bar=False, draws_dir=store)
    script = tmp_path / "reader.py"
    script.write_text(_READER)
    # Run from tmp_path with no PYTHONPATH: the reader cannot import this checkout.
    reader = subprocess.run([sys.executable, str(script), str(store)], capture_output=True, text=True,
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert reader.returncode == 0, reader.stderr
    sampler, seed, fingerprint = reader.stdout.split("\n")[0].split()
    assert (sampler, int(seed)) == ("mala", 5) and len(fingerprint) == 16
    assert float(reader.stdout.split("\n")[1]) == pytest.approx(float(np.asarray(result.latents, np.float64).sum()))
    tree = xr.open_datatree(store, engine="zarr")
    posterior = arviz.convert_to_inference_data(tree["posterior"].to_dataset())
    np.testing.assert_array_equal(posterior.posterior["z"].values, np.asarray(result.latents))


def test_report_matches_arviz_and_writes_the_plots(ebm, tmp_path):
    import arviz

    from ppl_ebm.cli import main

    store = tmp_path / "run.zarr"
    result = ppl_ebm.sample(ebm, "mala", "jax", num_chains=8, num_warmup=30, num_samples=40, seed=2,
                            progress_bar=False, draws_dir=store)
    assert main(["report", str(store), "--output", str(tmp_path / "report")]) == 0
    names = {path.name for path in (tmp_path / "report").iterdir()}
    assert names == {"summary.csv", "nested_rhat.csv", "report.md", "rank.png", "trace.png", "autocorr.png",
                     "ess_evolution.png"}
    import pandas as pd

    table = pd.read_csv(tmp_path / "report" / "summary.csv", index_col=0)
    # ArviZ on float64 copies: on float32 its rank R-hat of chains with ties (MALA's rejections)
    # rounds differently (1.1148 against 1.1157 here); the fast engine computes in float64.
    latents = np.asarray(result.latents, dtype=np.float64)
    reference = arviz.summary(arviz.from_dict({"z": latents}), kind="diagnostics", round_to="none")
    for ours, theirs in (("ess_bulk", "ess_bulk"), ("ess_tail", "ess_tail"), ("r_hat", "r_hat"),
                         ("mcse_mean", "mcse_mean"), ("mcse_sd", "mcse_sd")):
        np.testing.assert_allclose(table[ours].to_numpy(), reference[theirs].to_numpy(), rtol=1e-9)
    from ppl_ebm.diagnostics.mixing import nested_rhat

    nested = pd.read_csv(tmp_path / "report" / "nested_rhat.csv", index_col=0)
    np.testing.assert_allclose(nested["K=4"].to_numpy(), nested_rhat(latents, 4))


@pytest.mark.parametrize("arguments, culprit", [
    (["--model", "25gaussians-nsgan", "--output", "run"], "--output"),
    (["--model", "25gaussians-nsgan", "--output", "run.zarr", "--option", "step_size"], "--option"),
    (["--model", "missing.py", "--output", "run.zarr"], "--model"),
])
def test_cli_sample_names_the_bad_argument(tmp_path, monkeypatch, capsys, arguments, culprit):
    from ppl_ebm.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["sample", *arguments])
    assert stop.value.code == 2 and culprit in capsys.readouterr().err


# A model's run (draws u, sites mapped to their support): the sites are written to the store
# chunk by chunk and returned as views of it, not held in memory (issue 18's known defect).

def _numpyro_model():
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    numpyro.sample("scale", dist.LogNormal(0.0, 1.0))
    numpyro.sample("x", dist.Normal(jnp.zeros((2, 3)), 1.0).to_event(2))


def _pyro_model():
    import pyro
    import pyro.distributions as dist
    import torch

    pyro.sample("scale", dist.LogNormal(0.0, 1.0))
    pyro.sample("x", dist.Normal(torch.zeros(2, 3), 1.0).to_event(2))


_MODELS = {"jax": _numpyro_model, "torch": _pyro_model}


@pytest.fixture(scope="module")
def in_memory_model_runs():
    """The models' in-memory runs (sites mapped in memory, as before streaming), one per backend."""
    return {backend: ppl_ebm.sample(model, "mala", backend, **RUN) for backend, model in _MODELS.items()}


def _assert_on_disk(view, store_name):
    """A site's draws as the store's view: a Zarr array read when indexed, or an npy memory map."""
    if store_name.endswith(".zarr"):
        import zarr

        assert isinstance(view, zarr_store._BlockView) and isinstance(view.array, zarr.Array), type(view)
    else:
        assert isinstance(view, np.memmap), type(view)


@pytest.mark.parametrize("store_name", ["run.zarr", "npy_store"])
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_streamed_model_sites_equal_the_in_memory_run_and_stay_in_the_store(tmp_path, monkeypatch, backend,
                                                                            store_name, in_memory_model_runs):
    model, memory = _MODELS[backend], in_memory_model_runs[backend]
    assert set(memory.posterior) == {"scale", "x"} and memory.posterior["x"].shape == (6, 60, 2, 3)
    reads = []
    store_class = zarr_store.ZarrDrawStore if store_name.endswith(".zarr") else __import__(
        "ppl_ebm.drivers.draw_store", fromlist=["DrawStore"]).DrawStore
    original_read = store_class.read

    def read(self, start, count):
        reads.append(count)
        return original_read(self, start, count)

    monkeypatch.setattr(store_class, "read", read)
    monkeypatch.setattr(store_class, "read_draws", property(lambda self: 25))  # 60 draws: 3 reads
    streamed = ppl_ebm.sample(model, "mala", backend, **RUN, draws_dir=tmp_path / store_name)
    assert reads == [25, 25, 10]  # the sites were mapped a chunk of draws at a time
    for name, value in memory.posterior.items():
        _assert_on_disk(streamed.posterior[name], store_name)
        assert streamed.posterior[name].shape == value.shape
        np.testing.assert_array_equal(np.asarray(streamed.posterior[name]), value)
    assert np.all(np.asarray(memory.posterior["scale"]) > 0)  # in the support, not the unconstrained draws
    np.testing.assert_array_equal(np.asarray(streamed.latents), memory.latents)
    if store_name.endswith(".zarr"):  # readers see the sites in the posterior group, ArviZ's dims
        import xarray as xr

        posterior = xr.open_zarr(tmp_path / store_name, group="posterior")
        assert posterior["x"].dims == ("chain", "draw", "x_dim_0", "x_dim_1")
        assert posterior["scale"].dims == ("chain", "draw")
        np.testing.assert_array_equal(posterior["x"].values, memory.posterior["x"])


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_interrupted_model_run_resumes_to_the_in_memory_sites(tmp_path, monkeypatch, backend, in_memory_model_runs):
    model, memory = _MODELS[backend], in_memory_model_runs[backend]
    original, calls = zarr_store.ZarrDrawStore.checkpoint, {"n": 0}

    def checkpoint(self, state, progress):
        original(self, state, progress)
        calls["n"] += 1
        if calls["n"] == 2:
            raise _Interrupted

    store = tmp_path / "run.zarr"
    with monkeypatch.context() as patch:
        patch.setattr(zarr_store.ZarrDrawStore, "checkpoint", checkpoint)
        with pytest.raises(_Interrupted):
            ppl_ebm.sample(model, "mala", backend, **RUN, draws_dir=store)
    import zarr

    assert np.isnan(zarr.open_group(store, mode="r")["posterior"]["x"][:]).all()  # not mapped yet
    resumed = ppl_ebm.sample(model, "mala", backend, **RUN, draws_dir=store)
    assert resumed.stats["resumed_at_iteration"] == 160
    for name, value in memory.posterior.items():
        _assert_on_disk(resumed.posterior[name], "run.zarr")
        np.testing.assert_array_equal(np.asarray(resumed.posterior[name]), value)
    # Sites spoiled on disk are mapped again from the draws by the next call (a finished run).
    zarr.open_group(store, mode="r+")["posterior"]["x"][:] = 0.0
    again = ppl_ebm.sample(model, "mala", backend, **RUN, draws_dir=store)
    assert again.stats["resumed_at_iteration"] == 180  # finished: nothing sampled, the sites mapped again
    np.testing.assert_array_equal(np.asarray(again.posterior["x"]), memory.posterior["x"])


def test_a_site_named_like_the_draws_is_mapped_in_memory_with_a_warning(tmp_path):
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    def model():
        numpyro.sample("u", dist.Normal(jnp.zeros(2), 1.0).to_event(1))

    small = dict(num_chains=3, num_warmup=0, num_samples=10, progress_bar=False)
    memory = ppl_ebm.sample(model, "ula", "jax", **small)
    with pytest.warns(RuntimeWarning, match="site 'u' would share the name 'u'"):
        streamed = ppl_ebm.sample(model, "ula", "jax", **small, draws_dir=tmp_path / "run.zarr")
    assert type(streamed.posterior["u"]) is np.ndarray
    np.testing.assert_array_equal(streamed.posterior["u"], memory.posterior["u"])
