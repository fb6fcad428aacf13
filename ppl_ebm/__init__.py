"""ppl_ebm: a trained generator plus a critic as a latent energy-based model, sampled with
Pyro and NumPyro (NUTS/HMC) and with batched ULA/MALA kernels, measured with ArviZ.

The public face is this module; the rest sits in folders by role (targets, nets, kernels,
ppl, drivers, diagnostics, metrics, data, training, baselines, zoo, studies).

One sign convention: potential = energy = -log density.
"""

from ppl_ebm import _moved
from ppl_ebm.result import SampleResult, SamplerStats
from ppl_ebm.sampling import BACKENDS, SAMPLERS, sample
from ppl_ebm.targets.gaussian import GaussianProblem, linear_gaussian_problem
from ppl_ebm.targets.latent_ebm import CRITIC_OUTPUTS, LatentEBM

_moved.install()  # the pre-0.2 flat module paths, deprecated

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "CRITIC_OUTPUTS",
    "GaussianProblem",
    "LatentEBM",
    "SAMPLERS",
    "SampleResult",
    "SamplerStats",
    "linear_gaussian_problem",
    "sample",
]
