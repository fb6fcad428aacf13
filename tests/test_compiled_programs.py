"""JAX kernels keep their compiled programs across sample() calls on a LatentEBMJax target (or a
torch model whose network is unchanged),
with the weights as an argument: a second call compiles nothing and gives the draws a fresh
compile gives, for the same weights and for other weights of the same shapes. Hyper-parameters
(step size, noise, decay, target acceptance, warmup length) are traced arguments too, so
another value reuses the program and gives a fresh compile's draws; only the sampler's
structure (which sampler, the independence cycle, which adaptation) compiles its own."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch

import ppl_ebm
from ppl_ebm.drivers import run_jax

RUN = dict(num_chains=16, num_warmup=30, num_samples=40, seed=1, progress_bar=False)


@pytest.fixture(scope="module")
def ebm_jax():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0).ebm.to_jax()


def _fresh(target, sampler, run=RUN, **options):
    run_jax._PROGRAMS.clear()
    return ppl_ebm.sample(target, sampler, "jax", **run, **options)


@pytest.mark.parametrize("sampler, options", [("ula", {"step_size": 0.05}), ("mala", {"independence_every": 2})])
def test_second_call_compiles_nothing_and_gives_the_same_draws(ebm_jax, sampler, options):
    first = _fresh(ebm_jax, sampler, **options)
    assert first.stats["compile_seconds"] > 0
    again = ppl_ebm.sample(ebm_jax, sampler, "jax", **RUN, **options)
    assert again.stats["compile_seconds"] == 0.0
    np.testing.assert_array_equal(again.latents, first.latents)


def test_other_weights_of_the_same_shapes_reuse_the_program_with_their_own_values(ebm_jax):
    shifted = jax.tree_util.tree_map(lambda w: w * 1.5, ebm_jax)
    expected = _fresh(shifted, "mala").latents
    ppl_ebm.sample(ebm_jax, "mala", "jax", **RUN)  # compiles, under the same key as `shifted`
    reused = ppl_ebm.sample(shifted, "mala", "jax", **RUN)
    assert reused.stats["compile_seconds"] == 0.0
    np.testing.assert_array_equal(reused.latents, expected)
    # The weights are not baked in: the original's draws differ from the shifted target's.
    assert not np.array_equal(ppl_ebm.sample(ebm_jax, "mala", "jax", **RUN).latents, expected)


VALUES = [
    ("ula", {"step_size": 0.05}, {"step_size": 0.1}),
    ("ula", {"step_size": 0.05}, {"step_size": 0.05, "decay_every": 10}),
    ("ula", {"step_size": 0.05}, {"step_size": 0.05, "noise_scale": 0.1}),
    ("mala", {}, {"target_accept_prob": 0.8}),
    ("mala", {}, {"step_size": 0.3}),
]


@pytest.mark.parametrize("sampler, first, second", VALUES)
def test_other_hyper_parameter_values_reuse_the_program_with_their_own_values(ebm_jax, sampler, first, second):
    expected = _fresh(ebm_jax, sampler, **second).latents
    run_jax._PROGRAMS.clear()
    ppl_ebm.sample(ebm_jax, sampler, "jax", **RUN, **first)
    other = ppl_ebm.sample(ebm_jax, sampler, "jax", **RUN, **second)
    assert other.stats["compile_seconds"] == 0.0
    np.testing.assert_array_equal(other.latents, expected)
    # The values are not baked in: the first setting's draws differ.
    assert not np.array_equal(ppl_ebm.sample(ebm_jax, sampler, "jax", **RUN, **first).latents, expected)


@pytest.mark.parametrize("first, second", [
    (("mala", {}), ("mala", {"independence_every": 3})),
    (("mala", {}), ("mala", {"adapt_step_size": False})),
    (("mala", {}), ("mala", {"per_chain_step_size": False})),
    (("ula", {"step_size": 0.05}), ("mala", {})),
])
def test_another_structure_compiles_its_own_program(ebm_jax, first, second):
    expected = _fresh(ebm_jax, second[0], **second[1]).latents
    run_jax._PROGRAMS.clear()
    ppl_ebm.sample(ebm_jax, first[0], "jax", **RUN, **first[1])
    other = ppl_ebm.sample(ebm_jax, second[0], "jax", **RUN, **second[1])
    assert other.stats["compile_seconds"] > 0
    np.testing.assert_array_equal(other.latents, expected)


def test_the_warmup_length_is_a_value_not_part_of_the_key(ebm_jax):
    # 100 and 200 warmup steps run the same chunk shapes (chunks of 100); the adaptation
    # schedule reads the length as a traced argument, so sharing the program keeps the draws.
    run = dict(RUN, num_warmup=200)
    expected = _fresh(ebm_jax, "mala", run).latents
    run_jax._PROGRAMS.clear()
    ppl_ebm.sample(ebm_jax, "mala", "jax", **dict(RUN, num_warmup=100))
    other = ppl_ebm.sample(ebm_jax, "mala", "jax", **run)
    assert other.stats["compile_seconds"] == 0.0
    np.testing.assert_array_equal(other.latents, expected)


def test_the_ula_step_sweep_compiles_one_program():
    # ppl-ebm compare's sweep: seven step sizes on one target, one compiled chunk program.
    torch_ebm = ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0).ebm
    run_jax._PROGRAMS.clear()
    compiles = [ppl_ebm.sample(torch_ebm, "ula", "jax", **dict(RUN, num_warmup=0), step_size=step)
                .stats["compile_seconds"] for step in (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)]
    assert compiles[0] > 0 and compiles[1:] == [0.0] * 6
    assert len(run_jax._PROGRAMS) == 1


def test_a_torch_target_reuses_its_program_with_the_weights_it_has_now():
    # sample() translates a torch model on every call; an unchanged network keeps its
    # translated function (torch_to_jax._TRANSLATIONS), so the program is reused, and the
    # weights are read afresh: changed in place, they give a fresh compile's draws.
    torch_ebm = ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=0).ebm
    first = _fresh(torch_ebm, "mala")
    again = ppl_ebm.sample(torch_ebm, "mala", "jax", **RUN)
    assert again.stats["compile_seconds"] == 0.0
    np.testing.assert_array_equal(again.latents, first.latents)
    with torch.no_grad():
        for weight in torch_ebm.generator.parameters():
            weight.mul_(1.5)
    reused = ppl_ebm.sample(torch_ebm, "mala", "jax", **RUN)
    assert reused.stats["compile_seconds"] == 0.0
    np.testing.assert_array_equal(reused.latents, _fresh(torch_ebm, "mala").latents)
    assert not np.array_equal(reused.latents, first.latents)


def test_a_warmup_chunk_as_long_as_the_first_sampling_chunk_runs_its_program(ebm_jax):
    # 20 warmup steps then 20 draws: one chunk program (the draws' one, its positions dropped in
    # warmup), not two. The chains move the same whichever program ran the warmup: a run of 100
    # draws (whose warmup runs the no-draws program) starts with the same 20 draws.
    run = dict(num_chains=16, num_warmup=20, seed=1, progress_bar=False)
    run_jax._PROGRAMS.clear()
    short = ppl_ebm.sample(ebm_jax, "mala", "jax", num_samples=20, **run)
    assert len(run_jax._PROGRAMS) == 1
    longer = ppl_ebm.sample(ebm_jax, "mala", "jax", num_samples=100, **run)
    assert len(run_jax._PROGRAMS) == 3  # its warmup's (20 steps, no draws) and its draws' (100)
    np.testing.assert_array_equal(short.latents, longer.latents[:, :20])
