"""Model files: a saved and loaded model is the same model, bit for bit; a damaged, foreign or
newer file is refused with :class:`gpuvgm.ModelFileError`; interrupted saves and fits leave the
previous file intact."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.mixture import BayesianGaussianMixture

import gpuvgm
from gpuvgm import ModelFileError, NotFittedError, ParameterError
from gpuvgm import _persistence as persistence
from gpuvgm._model import Moments, Posterior, Priors

# The small fits here stop early on purpose; their convergence is tested elsewhere.
pytestmark = [
    pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

FITTED_ARRAYS = (
    "weights_",
    "means_",
    "covariances_",
    "precisions_",
    "valid_components_",
    "mean_precision_",
    "degrees_of_freedom_",
    "n_iter_",
    "converged_",
    "lower_bound_",
)


def same_array(a, b) -> bool:
    """Bit-identical: dtype, shape and bytes (NaN payloads included)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_same_model(a: gpuvgm.VGM, b: gpuvgm.VGM) -> None:
    for name in FITTED_ARRAYS:
        assert same_array(getattr(a, name), getattr(b, name)), name
    for x, y in zip(a.weight_concentration_, b.weight_concentration_, strict=True):
        assert same_array(x, y)
    for cls, x, y in (
        (Priors, a._fitted.priors, b._fitted.priors),
        (Posterior, a._fitted.posterior, b._fitted.posterior),
    ):
        for f in dataclasses.fields(cls):
            assert same_array(getattr(x, f.name), getattr(y, f.name)), f.name
    assert (a.moments_ is None) == (b.moments_ is None)
    if a.moments_ is not None:
        for f in dataclasses.fields(Moments):
            assert same_array(getattr(a.moments_, f.name), getattr(b.moments_, f.name)), f.name
    assert a._columns == b._columns and a.n_features_in_ == b.n_features_in_
    assert hasattr(a, "feature_names_in_") == hasattr(b, "feature_names_in_")
    if hasattr(a, "feature_names_in_"):
        assert list(a.feature_names_in_) == list(b.feature_names_in_)
    assert a.seed_ == b.seed_ and a.backend_ == b.backend_
    assert hasattr(a, "lower_bounds_") == hasattr(b, "lower_bounds_")
    for x, y in zip(getattr(a, "lower_bounds_", []), getattr(b, "lower_bounds_", []), strict=True):
        assert same_array(x, y)
    # The fit report comes back as JSON: NumPy arrays and tuples in it become lists.
    report_a, report_b = getattr(a, "fit_report_", None), getattr(b, "fit_report_", None)
    assert persistence._jsonable(report_a) == persistence._jsonable(report_b)


def assert_same_outputs(a: gpuvgm.VGM, b: gpuvgm.VGM, X) -> None:
    ea, eb = a.transform(X), b.transform(X)
    for name in ("normalized", "component", "null", "n_clipped"):
        assert same_array(getattr(ea, name), getattr(eb, name)), name
    assert ea.columns == eb.columns
    assert same_array(a.inverse_transform(ea), b.inverse_transform(eb))
    assert same_array(a.predict_proba(X), b.predict_proba(X))
    assert same_array(a.predict(X), b.predict(X))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    n = 3000
    x = np.column_stack(
        [
            np.concatenate([rng.normal(-4, 1, n // 2), rng.normal(3, 0.5, n - n // 2)]),
            rng.lognormal(1.0, 0.7, n),
            1.7e9 + rng.normal(0, 10, n),  # a timestamp-like column: the working frame matters
        ]
    )
    x[rng.choice(n, 40, replace=False), 1] = np.nan
    return x


@pytest.fixture(scope="module")
def model(data):
    return gpuvgm.VGM(5, max_iter=15, chunk_rows=1000, device="cpu", random_state=3).fit(data)


@pytest.fixture(scope="module")
def frame(data):
    return pd.DataFrame(data, columns=["price", "amount", "time"])


@pytest.fixture(scope="module")
def frame_model(frame):
    return gpuvgm.VGM(4, max_iter=15, device="cpu", random_state=7, clip=None).fit(frame)


@pytest.fixture
def saved(tmp_path, model) -> Path:
    path = tmp_path / "model.gpuvgm"
    model.save(path)
    return path


def round_trip(model, tmp_path, **load_kw):
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    return gpuvgm.load(path, **load_kw)


# ---------------------------------------------------------------------- round trips
def test_array_model_round_trip(model, data, tmp_path):
    loaded = round_trip(model, tmp_path)
    assert_same_model(model, loaded)
    assert_same_outputs(model, loaded, data)
    assert loaded.get_params() == model.get_params()
    assert not hasattr(loaded, "feature_names_in_")


def test_dataframe_model_round_trip(frame_model, frame, tmp_path):
    loaded = round_trip(frame_model, tmp_path)
    assert_same_model(frame_model, loaded)
    assert_same_outputs(frame_model, loaded, frame)
    assert list(loaded.feature_names_in_) == ["price", "amount", "time"]
    # Names are still checked at transform time.
    with pytest.raises(gpuvgm.DataError, match="column 0 is 'amount'"):
        loaded.transform(frame[["amount", "price", "time"]])


def test_from_sklearn_model_round_trip(frame, tmp_path):
    fits = [
        BayesianGaussianMixture(
            n_components=4,
            weight_concentration_prior=1e-3,
            max_iter=30,
            random_state=0,
        ).fit(frame[[c]].dropna().to_numpy())
        for c in ("price", "amount")
    ]
    vgm = gpuvgm.VGM.from_sklearn(fits, columns=["price", "amount"], random_state=11)
    assert vgm.moments_ is None and not hasattr(vgm, "fit_report_")
    loaded = round_trip(vgm, tmp_path)
    assert_same_model(vgm, loaded)
    assert_same_outputs(vgm, loaded, frame[["price", "amount"]])
    assert loaded.moments_ is None and not hasattr(loaded, "lower_bounds_")


def test_unusual_parameters_round_trip(data, tmp_path):
    """Array parameters, argmax selection, null_policy and max_iter=0 (a -inf lower bound)."""
    model = gpuvgm.VGM(
        3,
        mean_prior=np.array([0.0, 2.0, 1.7e9]),
        covariance_prior=(4.0, 1.0, 100.0),
        means_init=[[-4.0, 0.0, 3.0], [1.0, 3.0, 9.0], [1.7e9 - 10, 1.7e9, 1.7e9 + 10]],
        component_selection="argmax",
        weight_concentration_prior=None,
        max_iter=0,
        device="cpu",
        random_state=np.uint64(2**64 - 1),
    ).fit(data)
    assert np.all(np.isneginf(model.lower_bound_))
    loaded = round_trip(model, tmp_path)
    assert_same_model(model, loaded)
    assert_same_outputs(model, loaded, data)
    # Arrays and tuples come back as lists holding the same values.
    assert loaded.mean_prior == [0.0, 2.0, 1.7e9] and loaded.covariance_prior == [4.0, 1.0, 100.0]
    assert loaded.random_state == 2**64 - 1 == loaded.seed_


def test_generator_random_state_is_stored_as_the_seed(data, tmp_path):
    model = gpuvgm.VGM(3, max_iter=5, device="cpu", random_state=np.random.default_rng(1))
    model.fit(data)
    loaded = round_trip(model, tmp_path)
    assert loaded.random_state == model.seed_ == loaded.seed_
    assert_same_outputs(model, loaded, data)
    # The stored seed is what the fit used: refitting the loaded model reproduces it.
    refit = gpuvgm.VGM(**loaded.get_params()).fit(data)
    assert same_array(refit.means_, model.means_) and same_array(refit.weights_, model.weights_)


def test_file_layout_and_metadata(model, saved):
    doc = json.loads(saved.read_text(encoding="utf-8"))
    assert list(doc) == ["format", "format_version", "sha256", "payload"]
    assert doc["format"] == "gpuvgm-model" and doc["format_version"] == 1
    payload = doc["payload"]
    assert payload["library_version"] == gpuvgm.__version__
    assert payload["created"].endswith("Z") and "T" in payload["created"]
    assert payload["params"]["n_components"] == 5 and payload["columns"] == ["0", "1", "2"]
    assert payload["posterior"]["means"]["dtype"] == "<f8"
    assert payload["posterior"]["means"]["shape"] == [3, 5]
    assert payload["fit_report"]["rows"] == 3000
    assert payload["seed"] == model.seed_


def test_format_names_every_dataclass_field():
    """A field added to the model's dataclasses must be added to the file format too."""
    names = {f.name for f in dataclasses.fields(Priors)}
    assert names == set(persistence.PRIOR_ARRAYS) | set(persistence.PRIOR_SCALARS)
    assert {f.name for f in dataclasses.fields(Posterior)} == set(persistence.POSTERIOR_ARRAYS)
    assert {f.name for f in dataclasses.fields(Moments)} == set(persistence.MOMENT_ARRAYS)


def test_device_override(model, tmp_path):
    """A model saved with device="cuda" loads on a machine without a GPU with device="cpu"."""
    cuda_model = gpuvgm.load(_save(model, tmp_path / "m.gpuvgm")).set_params(device="cuda")
    path = _save(cuda_model, tmp_path / "cuda.gpuvgm")
    assert gpuvgm.load(path).device == "cuda"
    loaded = gpuvgm.load(path, device="cpu")
    assert loaded.device == "cpu"
    assert_same_model(model, loaded)
    with pytest.raises(ParameterError, match="'device'"):
        gpuvgm.load(path, device="gpu")


def test_save_needs_a_fitted_model_and_valid_parameters(model, tmp_path):
    with pytest.raises(NotFittedError):
        gpuvgm.VGM().save(tmp_path / "x.gpuvgm")
    bad = gpuvgm.load(_save(model, tmp_path / "ok.gpuvgm")).set_params(tol=-1.0)
    with pytest.raises(ParameterError, match="'tol'"):
        bad.save(tmp_path / "bad.gpuvgm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.gpuvgm"]


def test_save_creates_the_directory(model, tmp_path):
    path = tmp_path / "a" / "b" / "model.gpuvgm"
    model.save(str(path))
    assert_same_model(model, gpuvgm.load(str(path)))


def _save(model, path: Path) -> Path:
    model.save(path)
    return path


# ---------------------------------------------------------------------- refused files
def _rewrite(path: Path, edit) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(json.dumps(doc), encoding="utf-8")


def _reseal(doc) -> None:
    """Recompute the checksum, as a writer of a well-formed but different file would."""
    doc["sha256"] = hashlib.sha256(persistence._canonical(doc["payload"])).hexdigest()


def test_newer_format_version_is_refused(saved):
    def newer(doc):
        doc["format_version"] = 2
        doc["payload"]["library_version"] = "9.0.0"
        _reseal(doc)

    _rewrite(saved, newer)
    with pytest.raises(ModelFileError, match=r"format version 2 \(written by gpuvgm 9\.0\.0\)"):
        gpuvgm.load(saved)


@pytest.mark.parametrize("cut", [0.0, 0.001, 0.5, 0.999, -2, -3])
def test_truncated_file_is_refused(saved, cut):
    """Keep a fraction of the file, or drop its last bytes ("}" and the final newline)."""
    data = saved.read_bytes()
    saved.write_bytes(data[: int(len(data) * cut)] if isinstance(cut, float) else data[:cut])
    with pytest.raises(ModelFileError, match=r"truncated|corrupted"):
        gpuvgm.load(saved)


def _flip(data: bytes, i: int, mask: int = 0x01) -> bytes:
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


@pytest.mark.parametrize(
    "needle",
    [
        b'"means": {',  # a base64 character of the posterior means
        b'"n_components": ',  # a digit of a parameter
        b'"columns": [',  # a character of a column name
        b'"created": "',  # the metadata is covered too
        b'"sha256": "',  # the checksum itself
    ],
)
def test_one_flipped_byte_is_refused(saved, needle):
    data = saved.read_bytes()
    start = data.index(needle) + len(needle)
    i = data.index(b'"data": "', start) + len(b'"data": "') if needle == b'"means": {' else start
    while data[i : i + 1] in b' \n"[{':  # to the first byte of the value
        i += 1
    for mask in (0x01, 0x02, 0x80):
        saved.write_bytes(_flip(data, i, mask))
        with pytest.raises(ModelFileError, match=r"corrupted|checksum|not UTF-8"):
            gpuvgm.load(saved)


def test_every_single_byte_flip_is_refused_or_harmless(model, saved):
    """Flip each byte in turn: the file is refused, or what it changed is not content (e.g.
    whitespace) and the model loads unchanged. Never a different model, never another error."""
    data = saved.read_bytes()
    refused = 0
    for i in range(len(data)):
        saved.write_bytes(_flip(data, i))
        try:
            loaded = gpuvgm.load(saved)
        except ModelFileError:
            refused += 1
        else:
            assert_same_model(model, loaded)
    # The harmless flips change the last digit of a 17-digit float to another spelling of the
    # same float (a handful); every other flip is refused.
    assert refused >= 0.995 * len(data)


@pytest.mark.parametrize(
    "text",
    ['{"a": 1}', "[]", '"gpuvgm-model"', "3", '{"format": "parquet"}', "null"],
)
def test_other_json_is_refused(tmp_path, text):
    path = tmp_path / "other.json"
    path.write_text(text)
    with pytest.raises(ModelFileError, match="not a gpuvgm model file"):
        gpuvgm.load(path)


@pytest.mark.parametrize("seed", range(4))
def test_random_bytes_are_refused(tmp_path, seed):
    path = tmp_path / "noise.bin"
    path.write_bytes(np.random.default_rng(seed).bytes(2000))
    with pytest.raises(ModelFileError):
        gpuvgm.load(path)


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="no model file"):
        gpuvgm.load(tmp_path / "nope.gpuvgm")
    with pytest.raises(ModelFileError, match="cannot read model file"):
        gpuvgm.load(tmp_path)


def test_non_finite_json_constants_are_refused(saved):
    text = saved.read_text().replace('"format_version": 1', '"format_version": NaN')
    saved.write_text(text)
    with pytest.raises(ModelFileError, match="invalid JSON"):
        gpuvgm.load(saved)


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.pop("posterior"),
        lambda p: p["posterior"].pop("means"),
        lambda p: p["posterior"]["means"].update(shape=[3, 4]),
        lambda p: p["posterior"]["means"].update(shape=[5, 3]),
        lambda p: p["posterior"]["means"].update(dtype="|O"),
        lambda p: p["posterior"]["means"].update(data="***"),
        lambda p: p["priors"].update(weight_concentration="big"),
        lambda p: p["params"].update(n_components=0),
        lambda p: p["params"].update(colour="blue"),
        lambda p: p.update(columns=[]),
        lambda p: p.update(seed=-1),
        lambda p: p.update(lower_bounds=[]),
        lambda p: p.update(n_iter={"dtype": "<i8", "shape": [1], "data": "AAAAAAAAAAA="}),
    ],
)
def test_well_sealed_but_malformed_content_is_refused(saved, edit):
    def change(doc):
        edit(doc["payload"])
        _reseal(doc)

    _rewrite(saved, change)
    with pytest.raises(ModelFileError, match=r"malformed|cannot be loaded"):
        gpuvgm.load(saved)


# ---------------------------------------------------------------------- interruptions
def test_interrupted_save_keeps_the_previous_file(model, frame_model, saved, monkeypatch):
    before = saved.read_bytes()

    def interrupt(fd):
        raise KeyboardInterrupt

    # Interrupted after the new bytes are written to the temporary file, before the rename.
    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        frame_model.save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary file left
    assert_same_model(model, gpuvgm.load(saved))

    # Interrupted while encoding, before any file is opened.
    monkeypatch.setattr(persistence, "_canonical", lambda payload: interrupt(0))
    with pytest.raises(KeyboardInterrupt):
        frame_model.save(saved)
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


def test_interrupted_fit_keeps_the_previous_file_and_model(model, data, tmp_path, monkeypatch):
    refit = gpuvgm.load(_save(model, tmp_path / "model.gpuvgm"))
    backend = refit._backend()  # the backend the refit will use on this machine
    before = (tmp_path / "model.gpuvgm").read_bytes()
    calls = {"n": 0}
    real = backend.estep_stats

    def interrupt_on_third_pass(chunk, params):
        calls["n"] += 1
        if calls["n"] > 6:
            raise KeyboardInterrupt
        return real(chunk, params)

    monkeypatch.setattr(backend, "estep_stats", interrupt_on_third_pass)
    with pytest.raises(KeyboardInterrupt):
        refit.fit(data * 2.0)
    assert calls["n"] == 7
    assert (tmp_path / "model.gpuvgm").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.gpuvgm"]
    # The interrupted fit did not touch the fitted state either.
    assert_same_model(model, refit)
    assert_same_model(model, gpuvgm.load(tmp_path / "model.gpuvgm"))
