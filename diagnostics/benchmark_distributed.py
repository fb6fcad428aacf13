"""Chains over processes: throughput of 2 processes against 1, and peak memory per process (issue 18).

What it measures
----------------
``ppl-ebm sample`` on a d-dimensional target written as a Python file, ULA with a fixed step,
``--chains`` chains x ``--samples`` draws into a Zarr store. ``--target latent`` (the default)
is a latent EBM, the DDLS protocol's kind of target: the closed-form linear-Gaussian problem with
a d-dimensional latent (``ppl_ebm.linear_gaussian_problem``); its draws are its sites, so a
streamed run holds no copy of them. ``--target model`` is a d-dimensional standard normal
written as a NumPyro (``jax``) or Pyro (``torch``) model: ``sample()`` then maps the draws to
each site's support after the run, a chunk of draws at a time, into the same store (a second
array the size of the draws on disk, not in memory).
The processes are started the way the README says:

* ``1 process``: one ``ppl-ebm sample``;
* ``2 processes``: JAX, two ``ppl-ebm sample --coordinator ... --process-id i`` on this machine;
  torch, ``torchrun --standalone --nproc-per-node 2`` (gloo).

Each row prints the wall seconds from start to the last process's exit (start-up, compile and
writing included: what a user waits for), chain-steps per second, the ratio to the one-process
row, the peak resident memory of the largest process (``ru_maxrss`` of the reaped process and its
reaped children, so torchrun's row is the largest rank or torchrun itself), and the store's size.
On a 2-core machine two processes share the same two cores, so a ratio near 1 is the honest
expectation; the figure is what spreading costs or gains, not a speed-up.

The issue's memory goal: 10,000 chains x 1000 draws x 128 dims (5.1 GB of float32 draws) written
from 2 processes within the streaming bound (< 4 GB peak per process): ``--chains 10000
--samples 1000 --dim 128 --backends jax --processes 2`` (and ``--target model`` for a model's run).

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/benchmark_distributed.py                       # 2000 chains x 500 draws x 128, both backends
    python diagnostics/benchmark_distributed.py --chains 10000 --samples 1000 --backends jax --processes 2
    python diagnostics/benchmark_distributed.py --quick               # seconds (smoke sizes)

Writes ``--output`` (default ``runs/benchmark_distributed``): ``distributed.json``; the stores are
deleted after each row unless ``--keep-stores``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from ppl_ebm.validation import check_output_dir

_LATENT = ("from ppl_ebm import linear_gaussian_problem\n"
           "target = linear_gaussian_problem(latent_dim={dim}, data_dim=4, seed=0).ebm\n")
_MODELS = {
    "jax": "import numpyro, numpyro.distributions as dist, jax.numpy as jnp\n"
           "def model():\n"
           "    numpyro.sample('x', dist.Normal(jnp.zeros({dim}), 1.0).to_event(1))\n",
    "torch": "import pyro, pyro.distributions as dist, torch\n"
             "def model():\n"
             "    pyro.sample('x', dist.Normal(torch.zeros({dim}), 1.0).to_event(1))\n",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _sample_args(model_file: Path, backend: str, args, store: Path) -> list[str]:
    return ["--model", str(model_file), "--backend", backend, "--sampler", "ula", "--chains", str(args.chains),
            "--warmup", "0", "--samples", str(args.samples), "--option", "step_size=0.1", "--seed", "0",
            "--output", str(store), "--no-progress"]


def _commands(backend: str, processes: int, sample_args: list[str]) -> list[list[str]]:
    ppl_ebm = [sys.executable, "-m", "ppl_ebm.cli", "sample"]
    if processes == 1:
        return [ppl_ebm + sample_args]
    if backend == "torch":
        return [[sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                 "-m", "ppl_ebm.cli", "sample"] + sample_args]
    port = _free_port()
    return [ppl_ebm + sample_args + ["--coordinator", f"127.0.0.1:{port}", "--num-processes", str(processes),
                                     "--process-id", str(index)] for index in range(processes)]


def _run(commands: list[list[str]], log: Path) -> tuple[float, int]:
    """Start every command, reap each with its resource use; (wall seconds, largest peak RSS in bytes)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with log.open("w") as sink:
        children = [subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env) for command in commands]
        peak, failed = 0, []
        for child in children:
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
            peak = max(peak, usage.ru_maxrss * 1024)  # Linux reports KiB
            if child.returncode != 0:
                failed.append(child.returncode)
    if failed:
        raise RuntimeError(f"a process exited with {failed}; see {log}")
    return time.perf_counter() - start, peak


def _size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chains", type=int, default=2000)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--target", choices=["latent", "model"], default="latent")
    parser.add_argument("--backends", nargs="+", default=["jax", "torch"], choices=["jax", "torch"])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="smoke sizes: 64 chains x 20 draws x 4 dims, JAX")
    parser.add_argument("--keep-stores", action="store_true")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark_distributed"))
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.samples, args.dim, args.backends = 64, 20, 4, ["jax"]
    for name in ("chains", "samples", "dim"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if min(args.processes) < 1:
        parser.error(f"--processes must all be >= 1, got {args.processes}")
    output = check_output_dir(args.output, "--output")
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for backend in args.backends:
        model_file = output / f"{args.target}_{backend}.py"
        model_file.write_text((_LATENT if args.target == "latent" else _MODELS[backend]).format(dim=args.dim))
        for processes in args.processes:
            store = output / f"{backend}_{processes}.zarr"
            shutil.rmtree(store, ignore_errors=True)
            commands = _commands(backend, processes, _sample_args(model_file, backend, args, store))
            seconds, peak = _run(commands, output / f"{backend}_{processes}.log")
            rows.append({"target": args.target, "backend": backend, "processes": processes, "chains": args.chains,
                         "samples": args.samples, "dim": args.dim, "seconds": seconds,
                         "chain_steps_per_second": args.chains * args.samples / seconds,
                         "peak_rss_bytes": peak, "store_bytes": _size(store)})
            if not args.keep_stores:
                shutil.rmtree(store)
    print(f"{'backend':7s} {'proc':>4s} {'seconds':>9s} {'chain-steps/s':>14s} {'vs 1 proc':>9s} "
          f"{'peak RSS GiB':>12s} {'store GiB':>9s}")
    for row in rows:
        base = next((other for other in rows if other["backend"] == row["backend"] and other["processes"] == 1), None)
        ratio = row["chain_steps_per_second"] / base["chain_steps_per_second"] if base else float("nan")
        row["throughput_vs_one_process"] = ratio
        print(f"{row['backend']:7s} {row['processes']:4d} {row['seconds']:9.1f} {row['chain_steps_per_second']:14.0f} "
              f"{ratio:9.2f} {row['peak_rss_bytes'] / 2**30:12.2f} {row['store_bytes'] / 2**30:9.2f}")
    result = {"rows": rows, "argv": sys.argv[1:] if argv is None else argv}
    (output / "distributed.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {output / 'distributed.json'}")
    return result


if __name__ == "__main__":
    main()
