"""One progress bar across all chains, with acceptance and step, for the PPLs' drivers and the
BlackJAX baselines (issue 20, item 7); our own kernels' bar is the chunk loop's (drivers/loop.py)."""

from __future__ import annotations

import pytest

import ppl_ebm


def _gaussian():
    import numpyro
    import numpyro.distributions as dist

    numpyro.sample("x", dist.Normal(0.0, 1.0))


def _gaussian_pyro():
    import pyro
    import pyro.distributions as dist

    pyro.sample("x", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("sampler, backend, model, bar", [
    ("nuts", "jax", _gaussian, "nuts (numpyro)"),
    ("nuts", "torch", _gaussian_pyro, "nuts (pyro)"),
    ("chees", "jax", _gaussian, "chees (blackjax)"),
])
def test_one_bar_shows_acceptance_and_step(capsys, sampler, backend, model, bar):
    ppl_ebm.sample(model, sampler, backend, num_chains=4, num_warmup=20, num_samples=20, progress_bar=True)
    err = capsys.readouterr().err
    assert bar in err and "acc=" in err and "step=" in err
    # One bar: the per-chain bars of Pyro (one per chain) and NumPyro are off.
    assert "Warmup" not in err and "sample:" not in err
    if backend == "torch":
        assert "chain=4/4" in err  # Pyro's chains run one after another under the one bar

