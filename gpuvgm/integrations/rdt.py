"""RDT's ``ClusterBasedNormalizer``, running on gpuvgm.

:class:`ClusterBasedNormalizer` is a drop-in for ``rdt.transformers.ClusterBasedNormalizer``: the
same constructor, the same output columns (``<col>.normalized``, ``<col>.component`` and, with
``missing_value_generation="from_column"``, ``<col>.is_null``), the same dtypes (all float64),
the same ``reverse_transform``, and the same handling of nulls, rounding and min/max, because it
derives from RDT's own ``FloatFormatter`` exactly as RDT's class does. Only the mixture differs:
it is a :class:`gpuvgm.VGM` fitted and applied by gpuvgm's backends (NumPy or CUDA). Being an
RDT ``BaseTransformer``, it plugs into RDT's ``HyperTransformer`` and into CTGAN
(:func:`gpuvgm.integrations.ctgan.use_gpuvgm`).

>>> from gpuvgm.integrations.rdt import ClusterBasedNormalizer        # doctest: +SKIP
>>> cbn = ClusterBasedNormalizer(missing_value_generation="from_column", device="cuda")
>>> out = cbn.fit_transform(table, column="amount")                    # doctest: +SKIP
>>> back = cbn.reverse_transform(out)                                  # doctest: +SKIP

Two modes (``rdt_compatible``):

- ``False`` (default): gpuvgm's transform. The component is drawn on the device by Philox keyed
  by (seed, row), so the output is a pure function of the fitted model and the data: the same on
  every call, any chunk size, any backend. The seed is ``random_state`` or, when that is None,
  RDT's per-column seed (a hash of the column name and its first rows), so columns draw
  independent streams. The fit stops with gpuvgm's per-row tolerance.
- ``True``: RDT's arithmetic, bit for bit. The component is drawn as RDT draws it: one
  ``random_sample()`` per row from NumPy's global legacy ``RandomState`` that RDT seeds for
  ``transform`` (and advances across calls), inverted through RDT's CDF arithmetic, vectorised
  (:func:`rdt_choice`). ``normalized`` and ``reverse_transform`` use RDT's expressions in float64
  on the host. The fit is initialised as scikit-learn initialises RDT's fit
  (``KMeans(n_init=1, random_state=<RDT's fit seed>)`` on the column) and stopped with
  scikit-learn's rule (``tol=1e-3`` on the lower bound summed over rows), so it finds RDT's
  modes. Given the same mixture parameters (:meth:`ClusterBasedNormalizer.from_rdt`), the output
  equals RDT's bit for bit. The posterior is still computed by gpuvgm's backend; only the draw
  and the affine maps run on the host.

Both modes fit on what RDT fits on: the column with its nulls replaced by the mean (RDT's
``missing_value_replacement="mean"``), and encode null rows as the mean's encoding.

Both modes clip ``normalized`` to [-0.99, 0.99] as RDT does (and ``reverse_transform`` its input
to [-1, 1], where CTGAN's ``tanh`` outputs lie), unless ``vgm_params={"clip": c}`` says
otherwise: ``{"clip": None}`` keeps the exact ``normalized`` and ``reverse_transform`` clips
nothing, so every value comes back (a heavy tail included); a float ``c`` clips the transform to
``c`` and the reverse to ``max(1, c)``. gpuvgm's own :class:`gpuvgm.VGM` does not clip by
default.
"""

from __future__ import annotations

import abc
import copy
import inspect
import numbers
import warnings
from typing import Any

import numpy as np

from .._errors import DataTypeError, MissingDependencyError, NotFittedError, ParameterError
from .._estimator import VGM
from .._model import RDT_CLIP, SAMPLE_PROB_FLOOR
from .._validation import MAX_COMPONENTS, resolve_seed, validate_params

try:
    from rdt.transformers.numerical import ClusterBasedNormalizer as _RDTNormalizer
    from rdt.transformers.numerical import FloatFormatter
except ImportError as exc:  # pragma: no cover - exercised only without rdt
    raise MissingDependencyError(
        "gpuvgm.integrations.rdt needs RDT (rdt>=1.10): pip install 'gpuvgm[rdt]'"
    ) from exc

__all__ = ["ClusterBasedNormalizer", "rdt_choice"]

# Rows per block of the posterior in rdt_compatible mode: (rows x K) float64 stays ~80 MB.
_BLOCK_ROWS = 1 << 20

# rdt 1.x's constructor starts with the deprecated ``model_missing_values`` (1.10 to 1.22); 2.0
# dropped it. This class's constructor takes RDT's arguments in the installed RDT's order.
RDT_TAKES_MODEL_MISSING_VALUES = (
    "model_missing_values" in inspect.signature(_RDTNormalizer.__init__).parameters
)

# RDT's own words (rdt.transformers.base.BaseTransformer._set_model_missing_values, rdt 1.x).
_MODEL_MISSING_VALUES_WARNING = (
    "Future versions of RDT will not support the 'model_missing_values' parameter. "
    "Please switch to using the 'missing_value_generation' parameter to select your strategy."
)

# What pandas infers for an object column RDT can encode (numbers, possibly with nulls).
_NUMERIC_INFERRED = {"integer", "floating", "mixed-integer-float", "decimal", "boolean", "empty"}

# The VGM parameters this class sets itself (from RDT's constructor or its own options).
_OWN_VGM_PARAMS = ("n_components", "weight_threshold", "device", "random_state")


def rdt_choice(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """RDT's random component choice for every row at once, bit for bit.

    RDT's ``ClusterBasedNormalizer._transform`` loops over rows::

        p = probs[i] + 1e-6
        p = p / p.sum()
        component[i] = np.random.choice(np.arange(n_valid), p=p)

    and NumPy's legacy ``choice`` with ``p`` draws one ``random_sample()`` ``u``, builds
    ``cdf = p.cumsum(); cdf /= cdf[-1]`` and returns ``cdf.searchsorted(u, side="right")``. This
    function does the same float64 operations on all rows: the row sums and cumulative sums of a
    C-contiguous (n, n_valid) array along its last axis run NumPy's 1-D loops on each row, in the
    same order, and ``searchsorted(side="right")`` on a non-decreasing row is the count of its
    entries ``<= u``. ``tests/parity/test_rdt_integration.py`` checks it against the loop.

    Parameters
    ----------
    probs : ndarray of shape (n_rows, n_valid)
        Posterior over the valid components (RDT: ``predict_proba`` restricted to them).
    u : ndarray of shape (n_rows,)
        The uniforms: ``RandomState.random_sample(n_rows)`` from the state RDT's loop would
        start from (one ``random_sample(n)`` yields the same doubles as ``n`` scalar calls).

    Returns
    -------
    ndarray of shape (n_rows,), int64
        The chosen component, an index among the valid ones.
    """
    p = np.ascontiguousarray(probs, dtype=np.float64) + SAMPLE_PROB_FLOOR  # (n, V)
    p /= p.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p, axis=1)  # (n, V)
    cdf /= cdf[:, -1:]
    return np.count_nonzero(cdf <= np.asarray(u, dtype=np.float64)[:, None], axis=1)


class ClusterBasedNormalizer(FloatFormatter, abc.ABC):
    """RDT's ``ClusterBasedNormalizer`` with gpuvgm's mixture (see the module docstring).

    ``abc.ABC`` among the bases keeps this class out of RDT's transformer registry: RDT lists
    ``BaseTransformer``'s subclasses by name (``get_class_by_transformer_name``,
    ``get_transformers_by_type``, ``HyperTransformer.update_transformers_by_sdtype(...,
    transformer_name=...)``) and skips those that name ``abc.ABC`` as a direct base (rdt 1.10 to
    2.0, ``BaseTransformer.get_subclasses``). Without it, importing this module would make RDT's
    name ``"ClusterBasedNormalizer"`` resolve to this class for the whole process. Use it by
    passing an instance (``HyperTransformer.update_transformers``) or through
    :func:`gpuvgm.integrations.ctgan.use_gpuvgm`; it declares no abstract method, so it is
    instantiated as usual.

    The constructor takes RDT's arguments in the installed RDT's order (rdt 1.x starts with
    ``model_missing_values``; rdt 2.0 dropped it and takes it here as a keyword), then gpuvgm's.

    Parameters
    ----------
    model_missing_values : bool or None, default=None
        rdt 1.x's deprecated spelling (a ``FutureWarning``, as RDT): True is
        ``missing_value_generation="from_column"``, False is ``"random"``.
    learn_rounding_scheme : bool, default=False
        As RDT: round ``reverse_transform``'s output to the decimals seen in ``fit``.
    enforce_min_max_values : bool, default=False
        As RDT: clip ``reverse_transform``'s output to the range seen in ``fit``.
    max_clusters : int, default=10
        Mixture components (gpuvgm's ``n_components``), at most 32.
    weight_threshold : float, default=0.005
        A component is valid when its weight exceeds this.
    missing_value_generation : {"random", "from_column", None}, default="random"
        As RDT: ``"from_column"`` adds ``<col>.is_null`` and restores nulls from it;
        ``"random"`` restores nulls at random at the fitted rate; None leaves them out.
    device : {"auto", "cpu", "cuda"}, default="auto"
        Where gpuvgm fits and transforms.
    random_state : int, numpy Generator/RandomState or None, default=None
        Seeds gpuvgm's fit and (default mode) its component draws. None uses RDT's seeds: the
        column's own seed (a hash of its name and first rows), so columns draw independently.
    rdt_compatible : bool, default=False
        Reproduce RDT's component draws and arithmetic exactly (see the module docstring).
    vgm_params : dict, optional
        Further :class:`gpuvgm.VGM` parameters (``max_iter``, ``tol``, ``chunk_rows``...).
        ``clip`` defaults to RDT's 0.99 here; ``{"clip": None}`` makes the round trip exact
        (``reverse_transform`` then clips nothing either).

    Attributes
    ----------
    valid_component_indicator : ndarray of shape (max_clusters,), bool
        Valid components, as RDT's attribute of the same name (CTGAN reads it).
    model_ : gpuvgm.VGM
        The fitted one-column mixture.
    """

    STD_MULTIPLIER = 4  # RDT's name and value: alpha = (x - mean) / (4 std)
    valid_component_indicator: np.ndarray | None = None
    _model: VGM | None = None
    max_clusters: int
    weight_threshold: float
    device: str
    random_state: Any
    rdt_compatible: bool
    vgm_params: dict[str, Any] | None
    _means: np.ndarray  # (max_clusters,), data units: RDT's arithmetic reads these
    _stds: np.ndarray

    if RDT_TAKES_MODEL_MISSING_VALUES:  # rdt 1.x: RDT's positional order

        def __init__(
            self,
            model_missing_values: bool | None = None,
            learn_rounding_scheme: bool = False,
            enforce_min_max_values: bool = False,
            max_clusters: int = 10,
            weight_threshold: float = 0.005,
            missing_value_generation: str | None = "random",
            device: str = "auto",
            random_state: Any = None,
            rdt_compatible: bool = False,
            vgm_params: dict[str, Any] | None = None,
        ):
            self._configure(
                model_missing_values,
                learn_rounding_scheme,
                enforce_min_max_values,
                max_clusters,
                weight_threshold,
                missing_value_generation,
                device,
                random_state,
                rdt_compatible,
                vgm_params,
            )

    else:  # rdt 2.x

        def __init__(  # type: ignore[misc]  # the variants differ in order, as RDT's do
            self,
            learn_rounding_scheme: bool = False,
            enforce_min_max_values: bool = False,
            max_clusters: int = 10,
            weight_threshold: float = 0.005,
            missing_value_generation: str | None = "random",
            device: str = "auto",
            random_state: Any = None,
            rdt_compatible: bool = False,
            vgm_params: dict[str, Any] | None = None,
            *,
            model_missing_values: bool | None = None,
        ):
            self._configure(
                model_missing_values,
                learn_rounding_scheme,
                enforce_min_max_values,
                max_clusters,
                weight_threshold,
                missing_value_generation,
                device,
                random_state,
                rdt_compatible,
                vgm_params,
            )

    def _configure(
        self,
        model_missing_values: bool | None,
        learn_rounding_scheme: bool,
        enforce_min_max_values: bool,
        max_clusters: int,
        weight_threshold: float,
        missing_value_generation: str | None,
        device: str,
        random_state: Any,
        rdt_compatible: bool,
        vgm_params: dict[str, Any] | None,
    ) -> None:
        name = type(self).__name__
        if model_missing_values is not None:
            if not isinstance(model_missing_values, (bool, np.bool_)):
                raise ParameterError(
                    f"The 'model_missing_values' parameter of {name} must be a bool or None. "
                    f"Got {model_missing_values!r} instead."
                )
            # RDT 1.x: the deprecated flag overrides missing_value_generation.
            warnings.warn(_MODEL_MISSING_VALUES_WARNING, FutureWarning, stacklevel=3)
            missing_value_generation = "from_column" if model_missing_values else "random"
        # RDT's ClusterBasedNormalizer passes missing_value_replacement="mean" too.
        super().__init__(
            missing_value_generation=missing_value_generation,
            missing_value_replacement="mean",
            learn_rounding_scheme=learn_rounding_scheme,
            enforce_min_max_values=enforce_min_max_values,
        )
        if (
            isinstance(max_clusters, bool)
            or not isinstance(max_clusters, numbers.Integral)
            or not 1 <= max_clusters <= MAX_COMPONENTS
        ):
            raise ParameterError(
                f"The 'max_clusters' parameter of {name} must be an int in the range "
                f"[1, {MAX_COMPONENTS}]. Got {max_clusters!r} instead."
            )
        validate_params(
            name,
            {"weight_threshold": weight_threshold, "device": device, "random_state": random_state},
        )
        if not isinstance(rdt_compatible, (bool, np.bool_)):
            raise ParameterError(
                f"The 'rdt_compatible' parameter of {name} must be a bool. "
                f"Got {rdt_compatible!r} instead."
            )
        if vgm_params is not None:
            if not isinstance(vgm_params, dict):
                raise ParameterError(
                    f"The 'vgm_params' parameter of {name} must be a dict or None. "
                    f"Got {vgm_params!r} instead."
                )
            own = sorted(set(vgm_params) & set(_OWN_VGM_PARAMS))
            unknown = sorted(set(vgm_params) - set(VGM._param_names()))
            if own or unknown:
                raise ParameterError(
                    f"The 'vgm_params' parameter of {name} cannot set {(own or unknown)[0]!r}: "
                    f"{'set it with the constructor argument' if own else 'not a VGM parameter'}."
                )
            validate_params(name, vgm_params)
        self.max_clusters = max_clusters
        self.weight_threshold = weight_threshold
        self.device = device
        self.random_state = random_state
        self.rdt_compatible = rdt_compatible
        self.vgm_params = vgm_params
        self.output_properties = {
            "normalized": {"sdtype": "float", "next_transformer": None},
            "component": {"sdtype": "categorical", "next_transformer": None},
        }

    # ------------------------------------------------------------------ state
    @property
    def model_(self) -> VGM:
        """The fitted :class:`gpuvgm.VGM` (one column)."""
        if self._model is None:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first."
            )
        return self._model

    def _valid(self) -> np.ndarray:
        """The valid components, (max_clusters,) bool; NotFittedError before ``fit``."""
        valid = self.valid_component_indicator
        if self._model is None or valid is None:
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' first."
            )
        return valid

    def _get_current_random_seed(self) -> int:
        """RDT's seed for the mixture fit: the first word of the ``fit`` random state (42)."""
        if self.random_states:
            return int(self.random_states["fit"].get_state()[1][0])
        return 0

    def _seed(self) -> int:
        """gpuvgm's seed: from ``random_state``, else RDT's per-column seed."""
        if self.random_state is not None:
            return resolve_seed(self.random_state)
        return int(self.random_seed)

    def _clip(self) -> float | None:
        """The bound on ``|normalized|``: RDT's 0.99 unless ``vgm_params`` sets ``clip``."""
        return (self.vgm_params or {}).get("clip", RDT_CLIP)

    def _vgm_params(self) -> dict[str, Any]:
        """``vgm_params`` with RDT's clip unless they set one."""
        return {"clip": RDT_CLIP, **(self.vgm_params or {})}

    def _set_mixture(self, model: VGM, means: np.ndarray, stds: np.ndarray, valid: Any) -> None:
        self._model = model
        self._means = np.asarray(means, dtype=np.float64).reshape(-1)  # (K,), data units
        self._stds = np.asarray(stds, dtype=np.float64).reshape(-1)  # (K,)
        self.valid_component_indicator = np.asarray(valid, dtype=bool).reshape(-1)

    @classmethod
    def from_rdt(
        cls,
        fitted: Any,
        *,
        device: str = "auto",
        random_state: Any = None,
        rdt_compatible: bool = True,
        vgm_params: dict[str, Any] | None = None,
    ) -> ClusterBasedNormalizer:
        """This class, fitted, from a fitted ``rdt`` ``ClusterBasedNormalizer``.

        RDT's state (column, null handling, rounding, min/max, dtype, random states) is copied;
        the mixture becomes ``VGM.from_sklearn(fitted._bgm_transformer)``, and RDT's means,
        standard deviations and valid components are kept exactly for the ``rdt_compatible``
        arithmetic. With ``rdt_compatible=True`` the copy's ``transform`` and
        ``reverse_transform`` equal RDT's bit for bit, call after call; use it to move a fitted
        RDT pipeline onto gpuvgm, or to check one against the other.
        """
        bgm = getattr(fitted, "_bgm_transformer", None)
        if bgm is None or not hasattr(bgm, "means_"):
            raise NotFittedError(
                "from_rdt needs an rdt ClusterBasedNormalizer that has been fitted."
            )
        new = cls(
            learn_rounding_scheme=fitted.learn_rounding_scheme,
            enforce_min_max_values=fitted.enforce_min_max_values,
            max_clusters=fitted.max_clusters,
            weight_threshold=fitted.weight_threshold,
            missing_value_generation=fitted.missing_value_generation,
            device=device,
            random_state=random_state,
            rdt_compatible=rdt_compatible,
            vgm_params=vgm_params,
        )
        own = {"device", "random_state", "rdt_compatible", "vgm_params", "_bgm_transformer"}
        state = {k: v for k, v in vars(fitted).items() if k not in own}
        new.__dict__.update(copy.deepcopy(state))  # independent random states, null transformer
        name = str(fitted.columns[0])
        model = VGM.from_sklearn(
            bgm,
            columns=[name],
            weight_threshold=fitted.weight_threshold,
            device=device,
            random_state=new._seed(),
            **new._vgm_params(),
        )
        new._set_mixture(
            model,
            bgm.means_.reshape(-1),
            np.sqrt(bgm.covariances_).reshape(-1),
            fitted.valid_component_indicator,
        )
        return new

    # ------------------------------------------------------------------ RDT hooks
    def _check_numeric(self, data: Any) -> None:
        """A :class:`DataTypeError` naming the column and its dtype (never its values) unless
        ``data`` holds numbers: RDT's arithmetic on a string, categorical or datetime column
        fails with pandas' own ``TypeError``/``ValueError``, which quotes the data."""
        import pandas as pd

        dtype = data.dtype
        if isinstance(dtype, pd.CategoricalDtype) or not (
            pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_object_dtype(dtype)
        ):
            found = f"dtype {dtype}"
        else:
            if not pd.api.types.is_object_dtype(dtype):
                return
            inferred = pd.api.types.infer_dtype(data, skipna=True)
            if inferred in _NUMERIC_INFERRED:
                return
            found = f"dtype {dtype} holding {inferred} values"
        column = self.columns[0] if self.columns else data.name
        raise DataTypeError(
            f"column {column!r} has {found}; {type(self).__name__} encodes numbers only. "
            "Give it a numeric column, or encode this one with a categorical or datetime "
            "transformer (RDT's UniformEncoder, UnixTimestampEncoder)."
        )

    def _fit(self, data: Any) -> None:
        """Fit to a column (``pandas.Series``); RDT's ``fit`` calls this."""
        import pandas as pd

        self._check_numeric(data)
        super()._fit(data)  # RDT: dtype, min/max, rounding, the null transformer
        values = super()._transform(data)  # nulls replaced by the mean, as RDT fits
        if values.ndim > 1:
            values = values[:, 0]
        values = np.asarray(values, dtype=np.float64)
        params: dict[str, Any] = {
            "n_components": self.max_clusters,
            "weight_concentration_prior": 1e-3,  # RDT's value
            "weight_threshold": self.weight_threshold,
            "device": self.device,
            "random_state": self._seed(),
        }
        if self.rdt_compatible:
            # scikit-learn's BayesianGaussianMixture as RDT builds it: k-means labels from
            # KMeans(n_init=1) seeded with RDT's fit seed, sklearn's convergence rule.
            from sklearn.cluster import KMeans

            km = KMeans(
                n_clusters=self.max_clusters,
                n_init=1,
                random_state=self._get_current_random_seed(),
            ).fit(values.reshape(-1, 1))
            params.update(
                means_init=km.cluster_centers_[:, 0], tol=1e-3, tol_scale="sum", max_iter=100
            )
        params.update(self._vgm_params())
        model = VGM(**params)
        model.fit(pd.DataFrame({str(self.columns[0]): values}))
        self._set_mixture(
            model, model.means_[0], np.sqrt(model.covariances_[0]), model.valid_components_[0]
        )

    def _transform(self, data: Any) -> np.ndarray:
        """``[normalized, component(, is_null)]`` per row, float64, as RDT's ``_transform``."""
        model = self.model_
        self._check_numeric(data)
        values = super()._transform(data)  # nulls replaced by the mean; is_null appended
        is_null = None
        if values.ndim > 1:
            values, is_null = values[:, 0], values[:, 1]
        x = np.asarray(values, dtype=np.float64)
        if self.rdt_compatible:
            normalized, component = self._transform_like_rdt(x)
        else:
            encoded = model.transform(x.reshape(-1, 1))
            normalized = encoded.normalized[:, 0]
            component = encoded.component[:, 0]
        rows: list[Any] = [normalized, component]
        if self.null_transformer and self.null_transformer.models_missing_values():
            rows.append(is_null)
        return np.stack(rows, axis=1)

    def _transform_like_rdt(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """RDT's draw and arithmetic; the posterior comes from gpuvgm's backend."""
        valid = self._valid()
        means, stds = self._means[valid], self._stds[valid]  # (V,)
        # RDT's loop calls np.random.choice once per row on the global legacy RandomState,
        # which BaseTransformer.transform has set to this transformer's 'transform' state.
        u = np.random.random_sample(x.size)
        component = np.empty(x.size, dtype=np.int64)
        for start in range(0, x.size, _BLOCK_ROWS):
            block = slice(start, start + _BLOCK_ROWS)
            probs = self.model_.predict_proba(x[block].reshape(-1, 1))[:, 0, valid]  # (n, V)
            component[block] = rdt_choice(probs, u[block])
        # RDT: (data - means) / (STD_MULTIPLIER * stds), then the chosen one, then the clip.
        normalized = (x - means[component]) / (self.STD_MULTIPLIER * stds[component])
        clip = self._clip()
        if clip is None:
            return normalized, component
        return np.clip(normalized, -clip, clip), component

    def _reverse_transform_helper(self, data: np.ndarray) -> np.ndarray:
        """Decode ``[normalized, component]`` columns (generator outputs welcome)."""
        valid = self._valid()
        n_valid = int(np.sum(valid))
        normalized = np.asarray(data[:, 0], dtype=np.float64)
        clip = self._clip()
        if clip is not None:  # RDT: generator outputs into [-1, 1]; nothing to undo without
            bound = max(1.0, float(clip))
            normalized = np.clip(normalized, -bound, bound)
        rounded = np.round(np.asarray(data[:, 1], dtype=np.float64))
        if self.rdt_compatible:
            # RDT's expression and order: normalized * 4 * std + mean.
            with np.errstate(invalid="ignore"):
                component = rounded.astype(int).clip(0, n_valid - 1)
            std_t = self._stds[valid][component]
            mean_t = self._means[valid][component]
            return normalized * self.STD_MULTIPLIER * std_t + mean_t
        # RDT turns a NaN component into 0 (through astype(int) and the clip); so does this.
        component = np.where(np.isfinite(rounded), rounded, 0).clip(0, n_valid - 1)
        x = self.model_.inverse_transform(
            (normalized.reshape(-1, 1), component.astype(np.int64).reshape(-1, 1))
        )
        return x[:, 0]

    def _reverse_transform(self, data: Any) -> Any:
        """RDT's ``_reverse_transform``: decode, then nulls, min/max, rounding and dtype."""
        if not isinstance(data, np.ndarray):
            data = data.to_numpy()
        recovered = self._reverse_transform_helper(data)
        if self.null_transformer and self.null_transformer.models_missing_values():
            recovered = np.stack([recovered, data[:, -1]], axis=1)
        return super()._reverse_transform(recovered)
