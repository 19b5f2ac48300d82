"""The default round trip is lossless: ``VGM()`` does not clip, so ``inverse_transform`` gives
back every value, the tails included, to float64 rounding (at most 1e-12 std, the "twin" float64
tolerance), and every null as a null. In memory, through the "rdt" Parquet layout, and after
save/load. The columns are the ones that broke CTGAN's clip in real tables: a heavy tail, a
zero-inflated column and an integer-valued one, each with nulls."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import rtol

import gpuvgm

N = 20_000


def columns(rng: np.random.Generator) -> pd.DataFrame:
    t2 = rng.standard_t(2, N) * 15 + 5  # flight delays: |x| up to hundreds of std
    rain = np.where(rng.random(N) < 0.64, 0.0, rng.gamma(0.7, 6.0, N))  # a spike at zero
    count = (rng.poisson(3, N) + 20 * rng.integers(0, 3, N)).astype(np.float64)
    frame = pd.DataFrame({"delay": t2, "rain": rain, "count": count})
    for j, name in enumerate(frame.columns):
        frame.loc[rng.random(N) < 0.02 * (j + 1), name] = np.nan
    return frame


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return columns(np.random.default_rng(15))


@pytest.fixture(scope="module", params=["numpy", "cpu"])
def fitted(request, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        return gpuvgm.VGM(device=request.param, max_iter=40, random_state=0).fit(data)


def check_exact(x: np.ndarray, back: np.ndarray, names) -> None:
    """``back`` equals ``x`` on every row: NaN where ``x`` is, else within 1e-12 std."""
    assert back.shape == x.shape
    null = np.isnan(x)
    np.testing.assert_array_equal(np.isnan(back), null)
    err = np.where(null, 0.0, np.abs(back - x)) / np.nanstd(x, axis=0)
    for j, name in enumerate(names):
        assert err[:, j].max() <= rtol(np.float64, "twin"), (name, err[:, j].max())


def test_default_is_no_clip(fitted, data):
    assert gpuvgm.VGM().clip is None and fitted.clip is None
    enc = fitted.transform(data)
    assert enc.n_clipped.tolist() == [0, 0, 0]
    # The heavy tail is there: with CTGAN's clip these rows would not come back.
    assert np.nanmax(np.abs(enc.normalized[:, 0])) > 5
    assert np.count_nonzero(np.abs(enc.normalized) > gpuvgm._model.RDT_CLIP) > 10


def test_default_round_trip_is_exact_on_every_row(fitted, data):
    x = data.to_numpy()
    enc = fitted.transform(data)
    np.testing.assert_array_equal(enc.null, np.isnan(x))
    check_exact(x, fitted.inverse_transform(enc), data.columns)


def test_round_trip_through_parquet_and_a_saved_model_is_exact(fitted, data, tmp_path):
    x = data.to_numpy()
    path = tmp_path / "model.gpuvgm"
    fitted.save(path)
    model = gpuvgm.load(path)
    assert model.clip is None
    src = tmp_path / "in.parquet"
    data.to_parquet(src)
    model.transform_parquet(src, tmp_path / "enc.parquet", layout="rdt")
    model.inverse_parquet(tmp_path / "enc.parquet", tmp_path / "back.parquet")
    back = pd.read_parquet(tmp_path / "back.parquet")
    assert list(back.columns) == list(data.columns)
    check_exact(x, back.to_numpy(dtype=np.float64, na_value=np.nan), data.columns)


def test_clip_still_clips_when_asked(fitted, data):
    """CTGAN's clip, on request: the clipped rows are counted and decode to at most 3.96 std
    from their component (so the round trip misses them, by design)."""
    model = copy.deepcopy(fitted).set_params(clip=0.99)
    enc = model.transform(data)
    big = np.abs(enc.normalized) >= 0.99
    np.testing.assert_array_equal(enc.n_clipped, big.sum(axis=0))
    assert enc.n_clipped[0] > 10
    assert np.nanmax(np.abs(enc.normalized)) == 0.99
