"""ppl_ebm: a trained generator plus a critic as a latent energy-based model, sampled with
Pyro and NumPyro (NUTS/HMC) and with batched ULA/MALA kernels, measured with ArviZ.

One sign convention: potential = energy = -log density.
"""

from ppl_ebm.gaussian import GaussianProblem, linear_gaussian_problem
from ppl_ebm.latent_ebm import CRITIC_OUTPUTS, LatentEBM
from ppl_ebm.result import SampleResult
from ppl_ebm.sampling import BACKENDS, SAMPLERS, sample

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "CRITIC_OUTPUTS",
    "GaussianProblem",
    "LatentEBM",
    "SAMPLERS",
    "SampleResult",
    "linear_gaussian_problem",
    "sample",
]
