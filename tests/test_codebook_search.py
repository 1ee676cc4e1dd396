"""Codebook search op: every backend against torch.cdist + argmin in float64 (odd shapes, K not a multiple of the
tile, ties resolved as torch does, low precision), the registered op, bad input."""
import pytest
import torch
from conftest import HAS_CUDA, INTERPRETING

import fastgan
from fastgan.ops import codebook_search_reference as ref

KERNEL_BACKENDS = [pytest.param("triton", marks=pytest.mark.kernels)]
BACKENDS = ["torch"] + (KERNEL_BACKENDS if INTERPRETING or HAS_CUDA else [])
DEVICE = "cuda" if HAS_CUDA else "cpu"


def _oracle(z, e):
    """float64 torch.cdist + argmin: the nearest code and its squared distance."""
    d = torch.cdist(z.double(), e.double()).square()
    i = d.argmin(1)
    return i, d.gather(1, i[:, None])[:, 0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,k,d", [(1, 1, 1), (37, 70, 3), (5, 129, 64), (130, 33, 200), (64, 300, 17),
                                   (3, 5, 256)])
def test_the_nearest_code_and_its_distance(backend, n, k, d):
    g = torch.Generator().manual_seed(n * 1000 + k + d)
    z, e = torch.randn(n, d, generator=g).to(DEVICE), torch.randn(k, d, generator=g).to(DEVICE)
    index, dist = fastgan.codebook_search(z, e, backend=backend)
    i0, d0 = _oracle(z, e)
    assert index.dtype == torch.long and dist.dtype == torch.float32 and index.shape == dist.shape == (n,)
    assert torch.equal(index.cpu(), i0.cpu())
    torch.testing.assert_close(dist.double(), d0, rtol=1e-5, atol=1e-4 * d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_go_to_the_lowest_index_as_torch_argmin(backend):
    """Duplicated codes (in one tile and across tiles) and vectors equidistant from two codes."""
    g = torch.Generator().manual_seed(0)
    base = torch.randn(20, 8, generator=g)
    e = torch.cat([base, base, base, base])  # 80 codes: copies 20, 40, 60 apart (other tiles for BLOCK_K < 80)
    z = torch.cat([base[[3, 19, 0]], (base[[1]] + base[[2]]) / 2])
    e = torch.cat([e, torch.tensor([[1.0] + [0.0] * 7, [-1.0] + [0.0] * 7])])  # codes 80, 81: +-e_0
    z = torch.cat([z, torch.zeros(1, 8)])  # equidistant from 80 and 81 (and nearer to none of base, maybe)
    index, _ = fastgan.codebook_search(z.to(DEVICE), e.to(DEVICE), backend=backend)
    expected = torch.cdist(z.double(), e.double()).argmin(1)
    assert torch.equal(index.cpu(), expected)
    assert index[:3].tolist() == [3, 19, 0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_pick_a_nearest_code_of_the_rounded_vectors(backend, dtype):
    """Products in float32 of the rounded inputs: the chosen code is at the minimum distance of the rounded
    inputs (any of near-tied codes within float32 round-off), reported in float32."""
    g = torch.Generator().manual_seed(1)
    z, e = torch.randn(45, 32, generator=g).to(dtype), torch.randn(100, 32, generator=g).to(dtype)
    index, dist = fastgan.codebook_search(z.to(DEVICE), e.to(DEVICE), backend=backend)
    full = torch.cdist(z.double(), e.double()).square()
    chosen = full.gather(1, index.cpu()[:, None])[:, 0]
    torch.testing.assert_close(chosen, full.min(1).values, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(dist.double().cpu(), chosen, rtol=1e-5, atol=1e-3)


def test_float64_on_the_torch_backend_is_the_oracle():
    g = torch.Generator().manual_seed(2)
    z, e = torch.randn(30, 9, generator=g, dtype=torch.float64), torch.randn(40, 9, generator=g, dtype=torch.float64)
    index, dist = fastgan.codebook_search(z, e)
    i0, d0 = _oracle(z, e)
    assert dist.dtype == torch.float64 and torch.equal(index, i0)
    torch.testing.assert_close(dist, d0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_vectors_and_non_contiguous_inputs(backend):
    e = torch.randn(7, 4).to(DEVICE)
    index, dist = fastgan.codebook_search(torch.zeros(0, 4, device=DEVICE), e, backend=backend)
    assert index.shape == dist.shape == (0,)
    z = torch.randn(4, 11).to(DEVICE).T  # (11, 4), column-major
    assert torch.equal(fastgan.codebook_search(z, e, backend=backend)[0].cpu(), _oracle(z, e)[0].cpu())


def test_a_code_dimension_past_the_kernels_tile_runs_on_torch_under_auto():
    z, e = torch.randn(3, 300), torch.randn(5, 300)
    with fastgan.use_backend("auto"):
        assert torch.equal(fastgan.codebook_search(z, e)[0], _oracle(z, e)[0])
    if INTERPRETING:
        with pytest.raises(fastgan.BackendUnavailable, match="up to 256 dimensions"):
            fastgan.codebook_search(z, e, backend="triton")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_registered_op_passes_opcheck_and_compiles(backend):
    z, e = torch.randn(9, 5).to(DEVICE), torch.randn(13, 5).to(DEVICE)
    torch.library.opcheck(torch.ops.fastgan.codebook_search.default, (z, e, backend))
    compiled = torch.compile(lambda a, b: fastgan.codebook_search(a, b, backend=backend), fullgraph=True,
                             backend="eager")
    assert torch.equal(compiled(z, e)[0], fastgan.codebook_search(z, e, backend=backend)[0])


@pytest.mark.parametrize("args,error,message", [
    ((torch.zeros(2, 3, 4), torch.zeros(5, 4)), ValueError, "flatten the spatial dimensions"),
    ((torch.zeros(2, 4), torch.zeros(5, 3)), ValueError, "4 dimensions per vector, the codebook 3"),
    ((torch.zeros(2, 4), torch.zeros(0, 4)), ValueError, "the codebook is empty"),
    ((torch.zeros(2, 4, dtype=torch.long), torch.zeros(5, 4)), TypeError, "must be float32"),
    ((torch.zeros(2, 4), torch.zeros(5, 4, dtype=torch.float64)), ValueError, "same dtype and device"),
])
def test_bad_input_says_what_is_wrong(args, error, message):
    with pytest.raises(error, match=message):
        fastgan.codebook_search(*args)


def test_check_finite_refuses_nan():
    z = torch.randn(3, 4)
    z[1, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite values .* in z"):
        fastgan.codebook_search(z, torch.randn(5, 4), check_finite=True)


def test_the_reference_matches_the_oracle_in_float32():
    g = torch.Generator().manual_seed(3)
    z, e = torch.randn(50, 16, generator=g), torch.randn(64, 16, generator=g) + 0.5
    index, dist = ref.search(z, e)
    assert torch.equal(index, _oracle(z, e)[0])
    torch.testing.assert_close(dist.double(), _oracle(z, e)[1], rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- fastgan.nn.VectorQuantizer


def _eager_vq(z, weight, commitment, learned):
    """The textbook VQ-VAE step: cdist + argmin, codes by one-hot matmul, straight-through, both loss terms."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
    index = torch.cdist(flat, weight).argmin(1)
    onehot = torch.nn.functional.one_hot(index, weight.shape[0]).to(z.dtype)
    q = (onehot @ weight).view(z.shape[0], z.shape[2], z.shape[3], -1).permute(0, 3, 1, 2)
    loss = commitment * (z - q.detach()).square().mean()
    if learned:
        loss = loss + (z.detach() - q).square().mean()
    return z + (q - z).detach(), loss, index, onehot


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_quantizer_learned_by_the_loss_is_the_textbook_step(backend):
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 6, 3, 5, generator=g, dtype=torch.float64)
    vq = fastgan.nn.VectorQuantizer(11, 6, commitment=0.3, decay=None, data_init=False, backend="torch").double()
    vq.weight.data = torch.randn(11, 6, generator=g, dtype=torch.float64)
    w2 = vq.weight.detach().clone().requires_grad_()
    za, zb = z.clone().requires_grad_(), z.clone().requires_grad_()
    out = vq(za)
    zq, loss, index, _ = _eager_vq(zb, w2, 0.3, learned=True)
    torch.testing.assert_close(out.z_q, zq)
    torch.testing.assert_close(out.loss, loss)
    assert torch.equal(out.indices.flatten(), index)
    up = torch.randn(out.z_q.shape, generator=g, dtype=torch.float64)
    ((out.z_q * up).sum() + out.loss).backward()
    ((zq * up).sum() + loss).backward()
    torch.testing.assert_close(za.grad, zb.grad)  # straight-through + commitment
    torch.testing.assert_close(vq.weight.grad, w2.grad)  # the codebook term


def test_the_ema_quantizer_updates_the_codebook_as_sonnet_does():
    g = torch.Generator().manual_seed(5)
    K, D, d, eps = 7, 4, 0.9, 1e-5
    vq = fastgan.nn.VectorQuantizer(K, D, decay=d, eps=eps, data_init=False).double()
    w = torch.randn(K, D, generator=g, dtype=torch.float64)
    vq.weight.data.copy_(w)
    vq.ema_sum.copy_(w)
    count, total = torch.zeros(K, dtype=torch.float64), w.clone()
    for step in range(3):
        z = torch.randn(3, D, 2, 4, generator=g, dtype=torch.float64) + step
        _, _, index, onehot = _eager_vq(z, w, 0.25, learned=False)
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)
        count = d * count + (1 - d) * onehot.sum(0)
        total = d * total + (1 - d) * onehot.T @ flat
        n = count.sum()
        w = total / ((count + eps) / (n + K * eps) * n)[:, None]
        out = vq(z)
        assert torch.equal(out.indices.flatten(), index)
        torch.testing.assert_close(vq.weight.detach(), w)
        torch.testing.assert_close(out.perplexity.double(), torch.exp(torch.special.entr(onehot.mean(0)).sum()))
        assert out.usage.item() == pytest.approx((onehot.sum(0) > 0).double().mean().item())
    vq.eval()
    before = vq.weight.detach().clone()
    vq(torch.randn(1, D, 2, 2, dtype=torch.float64))
    assert torch.equal(vq.weight, before)  # no update in eval


def test_the_quantizer_refuses_a_wrong_shape():
    with pytest.raises(ValueError, match=r"takes \(B, 8, H, W\)"):
        fastgan.nn.VectorQuantizer(4, 8)(torch.zeros(1, 3, 2, 2))


def test_the_codebook_starts_from_the_first_training_batchs_vectors():
    torch.manual_seed(0)
    z = torch.randn(2, 4, 8, 8) * 5 + 3  # far from the uniform(-1/16, 1/16) initial codes
    flat = z.permute(0, 2, 3, 1).reshape(-1, 4)
    learned = fastgan.nn.VectorQuantizer(16, 4, decay=None)
    out = learned(z)
    assert all((flat == w).all(1).any() for w in learned.weight)  # every code is one of the batch's vectors
    assert out.perplexity > 4 and bool(learned.initialized)
    vq = fastgan.nn.VectorQuantizer(16, 4)
    assert vq(z).perplexity > 4
    vq(z + 100)  # a later batch moves the codes by the EMA, it does not initialise them again
    assert not any(((flat + 100) == w).all(1).any() for w in vq.weight)


@pytest.mark.gpu
@pytest.mark.parametrize("k,d", [(1024, 64), (8192, 256), (1000, 65)])
def test_gpu_search_at_vq_vae_sizes_is_nearest_and_deterministic(k, d):
    g = torch.Generator(device="cuda").manual_seed(k + d)
    z, e = torch.randn(16384, d, device="cuda", generator=g), torch.randn(k, d, device="cuda", generator=g)
    first, dist = fastgan.codebook_search(z, e, backend="triton")
    assert torch.equal(first, fastgan.codebook_search(z, e, backend="triton")[0])
    for zc, ic, dc in zip(z.split(4096), first.split(4096), dist.split(4096)):
        full = torch.cdist(zc.double(), e.double()).square()
        best = full.min(1).values
        assert (full.gather(1, ic[:, None])[:, 0] - best <= 1e-4 * (1 + best)).all()
        torch.testing.assert_close(dc.double(), best, rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------- the EMA statistics


def _ema_case(n, k, d, dtype, seed, collapse=False):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g).to(dtype)
    index = torch.zeros(n, dtype=torch.long) if collapse else torch.randint(0, k, (n,), generator=g)
    index[: min(n, 3)] = k - 1  # (the last code used, some in the middle unused for small n)
    return z, index, torch.bincount(index, minlength=k), torch.rand(k, generator=g), torch.randn(k, d, generator=g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,k,d,dtype,collapse", [(1, 1, 1, torch.float32, False), (37, 70, 3, torch.float32, False),
                                                  (130, 5, 65, torch.bfloat16, False), (200, 9, 130, torch.float32,
                                                                                        True)])
def test_ema_statistics_match_the_float64_segment_sums(backend, n, k, d, dtype, collapse):
    z, index, counts, count0, sum0 = _ema_case(n, k, d, dtype, n + k + d, collapse)
    ema_count, ema_sum = count0.clone().to(DEVICE), sum0.clone().to(DEVICE)
    fastgan.codebook_ema_update_(ema_count, ema_sum, z.to(DEVICE), index.to(DEVICE),
                                                     counts.to(DEVICE), 0.9, backend=backend)
    sums = torch.zeros(k, d, dtype=torch.float64).index_add_(0, index, z.double())  # independent: index_add
    torch.testing.assert_close(ema_count.cpu().double(), 0.9 * count0.double() + 0.1 * counts.double())
    torch.testing.assert_close(ema_sum.cpu().double(), 0.9 * sum0.double() + 0.1 * sums, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ema_statistics_are_deterministic_and_registered(backend):
    z, index, counts, count0, sum0 = (t.to(DEVICE) for t in _ema_case(300, 17, 40, torch.float32, 5))
    runs = []
    for _ in range(2):
        c, s = count0.clone(), sum0.clone()
        fastgan.codebook_ema_update_(c, s, z, index, counts, 0.99, backend=backend)
        runs.append((c, s))
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    torch.library.opcheck(torch.ops.fastgan.codebook_ema_update_.default,
                          (count0.clone(), sum0.clone(), z, index, counts, 0.99, backend))


def test_ema_update_refuses_mismatched_statistics():
    z, index, counts, count0, sum0 = _ema_case(10, 4, 3, torch.float32, 0)
    with pytest.raises(ValueError, match="int64"):
        fastgan.codebook_ema_update_(count0, sum0, z, index.int(), counts, 0.9)
    with pytest.raises(ValueError, match=r"ema_sum \(K, D\)"):
        fastgan.codebook_ema_update_(count0, sum0[:, :2], z, index, counts, 0.9)
