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
from ppl_ebm.result import SampleResult


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
    nuts.run(jax.random.key(args.seed), extra_fields=("num_steps",))
    draws = np.asarray(nuts.get_samples(group_by_chain=True)["z"])
    grad_evals = np.asarray(nuts.get_extra_fields(group_by_chain=True)["num_steps"]).sum(axis=1)
    results["numpyro NUTS"] = SampleResult(
        draws, {"grad_evals": grad_evals, "wall_seconds": time.perf_counter() - start}, "nuts", "jax"
    )

    start = time.perf_counter()
    kernel = MALA(model, num_chains=args.mala_chains)  # all chains in one NumPyro chain
    mala = MCMC(kernel, num_warmup=args.warmup, num_samples=args.samples, progress_bar=False)
    mala.run(jax.random.key(args.seed + 1))
    draws = np.asarray(mala.get_samples()["z"]).swapaxes(0, 1)  # (chains, draws, dim)
    stats = {"grad_evals": np.full(args.mala_chains, 1 + args.warmup + args.samples),
             "wall_seconds": time.perf_counter() - start}
    results["our MALA"] = SampleResult(draws, stats, "mala", "jax")
    print(format_table(compare(results)))
    print(results["our MALA"].to_arviz())
    return results


if __name__ == "__main__":
    main()
