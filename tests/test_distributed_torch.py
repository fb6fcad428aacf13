"""torchrun with 2 ranks on gloo: each rank samples its block of the chains into one Zarr store,
and the store holds the single process's draws for the same seed; a run killed mid-way is
resumed by the same torchrun command. Real processes, real collectives, no mocks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import xarray as xr

import ppl_ebm

RUN = dict(num_warmup=100, num_samples=60, seed=2, progress_bar=False)
# name: (sampler, chains, options); "pooled": 64 MALA chains pool one mass matrix (all-reduced).
CASES = {"ula": ("ula", 8, {"step_size": 0.05}), "mala": ("mala", 8, {}), "ex2mcmc": ("ex2mcmc", 8, {}),
         "pooled": ("mala", 64, {})}

_RANK = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np, torch, torch.distributed as dist
    import ppl_ebm
    from ppl_ebm.drivers import zarr_store

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    folder, cases, kill = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3] == "kill"
    if kill and dist.get_rank() == 1:  # rank 1 dies after 2 checkpoints: warmup, one chunk of draws
        original, calls = zarr_store.ZarrDrawStore.checkpoint, {"n": 0}

        def checkpoint(self, state, progress):
            original(self, state, progress)
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGKILL)

        zarr_store.ZarrDrawStore.checkpoint = checkpoint
    ebm = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0).ebm
    for name, (sampler, chains, options) in cases.items():
        result = ppl_ebm.sample(ebm, sampler, "torch", num_chains=chains, num_warmup=100, num_samples=60, seed=2,
                                progress_bar=False, draws_dir=f"{folder}/{name}.zarr", **options)
        if "inverse_mass_matrix" in result.stats:
            np.save(f"{folder}/{name}.mass{dist.get_rank()}.npy", result.stats["inverse_mass_matrix"])
        print(dist.get_rank(), name, result.stats["resumed_at_iteration"], flush=True)
    dist.destroy_process_group()
    """
)


def _torchrun(tmp_path, cases: dict, kill: bool = False) -> subprocess.CompletedProcess:
    import json

    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
               str(tmp_path), json.dumps(cases), "kill" if kill else "run"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ebm():
    return ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0).ebm


def test_two_ranks_draw_what_one_process_draws(ebm, tmp_path, one_torch_thread):
    launched = _torchrun(tmp_path, CASES)
    assert launched.returncode == 0, launched.stderr[-3000:]
    for name, (sampler, chains, options) in CASES.items():
        single = ppl_ebm.sample(ebm, sampler, "torch", num_chains=chains, **RUN, **options)
        stored = xr.open_zarr(tmp_path / f"{name}.zarr", group="posterior")["z"].values
        if name != "pooled":  # per-chain arithmetic only: bit for bit
            np.testing.assert_array_equal(stored, single.latents, err_msg=name)
            continue
        # The pooled moments are summed rank by rank (all_reduce), the single process's in one
        # sum: the estimates agree to float32 rounding, which MALA's accept steps may amplify.
        for rank in (0, 1):
            mass = np.load(tmp_path / f"pooled.mass{rank}.npy")
            np.testing.assert_allclose(mass, single.stats["inverse_mass_matrix"], rtol=1e-5)
        np.testing.assert_allclose(stored, single.latents, atol=0.05)


def test_a_killed_two_rank_run_resumes_to_the_same_draws(ebm, tmp_path, one_torch_thread):
    cases = {"mala": CASES["mala"]}
    killed = _torchrun(tmp_path, cases, kill=True)
    assert killed.returncode != 0
    resumed = _torchrun(tmp_path, cases)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # Rank 1 resumes after its warmup and one chunk of draws; rank 0 from wherever torchrun stopped it.
    assert "1 mala 160" in resumed.stdout, resumed.stdout
    single = ppl_ebm.sample(ebm, "mala", "torch", num_chains=8, **RUN)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "mala.zarr", group="posterior")["z"].values, single.latents)
