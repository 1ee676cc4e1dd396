"""Exact Fréchet distance against the pytorch-fid formula (scipy.linalg.sqrtm), and its fast/fallback paths."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from conftest import INTERPRETING

from fastgan.metrics import FrechetReference, frechet_distance, sqrtm_psd, trace_sqrt_product


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


@pytest.mark.no_triton
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


# ---------------------------------------------------------------- round-off and bad statistics


def _features(rng, n, d, kappa=1e2, tiny=0, shift=0.0):
    """n samples of d features whose covariance has condition number about kappa; ``tiny`` features nearly dead
    (standard deviation 1e-6, as dead units of a real network give)."""
    scales = np.logspace(0, -0.5 * np.log10(kappa), d)
    x = rng.standard_normal((n, d)) * scales @ np.linalg.qr(rng.standard_normal((d, d)))[0] + shift
    if tiny:
        x[:, :tiny] = rng.standard_normal((n, tiny)) * 1e-6
    return x


def _svd_reference(x1, x2):
    """The Fréchet distance of the two samples' statistics without forming S1 S2: tr sqrt(S1 S2) is the nuclear
    norm of A1 A2^T / sqrt((n1 - 1)(n2 - 1)) for centred data A_i, here of R1 R2^T from QR factors of A_i."""
    a1, a2 = x1 - x1.mean(0), x2 - x2.mean(0)
    r1, r2 = np.linalg.qr(a1, mode="r"), np.linalg.qr(a2, mode="r")
    tr_sqrt = np.linalg.svd(r1 @ r2.T, compute_uv=False).sum() / np.sqrt((len(x1) - 1) * (len(x2) - 1))
    diff = x1.mean(0) - x2.mean(0)
    return diff @ diff + np.trace(np.cov(x1, rowvar=False)) + np.trace(np.cov(x2, rowvar=False)) - 2 * tr_sqrt


SVD_CASES = {  # (n1, kappa1, tiny1), (n2, kappa2, tiny2) at d = 512
    "full rank, condition 1e6": ((1024, 1e6, 0), (1024, 1e6, 0)),
    "full rank, condition 1e8": ((1024, 1e8, 0), (1024, 1e8, 0)),
    "full rank, condition 1e10": ((1024, 1e10, 0), (1024, 1e10, 0)),
    "nearly dead features": ((1024, 1e4, 9), (1024, 1e4, 9)),
    "fewer samples than dims on one side": ((1024, 1e2, 0), (256, 1e2, 0)),
    "... on the other side": ((256, 1e2, 0), (1024, 1e2, 0)),
    "... on both": ((256, 1e2, 0), (170, 1e2, 0)),
}


@pytest.mark.parametrize("case", list(SVD_CASES))
def test_wide_spectra_and_singular_statistics_match_an_svd_reference(case):
    """Genuine eigenvalues far below max|lambda| d eps are kept (full rank), round-off ones are dropped (rank
    deficient): both within 1e-10 of a reference that never forms a covariance product (README: 1e-6)."""
    rng = np.random.default_rng(len(case))
    (n1, k1, t1), (n2, k2, t2) = SVD_CASES[case]
    x1, x2 = _features(rng, n1, 512, k1, t1), _features(rng, n2, 512, k2, t2, shift=0.1)
    expected = _svd_reference(x1, x2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fid = frechet_distance(x1.mean(0), np.cov(x1, rowvar=False), x2.mean(0), np.cov(x2, rowvar=False))
    assert abs(fid - expected) <= 1e-10 * expected, (fid, expected)


def test_covariances_that_are_not_positive_semi_definite_are_refused():
    rng = np.random.default_rng(10)
    mu, s = _stats(rng, 500, 16)
    minus_eye = -np.eye(16)
    indefinite = s - 0.5 * np.linalg.eigvalsh(s).max() * np.eye(16)
    for a, b, culprit in ((minus_eye, minus_eye, "sigma1"), (s, minus_eye, "sigma2"), (minus_eye, s, "sigma1"),
                          (s, indefinite, "sigma2"), (indefinite, s, "sigma1")):
        with pytest.raises(ValueError, match=f"{culprit} is not positive semi-definite"):
            frechet_distance(mu, a, mu, b)
    with pytest.raises(ValueError, match="not positive semi-definite"):
        FrechetReference(mu, minus_eye)
    with pytest.raises(ValueError, match="sigma is not positive semi-definite"):
        FrechetReference(mu, s).distance(mu, indefinite)
    # round-off negatives are not refused: a rank-deficient covariance rounded to float32
    x = rng.standard_normal((8, 16))
    s32 = np.cov(x, rowvar=False).astype(np.float32).astype(np.float64)
    assert np.linalg.eigvalsh(s32).min() < 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(frechet_distance(mu, s, x.mean(0), s32))


def test_non_finite_means_are_refused():
    rng = np.random.default_rng(11)
    mu, s = _stats(rng, 100, 8)
    for bad in (np.nan, np.inf):
        mu_bad = mu.copy()
        mu_bad[3] = bad
        with pytest.raises(ValueError, match="mu2 holds NaN or Inf"):
            frechet_distance(mu, s, mu_bad, s)
        with pytest.raises(ValueError, match="mu holds NaN or Inf"):
            FrechetReference(mu_bad, s)


def test_a_singular_covariance_warns_whatever_the_argument_order():
    rng = np.random.default_rng(12)
    mu_f, full = _stats(rng, 400, 32)
    mu_s, singular = _stats(rng, 20, 32)
    with pytest.warns(UserWarning, match=r"sigma2 is singular \(the product of the covariances has rank 19 of 32"):
        frechet_distance(mu_f, full, mu_s, singular)
    with pytest.warns(UserWarning, match=r"sigma1 is singular \(rank 19 of 32"):
        frechet_distance(mu_s, singular, mu_f, full)
    ref = FrechetReference(mu_f, full)
    with pytest.warns(UserWarning, match="sigma is singular"):
        ref.distance(mu_s, singular)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # full rank on both sides: no warning
        frechet_distance(mu_f, full, mu_f, full)
