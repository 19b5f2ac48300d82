"""CTGAN trains with gpuvgm's normalizer swapped in by ``use_gpuvgm`` (skipped without ctgan)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

ctgan = pytest.importorskip("ctgan")  # CI: pip install torch==2.13.0 && pip install ctgan

from gpuvgm import ParameterError  # noqa: E402
from gpuvgm.integrations.ctgan import use_gpuvgm  # noqa: E402
from gpuvgm.integrations.rdt import ClusterBasedNormalizer  # noqa: E402


@pytest.fixture
def mixed_table() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    n = 600  # >= 500: CTGAN transforms in joblib workers, so the normalizer must pickle
    return pd.DataFrame(
        {
            "amount": np.concatenate([rng.normal(0, 1, n // 2), rng.normal(8, 2, n // 2)]),
            "age": rng.lognormal(3, 0.3, n),
            "visits": rng.poisson(4, n),
            "city": rng.choice(["paris", "lima", "oslo"], n),
        }
    )


def test_ctgan_trains_one_epoch_and_samples_with_gpuvgm(mixed_table):
    import ctgan.data_transformer as data_transformer

    original = data_transformer.ClusterBasedNormalizer
    with use_gpuvgm(device="cpu", random_state=0) as patch:
        assert patch.active
        model = ctgan.CTGAN(epochs=1, batch_size=100, verbose=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one epoch: gpuvgm/torch convergence notes
            model.fit(mixed_table, discrete_columns=["city"])
    assert data_transformer.ClusterBasedNormalizer is original  # restored on exit
    infos = model._transformer._column_transform_info_list
    continuous = [i for i in infos if i.column_type == "continuous"]
    assert len(continuous) == 3
    assert all(isinstance(i.transform, ClusterBasedNormalizer) for i in continuous)
    assert all(i.transform.model_.backend_ == "numba" for i in continuous)

    sample = model.sample(50)
    assert list(sample.columns) == list(mixed_table.columns)
    assert len(sample) == 50
    assert sample.dtypes.to_dict() == mixed_table.dtypes.to_dict()
    assert np.isfinite(sample[["amount", "age"]].to_numpy()).all()
    assert set(sample["city"]) <= {"paris", "lima", "oslo"}


def test_use_gpuvgm_checks_options_before_patching():
    import ctgan.data_transformer as data_transformer

    original = data_transformer.ClusterBasedNormalizer
    with pytest.raises(ParameterError, match="device"):
        use_gpuvgm(device="gpu")
    assert data_transformer.ClusterBasedNormalizer is original
    patch = use_gpuvgm(device="cpu")
    try:
        assert data_transformer.ClusterBasedNormalizer is not original
    finally:
        patch.undo()
        patch.undo()  # idempotent
    assert data_transformer.ClusterBasedNormalizer is original
