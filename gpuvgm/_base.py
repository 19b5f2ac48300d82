"""The scikit-learn estimator protocol, once: parameters from the constructor's signature
(``get_params``/``set_params``, a ``repr`` of the changed ones), the fitted check and the tags.
As scikit-learn's ``BaseEstimator``, without depending on scikit-learn: it is a test
dependency of gpuvgm, not a core one."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

import numpy as np

from ._errors import NotFittedError, ParameterError

E = TypeVar("E", bound="Estimator")


class Estimator:
    """Base of :class:`gpuvgm.VGM`: ``__init__`` only stores its arguments, under their names;
    a fitted estimator has a ``_fitted`` attribute."""

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``BaseEstimator.get_params``."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: E, **params: Any) -> E:
        """Set constructor parameters; unknown names raise :class:`ParameterError`."""
        valid = set(self._param_names())
        for name, value in params.items():
            if name not in valid:
                raise ParameterError(
                    f"Invalid parameter {name!r} for estimator {self!r}. "
                    f"Valid parameters are: {sorted(valid)!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = []
        for name, value in self.get_params().items():
            default = defaults[name]
            same = value is default or (
                not isinstance(value, (np.ndarray, list, tuple)) and value == default
            )
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _check_is_fitted(self) -> None:
        if not hasattr(self, "_fitted"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def __sklearn_is_fitted__(self) -> bool:
        """Whether :meth:`fit` has run (read by ``sklearn.utils.validation.check_is_fitted``)."""
        return hasattr(self, "_fitted")

    def __sklearn_tags__(self) -> Any:
        """scikit-learn (>= 1.6) estimator tags: an unsupervised transformer that accepts NaN
        (nulls) and needs no ``y``. Only scikit-learn calls this, so importing it here is safe."""
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type=None,
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(),
            input_tags=InputTags(allow_nan=True),
        )
