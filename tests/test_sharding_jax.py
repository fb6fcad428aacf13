"""Chains sharded over 4 JAX CPU devices draw what one device draws for the same seed.

XLA's device count is fixed when JAX starts, so the check runs in a child process started
with ``--xla_force_host_platform_device_count=4``; there ``device="cpu"`` pins a run to one
device (a chosen device is never sharded) and the default run uses all four.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

_CHILD = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np, numpyro, numpyro.distributions as dist
    import ppl_ebm
    from ppl_ebm.drivers import sharding_jax

    assert len(jax.devices()) == 4
    assert sharding_jax.chain_mesh(64).shape == {"chains": 4} and sharding_jax.chain_mesh(6) is None

    def model():
        numpyro.sample("x", dist.Normal(0.0, jnp.array([1.0, 2.0, 3.0])))

    run = dict(num_warmup=50, num_samples=40, seed=1, progress_bar=False)
    # 64 MALA chains: the diagonal mass matrix is pooled over chains (>= 32), a cross-chain
    # reduction. (ULA, mala-imh and Ex2MCMC were measured equal too; each case costs compiles.)
    for sampler, chains, options in (("mala", 64, {}),):
        sharded = ppl_ebm.sample(model, sampler, "jax", num_chains=chains, **run, **options)
        one = ppl_ebm.sample(model, sampler, "jax", num_chains=chains, **run, device="cpu", **options)
        assert np.array_equal(np.asarray(sharded.latents), np.asarray(one.latents)), sampler
        assert np.array_equal(sharded.stats["step_size"], one.stats["step_size"]), sampler
        print(sampler, "equal")
    """
)


def test_sharded_chains_draw_what_one_device_draws(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    child = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.split() == ["mala", "equal"]
