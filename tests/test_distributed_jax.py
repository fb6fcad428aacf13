"""Two and four JAX processes (``jax.distributed``, CPU collectives through gloo) started by the
README's ``ppl-ebm sample`` command write one Zarr store holding the single process's draws, bit for bit;
a run one of whose processes is killed mid-way is resumed by the same command to the same draws."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

import ppl_ebm
from ppl_ebm.drivers.draw_store import load_checkpoint
from problems import KILL_AT_CHECKPOINT

MODEL = """
import jax.numpy as jnp, numpyro, numpyro.distributions as dist

def model():
    numpyro.sample("x", dist.Normal(0.0, jnp.array([1.0, 2.0, 3.0])))
"""


# The README's command, run through a script that SIGKILLs its process after its KILL_AFTER-th
# checkpoint (or before writing its KILL_BEFORE-th) when that variable is set: a process dying at a
# known chunk, as in the torch test.
_PROCESS = """
import os, signal, sys
from ppl_ebm import cli
from ppl_ebm.drivers import zarr_store
""" + KILL_AT_CHECKPOINT + """
raise SystemExit(cli.main(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def single() -> ppl_ebm.SampleResult:
    """One uninterrupted process's run of the command's settings: what the store must hold."""
    namespace: dict = {}
    exec(MODEL, namespace)
    return ppl_ebm.sample(namespace["model"], "mala", "jax", num_chains=8, num_warmup=20, num_samples=200, seed=0,
                          progress_bar=False)


class _ProcessRun:
    """README's multi-process command for one store under ``tmp_path``, launched through the
    ``_PROCESS`` script (the command itself unless a kill is asked): run to the end, or a process
    dies at a known checkpoint, the other is stopped, and the same command runs again."""

    def __init__(self, tmp_path, chains: int, warmup: int, samples: int, options: tuple[str, ...] = (),
                 processes: int = 2):
        tmp_path.mkdir(parents=True, exist_ok=True)
        (tmp_path / "model.py").write_text(MODEL)
        (tmp_path / "process.py").write_text(_PROCESS)
        self.folder, self.store, self.processes = tmp_path, tmp_path / "run.zarr", processes
        self.arguments = ["sample", "--model", str(tmp_path / "model.py"), "--backend", "jax", "--sampler", "mala",
                          "--chains", str(chains), "--warmup", str(warmup), "--samples", str(samples),
                          "--output", str(self.store), "--num-processes", str(processes), "--no-progress",
                          *(argument for option in options for argument in ("--option", option))]
        # The resumed processes reuse the killed ones' compiled programs through the session's JAX
        # compilation cache (conftest.py).
        self.env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}

    def launch(self, session: str, kill: dict[str, str]) -> list[subprocess.Popen]:
        """Every process; ``kill`` (KILL_AFTER / KILL_BEFORE) is process 1's."""
        port, processes = _free_port(), []
        for i in range(self.processes):
            with (self.folder / f"{session}{i}.out").open("w") as out:
                processes.append(subprocess.Popen(
                    [sys.executable, str(self.folder / "process.py"), *self.arguments,
                     "--coordinator", f"localhost:{port}", "--process-id", str(i)],
                    stdout=out, stderr=subprocess.STDOUT, env={**self.env, **(kill if i == 1 else {})}))
        return processes

    def steps_done(self, index: int) -> int:
        saved = load_checkpoint(self.store / "_checkpoints" / f"process{index}.npz")
        return 0 if saved is None else int(saved[1]["iteration"])

    def kill_process_1(self, kill: dict[str, str], process_0_reaches: int) -> None:
        """Process 1 SIGKILLs itself; process 0 runs until its checkpoint reaches
        ``process_0_reaches`` (then it would wait for process 1 forever) and is killed, as a
        cluster kills the other tasks of a failed job."""
        killed = self.launch("killed", kill)
        try:
            assert killed[1].wait(timeout=120) == -signal.SIGKILL
            deadline = time.monotonic() + 60
            while self.steps_done(0) < process_0_reaches and killed[0].poll() is None:
                assert time.monotonic() < deadline, (self.folder / "killed0.out").read_text()[-3000:]
                time.sleep(0.2)
        finally:
            for process in killed:
                process.kill()
                process.wait()

    def finish(self, session: str, timeout: float = 120) -> tuple[list[int], list[str]]:
        """Both processes, no kill, to the end: exit codes and outputs (stdout and stderr)."""
        processes = self.launch(session, {})
        try:
            codes = [process.wait(timeout=timeout) for process in processes]
        finally:
            for process in processes:
                process.kill()
                process.wait()
        return codes, [(self.folder / f"{session}{i}.out").read_text() for i in range(self.processes)]

    def rerun(self) -> tuple[list[int], list[str]]:
        """The same command again after a kill: both exit codes and outputs."""
        return self.finish("resumed")


@pytest.mark.parametrize("processes, block", [(2, "process 1 of 2: chains 4:8"), (4, "process 3 of 4: chains 6:8")])
def test_two_and_four_jax_processes_draw_what_one_process_draws(tmp_path, single, processes, block):
    run = _ProcessRun(tmp_path, chains=8, warmup=20, samples=200, processes=processes)
    codes, outputs = run.finish("run", timeout=300)
    assert codes == [0] * processes, "".join(output[-3000:] for output in outputs)
    assert block in outputs[-1]
    posterior = xr.open_zarr(run.store, group="posterior")
    np.testing.assert_array_equal(posterior["u"].values, single.latents)
    # Each process wrote its block of the model's site beside the draws, after sampling.
    assert posterior["x"].dims == ("chain", "draw", "x_dim_0")
    np.testing.assert_array_equal(posterior["x"].values, single.posterior["x"])


def test_a_killed_two_process_jax_run_resumes_to_the_same_draws(tmp_path, single):
    # Checkpoints at steps 20 (warmup), 120 and 220 (two chunks of 100 draws). Process 1 dies after
    # its warmup and one chunk of draws; process 0 samples on (no collective in MALA's per-chain
    # loop) to its last checkpoint.
    run = _ProcessRun(tmp_path, chains=8, warmup=20, samples=200)
    run.kill_process_1({"KILL_AFTER": "2"}, process_0_reaches=220)
    assert (run.steps_done(0), run.steps_done(1)) == (220, 120)
    # Process 1's first chunk of draws is stored, its second never was (NaN).
    stored = xr.open_zarr(run.store, group="posterior")["u"].values
    np.testing.assert_array_equal(stored[4:, :100], single.latents[4:, :100])
    assert np.isnan(stored[4:, 100:]).all()

    # The same command again: process 1 resumes after its chunk; process 0 finds its chains done.
    codes, outputs = run.rerun()
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert "process 1 of 2: chains 4:8" in outputs[1] and "(resumed at step 120," in outputs[1], outputs[1][-3000:]
    assert "(resumed at step 220," in outputs[0], outputs[0][-3000:]
    posterior = xr.open_zarr(run.store, group="posterior")
    np.testing.assert_array_equal(posterior["u"].values, single.latents)
    np.testing.assert_array_equal(posterior["x"].values, single.posterior["x"])


@pytest.mark.parametrize("chains, options, pooled", [
    (32, (), "mass matrix"),  # >= 32 chains: one mass matrix over all processes' chains
    (8, ("per_chain_step_size=false",), "shared step size"),  # one step from all chains' mean acceptance
])
def test_a_resume_with_processes_at_different_warmup_steps_is_refused_by_every_process(
        tmp_path, chains, options, pooled):
    """Warmup that reduces over all processes' chains (a pooled mass matrix; a shared step size) is
    a collective: a process that died after a warmup chunk but before its checkpoint resumes a
    chunk behind the other, and would wait for it forever. Both processes refuse the resume
    instead, with the steps named, and exit. (With fewer chains and per-chain steps each keeps its
    own adaptation, and such a resume is valid: the test above resumes processes at different
    sampling steps.) Before the shared step was checked, process 0 of such a resume finished with
    exit code 0 on sums paired with other steps' and process 1 hung."""
    # Warmup checkpoints at steps 100, 200 and 250; process 1 dies after its second warmup chunk,
    # before writing that chunk's checkpoint.
    run = _ProcessRun(tmp_path, chains=chains, warmup=250, samples=20, options=options)
    run.kill_process_1({"KILL_BEFORE": "2"}, process_0_reaches=200)
    behind, ahead = run.steps_done(1), run.steps_done(0)
    assert behind == 100 and ahead >= 200
    codes, outputs = run.rerun()
    for code, output in zip(codes, outputs):
        assert code != 0 and f"different steps [{ahead}, {behind}]" in output, output[-3000:]
        assert f"warmup (250 steps) is unfinished on some: its {pooled} pools" in output


def test_a_shared_step_run_resumed_at_different_sampling_steps_draws_what_it_would_have(tmp_path):
    """A shared step size's mean acceptance is a collective in warmup only: a process whose peer
    died samples on alone, and processes resumed at different sampling steps finish with the draws
    of the uninterrupted run. (Before, the mean was taken at every step: process 0 waited for the
    dead process at step 120.) Compared with the uninterrupted *two-process* run: the mean over
    both processes' chains rounds differently from one process's (the steps ~5e-7 apart,
    relative), and the chains' accept decisions amplify that."""
    options = ("per_chain_step_size=false",)
    whole = _ProcessRun(tmp_path / "whole", chains=8, warmup=20, samples=200, options=options)
    codes, outputs = whole.finish("run", timeout=300)
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    run = _ProcessRun(tmp_path / "killed", chains=8, warmup=20, samples=200, options=options)
    run.kill_process_1({"KILL_AFTER": "2"}, process_0_reaches=220)
    assert (run.steps_done(0), run.steps_done(1)) == (220, 120)
    codes, outputs = run.rerun()
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    np.testing.assert_array_equal(xr.open_zarr(run.store, group="posterior")["u"].values,
                                  xr.open_zarr(whole.store, group="posterior")["u"].values)
