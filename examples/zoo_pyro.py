"""Sample a zoo GAN's latent EBM with Pyro: Pyro's own NUTS, and our batched MALA kernel,
both through ``pyro.infer.MCMC``; then ArviZ diagnostics of both.

Run:  python examples/zoo_pyro.py                      # the shipped 25-Gaussians NS-GAN
      python examples/zoo_pyro.py --model swissroll-wgan-gp --samples 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyro
from pyro.infer import MCMC, NUTS

from ppl_ebm import zoo
from ppl_ebm.diagnostics import compare, format_table
from ppl_ebm.ppl.pyro_kernels import MALA
from ppl_ebm.ppl.pyro_model import pyro_model
from ppl_ebm.result import SampleResult, SamplerStats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The NS-GAN: the WGAN-GP models' targets have their highest density far beyond the prior
    # (ppl_ebm.targets.target_check), where long runs drift off the data.
    parser.add_argument("--model", default="25gaussians-nsgan", help="zoo name or model folder")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--mala-chains", type=int, default=256)
    parser.add_argument("--max-tree-depth", type=int, default=10,
                        help="NUTS's limit (Pyro's default 10): 2^depth - 1 gradients per draw at most")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ebm = zoo.load_latent_ebm(args.model)
    model = pyro_model(ebm)  # z ~ N(0, I) plus factor(d(G(z))): DDLS's target
    results = {}

    pyro.set_rng_seed(args.seed)
    start = time.perf_counter()
    nuts = MCMC(NUTS(model, max_tree_depth=args.max_tree_depth), num_samples=args.samples, warmup_steps=args.warmup, disable_progbar=True)
    nuts.run()
    draws = nuts.get_samples(group_by_chain=True)["z"].numpy()  # (1 chain, draws, dim)
    results["pyro NUTS (1 chain)"] = {"latents": draws, "wall_seconds": time.perf_counter() - start}

    pyro.set_rng_seed(args.seed)
    start = time.perf_counter()
    kernel = MALA(model, num_chains=args.mala_chains)  # all chains in one Pyro chain
    warmup_end = []

    def hook(kernel, params, stage, iteration):  # Pyro calls it after every iteration
        if stage.startswith("Warmup") and iteration == args.warmup - 1:
            warmup_end.append(time.perf_counter())

    mala = MCMC(kernel, num_samples=args.samples, warmup_steps=args.warmup, hook_fn=hook, disable_progbar=True)
    mala.run()
    end = time.perf_counter()
    draws = mala.get_samples()["z"].numpy().swapaxes(0, 1)  # (chains, draws, dim)
    state = kernel.state.sampler  # the pure kernel's state: our statistics, as ppl_ebm.sample reports them
    warmup_seconds = (warmup_end[0] if warmup_end else start) - start
    stats = SamplerStats(
        acceptance=state.mean_acceptance.numpy(),
        step_size=state.step_size.numpy(),
        divergences=np.zeros(args.mala_chains, dtype=np.int64),  # Langevin has no divergent transitions
        nonfinite=state.langevin.nonfinite_count.numpy(),
        stopped=(~state.langevin.active).numpy(),
        grad_evals=np.full(args.mala_chains, 1 + args.warmup + args.samples),
        wall_seconds=end - start,
        compile_seconds=0.0,  # torch compiles nothing
        warmup_seconds=warmup_seconds,
        sampling_seconds=end - start - warmup_seconds,
        budget_stopped=False,
    )
    results["our MALA"] = SampleResult(draws, stats, "mala", "torch")
    print(format_table(compare(results)))
    arviz_data = results["our MALA"].to_arviz()
    print(arviz_data)
    return results


if __name__ == "__main__":
    main()
