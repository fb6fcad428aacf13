"""Old flat module paths (``ppl_ebm.pyro_model``, ``ppl_ebm.run_jax``, ...) kept importable for
one release after the move into role subpackages, each with a DeprecationWarning.

One import hook instead of forty one-line alias files: the old name is bound to the new
module object itself (``sys.modules[old] is sys.modules[new]``), so monkeypatching either
path patches the same thing, and the flat folder stays as short as the new layout intends.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__all__ = ["MOVED", "install"]

#: old module name (under ``ppl_ebm.``) -> its new dotted path (under ``ppl_ebm.``).
MOVED = {
    "arviz_compat": "diagnostics.arviz_compat",
    "calibration": "training.calibration",
    "convergence": "drivers.convergence",
    "coupling_jax": "kernels.coupling_jax",
    "coupling_torch": "kernels.coupling_torch",
    "critic_tuning": "training.critic_tuning",
    "datasets": "data.toy",
    "devices": "drivers.devices",
    "diagnostics_fast": "diagnostics.fast",
    "draw_store": "drivers.draw_store",
    "dual_averaging": "kernels.adaptation.dual_averaging",
    "gaussian": "targets.gaussian",
    "independence_schedule": "kernels.cycle",
    "langevin_jax": "kernels.langevin_jax",
    "langevin_torch": "kernels.langevin_torch",
    "latent_ebm": "targets.latent_ebm",
    "latent_ebm_jax": "targets.latent_ebm_jax",
    "mixing": "diagnostics.mixing",
    "mixing_report": "studies.mixing_report",
    "mixing_study": "studies.mixing",
    "networks": "nets.architectures",
    "numpyro_kernels": "ppl.numpyro_kernels",
    "numpyro_model": "ppl.numpyro_model",
    "numpyro_potential": "ppl.numpyro_potential",
    "pyro_kernels": "ppl.pyro_kernels",
    "pyro_model": "ppl.pyro_model",
    "pyro_potential": "ppl.pyro_potential",
    "report": "studies.compare_report",
    "run_jax": "drivers.run_jax",
    "run_torch": "drivers.run_torch",
    "sampler_report": "studies.samplers_report",
    "sampler_study": "studies.samplers",
    "step_schedule": "kernels.adaptation.step_schedule",
    "target_check": "targets.target_check",
    "toy_compare": "studies.compare",
    "torch_to_jax": "nets.torch_to_jax",
    "training": "training.gan",
    "zoo_training": "zoo.build",
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, new_name: str):
        self.new_name = new_name

    def create_module(self, spec):
        return None  # a placeholder; exec_module swaps in the real module

    def exec_module(self, module):
        warnings.warn(
            f"{module.__name__} moved to {self.new_name}; the old path goes in the next release.",
            DeprecationWarning,
            stacklevel=2,
        )
        # importlib returns sys.modules[name] after exec_module, so the old name is the new module.
        sys.modules[module.__name__] = importlib.import_module(self.new_name)


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        prefix, _, leaf = fullname.partition(".")
        if prefix != "ppl_ebm" or leaf not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedModuleLoader(f"ppl_ebm.{MOVED[leaf]}"))


def install() -> None:
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder())
