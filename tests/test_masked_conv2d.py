"""Masked convolution with the gated epilogue: the reference against masks built tap by tap as PixelCNN code builds
them, gradcheck and gradgradcheck, every backend against float64 (every mask, gate, add, odd shapes, layouts,
low precision), gradients, the registered op, the module, the fused PixelCNN against the eager one, bad input."""
import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_CUDA, INTERPRETING, rel_err

import fastgan
from fastgan.models import pixelcnn as P
from fastgan.ops import masked_conv2d_reference as ref

KERNEL_BACKENDS = [pytest.param("triton", marks=pytest.mark.kernels)]
BACKENDS = ["torch"] + (KERNEL_BACKENDS if INTERPRETING or HAS_CUDA else [])
DEVICE = "cuda" if HAS_CUDA else "cpu"


def _pixelcnn_mask(c_out, c_in, k, kind, sub_pixels):
    """The mask of van den Oord et al. 2016a, tap by tap: rows above the centre, the centre row left of it, and at
    the centre output group a sees input group b iff b < a (A) or b <= a (B), groups of equal size in order."""
    m = torch.zeros(c_out, c_in, k, k, dtype=torch.float64)
    c = k // 2
    for o in range(c_out):
        for i in range(c_in):
            go, gi = o * sub_pixels // c_out, i * sub_pixels // c_in
            for ky in range(k):
                for kx in range(k):
                    centre_ok = gi < go if kind == "A" else gi <= go
                    if ky < c or (ky == c and kx < c) or (ky == c and kx == c and centre_ok):
                        m[o, i, ky, kx] = 1
    return m


def _gate(pre):
    a, b = pre.chunk(2, 1)
    return torch.tanh(a) * torch.sigmoid(b)


@pytest.mark.parametrize("kind", ["A", "B"])
@pytest.mark.parametrize("k,sub_pixels,c_in,c_out", [(3, 1, 4, 6), (5, 3, 3, 6), (7, 3, 6, 9)])
def test_reference_is_the_pixelcnn_mask(kind, k, sub_pixels, c_in, c_out):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, c_in, 6, 7, generator=g, dtype=torch.float64)
    w = torch.randn(c_out, c_in, k, k, generator=g, dtype=torch.float64)
    b = torch.randn(c_out, generator=g, dtype=torch.float64)
    want = F.conv2d(x, w * _pixelcnn_mask(c_out, c_in, k, kind, sub_pixels), b, padding=k // 2)
    got = fastgan.masked_conv2d(x, w, b, mask=kind, sub_pixels=sub_pixels, backend="torch")
    torch.testing.assert_close(got, want)
    geom = ref.Geometry((k, k), (k // 2, k // 2), ref.MASKS[kind], sub_pixels, False)
    assert geom.taps == k * k // 2 + 1  # a 3x3 computes 5 of its 9 taps


def test_gated_mask_splits_each_half_by_sub_pixel_and_gates():
    """With the gate, channel o and C/2 + o belong to the same sub-pixel: each half is masked as its own conv."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 5, generator=g, dtype=torch.float64)
    w = torch.randn(12, 3, 3, 3, generator=g, dtype=torch.float64)
    half = _pixelcnn_mask(6, 3, 3, "A", 3)
    want = _gate(F.conv2d(x, w * torch.cat([half, half]), padding=1))
    torch.testing.assert_close(fastgan.masked_conv2d(x, w, mask="A", sub_pixels=3, gate=True, backend="torch"), want)


def test_anchor_and_no_mask_is_the_vertical_stack():
    """mask None, anchor on the last row: the (k//2 + 1) x k half-kernel padded on top, as the gated PixelCNN's
    vertical stack."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64)
    w = torch.randn(8, 4, 3, 5, generator=g, dtype=torch.float64)
    want = F.conv2d(F.pad(x, (2, 2, 2, 0)), w)
    torch.testing.assert_close(fastgan.masked_conv2d(x, w, mask=None, anchor=(2, 2), backend="torch"), want)


@pytest.mark.parametrize("kind,gate,add", [("A", True, "sample"), ("B", False, "full"), (None, True, None)])
def test_gradcheck_and_gradgradcheck(kind, gate, add):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    a = {None: None, "sample": torch.randn(2, 6, 1, 1, generator=g, dtype=torch.float64),
         "full": torch.randn(2, 6, 4, 5, generator=g, dtype=torch.float64)}[add]
    inputs = (x, w, b) + ((a.requires_grad_(),) if a is not None else ())

    def f(x, w, b, a=None):
        return fastgan.masked_conv2d(x, w, b, mask=kind, sub_pixels=3, gate=gate, add=a, backend="torch")

    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def _case(seed, n, c_in, c_out, size, k, dtype, channels_last, add_kind, device=DEVICE):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, *size, generator=g)
    w = torch.randn(c_out, c_in, *k, generator=g) / (c_in * k[0] * k[1]) ** 0.5
    b = torch.randn(c_out, generator=g)
    a = {None: None, "sample": torch.randn(n, c_out, 1, 1, generator=g),
         "full": torch.randn(n, c_out, *size, generator=g)}[add_kind]
    cast = [t if t is None else t.to(device=device, dtype=dtype) for t in (x, w, b, a)]
    if channels_last:
        cast[0] = cast[0].to(memory_format=torch.channels_last)
    return cast


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c_in,c_out,size,k,kind,sub,anchor,gate,add,cl", [
    (3, 8, (5, 7), (7, 7), "A", 3, None, True, None, False),     # the first layer of an RGB PixelCNN
    (1, 2, (1, 1), (3, 3), "A", 1, None, True, None, False),     # one pixel, grey
    (18, 12, (6, 5), (1, 4), "B", 3, (0, 3), True, "full", True),  # horizontal stack, channels_last
    (20, 14, (4, 9), (3, 5), None, 1, (2, 2), True, "sample", False),  # vertical stack with a class bias
    (33, 7, (3, 4), (5, 5), "B", 1, None, False, None, False),   # ragged K, no gate
    (32, 40, (4, 4), (3, 3), "B", 1, None, False, "full", True),  # even K
])
def test_kernels_match_float64(backend, c_in, c_out, size, k, kind, sub, anchor, gate, add, cl):
    x, w, b, a = _case(c_in + c_out, 2, c_in, c_out, size, k, torch.float32, cl, add)
    kw = dict(mask=kind, sub_pixels=sub, anchor=anchor, gate=gate)
    y, pre = fastgan.masked_conv2d(x, w, b, add=a, return_pre=True, backend=backend, **kw)
    y0, pre0 = fastgan.masked_conv2d(*(t if t is None else t.double() for t in (x, w, b)), add=None if a is None
                                     else a.double(), return_pre=True, backend="torch", **kw)
    assert y.shape == y0.shape and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
    # (TF32 products on a GPU, as cuDNN's)
    tol = 2e-3 if HAS_CUDA else 1e-5
    assert rel_err(y.cpu(), y0.cpu()) < tol and rel_err(pre.cpu(), pre0.cpu()) < tol


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_matches_float64_within_rounding(backend, dtype):
    x, w, b, a = _case(5, 2, 24, 16, (5, 6), (3, 3), dtype, False, "full")
    y = fastgan.masked_conv2d(x, w, b, mask="B", sub_pixels=3, gate=True, add=a, backend=backend)
    y0 = fastgan.masked_conv2d(x.double(), w.double(), b.double(), mask="B", sub_pixels=3, gate=True, add=a.double(),
                               backend="torch")
    assert y.dtype == dtype and rel_err(y.cpu(), y0.cpu()) < (1e-2 if dtype == torch.bfloat16 else 2e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_the_reference(backend):
    x, w, b, a = _case(6, 3, 6, 10, (4, 5), (3, 3), torch.float32, False, "full")
    grads = []
    for be in (backend, "torch"):
        leaves = [t.detach().double().requires_grad_() if be == "torch" else t.detach().requires_grad_()
                  for t in (x, w, b, a)]
        y, pre = fastgan.masked_conv2d(*leaves[:3], mask="A", sub_pixels=1, gate=True, add=leaves[3],
                                       return_pre=True, backend=be)
        (y.square().sum() + (pre * 0.3).sum()).backward()
        grads.append([t.grad for t in leaves])
    for got, want in zip(*grads):
        assert rel_err(got.cpu(), want.cpu()) < (2e-3 if HAS_CUDA else 1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_extreme_values(backend):
    """Huge and tiny values as the reference. A NaN reaches the outputs whose kept taps read it; the kernels do not
    compute the masked taps, so a NaN below or right of a pixel stays out of it (the torch backend, eager
    ``conv2d(x, weight * mask)``, spreads it through the zero taps as 0 * NaN = NaN)."""
    x, w, b, _ = _case(7, 1, 4, 6, (3, 4), (3, 3), torch.float32, False, None)
    x[0, 1, 1, 2] = float("nan")
    x[0, 0, 0, 0] = 1e30
    x[0, 2, 2, 3] = 1e-20
    y = fastgan.masked_conv2d(x, w, b, mask="B", gate=True, backend=backend)
    y0 = fastgan.masked_conv2d(x.double(), w.double(), b.double(), mask="B", gate=True, backend="torch")
    taps = _pixelcnn_mask(1, 1, 3, "B", 1)
    sees_nan = F.conv2d(x.isnan().double().sum(1, keepdim=True), taps, padding=1) > 0
    eager_nan = F.conv2d(x.isnan().double().sum(1, keepdim=True), torch.ones(1, 1, 3, 3, dtype=torch.float64),
                         padding=1) > 0
    assert torch.equal(y.isnan().cpu(), (sees_nan if backend != "torch" else eager_nan).expand_as(y))
    ok = ~eager_nan.expand_as(y)
    torch.testing.assert_close(y.cpu()[ok].double(), y0[ok], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_registered_op_passes_opcheck_and_compiles(backend):
    x, w, b, a = _case(8, 2, 5, 8, (3, 4), (3, 3), torch.float32, False, "sample")
    torch.library.opcheck(torch.ops.fastgan.masked_conv2d.default, (x, w, b, a, [1, 1], 2, 1, True, True, backend))

    def f(x, w, b, a):
        return fastgan.masked_conv2d(x, w, b, mask="B", gate=True, add=a, backend=backend)

    compiled = torch.compile(f, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x, w, b, a), f(x, w, b, a))


def test_module_is_the_masked_conv_of_pixelcnn_code():
    """fastgan.nn.MaskedConv2d against the usual eager class: nn.Conv2d(padding=k // 2) times a 0/1 mask buffer,
    same state dict."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, 5, padding=2)
    m = fastgan.nn.MaskedConv2d(5, 7, 5, mask="A")
    m.load_state_dict(conv.state_dict())
    x = torch.randn(2, 5, 6, 6)
    want = F.conv2d(x, conv.weight * _pixelcnn_mask(7, 5, 5, "A", 1).float(), conv.bias, padding=2)
    torch.testing.assert_close(m(x), want)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("num_classes", [None, 4])
def test_fused_pixelcnn_matches_the_eager_build(backend, num_classes):
    torch.manual_seed(1)
    eager = P.PixelCNN(3, hidden=12, layers=3, kernel=3, first_kernel=5, num_classes=num_classes)
    fused = P.PixelCNN(3, hidden=12, layers=3, kernel=3, first_kernel=5, num_classes=num_classes, fused=True,
                       backend=backend)
    fused.load_state_dict(eager.state_dict())
    x = torch.randint(0, 256, (2, 3, 5, 6))
    y = None if num_classes is None else torch.tensor([1, 3])
    losses = []
    for model in (eager, fused):
        model.zero_grad()
        loss = model.nll(x, y).mean()
        loss.backward()
        losses.append((loss, [p.grad for p in model.parameters()]))
    torch.testing.assert_close(losses[1][0], losses[0][0], rtol=1e-5, atol=1e-5)
    for got, want in zip(losses[1][1], losses[0][1]):
        assert (got is None) == (want is None)  # (the last layer's vertical output feeds nothing)
        assert got is None or rel_err(got, want) < 1e-4


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(x=torch.zeros(2, 3, 4, 4), w=torch.zeros(6, 4, 3, 3)), ValueError, "same C_in"),
    (dict(x=torch.zeros(2, 3, 4, 4, dtype=torch.long), w=torch.zeros(6, 3, 3, 3)), TypeError, "use float32"),
    (dict(x=torch.zeros(2, 3, 4, 4), w=torch.zeros(5, 3, 3, 3), gate=True), ValueError, "even number"),
    (dict(x=torch.zeros(2, 3, 4, 4), w=torch.zeros(6, 3, 3, 3), mask="C"), ValueError, "'A', 'B' or None"),
    (dict(x=torch.zeros(2, 3, 4, 4), w=torch.zeros(6, 3, 3, 3), anchor=(3, 0)), ValueError, "not a tap"),
    (dict(x=torch.zeros(2, 3, 4, 4), w=torch.zeros(6, 3, 3, 3), add=torch.zeros(2, 5, 1, 1)), ValueError,
     "must broadcast"),
    (dict(x=torch.zeros(2, 3, 4, 4), w=torch.zeros(6, 3, 3, 3, dtype=torch.float64)), TypeError, "cast one"),
    (dict(x=torch.zeros(2, 3, 4, 4), w=torch.zeros(6, 3, 3, 3), sub_pixels=0), ValueError, "sub_pixels"),
])
def test_bad_input_says_what_is_wrong(kwargs, error, message):
    x, w = kwargs.pop("x"), kwargs.pop("w")
    with pytest.raises(error, match=message):
        fastgan.masked_conv2d(x, w, **kwargs)


def test_check_finite_refuses_nan():
    x = torch.randn(1, 2, 3, 3)
    x[0, 0, 1, 1] = float("inf")
    with pytest.raises(ValueError, match="non-finite values .* in x"):
        fastgan.masked_conv2d(x, torch.randn(4, 2, 3, 3), check_finite=True)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gpu_layers_of_the_bench_match_float64_and_are_deterministic(dtype):
    from fastgan.bench.suites import masked_conv2d as suite

    for layer in suite.LAYERS:
        t = suite._tensors(layer._replace(n=4), str(dtype).replace("torch.", ""), "cuda")
        with torch.backends.cudnn.flags(allow_tf32=False):
            y = [suite.fastgan_layer(layer, t, "triton")(t["x"], t["w"], t["b"]) for _ in range(2)]
        y0 = suite.eager(layer, {**t, "add": None if t["add"] is None else t["add"].double(),
                                 "mask": t["mask"].double()})(t["x"].double(), t["w"].double(), t["b"].double())
        assert torch.equal(y[0], y[1])
        assert rel_err(y[0], y0) < (1e-5 if dtype == torch.float32 else 1e-2), layer.name


@pytest.mark.gpu
def test_gpu_fused_pixelcnn_trains_like_the_eager_one_and_compiles():
    torch.manual_seed(0)
    eager = P.PixelCNN(3, hidden=32, layers=4).cuda()
    fused = P.PixelCNN(3, hidden=32, layers=4, fused=True, backend="triton").cuda()
    fused.load_state_dict(eager.state_dict())
    x = torch.randint(0, 256, (8, 3, 16, 16), device="cuda")
    with torch.backends.cudnn.flags(allow_tf32=False):
        a, b = eager.bits_per_dim(x), fused.bits_per_dim(x)
        ga = torch.autograd.grad(a, eager.layers[2].h_conv.weight)[0]
        gb = torch.autograd.grad(b, fused.layers[2].h_conv.weight)[0]
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        assert rel_err(gb, ga) < 1e-4
        compiled = torch.compile(fused, fullgraph=True)
        torch.testing.assert_close(compiled(x), fused(x), rtol=1e-4, atol=1e-4)


def test_only_the_returned_pre_activation_used():
    """The vertical stack of the last layer: its gated output feeds nothing, its pre-activation does."""
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    _, pre = fastgan.masked_conv2d(x, w, mask=None, anchor=(1, 1), gate=True, return_pre=True, backend="torch")
    got = torch.autograd.grad(pre.square().sum(), (x, w))
    want = torch.autograd.grad(F.conv2d(F.pad(x, (1, 1, 1, 0)), w).square().sum(), (x, w))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    f = torch.compile(lambda x, w: fastgan.masked_conv2d(x, w, mask=None, anchor=(1, 1), gate=True,
                                                         return_pre=True, backend="torch")[1].square().sum(),
                      fullgraph=True, backend="aot_eager")
    for a, b in zip(torch.autograd.grad(f(x, w), (x, w)), want):
        torch.testing.assert_close(a, b)
