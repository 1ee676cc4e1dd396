"""Exact Fréchet distance against the pytorch-fid formula (scipy.linalg.sqrtm), and its fast/fallback paths."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from fastgan.metrics import FrechetReference, frechet_distance, sqrtm_psd, trace_sqrt_product

from conftest import INTERPRETING


def pytorch_fid_distance(mu1, sigma1, mu2, sigma2):
    """calculate_frechet_distance of pytorch-fid (eps retry omitted: it never triggers on these inputs)."""
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1.dot(sigma2))
    assert np.isfinite(covmean).all()
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def _stats(rng, n, d, spectrum="power", scale=1.0, shift=0.0):
    if spectrum == "power":  # Inception-like: a few large directions, a long tail
        z = rng.standard_normal((n, d)) * (np.arange(1, d + 1) ** -0.5) * scale
        x = z @ np.linalg.qr(rng.standard_normal((d, d)))[0] + shift
    else:
        x = rng.standard_normal((n, d)) * scale + shift
    return x.mean(0), np.cov(x, rowvar=False)


@pytest.mark.parametrize("spectrum", ["power", "white"])
@pytest.mark.parametrize("d,n", [(64, 1000), (300, 3000), (300, 120)])  # the last: fewer samples than dims
def test_matches_pytorch_fid(spectrum, d, n):
    rng = np.random.default_rng(d + n)
    mu1, s1 = _stats(rng, n, d, spectrum)
    mu2, s2 = _stats(rng, n, d, spectrum, scale=1.3, shift=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the singular-covariance warning is tested below
        ours = frechet_distance(mu1, s1, mu2, s2)
    expected = pytorch_fid_distance(mu1, s1, mu2, s2)
    assert abs(ours - expected) <= 1e-6 * abs(expected)


def test_matches_pytorch_fid_at_inception_size():
    """d = 2048, power-law spectrum, both sets of full rank: the size FID is computed at."""
    rng = np.random.default_rng(0)
    mu1, s1 = _stats(rng, 4000, 2048)
    mu2, s2 = _stats(rng, 4000, 2048, scale=1.1, shift=0.05)
    expected = pytorch_fid_distance(mu1, s1, mu2, s2)
    assert abs(frechet_distance(mu1, s1, mu2, s2) - expected) <= 1e-6 * abs(expected)


def test_rank_deficient_covariances_give_the_exact_value_and_a_warning():
    """Fewer samples than dimensions on both sides. Exact reference from the data: with S_i = A_i^T A_i / (n_i - 1)
    for centred data A_i, the non-zero eigenvalues of S1 S2 are the squared singular values of A1 A2^T / c."""
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((50, 200)) * (np.arange(1, 201) ** -0.5) + 0.3
    x2 = rng.standard_normal((60, 200)) * 0.8 - 0.1
    a1, a2 = x1 - x1.mean(0), x2 - x2.mean(0)
    tr_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / np.sqrt(49 * 59)
    mu1, s1, mu2, s2 = x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0), np.cov(x2, rowvar=False)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    with pytest.warns(UserWarning, match=r"singular \(rank 49 of 200"):
        fid, info = frechet_distance(mu1, s1, mu2, s2, return_info=True)
    assert info["route"] == "eigh" and info["rank"] == 49
    assert abs(fid - expected) <= 1e-9 * expected
    with pytest.warns(UserWarning, match="singular"):
        assert abs(trace_sqrt_product(s1, s2) - tr_sqrt) <= 1e-9 * tr_sqrt


def test_identical_statistics_give_zero_up_to_round_off():
    rng = np.random.default_rng(2)
    mu, s = _stats(rng, 2000, 128)
    fid = frechet_distance(mu, s, mu, s)
    assert abs(fid) < 1e-9 * np.trace(s)


def test_torch_inputs_and_numpy_inputs_agree_and_return_a_float():
    rng = np.random.default_rng(3)
    mu1, s1 = _stats(rng, 500, 40)
    mu2, s2 = _stats(rng, 500, 40, scale=0.7)
    a = frechet_distance(mu1, s1, mu2, s2)
    b = frechet_distance(torch.from_numpy(mu1).float(), torch.from_numpy(s1), torch.from_numpy(mu2),
                         torch.from_numpy(s2).float())
    assert isinstance(a, float) and isinstance(b, float)
    assert abs(a - b) <= 1e-6 * a  # the float32 inputs are rounded; the computation is float64


def test_reference_cache_equals_the_one_shot_distance():
    rng = np.random.default_rng(4)
    mu_r, s_r = _stats(rng, 1000, 64)
    ref = FrechetReference(mu_r, s_r)
    for k in range(3):
        mu, s = _stats(rng, 1000, 64, scale=1 + 0.1 * k)
        assert abs(ref.distance(mu, s) - frechet_distance(mu_r, s_r, mu, s)) <= 1e-10 * frechet_distance(mu_r, s_r,
                                                                                                       mu, s)


def test_trace_sqrt_product_and_sqrtm_psd_against_scipy():
    rng = np.random.default_rng(5)
    _, s1 = _stats(rng, 400, 30)
    _, s2 = _stats(rng, 400, 30, scale=2.0)
    expected = np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert abs(trace_sqrt_product(s1, s2) - expected) <= 1e-9 * expected
    root = sqrtm_psd(s1)
    assert isinstance(root, np.ndarray)
    np.testing.assert_allclose(root @ root, s1, rtol=0, atol=1e-12 * np.abs(s1).max())
    np.testing.assert_allclose(root, root.T)


def test_bad_statistics_are_rejected_clearly():
    rng = np.random.default_rng(6)
    mu, s = _stats(rng, 100, 10)
    with pytest.raises(ValueError, match="square"):
        frechet_distance(mu, s[:, :9], mu, s)
    with pytest.raises(ValueError, match=r"mu1 has shape \(9,\)"):
        frechet_distance(mu[:9], s, mu, s)
    bad = s.copy()
    bad[0, 1] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(mu, bad, mu, s)
    bad = s.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        frechet_distance(mu, s, mu, bad)
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(mu, s, mu[:5], s[:5, :5])
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        frechet_distance(list(mu), s, mu, s)
    with pytest.raises(ValueError, match="method"):
        frechet_distance(mu, s, mu, s, method="sqrtm")


def _ns_device():
    if not INTERPRETING and not torch.cuda.is_available():
        pytest.skip("the Newton–Schulz kernels need a GPU or TRITON_INTERPRET=1")
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.kernels
def test_newton_schulz_is_close_to_the_exact_value():
    device = _ns_device()
    rng = np.random.default_rng(7)
    for n in (3000, 30):  # the second: a singular sigma1 (zero eigenvalues are fixed points of the iteration)
        mu1, s1 = _stats(rng, n, 48, spectrum="white")
        mu2, s2 = _stats(rng, 3000, 48, spectrum="white", scale=1.2)
        t = [torch.from_numpy(a).to(device) for a in (mu1, s1, mu2, s2)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fid, info = frechet_distance(*t, method="newton_schulz", return_info=True)
            exact = frechet_distance(mu1, s1, mu2, s2)
        assert abs(fid - exact) <= 1e-4 * exact, (n, info)


@pytest.mark.kernels
@pytest.mark.parametrize("failure", ["no convergence", "nan"])
def test_newton_schulz_falls_back_to_the_exact_route(monkeypatch, failure):
    device = _ns_device()
    from fastgan.kernels import newton_schulz as kernels
    from fastgan.metrics import newton_schulz

    if failure == "no convergence":
        monkeypatch.setattr(newton_schulz, "MAX_ITERS", 5)
    else:
        real = kernels.matmul_identity
        monkeypatch.setattr(kernels, "matmul_identity", lambda a, b, *args: real(a, b, *args) * float("nan"))
    rng = np.random.default_rng(9)
    mu1, s1 = _stats(rng, 2000, 40)
    mu2, s2 = _stats(rng, 2000, 40, scale=1.5)
    t = [torch.from_numpy(a).to(device) for a in (mu1, s1, mu2, s2)]
    with pytest.warns(UserWarning, match="Newton–Schulz FID: " + ("no convergence" if failure != "nan" else "NaN")):
        fid, info = frechet_distance(*t, method="newton_schulz", return_info=True)
    assert info["route"] == "cholesky"
    assert abs(fid - pytorch_fid_distance(mu1, s1, mu2, s2)) <= 1e-6 * fid


@pytest.mark.gpu
def test_gpu_float64_distance_matches_the_cpu():
    rng = np.random.default_rng(8)
    mu1, s1 = _stats(rng, 4000, 2048)
    mu2, s2 = _stats(rng, 4000, 2048, scale=1.1)
    cpu = frechet_distance(mu1, s1, mu2, s2)
    gpu = frechet_distance(*(torch.from_numpy(a).cuda() for a in (mu1, s1, mu2, s2)))
    assert abs(gpu - cpu) <= 1e-8 * cpu
