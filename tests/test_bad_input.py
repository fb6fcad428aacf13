"""Bad input fails at the boundary, before any work, with an error whose message names the culprit.

Each case is ``(arguments, error type, pattern)``: the pattern is the argument's name (or the
file's), so a message that does not say what to fix fails the test. Categories and counts are
listed in DEVELOPERS.md ("Bad input and faults").
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import ppl_ebm
from ppl_ebm import LatentEBM
from ppl_ebm.cli import main as cli
from ppl_ebm.diagnostics.summary import summarize
from problems import save_tiny_model

NAN, INF = float("nan"), float("inf")
RUN = dict(num_chains=2, num_warmup=2, num_samples=4, progress_bar=False)


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=2)


def _nan_row():
    params = np.zeros((2, 2))
    params[1, 0] = NAN
    return params


# -- the front door: ppl_ebm.sample's own arguments -------------------------------------------
FRONT_DOOR = [
    (dict(sampler="gibbs"), ValueError, "sampler"),
    (dict(sampler=3), ValueError, "sampler"),
    (dict(sampler=["mala"]), ValueError, "sampler"),
    (dict(backend="tensorflow"), ValueError, "backend"),
    (dict(backend=None), ValueError, "backend"),
    (dict(num_chains=0), ValueError, "num_chains"),
    (dict(num_chains=2.0), TypeError, "num_chains"),
    (dict(num_chains="4"), TypeError, "num_chains"),
    (dict(num_chains=True), TypeError, "num_chains"),
    (dict(num_warmup=-1), ValueError, "num_warmup"),
    (dict(num_warmup=1.5), TypeError, "num_warmup"),
    (dict(num_samples=0), ValueError, "num_samples"),
    (dict(num_samples=None), TypeError, "num_samples"),
    (dict(thinning=0), ValueError, "thinning"),
    (dict(thinning="2"), TypeError, "thinning"),
    (dict(num_samples=10, thinning=3), ValueError, "thinning"),
    (dict(seed="1"), TypeError, "seed"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=None), TypeError, "seed"),
    (dict(sampler="ula", initial_params=_nan_row()), ValueError, r"initial_params must be finite.*row 1"),
    (dict(initial_params=np.full((2, 2), INF)), ValueError, "initial_params must be finite"),
    (dict(initial_params=np.zeros((3, 5))), ValueError, "initial_params"),
    (dict(initial_params=np.zeros(2)), ValueError, "initial_params"),
    (dict(initial_params=[["a", "b"], ["c", "d"]]), TypeError, "initial_params"),
    (dict(return_generated="yes"), TypeError, "return_generated"),
    (dict(progress_bar=None), TypeError, "progress_bar"),
    (dict(until="forever"), ValueError, "until"),
    (dict(max_seconds=-1), ValueError, "max_seconds"),
    (dict(max_seconds="10"), ValueError, "max_seconds"),
    (dict(draws_dir=123), TypeError, "draws_dir"),
    (dict(model_args="x"), TypeError, "model_args"),
    (dict(model_kwargs=[1]), TypeError, "model_kwargs"),
    (dict(until="converged", target_rhat="a"), TypeError, "target_rhat"),
    (dict(until="converged", target_rhat=0.9), ValueError, "target_rhat"),
    (dict(until="converged", target_ess=-1), ValueError, "target_ess"),
    (dict(until="converged", max_samples=2), ValueError, "max_samples"),
    (dict(device="tpu"), ValueError, "device"),
    # Results larger than memory: refused before allocating, naming what to lower.
    (dict(sampler="ula", num_chains=10**6, num_warmup=0, num_samples=10**7), MemoryError, "num_chains.*draws_dir"),
    (dict(sampler="ula", num_chains=10**7, num_samples=10**6, return_generated=True), MemoryError,
     "num_chains.*return_generated"),
]

# -- our kernels' options, checked by the sampler registry ----------------------------------------
OPTIONS = [
    (dict(sampler="ula", step_size=-0.1), ValueError, "step_size"),
    (dict(sampler="ula", step_size=0), ValueError, "step_size"),
    (dict(sampler="ula", step_size=NAN), ValueError, "step_size"),
    (dict(sampler="ula", step_size=INF), ValueError, "step_size"),
    (dict(sampler="ula", step_size="0.1"), TypeError, "step_size"),
    (dict(sampler="ula", step_size=True), TypeError, "step_size"),
    (dict(sampler="ula", noise_scale="0.1"), TypeError, "noise_scale"),
    (dict(sampler="ula", noise_scale=-1.0), ValueError, "noise_scale"),
    (dict(sampler="ula", decay_rate=0.0), ValueError, "decay_rate"),
    (dict(sampler="ula", decay_rate=1.5), ValueError, "decay_rate"),
    (dict(sampler="ula", decay_rate="x"), TypeError, "decay_rate"),
    (dict(sampler="ula", decay_every=0), ValueError, "decay_every"),
    (dict(sampler="ula", decay_every=2.5), TypeError, "decay_every"),
    (dict(sampler="ula", noise_decay_rate=2.0), ValueError, "noise_decay_rate"),
    (dict(sampler="ula", target_accept_prob=0.8), ValueError, "target_accept_prob"),
    (dict(sampler="mala", target_accept_prob=1.5), ValueError, "target_accept_prob"),
    (dict(sampler="mala", target_accept_prob=0), ValueError, "target_accept_prob"),
    (dict(sampler="mala", target_accept_prob="0.8"), TypeError, "target_accept_prob"),
    (dict(sampler="mala", adapt_step_size="yes"), TypeError, "adapt_step_size"),
    (dict(sampler="mala", per_chain_step_size=1), TypeError, "per_chain_step_size"),
    (dict(sampler="mala", independence_every=1), ValueError, "independence_every"),
    (dict(sampler="mala", independence_every=2.5), ValueError, "independence_every"),
    (dict(sampler="mala-imh", independence_every=None), ValueError, "independence_every"),
    (dict(sampler="mala", stepsize=0.1), ValueError, "stepsize"),
]

# -- the PPLs' NUTS/HMC options, checked by the names each PPL takes -----------------------------
PPL_OPTIONS = [
    (dict(sampler="nuts", backend="jax", step_size=-0.1), ValueError, "step_size"),
    (dict(sampler="nuts", backend="jax", step_size=NAN), ValueError, "step_size"),
    (dict(sampler="hmc", backend="jax", step_size=NAN), ValueError, "step_size"),
    (dict(sampler="hmc", backend="torch", step_size=-0.1), ValueError, "step_size"),
    (dict(sampler="nuts", backend="torch", step_size="0.1"), TypeError, "step_size"),
    (dict(sampler="nuts", backend="jax", target_accept_prob="0.8"), TypeError, "target_accept_prob"),
    (dict(sampler="nuts", backend="torch", target_accept_prob=1.0), ValueError, "target_accept_prob"),
    (dict(sampler="nuts", backend="torch", max_tree_depth=0), ValueError, "max_tree_depth"),
    (dict(sampler="nuts", backend="jax", max_tree_depth=2.5), TypeError, "max_tree_depth"),
    (dict(sampler="hmc", backend="jax", num_steps=0), ValueError, "num_steps"),
    (dict(sampler="hmc", backend="torch", num_steps=-3), ValueError, "num_steps"),
    (dict(sampler="hmc", backend="torch", trajectory_length=-1.0), ValueError, "trajectory_length"),
    (dict(sampler="nuts", backend="torch", dense_mass=True), ValueError, "dense_mass"),
    (dict(sampler="nuts", backend="jax", full_mass=True), ValueError, "full_mass"),
    (dict(sampler="nuts", backend="torch", adapt_step_size="no"), TypeError, "adapt_step_size"),
    (dict(sampler="nuts", backend="jax", foo=1), ValueError, "foo"),
    (dict(sampler="hmc", backend="jax", max_tree_depth=5), ValueError, "max_tree_depth"),
    (dict(sampler="hmc", backend="torch", max_leapfrog_steps=0), ValueError, "max_leapfrog_steps"),
    (dict(sampler="nuts", backend="jax", max_leapfrog_steps=64), ValueError, "max_leapfrog_steps"),
]

# -- BlackJAX's many-chain baselines: JAX only, their own warmup, their options ------------------
BLACKJAX = [
    (dict(sampler="chees", backend="torch"), ValueError, "backend 'jax' only"),
    (dict(sampler="meads", backend="torch"), ValueError, "backend 'jax' only"),
    (dict(sampler="chees", backend="jax", num_warmup=0), ValueError, "num_warmup"),
    (dict(sampler="chees", backend="jax", max_seconds=5), ValueError, "max_seconds"),
    (dict(sampler="chees", backend="jax", learning_rate=-1.0), ValueError, "learning_rate"),
    (dict(sampler="chees", backend="jax", max_leapfrog_steps=0), ValueError, "max_leapfrog_steps"),
    (dict(sampler="meads", backend="jax", step_size=0.1), ValueError, "step_size"),
    (dict(sampler="meads", backend="jax", num_chains=6), ValueError, "num_chains"),
    (dict(sampler="mams", backend="torch"), ValueError, "backend 'jax' only"),
    (dict(sampler="mams", backend="jax", target_accept_prob=1.5), ValueError, "target_accept_prob"),
    (dict(sampler="mams", backend="jax", tuning_chains=0), ValueError, "tuning_chains"),
]


@pytest.mark.parametrize("kwargs, error, pattern", FRONT_DOOR + OPTIONS + PPL_OPTIONS + BLACKJAX)
def test_sample_refuses_bad_arguments(problem, kwargs, error, pattern):
    arguments = dict(sampler="mala", backend="torch", **RUN)
    arguments.update(kwargs)
    with pytest.raises(error, match=pattern):
        ppl_ebm.sample(problem.ebm, **arguments)


def test_a_draws_dir_that_is_a_file_is_refused(problem, tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(ValueError, match="draws_dir"):
        ppl_ebm.sample(problem.ebm, "ula", **RUN, draws_dir=tmp_path / "taken")
    with pytest.raises(ValueError, match="draws_dir"):
        ppl_ebm.sample(problem.ebm, "ula", **RUN, draws_dir=tmp_path / "taken" / "run")


@pytest.mark.parametrize("sampler, backend", [("flex2mcmc", "jax"), ("nuts", "torch"), ("chees", "jax")])
def test_a_run_over_processes_refuses_samplers_that_cannot_split(problem, monkeypatch, sampler, backend):
    # As if this process were one of two (torchrun / jax.distributed): only the streaming samplers
    # split their chains; FlEx2MCMC would train one flow per process, the others have no split.
    from ppl_ebm.drivers import distributed

    monkeypatch.setattr(distributed, "process_count", lambda backend: 2)
    with pytest.raises(ValueError, match=f"one of 2 .*sampler='{sampler}'"):
        ppl_ebm.sample(problem.ebm, sampler, backend, **RUN)


# -- targets: LatentEBM -------------------------------------------------------------------------
def _linear(n_in=2, n_out=3, dtype=torch.float32):
    return torch.nn.Linear(n_in, n_out).to(dtype)


TARGETS = [
    (dict(generator="not a module"), TypeError, "generator"),
    (dict(critic=lambda x: x), TypeError, "critic"),
    (dict(critic_output="prob"), ValueError, "critic_output"),
    (dict(temperature=0), ValueError, "temperature"),
    (dict(temperature=-1.0), ValueError, "temperature"),
    (dict(temperature="1"), TypeError, "temperature"),
    (dict(temperature=NAN), ValueError, "temperature"),
    (dict(extended_noise_scale=-1.0), ValueError, "extended_noise_scale"),
    (dict(extended_noise_scale="0.1"), TypeError, "extended_noise_scale"),
    (dict(extended_noise_scale=INF), ValueError, "extended_noise_scale"),
    (dict(latent_dim=0), ValueError, "latent_dim"),
    (dict(latent_dim=2.5), ValueError, "latent_dim"),
    (dict(latent_dim=5), ValueError, "latent_dim"),
    (dict(generator=_linear(dtype=torch.float64)), ValueError, "generator.*float64.*float32"),
    (dict(critic=_linear(3, 1, torch.float16)), ValueError, "critic.*float16.*float32"),
    (dict(prior="cauchy"), ValueError, "prior"),
    (dict(prior=torch.distributions.Normal(torch.zeros(5), 1.0)), ValueError, "prior"),
    (dict(critic=_linear(4, 1)), ValueError, "critic"),
    (dict(critic=_linear(3, 2)), ValueError, "critic"),
]


@pytest.mark.parametrize("kwargs, error, pattern", TARGETS)
def test_latent_ebm_refuses_bad_arguments(kwargs, error, pattern):
    arguments = dict(generator=_linear(), critic=_linear(3, 1), latent_dim=2)
    arguments.update(kwargs)
    with pytest.raises(error, match=pattern):
        LatentEBM(**arguments)


# -- the PPL-facing kernels (Pyro / NumPyro MCMCKernel faces of ULA and MALA) ---------------------
def _potential(z):
    return (z**2).sum(-1) / 2


KERNELS = [
    ("pyro", "ULA", dict(num_chains=0), ValueError, "num_chains"),
    ("numpyro", "ULA", dict(num_chains=0), ValueError, "num_chains"),
    ("pyro", "MALA", dict(num_chains="2"), TypeError, "num_chains"),
    ("numpyro", "MALA", dict(num_chains=2.0), TypeError, "num_chains"),
    ("pyro", "MALA", dict(seed="1"), TypeError, "seed"),
    ("pyro", "ULA", dict(seed=-1), ValueError, "seed"),
    ("pyro", "MALA", dict(target_accept_prob=1.5), ValueError, "target_accept_prob"),
    ("numpyro", "MALA", dict(target_accept_prob="high"), TypeError, "target_accept_prob"),
    ("pyro", "ULA", dict(step_size="a"), TypeError, "step_size"),
    ("numpyro", "ULA", dict(step_size=-1.0), ValueError, "step_size"),
    ("numpyro", "ULA", dict(decay_every=-2), ValueError, "decay_every"),
]


@pytest.mark.parametrize("ppl, kernel, kwargs, error, pattern", KERNELS)
def test_ppl_kernels_refuse_bad_options(ppl, kernel, kwargs, error, pattern):
    from ppl_ebm.ppl import numpyro_kernels, pyro_kernels

    module = pyro_kernels if ppl == "pyro" else numpyro_kernels
    with pytest.raises(error, match=pattern):
        getattr(module, kernel)(potential_fn=_potential, **kwargs)


def test_ppl_kernels_refuse_non_finite_starting_points():
    import jax

    from ppl_ebm.ppl import numpyro_kernels, pyro_kernels

    start = _nan_row()
    kernel = pyro_kernels.MALA(potential_fn=_potential, num_chains=2, seed=0, initial_params=torch.tensor(start))
    with pytest.raises(ValueError, match="initial_params must be finite"):
        kernel.setup(2)
    kernel = numpyro_kernels.MALA(potential_fn=lambda z: (z**2).sum(-1) / 2, num_chains=2)
    with pytest.raises(ValueError, match="init_params must be finite"):
        kernel.init(jax.random.key(0), 2, start, (), {})


# -- diagnostics --------------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["arviz", "fast"])
def test_diagnostics_refuse_chains_of_fewer_than_four_draws(engine):
    with pytest.raises(ValueError, match=">= 4 draws"):
        summarize(np.random.default_rng(0).normal(size=(2, 3, 2)), engine=engine)


def test_diagnostics_refuse_an_unknown_engine():
    with pytest.raises(ValueError, match="engine"):
        summarize(np.zeros((2, 10, 2)), engine="slow")


# -- the CLI: every mistake is one line naming the option, before any study runs -----------------
def _cli_cases(tmp_path):
    taken = tmp_path / "taken"
    taken.write_text("")
    return [
        (["compare", "--model", "gaussian", "--output", str(taken)], "--output"),
        (["compare", "--model", "gaussian", "--output", str(taken / "sub")], "--output"),
        (["compare", "--output", str(taken)], "--output"),
        (["mixing", "--output", str(taken)], "--output"),
        (["samplers", "--output", str(taken)], "--output"),
        (["train", "--dataset", "25gaussians", "--name", "x", "--output", str(taken)], "--output"),
        (["compare", "--model", "no-such-model"], "no-such-model"),
        (["mixing", "--model", "no-such-model", "--output", str(tmp_path / "m")], "no-such-model"),
        (["compare", "--model", "gaussian", "--chains", "0"], "--chains"),
        (["compare", "--model", "gaussian", "--step-size", "-1"], "--step-size"),
        (["compare", "--seed", "abc"], "--seed"),
        (["compare", "--samplers", "gibbs"], "--samplers"),
        (["train", "--dataset", "25gaussians", "--name", "x", "--fine-tune-steps", "-1"], "--fine-tune-steps"),
        (["compare", "--hmc-warmup", "0"], "hmc_warmup"),
        (["samplers", "--parts", "bias", "--bias-targets", "banana", "--importance-draws", "10"], "importance_draws"),
        (["samplers", "--parts", "bias", "--step-size-adaptation", "adam"], "step_size_adaptation"),
    ]


CLI_CASES = 16


@pytest.mark.parametrize("case", range(CLI_CASES))
def test_cli_mistakes_are_one_line_naming_the_option(case, tmp_path, capsys):
    argv, pattern = _cli_cases(tmp_path)[case]
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert pattern in error and "error" in error, error


# -- loaders: a model folder's config.json --------------------------------------------------------
CONFIGS = [
    (lambda c: "{not json", "config.json.*not valid JSON"),
    (lambda c: [1, 2], "config.json.*JSON object"),
    (lambda c: {k: v for k, v in c.items() if k != "name"}, "config.json.*name"),
    (lambda c: {**c, "critic_output": "logits"}, "config.json.*critic_output"),
    (lambda c: {k: v for k, v in c.items() if k != "critic_output"}, "config.json.*critic_output"),
    (lambda c: {k: v for k, v in c.items() if k != "generator"}, "config.json.*generator"),
    (lambda c: {**c, "critic": {"architecture": "no_such_net", "options": {}}}, "config.json.*architecture"),
    (lambda c: {**c, "critic": {**c["critic"], "options": {"width": 0}}}, "config.json.*width"),
    (lambda c: {**c, "generator": {**c["generator"], "options": {**c["generator"]["options"], "width": 8}}},
     "generator.safetensors"),
]


@pytest.mark.parametrize("case", range(len(CONFIGS)))
def test_loader_names_the_bad_config(case, tmp_path):
    from ppl_ebm.zoo import load_model

    folder = save_tiny_model(tmp_path / "tiny")
    edit, pattern = CONFIGS[case]
    config = edit(json.loads((folder / "config.json").read_text()))
    (folder / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(ValueError, match=pattern):
        load_model(folder)


def test_loader_names_a_missing_model_and_a_missing_weights_file(tmp_path):
    from ppl_ebm.zoo import load_model

    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_model("no-such-model")
    folder = save_tiny_model(tmp_path / "tiny")
    (folder / "critic.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="critic.safetensors"):
        load_model(folder)


def count_cases() -> dict[str, int]:
    """The cases of this module by category (DEVELOPERS.md lists them)."""
    return {"front door": len(FRONT_DOOR) + 1, "sampler options": len(OPTIONS), "PPL NUTS/HMC options": len(PPL_OPTIONS),
            "BlackJAX baselines": len(BLACKJAX),
            "targets": len(TARGETS), "PPL kernels": len(KERNELS) + 2, "diagnostics": 3, "CLI": CLI_CASES,
            "loaders": len(CONFIGS) + 2}


def test_case_count():
    assert sum(count_cases().values()) >= 100, count_cases()
    assert not math.isnan(sum(count_cases().values()))
