"""Parameter constraints and data checks, in one place.

Parameter errors use scikit-learn's wording ("The 'tol' parameter of VGM must be a float in the
range [0, inf). Got -1 instead.") so users recognise them; data errors name the column and,
where there is one, the first offending row.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._errors import DataError, DataTypeError, ParameterError

MAX_COMPONENTS = 32  # the CUDA kernels keep K components in registers


@dataclass(frozen=True)
class Interval:
    """A numeric constraint, printed as scikit-learn prints it."""

    kind: type  # numbers.Integral or numbers.Real
    low: float | None
    high: float | None
    closed: str  # "left", "right", "both", "neither"
    finite: bool = False  # refuse +-inf even where the range is unbounded

    def __call__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        try:
            value = float(value)  # type: ignore[arg-type]  # a Real, checked above
        except OverflowError:  # an int beyond the float range
            return False
        if np.isnan(value) or (np.isinf(value) and (self.high is not None or self.finite)):
            return False
        lo_ok = self.low is None or (
            value >= self.low if self.closed in ("left", "both") else value > self.low
        )
        hi_ok = self.high is None or (
            value <= self.high if self.closed in ("right", "both") else value < self.high
        )
        return bool(lo_ok and hi_ok)

    def __str__(self) -> str:
        name = "an int" if self.kind is numbers.Integral else "a float"
        if self.finite and self.kind is not numbers.Integral:
            name = "a finite float"
        lb = "[" if self.closed in ("left", "both") else "("
        rb = "]" if self.closed in ("right", "both") else ")"
        lo = "-inf" if self.low is None else _fmt(self.low)
        hi = "inf" if self.high is None else _fmt(self.high)
        return f"{name} in the range {lb}{lo}, {hi}{rb}"


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(v)


@dataclass(frozen=True)
class Options:
    values: tuple[str, ...]

    def __call__(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.values

    def __str__(self) -> str:
        return "a str among {" + ", ".join(repr(v) for v in self.values) + "}"


@dataclass(frozen=True)
class Check:
    test: Callable[[Any], bool]
    text: str

    def __call__(self, value: Any) -> bool:
        return self.test(value)

    def __str__(self) -> str:
        return self.text


NONE = Check(lambda v: v is None, "None")
ARRAY = Check(
    lambda v: isinstance(v, (np.ndarray, list, tuple)) and not isinstance(v, str), "an array-like"
)


def _finite_array(v: Any) -> bool:
    if not isinstance(v, (np.ndarray, list, tuple)) or isinstance(v, str):
        return False
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return False
    return bool(np.all(np.isfinite(arr)))


def _positive_array(v: Any) -> bool:
    return _finite_array(v) and bool(np.all(np.asarray(v, dtype=np.float64) > 0))


FINITE_ARRAY = Check(_finite_array, "an array-like of finite floats")
POSITIVE_ARRAY = Check(_positive_array, "an array-like of finite floats > 0")
RANDOM_STATE = Check(
    lambda v: (
        isinstance(v, (np.random.Generator, np.random.RandomState))
        or (isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= int(v) < 2**64)
    ),
    "an int in the range [0, 2**64), a numpy.random.Generator or RandomState",
)

PARAMETER_CONSTRAINTS: dict[str, list[Any]] = {
    "n_components": [Interval(numbers.Integral, 1, MAX_COMPONENTS, "both")],
    # The priors and the regularisation enter the M-step's sums: an infinite one makes every
    # posterior NaN, so each is finite (as scikit-learn's float constraints, plus finiteness).
    "weight_concentration_prior": [Interval(numbers.Real, 0, None, "neither", finite=True), NONE],
    "mean_precision_prior": [Interval(numbers.Real, 0, None, "neither", finite=True), NONE],
    "mean_prior": [Interval(numbers.Real, None, None, "neither", finite=True), FINITE_ARRAY, NONE],
    "degrees_of_freedom_prior": [Interval(numbers.Real, 0, None, "neither", finite=True), NONE],
    "covariance_prior": [
        Interval(numbers.Real, 0, None, "neither", finite=True),
        POSITIVE_ARRAY,
        NONE,
    ],
    "reg_covar": [Interval(numbers.Real, 0, None, "left", finite=True)],
    "tol": [Interval(numbers.Real, 0, None, "left")],
    "tol_scale": [Options(("per_row", "sum"))],
    "max_iter": [Interval(numbers.Integral, 0, None, "left")],
    "init_params": [Options(("kmeans", "k-means++", "random", "random_from_data"))],
    "init_sample_size": [Interval(numbers.Integral, 1, None, "left")],
    "means_init": [ARRAY, NONE],
    "weight_threshold": [Interval(numbers.Real, 0, 1, "left")],
    "component_selection": [Options(("sample", "argmax"))],
    "clip": [Interval(numbers.Real, 0, None, "neither"), NONE],
    "null_policy": [Options(("ignore", "error"))],
    "chunk_rows": [Interval(numbers.Integral, 1, None, "left")],
    "cache_bytes": [Interval(numbers.Integral, 0, None, "left"), NONE],
    "device_cache_fraction": [Interval(numbers.Real, 0, 1, "both")],
    "staged": [Check(lambda v: isinstance(v, (bool, np.bool_)), "a bool")],
    "schedule": [Options(("auto", "sklearn", "staged"))],
    "n_init": [Interval(numbers.Integral, 1, None, "left")],
    "device": [Options(("auto", "cpu", "numpy", "cuda"))],
    "compute_dtype": [Options(("float32", "float64")), NONE],
    "n_jobs": [
        Interval(numbers.Integral, 1, None, "left"),
        Interval(numbers.Integral, None, -1, "right"),
        NONE,
    ],
    "random_state": [RANDOM_STATE, NONE],
}


def validate_params(owner: str, params: dict[str, Any]) -> None:
    """Raise :class:`ParameterError` for the first parameter outside its constraints."""
    for name, value in params.items():
        constraints = PARAMETER_CONSTRAINTS.get(name)
        if constraints is None or any(c(value) for c in constraints):
            continue
        if len(constraints) == 1:
            allowed = str(constraints[0])
        else:
            allowed = ", ".join(str(c) for c in constraints[:-1]) + f" or {constraints[-1]}"
        raise ParameterError(
            f"The {name!r} parameter of {owner} must be {allowed}. Got {value!r} instead."
        )


#: The largest magnitude a prior may take in a column's working frame (where the data have
#: mean 0 and standard deviation 1): its square times a row count must stay a finite float64.
MAX_WORKING_PRIOR = 1e100


def check_working_priors(
    names: Sequence[str], mean: np.ndarray, covariance: np.ndarray, reg_covar: np.ndarray
) -> None:
    """The priors of each column in its working frame (``Priors.mean``, ``.covariance``,
    ``.reg_covar``, arrays of shape (n_columns,)) can be fitted in float64.

    A finite ``mean_prior`` far from the data (``1e300`` for a column of standard deviation 1)
    overflows the M-step and gives an all-NaN model; raise a :class:`ParameterError` naming the
    parameter and the column instead.
    """
    reg_covar = np.asarray(reg_covar, dtype=np.float64)
    for param, arr, positive in (
        ("mean_prior", mean, False),
        ("covariance_prior", covariance, True),
        ("reg_covar", reg_covar, False),
    ):
        arr = np.asarray(arr, dtype=np.float64)
        bad = ~np.isfinite(arr) | (np.abs(arr) > MAX_WORKING_PRIOR)
        if positive:
            # Every component variance is at least (covariance_prior + n_k reg_covar) / nu: a
            # zero prior (a constant column's variance) is fine while reg_covar keeps it apart
            # from zero.
            floor = arr + reg_covar
            bad |= (floor <= 0) | (floor < 1.0 / MAX_WORKING_PRIOR)
        if bad.any():
            j = first_row(bad)
            raise ParameterError(
                f"The {param!r} parameter is out of scale for column {names[j]!r}: in the "
                f"column's working frame (its mean and standard deviation) it is {arr[j]:.3g}; "
                f"gpuvgm fits values up to {MAX_WORKING_PRIOR:g} there. Use a prior nearer "
                "the data."
            )


#: Parameters the fitted state depends on: changing one with ``set_params`` after ``fit``
#: takes effect at the next ``fit`` (scikit-learn's semantics), so until then the model's
#: parameters no longer describe its fitted state and it cannot be saved.
FITTED_STATE_PARAMS = (
    "n_components",
    "weight_concentration_prior",
    "mean_precision_prior",
    "mean_prior",
    "degrees_of_freedom_prior",
    "covariance_prior",
    "reg_covar",
    "weight_threshold",
)


def check_params_describe_fit(
    params: dict[str, Any],
    n_components: int,
    weights: np.ndarray,
    valid_components: np.ndarray,
) -> None:
    """Refuse to save a model whose parameters were changed after its fit in a way that changes
    what its fitted state means: ``n_components`` (the fitted K, from ``weights`` of shape
    (n_columns, K)) or ``weight_threshold`` (``valid_components`` of the same shape, as the fit
    computed it). Raises :class:`ParameterError` saying to refit or set the value back.
    """
    k = params.get("n_components")
    if k != n_components:
        raise ParameterError(
            f"n_components is {k!r} but the model was fitted with {n_components}: a parameter "
            "set after fit takes effect at the next fit. Refit, or set it back, before saving."
        )
    threshold = params.get("weight_threshold")
    if isinstance(threshold, (int, float)):
        valid = weights > threshold
        valid[np.arange(valid.shape[0]), np.argmax(weights, axis=1)] = True
        if not np.array_equal(valid, valid_components):
            raise ParameterError(
                f"weight_threshold={threshold!r} selects other components than the fit did: a "
                "parameter set after fit takes effect at the next fit. Refit, or set it back, "
                "before saving."
            )


def per_column(name: str, value: Any, n_columns: int, default: np.ndarray) -> np.ndarray:
    """A scalar or (n_columns,) parameter as a float64 array of shape (n_columns,)."""
    if value is None:
        return np.asarray(default, dtype=np.float64)
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_columns, float(arr))
    if arr.shape != (n_columns,) or not np.all(np.isfinite(arr)):
        raise ParameterError(
            f"The {name!r} parameter must be a finite float or an array of shape ({n_columns},) "
            f"(one value per column). Got shape {arr.shape}."
        )
    return arr


def check_columns_match(fitted: Sequence[str], given: Sequence[str], named: bool) -> None:
    """Transform-time columns must be the fitted ones, in the same order."""
    if len(given) != len(fitted):
        raise DataError(
            f"X has {len(given)} columns but the model was fitted on {len(fitted)} "
            f"({', '.join(map(repr, fitted))})."
        )
    if named and list(given) != list(fitted):
        for i, (a, b) in enumerate(zip(fitted, given, strict=True)):
            if a != b:
                raise DataError(
                    f"column {i} is {b!r} but the model was fitted with {a!r} there; "
                    "pass the fitted columns in the fitted order."
                )


def first_row(mask: np.ndarray) -> int:
    """Index of the first True in ``mask``."""
    return int(np.flatnonzero(mask)[0])


def _first_bad(bad: np.ndarray) -> tuple[int, int]:
    """``(row, column)`` of the first offending column's first offending row, (n, C) mask."""
    j = int(np.flatnonzero(bad.any(axis=0))[0])
    return first_row(bad[:, j]), j


def check_finite(chunk: np.ndarray, names: Sequence[str], offset: int) -> None:
    """No ±inf in a chunk of shape (n, C) whose first row is global row ``offset``."""
    inf = np.isinf(chunk)
    if inf.any():
        i, j = _first_bad(inf)
        raise DataError(
            f"column {names[j]!r} holds an infinite value (first at row {offset + i}); "
            "replace or drop infinities."
        )


def check_no_nulls(chunk: np.ndarray, names: Sequence[str], offset: int) -> None:
    """No NaN (null) in a chunk, for ``null_policy="error"``."""
    nan = np.isnan(chunk)
    if nan.any():
        i, j = _first_bad(nan)
        raise DataError(
            f"column {names[j]!r} holds a null (first at row {offset + i}) and null_policy='error'."
        )


def check_encoded(
    encoded: Any, names: Sequence[str], n_valid: np.ndarray, alpha_bound: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(normalized, component)`` checked for :meth:`VGM.inverse_transform`.

    Returns ``normalized`` as float64 and ``component`` as int64, both of shape (n, C); a NaN
    ``normalized`` marks a null (its component is not checked). Raises :class:`DataError` or
    :class:`DataTypeError` naming the column and the first offending row for: a wrong width, a
    non-integer or out-of-range component, an infinite or out-of-bound (``|alpha| >
    alpha_bound``) normalized value.
    """
    try:
        normalized, component = encoded
    except (TypeError, ValueError):
        raise DataError(
            "inverse_transform expects an Encoded or a (normalized, component) pair."
        ) from None
    try:
        normalized, component = np.asarray(normalized), np.asarray(component)
    except (TypeError, ValueError) as exc:  # ragged nested lists
        raise DataError(f"normalized and component must be arrays: {exc}") from None
    if normalized.dtype.kind not in "iufO":  # not strings, bools, complex numbers, dates
        raise DataTypeError(f"normalized must hold floats, got dtype {normalized.dtype}.")
    try:
        normalized = np.asarray(normalized, dtype=np.float64)
    except (TypeError, ValueError) as exc:  # objects that are not numbers
        raise DataTypeError(f"normalized must hold floats: {exc}") from None
    c = len(names)
    if normalized.ndim == 1 and c == 1:
        normalized, component = normalized[:, None], component.reshape(-1, 1)
    if normalized.ndim != 2 or normalized.shape[1] != c or component.shape != normalized.shape:
        raise DataError(
            f"normalized and component must both have shape (n_rows, {c}); got "
            f"{normalized.shape} and {component.shape}."
        )
    present = ~np.isnan(normalized)
    if component.dtype.kind == "f":
        rounded = np.round(component)
        bad = present & (rounded != component)
        if bad.any():
            i, j = _first_bad(bad)
            raise DataError(f"column {names[j]!r}: component is not an integer (first at row {i}).")
        component = np.nan_to_num(rounded, nan=-1).astype(np.int64)
    elif component.dtype.kind not in "iu":
        raise DataError(f"component must hold integers, got dtype {component.dtype}.")
    bad = present & ((component < 0) | (component >= n_valid[None, :]))
    if bad.any():
        i, j = _first_bad(bad)
        raise DataError(
            f"column {names[j]!r}: component {int(component[i, j])} at row {i} is out of range; "
            f"the column has {int(n_valid[j])} valid components."
        )
    inf = np.isinf(normalized)
    if inf.any():
        i, j = _first_bad(inf)
        raise DataError(f"column {names[j]!r}: normalized value is infinite at row {i}.")
    bad = present & (np.abs(normalized) > alpha_bound)
    if bad.any():
        i, j = _first_bad(bad)
        raise DataError(
            f"column {names[j]!r}: normalized value {normalized[i, j]:.6g} at row {i} is outside "
            f"[-{alpha_bound:g}, {alpha_bound:g}]; transform output lies in [-clip, clip] and "
            "CTGAN's generator output in [-1, 1]."
        )
    return normalized, np.asarray(component, dtype=np.int64)


def resolve_seed(random_state: Any) -> int:
    """The integer seed of a ``random_state`` parameter: drawn from the OS when None, drawn from
    a NumPy ``Generator`` or ``RandomState``, else the value itself."""
    if random_state is None:
        return int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0])
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    return int(random_state)
