"""Streaming feature statistics against np.cov in float64, the fused Triton update, merges across processes."""
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastgan.metrics import FeatureStatistics, load_statistics, save_statistics
from fastgan.ops.feature_stats import feature_moments_update_


def _badly_scaled(n, d, seed=0):
    """Features with mean 3 and std 0.05: float32 raw sums lose about 0.5% of the covariance on these."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) * 0.05 + 3.0 + rng.standard_normal(d) * 0.01


def _stream(stats, x, to=torch.float64):
    for chunk in np.array_split(x, [1, 8, 100, 613, len(x) - 1]):  # uneven batches, one of a single row
        stats.update(torch.from_numpy(chunk).to(to))
    return stats


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def test_float64_streaming_matches_np_cov_to_1e_9():
    x = _badly_scaled(3000, 64)
    st = _stream(FeatureStatistics(64), x)
    assert st.count == 3000
    assert _rel(st.covariance.numpy(), np.cov(x, rowvar=False)) <= 1e-9
    assert _rel(st.mean.numpy(), x.mean(0)) <= 1e-12


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_float32_chan_merge_is_accurate_where_raw_sums_are_not(backend, request):
    if backend == "triton":
        request.getfixturevalue("interpreter")
    x32 = _badly_scaled(3000, 72).astype(np.float32)
    ref = np.cov(x32.astype(np.float64), rowvar=False)  # the same (rounded) features, in float64
    st = _stream(FeatureStatistics(72, precision="float32", backend=backend), x32, torch.float32)
    assert _rel(st.covariance.numpy(), ref) <= 5e-6
    xt = torch.from_numpy(x32)
    n, mean = len(x32), xt.sum(0) / len(x32)
    raw = (xt.T @ xt - n * torch.outer(mean, mean)) / (n - 1)  # what must not be done
    assert _rel(raw.double().numpy(), ref) > 1e-4


def test_triton_update_matches_the_torch_reference_on_odd_shapes(interpreter):
    rng = np.random.default_rng(3)
    for b, d, count in ((1, 5, 0), (37, 131, 10), (70, 64, 1000)):
        x = torch.from_numpy(rng.standard_normal((b, d)).astype(np.float32) + 2)
        mean0 = torch.from_numpy(rng.standard_normal(d).astype(np.float32))
        m20 = torch.from_numpy(np.cov(rng.standard_normal((d + 5, d)), rowvar=False).astype(np.float32))
        states = {}
        for backend in ("torch", "triton"):
            mean, m2 = mean0.clone(), m20.clone()
            feature_moments_update_(mean, m2, x, count, backend=backend)
            states[backend] = (mean, torch.triu(m2))
        torch.testing.assert_close(states["triton"][0], states["torch"][0])
        torch.testing.assert_close(states["triton"][1], states["torch"][1], rtol=2e-5, atol=2e-5)


def test_bad_features_are_rejected():
    st = FeatureStatistics(8)
    with pytest.raises(ValueError, match=r"\(batch, 8\)"):
        st.update(torch.randn(4, 7))
    bad = FeatureStatistics(8)
    bad.update(torch.randn(5, 8))
    bad.update(torch.tensor([[float("nan")] * 8]))  # detected on the device, reported when read
    with pytest.raises(ValueError, match="NaN or Inf"):
        _ = bad.covariance
    with pytest.raises(TypeError, match="floating point"):
        st.update(torch.ones(2, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="at least 2"):
        st.update(torch.randn(1, 8))
        _ = st.covariance
    st.update(torch.randn(3, 8))
    with pytest.warns(UserWarning, match="4 samples for 8-dimensional features"):
        _ = st.covariance


def test_merge_equals_one_pass():
    x = _badly_scaled(500, 16, seed=4)
    for precision, dt in (("float64", torch.float64), ("float32", torch.float32)):
        whole = FeatureStatistics(16, precision=precision, backend="torch")
        whole.update(torch.from_numpy(x).to(dt))
        a = FeatureStatistics(16, precision=precision, backend="torch")
        b = FeatureStatistics(16, precision=precision, backend="torch")
        a.update(torch.from_numpy(x[:123]).to(dt))
        b.update(torch.from_numpy(x[123:]).to(dt))
        a.merge_(b)
        assert a.count == 500
        tol = 1e-10 if precision == "float64" else 5e-6  # float64 sums: ~1e-12 lost to cancellation here
        assert _rel(a.covariance.numpy(), whole.covariance.numpy()) <= tol
        assert _rel(a.mean.numpy(), whole.mean.numpy()) <= tol


def test_npz_round_trip_and_refusal_of_pickles(tmp_path):
    x = _badly_scaled(200, 10, seed=5)
    st = FeatureStatistics(10)
    st.update(torch.from_numpy(x))
    path = tmp_path / "stats.npz"
    st.save(path)
    mu, sigma = load_statistics(path)
    assert _rel(sigma, np.cov(x, rowvar=False)) <= 1e-9
    assert _rel(mu, x.mean(0)) <= 1e-12
    with np.load(path) as f:  # the pytorch-fid / clean-fid layout
        assert set(f.files) == {"mu", "sigma"} and f["mu"].dtype == np.float64
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu=np.array([{"a": 1}], dtype=object), sigma=np.eye(1))
    with pytest.raises(ValueError, match="pickled objects"):
        load_statistics(bad)
    np.savez(tmp_path / "other.npz", mean=mu)
    with pytest.raises(ValueError, match=r"missing \['mu', 'sigma'\]"):
        load_statistics(tmp_path / "other.npz")
    save_statistics(tmp_path / "t.npz", torch.zeros(3), torch.eye(3))
    assert load_statistics(tmp_path / "t.npz")[1].shape == (3, 3)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, precision, x, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        st = FeatureStatistics(x.shape[1], precision=precision, backend="torch")
        part = np.array_split(x, world)[rank]
        st.update(torch.from_numpy(part).to(torch.float64 if precision == "float64" else torch.float32))
        st.all_reduce()
        out[rank] = (st.count, st.mean.numpy(), st.covariance.numpy())
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_all_reduce_across_two_processes_equals_one_process(precision):
    x = _badly_scaled(301, 12, seed=6)
    out = mp.Manager().dict()
    mp.start_processes(_worker, args=(2, _free_port(), precision, x, out), nprocs=2, join=True, start_method="spawn")
    ref_cov = np.cov(x, rowvar=False)
    for rank in (0, 1):
        count, mean, cov = out[rank]
        assert count == 301
        tol = 1e-9 if precision == "float64" else 5e-6
        assert _rel(cov, ref_cov) <= tol and _rel(mean, x.mean(0)) <= tol
    np.testing.assert_array_equal(out[0][2], out[1][2])  # every rank holds the same result


@pytest.mark.gpu
def test_gpu_triton_update_matches_float64():
    x = _badly_scaled(4096, 2048, seed=7).astype(np.float32)
    st = FeatureStatistics(2048, device="cuda", precision="float32", backend="triton")
    for chunk in np.array_split(x, 8):
        st.update(torch.from_numpy(chunk).cuda())
    assert _rel(st.covariance.cpu().numpy(), np.cov(x.astype(np.float64), rowvar=False)) <= 5e-6

