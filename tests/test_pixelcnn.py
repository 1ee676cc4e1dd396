"""fastgan.models.pixelcnn: causality (every sub-pixel sees exactly the ones before it, no blind spot), the
likelihood against an independent per-sub-pixel computation, the cached sampler equal to the naive one, training."""
import math

import pytest
import torch

from fastgan.models import pixelcnn as P

pytestmark = pytest.mark.no_triton  # plain torch


def _model(channels=3, binary=False, num_classes=None, layers=3, seed=0):
    torch.manual_seed(seed)
    m = P.PixelCNN(channels=channels, hidden=6 if channels == 3 else 4, layers=layers, kernel=3, first_kernel=5,
                   num_classes=num_classes, binary=binary).double()
    for p in m.parameters():  # (large weights: every dependence shows)
        torch.nn.init.normal_(p, std=0.5)
    return m


def _images(m, n, H, W, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2 if m.binary else 256, (n, m.channels, H, W), generator=g)


def _order(C, H, W):
    return [(i, j, c) for i in range(H) for j in range(W) for c in range(C)]


@pytest.mark.parametrize("channels", [3, 1])
def test_each_sub_pixel_depends_on_exactly_the_ones_before_it(channels):
    """Change one sub-pixel of the input: the logits of every earlier sub-pixel (raster, then R -> G -> B) stay
    bitwise, and, in a network deep enough to reach, the later ones of the next rows change (above-right too: no
    blind spot)."""
    m = _model(channels, layers=4)
    H, W = 5, 7
    x = _images(m, 1, H, W, 0)
    base = m(x)
    order = _order(channels, H, W)
    for t, (i, j, c) in enumerate(order):
        x2 = x.clone()
        x2[0, c, i, j] = (x2[0, c, i, j] + 97) % 256
        changed = (m(x2) - base).abs().amax(2)[0]  # (C, H, W)
        before = torch.stack([changed[cc, ii, jj] for ii, jj, cc in order[:t + 1]])
        assert torch.all(before == 0), (i, j, c)
        if i + 1 < H:  # the next row's pixels within reach: left, straight below, and up to 5 columns right of j
            for jj in range(max(0, j - 3), min(W, j + 5)):
                assert changed[:, i + 1, jj].max() > 0, ((i, j, c), jj)


def test_the_binary_model_is_causal_too():
    m = _model(1, binary=True)
    x = _images(m, 1, 4, 5, 1)
    base = m(x)
    for t, (i, j, _) in enumerate(_order(1, 4, 5)):
        x2 = x.clone()
        x2[0, 0, i, j] = 1 - x2[0, 0, i, j]
        d = (m(x2) - base).abs()[0, 0].flatten()
        assert torch.all(d[:t + 1] == 0)


@pytest.mark.parametrize("binary", [False, True])
def test_bits_per_dim_is_the_mean_nll_of_the_conditionals(binary):
    m = _model(1 if binary else 3, binary=binary)
    x = _images(m, 3, 4, 5, 2)
    logits = m(x)
    if binary:
        logp = torch.distributions.Bernoulli(logits=logits).log_prob(x.double())
    else:
        logp = torch.distributions.Categorical(logits=logits.movedim(2, -1)).log_prob(x)
    nll = -logp.flatten(1).sum(1)
    torch.testing.assert_close(m.nll(x), nll)
    torch.testing.assert_close(m.bits_per_dim(x), nll.mean() / (x[0].numel() * math.log(2)))


@pytest.mark.parametrize("channels,binary,num_classes", [(3, False, None), (1, True, None), (3, False, 4),
                                                         (1, False, None)])
def test_the_cached_sampler_draws_the_naive_samplers_images(channels, binary, num_classes):
    m = _model(channels, binary, num_classes)
    y = torch.tensor([1, 3]) if num_classes else None
    u = torch.rand(2, channels, 5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    naive = P.sample(m, 2, (5, 6), y=y, u=u)
    cached = P.sample_cached(m, 2, (5, 6), y=y, u=u)
    assert torch.equal(naive, cached)
    assert naive.min() >= 0 and naive.max() <= (1 if binary else 255)
    assert len(naive.unique()) > 1  # (not a constant image: the check would be empty)


def test_samples_follow_the_models_conditionals():
    """The inverse-CDF draw of a sub-pixel hits each value with its softmax probability."""
    m = _model(1, layers=2)
    logits = torch.randn(1, 256, dtype=torch.float64).expand(20000, -1)
    u = torch.rand(20000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    counts = torch.bincount(m._draw(logits, u), minlength=256).double() / 20000
    assert (counts - torch.softmax(logits[0], 0)).abs().max() < 0.01


def test_bad_input_is_refused_with_what_to_do():
    m = _model(3)
    with pytest.raises(ValueError, match="integer images"):
        m(torch.rand(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        m(torch.zeros(1, 1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="needs y"):
        _model(3, num_classes=4)(torch.zeros(1, 3, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="multiples of channels"):
        P.PixelCNN(channels=3, hidden=8)


def test_a_short_training_run_lowers_the_nll_of_the_shapes():
    from fastgan.data import Shapes

    data = Shapes(8, 64, seed=0)
    x = ((data.batch(torch.arange(64))[0] + 1) * 127.5).round().long()
    torch.manual_seed(0)
    m = P.PixelCNN(channels=3, hidden=12, layers=3, kernel=3, first_kernel=5)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = m.bits_per_dim(x).item()
    for _ in range(40):
        loss = m.bits_per_dim(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert m.bits_per_dim(x).item() < 0.5 * first, (first, m.bits_per_dim(x).item())


def test_a_prior_over_codes_is_causal_and_its_cached_samples_are_the_naive_ones():
    """One channel of 13 categories read through an embedding (a prior over VQ-VAE codes)."""
    torch.manual_seed(0)
    m = P.PixelCNN(1, hidden=8, layers=3, kernel=3, first_kernel=5, levels=13, embed=6).double()
    x = torch.randint(0, 13, (1, 1, 4, 5), generator=torch.Generator().manual_seed(2))
    base = m(x)
    assert base.shape == (1, 1, 13, 4, 5)
    for t, (i, j, _) in enumerate(_order(1, 4, 5)):
        x2 = x.clone()
        x2[0, 0, i, j] = (x2[0, 0, i, j] + 5) % 13
        d = (m(x2) - base).abs().amax(2)[0, 0].flatten()
        assert torch.all(d[:t + 1] == 0), (i, j)
    u = torch.rand(2, 1, 4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    naive = P.sample(m, 2, (4, 5), u=u)
    assert torch.equal(naive, P.sample_cached(m, 2, (4, 5), u=u))
    assert naive.max() <= 12 and len(naive.unique()) > 1
