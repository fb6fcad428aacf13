"""Throughput of our batched ULA/MALA kernels against a bare hand-written loop.

What it measures
----------------
Chain-steps per second (chains x steps / seconds) of ULA and MALA on both backends, on a latent
EBM made of a generator ``mlp(2, [W, W, W], 2)`` and a critic ``mlp(2, [W, W, W], 1)`` (ReLU,
seeded random weights, ``W = 512`` by default) wrapped as ``ppl_ebm.LatentEBM``.

* **ours**: the real driver path of ``ppl_ebm.sample``: the registry's sampler
  (``kernels.registry.get_sampler("ula"/"mala")``, options ``validate({"step_size": 0.01})``),
  ``spec.build(backend, options)``, ``langevin_params(options, num_warmup)`` and then the
  backend's driver: ``run_torch.init_chain`` / ``run_torch.run_langevin`` on a
  ``TorchProblem(ebm.potential)`` with a seeded ``torch.Generator``, or ``run_jax.init_chain`` /
  ``run_jax.run_langevin`` on a ``JaxProblem(ebm_jax, potential maker)`` (the weights a pytree
  argument of the compiled program, the maker a module-level function as ``sample`` passes) with
  ``jax.random.key(seed)``; ``progress_bar=False``. The time is the driver's own
  ``stats["sampling_seconds"]``: the post-warmup sampling phase, JAX compile time excluded (the
  driver reports it apart as ``compile_seconds``). ULA runs with ``num_warmup=0``; MALA with
  ``num_warmup = max(2, steps // 4)`` adaptation steps, which are not timed.
* **bare**: the same update on the same potential, hand-written with no ppl_ebm code but the
  potential itself, recording every draw as the driver does.
  torch: a Python loop under ``torch.no_grad()`` whose gradient is
  ``z.requires_grad_(); u = potential(z); g = autograd.grad(u.sum(), z)`` under
  ``enable_grad``; JAX: one jitted ``lax.scan`` over ``jax.value_and_grad`` of the summed
  potential of the ``LatentEBMJax`` (compiled and run once before timing).

Timed regions are matched: ``steps`` transitions and the copy of their draws, nothing else.
The initial potential/gradient evaluation is outside on both sides (``init_chain`` runs before
``run_langevin``, whose clock starts inside it; the bare loops evaluate the start before their
clock starts), and MALA's warmup is outside ours. Both sides do one potential+gradient
evaluation per step. Each (backend, sampler, chains) runs ours and bare interleaved,
``--repeats`` times (3), and keeps the best of each; the ratio is best-ours / best-bare. The goal is ratio >= 0.9 everywhere.

Steps per measurement: ``round(steps * (100 / chains) ** steps_exponent)``, at least 2 (so
``--steps 100`` gives 100, 18 and 3 steps at 100, 1000 and 10000 chains, about 1-4 s each on a
2-core CPU).

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/benchmark_kernels.py                      # full run, a few minutes
    python diagnostics/benchmark_kernels.py --quick              # seconds (smoke test sizes)
    python diagnostics/benchmark_kernels.py --backends torch --samplers mala --chains 1000 \\
        --repeats 5 --output runs/mala_torch.json

The table is printed and written, with the machine facts, to ``--output``
(default ``runs/benchmark_kernels.json``).

On a shared machine the timings are noisy (the load average is printed and stored): with torch's
default two threads on two cores, a second busy process can make every torch step wait a
scheduler slice (about 0.3 s a step at 100 chains, ours and bare alike); ``--torch-threads 1``
gives stable torch numbers there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

# What the other benchmark scripts import from this one, and its entry point.
__all__ = ["BACKENDS", "SAMPLERS", "STEP_SIZE", "loadavg", "machine_facts", "main", "mala_warmup"]

BACKENDS = ("torch", "jax")
SAMPLERS = ("ula", "mala")
GOAL = 0.9
STEP_SIZE = 0.01  # ULA and MALA's initial step size (noise scale sqrt(step_size)); ppl_ebm's default.


# -- the model -----------------------------------------------------------------------------------
def build_ebm(width: int, seed: int):
    """Torch ``LatentEBM`` of two ``2-W-W-W`` ReLU MLPs with seeded random weights."""
    import torch

    import ppl_ebm
    from ppl_ebm.nets.architectures import mlp

    torch.manual_seed(seed)
    generator = mlp(2, [width] * 3, 2, "relu")
    critic = mlp(2, [width] * 3, 1, "relu")
    return ppl_ebm.LatentEBM(generator, critic)


def steps_for(chains: int, steps: int, exponent: float) -> int:
    return max(2, int(round(steps * (100.0 / chains) ** exponent)))


def mala_warmup(steps: int) -> int:
    return max(2, steps // 4)


# -- torch ---------------------------------------------------------------------------------------
def _langevin(sampler: str, steps: int):
    """The registry's sampler and its validated options, as ``ppl_ebm.sample`` builds them."""
    from ppl_ebm.kernels.registry import get_sampler

    spec = get_sampler(sampler)
    options = spec.validate({"step_size": STEP_SIZE})
    num_warmup = 0 if sampler == "ula" else mala_warmup(steps)
    return spec, options, num_warmup


def _summary(stats: dict) -> dict:
    return {
        "seconds": float(stats["sampling_seconds"]),
        "compile_seconds": float(stats["compile_seconds"]),
        "acceptance": float(np.mean(stats["acceptance"])),
    }


def torch_ours(ebm, sampler: str, position, steps: int, seed: int) -> dict:
    """registry -> build -> init_chain -> run_langevin on the torch backend (``ppl_ebm.sample``'s path)."""
    import torch

    from ppl_ebm.drivers import run_torch
    from ppl_ebm.kernels.samplers_torch import langevin_params

    spec, options, num_warmup = _langevin(sampler, steps)
    kernel = spec.build("torch", options)
    params = langevin_params(options, num_warmup, device=position.device)
    problem = run_torch.TorchProblem(ebm.potential)
    rng = torch.Generator(device=position.device).manual_seed(seed)
    chain = run_torch.init_chain(kernel, params, problem, position, rng)  # untimed, as in the bare loop
    _, _, stats = run_torch.run_langevin(kernel, params, problem, chain, steps, progress_bar=False)
    return _summary(stats)


def _torch_value_and_grad(potential):
    import torch

    def value_and_grad(z):
        with torch.enable_grad():
            z = z.detach().requires_grad_()
            u = potential(z)
            (g,) = torch.autograd.grad(u.sum(), z)
        return u.detach(), g

    return value_and_grad


def torch_bare(ebm, sampler: str, position, steps: int, seed: int) -> dict:
    """Hand-written loop; returns the seconds of its timed region (see the module docstring)."""
    import torch

    value_and_grad = _torch_value_and_grad(ebm.potential)
    rng = torch.Generator().manual_seed(seed + 1)
    chains = position.shape[0]
    z = position.clone()
    draws = torch.empty(steps, *z.shape, dtype=z.dtype)
    with torch.no_grad():
        if sampler == "ula":
            half_step, noise_scale = 0.5 * STEP_SIZE, math.sqrt(STEP_SIZE)
            _, g = value_and_grad(z)  # the initial state exists before the timed phase (init_chain)
            start = time.perf_counter()
            for i in range(steps):
                z = z - half_step * g + noise_scale * torch.randn(z.shape, generator=rng)
                _, g = value_and_grad(z)
                draws[i] = z
            seconds = time.perf_counter() - start
        else:
            step = torch.full((chains, 1), STEP_SIZE)  # one step size per chain, as ours
            sqrt_step = torch.sqrt(step)
            u, g = value_and_grad(z)  # the post-warmup state exists before the timed phase
            start = time.perf_counter()
            for i in range(steps):
                noise = torch.randn(z.shape, generator=rng)
                y = z - 0.5 * step * g + sqrt_step * noise
                u_y, g_y = value_and_grad(y)
                log_forward = -0.5 * (noise * noise).sum(-1)
                backward = z - y + 0.5 * step * g_y
                log_backward = -(backward * backward).sum(-1) / (2.0 * step[:, 0])
                log_ratio = u - u_y + log_backward - log_forward
                probability = torch.exp(torch.clamp(log_ratio, max=0.0))
                accept = torch.rand(chains, generator=rng) < probability
                z = torch.where(accept.unsqueeze(-1), y, z)
                u = torch.where(accept, u_y, u)
                g = torch.where(accept.unsqueeze(-1), g_y, g)
                draws[i] = z
            seconds = time.perf_counter() - start
    return {"seconds": seconds, "compile_seconds": 0.0, "acceptance": _move_rate(draws.numpy(), position.numpy())}


def _move_rate(draws: np.ndarray, start: np.ndarray) -> float:
    """Fraction of steps that moved, from the recorded draws (a sanity check of the bare MH)."""
    previous = np.concatenate([start[None], draws[:-1]])
    return float(np.mean(np.any(draws != previous, axis=-1)))


def torch_warmup(ebm, sampler, position, seed):
    # Two untimed bare steps: first-call allocations and thread start-up stay out of the timings.
    torch_bare(ebm, sampler, position, 2, seed)


# -- JAX -----------------------------------------------------------------------------------------
def _ebm_potential(ebm):
    """The LatentEBMJax's batched potential. Module level (a stable identity), so the driver's
    compiled programs are shared across the repeats, as ``ppl_ebm.sample`` shares them."""
    return ebm.potential


def jax_ours(ebm_jax, sampler: str, position, steps: int, seed: int) -> dict:
    """registry -> build -> init_chain -> run_langevin on the JAX backend (``ppl_ebm.sample``'s path)."""
    import jax

    from ppl_ebm.drivers import run_jax
    from ppl_ebm.kernels.samplers_jax import langevin_params

    spec, options, num_warmup = _langevin(sampler, steps)
    kernel = spec.build("jax", options)
    params = langevin_params(options, num_warmup)
    problem = run_jax.JaxProblem(ebm_jax, _ebm_potential)
    chain = run_jax.init_chain(kernel, params, problem, position, jax.random.key(seed))  # untimed
    chain = jax.block_until_ready(chain)
    _, _, stats = run_jax.run_langevin(kernel, params, problem, chain, steps, progress_bar=False)
    return _summary(stats)


def _jax_value_and_grad(ebm, z):
    import jax
    import jax.numpy as jnp

    def summed(w):
        u = ebm.potential(w)
        return jnp.sum(u), u

    (_, u), g = jax.value_and_grad(summed, has_aux=True)(z)
    return u, g


_JAX_INIT = None


def _jax_bare_init():
    # One jitted function for every bare program, so each shape compiles once (ULA and MALA).
    global _JAX_INIT
    if _JAX_INIT is None:
        import jax

        _JAX_INIT = jax.jit(_jax_value_and_grad)
    return _JAX_INIT


def _jax_bare_program(sampler: str, steps: int):
    import jax
    import jax.numpy as jnp

    value_and_grad = _jax_value_and_grad

    if sampler == "ula":
        half_step, noise_scale = 0.5 * STEP_SIZE, math.sqrt(STEP_SIZE)

        def run(ebm, z, u, g, key):
            def body(carry, _):
                z, g, key = carry
                key, noise_key = jax.random.split(key)
                z = z - half_step * g + noise_scale * jax.random.normal(noise_key, z.shape, z.dtype)
                _, g = value_and_grad(ebm, z)
                return (z, g, key), z

            _, draws = jax.lax.scan(body, (z, g, key), None, length=steps)
            return draws

    else:

        def run(ebm, z, u, g, key):
            step = jnp.full((z.shape[0], 1), STEP_SIZE, z.dtype)
            sqrt_step = jnp.sqrt(step)

            def body(carry, _):
                z, u, g, key = carry
                key, noise_key, accept_key = jax.random.split(key, 3)
                noise = jax.random.normal(noise_key, z.shape, z.dtype)
                y = z - 0.5 * step * g + sqrt_step * noise
                u_y, g_y = value_and_grad(ebm, y)
                log_forward = -0.5 * jnp.sum(noise * noise, axis=-1)
                backward = z - y + 0.5 * step * g_y
                log_backward = -jnp.sum(backward * backward, axis=-1) / (2.0 * step[:, 0])
                log_ratio = u - u_y + log_backward - log_forward
                probability = jnp.exp(jnp.minimum(log_ratio, 0.0))
                accept = jax.random.uniform(accept_key, u.shape, u.dtype) < probability
                z = jnp.where(accept[:, None], y, z)
                u = jnp.where(accept, u_y, u)
                g = jnp.where(accept[:, None], g_y, g)
                return (z, u, g, key), z

            _, draws = jax.lax.scan(body, (z, u, g, key), None, length=steps)
            return draws

    return _jax_bare_init(), jax.jit(run)


class JaxBare:
    """The bare JAX loop for one (sampler, chains, steps), compiled once and run once untimed."""

    def __init__(self, ebm_jax, sampler: str, position, steps: int, seed: int):
        import jax

        self.ebm, self.position, self.seed = ebm_jax, position, seed
        init, run = _jax_bare_program(sampler, steps)
        start = time.perf_counter()
        u, g = jax.block_until_ready(init(ebm_jax, position))
        self.run = run.lower(ebm_jax, position, u, g, jax.random.key(0)).compile()
        self.compile_seconds = time.perf_counter() - start
        self.initial = (u, g)
        self()  # warm-up run, untimed

    def __call__(self) -> dict:
        import jax

        u, g = self.initial
        start = time.perf_counter()
        draws = self.run(self.ebm, self.position, u, g, jax.random.key(self.seed + 1))
        draws = np.asarray(draws)  # the driver copies its draws to numpy too
        seconds = time.perf_counter() - start
        acceptance = _move_rate(draws, np.asarray(self.position))
        return {"seconds": seconds, "compile_seconds": self.compile_seconds, "acceptance": acceptance}


# -- the benchmark -------------------------------------------------------------------------------
def machine_facts() -> dict:
    import jax
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "jax": jax.__version__,
        "jax_devices": [str(device) for device in jax.devices()],
        "numpy": np.__version__,
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", ""),
        # The machine may be shared: a load above the CPU count means the timings are noisy.
        "loadavg_at_start": loadavg(),
    }


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (rounded), or None where the OS has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _rate(chains: int, steps: int, seconds: float) -> float:
    return chains * steps / seconds if seconds > 0 else float("nan")


def run_case(backend, sampler, chains, steps, repeats, ebm, ebm_jax, seed, log) -> dict:
    if backend == "torch":
        import torch

        position = ebm.prior_sample(chains, generator=torch.Generator().manual_seed(seed))
        torch_warmup(ebm, sampler, position, seed)
        ours_fn = lambda: torch_ours(ebm, sampler, position, steps, seed)  # noqa: E731
        bare_fn = lambda: torch_bare(ebm, sampler, position, steps, seed)  # noqa: E731
    else:
        import jax

        position = ebm_jax.prior_sample(jax.random.key(seed), chains)
        bare = JaxBare(ebm_jax, sampler, position, steps, seed)
        ours_fn = lambda: jax_ours(ebm_jax, sampler, position, steps, seed)  # noqa: E731
        bare_fn = bare
    ours, bare_runs = [], []
    for repeat in range(repeats):  # interleaved, so a noisy neighbour hits both sides alike
        ours.append(ours_fn())
        bare_runs.append(bare_fn())
        log(
            f"    repeat {repeat + 1}/{repeats}: ours {_rate(chains, steps, ours[-1]['seconds']):10.0f}  "
            f"bare {_rate(chains, steps, bare_runs[-1]['seconds']):10.0f} chain-steps/s"
        )
    ours_best = min(run["seconds"] for run in ours)
    bare_best = min(run["seconds"] for run in bare_runs)
    ours_rate, bare_rate = _rate(chains, steps, ours_best), _rate(chains, steps, bare_best)
    return {
        "backend": backend,
        "sampler": sampler,
        "chains": chains,
        "steps": steps,
        "num_warmup": 0 if sampler == "ula" else mala_warmup(steps),
        "ours_chain_steps_per_s": ours_rate,
        "bare_chain_steps_per_s": bare_rate,
        "ratio": ours_rate / bare_rate,
        "ours_seconds": [run["seconds"] for run in ours],
        "bare_seconds": [run["seconds"] for run in bare_runs],
        "ours_compile_seconds": [run["compile_seconds"] for run in ours],
        "bare_compile_seconds": bare_runs[0]["compile_seconds"],
        # Sanity checks, not timed: ours' mean MH acceptance probability (stats["acceptance"]),
        # the bare loop's fraction of steps that moved (1 for ULA).
        "ours_mean_acceptance": ours[-1]["acceptance"],
        "bare_move_rate": bare_runs[-1]["acceptance"],
    }


def format_table(rows: list[dict]) -> str:
    header = f"{'backend':<8}{'sampler':<8}{'chains':>8}{'steps':>7}{'ours cs/s':>13}{'bare cs/s':>13}{'ours/bare':>11}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row['backend']:<8}{row['sampler']:<8}{row['chains']:>8}{row['steps']:>7}"
            f"{row['ours_chain_steps_per_s']:>13.0f}{row['bare_chain_steps_per_s']:>13.0f}{row['ratio']:>10.3f}x"
        )
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, nargs="+", default=None, help="chain counts (100 1000 10000)")
    parser.add_argument("--steps", type=int, default=None, help="steps per measurement at 100 chains (100); fewer at more chains")
    parser.add_argument("--steps-exponent", type=float, default=None, help="steps = round(STEPS * (100/chains)**this) (0.75)")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    parser.add_argument("--repeats", type=int, default=None, help="runs per side, best kept (3)")
    parser.add_argument("--width", type=int, default=None, help="hidden width of both MLPs (512)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for the smoke test: chains 8 32, 5 steps, 1 repeat, width 32")
    parser.add_argument("--output", default="runs/benchmark_kernels.json", help="JSON results path")
    args = parser.parse_args(argv)
    defaults = (
        {"chains": [8, 32], "steps": 5, "steps_exponent": 0.0, "repeats": 1, "width": 32}
        if args.quick
        else {"chains": [100, 1000, 10000], "steps": 100, "steps_exponent": 0.75, "repeats": 3, "width": 512}
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    total_start = time.perf_counter()
    if args.torch_threads is not None:
        import torch

        torch.set_num_threads(args.torch_threads)

    def log(message: str) -> None:
        print(message, flush=True)

    ebm = build_ebm(args.width, args.seed)
    ebm_jax = ebm.to_jax() if "jax" in args.backends else None
    facts = machine_facts()
    log("machine: " + ", ".join(f"{key}={value}" for key, value in facts.items()))
    load = facts["loadavg_at_start"]
    if load is not None and facts["usable_cpus"] and load[0] > 0.5 * facts["usable_cpus"]:
        log(
            f"warning: load average {load[0]} on {facts['usable_cpus']} CPUs: the machine is busy and the "
            "timings will be noisy; torch's default threads can stall badly when another process holds "
            "a core (try --torch-threads 1)."
        )
    log(
        f"model: LatentEBM(mlp(2, [{args.width}]*3, 2), mlp(2, [{args.width}]*3, 1)), ReLU, seed {args.seed}; "
        f"step size {STEP_SIZE}; repeats {args.repeats} (best kept)"
    )
    rows = []
    for backend in args.backends:
        for sampler in args.samplers:
            for chains in args.chains:
                steps = steps_for(chains, args.steps, args.steps_exponent)
                log(f"[{time.perf_counter() - total_start:6.1f}s] {backend} {sampler} chains={chains} steps={steps}")
                rows.append(run_case(backend, sampler, chains, steps, args.repeats, ebm, ebm_jax, args.seed, log))
                row = rows[-1]
                log(
                    f"    best: ours {row['ours_chain_steps_per_s']:.0f}, bare {row['bare_chain_steps_per_s']:.0f} "
                    f"chain-steps/s, ratio {row['ratio']:.3f}"
                )
    min_ratio = min(row["ratio"] for row in rows)
    total_seconds = time.perf_counter() - total_start
    facts["loadavg_at_end"] = loadavg()
    log("")
    log(format_table(rows))
    log(
        f"min ratio ours/bare = {min_ratio:.3f}; goal >= {GOAL}x the bare loop: "
        f"{'MET' if min_ratio >= GOAL else 'NOT MET'} (total {total_seconds:.0f} s; "
        f"load average {facts['loadavg_at_start']} at start, {facts['loadavg_at_end']} at end)"
    )
    result = {
        "machine": facts,
        "config": {
            "chains": args.chains,
            "steps": args.steps,
            "steps_exponent": args.steps_exponent,
            "repeats": args.repeats,
            "width": args.width,
            "seed": args.seed,
            "torch_threads": args.torch_threads,
            "step_size": STEP_SIZE,
            "backends": args.backends,
            "samplers": args.samplers,
            "quick": args.quick,
            "timing": "ours: registry -> build -> init_chain (untimed) -> run_langevin, the driver's "
            "stats['sampling_seconds'] (post-warmup, JAX compile excluded); bare: hand-written loop, "
            "compiled and warmed up before timing, its initial evaluation untimed; best of repeats",
        },
        "rows": rows,
        "min_ratio": min_ratio,
        "goal": GOAL,
        "goal_met": bool(min_ratio >= GOAL),
        "total_seconds": total_seconds,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    log(f"wrote {output}")
    return result


if __name__ == "__main__":
    main()
