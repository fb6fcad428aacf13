"""torchrun with 2 and 4 ranks on gloo: each rank samples its block of the chains into one Zarr store,
and the store holds the single process's draws for the same seed; a run killed mid-way is
resumed by the same torchrun command. Real processes, real collectives, no mocks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

import ppl_ebm
from ppl_ebm.drivers.draw_store import load_checkpoint
from problems import KILL_AT_CHECKPOINT

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
        # One write a line: ranks share torchrun's stdout, and print's pieces interleave when unbuffered.
        sys.stdout.write(f"{dist.get_rank()} {name} {result.stats['resumed_at_iteration']}\\n")
        sys.stdout.flush()
    dist.destroy_process_group()
    """
)


def _torchrun(tmp_path, cases: dict, kill: bool = False, ranks: int = 2) -> subprocess.CompletedProcess:
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks), str(script),
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


def test_four_ranks_draw_what_one_process_draws(ebm, tmp_path, one_torch_thread):
    # 16 chains on 4 ranks, 4 a rank as the 2-rank test's 8, per-chain arithmetic only: bit for bit.
    # (8 chains, 2 a rank, agree to float rounding only: the batched gradient of 2 rows rounds
    # differently from the same rows in a batch of 8, 4.8e-7 apart in ULA's draws; see the
    # one-chain block's test below.)
    cases = {name: (sampler, 16, options) for name, (sampler, _, options) in CASES.items() if name != "pooled"}
    launched = _torchrun(tmp_path, cases, ranks=4)
    assert launched.returncode == 0, launched.stderr[-3000:]
    for name, (sampler, chains, options) in cases.items():
        single = ppl_ebm.sample(ebm, sampler, "torch", num_chains=chains, **RUN, **options)
        stored = xr.open_zarr(tmp_path / f"{name}.zarr", group="posterior")["z"].values
        np.testing.assert_array_equal(stored, single.latents, err_msg=name)


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


def test_a_rank_holding_one_chain_of_per_chain_matrices_adapts_it_alone(ebm, tmp_path, one_torch_thread):
    """3 MALA chains (one mass matrix per chain) on 2 ranks: rank 1's block is one chain, so it holds
    one matrix, which used to be taken for the pooled one (its moments all-reduced alone; it failed
    when rank 0 exited). Per-chain arithmetic everywhere: rank 0's 2 chains are the single
    process's bit for bit; rank 1's one chain to float rounding only, amplified by MALA's accept
    steps: the model's gradient of a batch of one row rounds differently from a row of a batch of
    three (5.96e-08 at the first step, the same with ``mass_matrix="none"``)."""
    launched = _torchrun(tmp_path, {"three": ("mala", 3, {})})
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = ppl_ebm.sample(ebm, "mala", "torch", num_chains=3, **RUN)
    stored = xr.open_zarr(tmp_path / "three.zarr", group="posterior")["z"].values
    np.testing.assert_array_equal(stored[:2], single.latents[:2])
    np.testing.assert_allclose(stored[2], single.latents[2], atol=0.05)
    mass = single.stats["inverse_mass_matrix"]  # (3, 3): one diagonal per chain
    np.testing.assert_array_equal(np.load(tmp_path / "three.mass0.npy"), mass[:2])
    np.testing.assert_allclose(np.load(tmp_path / "three.mass1.npy"), mass[2], rtol=1e-2)  # reported as (3,)


def test_forty_chains_on_two_ranks_pool_one_mass_matrix_as_one_process(ebm, tmp_path, one_torch_thread):
    """40 chains, 20 a rank (fewer than the 32 that pool): the run pools one matrix on every rank,
    equal to one process's to float rounding (the moments are summed rank by rank)."""
    launched = _torchrun(tmp_path, {"forty": ("mala", 40, {})})
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = ppl_ebm.sample(ebm, "mala", "torch", num_chains=40, **RUN)
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"forty.mass{rank}.npy"), single.stats["inverse_mass_matrix"],
                                   rtol=1e-5)


_KERNEL_RANK = textwrap.dedent(
    """
    import sys
    import numpy as np, torch, torch.distributed as dist
    from ppl_ebm.drivers.zarr_store import chain_blocks
    sys.path.insert(0, sys.argv[2])
    from test_distributed_torch import _kernel_mass

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    chains, rank = 40, dist.get_rank()
    start, stop = chain_blocks(chains, dist.get_world_size())[rank]
    np.save(f"{sys.argv[1]}/mass{rank}.npy", _kernel_mass(chains, start, stop))
    try:  # not told the run's chain count, a rank cannot tell whether its 20 chains pool with the others
        _kernel_mass(None, start, stop)
    except ValueError as error:
        sys.stdout.write(f"{rank} refused: {error}\\n")  # one write: the ranks share one stdout
        sys.stdout.flush()
    dist.destroy_process_group()
    """
)


def _kernel_mass(chains: int, start: int, stop: int):
    """MALA's adapted diagonal inverse mass matrix from the torch kernel alone (no ``sample()``),
    started on chains ``start:stop`` of ``chains`` (a torchrun rank's block: the run's generator,
    its rows of every draw; the sampler told the run's chain count, unless ``chains`` is None)."""
    import torch

    from ppl_ebm.drivers import run_torch
    from ppl_ebm.kernels.random_torch import ChainBlockGenerator
    from ppl_ebm.kernels.registry import get_sampler
    from ppl_ebm.kernels.samplers_torch import langevin_params

    spec = get_sampler("mala")
    options = spec.validate({}, "torch")
    sampler, params = spec.build("torch", options)._replace(num_chains=chains), langevin_params(options, 40)
    problem = run_torch.TorchProblem(lambda z: 0.5 * (z * z / torch.tensor([1.0, 4.0, 0.25])).sum(-1))
    total = 40 if chains is None else chains
    position = torch.randn(total, 3, generator=torch.Generator().manual_seed(0))[start:stop]
    rng = torch.Generator().manual_seed(2)
    if (start, stop) != (0, total):
        rng = ChainBlockGenerator(rng, start, stop, total)
    chain = run_torch.init_chain(sampler, params, problem, position, rng)
    _, _, stats = run_torch.run_langevin(sampler, params, problem, chain, 1, progress_bar=False)
    return stats.inverse_mass_matrix


def test_ranks_that_start_the_kernel_on_their_own_blocks_pool_as_one_process(tmp_path, one_torch_thread):
    """The same 40 chains with each rank starting the torch kernel from its own block of 20 (the
    kernel's use under torchrun without ``sample()``): told the run's chain count
    (``num_chains``), both ranks pool one matrix as one process does (they used to keep one per
    chain, deciding from their 20); not told, both refuse to guess. Warmup 40: one adaptation
    window (steps 7-36)."""
    script = tmp_path / "rank.py"
    script.write_text(_KERNEL_RANK)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
               str(tmp_path), os.path.dirname(__file__)]
    launched = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert "0 refused: Under torchrun" in launched.stdout and "1 refused: Under torchrun" in launched.stdout, \
        launched.stdout
    single = _kernel_mass(40, 0, 40)
    assert single.shape == (3,)  # one pooled diagonal
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"mass{rank}.npy"), single, rtol=1e-5)


# One run per launch; rank 1 SIGKILLs itself after its KILL_AFTER-th checkpoint or before writing its
# KILL_BEFORE-th (tests/problems.py: KILL_AT_CHECKPOINT, shared with tests/test_distributed_jax.py).
_KILLED_RANK = textwrap.dedent(
    """
    import json, os, signal, sys
    import torch, torch.distributed as dist
    import ppl_ebm
    from ppl_ebm.drivers import zarr_store

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    store, chains, warmup, samples, options = sys.argv[1], *map(int, sys.argv[2:5]), json.loads(sys.argv[5])
    """
) + KILL_AT_CHECKPOINT + textwrap.dedent(
    """
    ebm = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0).ebm
    result = ppl_ebm.sample(ebm, "mala", "torch", num_chains=chains, num_warmup=warmup, num_samples=samples, seed=2,
                            progress_bar=False, draws_dir=store, **options)
    print(dist.get_rank(), "resumed at", result.stats["resumed_at_iteration"], flush=True)
    dist.destroy_process_group()
    """
)


class _KilledRanks:
    """Two ranks of one run into ``tmp_path/run.zarr``, started with the environment torchrun gives
    them (not torchrun itself: its agent stops every rank once one fails, which would hide whether
    each rank refuses on its own); the same command runs again after rank 1 is killed."""

    def __init__(self, tmp_path, chains: int, warmup: int, samples: int, options: dict | None = None):
        (tmp_path / "rank.py").write_text(_KILLED_RANK)
        self.folder, self.store = tmp_path, tmp_path / "run.zarr"
        self.arguments = [str(self.store), str(chains), str(warmup), str(samples), json.dumps(options or {})]

    def launch(self, session: str, kill: dict[str, str]) -> list[subprocess.Popen]:
        """Both ranks; ``kill`` (KILL_AFTER / KILL_BEFORE) is rank 1's."""
        with socket.socket() as probe:
            probe.bind(("localhost", 0))
            port = probe.getsockname()[1]
        processes = []
        for rank in range(2):
            env = {**os.environ, "MASTER_ADDR": "localhost", "MASTER_PORT": str(port), "RANK": str(rank),
                   "LOCAL_RANK": str(rank), "WORLD_SIZE": "2", "PYTHONUNBUFFERED": "1", **(kill if rank == 1 else {})}
            with (self.folder / f"{session}{rank}.out").open("w") as out:
                processes.append(subprocess.Popen([sys.executable, str(self.folder / "rank.py"), *self.arguments],
                                                  stdout=out, stderr=subprocess.STDOUT, env=env))
        return processes

    def steps_done(self, rank: int) -> int:
        saved = load_checkpoint(self.store / "_checkpoints" / f"process{rank}.npz")
        return 0 if saved is None else int(saved[1]["iteration"])

    def kill_rank_1(self, kill: dict[str, str]) -> None:
        """Rank 1 SIGKILLs itself; rank 0 runs on until it exits (it fails in its next collective,
        the peer gone, or finishes its chains when none is left)."""
        self.wait(self.launch("killed", kill), timeout=120)

    def rerun(self, timeout: float = 60) -> tuple[list[int | None], list[str]]:
        """The same command again: both exit codes (None: still running at ``timeout``, then
        killed) and outputs."""
        codes = self.wait(self.launch("resumed", {}), timeout)
        return codes, [(self.folder / f"resumed{rank}.out").read_text() for rank in range(2)]

    @staticmethod
    def wait(processes: list[subprocess.Popen], timeout: float) -> list[int | None]:
        deadline, codes = time.monotonic() + timeout, []
        try:
            for process in processes:
                try:
                    codes.append(process.wait(timeout=max(0.1, deadline - time.monotonic())))
                except subprocess.TimeoutExpired:  # blocked in a collective: a hang
                    codes.append(None)
        finally:
            for process in processes:
                process.kill()
                process.wait()
        return codes


def test_a_resume_with_ranks_at_different_warmup_steps_is_refused_by_every_rank(tmp_path, one_torch_thread):
    """64 chains pool one mass matrix, its moments all-reduced at every step of an adaptation
    window (steps 76-350 of 400). Rank 1 dies after its second warmup chunk, before that chunk's
    checkpoint; rank 0 checkpoints step 200 and fails in its next all-reduce. Resumed as they
    were, rank 1's sums would pair with sums of other steps of rank 0 (its pooled matrix mixing
    windows), then rank 1 would wait for sums rank 0 never sends. Both ranks refuse instead."""
    run = _KilledRanks(tmp_path, chains=64, warmup=400, samples=20)
    run.kill_rank_1({"KILL_BEFORE": "2"})
    assert (run.steps_done(0), run.steps_done(1)) == (200, 100)
    codes, outputs = run.rerun()
    for code, output in zip(codes, outputs):
        assert code not in (0, None), output[-3000:]
        assert "different steps [200, 100] (rank order) and warmup (400 steps) is unfinished on some: its mass " \
               "matrix pools" in output, output[-3000:]


def test_ranks_resumed_at_different_sampling_steps_finish_the_pooled_run(ebm, tmp_path, one_torch_thread):
    """Past warmup nothing is all-reduced (the pooled mass matrix is fixed, a shared step size no
    longer adapts): rank 1, killed before its chunk of draws' checkpoint, resumes at the end of
    warmup and rank 0 finds its chains done. (The shared step's mean acceptance used to be
    all-reduced in sampling too: rank 1 then waited for sums rank 0, done, never sent, and failed
    when rank 0 exited.)"""
    options = {"per_chain_step_size": False}
    run = _KilledRanks(tmp_path, chains=64, warmup=100, samples=100, options=options)
    run.kill_rank_1({"KILL_BEFORE": "2"})
    assert (run.steps_done(0), run.steps_done(1)) == (200, 100)
    codes, outputs = run.rerun()
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "0 resumed at 200" in outputs[0] and "1 resumed at 100" in outputs[1], outputs
    single = ppl_ebm.sample(ebm, "mala", "torch", num_chains=64, num_warmup=100, num_samples=100, seed=2,
                            progress_bar=False, **options)
    # The pooled sums round rank by rank (see the first test): equal to rounding, amplified by accepts.
    np.testing.assert_allclose(xr.open_zarr(run.store, group="posterior")["z"].values, single.latents, atol=0.05)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("sampler, chains, options, expected", [
    ("mala", 64, {}, ("mass matrix",)),
    ("mala", 8, {}, ()),  # one matrix per chain
    ("mala", 8, {"per_chain_step_size": False}, ("shared step size",)),
    ("mala", 8, {"per_chain_step_size": False, "adapt_step_size": False}, ()),  # a fixed step: nothing to share
    ("ula", 64, {"mass_matrix": "diag"}, ("mass matrix",)),  # no acceptance, so no shared step
    ("isir", 64, {}, ()),
    ("ex2mcmc", 8, {"per_chain_step_size": False}, ("shared step size",)),
])
def test_what_a_processs_warmup_reduces_over_all_processes(backend, sampler, chains, options, expected):
    """The collectives both backends' resume checks look for, read from the sampler and its state:
    they are the ones :mod:`ppl_ebm.kernels.cross_chain_torch` all-reduces under torchrun and the
    means over the chains axis that JAX's warmup takes across processes."""
    from ppl_ebm.drivers.distributed import warmup_collectives
    from ppl_ebm.kernels.registry import get_sampler

    spec = get_sampler(sampler)
    resolved = spec.validate(options, backend)
    kernel = spec.build(backend, resolved)
    if backend == "torch":
        import torch

        from ppl_ebm.drivers import run_torch
        from ppl_ebm.kernels.samplers_torch import langevin_params

        problem = run_torch.TorchProblem(lambda z: 0.5 * (z * z).sum(-1))
        chain = run_torch.init_chain(kernel, langevin_params(resolved, 100), problem, torch.zeros(chains, 2),
                                     torch.Generator().manual_seed(0))
    else:
        import jax
        import jax.numpy as jnp

        from ppl_ebm.drivers import run_jax
        from ppl_ebm.kernels.samplers_jax import langevin_params

        problem = run_jax.JaxProblem(None, lambda weights: lambda z: 0.5 * (z * z).sum(-1))
        chain = run_jax.init_chain(kernel, langevin_params(resolved, 100), problem, jnp.zeros((chains, 2)),
                                   jax.random.key(0))
    assert warmup_collectives(kernel, chain.state.mass, chains) == expected
