"""Scaling curves of our ULA/MALA samplers: throughput as the chains, the latent and the nets grow.

What it measures
----------------
Chain-steps per second (chains x steps / seconds) through the front door,
``ppl_ebm.sample(ebm, sampler, backend, num_chains=C, num_warmup=W, num_samples=S,
progress_bar=False)`` with the torch ``LatentEBM`` on both backends (JAX translates it with
``ebm.to_jax()`` inside ``sample``), along two curves:

* **chains**: ``--chains`` (1 10 100 1000 10000) on the toy latent EBM of
  ``benchmark_kernels.py``: generator ``mlp(2, [W]*3, 2)``, critic ``mlp(2, [W]*3, 1)``, ReLU,
  seeded random weights, ``W = 512``.
* **dims**: ``--dims`` (2 8 32 128) at ``--dims-chains`` (1000) chains with the generator
  ``mlp(dim, [W]*3, 2)`` and the same critic, then the SN-GAN "standard CNN" of
  ``ppl_ebm.nets.architectures`` with random weights (``conv_generator(128)`` 128 -> 32x32x3 with widths
  512-256-128-64, ``conv_critic`` with spectral norm, widths 64-512) at ``--conv-chains``
  (1 10 100) chains and ``--conv-steps`` (3) steps: one chain-step costs ~0.7 GFLOP there.

The time is the driver's ``stats["sampling_seconds"]``: the post-warmup phase, JAX compile
time excluded (``compile_seconds`` apart). ``sample`` runs our samplers as registry ->
``build`` -> ``init_chain`` -> ``run_langevin``; the driver's clock starts inside
``run_langevin``, so the initial potential/gradient evaluation (``init_chain``) is outside
``sampling_seconds`` on both backends. ``wall_seconds`` is the whole ``sample`` call
(translation to JAX, prior draws, ``init_chain``, compiles, the copy of the draws). ULA runs
with ``num_warmup=0``, MALA with ``benchmark_kernels.mala_warmup(steps)`` untimed adaptation
steps.

Steps per point: unless ``--steps`` fixes them, a point starts at 5 steps and reruns with the
steps scaled up to ``--target-seconds`` (1.5) of sampling, at most ``--max-steps`` (5000),
until a run takes at least half the target (the shorter runs are its warm-up, after an untimed
1-step run that takes the first-call costs at that chain count); then ``--repeats`` (1) runs
at those steps, the fastest kept. At 10000 chains 5 steps already take several seconds. The
conv points run ``--conv-steps``. A point whose time, extrapolated from the previous point of
its curve, exceeds ``--max-point-seconds`` is skipped and listed as such. (Before
``torch_to_jax`` computed convolutions channels-last, the JAX conv points were skipped: XLA:CPU
ran NCHW convolutions and their input gradients inside a ``lax.scan`` body ~50x slower than
outside one, jax-ml/jax#12868.)

Cost per chain-step is ``sampling_seconds / (chains x steps)``; FLOPs per chain-step come from
XLA's cost analysis of the jitted potential and gradient (``benchmark_flops.flops_per_chain_step``)
and are used for both backends' GFLOP/s.

How to run
----------
::

    . .venv/bin/activate
    python diagnostics/benchmark_scaling.py --torch-threads 1    # a few minutes on 2 cores
    python diagnostics/benchmark_scaling.py --quick              # seconds (smoke-test sizes)
    python diagnostics/benchmark_scaling.py --backends jax --samplers ula mala --chains 100 1000 \\
        --dims 2 32 --no-conv --output runs/scaling_jax.json

The table is printed and written, with the machine facts, to ``--output`` (default
``runs/benchmark_scaling.json``), and the curves are plotted next to it (same name, ``.png``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmarks' helpers
from benchmark_flops import flops_per_chain_step  # noqa: E402
from benchmark_kernels import BACKENDS, SAMPLERS, STEP_SIZE, loadavg, machine_facts, mala_warmup  # noqa: E402

MIN_STEPS = 5  # a calibrated point starts here; also the floor used to predict a point's time


# -- the models ----------------------------------------------------------------------------------
def build_mlp_ebm(dim: int, width: int, seed: int):
    """``mlp(dim, [W]*3, 2)`` generator and ``mlp(2, [W]*3, 1)`` critic; at dim 2 the same
    weights as ``benchmark_kernels.build_ebm`` (same seed, same construction order)."""
    import torch

    import ppl_ebm
    from ppl_ebm.nets.architectures import mlp

    torch.manual_seed(seed)
    return ppl_ebm.LatentEBM(mlp(dim, [width] * 3, 2, "relu"), mlp(2, [width] * 3, 1, "relu"))


def build_conv_ebm(latent: int, base_width: int, image_size: int, seed: int):
    """SN-GAN standard-CNN generator and spectrally normalised critic, random weights (eval mode:
    BatchNorm uses its initial running statistics, so chains stay independent)."""
    import torch

    import ppl_ebm
    from ppl_ebm.nets.architectures import conv_critic, conv_generator

    torch.manual_seed(seed)
    generator = conv_generator(latent, 3, base_width, image_size)
    critic = conv_critic(3, base_width, image_size, spectral_norm=True)
    return ppl_ebm.LatentEBM(generator, critic)


# -- one point -----------------------------------------------------------------------------------
def run_sample(ebm, backend: str, sampler: str, chains: int, steps: int, seed: int) -> dict:
    import ppl_ebm

    num_warmup = 0 if sampler == "ula" else mala_warmup(steps)
    start = time.perf_counter()
    result = ppl_ebm.sample(ebm, sampler, backend, num_chains=chains, num_warmup=num_warmup, num_samples=steps,
                            seed=seed, step_size=STEP_SIZE, progress_bar=False)
    wall = time.perf_counter() - start
    stats = result.stats
    seconds = float(stats["sampling_seconds"])
    return {
        "steps": steps,
        "num_warmup": num_warmup,
        "sampling_seconds": seconds,
        "wall_seconds": wall,
        "compile_seconds": float(stats["compile_seconds"]),
        "chain_steps_per_s": chains * steps / seconds,
        "seconds_per_chain_step": seconds / (chains * steps),
        "mean_acceptance": float(np.mean(stats["acceptance"])),
        "nonfinite": int(np.sum(stats["nonfinite"])),  # a sanity check: random nets, small steps
    }


def measure_point(ebm, backend, sampler, chains, fixed_steps, args) -> dict:
    """The fastest of ``--repeats`` runs, at ``fixed_steps`` or at steps grown to ~``--target-seconds``."""
    # Untimed 1-step run: the first call at a chain count pays one-off costs that can land in
    # sampling_seconds (torch's first allocations at the new shape, the first steps' thread
    # start-up; JAX's eager ops compiling for the new shape).
    # Skipped by --quick, whose timings only show that the script runs.
    if not args.quick:
        run_sample(ebm, backend, sampler, chains, 1, args.seed)
    steps = fixed_steps or MIN_STEPS
    run = run_sample(ebm, backend, sampler, chains, steps, args.seed)
    while fixed_steps is None and run["sampling_seconds"] < 0.5 * args.target_seconds and steps < args.max_steps:
        scale = args.target_seconds / max(run["sampling_seconds"], 1e-4)
        steps = min(args.max_steps, math.ceil(steps * scale))
        run = run_sample(ebm, backend, sampler, chains, steps, args.seed)
    runs = [run] + [run_sample(ebm, backend, sampler, chains, steps, args.seed) for _ in range(args.repeats - 1)]
    best = dict(min(runs, key=lambda r: r["sampling_seconds"]))
    best["repeat_sampling_seconds"] = [r["sampling_seconds"] for r in runs]
    return best


def measure_curve(curve, network, dim, ebm, flops, backend, sampler, chain_counts, fixed_steps, args, log) -> list[dict]:
    """One row per chain count, ``fixed_steps`` steps each (None: calibrated). A point whose time,
    extrapolated from the previous point, exceeds ``--max-point-seconds`` is skipped with the
    larger ones after it (the cost per chain-step rarely falls by more than the chain ratio)."""
    rows, previous, skipped = [], None, None
    for chains in chain_counts:
        row = {"curve": curve, "network": network, "latent_dim": dim, "backend": backend, "sampler": sampler,
               "chains": chains, "flops_per_chain_step": flops}
        if previous is not None and skipped is None:
            predicted = previous["seconds_per_chain_step"] * chains * (fixed_steps or MIN_STEPS)
            if predicted > args.max_point_seconds:
                skipped = f"predicted {predicted:.0f} s > --max-point-seconds {args.max_point_seconds:g}"
        if skipped is not None:
            rows.append({**row, "skipped": skipped})
            log(f"  {backend} {sampler} {network} dim={dim} chains={chains}: skipped ({skipped})")
            continue
        row.update(measure_point(ebm, backend, sampler, chains, fixed_steps, args))
        steps = row["steps"]
        row["gflops_per_s"] = flops * row["chain_steps_per_s"] / 1e9 if flops else None
        log(f"  {backend} {sampler} {network} dim={dim} chains={chains} steps={steps}: "
            f"{row['chain_steps_per_s']:,.3g} chain-steps/s, {row['seconds_per_chain_step'] * 1e6:,.1f} us/chain-step "
            f"(sampling {row['sampling_seconds']:.2f} s, wall {row['wall_seconds']:.2f} s)")
        rows.append(row)
        previous = row
    return rows


# -- output --------------------------------------------------------------------------------------
def format_table(rows: list[dict]) -> str:
    header = (f"{'curve':<7}{'network':<8}{'dim':>5}{'backend':>8}{'sampler':>8}{'chains':>7}{'steps':>6}"
              f"{'chain-steps/s':>15}{'us/chain-step':>15}{'MFLOP/cs':>10}{'GFLOP/s':>9}{'sample s':>9}{'wall s':>8}")
    lines = [header, "-" * len(header)]
    for r in rows:
        start = (f"{r['curve']:<7}{r['network']:<8}{r['latent_dim']:>5}{r['backend']:>8}{r['sampler']:>8}"
                 f"{r['chains']:>7}")
        if "skipped" in r:
            lines.append(f"{start}  skipped: {r['skipped']}")
            continue
        flops = f"{r['flops_per_chain_step'] / 1e6:>10.2f}" if r["flops_per_chain_step"] else f"{'-':>10}"
        gflops = f"{r['gflops_per_s']:>9.1f}" if r["gflops_per_s"] else f"{'-':>9}"
        rate = r["chain_steps_per_s"]
        rate = f"{rate:>15,.0f}" if rate >= 100 else f"{rate:>15.3g}"  # the JAX conv net runs < 1 chain-step/s
        lines.append(f"{start}{r['steps']:>6}{rate}{r['seconds_per_chain_step'] * 1e6:>15,.1f}"
                     f"{flops}{gflops}{r['sampling_seconds']:>9.2f}{r['wall_seconds']:>8.1f}")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    # The object API: no pyplot state and no backend switch (files only, no display needed).
    from matplotlib.figure import Figure

    done = [r for r in rows if "skipped" not in r]
    color = {"torch": "C3", "jax": "C0"}  # one colour per backend in both panels
    style = {"ula": "-", "mala": ":"}
    fig = Figure(figsize=(12, 4.5))
    left, right = fig.subplots(1, 2)
    for network, backend, sampler in sorted({(r["network"], r["backend"], r["sampler"]) for r in done}):
        points = sorted((r["chains"], r["chain_steps_per_s"]) for r in done if r["curve"] in ("chains", "conv")
                        and (r["network"], r["backend"], r["sampler"]) == (network, backend, sampler))
        marker = "o" if network == "mlp" else "s"
        left.plot(*zip(*points), marker=marker, linestyle=style[sampler] if network == "mlp" else "--",
                  color=color[backend], label=f"{backend} {sampler} {'toy MLP' if network == 'mlp' else 'SN-GAN conv'}")
    left.set(xscale="log", yscale="log", xlabel="chains", ylabel="chain-steps / s (sampling_seconds)",
             title="Throughput vs chains")
    left.set_xticks(sorted({r["chains"] for r in done}), [str(c) for c in sorted({r["chains"] for r in done})])
    for backend, sampler in sorted({(r["backend"], r["sampler"]) for r in done}):
        mine = [r for r in done if (r["backend"], r["sampler"]) == (backend, sampler)]
        dims = sorted((r["latent_dim"], r["seconds_per_chain_step"], r["chains"]) for r in mine if r["curve"] == "dims")
        if dims:
            right.plot([d[0] for d in dims], [d[1] for d in dims], "o" + style[sampler], color=color[backend],
                       label=f"{backend} {sampler} MLP generator (chains={dims[0][2]})")
        conv = [r for r in mine if r["curve"] == "conv"]
        if conv:  # the conv net at its largest measured chain count, one marker at its latent dim
            best = max(conv, key=lambda r: r["chains"])
            right.plot(best["latent_dim"], best["seconds_per_chain_step"], "s", color=color[backend], markersize=9,
                       label=f"{backend} {sampler} SN-GAN conv (chains={best['chains']})")
    right.set(xscale="log", yscale="log", xlabel="latent dim", ylabel="seconds per chain-step",
              title="Cost per chain-step vs latent dim / network")
    right.set_xticks(sorted({r["latent_dim"] for r in done}), [str(d) for d in sorted({r["latent_dim"] for r in done})])
    flops = sorted({(r["latent_dim"], r["network"], r["flops_per_chain_step"]) for r in done
                    if r["curve"] in ("dims", "conv") and r["flops_per_chain_step"]})
    reference = [r for r in done if r["curve"] == "dims" and r["flops_per_chain_step"]]
    if flops and reference:
        # What the work itself grows by: FLOPs on a twin axis scaled so that the first MLP point's
        # FLOPs sit on its time; a time marker above its x costs more than its FLOPs predict.
        first = min(reference, key=lambda r: (r["latent_dim"], r["backend"]))
        scale = first["flops_per_chain_step"] / first["seconds_per_chain_step"]
        twin = right.twinx()
        twin.plot([f[0] for f in flops], [f[2] for f in flops], "x", color="black", markersize=9,
                  label="FLOPs per chain-step (XLA)")
        twin.set(yscale="log", ylabel="FLOPs per chain-step (XLA cost analysis)")
        twin.set_ylim(*(limit * scale for limit in right.get_ylim()))
        twin.legend(fontsize=8, loc="center right")
    for axis in (left, right):
        axis.minorticks_off()
        axis.grid(True, which="major", alpha=0.3)
        axis.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# -- the benchmark -------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=["ula"])
    parser.add_argument("--chains", type=int, nargs="+", default=None, help="chains curve (1 10 100 1000 10000)")
    parser.add_argument("--dims", type=int, nargs="+", default=None, help="MLP latent dims (2 8 32 128)")
    parser.add_argument("--dims-chains", type=int, default=None, help="chains of the dims curve (1000)")
    parser.add_argument("--width", type=int, default=None, help="hidden width of the MLPs (512)")
    parser.add_argument("--steps", type=int, default=None, help="fixed steps per MLP point (default: calibrated)")
    parser.add_argument("--target-seconds", type=float, default=None, help="calibrated sampling time per point (1.5)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on calibrated steps (5000)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per point at its steps, fastest kept (1)")
    parser.add_argument("--no-conv", dest="conv", action="store_false", help="skip the SN-GAN conv net")
    parser.add_argument("--conv-chains", type=int, nargs="+", default=None, help="conv chain counts (1 10 100)")
    parser.add_argument("--conv-steps", type=int, default=None, help="steps per conv point (3)")
    parser.add_argument("--conv-width", type=int, default=None, help="conv base width w (64: SN-GAN)")
    parser.add_argument("--conv-latent", type=int, default=None, help="conv latent dim (128)")
    parser.add_argument("--conv-image", type=int, default=None, help="conv image side (32)")
    parser.add_argument("--max-point-seconds", type=float, default=60.0, help="skip points predicted slower (60)")
    parser.add_argument("--no-flops", dest="flops", action="store_false", help="skip XLA's FLOP counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes: chains 1 8, dims 2 4, width 32, "
                        "at most 10 steps, a conv net of width 4 on 8x8 images, no warm-up runs")
    parser.add_argument("--output", default="runs/benchmark_scaling.json", help="JSON path; the plot is its .png")
    args = parser.parse_args(argv)
    defaults = (
        {"chains": [1, 8], "dims": [2, 4], "dims_chains": 8, "width": 32, "target_seconds": 0.02, "max_steps": 10,
         "conv_chains": [2], "conv_steps": 2, "conv_width": 4, "conv_latent": 8, "conv_image": 8}
        if args.quick
        else {"chains": [1, 10, 100, 1000, 10000], "dims": [2, 8, 32, 128], "dims_chains": 1000, "width": 512,
              "target_seconds": 1.5, "max_steps": 5000,
              "conv_chains": [1, 10, 100], "conv_steps": 3, "conv_width": 64, "conv_latent": 128, "conv_image": 32}
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

    facts = machine_facts()
    log("machine: " + ", ".join(f"{key}={value}" for key, value in facts.items()))

    def flops_of(ebm) -> float | None:
        # Per chain-step FLOPs hardly depend on the batch; 8 chains keep the extra compile cheap.
        return flops_per_chain_step(ebm.to_jax(), 8) if args.flops else None

    rows: list[dict] = []
    models = {}
    for dim in sorted(set(args.dims) | {2}):  # dim 2 is the chains curve's model
        ebm = build_mlp_ebm(dim, args.width, args.seed)
        models[dim] = (ebm, flops_of(ebm))
    for backend in args.backends:
        for sampler in args.samplers:
            log(f"[{time.perf_counter() - total_start:6.1f}s] chains curve: {backend} {sampler}, "
                f"mlp(2, [{args.width}]*3, 2) / mlp(2, [{args.width}]*3, 1)")
            ebm, flops = models[2]
            rows += measure_curve("chains", "mlp", 2, ebm, flops, backend, sampler, args.chains, args.steps, args, log)
            log(f"[{time.perf_counter() - total_start:6.1f}s] dims curve: {backend} {sampler}, {args.dims_chains} chains")
            for dim in args.dims:
                reuse = [r for r in rows if r["curve"] == "chains" and r["chains"] == args.dims_chains and dim == 2
                         and (r["backend"], r["sampler"]) == (backend, sampler) and "skipped" not in r]
                if reuse:  # the same model and chain count as a chains-curve point
                    rows.append({**reuse[0], "curve": "dims"})
                    continue
                ebm, flops = models[dim]
                rows += measure_curve("dims", "mlp", dim, ebm, flops, backend, sampler, [args.dims_chains],
                                      args.steps, args, log)
    if args.conv:
        ebm = build_conv_ebm(args.conv_latent, args.conv_width, args.conv_image, args.seed)
        flops = flops_of(ebm)
        log(f"conv: {ebm}, {flops / 1e6 if flops else float('nan'):.1f} MFLOP per chain-step")
        for backend in args.backends:
            for sampler in args.samplers:
                log(f"[{time.perf_counter() - total_start:6.1f}s] conv curve: {backend} {sampler}")
                rows += measure_curve("conv", "conv", ebm.latent_dim, ebm, flops, backend, sampler, args.conv_chains,
                                      args.conv_steps, args, log)
    total_seconds = time.perf_counter() - total_start
    facts["loadavg_at_end"] = loadavg()
    log("")
    log(format_table(rows))
    log(f"total {total_seconds:.0f} s; load average {facts['loadavg_at_start']} at start, {facts['loadavg_at_end']} at end")
    config = {name: value for name, value in vars(args).items() if name != "output"}
    config.update({"step_size": STEP_SIZE, "min_steps": MIN_STEPS,
                   "timing": "driver stats['sampling_seconds'] (post-warmup, JAX compile excluded); "
                             "wall: the whole ppl_ebm.sample call"})
    result = {"machine": facts, "config": config, "rows": rows, "total_seconds": total_seconds}
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    plot(rows, output.with_suffix(".png"))
    log(f"wrote {output} and {output.with_suffix('.png')}")
    return result


if __name__ == "__main__":
    main()
