"""Make CTGAN (and TVAE) fit their mode-specific normalization with gpuvgm, in one line.

CTGAN's ``DataTransformer`` builds one RDT ``ClusterBasedNormalizer`` per continuous column
(``ctgan.data_transformer.ClusterBasedNormalizer``); CTGAN and TVAE both build a
``DataTransformer`` inside ``fit``. :func:`use_gpuvgm` puts
:class:`gpuvgm.integrations.rdt.ClusterBasedNormalizer` in that place, with the options given
here, so every later fit uses gpuvgm::

    from gpuvgm.integrations.ctgan import use_gpuvgm
    use_gpuvgm(device="cuda")                 # from here on, CTGAN/TVAE fit with gpuvgm

    with use_gpuvgm(device="cuda"):           # or only inside the block
        CTGAN(epochs=300).fit(table, discrete_columns)

CTGAN's own arguments (``max_clusters``, ``weight_threshold``,
``missing_value_generation="from_column"``) still reach the normalizer; the options given here
(``device``, ``random_state``, ``rdt_compatible``, ``vgm_params``) are added to them. CTGAN's
clip of ``normalized`` to [-0.99, 0.99] is kept unless ``vgm_params={"clip": None}`` (exact
codes, which a ``tanh`` generator cannot reach beyond [-1, 1]). The
normalizers pickle, so CTGAN's parallel transform (joblib, 500 rows and more) works; with
``device="cuda"`` each joblib worker process opens the GPU itself.
"""

from __future__ import annotations

import functools
from types import TracebackType
from typing import Any

from .._errors import MissingDependencyError
from .rdt import ClusterBasedNormalizer

__all__ = ["GpuvgmPatch", "use_gpuvgm"]


def _data_transformer_module() -> Any:
    try:
        import ctgan.data_transformer as module
    except ImportError as exc:
        raise MissingDependencyError(
            "use_gpuvgm needs CTGAN (ctgan>=0.10): pip install 'gpuvgm[ctgan]' "
            "(install the torch build for your machine first)"
        ) from exc
    return module


class GpuvgmPatch:
    """The patch :func:`use_gpuvgm` applied; ``undo()`` (or leaving a ``with`` block) restores
    the normalizer that was there before."""

    def __init__(self, module: Any, factory: Any):
        self._module = module
        self._previous = module.ClusterBasedNormalizer
        self.factory = factory
        module.ClusterBasedNormalizer = factory
        self.active = True

    def undo(self) -> None:
        """Put back the normalizer this patch replaced (idempotent)."""
        if self.active:
            self._module.ClusterBasedNormalizer = self._previous
            self.active = False

    def __enter__(self) -> GpuvgmPatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.undo()


def use_gpuvgm(
    *,
    device: str = "auto",
    random_state: int | None = None,
    rdt_compatible: bool = False,
    vgm_params: dict[str, Any] | None = None,
) -> GpuvgmPatch:
    """Make CTGAN's ``DataTransformer`` use gpuvgm's ``ClusterBasedNormalizer``.

    Parameters
    ----------
    device, random_state, rdt_compatible, vgm_params
        Passed to every :class:`gpuvgm.integrations.rdt.ClusterBasedNormalizer` CTGAN creates;
        checked here, so a bad value fails now rather than inside ``CTGAN.fit``.

    Returns
    -------
    GpuvgmPatch
        Active at once; use it as a context manager, or call ``undo()``, to restore CTGAN's
        own normalizer.

    Raises
    ------
    MissingDependencyError
        When ``ctgan`` is not installed.
    ParameterError
        For an invalid option.
    """
    options: dict[str, Any] = {
        "device": device,
        "random_state": random_state,
        "rdt_compatible": rdt_compatible,
        "vgm_params": vgm_params,
    }
    ClusterBasedNormalizer(**options)  # validates the options now
    module = _data_transformer_module()
    return GpuvgmPatch(module, functools.partial(ClusterBasedNormalizer, **options))
