"""Inverse problem with a latent-EBM (GAN) prior, in Pyro and NumPyro.

We observe a noisy, partly masked sample ``y ~ N(mask * G(z), sigma^2)`` and sample the
posterior over the latent ``z`` whose prior is the latent EBM ``p0(z) exp(d(G(z)))``:
``ppl_ebm.ppl.pyro_model.latent_ebm_site`` / ``ppl_ebm.ppl.numpyro_model.latent_ebm_site`` put the
EBM on a site inside the user's own model, and every sampler runs on that model.

The generator here is linear and the critic quadratic, so the posterior is Gaussian and the
script prints the exact answer beside each sampler's estimate.

Run:  python examples/inverse_problem.py                # all samplers, both backends
      python examples/inverse_problem.py --chains 8 --samples 200 --samplers mala
"""

from __future__ import annotations

import argparse

import numpy as np


def exact_posterior(problem, mask, sigma, observation):
    """Gaussian posterior of z given y = mask * (A z + b) + noise, under the latent EBM prior."""
    weight = problem.ebm.generator.weight.detach().double().numpy()
    bias = problem.ebm.generator.bias.detach().double().numpy()
    prior_precision = np.linalg.inv(problem.covariance)
    masked = mask[:, None] * weight
    precision = prior_precision + masked.T @ masked / sigma**2
    covariance = np.linalg.inv(precision)
    mean = covariance @ (prior_precision @ problem.mean + masked.T @ (observation - mask * bias) / sigma**2)
    return mean, covariance


def build_models(ebm, mask, sigma, observation):
    """The same model in both PPLs: latent EBM prior on ``z``, masked Gaussian likelihood."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as numpyro_dist
    import pyro
    import pyro.distributions as pyro_dist
    import torch

    from ppl_ebm.ppl.numpyro_model import latent_ebm_site as numpyro_site
    from ppl_ebm.ppl.pyro_model import latent_ebm_site as pyro_site

    mask_t, y_t = torch.as_tensor(mask, dtype=torch.float32), torch.as_tensor(observation, dtype=torch.float32)

    def pyro_inverse_model():
        x = pyro_site(ebm, "z")
        pyro.sample("y", pyro_dist.Normal(mask_t * x, sigma).to_event(1), obs=y_t)

    jax_ebm = ebm.to_jax()
    mask_j, y_j = jnp.asarray(mask, dtype=jnp.float32), jnp.asarray(observation, dtype=jnp.float32)

    def numpyro_inverse_model():
        x = numpyro_site(jax_ebm, "z")
        numpyro.sample("y", numpyro_dist.Normal(mask_j * x, sigma).to_event(1), obs=y_j)

    return pyro_inverse_model, numpyro_inverse_model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samplers", nargs="+", default=["mala", "nuts"], choices=["ula", "mala", "nuts", "hmc"])
    parser.add_argument("--backends", nargs="+", default=["torch", "jax"], choices=["torch", "jax"])
    parser.add_argument("--chains", type=int, default=64, help="chains for ULA/MALA (NUTS/HMC use 4)")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import ppl_ebm
    from ppl_ebm.diagnostics import compare, format_table

    problem = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=6, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    mask = np.array([1, 1, 0, 1, 0, 1], dtype=np.float64)  # two coordinates unobserved
    sigma = 0.3
    truth_z = rng.multivariate_normal(problem.mean, problem.covariance)
    weight = problem.ebm.generator.weight.detach().double().numpy()
    bias = problem.ebm.generator.bias.detach().double().numpy()
    observation = mask * (weight @ truth_z + bias + sigma * rng.normal(size=6))
    mean, covariance = exact_posterior(problem, mask, sigma, observation)
    models = dict(zip(["torch", "jax"], build_models(problem.ebm, mask, sigma, observation)))

    results = {}
    for backend in args.backends:
        for sampler in args.samplers:
            chains = args.chains if sampler in ("ula", "mala") else 4
            results[f"{sampler}/{backend}"] = ppl_ebm.sample(
                models[backend], sampler, backend, num_chains=chains, num_warmup=args.warmup,
                num_samples=args.samples, seed=args.seed, progress_bar=False,
            )
    print("exact posterior mean:", np.round(mean, 3), " sd:", np.round(np.sqrt(np.diag(covariance)), 3))
    for name, result in results.items():
        z = result.posterior["z"]
        print(f"{name:>12}: mean {np.round(z.mean(axis=(0, 1)), 3)}  sd {np.round(z.std(axis=(0, 1)), 3)}")
    print(format_table(compare(results)))
    return results, mean, covariance


if __name__ == "__main__":
    main()
