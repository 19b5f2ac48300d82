"""Reliability: nothing lost, nothing silently wrong (issue 14). Each class of fault an
adversarial user can reach -- an output over an input, mixed file dtypes, altered model files,
non-finite parameters, untyped OS/Arrow/JSON errors, signals and killed runs -- is refused with a
typed gpuvgm error naming the file, column or field, or handled without loss.

The functions below the estimator are called directly, the public API and the CLI end to end."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gpuvgm
from gpuvgm import (
    DataError,
    DataTypeError,
    GPUVGMError,
    ModelFileError,
    OutputError,
    OverwriteError,
    ParameterError,
)
from gpuvgm import _persistence as persistence
from gpuvgm import _writers as writers
from gpuvgm._inputs import make_source
from gpuvgm._parallel import n_threads
from gpuvgm._sources import unify_schema
from gpuvgm._validation import (
    check_params_describe_fit,
    check_working_priors,
    validate_params,
)
from gpuvgm.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::gpuvgm.ConvergenceWarning")


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-3, 1, 600), rng.normal(4, 0.5, 400)])
    return gpuvgm.VGM(3, max_iter=5, device="cpu", random_state=0).fit(x)


def _parquet(path: Path, n: int = 50, dtype=None, seed: int = 0) -> Path:
    dtype = pa.float64() if dtype is None else dtype
    rng = np.random.default_rng(seed)
    pq.write_table(pa.table({"v": pa.array(rng.normal(0, 9.9, n)).cast(dtype)}), path)
    return path


def _table(n: int = 10) -> pa.Table:
    return pa.table({"v": pa.array(np.arange(n, dtype=np.float64))})


def _write(dst, inputs=None, table=None):
    table = _table() if table is None else table
    with writers.parquet_output(dst, table.schema, 1 << 20, inputs=inputs) as write:
        write(table)


# ---------------------------------------------------------------------- 1. no input overwritten
@pytest.mark.parametrize(
    "spell",
    [
        lambda d: d / "d.parquet",
        lambda d: d / "sub" / ".." / "d.parquet",
        lambda d: Path(os.path.relpath(d / "d.parquet")),
        lambda d: d / "link.parquet",  # a symbolic link to the input
        lambda d: d / "hard.parquet",  # a hard link to the input
    ],
)
def test_an_output_spelled_as_its_input_is_refused(tmp_path, spell):
    src = _parquet(tmp_path / "d.parquet")
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.parquet").symlink_to(src)
    os.link(src, tmp_path / "hard.parquet")
    before = src.read_bytes()
    with pytest.raises(OverwriteError, match=r"is the input") as info:
        _write(spell(tmp_path), inputs=[src])
    assert "d.parquet" in str(info.value)
    assert src.read_bytes() == before


def test_outputs_inside_or_around_an_input_directory_are_refused(tmp_path):
    enc = tmp_path / "enc"
    enc.mkdir()
    _parquet(enc / "part-000000.parquet")
    before = (enc / "part-000000.parquet").read_bytes()
    with pytest.raises(OverwriteError, match="is the input"):
        _write(enc, inputs=enc)  # inverse_parquet("enc/", "enc/")
    with pytest.raises(OverwriteError, match="inside the input directory"):
        _write(enc / "out.parquet", inputs=enc)
    with pytest.raises(OverwriteError, match="holds the input"):
        _write(tmp_path, inputs=enc / "part-000000.parquet")
    assert (enc / "part-000000.parquet").read_bytes() == before
    _write(tmp_path / "elsewhere.parquet", inputs=enc)  # a sibling is fine
    writers.check_destination(enc / "model.gpuvgm", enc)  # not read as part of enc/


def test_a_file_source_names_its_inputs(tmp_path):
    src = _parquet(tmp_path / "d.parquet")
    with pytest.raises(OverwriteError):
        _write(src, inputs=make_source(src))
    _write(tmp_path / "o.parquet", inputs=np.zeros(3))  # in-memory data holds no paths


def test_cli_transform_and_inverse_onto_an_input_exit_1_and_keep_it(tmp_path, model, capsys):
    src = _parquet(tmp_path / "d.parquet")
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    for argv in (
        ["transform", str(path), str(src), "-o", str(src), "--columns", "v"],
        ["transform", str(path), str(src), "-o", str(tmp_path / "sub/../d.parquet")],
        ["transform", str(path), str(src), "-o", str(path)],
        ["inverse", str(path), str(tmp_path), "-o", str(tmp_path)],
    ):
        before = src.read_bytes(), path.read_bytes()
        assert main([*argv, "-q"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "would destroy the input" in err[0], err
        assert (src.read_bytes(), path.read_bytes()) == before


def test_fit_output_over_data_or_a_foreign_file_is_refused(tmp_path, capsys):
    src = _parquet(tmp_path / "d.parquet", n=300)
    before = src.read_bytes()
    args = ["--max-iter", "2", "-q", "--device", "cpu", "--n-components", "2"]
    assert main(["fit", str(src), "-o", str(src), *args]) == 1
    assert "would destroy the input" in capsys.readouterr().err
    assert main(["fit", str(src), "-o", str(src), "--force", *args]) == 1  # never an input
    capsys.readouterr()
    assert src.read_bytes() == before

    notes = tmp_path / "notes.txt"
    notes.write_text("precious")
    assert main(["fit", str(src), "-o", str(notes), *args]) == 1
    assert "not a gpuvgm model file" in capsys.readouterr().err
    assert notes.read_text() == "precious"
    assert main(["fit", str(src), "-o", str(notes), "--force", *args]) == 0
    assert persistence.is_model_file(notes)
    assert main(["fit", str(src), "-o", str(notes), *args]) == 0  # a model: replaced


def test_save_replaces_only_a_model_file_unless_overwrite(tmp_path, model):
    other = tmp_path / "data.csv"
    other.write_text("a\n1\n")
    with pytest.raises(OverwriteError, match="not a gpuvgm model file"):
        model.save(other)  # VGM.save -> write_model(overwrite=False)
    assert other.read_text() == "a\n1\n"
    model.save(other, overwrite=True)
    model.save(other)  # now a model file: replaced without asking
    with pytest.raises(OutputError, match="is a directory"):
        model.save(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OverwriteError, match="not a regular file"):
        model.save(fifo, overwrite=True)


# ---------------------------------------------------------------------- 2. one dtype rule
def test_mixed_float_widths_are_read_as_the_widest(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    wide = pa.array(np.random.default_rng(0).normal(0, 9.9, 1000))
    pq.write_table(pa.table({"v": wide}), d / "a.parquet")  # float64 first
    pq.write_table(pa.table({"v": wide.cast(pa.float32())}), d / "b.parquet")
    for source in (make_source(d), make_source(pads.dataset(str(d)))):
        chunks = [c for _, c in source.chunks(300)]
        assert all(c.dtype == np.float64 for c in chunks)
        got = np.concatenate(chunks)[:1000, 0]
        np.testing.assert_array_equal(got, wide.to_numpy())  # not rounded to float32
    # Both float32: half the bytes, nothing lost.
    pq.write_table(pa.table({"v": wide.cast(pa.float32())}), d / "a.parquet")
    assert make_source(d)._dtype == np.float32


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.sampled_from([pa.float32(), pa.float64(), pa.int32(), pa.int64(), pa.float16()]),
        min_size=1,
        max_size=4,
    )
)
def test_unified_type_never_narrows(types):
    schemas = [(f"f{i}", pa.schema([("v", t)])) for i, t in enumerate(types)]
    unified = unify_schema(schemas, ["v"]).field("v").type
    if all(t == types[0] for t in types):
        assert unified == types[0]
    else:
        assert unified == pa.float64()


def test_float_in_one_file_and_string_in_another_names_both(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    pq.write_table(pa.table({"v": [1.0, 2.0]}), d / "a.parquet")
    pq.write_table(pa.table({"v": ["x", "y"]}), d / "b.parquet")
    with pytest.raises(DataTypeError, match=r"'v' is double in .*a\.parquet but string in .*b"):
        make_source(d)
    with pytest.raises(DataTypeError, match=r"a\.parquet.*b\.parquet"):
        make_source(pads.dataset(str(d)))
    # A pass-through column whose types cannot merge: typed too, naming both files.
    pq.write_table(pa.table({"v": [1.0], "id": [1]}), d / "a.parquet")
    pq.write_table(pa.table({"v": [1.0], "id": [[1]]}), d / "b.parquet")
    source = make_source(d, ["v"])
    with pytest.raises(DataTypeError, match="'id' is int64 in"):
        list(source.chunks_with(10, ["id"]))


def test_pass_through_columns_of_different_widths_share_one_schema(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    pq.write_table(pa.table({"v": [1.0], "id": pa.array([1], pa.int32())}), d / "a.parquet")
    pq.write_table(pa.table({"v": [2.0], "id": pa.array([2], pa.int64())}), d / "b.parquet")
    extras = [t for _, _, t in make_source(d, ["v"]).chunks_with(10, ["id"])]
    assert {t.schema.field("id").type for t in extras} == {pa.int64()}


# ---------------------------------------------------------------------- 3. model files
def _reseal(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc["payload"])
    doc["sha256"] = hashlib.sha256(persistence._canonical(doc["payload"])).hexdigest()
    path.write_text(json.dumps(doc))


def _set(group: str, name: str, value: float, index=(0,)):
    def edit(payload):
        arr = persistence._decode_array(payload[group][name])
        arr[index] = value
        payload[group][name] = persistence._encode_array(arr)

    return edit


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (_set("posterior", "means", np.nan, (0, 0)), r"posterior\.means\[0, 0\] is nan"),
        (_set("posterior", "means", np.inf, (0, 1)), r"posterior\.means\[0, 1\] is inf"),
        (_set("posterior", "covariances", 0.0, (0, 0)), r"posterior\.covariances\[0, 0\]"),
        (_set("posterior", "covariances", -1.0, (0, 2)), r"posterior\.covariances\[0, 2\]"),
        (_set("posterior", "a", -1.0, (0, 0)), r"posterior\.a\[0, 0\]"),
        (_set("posterior", "degrees_of_freedom", 0.0, (0, 0)), "degrees_of_freedom"),
        (_set("posterior", "mean_precision", np.nan, (0, 0)), r"posterior\.mean_precision"),
        (_set("priors", "scale", 0.0), r"priors\.scale\[0\] is 0\.0"),
        (_set("priors", "scale", -2.0), r"priors\.scale\[0\]"),
        (_set("priors", "shift", np.inf), r"priors\.shift\[0\]"),
        (_set("priors", "covariance", 0.0), r"priors\.covariance\[0\]"),
        (_set("priors", "reg_covar", 5.0), r"priors\.reg_covar does not match"),
        (_set("moments", "count", -1.0), r"moments\.count\[0\]"),
        (_set("moments", "count", 0.5), r"moments\.count\[0\]"),
        (_set("moments", "minimum", 1e9), r"moments\.minimum\[0\]"),
        (_set("moments", "m2", -1.0), r"moments\.m2\[0\]"),
        (lambda p: p["priors"].update(weight_concentration=0.0), "weight_concentration"),
        (lambda p: p["priors"].update(weight_concentration=7.0), "stored parameters give"),
        (lambda p: p["params"].update(weight_concentration_prior=2.0), "stored parameters"),
        (lambda p: p["params"].update(n_components=2), r"shape|components"),
        (lambda p: p["posterior"]["means"].update(dtype="<i8"), "must hold floats"),
        (lambda p: p.update(n_iter=p["lower_bound"]), "n_iter"),
    ],
)
def test_resealed_model_files_with_bad_fields_are_refused(tmp_path, model, edit, field):
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    _reseal(path, edit)
    with pytest.raises(ModelFileError, match=field):
        gpuvgm.load(path)


def test_duplicate_names_in_a_model_file_are_refused(model):
    post, priors = model._fitted.posterior, model._fitted.priors
    with pytest.raises(ModelFileError, match="names 'x' twice"):
        persistence.validate_model_fields(model.get_params(), ["x", "x"], priors, post, None)


@pytest.mark.parametrize(
    "text",
    [
        '{"format": "gpuvgm-model", "format_version": 1e999}',
        '{"format": "gpuvgm-model", "format_version": 1, "x": -1e999}',
        "[" * 100_000 + "]" * 100_000,
        '{"format": "gpuvgm-model", "format_version": 1, "payload": '
        + '{"a": ' * 5000
        + "1"
        + "}" * 5000
        + ', "sha256": "0"}',
        '{"format": "gpuvgm-model", "format_version": ' + "9" * 5000 + "}",
        '{"format": "gpuvgm-model", "format_version": 1, "payload": {}, "sha256": 3}',
    ],
)
def test_every_json_parse_failure_is_typed(tmp_path, text):
    path = tmp_path / "m.gpuvgm"
    path.write_text(text)
    with pytest.raises(ModelFileError):
        gpuvgm.load(path)


def test_a_deeply_nested_field_after_a_good_checksum_is_typed(tmp_path, model):
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    deep: object = 1
    for _ in range(600):
        deep = [deep]

    def edit(payload):
        payload["fit_report"] = deep

    _reseal(path, edit)
    try:
        gpuvgm.load(path)
    except ModelFileError:
        pass  # typed, or loaded: never another error


def test_model_reads_are_bounded_and_never_block(tmp_path, monkeypatch):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    t = time.monotonic()
    with pytest.raises(ModelFileError, match="not a regular file"):
        gpuvgm.load(fifo)  # no writer: a blocking open would hang here
    assert time.monotonic() - t < 5
    with pytest.raises(ModelFileError, match="is a directory"):
        gpuvgm.load(tmp_path)
    big = tmp_path / "big.gpuvgm"
    big.write_bytes(b" " * 2000)
    monkeypatch.setattr(persistence, "MAX_MODEL_BYTES", 1000)
    with pytest.raises(ModelFileError, match="more than the 1,000"):
        gpuvgm.load(big)
    if Path("/dev/zero").exists():
        with pytest.raises(ModelFileError, match="not a regular file"):
            gpuvgm.load("/dev/zero")


def test_cli_info_on_an_altered_model_exits_1_without_output_of_garbage(tmp_path, model, capsys):
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    _reseal(path, _set("posterior", "means", np.nan, (0, 0)))
    assert main(["info", str(path)]) == 1
    captured = capsys.readouterr()
    assert "nan" not in captured.out.lower() and "posterior.means[0, 0]" in captured.err


# ---------------------------------------------------------------------- 4. parameters
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("weight_concentration_prior", np.inf),
        ("mean_precision_prior", np.inf),
        ("degrees_of_freedom_prior", np.inf),
        ("covariance_prior", np.inf),
        ("covariance_prior", [1.0, -1.0]),
        ("covariance_prior", [1.0, np.inf]),
        ("mean_prior", np.inf),
        ("mean_prior", -np.inf),
        ("mean_prior", [0.0, np.nan]),
        ("reg_covar", np.inf),
        ("weight_concentration_prior", 10**400),
    ],
)
def test_non_finite_parameters_are_refused(name, value):
    with pytest.raises(ParameterError, match=f"'{name}' parameter"):
        validate_params("VGM", {name: value})
    with pytest.raises(ParameterError, match=f"'{name}' parameter"):
        gpuvgm.VGM(**{name: value}).fit(np.arange(10.0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_prior_constraints_accept_exactly_the_finite_positive_floats(x):
    ok = bool(np.isfinite(x) and x > 0)
    try:
        validate_params("VGM", {"mean_precision_prior": x, "weight_concentration_prior": x})
    except ParameterError:
        assert not ok
    else:
        assert ok


def test_the_public_api_never_writes_over_its_input(tmp_path, model):
    src = tmp_path / "d.parquet"
    pq.write_table(pa.table({"x": np.linspace(-3, 4, 200)}), src)
    before = src.read_bytes()
    for dst in (src, tmp_path / "sub" / ".." / "d.parquet"):
        with pytest.raises(OverwriteError, match="is the input"):
            model.transform_parquet(src, dst, columns=["x"])
    assert src.read_bytes() == before
    enc = tmp_path / "enc"
    model.transform_parquet(src, enc, columns=["x"])
    parts = {p.name: p.read_bytes() for p in enc.iterdir()}
    with pytest.raises(OverwriteError, match="is the input"):
        model.inverse_parquet(enc, enc)
    assert {p.name: p.read_bytes() for p in enc.iterdir()} == parts


def test_a_model_that_load_would_refuse_is_not_saved(tmp_path):
    """from_sklearn takes another library's numbers as they are: a zero covariance (a
    degenerate scikit-learn fit) is refused by save, as load would refuse the file."""
    from sklearn.mixture import BayesianGaussianMixture

    x = np.random.default_rng(0).normal(size=(400, 1))
    est = BayesianGaussianMixture(
        n_components=2, weight_concentration_prior_type="dirichlet_process", random_state=0
    ).fit(x)
    est.covariances_ = est.covariances_.copy()
    est.covariances_[1] = 0.0
    model = gpuvgm.VGM.from_sklearn(est)
    dst = tmp_path / "m.gpuvgm"
    with pytest.raises(DataError, match=r"cannot be saved: .*field posterior\.covariances\[0, 1\]"):
        model.save(dst)
    assert not dst.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_file_replaced_between_passes_is_refused(tmp_path, kind):
    """A streamed fit reads its files once per pass: a file rewritten after the pre-pass (a
    nightly job overwriting its output) must stop the fit, not mix two data sets."""
    x = np.random.default_rng(0).normal(size=3000)
    path = tmp_path / f"d.{kind}"

    def write(values):
        table = pa.table({"x": values})
        if kind == "csv":
            pacsv.write_csv(table, path)
        else:
            pq.write_table(table, path)

    write(x)
    replaced = []

    def progress(phase, rows):
        if phase == "prepass" and not replaced:
            write(x[::-1] + 100.0)  # another data set under the same name
            replaced.append(phase)

    model = gpuvgm.VGM(3, max_iter=5, cache_bytes=0, chunk_rows=1000, device="cpu")
    with pytest.raises(DataError, match=r"d\.(parquet|csv): the file changed after it was opened"):
        model.fit(path, progress=progress)
    assert replaced
    source = make_source(path)  # reopened: it reads as the new file
    assert sum(len(c) for _, c in source.chunks(1000)) == x.size


def test_a_mean_prior_that_overflows_the_fit_is_refused_by_fit():
    x = np.random.default_rng(0).normal(size=500)
    with pytest.raises(ParameterError, match=r"'mean_prior'.*column '0'"):
        gpuvgm.VGM(3, mean_prior=1e300, device="cpu", random_state=0).fit(x)


def test_a_mean_prior_far_from_the_data_is_refused_in_the_working_frame():
    # mean_prior=1e300 on data of standard deviation 1: the fit would be all NaN.
    check_working_priors(["x"], np.array([3.0]), np.array([1.0]), np.array([1e-6]))
    with pytest.raises(ParameterError, match=r"'mean_prior'.*column 'x'"):
        check_working_priors(["x"], np.array([1e300]), np.array([1.0]), np.array([1e-6]))
    with pytest.raises(ParameterError, match=r"'covariance_prior'.*column 'y'"):
        check_working_priors(["x", "y"], np.zeros(2), np.array([1.0, 1e-300]), np.zeros(2))


def test_parameters_changed_after_fit_cannot_be_saved(tmp_path, model):
    params = model.get_params()
    weights, valid = model.weights_, model.valid_components_
    check_params_describe_fit(params, 3, weights, valid)
    with pytest.raises(ParameterError, match="fitted with 3"):
        check_params_describe_fit({**params, "n_components": 5}, 3, weights, valid)
    with pytest.raises(ParameterError, match="weight_threshold"):
        check_params_describe_fit({**params, "weight_threshold": 0.999}, 3, weights, valid)
    changed = gpuvgm.load(_saved(model, tmp_path)).set_params(n_components=5)
    with pytest.raises(ParameterError, match="Refit"):
        changed.save(tmp_path / "changed.gpuvgm")
    assert not (tmp_path / "changed.gpuvgm").exists()


def _saved(model, tmp_path: Path) -> Path:
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    return path


def test_thread_count_from_the_environment_is_typed(monkeypatch):
    for bad in ("abc", "-2", "1.5"):
        monkeypatch.setenv("GPUVGM_NUM_THREADS", bad)
        with pytest.raises(ParameterError, match="GPUVGM_NUM_THREADS"):
            n_threads()
    monkeypatch.setenv("GPUVGM_NUM_THREADS", "3")
    assert n_threads() == 3
    monkeypatch.setenv("GPUVGM_NUM_THREADS", "")
    assert n_threads() >= 1


def test_cli_out_of_range_values_exit_2(tmp_path, capsys):
    src = _parquet(tmp_path / "d.parquet", n=100)
    assert main(["fit", str(src), "-o", str(tmp_path / "m"), "--n-components", "0", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "n_components" in err[0]


# ---------------------------------------------------------------------- 5. every error typed
def test_duplicate_column_names_are_typed(tmp_path):
    t = pa.table([pa.array([1.0, 2.0]), pa.array([3.0, 4.0])], names=["a", "a"])
    pq.write_table(t, tmp_path / "dup.parquet")
    (tmp_path / "dup.csv").write_text("a,a\n1,2\n")
    for x in (t, tmp_path / "dup.parquet", tmp_path / "dup.csv"):
        with pytest.raises(DataError, match="'a' appears 2 times"):
            make_source(x)
    ok = pa.table([pa.array([1.0]), pa.array([3.0]), pa.array([5.0])], names=["a", "b", "b"])
    assert make_source(ok, ["a"]).columns == ["a"]  # only the names read must be distinct
    with pytest.raises(DataError, match="'b' appears 2 times"):
        list(make_source(ok, ["a"]).chunks_with(10, ["b"]))


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("", DataError, "empty"),
        ("a,b\n1,2\n3\n", DataError, "ragged"),
        ("a,b\n1,2,3\n", DataError, "ragged"),
        ("a\n1\nxyz\n", DataTypeError, "xyz"),
    ],
)
def test_bad_csv_files_are_typed(tmp_path, text, error, message):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(error, match=message):
        gpuvgm.VGM(2, max_iter=2, device="cpu").fit(str(path))


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.ENOSPC, "no space left"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission denied"),
        (errno.EDQUOT, "quota"),
    ],
)
def test_failing_writes_name_the_destination(tmp_path, monkeypatch, code, reason):
    import pyarrow.parquet as pq_

    real = pq_.ParquetWriter.write_table

    def fail(self, *a, **kw):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(pq_.ParquetWriter, "write_table", fail)
    dst = tmp_path / "out.parquet"
    with pytest.raises(OutputError, match=rf"out\.parquet.*{reason}") as info:
        _write(dst)
    assert info.value.errno == code and isinstance(info.value, OSError)
    monkeypatch.setattr(pq_.ParquetWriter, "write_table", real)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left behind
    # Directory outputs too.
    monkeypatch.setattr(pq_, "write_table", lambda *a, **kw: fail(None))
    with pytest.raises(OutputError, match=rf"'{tmp_path / 'parts'}'.*{reason}"):
        _write(tmp_path / "parts")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_pyarrow_io_errors_without_errno_are_wrapped(tmp_path):
    exc = OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")
    err = writers.output_error(tmp_path / "o.parquet", exc)
    assert isinstance(err, OutputError) and err.errno == 28 and "no space left" in str(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_directory_is_typed(tmp_path, model):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="permission denied"):
            _write(ro / "out.parquet")
        with pytest.raises(OutputError, match="permission denied"):
            model.save(ro / "m.gpuvgm")
    finally:
        ro.chmod(0o700)


def test_a_directory_or_a_file_in_the_way_is_typed(tmp_path, model):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"in the way|not a directory"):
        _write(tmp_path / "file" / "out.parquet")
    with pytest.raises(OutputError, match=r"in the way|not a directory"):
        model.save(tmp_path / "file" / "m.gpuvgm")
    with pytest.raises(OverwriteError, match="not a directory"):
        _write(tmp_path / "file")  # a directory output over a file


def test_cli_never_prints_a_traceback_without_v(tmp_path, monkeypatch, capsys):
    import gpuvgm._demo as demo

    def broken(*a, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(demo, "run_demo", broken)
    assert main(["demo", "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error: RuntimeError: boom" in err[0]
    with pytest.raises(RuntimeError):
        main(["demo", "--dir", str(tmp_path), "-v"])
    monkeypatch.setenv("GPUVGM_NUM_THREADS", "abc")
    monkeypatch.setattr(demo, "run_demo", lambda *a, **kw: n_threads())
    assert main(["demo", "--dir", str(tmp_path)]) == 2
    assert "GPUVGM_NUM_THREADS" in capsys.readouterr().err


def test_typed_errors_are_catchable_as_builtins():
    assert issubclass(OutputError, OSError) and issubclass(OutputError, GPUVGMError)
    assert issubclass(OverwriteError, ValueError) and issubclass(OverwriteError, DataError)


# ---------------------------------------------------------------------- 6. signals, leftovers
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_a_killed_run_are_removed_by_the_next_write(tmp_path):
    dst = tmp_path / "out.parquet"
    host = writers._host()
    dead = _dead_pid()
    stale_file = tmp_path / f".out.parquet.{writers.TEMP_MARK}-{host}-{dead}-abc123_x.tmp"
    stale_dir = tmp_path / f".out.parquet.{writers.TEMP_MARK}-{host}-{dead}-zz.tmp"
    stale_file.write_bytes(b"partial")
    stale_dir.mkdir()
    (stale_dir / "part-000000.parquet").write_bytes(b"partial")
    live = tmp_path / f".out.parquet.{writers.TEMP_MARK}-{host}-{os.getppid()}-live.tmp"
    other_host = tmp_path / f".out.parquet.{writers.TEMP_MARK}-elsewhere-{dead}-x.tmp"
    foreign = tmp_path / ".out.parquet.k2j3.tmp"  # not stamped: not ours to judge
    other_dst = tmp_path / f".other.parquet.{writers.TEMP_MARK}-{host}-{dead}-x.tmp"
    for p in (live, other_host, foreign, other_dst):
        p.write_bytes(b"keep")
    _write(dst)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["out.parquet", live.name, other_host.name, foreign.name, other_dst.name])


def test_a_directory_replacement_killed_halfway_is_undone(tmp_path):
    dst = tmp_path / "out"
    _write(dst)
    old = tmp_path / f".out.{writers.TEMP_MARK}-{writers._host()}-{_dead_pid()}-q.old"
    old.mkdir()
    os.replace(dst, old / "previous")  # killed right after moving the earlier output aside
    writers.remove_stale_temps(dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert pq.read_table(dst).num_rows == 10


def test_temp_names_carry_host_and_pid(tmp_path):
    seen = []
    with writers.atomic_path(tmp_path / "m.gpuvgm") as tmp:
        seen.append(tmp.name)
    m = writers._stale_pattern("m.gpuvgm").match(seen[0])
    assert m is not None and int(m["pid"]) == os.getpid()
    assert m["host"] == writers._host() and socket.gethostname()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_terminated_or_interrupted_exits_cleanly(tmp_path, model, sig):
    # 6 000 part files of 500 rows: many seconds of writing after the first one appears, so the
    # signal lands mid-write even on the compiled backend (600 000 rows once finished first).
    n = 3_000_000
    src = tmp_path / "d.parquet"
    pq.write_table(pa.table({"0": np.random.default_rng(0).normal(0, 1, n)}), src)
    path = tmp_path / "m.gpuvgm"
    model.save(path)
    dst = tmp_path / "out"
    env = {**os.environ, "GPUVGM_NUM_THREADS": "1"}

    def default_sigint() -> None:
        # A shell without job control starts background commands with SIGINT ignored, and a
        # child inherits that (Python then installs no KeyboardInterrupt handler): the CLI
        # under test gets SIGINT's default, as in a terminal.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "gpuvgm", "transform", str(path), str(src), "-o", str(dst)),
            *("--chunk-rows", "500", "--rows-per-file", "500", "--device", "cpu"),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    started = False
    while time.monotonic() < deadline and proc.poll() is None:
        tmps = list(tmp_path.glob(".out.*.tmp"))
        if tmps and any(tmps[0].iterdir()):
            started = True
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no exit 60 s after signal {sig} (writing started: {started}): {err}")
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.parquet", "m.gpuvgm"]
