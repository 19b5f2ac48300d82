"""A pytest plugin that runs RDT's own test suite with gpuvgm's ``ClusterBasedNormalizer`` in
place of RDT's (issue 15, item 9). RDT's tests are not part of this repository: take them from
an RDT source checkout of the installed version (``git archive v1.21.1 tests``), then::

    PYTHONPATH=/path/to/gpuvgm/bench python -m pytest -p rdt_own_tests -W ignore \\
        tests/unit/transformers/test_numerical.py \\
        tests/integration/transformers/test_numerical.py \\
        tests/unit/test_hyper_transformer.py tests/integration/test_hyper_transformer.py \\
        tests/integration/test_transformers.py

(run from RDT's checkout, with ``copulas`` and ``pytest-subtests`` installed, as RDT's test
extra has them). ``GPUVGM_MODE=compatible`` (default) builds the drop-in with
``rdt_compatible=True``, ``GPUVGM_MODE=default`` with gpuvgm's own draws; ``GPUVGM_OFF=1``
patches nothing (the baseline). Not a benchmark: it sits here because it is a tool that needs a
checkout from outside, as the benchmarks need their data.
"""

from __future__ import annotations

import inspect
import os

if not os.environ.get("GPUVGM_OFF"):
    import rdt.transformers
    import rdt.transformers.numerical as numerical

    from gpuvgm.integrations.rdt import ClusterBasedNormalizer as _Gpuvgm

    _COMPATIBLE = os.environ.get("GPUVGM_MODE", "compatible") == "compatible"

    class ClusterBasedNormalizer(_Gpuvgm):
        """gpuvgm's class under RDT's name and module, on the CPU, in the chosen mode."""

        def __init__(self, *args, **kwargs):
            kwargs.setdefault("rdt_compatible", _COMPATIBLE)
            kwargs.setdefault("device", "cpu")
            super().__init__(*args, **kwargs)

    # RDT's repr reads the constructor's signature: give it gpuvgm's (RDT's order, then gpuvgm's).
    ClusterBasedNormalizer.__init__.__signature__ = inspect.signature(_Gpuvgm.__init__)
    ClusterBasedNormalizer.__module__ = numerical.__name__
    numerical.ClusterBasedNormalizer = ClusterBasedNormalizer
    rdt.transformers.ClusterBasedNormalizer = ClusterBasedNormalizer
    rdt.transformers.TRANSFORMERS["rdt.transformers.numerical.ClusterBasedNormalizer"] = (
        ClusterBasedNormalizer
    )
    rdt.transformers.get_class_by_transformer_name.cache_clear()
    rdt.transformers.get_transformers_by_type.cache_clear()
