"""Model files: :func:`write_model` and :func:`read_model` (:meth:`VGM.save`, :func:`gpuvgm.load`)
write and read values, the constructor parameters and the fitted state, never the estimator.

A model file is one UTF-8 JSON document (pure ASCII in practice); loading it never executes code
(no pickle). Its top level is::

    {
     "format": "gpuvgm-model",
     "format_version": 1,
     "sha256": "<hex SHA-256 of the canonical payload>",
     "payload": {...}
    }

The *canonical payload* is ``json.dumps(payload, sort_keys=True, separators=(",", ":"),
ensure_ascii=True, allow_nan=False)`` encoded as UTF-8; the checksum detects truncation and
accidental corruption of anything the model is rebuilt from (it is not a signature). The payload
holds:

``library_version``, ``created``
    The gpuvgm version that wrote the file and the time, UTC, ISO 8601 (``...Z``).
``params``
    Every constructor parameter (:meth:`VGM.get_params`). Arrays and tuples are stored as lists.
    A ``random_state`` that was a NumPy ``Generator`` or ``RandomState`` cannot be stored: it is
    replaced by the resolved ``seed`` (which is what the fit used, so refitting the loaded model
    on the same data reproduces it).
``columns``, ``columns_from_data``
    Column names in order, and whether they came from the data (DataFrame, Arrow, files), in
    which case transform-time input is checked by name (``feature_names_in_``).
``backend``, ``seed``
    ``backend_`` (where the model was fitted) and ``seed_`` (an unsigned 64-bit integer that keys
    the component sampler).
``priors``
    The priors in each column's working frame: arrays ``shift``, ``scale``, ``mean``,
    ``covariance``, ``reg_covar`` of shape (n_columns,) and the numbers ``weight_concentration``,
    ``mean_precision``, ``degrees_of_freedom``.
``posterior``
    The variational parameters in the working frame: arrays ``a``, ``b``, ``mean_precision``,
    ``means``, ``degrees_of_freedom``, ``covariances`` of shape (n_columns, n_components).
``moments``
    The pre-pass statistics ``count``, ``mean``, ``m2``, ``minimum``, ``maximum``, ``n_null``
    (arrays of shape (n_columns,)), or null for a model made by :meth:`VGM.from_sklearn`.
``n_iter``, ``converged``, ``lower_bound``, ``lower_bounds``
    ``n_iter_``, ``converged_``, ``lower_bound_`` (arrays of shape (n_columns,)) and
    ``lower_bounds_`` (a list of one array per column, or null when the model has none).
``fit_report``
    ``fit_report_`` as JSON (NumPy arrays in it come back as lists), or null.

Arrays are stored so that they round-trip bit for bit::

    {"dtype": "<f8", "shape": [2, 10], "data": "<base64 of the little-endian bytes, C order>"}

with ``dtype`` one of ``<f8``, ``<f4``, ``<i8``, ``<i4``, ``|b1``. Floats outside arrays are
JSON numbers (Python writes the shortest repr that reads back to the same float); the
non-finite ones, which strict JSON cannot hold, are written ``{"$float": "inf" | "-inf" |
"nan"}``.

Everything the fitted attributes (``weights_``, ``means_``...) and the transform are computed
from is stored, so a loaded model transforms bit-identically to the saved one. Files are
written under a temporary name beside the target and renamed (:func:`gpuvgm._writers.atomic_path`),
so an interrupted save leaves any previous file intact.

Loading raises :class:`gpuvgm.ModelFileError` for a missing or unreadable file, a file that is
not a gpuvgm model, a truncated or corrupted one (invalid JSON, checksum mismatch, malformed
content) and a file in a newer ``format_version`` than this gpuvgm reads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import numbers
import os
import re
import stat
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ._errors import DataError, GPUVGMError, ModelFileError, OutputError, OverwriteError
from ._model import FitHistory, FittedMixture, Moments, Posterior, Priors
from ._validation import MAX_COMPONENTS, check_params_describe_fit, validate_params
from ._version import __version__
from ._writers import atomic_path, output_error, writing

FORMAT = "gpuvgm-model"
FORMAT_VERSION = 1

PRIOR_ARRAYS = ("shift", "scale", "mean", "covariance", "reg_covar")
PRIOR_SCALARS = ("weight_concentration", "mean_precision", "degrees_of_freedom")
POSTERIOR_ARRAYS = ("a", "b", "mean_precision", "means", "degrees_of_freedom", "covariances")
MOMENT_ARRAYS = ("count", "mean", "m2", "minimum", "maximum", "n_null")
TRACKED = ("n_iter", "converged", "lower_bound")  # FitHistory arrays of shape (n_columns,)

_ARRAY_DTYPES = ("<f8", "<f4", "<i8", "<i4", "|b1")
_FLOAT_TAG = "$float"


# ---------------------------------------------------------------------- encoding
def _encode_array(value: Any) -> dict[str, Any]:
    arr = np.asarray(value)
    if arr.dtype.kind == "b":
        arr = arr.astype("|b1")
    elif arr.dtype.kind in "iu":
        arr = arr.astype("<i8")
    elif arr.dtype == np.float32:
        arr = arr.astype("<f4")
    else:
        arr = arr.astype("<f8")
    arr = np.ascontiguousarray(arr)
    return {
        "dtype": arr.dtype.str,
        "shape": list(arr.shape),
        "data": base64.b64encode(arr.tobytes()).decode("ascii"),
    }


def _decode_array(obj: Any, ndim: int | None = None) -> np.ndarray:
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        raise ValueError("an array must be an object with 'dtype', 'shape' and 'data'")
    dtype, shape = obj["dtype"], obj["shape"]
    if dtype not in _ARRAY_DTYPES:
        raise ValueError(f"array dtype {dtype!r} is not one of {_ARRAY_DTYPES}")
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    ):
        raise ValueError(f"array shape {shape!r} is not a list of non-negative integers")
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"expected a {ndim}-D array, got shape {shape}")
    raw = base64.b64decode(obj["data"], validate=True)
    dt = np.dtype(dtype)
    if len(raw) != math.prod(shape) * dt.itemsize:
        raise ValueError(f"array data holds {len(raw)} bytes, not the {shape} of {dtype} expected")
    # A native-endian, writable copy (frombuffer over bytes is read-only).
    return np.frombuffer(raw, dtype=dt).reshape(shape).astype(dt.newbyteorder("="))


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON types; non-finite floats tagged (strict JSON has none)."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isfinite(x):
            return x
        return {_FLOAT_TAG: "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)  # anything else (informational fields of the fit report) as text


def _from_jsonable(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_jsonable(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {_FLOAT_TAG}:
            tag = value[_FLOAT_TAG]
            if tag not in ("inf", "-inf", "nan"):
                raise ValueError(f"unknown float tag {tag!r}")
            return float(tag)
        return {k: _from_jsonable(v) for k, v in value.items()}
    return value


def _canonical(payload: dict[str, Any]) -> bytes:
    """The bytes the checksum covers."""
    text = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("utf-8")


def _params(params: dict[str, Any], seed: int) -> dict[str, Any]:
    params = dict(params)
    if isinstance(params.get("random_state"), (np.random.Generator, np.random.RandomState)):
        params["random_state"] = int(seed)  # the resolved seed: what the fit used
    return {name: _jsonable(value) for name, value in params.items()}


def _payload(params: dict[str, Any], fitted: FittedMixture) -> dict[str, Any]:
    priors, post, moments, history = fitted.priors, fitted.posterior, fitted.moments, fitted.history
    return {
        "library_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds")[:-6] + "Z",
        "params": _params(params, fitted.seed),
        "columns": [str(c) for c in fitted.columns],
        "columns_from_data": bool(fitted.named),
        "backend": str(fitted.backend),
        "seed": int(fitted.seed),
        "priors": {
            **{name: _encode_array(getattr(priors, name)) for name in PRIOR_ARRAYS},
            **{name: _jsonable(float(getattr(priors, name))) for name in PRIOR_SCALARS},
        },
        "posterior": {name: _encode_array(getattr(post, name)) for name in POSTERIOR_ARRAYS},
        "moments": (
            None
            if moments is None
            else {name: _encode_array(getattr(moments, name)) for name in MOMENT_ARRAYS}
        ),
        "n_iter": _encode_array(history.n_iter),
        "converged": _encode_array(history.converged),
        "lower_bound": _encode_array(history.lower_bound),
        "lower_bounds": (
            None
            if history.lower_bounds is None
            else [_encode_array(tr) for tr in history.lower_bounds]
        ),
        "fit_report": None if history.report is None else _jsonable(history.report),
    }


#: Bytes read from an existing file to tell whether it is a gpuvgm model (its first field).
_SNIFF_BYTES = 4096
_MODEL_HEAD = re.compile(rb'^\s*\{\s*"format"\s*:\s*"gpuvgm-model"')


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a regular file that starts like a gpuvgm model file (its first field
    is ``"format": "gpuvgm-model"``, as :func:`write_model` writes it). Reads a few bytes, never
    blocks (a FIFO is not a model file)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            head = os.read(fd, _SNIFF_BYTES)
        finally:
            os.close(fd)
    except OSError:
        return False
    return _MODEL_HEAD.match(head) is not None


def check_model_destination(path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse to save a model over something that is not a gpuvgm model file.

    An existing gpuvgm model file is replaced; any other existing file only with
    ``overwrite=True``; a directory, a FIFO or a device never (:class:`OverwriteError`,
    :class:`OutputError`).
    """
    text = os.fspath(path)
    try:
        st = os.stat(text)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise output_error(text, exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise OutputError(f"cannot write the model to {text!r}: it is a directory.")
    if not stat.S_ISREG(st.st_mode):
        raise OverwriteError(
            f"cannot write the model to {text!r}: it exists and is not a regular file."
        )
    if not overwrite and not is_model_file(text):
        raise OverwriteError(
            f"{text!r} exists and is not a gpuvgm model file; refusing to replace it "
            "(pass overwrite=True, or --force on the command line, to replace it anyway)."
        )


def write_model(
    params: dict[str, Any],
    fitted: FittedMixture,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> None:
    """Write a fitted model to ``path`` as a gpuvgm model file (format above), atomically.

    Parameters
    ----------
    params : dict
        The constructor parameters (:meth:`VGM.get_params`).
    fitted : FittedMixture
        The fitted state.
    path : str or path-like
        Destination; its directory is created if needed and an existing file is replaced only
        once the new one is completely written.
    overwrite : bool, default=False
        Replace an existing file that is not a gpuvgm model file (one that is, is always
        replaced); see :func:`check_model_destination`.
    """
    check_model_destination(path, overwrite=overwrite)
    # Refuse to write a file that could not be loaded back, or that would load as another model.
    validate_params("VGM", params)
    check_params_describe_fit(params, fitted.posterior.means.shape[1], fitted.weights, fitted.valid)
    try:  # the checks read_model makes, before a byte is written
        validate_model_fields(
            params, fitted.columns, fitted.priors, fitted.posterior, fitted.moments
        )
    except ModelFileError as exc:
        raise DataError(f"this model cannot be saved: its {exc}") from None
    payload = _payload(params, fitted)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sha256": hashlib.sha256(_canonical(payload)).hexdigest(),
        "payload": payload,
    }
    data = (json.dumps(document, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode(
        "utf-8"
    )
    with atomic_path(path) as tmp, writing(path):
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


# ---------------------------------------------------------------------- decoding
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf: strict JSON has no infinities
        raise ValueError(f"the number {text[:40]} is out of the range of a float")
    return value


#: The largest model file :func:`read_model` reads. A model holds a few arrays of shape
#: (n_columns, n_components) plus a fit report: megabytes for thousands of columns.
MAX_MODEL_BYTES = 1 << 30


def _read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, refused beyond ``limit``; never blocks (a FIFO
    or a device is refused before it is read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise ModelFileError(f"no model file at {str(path)!r}.") from None
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {str(path)!r}: {exc}.") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ModelFileError(f"cannot read model file {str(path)!r}: it is {kind}.")
        if st.st_size > limit:
            raise ModelFileError(
                f"model file {str(path)!r} holds {st.st_size:,} bytes, more than the "
                f"{limit:,} a gpuvgm model file may hold; it is not a gpuvgm model file."
            )
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # grew while read
            raise ModelFileError(f"model file {str(path)!r} holds more than {limit:,} bytes.")
        return b"".join(chunks)
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {str(path)!r}: {exc}.") from None
    finally:
        os.close(fd)


def _read_document(path: Path) -> dict[str, Any]:
    data = _read_bounded(path, MAX_MODEL_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(
            f"{str(path)!r} is not a gpuvgm model file, or it is corrupted: it is not UTF-8 "
            f"text (byte {exc.start})."
        ) from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except (json.JSONDecodeError, ValueError, RecursionError, MemoryError) as exc:
        truncated = isinstance(exc, json.JSONDecodeError) and exc.pos >= len(text.rstrip())
        what = "truncated" if truncated else "corrupted, or not a gpuvgm model file"
        raise ModelFileError(f"model file {str(path)!r} is {what}: invalid JSON ({exc}).") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError(
            f"{str(path)!r} is not a gpuvgm model file (it has no "
            f'"format": "{FORMAT}" field at the top level).'
        )
    version = doc.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(
            f"model file {str(path)!r} has an invalid format_version {version!r}; it is corrupted."
        )
    if version > FORMAT_VERSION:
        payload = doc.get("payload")
        writer = payload.get("library_version") if isinstance(payload, dict) else None
        raise ModelFileError(
            f"model file {str(path)!r} has format version {version} (written by gpuvgm "
            f"{writer or 'unknown'}); gpuvgm {__version__} reads format versions up to "
            f"{FORMAT_VERSION}. Upgrade gpuvgm to load it."
        )
    payload, checksum = doc.get("payload"), doc.get("sha256")
    if not isinstance(payload, dict) or not isinstance(checksum, str):
        raise ModelFileError(
            f"model file {str(path)!r} is corrupted: it lacks its payload or its checksum."
        )
    try:
        canonical = _canonical(payload)
    except (RecursionError, ValueError, TypeError) as exc:
        raise ModelFileError(
            f"model file {str(path)!r} is corrupted: its payload cannot be checked "
            f"({type(exc).__name__}: {exc})."
        ) from None
    if hashlib.sha256(canonical).hexdigest() != checksum:
        raise ModelFileError(
            f"model file {str(path)!r} is corrupted: its SHA-256 checksum does not match its "
            "content."
        )
    return payload


def _field_error(field: str, arr: np.ndarray, bad: np.ndarray, must: str) -> ModelFileError:
    where = tuple(int(i) for i in np.argwhere(bad)[0]) if arr.ndim else ()
    index = f"[{', '.join(map(str, where))}]" if where else ""
    value = arr[where] if where else arr
    return ModelFileError(
        f"field {field}{index} is {float(value)!r}; it must be {must} "
        "(the file was altered after it was written, or written by a broken gpuvgm)."
    )


def _check_array(
    field: str, arr: np.ndarray, must: str = "finite", low: float | None = None, strict: bool = True
) -> None:
    if arr.dtype.kind != "f":
        raise ModelFileError(f"field {field} has dtype {arr.dtype}; it must hold floats.")
    bad = ~np.isfinite(arr)
    if low is not None:
        bad |= (arr <= low) if strict else (arr < low)
    if bad.any():
        raise _field_error(field, arr, bad, must)


def validate_model_fields(
    params: dict[str, Any],
    columns: Sequence[str],
    priors: Priors,
    post: Posterior,
    moments: Moments | None,
) -> None:
    """Check the fitted state read from a model file, after its checksum: a file edited and
    resealed (or written by a broken writer) must not load into a model that transforms to
    NaN or garbage.

    Raises :class:`ModelFileError` naming the first bad field: shapes (n_columns,) and
    (n_columns, n_components) with ``1 <= n_components <= MAX_COMPONENTS``; finite values;
    positive frame scales, prior and posterior covariances, precisions, degrees of freedom and
    stick-breaking parameters; moments that are counts and ordered bounds; priors that agree
    with the stored parameters; distinct column names.
    """
    n_cols = len(columns)
    if len(set(columns)) != n_cols:
        dup = next(c for c in columns if list(columns).count(c) > 1)
        raise ModelFileError(f"field columns names {dup!r} twice.")
    k = post.means.shape[1] if post.means.ndim == 2 else -1
    if not 1 <= k <= MAX_COMPONENTS:
        raise ModelFileError(
            f"field posterior.means has {k} components; 1 to {MAX_COMPONENTS} are allowed."
        )
    if k != params.get("n_components", k):
        raise ModelFileError(
            f"field posterior.means has {k} components but params.n_components is "
            f"{params.get('n_components')!r}."
        )
    for name in PRIOR_ARRAYS:
        if getattr(priors, name).shape != (n_cols,):
            raise ModelFileError(f"field priors.{name} does not have shape ({n_cols},).")
    for name in POSTERIOR_ARRAYS:
        if getattr(post, name).shape != (n_cols, k):
            raise ModelFileError(f"field posterior.{name} does not have shape ({n_cols}, {k}).")
    _check_array("priors.shift", priors.shift)
    _check_array("priors.scale", priors.scale, "finite and > 0", 0.0)
    _check_array("priors.mean", priors.mean)
    _check_array("priors.covariance", priors.covariance, "finite and > 0", 0.0)
    _check_array("priors.reg_covar", priors.reg_covar, "finite and >= 0", 0.0, strict=False)
    for name in PRIOR_SCALARS:
        _check_array(
            f"priors.{name}", np.asarray(float(getattr(priors, name))), "finite and > 0", 0.0
        )
    for name in ("a", "b", "mean_precision", "degrees_of_freedom", "covariances"):
        _check_array(f"posterior.{name}", getattr(post, name), "finite and > 0", 0.0)
    _check_array("posterior.means", post.means)

    # The priors are what the stored parameters make of them.
    stored = {
        "weight_concentration": params.get("weight_concentration_prior"),
        "mean_precision": params.get("mean_precision_prior"),
        "degrees_of_freedom": params.get("degrees_of_freedom_prior"),
    }
    if stored["weight_concentration"] is None:
        stored["weight_concentration"] = 1.0 / k
    for name, value in stored.items():
        if isinstance(value, (int, float)) and not math.isclose(
            getattr(priors, name), float(value), rel_tol=1e-9
        ):
            raise ModelFileError(
                f"field priors.{name} is {getattr(priors, name)!r} but the stored parameters "
                f"give {float(value)!r}."
            )
    reg = params.get("reg_covar")
    if isinstance(reg, (int, float)):
        expected = float(reg) / priors.scale**2
        if not np.allclose(priors.reg_covar, expected, rtol=1e-9, atol=0.0):
            raise ModelFileError(
                f"field priors.reg_covar does not match params.reg_covar={float(reg)!r} in "
                "the working frame (reg_covar / scale**2)."
            )

    if moments is not None:
        for name in MOMENT_ARRAYS:
            if getattr(moments, name).shape != (n_cols,):
                raise ModelFileError(f"field moments.{name} does not have shape ({n_cols},).")
        for name in ("count", "n_null"):
            arr = getattr(moments, name).astype(np.float64)
            bad = ~np.isfinite(arr) | (arr < 0) | (arr != np.round(arr))
            if bad.any():
                raise _field_error(f"moments.{name}", arr, bad, "a count (an integer >= 0)")
        _check_array("moments.mean", moments.mean)
        _check_array("moments.m2", moments.m2, "finite and >= 0", 0.0, strict=False)
        seen = moments.count > 0
        for name in ("minimum", "maximum"):
            arr = getattr(moments, name)
            bad = seen & ~np.isfinite(arr)
            if bad.any():
                raise _field_error(f"moments.{name}", arr, bad, "finite for a non-empty column")
        bad = seen & (moments.minimum > moments.maximum)
        if bad.any():
            raise _field_error("moments.minimum", moments.minimum, bad, "<= moments.maximum")


def _rebuild(
    payload: dict[str, Any], device: str | None, complete: Callable[[dict], dict]
) -> tuple[dict[str, Any], FittedMixture]:
    params = _from_jsonable(payload["params"])
    if not isinstance(params, dict):
        raise ValueError("'params' is not an object")
    if device is not None:
        params["device"] = device
    params = complete(params)  # unknown names raise TypeError
    validate_params("VGM", params)

    names = payload["columns"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not names:
        raise ValueError("'columns' is not a non-empty list of strings")
    n_cols, k = len(names), params["n_components"]

    p = payload["priors"]
    prior_arrays = {name: _decode_array(p[name], ndim=1) for name in PRIOR_ARRAYS}
    prior_scalars: dict[str, float] = {}
    for name in PRIOR_SCALARS:
        value = _from_jsonable(p[name])
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ValueError(f"prior {name!r} is not a number")
        prior_scalars[name] = float(value)
    priors = Priors(
        shift=prior_arrays["shift"],
        scale=prior_arrays["scale"],
        mean=prior_arrays["mean"],
        covariance=prior_arrays["covariance"],
        reg_covar=prior_arrays["reg_covar"],
        weight_concentration=prior_scalars["weight_concentration"],
        mean_precision=prior_scalars["mean_precision"],
        degrees_of_freedom=prior_scalars["degrees_of_freedom"],
    )
    post = Posterior(
        **{name: _decode_array(payload["posterior"][name], ndim=2) for name in POSTERIOR_ARRAYS}
    )
    moments = (
        None
        if payload["moments"] is None
        else Moments(**{name: _decode_array(payload["moments"][name], 1) for name in MOMENT_ARRAYS})
    )
    for group, arrays, shape in (
        ("priors", prior_arrays.values(), (n_cols,)),
        ("posterior", (getattr(post, f) for f in POSTERIOR_ARRAYS), (n_cols, k)),
        (
            "moments",
            () if moments is None else (getattr(moments, f) for f in MOMENT_ARRAYS),
            (n_cols,),
        ),
    ):
        for arr in arrays:
            if arr.shape != shape:
                raise ValueError(f"a {group} array has shape {arr.shape}, expected {shape}")

    validate_model_fields(params, names, priors, post, moments)

    named = payload["columns_from_data"]
    backend, seed = payload["backend"], payload["seed"]
    if not isinstance(named, bool) or not isinstance(backend, str):
        raise ValueError("'columns_from_data' or 'backend' has the wrong type")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError("'seed' is not an unsigned 64-bit integer")
    tracked = {name: _decode_array(payload[name], ndim=1) for name in TRACKED}
    for (name, arr), kinds in zip(tracked.items(), ("iu", "b", "f"), strict=True):
        if arr.shape != (n_cols,):
            raise ValueError(f"{name}_ does not have shape ({n_cols},)")
        if arr.dtype.kind not in kinds:
            raise ModelFileError(f"field {name} has dtype {arr.dtype}.")
    if (tracked["n_iter"] < 0).any():
        raise ModelFileError("field n_iter holds a negative iteration count.")
    traces = None
    if payload["lower_bounds"] is not None:
        traces = [_decode_array(tr, ndim=1) for tr in payload["lower_bounds"]]
        if len(traces) != n_cols:
            raise ValueError(f"'lower_bounds' does not hold {n_cols} traces")
    report = None if payload["fit_report"] is None else _from_jsonable(payload["fit_report"])
    history = FitHistory(**tracked, lower_bounds=traces, report=report)
    threshold = params["weight_threshold"]
    fitted = FittedMixture(priors, post, moments, names, named, backend, seed, threshold, history)
    return params, fitted


def read_model(
    path: str | os.PathLike, *, device: str | None = None, complete: Callable[[dict], dict]
) -> tuple[dict[str, Any], FittedMixture]:
    """Read a model written by :func:`write_model`.

    Parameters
    ----------
    path : str or path-like
        A gpuvgm model file (format above).
    device : {"auto", "cpu", "cuda"} or None, default=None
        Overrides the saved ``device`` parameter (see :func:`gpuvgm.load`).
    complete : callable
        ``complete(params) -> params``: the saved parameters completed with the defaults of the
        estimator (which raises TypeError for a name it does not know).

    Returns
    -------
    params : dict
        The constructor parameters.
    fitted : FittedMixture
        The fitted state; it transforms bit-identically to the one that was saved.

    Raises
    ------
    ModelFileError
        As :func:`gpuvgm.load`.
    """
    if device is not None:
        validate_params("load", {"device": device})
    path = Path(path)
    payload = _read_document(path)
    try:
        return _rebuild(payload, device, complete)
    except GPUVGMError as exc:
        raise ModelFileError(f"model file {str(path)!r} cannot be loaded: {exc}") from exc
    except (RecursionError, OverflowError, MemoryError) as exc:
        raise ModelFileError(
            f"model file {str(path)!r} is malformed ({type(exc).__name__}); it was not written "
            "by gpuvgm or has been altered."
        ) from None
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
        what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelFileError(
            f"model file {str(path)!r} is malformed ({what}); it was not written by gpuvgm "
            "or has been altered."
        ) from None
