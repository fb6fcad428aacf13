"""Two JAX processes (``jax.distributed``, CPU collectives through gloo) started by the README's
``ppl-ebm sample`` command write one Zarr store holding the single process's draws, bit for bit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import numpy as np
import xarray as xr

import ppl_ebm

MODEL = """
import jax.numpy as jnp, numpyro, numpyro.distributions as dist

def model():
    numpyro.sample("x", dist.Normal(0.0, jnp.array([1.0, 2.0, 3.0])))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def test_two_jax_processes_draw_what_one_process_draws(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    store = tmp_path / "run.zarr"
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "ppl_ebm.cli", "sample", "--model", str(tmp_path / "model.py"), "--backend", "jax",
               "--sampler", "mala", "--chains", "8", "--warmup", "20", "--samples", "20", "--output", str(store),
               "--coordinator", f"localhost:{port}", "--num-processes", "2", "--no-progress"]
    processes = [subprocess.Popen(command + ["--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env) for i in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    assert "process 1 of 2: chains 4:8" in outputs[1][0]
    namespace: dict = {}
    exec(MODEL, namespace)
    single = ppl_ebm.sample(namespace["model"], "mala", "jax", num_chains=8, num_warmup=20, num_samples=20, seed=0,
                            progress_bar=False)
    posterior = xr.open_zarr(store, group="posterior")
    np.testing.assert_array_equal(posterior["u"].values, single.latents)
    # Each process wrote its block of the model's site beside the draws, after sampling.
    assert posterior["x"].dims == ("chain", "draw", "x_dim_0")
    np.testing.assert_array_equal(posterior["x"].values, single.posterior["x"])
