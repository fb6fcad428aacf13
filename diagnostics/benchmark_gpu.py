"""DDLS's CIFAR-10 protocol at SN-GAN size, on a GPU: 50,000 chains x 1000 Langevin steps.

The protocol (Che et al. 2020, Sec. 5.2 and App. B): latent codes from the prior, Langevin
dynamics with initial step 0.01 and noise std 0.1 for 1000 iterations, the step decayed x0.1
every 200 iterations with the noise annealed alongside, and 50,000 final images scored by
IS/FID. This runs it through the front door, ``ppl_ebm.sample(..., device="cuda")``, on the
SN-GAN "standard CNN" (``benchmark_scaling.build_conv_ebm``: generator 128 -> 32x32x3, widths
512-256-128-64; spectrally normalised critic, widths 64-512) with seeded random weights. No
CIFAR-10 checkpoint or data ships (offline, and tens of MB), so this measures what the
protocol costs, not its IS/FID.

What it measures, per backend x sampler, in one run
---------------------------------------------------
* the protocol's time: ``--chains`` chains in batches of ``--chain-batch`` (the chains are
  independent, MALA's steps adapted per chain, so a batch at a time changes nothing but the
  random streams: batch ``b`` uses seed ``seed + b`` and its slice of one set of prior draws),
  each ``--steps`` steps, keeping each chain's final state only (``thinning = steps``: the
  protocol scores the final images). ``sampling_seconds`` (the driver's, JAX compile apart)
  and the wall time of every ``sample`` call are summed over batches; a batch size whose first
  call runs out of GPU memory is halved before anything is timed.
* chain-steps/s, the FLOPs of one chain-step (potential + gradient, XLA's cost analysis of
  the compiled step) and the achieved TFLOP/s, against the same run's matmul peak of the
  fastest library at the same ``--precision``, and the peak GPU memory of each backend.
* ULA as DDLS runs it; MALA with its 0.574 acceptance target adapted over the first 20% of the
  steps (per chain), the rest kept as its final state.

``--precision tf32`` (default) lets both libraries use TF32 tensor cores for fp32 matmuls and
convolutions (torch: ``allow_tf32``; JAX: ``jax_default_matmul_precision="tensorfloat32"``), as
GPU GAN code runs; ``fp32`` forbids them. The energies MALA's accept step compares differ by
~1e-3 relative under TF32; ULA has no accept step.

How to run
----------
::

    python diagnostics/benchmark_gpu.py --output runs/benchmark_gpu.json          # on a GPU
    python diagnostics/benchmark_gpu.py --quick --device cpu                     # smoke sizes
    python diagnostics/benchmark_gpu.py --steps 50 --backends jax --samplers ula  # a probe

On a GPU each backend runs in its own process (the script calls itself with ``--backends X``):
once JAX's allocator has held the memory, torch could not even create a cuBLAS handle beside
it. JAX is also told not to preallocate 75% of the GPU (``XLA_PYTHON_CLIENT_PREALLOCATE=false``,
set before JAX is imported). ``--batch-sweep 2500 5000 10000`` first times one batch of each
size and runs the protocol at the fastest. JAX's peak memory is the process's (its sweep too).

Measured on one H100 (80 GB HBM3; torch 2.11, JAX 0.11.2; TF32), 2026-11-22
----------------------------------------------------------------------------
* The whole protocol, torch ULA: two processes of 25,000 chains x 1000 steps (``--backends
  torch --samplers ula --chains 25000 --chain-batch 12500 --steps 1000 --seed 0``, then
  ``--seed 1``): 272.2 + 272.5 = **544.7 s** of sampling, 91,800 chain-steps/s, 66.6 TFLOP/s
  (0.725 GFLOP per chain-step), 0.16x the 411 TFLOP/s TF32 matmul peak, 26.2 GiB peak.
* ``--backends torch --batch-sweep 2500 5000 10000 --chains 50000 --steps 10``: 78.5k / 81.6k /
  83.3k chain-steps/s (ULA; MALA 81.0k / 83.1k / 84.1k), 21.1 GiB at 10,000 chains.
* ``--backends jax --chain-batch 5000 --chains 50000 --steps 10``: 25,000 chain-steps/s (ULA and
  MALA; 2,500-10,000 chains the same), and XLA asked for 66 GB at 10,000 chains (71.7 GB at
  20,000, past the card after rematerialisation). Those runs recompiled per call (4 s ULA,
  8 s MALA); the programs are now kept across calls (``ppl_ebm.drivers.run_jax._PROGRAMS``).
  **That JAX row was full fp32, not TF32**: the translated network passed
  ``precision=HIGHEST`` to every matmul and convolution, overriding the config this script sets.
  It now follows ``jax_default_matmul_precision`` when set (``torch_to_jax._precision``); the
  TF32 JAX figure has not been measured since (no GPU lent to the sessions after).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # before any JAX import

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks' helpers
from benchmark_flops import flops_per_chain_step  # noqa: E402
from benchmark_kernels import loadavg, machine_facts  # noqa: E402
from benchmark_scaling import build_conv_ebm  # noqa: E402

# DDLS Sec. 5.2 / App. B: step 0.01, noise std 0.1, x0.1 every 200 iterations, noise annealed along.
ULA_OPTIONS = {"step_size": 0.01, "noise_scale": 0.1, "decay_every": 200, "decay_rate": 0.1}
MALA_OPTIONS = {"step_size": 0.01}
MALA_WARMUP_FRACTION = 0.2
JAX_PRECISION = {"tf32": "tensorfloat32", "fp32": "float32"}
PROTOCOL_CHAINS, PROTOCOL_STEPS = 50_000, 1000


def set_precision(precision: str) -> None:
    """The same matmul/convolution precision for both libraries (see the module docstring)."""
    import jax
    import torch

    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32  # torch's default is True for convolutions
    jax.config.update("jax_default_matmul_precision", JAX_PRECISION[precision])


# -- the machine's limit -------------------------------------------------------------------------
def matmul_peak(backend: str, device: str, size: int, repeats: int, dtype: str = "float32") -> float:
    """GFLOP/s of a square ``size`` matmul at the precision set, the device synchronised."""
    if backend == "torch":
        import torch

        from ppl_ebm.drivers.devices import torch_device

        where = torch_device(device)
        a = torch.randn(size, size, device=where, dtype=getattr(torch, dtype))
        sync = torch.cuda.synchronize if where.type == "cuda" else (lambda: None)
        (a @ a), sync()
        start = time.perf_counter()
        for _ in range(repeats):
            b = a @ a
        sync()
        del b
    else:
        import jax
        import jax.numpy as jnp

        from ppl_ebm.drivers.devices import jax_device

        a = jax.device_put(jnp.ones((size, size), getattr(jnp, dtype)), jax_device(device))
        f = jax.jit(lambda x: x @ x)
        f(a).block_until_ready()
        start = time.perf_counter()
        for _ in range(repeats):
            b = f(a)
        b.block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def cpu_flops_per_chain_step(ebm, chains: int) -> float:
    """XLA's cost analysis on the CPU backend: on a GPU, convolutions become cuDNN custom calls
    whose FLOPs the analysis does not count (it reported 0.004 of the 0.7 GFLOP here)."""
    import jax

    with jax.default_device(jax.devices("cpu")[0]):
        return flops_per_chain_step(ebm.to_jax(), chains)


# -- one backend x sampler -----------------------------------------------------------------------
def _sample_batch(ebm, backend, sampler, device, start, steps, seed):
    """One ``sample`` call; for JAX ``ebm`` is the translation made once (``jax_target``), so
    the batches after the first reuse its compiled programs (``ppl_ebm.drivers.run_jax._PROGRAMS``)."""
    import ppl_ebm

    if sampler == "ula":
        warmup, options = 0, ULA_OPTIONS
    else:
        warmup, options = max(1, int(MALA_WARMUP_FRACTION * steps)), MALA_OPTIONS
    samples = steps - warmup
    return ppl_ebm.sample(ebm, sampler, backend, num_chains=len(start), num_warmup=warmup, num_samples=samples,
                          thinning=samples, seed=seed, initial_params=start, device=device, progress_bar=False,
                          **options)


def _is_out_of_memory(error: Exception) -> bool:
    text = f"{type(error).__name__} {error}"
    return "OutOfMemory" in text or "RESOURCE_EXHAUSTED" in text or "out of memory" in text


def _reset_peak_memory(backend: str, device: str) -> None:
    if backend == "torch" and device != "cpu":
        import torch

        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_gib(backend: str, device: str) -> float | None:
    if device == "cpu":
        return None
    if backend == "torch":
        import torch

        return torch.cuda.max_memory_allocated() / 2**30
    from ppl_ebm.drivers.devices import jax_device

    stats = jax_device(device).memory_stats() or {}
    return stats.get("peak_bytes_in_use", float("nan")) / 2**30


def fit_batch(ebm, backend, sampler, device, starts, batch, seed, log, halve=True) -> int:
    """The largest batch, from ``batch`` halving, whose 2-step call fits the GPU (untimed; it also
    pays torch's first-call allocations and cuDNN's algorithm search at that shape)."""
    while True:
        try:
            _sample_batch(ebm, backend, sampler, device, starts[:batch], 2, seed)
            return batch
        except Exception as error:  # torch.cuda.OutOfMemoryError, jaxlib's XlaRuntimeError
            if not halve or not _is_out_of_memory(error) or batch == 1:
                raise
            log(f"  {backend} {sampler}: {batch} chains do not fit ({type(error).__name__}); halving")
            batch //= 2
            _reset_peak_memory(backend, device)


def run_protocol(ebm, backend, sampler, device, starts, steps, batch, seed, log) -> dict:
    batch = fit_batch(ebm, backend, sampler, device, starts, batch, seed, log)
    _reset_peak_memory(backend, device)
    sampling = wall = compile_ = 0.0
    finals, acceptance, nonfinite = [], [], 0
    for index, first in enumerate(range(0, len(starts), batch)):
        begin = time.perf_counter()
        result = _sample_batch(ebm, backend, sampler, device, starts[first:first + batch], steps, seed + index)
        wall += time.perf_counter() - begin
        stats = result.stats
        sampling += float(stats["sampling_seconds"]) + float(stats.get("warmup_seconds", 0.0))
        compile_ += float(stats["compile_seconds"])
        finals.append(result.latents[:, -1])
        acceptance.append(np.asarray(stats["acceptance"], dtype=float))
        nonfinite += int(np.sum(stats["nonfinite"]))
        log(f"  {backend} {sampler}: chains {first + len(starts[first:first + batch]):,}/{len(starts):,}, "
            f"{sampling:.1f} s sampling, {wall:.1f} s wall")
    chains = len(starts)
    finals = np.concatenate(finals)
    return {
        "backend": backend, "sampler": sampler, "chains": chains, "steps": steps, "chain_batch": batch,
        "batches": -(-chains // batch),
        # Warmup steps are chain-steps too (MALA's adaptation): the rate counts all of them.
        "sampling_seconds": sampling, "compile_seconds": compile_, "wall_seconds": wall,
        "chain_steps_per_s": chains * steps / sampling,
        "peak_memory_gib": _peak_memory_gib(backend, device),
        "mean_acceptance": float(np.mean(np.concatenate(acceptance))),
        "nonfinite": nonfinite,
        "final_latent_norm_mean": float(np.mean(np.linalg.norm(finals, axis=1))),
        "final_states_finite": bool(np.all(np.isfinite(finals))),
    }


# -- output --------------------------------------------------------------------------------------
def format_table(rows: list[dict]) -> str:
    header = (f"{'backend':<8}{'sampler':<8}{'chains':>8}{'batch':>7}{'steps':>6}{'chain-steps/s':>15}"
              f"{'TFLOP/s':>9}{'x peak':>8}{'peak GiB':>9}{'sample s':>10}{'compile s':>10}{'wall s':>8}"
              f"{'protocol s':>11}")
    lines = [header, "-" * len(header)]
    for r in rows:
        memory = f"{r['peak_memory_gib']:>9.1f}" if r["peak_memory_gib"] is not None else f"{'-':>9}"
        lines.append(f"{r['backend']:<8}{r['sampler']:<8}{r['chains']:>8,}{r['chain_batch']:>7,}{r['steps']:>6}"
                     f"{r['chain_steps_per_s']:>15,.0f}{r['tflops_per_s']:>9.1f}{r['fraction_of_peak']:>8.2f}"
                     f"{memory}{r['sampling_seconds']:>10.1f}{r['compile_seconds']:>10.1f}{r['wall_seconds']:>8.1f}"
                     f"{r['protocol_seconds']:>11.0f}")
    lines.append(f"protocol s: {PROTOCOL_CHAINS:,} chains x {PROTOCOL_STEPS} steps at the measured rate "
                 "(equal to 'sample s' when the run is the whole protocol)")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--backends", nargs="+", default=["jax", "torch"], choices=["torch", "jax"])
    parser.add_argument("--samplers", nargs="+", default=["ula", "mala"], choices=["ula", "mala"])
    parser.add_argument("--chains", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--chain-batch", type=int, default=10_000,
                        help="chains per sample() call, halved while the first call runs out of GPU memory")
    parser.add_argument("--batch-sweep", type=int, nargs="*", default=[],
                        help="measure one batch of each size first and run the protocol at the fastest")
    parser.add_argument("--sweep-steps", type=int, default=10)
    parser.add_argument("--precision", choices=sorted(JAX_PRECISION), default="tf32")
    parser.add_argument("--width", type=int, default=64, help="SN-GAN base width (64: 512-256-128-64)")
    parser.add_argument("--latent", type=int, default=128)
    parser.add_argument("--image", type=int, default=32)
    parser.add_argument("--matmul-size", type=int, default=8192)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke sizes: 8 chains in batches of 4, 3 steps, "
                        "width 4, latent 8, 8x8 images, 256 matmul")
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark_gpu.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.chains, args.steps, args.chain_batch = 8, 3, 4
        args.width, args.latent, args.image, args.matmul_size = 4, 8, 8, 256
    for name in ("chains", "steps", "chain_batch", "sweep_steps", "width", "latent", "matmul_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if any(size < 1 for size in args.batch_sweep):
        parser.error("--batch-sweep sizes must be >= 1")
    if "mala" in args.samplers and min(args.steps, args.sweep_steps if args.batch_sweep else 2) < 2:
        parser.error("MALA needs --steps and --sweep-steps >= 2 (warmup and a final draw)")
    return args


def measure(args, log) -> dict:
    """Every backend x sampler of ``args`` in this process; rows without the peak ratio."""
    from ppl_ebm.drivers.devices import torch_device

    set_precision(args.precision)
    machine = machine_facts()
    if args.device != "cpu":
        import torch

        machine["gpu"] = torch.cuda.get_device_name(torch_device(args.device))
    peaks = {backend: matmul_peak(backend, args.device, args.matmul_size, 20) for backend in args.backends}
    log(f"matmul peak ({args.precision}, {args.matmul_size}^3): "
        + ", ".join(f"{name} {value / 1e3:,.1f} TFLOP/s" for name, value in peaks.items()))
    ebm = build_conv_ebm(args.latent, args.width, args.image, args.seed)
    starts = np.random.default_rng(args.seed).standard_normal((args.chains, args.latent)).astype(np.float32)
    flops = cpu_flops_per_chain_step(ebm, min(args.chains, 64))
    log(f"FLOPs per chain-step (potential + gradient): {flops / 1e9:.3f} GFLOP")
    rows = []
    for backend in args.backends:
        target = jax_target(ebm, args.device) if backend == "jax" else ebm
        for sampler in args.samplers:
            sweep = batch_sweep(target, backend, sampler, args, log) if args.batch_sweep else []
            rates = [point for point in sweep if "chain_steps_per_s" in point]
            batch = max(rates, key=lambda point: point["chain_steps_per_s"])["batch"] if rates else args.chain_batch
            row = run_protocol(target, backend, sampler, args.device, starts, args.steps, batch, args.seed, log)
            row["batch_sweep"] = sweep
            row["flops_per_chain_step"] = flops
            rows.append(row)
    machine["loadavg_at_end"] = loadavg()
    return {"machine": machine, "matmul_peak_gflops": peaks, "rows": rows}


def jax_target(ebm, device: str):
    """The torch EBM translated once, its weights on ``device``."""
    import jax

    from ppl_ebm.drivers.devices import jax_device

    with jax.default_device(jax_device(device)):
        return ebm.to_jax()


def batch_sweep(ebm, backend, sampler, args, log) -> list[dict]:
    """Chain-steps/s of one batch of each ``--batch-sweep`` size (``--sweep-steps`` steps),
    smallest first, until one runs out of GPU memory: the protocol then runs the fastest."""
    points = []
    starts = np.random.default_rng(args.seed).standard_normal((max(args.batch_sweep), args.latent)).astype(np.float32)
    for batch in sorted(args.batch_sweep):
        try:
            fit_batch(ebm, backend, sampler, args.device, starts[:batch], batch, args.seed, lambda _: None, halve=False)
            result = _sample_batch(ebm, backend, sampler, args.device, starts[:batch], args.sweep_steps, args.seed)
        except Exception as error:
            if not _is_out_of_memory(error):
                raise
            points.append({"batch": batch, "out_of_memory": True})
            log(f"  {backend} {sampler}: batch {batch:,} runs out of memory")
            _reset_peak_memory(backend, args.device)
            break
        seconds = float(result.stats["sampling_seconds"]) + float(result.stats.get("warmup_seconds", 0.0))
        points.append({"batch": batch, "chain_steps_per_s": batch * args.sweep_steps / seconds})
        log(f"  {backend} {sampler}: batch {batch:,}: {points[-1]['chain_steps_per_s']:,.0f} chain-steps/s")
    return points


def each_backend_apart(argv: list[str], args, log) -> dict:
    """One process per backend: each library keeps the GPU memory it once held (JAX's BFC
    allocator), and the next one then fails to allocate (cuBLAS could not create a handle)."""
    parts = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in args.backends:
            output = Path(folder) / f"{backend}.json"
            subprocess.run([sys.executable, __file__, *argv, "--backends", backend, "--output", str(output)],
                           check=True, stdout=subprocess.DEVNULL)
            parts.append(json.loads(output.read_text()))
    return {"machine": parts[0]["machine"],
            "matmul_peak_gflops": {k: v for part in parts for k, v in part["matmul_peak_gflops"].items()},
            "rows": [row for part in parts for row in part["rows"]]}


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from ppl_ebm.drivers.devices import jax_device, torch_device

    torch_device(args.device), jax_device(args.device)  # refuse a missing GPU before any work
    apart = args.device != "cpu" and len(args.backends) > 1
    result = each_backend_apart(argv, args, log) if apart else measure(args, log)
    best_peak = max(result["matmul_peak_gflops"].values())
    for row in result["rows"]:
        row["tflops_per_s"] = row["flops_per_chain_step"] * row["chain_steps_per_s"] / 1e12
        row["fraction_of_peak"] = row["tflops_per_s"] * 1e3 / best_peak
        row["protocol_seconds"] = PROTOCOL_CHAINS * PROTOCOL_STEPS / row["chain_steps_per_s"]
    result = {"config": {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()},
              **result}
    print(format_table(result["rows"]))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2))
    log(f"wrote {args.output}")
    return result


if __name__ == "__main__":
    main()
