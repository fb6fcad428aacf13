"""The one Target protocol: latent EBMs (both backends) and general Pyro/NumPyro models implement
it, and the members agree with what the samplers compute from them."""

from __future__ import annotations

import jax
import numpy as np
import numpyro
import numpyro.distributions as ndist
import pyro
import pyro.distributions as pdist
import torch

import ppl_ebm
from ppl_ebm.ppl import numpyro_potential, pyro_potential
from ppl_ebm.targets.protocol import Target


def _pyro_model():
    scale = pyro.sample("scale", pdist.LogNormal(0.0, 1.0))
    with pyro.plate("data", 2):
        pyro.sample("x", pdist.Normal(0.0, scale), obs=torch.tensor([0.5, -1.0]))


def _numpyro_model():
    scale = numpyro.sample("scale", ndist.LogNormal(0.0, 1.0))
    with numpyro.plate("data", 2):
        numpyro.sample("x", ndist.Normal(0.0, scale), obs=np.array([0.5, -1.0]))


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _targets():
    ebm = ppl_ebm.linear_gaussian_problem(latent_dim=3, data_dim=4, seed=0).ebm
    box = ppl_ebm.LatentEBM(ebm.generator, ebm.critic, prior="uniform")
    return {
        "LatentEBM": (ebm, torch.Generator().manual_seed(0)),
        "LatentEBM box prior": (box, torch.Generator().manual_seed(0)),
        "LatentEBMJax": (ebm.to_jax(), jax.random.key(0)),
        "LatentEBMJax box prior": (box.to_jax(), jax.random.key(0)),
        "Pyro model": (pyro_potential.batched_potential_from_model(_pyro_model), torch.Generator().manual_seed(0)),
        "NumPyro model": (numpyro_potential.batched_potential_from_model(_numpyro_model), jax.random.key(0)),
    }


def test_every_target_kind_implements_the_protocol():
    for name, (target, rng) in _targets().items():
        assert isinstance(target, Target), name
        position = target.initial_positions(5, rng)
        assert tuple(position.shape) == (5, target.dim), name
        assert target.dim == sum(int(np.prod(shape)) for shape in target.site_shapes.values()), name
        potential, grad = target.potential_and_grad(position)
        np.testing.assert_allclose(_numpy(potential), _numpy(target.potential(position)), rtol=1e-6,
                                   err_msg=name)
        assert tuple(grad.shape) == (5, target.dim) and np.all(np.isfinite(_numpy(grad))), name
        sites = target.sites(position)
        assert set(target.site_shapes) <= set(sites), name


def test_sites_are_in_the_support():
    for name, (target, rng) in _targets().items():
        sites = target.sites(target.initial_positions(200, rng))
        if "box" in name:
            assert np.all(np.abs(_numpy(sites["z"])) <= 1.0), name
        if "model" in name:
            assert np.all(_numpy(sites["scale"]) > 0), name


def test_an_object_missing_a_member_is_not_a_target():
    class NoSites:
        dim = 2
        site_shapes = {"z": (2,)}

        def potential(self, position):
            return position.sum(-1)

        def potential_and_grad(self, position):
            return position.sum(-1), position

        def initial_positions(self, num_chains, rng):
            return np.zeros((num_chains, 2))

    assert not isinstance(NoSites(), Target)
