"""The p_disc sampling check of ``ppl-ebm egan-sample`` on an energy with a known density, and its power."""

import jax.numpy as jnp
import numpy as np
import pytest

import ppl_ebm
from ppl_ebm.metrics.grid_kl import Grid, grid_kl, histogram_on_grid
from ppl_ebm.studies.egan_sampling import _initial_unconstrained, cell_masses, coarsen, null_kl, p_disc_model

GRID = Grid(np.linspace(-4.0, 4.0, 30), np.linspace(-4.0, 4.0, 30))
MEANS = jnp.array([[-1.5, -1.0], [1.5, 1.0]])


def _energy(scale, x):
    # -log of an equal mixture of two unit Gaussians, times scale: a bimodal energy with known density.
    squared = jnp.sum((x[:, None, :] - MEANS[None]) ** 2, axis=-1)
    return (-scale * jnp.log(jnp.mean(jnp.exp(-0.5 * squared), axis=1)))[:, None]


def _draws(scale, seed=0):
    target = p_disc_model(_energy, scale, GRID.extent)
    reference = cell_masses(lambda x: np.asarray(_energy(1.0, jnp.asarray(x)))[:, 0], GRID)
    start = _initial_unconstrained(reference, GRID, GRID.extent, 64, seed)
    result = ppl_ebm.sample(target, "mala", backend="jax", num_chains=64, num_warmup=150, num_samples=300,
                            seed=seed, initial_params=start, progress_bar=False)
    return np.asarray(result.posterior["x"], dtype=np.float64), reference


def test_cell_masses_of_a_gaussian_match_its_cdf():
    from scipy.stats import norm

    grid = Grid(np.linspace(-3.0, 3.0, 13), np.linspace(-3.0, 3.0, 13))
    masses = cell_masses(lambda x: 0.5 * np.sum(x**2, axis=1), grid, refine=16)
    edges = np.concatenate([grid.x - 0.25, [grid.x[-1] + 0.25]])
    one_d = np.diff(norm.cdf(edges))
    exact = np.outer(one_d, one_d)
    np.testing.assert_allclose(masses, exact / exact.sum(), rtol=2e-3)


@pytest.mark.slow
def test_mala_draws_of_p_disc_match_the_cell_masses_and_a_wrong_target_does_not():
    draws, reference = _draws(1.0)
    null = null_kl(draws, GRID, repeats=100, seed=1)
    kl = grid_kl(histogram_on_grid(draws.reshape(-1, 2), GRID), reference)
    # 1.5x the 95 % quantile: a margin for platform differences in the draws (seeded, so no flakes here).
    assert kl <= np.quantile(null, 0.95) * 1.5
    # Power: the same run on exp(-c / 2) (a flatter density) is far outside the null.
    wrong, _ = _draws(0.5)
    wrong_kl = grid_kl(histogram_on_grid(wrong.reshape(-1, 2), GRID), reference)
    assert wrong_kl > 3 * np.quantile(null_kl(wrong, GRID, repeats=100, seed=1), 0.95)


def test_null_kl_refuses_one_chain():
    with pytest.raises(ValueError, match="chains"):
        null_kl(np.zeros((1, 10, 2)), GRID)


def test_coarsen_sums_blocks_and_refuses_a_block_that_does_not_divide():
    density = np.arange(16.0).reshape(4, 4)
    np.testing.assert_array_equal(coarsen(density, 2), [[10.0, 18.0], [42.0, 50.0]])
    with pytest.raises(ValueError, match="block must divide"):
        coarsen(density, 3)
