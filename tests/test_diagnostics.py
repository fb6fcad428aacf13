"""Tests of ppl_ebm.diagnostics.arviz_compat and ppl_ebm.diagnostics.summary (CPU only, a few seconds)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.signal import lfilter

from ppl_ebm.diagnostics import arviz_compat
from ppl_ebm import diagnostics
from ppl_ebm.result import SampleResult


def ar1(rng: np.random.Generator, rho: float, chains: int, draws: int, dim: int) -> np.ndarray:
    """Stationary AR(1) chains x_t = rho x_{t-1} + sqrt(1-rho^2) e_t, unit marginal variance."""
    eps = rng.standard_normal((chains, draws, dim)) * np.sqrt(1.0 - rho**2)
    eps[:, 0, :] = rng.standard_normal((chains, dim))  # start in the stationary law
    return lfilter([1.0], [1.0, -rho], eps, axis=1)


@pytest.fixture(scope="module")
def draws() -> np.ndarray:
    return ar1(np.random.default_rng(0), 0.6, chains=4, draws=500, dim=3)


class _Reference:
    """ArviZ's own diagnostics, called through its dataset-level API (not arviz_compat)."""

    def __init__(self):
        self.major = arviz_compat.ARVIZ_MAJOR
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            if self.major >= 1:
                import arviz_stats as az
            else:
                import arviz as az
        self.az = az

    def __call__(self, name, arr, **kwargs):
        fn = getattr(self.az, name)
        if self.major >= 1:
            import xarray as xr

            if kwargs.get("method") == "tail":
                kwargs["prob"] = (0.05, 0.95)  # 1.x's default is rcParams["stats.ci_prob"]
            return np.asarray(fn(xr.DataArray(arr, dims=["chain", "draw", "d"]), **kwargs).values)
        return np.asarray(fn(self.az.convert_to_dataset(arr), **kwargs)["x"].values)


@pytest.fixture(scope="module")
def reference() -> _Reference:
    return _Reference()


# ----------------------------------------------------------------------------- arviz_compat


@pytest.mark.parametrize("method", ["bulk", "tail", "mean", "sd"])
def test_ess_equals_arviz(reference, draws, method):
    ref = reference("ess", draws, method=method)
    got = arviz_compat.ess(draws, method)
    assert got.shape == (3,)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_rhat_and_mcse_equal_arviz(reference, draws):
    np.testing.assert_allclose(arviz_compat.rhat(draws), reference("rhat", draws), rtol=1e-12)
    for method in ("mean", "sd"):
        ref = reference("mcse", draws, method=method)
        np.testing.assert_allclose(arviz_compat.mcse(draws, method), ref, rtol=1e-12)


def test_scalar_and_multi_event_shapes(draws):
    assert arviz_compat.ess(draws[..., 0]).shape == ()
    np.testing.assert_allclose(arviz_compat.ess(draws[..., 0]), arviz_compat.ess(draws)[0])
    two = np.concatenate([draws, draws], axis=-1).reshape(4, 500, 2, 3)
    assert arviz_compat.rhat(two).shape == (2, 3)


def test_to_arviz_from_sample_result():
    rng = np.random.default_rng(1)
    chains, n, d = 6, 5, 4  # more chains than draws on purpose: must not warn
    stats = {
        "acceptance": np.full(chains, 0.6),
        "step_size": np.full(chains, 0.1),
        "divergences": np.zeros(chains, dtype=int),
        "nonfinite": np.zeros(chains, dtype=int),
        "stopped": np.zeros(chains, dtype=bool),
        "grad_evals": np.full(chains, 100),
        "wall_seconds": 1.5,
        "sampling_seconds": 1.0,
    }
    res = SampleResult(rng.normal(size=(chains, n, d)).astype(np.float32), stats, "mala", "torch")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        out = res.to_arviz()
    post, ss = out["posterior"], out["sample_stats"]
    assert dict(post["z"].sizes) == {"chain": chains, "draw": n, "z_dim": d}
    assert ss["acceptance_rate"].shape == (chains, n)
    assert ss["step_size"].shape == (chains, n)
    assert ss["diverging"].dtype == bool and not ss["diverging"].values.any()
    assert out.attrs["wall_seconds"] == 1.5
    assert out.attrs["grad_evals_total"] == chains * 100

    # With divergences the draws are unknown: no invented per-draw `diverging`.
    stats["divergences"] = np.array([1, 0, 0, 0, 0, 2])
    out = SampleResult(res.latents, stats, "nuts", "jax").to_arviz()
    assert "diverging" not in out["sample_stats"]
    assert out.attrs["divergences_total"] == 3


# ----------------------------------------------------------------------------- diagnostics


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_iat_matches_ar1_theory(rho):
    # tau = (1 + rho) / (1 - rho) for AR(1). The multichain, Geyer-truncated estimator is
    # unbiased here to < 1% but its errors have heavier-than-normal tails (a late truncation
    # adds many noisy lags; between-chain variance of the chain means enters var_plus).
    # Measured over 1000 seeded replicates of 16 chains x 4000 draws: relative sd 1.2%,
    # 2.4%, 3.6% and 99.9% quantile of |error| 5%, 9%, 14% for rho = 0, 0.5, 0.8
    # (Sokal's var(tau_hat)/tau^2 ~ 2(2W+1)/N, W a few tau, gives the same order). A 15%
    # tolerance therefore fails for well under 1 in 1000 seeds. At 8 chains x 4000 the
    # 99.9% quantile for rho = 0.8 is 22%, too close to 15%, hence 16 chains.
    x = ar1(np.random.default_rng(42), rho, chains=16, draws=4000, dim=3)
    tau = (1.0 + rho) / (1.0 - rho)
    np.testing.assert_allclose(diagnostics.integrated_autocorrelation_time(x), tau, rtol=0.15)


def test_rhat_iid_and_shifted_chains():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 1000, 3))
    assert np.all(np.abs(arviz_compat.rhat(x) - 1.0) < 0.01)
    x[0] += 2.0  # one chain in a different place
    assert np.all(arviz_compat.rhat(x) > 1.1)


def test_summarize_array(draws):
    s = diagnostics.summarize(draws, wall_seconds=2.0, grad_evals=np.full(4, 1000))
    for key in ("ess_bulk", "ess_tail", "rhat", "mcse_mean", "mcse_sd", "iat"):
        assert s[key].shape == (3,)
    np.testing.assert_allclose(s["ess_bulk"], arviz_compat.ess(draws, "bulk"))
    assert s["ess_bulk_min"] == pytest.approx(s["ess_bulk"].min())
    assert s["ess_bulk_min_scaled"] == s["ess_bulk_min"] and s["scale"] == 1.0
    assert s["grad_evals"] == 4000 and not s["subsampled"]
    assert s["ess_per_second"] == pytest.approx(s["ess_bulk_min"] / 2.0)
    assert s["ess_per_grad"] == pytest.approx(s["ess_bulk_min"] / 4000)
    assert np.isnan(s["ess_per_second_sampling"])
    # Chunking over dimensions gives the same numbers.
    small = diagnostics.summarize(draws, chunk_bytes=1)
    for key in ("ess_bulk", "ess_tail", "rhat", "mcse_sd", "iat"):
        np.testing.assert_allclose(small[key], s[key])


def test_summarize_subsamples_many_chains():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3000, 100, 2))
    full = arviz_compat.ess(x, "bulk")
    s = diagnostics.summarize(x, max_chains=1000, seed=0, wall_seconds=10.0, grad_evals=12345)
    assert s["subsampled"] and s["chains_used"] == 1000 and s["chains_total"] == 3000
    assert s["scale"] == pytest.approx(3.0)
    assert s["ess_bulk_min"] < 0.5 * full.min()  # the subset alone holds ~1/3 of the ESS
    assert s["ess_bulk_min_scaled"] == pytest.approx(full.min(), rel=0.2)
    assert s["ess_per_second"] == pytest.approx(s["ess_bulk_min_scaled"] / 10.0)
    assert s["ess_per_grad"] == pytest.approx(s["ess_bulk_min_scaled"] / 12345)
    # Seeded: same subset, same numbers.
    again = diagnostics.summarize(x, max_chains=1000, seed=0)
    np.testing.assert_array_equal(again["ess_bulk"], s["ess_bulk"])


def test_summarize_drops_nonfinite_chains():
    x = np.random.default_rng(5).standard_normal((5, 200, 2))
    x[2, 150:] = np.nan  # a stopped ULA chain
    s = diagnostics.summarize(x)
    assert s["chains_nonfinite"] == 1 and s["chains_used"] == 4
    assert np.all(np.isfinite(s["ess_bulk"]))


def _hand_result(chains: int, draws: int, sampler: str, seed: int) -> SampleResult:
    rng = np.random.default_rng(seed)
    return SampleResult(
        latents=ar1(rng, 0.3, chains, draws, 4).astype(np.float32),
        stats={
            "acceptance": rng.uniform(0.5, 0.9, chains),
            "step_size": np.full(chains, 0.05),
            "divergences": np.zeros(chains, dtype=int),
            "nonfinite": np.zeros(chains, dtype=int),
            "stopped": np.zeros(chains, dtype=bool),
            "grad_evals": np.full(chains, 2 * draws),
            "wall_seconds": 3.0,
            "compile_seconds": 0.5,
            "warmup_seconds": 1.0,
            "sampling_seconds": 1.5,
        },
        sampler=sampler,
        backend="torch",
    )


def test_compare_and_format_table():
    results = {
        "mala": _hand_result(8, 200, "mala", 0),
        "ula_many": _hand_result(60, 50, "ula", 1),
        "raw": {"latents": ar1(np.random.default_rng(2), 0.3, 4, 100, 4), "sampler": "nuts"},
    }
    df = diagnostics.compare(results, max_chains=20)
    assert list(df.index) == ["mala", "ula_many", "raw"]
    expected = {
        "sampler", "backend", "chains", "draws", "ess_bulk_min", "ess_bulk_median",
        "ess_tail_min", "rhat_max", "mcse_mean_max", "acceptance_mean", "divergences",
        "nonfinite", "grad_evals", "wall_seconds", "ess_per_second",
        "ess_per_second_sampling", "ess_per_grad", "subsampled",
    }
    assert expected <= set(df.columns)
    mala = df.loc["mala"]
    assert mala["sampler"] == "mala" and mala["chains"] == 8 and not mala["subsampled"]
    assert mala["grad_evals"] == 8 * 400
    assert mala["ess_per_second_sampling"] == pytest.approx(mala["ess_bulk_min"] / 1.5)
    assert mala["acceptance_mean"] == pytest.approx(results["mala"].stats["acceptance"].mean())
    assert bool(df.loc["ula_many", "subsampled"]) and df.loc["ula_many", "chains_used"] == 20
    assert np.isnan(df.loc["raw", "wall_seconds"])

    text = diagnostics.format_table(df)
    lines = text.splitlines()
    assert lines[0].startswith("run") and len(lines) == 2 + 3 + 1
    assert lines[-1] == "* ESS computed on 20 of 60 chains, scaled to all chains"
    assert "*" in lines[3] and "*" not in lines[2]

    # A summarize() output is accepted as is; no footnote without subsampling.
    df2 = diagnostics.compare({"mala": diagnostics.summarize(results["mala"])})
    assert "ESS computed on" not in diagnostics.format_table(df2)
