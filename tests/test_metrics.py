"""FID, IS and KID metric objects, with small stand-in feature extractors, against direct computations."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from fastgan.metrics import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance, save_statistics


class _Features(nn.Module):
    """A fixed random projection of 3x8x8 images to 16 features (stands in for InceptionV3)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(192, 16)

    def forward(self, x):
        return torch.tanh(self.proj(x.flatten(1)))


def _images(n, seed, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, 8, 8, generator=g) + shift).clamp(0, 1)


def _fid_numpy(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def test_fid_object_matches_a_direct_computation_and_keeps_real_statistics_across_reset():
    net = _Features()
    metric = FrechetInceptionDistance(net, dims=16, device="cpu")
    real, fake_a, fake_b = _images(200, 1), _images(150, 2, shift=0.2), _images(150, 3, shift=-0.1)
    for chunk in real.split(64):
        metric.update(chunk, real=True)
    for chunk in fake_a.split(50):
        metric.update(chunk, real=False)
    with torch.no_grad():
        f_real, f_a, f_b = (net(x).double().numpy() for x in (real, fake_a, fake_b))
    assert abs(metric.compute() - _fid_numpy(f_real, f_a)) <= 1e-6 * _fid_numpy(f_real, f_a)
    metric.reset()  # generated set cleared, real statistics (and their factorisation) kept
    assert metric.real.count == 200 and metric.fake.count == 0
    metric.update(fake_b, real=False)
    assert abs(metric.compute() - _fid_numpy(f_real, f_b)) <= 1e-6 * _fid_numpy(f_real, f_b)
    metric.reset(real=True)
    metric.update(fake_b, real=False)
    with pytest.raises(ValueError, match="no reference statistics"):
        metric.compute()


def test_fid_object_with_precomputed_reference_statistics(tmp_path):
    net = _Features()
    real, fake = _images(300, 4), _images(100, 5, shift=0.3)
    with torch.no_grad():
        f_real, f_fake = net(real).double().numpy(), net(fake).double().numpy()
    path = tmp_path / "real.npz"
    save_statistics(path, f_real.mean(0), np.cov(f_real, rowvar=False))
    metric = FrechetInceptionDistance(net, dims=16, device="cpu", reference=path)
    metric.update(fake, real=False)
    assert abs(metric.compute() - _fid_numpy(f_real, f_fake)) <= 1e-6 * _fid_numpy(f_real, f_fake)
    with pytest.raises(ValueError, match="precomputed"):
        metric.update(real, real=True)


def test_inception_score_analytic_values():
    n, classes = 1000, 10
    uniform = torch.zeros(n, classes)  # every image predicts the uniform distribution: IS = 1
    score = InceptionScore(nn.Identity(), splits=10, device="cpu")
    score.update_logits(uniform)
    assert score.compute() == pytest.approx((1.0, 0.0), abs=1e-12)
    confident = torch.full((n, classes), -50.0)  # certain predictions spread evenly over the classes: IS = C
    confident[torch.arange(n), torch.arange(n) % classes] = 50.0
    score.reset()
    score.update_logits(confident)
    mean, std = score.compute()
    assert mean == pytest.approx(classes, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_matches_a_numpy_computation():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((503, 7)) * 3
    score = InceptionScore(nn.Identity(), splits=5, device="cpu")
    for chunk in np.array_split(logits, 4):
        score.update(torch.from_numpy(chunk).float())
    p = np.exp(logits.astype(np.float32).astype(np.float64))
    p /= p.sum(1, keepdims=True)
    scores = []
    for part in np.array_split(p, 5):
        py = part.mean(0)
        scores.append(np.exp((part * (np.log(part) - np.log(py))).sum(1).mean()))
    mean, std = score.compute()
    assert mean == pytest.approx(np.mean(scores), rel=1e-9) and std == pytest.approx(np.std(scores), rel=1e-7)
    with pytest.raises(ValueError, match="5 splits"):
        small = InceptionScore(nn.Identity(), splits=5, device="cpu")
        small.update_logits(torch.zeros(3, 7))
        small.compute()


def _mmd_numpy(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return ((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
            - 2 * k(x, y).mean())


def test_kid_on_whole_sets_matches_a_numpy_computation_and_is_seeded():
    rng = np.random.default_rng(1)
    real, fake = rng.standard_normal((120, 20)), rng.standard_normal((120, 20)) * 1.2 + 0.1
    kid = KernelInceptionDistance(nn.Identity(), subsets=3, subset_size=120, device="cpu")
    kid.update_features(torch.from_numpy(real).float(), real=True)
    kid.update_features(torch.from_numpy(fake).float(), real=False)
    mean, std = kid.compute()  # a subset of the whole set is a permutation of it: MMD^2 is the same each time
    expected = _mmd_numpy(real.astype(np.float32).astype(np.float64), fake.astype(np.float32).astype(np.float64))
    assert mean == pytest.approx(expected, rel=1e-9) and std == pytest.approx(0.0, abs=1e-12)
    sub = KernelInceptionDistance(nn.Identity(), subsets=10, subset_size=50, seed=7, device="cpu")
    sub.update_features(torch.from_numpy(real).float(), real=True)
    sub.update_features(torch.from_numpy(fake).float(), real=False)
    again = KernelInceptionDistance(nn.Identity(), subsets=10, subset_size=50, seed=7, device="cpu")
    again.update_features(torch.from_numpy(real).float(), real=True)
    again.update_features(torch.from_numpy(fake).float(), real=False)
    assert sub.compute() == again.compute()


def test_kid_of_a_distribution_with_itself_is_near_zero():
    rng = np.random.default_rng(2)
    kid = KernelInceptionDistance(nn.Identity(), subsets=20, subset_size=400, device="cpu")
    kid.update_features(torch.from_numpy(rng.standard_normal((800, 8))).float(), real=True)
    kid.update_features(torch.from_numpy(rng.standard_normal((800, 8))).float(), real=False)
    mean, std = kid.compute()
    assert abs(mean) < 3 * std / math.sqrt(20) + 1e-3  # unbiased: zero within its noise


def test_inception_score_refuses_probabilities_for_logits():
    """Fed softmax outputs by mistake, the score would be computed on softmax(p): 1.03 instead of 3.91."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(200, 10, generator=g) * 3
    probs = logits.softmax(1)
    score = InceptionScore(nn.Identity(), splits=2, device="cpu")
    with pytest.raises(ValueError, match="look like probabilities"):
        score.update_logits(probs)
    score.update_logits(torch.log(probs))  # the advice in the message: the same softmax, so the same score
    reference = InceptionScore(nn.Identity(), splits=2, device="cpu")
    reference.update_logits(logits)
    assert score.compute() == pytest.approx(reference.compute(), rel=1e-6, abs=1e-7)  # logits kept in float32


def test_mmd_needs_two_samples_on_each_side():
    from fastgan.metrics import mmd2_unbiased

    x = torch.randn(5, 4, dtype=torch.float64)
    for a, b in ((x[:1], x), (x, x[:1])):
        with pytest.raises(ValueError, match="at least 2 samples on each side"):
            mmd2_unbiased(a, b)
    with pytest.raises(ValueError, match="same d"):
        mmd2_unbiased(x, x[:, :3])
    assert math.isfinite(mmd2_unbiased(x[:2], x[2:]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_metrics_asked_for_a_missing_cuda_device_say_so():
    from fastgan.metrics import FeatureStatistics

    for make in (lambda: FrechetInceptionDistance(_Features(), dims=16, device="cuda"),
                 lambda: InceptionScore(nn.Identity(), device="cuda:0"),
                 lambda: KernelInceptionDistance(_Features(), device="cuda"),
                 lambda: FeatureStatistics(16, device="cuda")):
        with pytest.raises(ValueError, match=r"device 'cuda(:0)?' was asked for, but .*use device='cpu'"):
            make()
    with pytest.raises(ValueError, match="not a device name"):
        FrechetInceptionDistance(_Features(), dims=16, device="gpu")
