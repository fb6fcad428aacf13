"""The fast diagnostics equal ArviZ's on the same draws: ties, odd draw counts, constant
dimensions, one chain, memory-mapped input, and through summarize(engine="fast")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from ppl_ebm.diagnostics.arviz_engine import diagnose as arviz_reference
from ppl_ebm.diagnostics.fast import KEYS, diagnose
from ppl_ebm.diagnostics.summary import summarize


def _ar1(chains: int, draws: int, dims: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coefficient = np.linspace(0.0, 0.95, dims)
    out = np.empty((chains, draws, dims))
    state = rng.standard_normal((chains, dims))
    for t in range(draws):
        state = coefficient * state + np.sqrt(1 - coefficient**2) * rng.standard_normal((chains, dims))
        out[:, t] = state
    return out


def _assert_equal_to_arviz(draws: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # ArviZ and we both divide 0/0 on a constant dim
        got, want = diagnose(draws), arviz_reference(draws)
    for key in KEYS:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12, atol=0, equal_nan=True, err_msg=key)


@pytest.mark.parametrize("shape", [(4, 101, 5), (16, 200, 4), (50, 64, 3), (1, 80, 2)])
def test_equal_to_arviz_float32_with_ties(shape):
    draws = _ar1(*shape, seed=sum(shape)).astype(np.float32)
    draws[:, :, 0] = np.round(draws[:, :, 0] * 2) / 2  # heavy ties: average ranks
    _assert_equal_to_arviz(draws)


def test_equal_to_arviz_float64_and_constant_dimension():
    draws = _ar1(6, 90, 3, seed=5)
    draws[:, :, 1] = 2.5
    _assert_equal_to_arviz(draws)


def test_memory_mapped_input_in_small_blocks(tmp_path):
    draws = _ar1(30, 60, 7, seed=2).astype(np.float32)
    np.save(tmp_path / "draws.npy", draws)
    mapped = np.load(tmp_path / "draws.npy", mmap_mode="r")
    got = diagnose(mapped, workers=2, block_bytes=30 * 60 * 4 * 2)  # two dimensions per block
    want = diagnose(draws, workers=1)
    for key in KEYS:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_summarize_fast_engine_matches_arviz_engine():
    draws = _ar1(12, 100, 3, seed=9).astype(np.float32)
    fast = summarize(draws, engine="fast", max_chains=None, wall_seconds=1.0, grad_evals=10)
    slow = summarize(draws, engine="arviz", max_chains=None, wall_seconds=1.0, grad_evals=10)
    for key in ("ess_bulk_min", "ess_tail_min", "rhat_max", "mcse_mean_max", "iat_max", "ess_per_second"):
        assert fast[key] == pytest.approx(slow[key], rel=1e-12), key


def test_refuses_bad_input():
    with pytest.raises(ValueError, match="4 draws"):
        diagnose(np.zeros((3, 3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="non-finite"):
        bad = np.ones((3, 10, 2), dtype=np.float32)
        bad[1, 2, 0] = np.nan
        diagnose(bad)
    with pytest.raises(ValueError, match="engine"):
        summarize(np.zeros((2, 10, 1)), engine="numba")


def test_packed_key_sort_orders_every_kind_of_float32():
    """The (key << 31 | position)-as-float64 sort equals a stable argsort on extremes:
    +-0, subnormals, the largest finite values, and many ties."""
    from ppl_ebm.diagnostics.estimators import Workspace, sort_with_permutation

    tiny = np.finfo(np.float32).smallest_subnormal
    big = np.finfo(np.float32).max
    special = np.array([0.0, -0.0, tiny, -tiny, 2 * tiny, big, -big, 1.0, -1.0, 1.0, 0.0], dtype=np.float32)
    rng = np.random.default_rng(0)
    values = np.concatenate([special, np.round(rng.standard_normal(5000), 1).astype(np.float32), special])
    values = values[rng.permutation(values.size)]
    sorted_values, order = sort_with_permutation(values, Workspace())
    want = np.argsort(values, kind="stable")
    np.testing.assert_array_equal(sorted_values, values[want].astype(np.float64))
    # A permutation that sorts (ties, 0.0 and -0.0 included, in either order).
    assert sorted(order.tolist()) == list(range(values.size))
    assert np.all(np.diff(values[order].astype(np.float64)) >= 0)


def test_tail_quantile_compared_in_float64():
    """A 5% quantile between two adjacent float32 values that rounds up to the upper one:
    ArviZ (float64) counts that draw above the quantile, and so must we."""
    draws = _ar1(4, 100, 1, seed=3).astype(np.float32)
    flat = draws.ravel()
    order = np.argsort(flat, kind="stable")
    # 400 draws: type-7 quantile 0.05 = 0.05 * x_(20) + 0.95 * x_(21) (1-based order statistics).
    flat[order[20]] = np.nextafter(flat[order[19]], np.float32(np.inf))
    assert flat[order[19]] < flat[order[20]] < flat[order[21]]
    _assert_equal_to_arviz(flat.reshape(draws.shape))


def test_ess_does_not_depend_on_the_first_lag_guess():
    """Strongly autocorrelated chains make Geyer's sequence run past a short guess: the
    autocovariances are then recomputed to every lag, giving the same ESS."""
    from ppl_ebm.diagnostics.estimators import ess_of_chains

    chains = np.cumsum(np.random.default_rng(4).standard_normal((8, 400)), axis=1)  # random walks
    full, full_lag, _ = ess_of_chains(chains, lags=400)
    short, short_lag, _ = ess_of_chains(chains, lags=8)
    assert full_lag > 8  # the short guess really was too short
    assert short == full and short_lag == full_lag


def test_both_engines_agree_on_a_chain_subset():
    """summarize(max_chains=...) hands both engines the same chain indices, read block by block."""
    draws = _ar1(20, 80, 3, seed=11).astype(np.float32)
    fast = summarize(draws, engine="fast", max_chains=7, seed=3, chunk_bytes=7 * 80 * 8)
    slow = summarize(draws, engine="arviz", max_chains=7, seed=3, chunk_bytes=7 * 80 * 8)
    assert fast["subsampled"] and fast["chains_used"] == 7
    for key in KEYS:
        np.testing.assert_allclose(fast[key], slow[key], rtol=1e-12, atol=0, equal_nan=True, err_msg=key)
    chosen = np.sort(np.random.default_rng(3).choice(20, size=7, replace=False))
    on_copy = diagnose(draws[chosen])
    for key in KEYS:
        np.testing.assert_array_equal(fast[key], on_copy[key], err_msg=key)
