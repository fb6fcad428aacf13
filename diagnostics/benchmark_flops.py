"""How close the fastest sampling path gets to the machine's FLOP limit on the toy nets.

In one run: the fp32 matmul peak of torch and JAX (square matmuls), the FLOPs of one
chain-step (potential + gradient of the zoo model's latent EBM, from XLA's cost analysis of
the compiled step), and the chain-steps per second our ULA reaches through ``ppl_ebm.sample``
on each backend at several chain counts; achieved GFLOP/s and the ratio to the best peak.

    python diagnostics/benchmark_flops.py [--model NAME] [--chains 1000 5000] [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def matmul_peak_torch(size: int, repeats: int) -> float:
    import torch

    a = torch.randn(size, size)
    a @ a
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def matmul_peak_jax(size: int, repeats: int) -> float:
    import jax
    import jax.numpy as jnp

    a = jnp.ones((size, size), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    start = time.perf_counter()
    for _ in range(repeats):
        f(a).block_until_ready()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def flops_per_chain_step(ebm_jax, chains: int) -> float:
    import jax
    import jax.numpy as jnp

    z = jnp.zeros((chains, ebm_jax.latent_dim), jnp.float32)
    compiled = jax.jit(ebm_jax.potential_and_grad).lower(z).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, (list, tuple)) else analysis
    return float(analysis["flops"]) / chains


def chain_steps_per_second(ebm, backend: str, chains: int, steps: int) -> float:
    from ppl_ebm.sampling import sample

    result = sample(ebm, "ula", backend, num_chains=chains, num_warmup=0, num_samples=steps, seed=0,
                    step_size=1e-3, progress_bar=False)
    return chains * steps / result.stats["sampling_seconds"]


def main() -> None:
    from ppl_ebm.zoo.store import DEFAULT_MODEL, load_latent_ebm

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--chains", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--output", type=Path, default=Path("runs/benchmark_flops.json"))
    args = parser.parse_args()
    ebm = load_latent_ebm(args.model)
    ebm_jax = ebm.to_jax()
    peaks = {"torch": matmul_peak_torch(args.matmul_size, 10), "jax": matmul_peak_jax(args.matmul_size, 10)}
    best_peak = max(peaks.values())
    print(f"fp32 matmul peak ({args.matmul_size}^2): torch {peaks['torch']:.0f} GFLOP/s, jax {peaks['jax']:.0f} GFLOP/s")
    flops = flops_per_chain_step(ebm_jax, 1000)
    print(f"one chain-step (potential + gradient, XLA cost analysis): {flops / 1e6:.2f} MFLOP")
    rows = []
    for chains in args.chains:
        for backend in ("jax", "torch"):
            rate = chain_steps_per_second(ebm, backend, chains, args.steps)
            achieved = rate * flops / 1e9
            rows.append({"backend": backend, "chains": chains, "chain_steps_per_second": rate,
                         "gflops": achieved, "fraction_of_best_peak": achieved / best_peak})
            print(f"  ula/{backend:<5} {chains:>6} chains: {rate:,.0f} chain-steps/s = {achieved:.0f} GFLOP/s "
                  f"= {achieved / best_peak:.2f}x the best matmul peak")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"model": args.model, "matmul_peak_gflops": peaks,
                                       "flops_per_chain_step": flops, "runs": rows}, indent=2) + "\n")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
