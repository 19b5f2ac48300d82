"""Dask: fits and transforms on a two-process LocalCluster equal the single-process ones."""

from __future__ import annotations

import os
import signal
import warnings

import numpy as np
import pytest

import gpuvgm
from gpuvgm import DistributedError

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

N_ROWS = 20_000
PARAMS = dict(n_components=5, max_iter=25, random_state=3, device="cpu")
FITTED = (
    "weights_",
    "means_",
    "covariances_",
    "mean_precision_",
    "degrees_of_freedom_",
    "lower_bound_",
)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    rng = np.random.default_rng(0)
    half = N_ROWS // 2
    x0 = np.concatenate([rng.normal(0.0, 1.0, half), rng.normal(5.0, 0.5, N_ROWS - half)])
    x1 = 1.7e9 + rng.exponential(2.0, N_ROWS)  # a timestamp-like column: the shifted frame
    x = np.column_stack([x0, x1])
    x[::97, 1] = np.nan  # nulls
    return x


def _fit(x, **kw) -> gpuvgm.VGM:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        return gpuvgm.VGM(**PARAMS, **kw).fit(x)


@pytest.fixture(scope="module")
def reference(data) -> gpuvgm.VGM:
    return _fit(data)


@pytest.fixture(scope="module")
def single_process(data):
    """The single-process fit whose chunks are the partitions: the pre-pass mean is then summed
    in the same order. (Column 1, 1.7e9 + Exp(2), moves by one ulp of 1.7e9 between chunkings
    in one process too, and its unconverged fit by ~1e-9 relative: a property of the data, not
    of Dask.)"""
    fits: dict[int, gpuvgm.VGM] = {}

    def fit(n_partitions: int) -> gpuvgm.VGM:
        if n_partitions not in fits:
            fits[n_partitions] = _fit(data, chunk_rows=_chunks(n_partitions))
        return fits[n_partitions]

    return fit


def assert_same_model(got: gpuvgm.VGM, want: gpuvgm.VGM, rtol: float = 1e-10) -> None:
    np.testing.assert_array_equal(got.n_iter_, want.n_iter_)
    np.testing.assert_array_equal(got.valid_components_, want.valid_components_)
    for name in FITTED:
        g, w = getattr(got, name), getattr(want, name)
        # relative to each column's largest magnitude (means near 0 have no relative digits)
        scale = np.abs(w) if w.ndim == 1 else np.max(np.abs(w), axis=1, keepdims=True)
        scale = np.broadcast_to(scale, w.shape)
        np.testing.assert_array_less(np.abs(g - w), rtol * scale + 1e-300, err_msg=name)


def _chunks(n_partitions: int) -> int:
    return -(-N_ROWS // n_partitions)


@pytest.mark.parametrize("n_partitions", [1, 3, 8])
def test_fit_equals_single_process(client, data, single_process, n_partitions):
    x = da.from_array(data, chunks=(_chunks(n_partitions), 2))
    model = _fit(x)
    want_model = single_process(n_partitions)
    assert_same_model(model, want_model)
    assert model.fit_report_["rows"] == N_ROWS
    assert model.fit_report_["nulls"] == want_model.fit_report_["nulls"]
    # the sampled components: those of the single-process fit...
    want = want_model.transform(data)
    got = model.transform(x)
    np.testing.assert_array_equal(got.component.compute(), want.component)
    # ... and bit-identical to the single-process transform by the same model
    same = model.transform(data)
    np.testing.assert_array_equal(got.normalized.compute(), same.normalized)


def test_dataframe_fit_and_names(client, data, single_process):
    frame = pd.DataFrame(data, columns=["a", "b"])
    model = _fit(dd.from_pandas(frame, npartitions=8))
    assert_same_model(model, single_process(8))
    assert list(model.feature_names_in_) == ["a", "b"]
    enc = model.transform(dd.from_pandas(frame, npartitions=3))
    assert np.isnan(enc.normalized.shape[0])  # lazy: partition lengths are not known yet
    want = model.transform(frame)
    np.testing.assert_array_equal(enc.component.compute(), want.component)
    np.testing.assert_array_equal(enc.null.compute(), want.null)


@pytest.mark.parametrize("chunks", [N_ROWS, 777, 4096])
def test_transform_is_lazy_and_partition_independent(client, data, reference, chunks):
    x = da.from_array(data, chunks=(chunks, 2))
    enc = reference.transform(x)
    assert isinstance(enc.normalized, da.Array)
    assert enc.normalized.chunks[0] == x.chunks[0]
    want = reference.transform(data)
    np.testing.assert_array_equal(enc.component.compute(), want.component)
    np.testing.assert_array_equal(enc.normalized.compute(), want.normalized)
    np.testing.assert_array_equal(enc.n_clipped.compute(), want.n_clipped)
    back = reference.inverse_transform(enc)
    assert isinstance(back, da.Array)
    np.testing.assert_array_equal(back.compute(), reference.inverse_transform(want))


def test_client_receives_only_statistics(client, data, single_process):
    """What the client gathers per pass is one reduced Stats, not rows."""
    from dask.sizeof import sizeof

    received: list[int] = []
    gather = client.gather

    def recording_gather(futures, *args, **kwargs):
        result = gather(futures, *args, **kwargs)
        received.append(sizeof(result))
        return result

    client.gather = recording_gather
    try:
        model = _fit(da.from_array(data, chunks=(_chunks(8), 2)))
    finally:
        del client.gather
    assert_same_model(model, single_process(8))
    # the pre-pass (moments + the init sample), the k-means assignment pass, the iterations
    assert len(received) == 2 + int(model.n_iter_.max())
    iterations = received[1:]
    assert max(iterations) < 4096, iterations  # ~3K + 3 float64 per column
    assert max(iterations) * 50 < data.nbytes


def test_worker_killed_between_iterations(client, data, single_process):
    """A worker process dies mid-fit: its partitions are recomputed and the fit is the same."""
    x = da.from_array(data, chunks=(_chunks(4), 2))
    pids = client.run(os.getpid)
    victim = next(iter(pids.values()))
    killed = []

    def kill_at_iteration_3(phase: str, rows: int) -> None:
        if phase == "iteration 3" and not killed:
            os.kill(victim, signal.SIGKILL)
            killed.append(phase)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpuvgm.ConvergenceWarning)
        model = gpuvgm.VGM(**PARAMS).fit(x, progress=kill_at_iteration_3)
    assert killed
    assert_same_model(model, single_process(4))
    client.wait_for_workers(2, timeout=60)


def test_lost_data_is_a_clear_error(client, data):
    """Data that cannot be recomputed (scattered to the workers, which all die): a
    DistributedError, not a model fitted on part of the data."""
    client.wait_for_workers(2, timeout=60)
    half = N_ROWS // 2
    futures = [client.scatter(data[:half]), client.scatter(data[half:])]
    x = da.concatenate(
        [
            da.from_delayed(dask.delayed(f), shape=(n, 2), dtype=np.float64)
            for f, n in zip(futures, (half, N_ROWS - half), strict=True)
        ]
    )
    pids = list(client.run(os.getpid).values())

    def kill_all_at_iteration_2(phase: str, rows: int) -> None:
        if phase == "iteration 2":
            for pid in pids:
                os.kill(pid, signal.SIGKILL)

    with pytest.raises(DistributedError, match="distributed pass failed"):
        gpuvgm.VGM(**PARAMS).fit(x, progress=kill_all_at_iteration_2)
    client.wait_for_workers(2, timeout=60)


def test_errors_raised_on_workers_keep_their_type(client, data):
    bad = data.copy()
    bad[12_345, 0] = np.inf
    with pytest.raises(gpuvgm.DataError, match="row 12345"):
        gpuvgm.VGM(**PARAMS).fit(da.from_array(bad, chunks=(_chunks(3), 2)))
    with pytest.raises(gpuvgm.DataTypeError):
        gpuvgm.VGM(**PARAMS).fit(da.from_array(np.array([["a"], ["b"]])))


def test_cli_fit_on_a_local_cluster_equals_the_local_fit(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gpuvgm.cli import main

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(-3, 1, 30_000), rng.normal(4, 0.5, 30_000)])
    for i, part in enumerate(np.array_split(x, 3)):
        pq.write_table(pa.table({"v": part}), tmp_path / f"part-{i}.parquet")
    args = ["fit", str(tmp_path), "--max-iter", "15", "--seed", "1", "-q", "--device", "cpu"]
    assert main([*args, "-o", str(tmp_path / "local.gpuvgm")]) == 0
    assert main([*args, "-o", str(tmp_path / "dask.gpuvgm"), "--local-cluster", "1"]) == 0
    local, remote = gpuvgm.load(tmp_path / "local.gpuvgm"), gpuvgm.load(tmp_path / "dask.gpuvgm")
    np.testing.assert_allclose(remote.means_, local.means_, rtol=1e-9)
    np.testing.assert_allclose(remote.weights_, local.weights_, rtol=1e-9)
