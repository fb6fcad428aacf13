"""The typed records that replaced string-keyed dicts: ``SampleResult.stats`` is a
``SamplerStats`` from every sampler and ``summarize`` returns a ``Summary``. Both read as the
dicts they replaced (present keys, absent optional keys, unknown keys), serialise to JSON, and
the per-chain statistics still reach ArviZ's ``sample_stats``."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

import ppl_ebm
from ppl_ebm.diagnostics import arviz_compat, compare, summarize
from ppl_ebm.diagnostics.summary import ENGINES, Summary
from ppl_ebm.result import SampleResult, SamplerStats

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Keys of every run's stats (``resumed_at_iteration`` only for our Langevin kernels).
ALWAYS = {"acceptance", "step_size", "divergences", "nonfinite", "stopped", "grad_evals", "wall_seconds",
          "compile_seconds", "warmup_seconds", "sampling_seconds", "budget_stopped", "setup_seconds",
          "constrain_seconds"}
PER_CHAIN = ("acceptance", "step_size", "divergences", "nonfinite", "stopped", "grad_evals")

#: The keys ``summarize`` returned as a dict before ``Summary``, in that dict's order.
SUMMARY_KEYS = (
    "ess_bulk", "ess_tail", "rhat", "mcse_mean", "mcse_sd", "iat",
    "ess_bulk_min", "ess_bulk_median", "ess_tail_min", "ess_tail_median", "rhat_max", "mcse_mean_max",
    "mcse_sd_max", "iat_max", "iat_median", "scale",
    "ess_bulk_min_scaled", "ess_bulk_median_scaled", "ess_tail_min_scaled", "ess_tail_median_scaled",
    "mcse_mean_max_scaled", "ess_per_second", "ess_per_second_no_compile", "ess_per_second_sampling", "ess_per_grad", "grad_evals",
    "wall_seconds", "sampling_seconds", "chains_total", "chains_nonfinite", "chains_used", "subsampled",
    "draws", "dim", "event_shape",
)
RESULT_KEYS = ("sampler", "backend", "acceptance_mean", "divergences", "nonfinite")

CHAINS = 4
RUNS = {
    ("mala", "torch"): dict(num_warmup=20, num_samples=20),
    ("mala", "jax"): dict(num_warmup=20, num_samples=20),
    ("nuts", "torch"): dict(num_warmup=10, num_samples=10),
    ("nuts", "jax"): dict(num_warmup=10, num_samples=10),
}


@pytest.fixture(scope="module")
def problem():
    return ppl_ebm.linear_gaussian_problem(latent_dim=2, data_dim=3, seed=2)


@pytest.fixture(scope="module")
def results(problem):
    return {key: ppl_ebm.sample(problem.ebm, key[0], key[1], num_chains=CHAINS, seed=3, progress_bar=False,
                                **settings)
            for key, settings in RUNS.items()}


def _hand_stats(**changes) -> SamplerStats:
    fields = dict(acceptance=np.array([0.5, 0.7]), step_size=np.array([0.1, 0.2]),
                  divergences=np.array([0, 1]), nonfinite=np.array([0, 0]), stopped=np.array([False, True]),
                  grad_evals=np.array([11, 11]), wall_seconds=2.0, compile_seconds=0.5, warmup_seconds=0.5,
                  sampling_seconds=1.0, budget_stopped=False)
    fields.update(changes)
    return SamplerStats(**fields)


# ----------------------------------------------------------------------------- SamplerStats


@pytest.mark.parametrize("key", list(RUNS), ids="-".join)
def test_every_sampler_returns_sampler_stats_read_as_the_dict_was(results, key):
    stats = results[key].stats
    assert isinstance(stats, SamplerStats)
    # Our MALA also reports its adapted (by default diagonal) inverse mass matrix.
    expected = ALWAYS | ({"resumed_at_iteration", "inverse_mass_matrix"} if key[0] == "mala" else set())
    assert set(stats) == set(stats.keys()) == expected and len(stats) == len(expected)
    for name in PER_CHAIN:
        assert stats[name] is getattr(stats, name) and stats[name].shape == (CHAINS,), name
    assert dict(stats.items())["wall_seconds"] == stats.wall_seconds > 0
    # Absent optional statistics behave as missing dict keys.
    for name in ("independence_acceptance", "converged", "convergence_history", "steps_taken"):
        assert name not in stats and stats.get(name) is None and stats.get(name, "default") == "default"
        with pytest.raises(KeyError):
            stats[name]
    assert ("resumed_at_iteration" in stats) == (key[0] == "mala")
    with pytest.raises(KeyError, match="acceptance_rate"):
        stats["acceptance_rate"]
    assert "acceptance_rate" not in stats and 3 not in stats


def test_sampler_stats_is_read_only_and_checks_chain_counts():
    stats = _hand_stats()
    with pytest.raises(TypeError):
        stats["wall_seconds"] = 1.0  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.wall_seconds = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="step_size must have shape"):
        _hand_stats(step_size=np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="independence_acceptance must have shape"):
        _hand_stats(independence_acceptance=np.ones((2, 1)))
    with pytest.raises(TypeError):
        _hand_stats(acceptance_rate=np.ones(2))  # no such field


def test_independence_acceptance_is_present_only_with_independence_steps(problem):
    result = ppl_ebm.sample(problem.ebm, "mala", "torch", num_chains=CHAINS, num_warmup=20, num_samples=20,
                            independence_every=5, progress_bar=False)
    stats = result.stats
    assert "independence_acceptance" in stats and stats["independence_acceptance"].shape == (CHAINS,)
    ss = result.to_arviz()["sample_stats"]
    np.testing.assert_array_equal(ss["independence_acceptance"].values[:, 0], stats["independence_acceptance"])


def test_until_converged_stats_round_trip_through_json(problem):
    result = ppl_ebm.sample(problem.ebm, "mala", "torch", num_chains=CHAINS, num_warmup=20, num_samples=20,
                            until="converged", target_ess=1e9, max_samples=40, progress_bar=False)
    stats = result.stats
    assert isinstance(stats, SamplerStats) and stats["converged"] is False and stats["steps_taken"] == 60
    assert stats["target_rhat"] == 1.01 and stats["target_ess"] == 1e9
    assert [row["draws"] for row in stats["convergence_history"]] == [20, 40]
    record = stats.to_dict()
    assert list(record) == list(stats) and record["acceptance"] is stats.acceptance
    loaded = json.loads(json.dumps(stats.to_json()))
    assert list(loaded) == list(stats)
    for name, value in stats.items():
        if isinstance(value, np.ndarray):
            assert isinstance(loaded[name], list), name
            np.testing.assert_array_equal(np.asarray(loaded[name], dtype=value.dtype), value, err_msg=name)
        else:
            assert loaded[name] == value, name


def test_json_keeps_nan_and_leaves_absent_fields_out():
    stats = _hand_stats(compile_seconds=math.nan)
    loaded = json.loads(json.dumps(stats.to_json()))
    assert set(loaded) == ALWAYS and math.isnan(loaded["compile_seconds"])
    assert loaded["stopped"] == [False, True] and loaded["grad_evals"] == [11, 11]


@pytest.mark.parametrize("key", list(RUNS), ids="-".join)
def test_arviz_export_carries_every_per_chain_stat(results, key):
    result = results[key]
    stats = result.stats
    data = result.to_arviz()
    ss = data["sample_stats"]
    draws = result.num_draws
    for name in ("acceptance", "step_size", "stopped"):
        exported = ss[arviz_compat.PER_CHAIN_RENAMES[name]].values
        assert exported.shape == (CHAINS, draws), name
        np.testing.assert_array_equal(exported, np.repeat(stats[name][:, None], draws, axis=1), err_msg=name)
    for name in arviz_compat.PER_CHAIN_COUNTS:
        np.testing.assert_array_equal(data.attrs[f"{name}_per_chain"], stats[name], err_msg=name)
        assert data.attrs[f"{name}_total"] == int(stats[name].sum()), name
    for name in ("wall_seconds", "warmup_seconds", "sampling_seconds", "budget_stopped"):
        assert data.attrs[name] == stats[name], name
    # NumPyro's NUTS does not time compilation apart (NaN); a NaN attribute is still carried.
    assert data.attrs["compile_seconds"] == stats["compile_seconds"] or (
        math.isnan(data.attrs["compile_seconds"]) and math.isnan(stats["compile_seconds"]))


def test_sample_result_still_takes_a_hand_built_mapping():
    stats = {"acceptance": np.array([0.5, 0.6]), "grad_evals": np.array([3, 4]), "wall_seconds": 1.0}
    result = SampleResult(np.zeros((2, 5, 1), dtype=np.float32), stats, "mala", "torch")
    assert result.total_grad_evals == 7
    assert result.to_arviz()["sample_stats"]["acceptance_rate"].shape == (2, 5)


# ----------------------------------------------------------------------------- Summary


def _draws(chains: int = 30, draws: int = 60, dim: int = 3) -> np.ndarray:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((chains, draws, dim))
    for t in range(1, draws):  # AR(1), so the ESS differ from the draw count
        x[:, t] = 0.6 * x[:, t - 1] + 0.8 * x[:, t]
    x = x.astype(np.float32)
    x[4, 30:] = np.nan  # one stopped chain: left out
    return x


def test_summarize_returns_the_old_dicts_keys_and_values():
    x = _draws()
    summary = summarize(x, max_chains=10, seed=5, wall_seconds=2.0, grad_evals=np.full(30, 100),
                        sampling_seconds=1.5)
    assert isinstance(summary, Summary)
    assert tuple(summary) == SUMMARY_KEYS and len(summary) == len(SUMMARY_KEYS)
    # The values, from their definitions: the engine on the same chain subset summarize drew.
    usable = np.flatnonzero(np.isfinite(x).all(axis=(1, 2)))
    chosen = np.sort(np.random.default_rng(5).choice(usable, size=10, replace=False))
    per_dim = ENGINES["arviz"](x, chains=chosen, block_bytes=1 << 27)
    for name, value in per_dim.items():
        np.testing.assert_array_equal(summary[name], value, err_msg=name)
    scale = 29 / 10
    assert summary["scale"] == pytest.approx(scale) and summary["subsampled"] is True
    for name, fn in (("ess_bulk_min", np.min), ("ess_bulk_median", np.median), ("ess_tail_min", np.min),
                     ("ess_tail_median", np.median)):
        base = name.rsplit("_", 1)[0]
        assert summary[name] == float(fn(per_dim[base])), name
        assert summary[f"{name}_scaled"] == summary[name] * summary["scale"], name
    for name, fn in (("rhat_max", np.max), ("mcse_mean_max", np.max), ("mcse_sd_max", np.max),
                     ("iat_max", np.max), ("iat_median", np.median)):
        assert summary[name] == float(fn(per_dim[name.rsplit("_", 1)[0]])), name
    assert summary["mcse_mean_max_scaled"] == summary["mcse_mean_max"] / math.sqrt(summary["scale"])
    assert summary["ess_per_second"] == summary["ess_bulk_min_scaled"] / 2.0
    assert summary["ess_per_second_sampling"] == summary["ess_bulk_min_scaled"] / 1.5
    assert summary["ess_per_grad"] == summary["ess_bulk_min_scaled"] / 3000
    assert (summary["grad_evals"], summary["wall_seconds"], summary["sampling_seconds"]) == (3000, 2.0, 1.5)
    assert (summary["chains_total"], summary["chains_nonfinite"], summary["chains_used"]) == (30, 1, 10)
    assert (summary["draws"], summary["dim"], summary["event_shape"]) == (60, 3, (3,))
    # An array has no sampler: those keys are absent, as they were from the dict.
    for name in RESULT_KEYS:
        assert name not in summary and summary.get(name) is None
    with pytest.raises(KeyError):
        summary["ess"]


def test_summary_of_a_sample_result_and_its_json(results):
    result = results[("mala", "torch")]
    summary = summarize(result)
    assert tuple(summary) == SUMMARY_KEYS + RESULT_KEYS
    assert (summary["sampler"], summary["backend"]) == ("mala", "torch")
    assert summary["acceptance_mean"] == float(np.mean(result.stats["acceptance"]))
    assert summary["divergences"] == 0 and summary["nonfinite"] == 0
    assert summary["grad_evals"] == result.total_grad_evals
    assert summary["wall_seconds"] == result.stats["wall_seconds"]
    loaded = json.loads(json.dumps(summary.to_json()))
    assert list(loaded) == list(summary)
    assert loaded["event_shape"] == [2]
    for name, value in summary.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(np.asarray(loaded[name]), value, err_msg=name)
        elif name != "event_shape":
            assert loaded[name] == value or (math.isnan(loaded[name]) and math.isnan(value)), name


def test_compare_reads_a_summary_and_its_dict_as_it_read_the_old_dict(results):
    result = results[("mala", "jax")]
    summary = summarize(result)
    table = compare({"run": result, "summary": summary, "dict": summary.to_dict()})
    for column in ("ess_bulk_min", "rhat_max", "acceptance_mean", "grad_evals", "wall_seconds", "ess_per_grad"):
        values = table[column].to_numpy(dtype=float)
        np.testing.assert_array_equal(values, np.full(3, values[0]), err_msg=column)
    assert list(table["sampler"]) == ["mala"] * 3
