"""ppl_ebm: a trained generator plus a critic as a latent energy-based model, sampled with
Pyro and NumPyro (NUTS/HMC) and with batched ULA/MALA kernels, measured with ArviZ.

The public face is this module; the rest sits in folders by role (targets, nets, kernels,
ppl, drivers, diagnostics, metrics, data, training, baselines, zoo, studies).

One sign convention: potential = energy = -log density.
"""

from ppl_ebm import _moved
from ppl_ebm.result import SampleResult, SamplerStats
from ppl_ebm.sampling import BACKENDS, SAMPLERS, sample

_moved.install()  # the pre-0.2 flat module paths, deprecated

# The torch classes load on first use (PEP 562): a JAX run (``ppl-ebm sample --backend jax``, each
# process of a multi-process run) then never imports torch, seconds of every fresh process.
_LAZY = {
    "CRITIC_OUTPUTS": "ppl_ebm.targets.latent_ebm",
    "LatentEBM": "ppl_ebm.targets.latent_ebm",
    "GaussianProblem": "ppl_ebm.targets.gaussian",
    "linear_gaussian_problem": "ppl_ebm.targets.gaussian",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ppl_ebm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

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
