"""Sample a zoo GAN's latent EBM with NumPyro: NumPyro's NUTS (chains vectorised) and our
batched MALA kernel, both through ``numpyro.infer.MCMC``, on the JAX translation of the
torch checkpoint; then ArviZ diagnostics of both.

Run:  python examples/zoo_numpyro.py                   # the shipped 25-Gaussians NS-GAN
      python examples/zoo_numpyro.py --model swissroll-wgan-gp --samples 200
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from numpyro.infer import MCMC, NUTS

from ppl_ebm import zoo
from ppl_ebm.diagnostics import compare, format_table
from ppl_ebm.ppl.numpyro_kernels import MALA
from ppl_ebm.ppl.numpyro_model import numpyro_model
from ppl_ebm.result import SampleResult, SamplerStats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # The NS-GAN: the WGAN-GP models' targets have their highest density far beyond the prior
    # (ppl_ebm.targets.target_check), where long runs drift off the data.
    parser.add_argument("--model", default="25gaussians-nsgan", help="zoo name or model folder")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--nuts-chains", type=int, default=8)
    parser.add_argument("--mala-chains", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    ebm = zoo.load_latent_ebm(args.model).to_jax()  # same weights, evaluated by XLA
    model = numpyro_model(ebm)
    results = {}

    start = time.perf_counter()
    nuts = MCMC(NUTS(model), num_warmup=args.warmup, num_samples=args.samples, num_chains=args.nuts_chains,
                chain_method="vectorized", progress_bar=False)
    # Warmup apart, to count its gradient evaluations and time it; sampling continues from its state.
    nuts.warmup(jax.random.key(args.seed), extra_fields=("num_steps",), collect_warmup=True)
    warmup_steps = np.asarray(nuts.get_extra_fields(group_by_chain=True)["num_steps"]).sum(axis=1)
    warmup_end = time.perf_counter()
    nuts.run(nuts.post_warmup_state.rng_key, extra_fields=("num_steps", "accept_prob", "diverging",
                                                          "adapt_state.step_size"))
    end = time.perf_counter()
    draws = np.asarray(nuts.get_samples(group_by_chain=True)["z"])
    extra = {name: np.asarray(value) for name, value in nuts.get_extra_fields(group_by_chain=True).items()}
    stats = SamplerStats(
        acceptance=extra["accept_prob"].mean(axis=1),
        step_size=extra["adapt_state.step_size"][:, -1],
        divergences=extra["diverging"].sum(axis=1).astype(np.int64),
        nonfinite=np.zeros(args.nuts_chains, dtype=np.int64),
        stopped=np.zeros(args.nuts_chains, dtype=bool),
        grad_evals=(warmup_steps + extra["num_steps"].sum(axis=1)).astype(np.int64),
        wall_seconds=end - start,
        compile_seconds=float("nan"),  # NumPyro compiles inside warmup and run: not measured apart
        warmup_seconds=warmup_end - start,
        sampling_seconds=end - warmup_end,
        budget_stopped=False,
    )
    results["numpyro NUTS"] = SampleResult(draws, stats, "nuts", "jax")

    start = time.perf_counter()
    kernel = MALA(model, num_chains=args.mala_chains)  # all chains in one NumPyro chain
    mala = MCMC(kernel, num_warmup=args.warmup, num_samples=args.samples, progress_bar=False)
    mala.warmup(jax.random.key(args.seed + 1))
    warmup_end = time.perf_counter()
    mala.run(mala.post_warmup_state.rng_key)
    end = time.perf_counter()
    draws = np.asarray(mala.get_samples()["z"]).swapaxes(0, 1)  # (chains, draws, dim)
    state = mala.last_state.sampler  # the pure kernel's state: our statistics, as ppl_ebm.sample reports them
    stats = SamplerStats(
        acceptance=np.asarray(state.mean_acceptance),
        step_size=np.asarray(state.step_size),
        divergences=np.zeros(args.mala_chains, dtype=np.int64),  # Langevin has no divergent transitions
        nonfinite=np.asarray(state.langevin.nonfinite_count),
        stopped=~np.asarray(state.langevin.active),
        grad_evals=np.full(args.mala_chains, 1 + args.warmup + args.samples),
        wall_seconds=end - start,
        compile_seconds=float("nan"),  # compiled inside warmup and run: not measured apart
        warmup_seconds=warmup_end - start,
        sampling_seconds=end - warmup_end,
        budget_stopped=False,
    )
    results["our MALA"] = SampleResult(draws, stats, "mala", "jax")
    print(format_table(compare(results)))
    print(results["our MALA"].to_arviz())
    return results


if __name__ == "__main__":
    main()
