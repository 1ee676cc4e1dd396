"""fastgan.conv_transpose2d and fastgan.upsample_conv2d against F.conv_transpose2d / F.interpolate + F.conv2d in
float64: the torch backend over a grid of arguments, the Triton kernel under the interpreter (dtypes, layouts,
epilogues, batch-norm statistics, every autotune configuration), gradients (gradcheck, gradgradcheck), opcheck,
torch.compile, bad input; on a GPU the same kernels on the device."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import INTERPRETING

import fastgan
from fastgan import activations

KERNEL_BACKENDS = [pytest.param("triton", marks=pytest.mark.kernels)]
CPU_BACKENDS = ["torch"] + (KERNEL_BACKENDS if INTERPRETING else [])
ACTS = [None, "relu", ("leaky_relu", 0.2), "tanh", "sigmoid"]

# (N, C_in, C_out, H, W, k, stride, padding, output_padding, dilation, groups)
KERNEL_CASES = [
    (2, 8, 4, 4, 4, 4, 2, 1, 0, 1, 1),  # DCGAN's k4 s2 p1
    (3, 5, 3, 1, 1, 4, 1, 0, 0, 1, 1),  # DCGAN's first layer, 1x1 -> 4x4
    (1, 3, 70, 5, 3, 3, 2, 1, 1, 1, 1),  # C_out over several BLOCK_N tiles, odd sizes, output_padding
    (2, 40, 6, 3, 3, 5, 3, 2, 2, 2, 2),  # groups, dilation, C_in over two BLOCK_K blocks
    (1, 1, 1, 9, 9, 1, 3, 0, 0, 1, 1),  # a kernel smaller than the stride: phases with no taps (bias only)
]
TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _act(act):
    return activations.lookup(act, 0.01, "test")


def reference(x, w, b, args, act=None):
    """float64 act(F.conv_transpose2d(...)) and its (count, mean, M2) per channel, independently of the op."""
    y = F.conv_transpose2d(x.double(), w.double(), None if b is None else b.double(), *args)
    a, slope = _act(act)
    y = {None: lambda t: t, "relu": torch.relu, "leaky_relu": lambda t: F.leaky_relu(t, slope), "tanh": torch.tanh,
         "sigmoid": torch.sigmoid}[a.name](y)
    mean = y.mean(dim=(0, 2, 3))
    var = y.var(dim=(0, 2, 3), unbiased=False)
    count = y.numel() / y.shape[1]
    return y, torch.stack([torch.full_like(mean, count), mean, var * count])


def _tensors(case, dtype, seed=0, bias=True):
    N, c_in, c_out, H, W, k, stride, padding, output_padding, dilation, groups = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, c_in, H, W, generator=g).to(dtype)
    w = (torch.randn(c_in, c_out // groups, k, k, generator=g) / (c_in * k) ** 0.5).to(dtype)
    b = torch.randn(c_out, generator=g).to(dtype) if bias else None
    return x, w, b, (stride, padding, output_padding, groups, dilation)


def _layout(x, layout):
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if layout == "strided":  # every other column of a wider tensor: no unit stride anywhere but C
        wide = torch.full((*x.shape[:3], 2 * x.shape[3]), float("nan"), dtype=x.dtype, device=x.device)
        wide[..., ::2] = x
        return wide[..., ::2]
    return x


def _assert_close_to(got, ref, x, w, b, args, dtype):
    """|got - ref| within the dtype's rounding of the output plus float32 sums, relative to the sum of |terms|."""
    scale = F.conv_transpose2d(x.double().abs(), w.double().abs(), None if b is None else b.double().abs(), *args)
    assert got.dtype == dtype and got.shape == ref.shape
    err = (got.double() - ref).abs()
    assert (err <= TOL[dtype] * (scale + ref.abs()) + 1e-30).all(), float((err / (scale + 1e-30)).max())


# ---------------------------------------------------------------- torch backend, float64: the semantics


def _grid():
    for stride, k, dilation in itertools.product((1, 2, 3), (1, 2, 3, 4, 5), (1, 2)):
        for padding in sorted({0, (dilation * (k - 1)) // 2}):
            yield (2, 3, 2, 3, 4, k, stride, padding, max(stride, dilation) - 1, dilation, 1)


@pytest.mark.parametrize("case", list(_grid()) + KERNEL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_torch_backend_is_conv_transpose2d(case):
    x, w, b, args = _tensors(case, torch.float64)
    y, stats = fastgan.conv_transpose2d(x, w, b, *args, activation="tanh", bn_stats=True, backend="torch")
    ref, ref_stats = reference(x, w, b, args, "tanh")
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(stats, ref_stats, rtol=1e-10, atol=1e-10)
    assert fastgan.conv_transpose2d(x, w, None, *args, backend="torch").shape == ref.shape


# ---------------------------------------------------------------- the Triton kernel under the interpreter


@pytest.mark.kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", KERNEL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_triton_kernel_against_float64(interpreter, case, dtype):
    x, w, b, args = _tensors(case, dtype)
    for act, bias, layout in ((None, None, "nchw"), (ACTS[hash(case) % 5], b, "channels_last"),
                              ("relu", b, "strided")):
        xl = _layout(x, layout)
        with torch.backends.cudnn.flags(allow_tf32=False):  # exact float32 products: the float64 bound
            y, stats = fastgan.conv_transpose2d(xl, w, bias, *args, activation=act, bn_stats=True,
                                                backend="triton")
        ref, _ = reference(x, w, bias, args, act)
        _assert_close_to(y, ref, x, w, bias, args, dtype)
        cl = layout == "channels_last" and not xl.is_contiguous()  # (a 1x1 x is both: NCHW out, as torch)
        assert y.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        # the statistics are those of y as stored (rounded to its dtype), in float32
        _, of_y = reference(y, torch.ones(y.shape[1], 1, 1, 1, dtype=torch.float64), None, (1, 0, 0, y.shape[1], 1))
        torch.testing.assert_close(stats.double(), of_y, rtol=1e-5, atol=1e-5 * float(of_y[2].abs().max()) + 1e-6)


@pytest.mark.kernels
def test_every_autotune_configuration_computes_the_same(interpreter):
    from fastgan.kernels import conv_transpose2d as kernels
    from fastgan.ops import conv_transpose2d_plan as plan

    case = (3, 20, 40, 5, 4, 4, 2, 1, 1, 1, 1)
    for dtype, prec in ((torch.float32, "ieee"), (torch.bfloat16, "ieee"), (torch.float32, "tf32")):
        x, w, b, args = _tensors(case, dtype)
        geom = plan.geometry(x.shape, w.shape, *args[:3], args[3], args[4])
        ref, ref_stats = reference(x, w, b, args, "relu")
        for config in kernels._space(dtype, prec):
            y = torch.full(ref.shape, float("nan"), dtype=dtype)
            stats = torch.empty(3, ref.shape[1])
            kernels.conv_transpose2d(x, w.permute(2, 3, 0, 1).contiguous(), b, geom, y, activations.RELU, 0.0, stats,
                                     "ieee", config)
            _assert_close_to(y, ref, x, w, b, args, dtype)
            torch.testing.assert_close(stats[0].double(), ref_stats[0])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_empty_batch_and_degenerate_values_follow_torch(backend):
    x, w, b, args = _tensors(KERNEL_CASES[0], torch.float32)
    empty = fastgan.conv_transpose2d(x[:0], w, b, *args, backend=backend)
    assert empty.shape == (0, *reference(x, w, b, args)[0].shape[1:])
    for value in (float("nan"), float("inf"), 1e30, 1e-30):
        xv = x.clone()
        xv[0, 0, 1, 1] = value
        got = fastgan.conv_transpose2d(xv, w, b, *args, activation="relu", backend=backend)
        ref = torch.relu(F.conv_transpose2d(xv.double(), w.double(), b.double(), *args))
        assert torch.equal(got.isnan(), ref.isnan()) and torch.equal(got.isinf(), ref.isinf())
        finite = ref.isfinite()
        torch.testing.assert_close(got.double()[finite], ref[finite], rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- gradients


def test_gradcheck_and_gradgradcheck():
    case = (2, 3, 4, 3, 2, 3, 2, 1, 1, 1, 1)
    x, w, b, args = _tensors(case, torch.float64)
    for act in ACTS:
        def f(x, w, b, act=act):
            return fastgan.conv_transpose2d(x, w, b, *args, activation=act, backend="torch")

        inputs = tuple(t.clone().requires_grad_() for t in (x, w, b))
        assert torch.autograd.gradcheck(f, inputs)
        if act not in ("relu", ("leaky_relu", 0.2)):  # piecewise linear: the second derivative is 0 almost surely
            assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradients_and_double_backward_match_torch(backend):
    x, w, b, args = _tensors((2, 6, 5, 4, 3, 4, 2, 1, 0, 1, 1), torch.float32)
    gy = torch.randn(reference(x, w, b, args)[0].shape)
    for act in ("tanh", ("leaky_relu", 0.2)):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        y = fastgan.conv_transpose2d(*leaves, *args, activation=act, backend=backend)
        gx = torch.autograd.grad((y * gy).sum(), leaves[0], create_graph=True)[0]
        # an R1-style penalty through the op (leaky_relu: gx depends on x and b only through a piecewise-constant
        # slope, so their second-order gradients are none, for torch too)
        second = torch.autograd.grad(gx.square().sum(), leaves, allow_unused=True, materialize_grads=True)
        rl = [t.double().requires_grad_() for t in (x, w, b)]
        a, slope = _act(act)
        yr = a.forward(F.conv_transpose2d(*rl, *args), slope)
        gxr = torch.autograd.grad((yr * gy.double()).sum(), rl[0], create_graph=True)[0]
        second_r = torch.autograd.grad(gxr.square().sum(), rl, allow_unused=True, materialize_grads=True)
        torch.testing.assert_close(gx.double(), gxr, rtol=1e-4, atol=1e-5)
        for s, r in zip(second, second_r):
            torch.testing.assert_close(s.double(), r, rtol=1e-4, atol=1e-5 * float(r.abs().max()) + 1e-12)


# ---------------------------------------------------------------- upsample_conv2d


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("k, groups", [(3, 1), (1, 1), (5, 1), (3, 2)])
def test_upsample_conv2d_is_upsample_then_conv2d(backend, k, groups):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 4, 5, 3, generator=g, requires_grad=True)
    w = (torch.randn(6, 4 // groups, k, k, generator=g) / k).requires_grad_()
    b = torch.randn(6, generator=g, requires_grad=True)
    with torch.backends.cudnn.flags(allow_tf32=False):
        y = fastgan.upsample_conv2d(x, w, b, groups, activation="relu", backend=backend)
    xr, wr, br = (t.detach().double().requires_grad_() for t in (x, w, b))
    ref = torch.relu(F.conv2d(F.interpolate(xr, scale_factor=2, mode="nearest"), wr, br, padding=k // 2,
                              groups=groups))
    torch.testing.assert_close(y.double(), ref, rtol=1e-5, atol=1e-5)
    gy = torch.randn(ref.shape, generator=g)
    got = torch.autograd.grad(y, (x, w, b), gy)
    exp = torch.autograd.grad(ref, (xr, wr, br), gy.double())
    for a, r in zip(got, exp):
        torch.testing.assert_close(a.double(), r, rtol=1e-4, atol=1e-5 * float(r.abs().max()))


def test_upsample_conv2d_refuses_what_it_does_not_compute():
    x = torch.randn(1, 4, 3, 3)
    with pytest.raises(ValueError, match="k odd"):
        fastgan.upsample_conv2d(x, torch.randn(2, 4, 4, 4))
    with pytest.raises(ValueError, match="C_in = 8"):
        fastgan.upsample_conv2d(x, torch.randn(2, 4, 3, 3), groups=2)


# ---------------------------------------------------------------- registration: opcheck, torch.compile


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    x, w, b, args = _tensors((2, 5, 4, 3, 2, 4, 2, 1, 1, 1, 1), torch.float32)
    stride, padding, output_padding, groups, dilation = args
    for act, bn_stats, xl in ((activations.NONE, False, x), (activations.TANH, True, _layout(x, "channels_last"))):
        torch.library.opcheck(torch.ops.fastgan.conv_transpose2d.default,
                              (xl.clone().requires_grad_(), w.clone().requires_grad_(), b, [stride] * 2,
                               [padding] * 2, [output_padding] * 2, groups, [dilation] * 2, act, 0.0, bn_stats,
                               backend))


def test_torch_compile_fullgraph_matches_eager():
    x, w, b, args = _tensors((2, 5, 4, 3, 3, 4, 2, 1, 0, 1, 1), torch.float32)

    def f(x, w, b):
        y, stats = fastgan.conv_transpose2d(x, w, b, *args, activation="leaky_relu", bn_stats=True, backend="torch")
        return fastgan.conditional_batch_norm(y, None, None, training=True, activation="relu", stats=stats,
                                              backend="torch")

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    outs = []
    for fn in (f, compiled):
        leaves = [t.clone().requires_grad_() for t in (x, w, b)]
        y = fn(*leaves)
        y.square().sum().backward()
        outs.append([y] + [t.grad for t in leaves])
    for a, b_ in zip(*outs):
        torch.testing.assert_close(a, b_)


def test_autocast_casts_like_f_conv_transpose2d():
    x, w, b, args = _tensors(KERNEL_CASES[0], torch.float32)
    w2 = torch.randn(4, 3, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = F.conv_transpose2d(x, w, b, *args)
        got = fastgan.conv_transpose2d(x, w, b, *args, backend="torch")
        # the next layer: a bfloat16 activation meets float32 weights, as in any generator under autocast
        ref2 = F.conv_transpose2d(ref, w2, None, 2, 1)
        got2 = fastgan.conv_transpose2d(got, w2, None, 2, 1, backend="torch")
        up = fastgan.upsample_conv2d(got, torch.randn(2, 4, 3, 3), backend="torch")
        # float64 is left alone, as autocast leaves it
        f64 = fastgan.conv_transpose2d(x.double(), w.double(), None, *args, backend="torch")
    assert got.dtype == ref.dtype == got2.dtype == ref2.dtype == up.dtype == torch.bfloat16
    assert f64.dtype == F.conv_transpose2d(x.double(), w.double(), None, *args).dtype == torch.float64
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(got2, ref2)


def test_compile_with_dynamic_shapes_and_torch_func():
    torch.manual_seed(0)
    mod = fastgan.nn.ConvTranspose2d(4, 3, 4, 2, 1, activation="tanh")
    block = fastgan.nn.ConvTransposeBNAct(4, 3, 4, 2, 1)
    ref = torch.nn.Sequential(torch.nn.ConvTranspose2d(4, 3, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(3),
                              torch.nn.ReLU())
    ref.load_state_dict(block.state_dict())
    f = torch.compile(mod, dynamic=True, fullgraph=True, backend="aot_eager")
    fb = torch.compile(block, dynamic=True, fullgraph=True, backend="aot_eager")
    for n in (2, 3, 5):  # one graph for every batch size
        x = torch.randn(n, 4, 5, 6)
        torch.testing.assert_close(f(x), torch.tanh(F.conv_transpose2d(x, mod.weight, mod.bias, 2, 1)))
        torch.testing.assert_close(fb(x), ref(x), rtol=1e-5, atol=1e-5)
    # torch.func transforms take the op's autograd formula
    x, w = torch.randn(2, 4, 3, 3), torch.randn(4, 3, 4, 4)
    grad = torch.func.grad(lambda w: fastgan.conv_transpose2d(x, w, None, 2, 1, activation="sigmoid").sum())(w)
    torch.testing.assert_close(grad, torch.func.grad(lambda w: torch.sigmoid(F.conv_transpose2d(x, w, None, 2,
                                                                                                 1)).sum())(w))


def test_arguments_as_f_conv_transpose2d_takes_them():
    np = pytest.importorskip("numpy")
    x, w = torch.randn(3, 4, 5), torch.randn(3, 2, 4, 4)  # unbatched x
    ref = F.conv_transpose2d(x, w, None, 2, 1)
    torch.testing.assert_close(fastgan.conv_transpose2d(x, w, None, (2,), [1], backend="torch"), ref)
    torch.testing.assert_close(fastgan.conv_transpose2d(x, w, None, np.int64(2), 1, groups=np.int32(1),
                                                        backend="torch"), ref)
    with pytest.raises(TypeError, match="stride must be an int"):
        fastgan.conv_transpose2d(x, w, None, True)


def test_output_layout_is_the_one_torch_picks():
    w = torch.randn(100, 8, 4, 4)
    for z in (torch.randn(4, 100, 1, 1), torch.randn(4, 100, 1, 1).to(memory_format=torch.channels_last)):
        for weight in (w, w.to(memory_format=torch.channels_last)):
            ref = F.conv_transpose2d(z, weight)
            got = fastgan.conv_transpose2d(z, weight, backend="torch")
            assert got.stride() == ref.stride(), (z.stride(), weight.stride())


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(output_padding=2, stride=2), ValueError, "output_padding"),
    (dict(padding=5), ValueError, "empty output"),
    (dict(groups=2), ValueError, "not divisible by groups"),
    (dict(weight=torch.randn(4, 2, 3, 3)), ValueError, r"weight has 4 input channels \(dim 0\) but x has 3"),
    (dict(weight=torch.randn(3, 2, 3, 3, dtype=torch.float64)), TypeError, "weight has dtype torch.float64"),
    (dict(weight=torch.randn(3, 2, 3, 3, device="meta")), ValueError, "weight is on meta"),
    (dict(bias=torch.randn(3)), ValueError, r"bias has shape \(3,\), expected \(2,\)"),
    (dict(x=torch.randn(3, 4)), ValueError, r"x must have shape \(N, C_in, H, W\)"),
    (dict(x=torch.ones(1, 3, 4, 4, dtype=torch.int64)), TypeError, "x has dtype torch.int64"),
    (dict(activation="gelu"), ValueError, "activation must be one of"),
    (dict(backend="cuda"), fastgan.BackendUnavailable, "does not implement conv_transpose2d.*backend='auto'"),
])
def test_bad_input_raises_a_clear_error(kwargs, error, match):
    args = dict(x=torch.randn(1, 3, 4, 4), weight=torch.randn(3, 2, 3, 3)) | kwargs
    with pytest.raises(error, match=match):
        fastgan.conv_transpose2d(**args)


def test_check_finite_names_the_tensor():
    x, w = torch.randn(1, 3, 4, 4), torch.randn(3, 2, 3, 3)
    w[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite values .* in weight"):
        fastgan.conv_transpose2d(x, w, check_finite=True)


def test_stats_are_refused_where_they_cannot_be_x_statistics():
    y = torch.randn(2, 3, 4, 4)
    with pytest.raises(ValueError, match=r"stats must be a \(3, 3\) float32"):
        fastgan.conditional_batch_norm(y, stats=torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"stats must be a \(3, 3\) float32"):
        fastgan.conditional_batch_norm(y, stats=torch.zeros(3, 3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="in eval"):
        fastgan.conditional_batch_norm(y, None, None, torch.zeros(3), torch.ones(3), training=False,
                                       stats=torch.zeros(3, 3))
    bn = fastgan.nn.BatchNorm2d(3).eval()
    with pytest.raises(ValueError, match="in eval"):
        bn(y, stats=torch.zeros(3, 3))


def test_empty_batch_in_training_is_empty_as_torch():
    rm, rv = torch.zeros(3), torch.ones(3)
    x = torch.randn(0, 3, 4, 4)
    ref = F.batch_norm(x, rm.clone(), rv.clone(), None, None, True)
    got = fastgan.conditional_batch_norm(x, None, None, rm, rv, training=True)
    assert got.shape == ref.shape and torch.equal(rm, torch.zeros(3)) and torch.equal(rv, torch.ones(3))
    assert fastgan.nn.ConvTransposeBNAct(2, 3, 4, 2, 1)(torch.randn(0, 2, 3, 3)).shape == (0, 3, 6, 6)


def test_upsample_conv2d_keeps_infinite_weights_infinite():
    x = torch.rand(1, 2, 3, 3) + 0.5  # positive: +inf times x stays +inf
    w = torch.rand(3, 2, 3, 3)
    w[0, 0, 1, 1] = float("inf")
    ref = F.conv2d(F.interpolate(x, scale_factor=2), w, padding=1)
    got = fastgan.upsample_conv2d(x, w, backend="torch")
    assert torch.equal(got.isinf(), ref.isinf()) and not got.isnan().any()


# ---------------------------------------------------------------- on a GPU


@pytest.fixture
def default_config(monkeypatch):
    """No autotuning (each bucket would compile and time every configuration): the default configuration."""
    from fastgan.kernels import conv_transpose2d as kernels

    monkeypatch.setattr(kernels, "AUTOTUNE", False)


@pytest.mark.gpu
@pytest.mark.usefixtures("default_config")
@pytest.mark.parametrize("case", KERNEL_CASES + [(128, 256, 128, 8, 8, 4, 2, 1, 0, 1, 1),
                                                 (16, 64, 3, 32, 32, 4, 2, 1, 0, 1, 1)],
                         ids=lambda c: "x".join(map(str, c)))
def test_gpu_kernel_matches_float64(case):
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x, w, b, args = (t.cuda() if isinstance(t, torch.Tensor) else t for t in _tensors(case, dtype))
        for act, layout in ((None, "nchw"), ("tanh", "channels_last"), ("relu", "strided")):
            with torch.backends.cudnn.flags(allow_tf32=False):
                y, stats = fastgan.conv_transpose2d(_layout(x, layout), w, b, *args, activation=act, bn_stats=True,
                                                    backend="triton")
            ref, ref_stats = reference(x, w, b, args, act)
            _assert_close_to(y, ref, x, w, b, args, dtype)
            assert torch.equal(stats[0].cpu().double(), ref_stats[0].cpu())


@pytest.mark.gpu
def test_gpu_block_is_deterministic_and_compiles():
    torch.manual_seed(0)
    block = fastgan.nn.ConvTransposeBNAct(64, 32, 4, 2, 1).cuda()
    x = torch.randn(32, 64, 8, 8, device="cuda")
    runs = []
    for _ in range(2):
        y = block(x)
        runs.append(torch.autograd.grad(y.square().sum(), block[0].weight)[0])
    assert torch.equal(runs[0], runs[1])
    f = torch.compile(lambda x: fastgan.conv_transpose2d(x, block[0].weight, None, 2, 1, activation="relu",
                                                         backend="triton"), fullgraph=True)
    torch.testing.assert_close(f(x), torch.relu(F.conv_transpose2d(x, block[0].weight, None, 2, 1)), rtol=2e-3,
                               atol=2e-3)



@pytest.mark.gpu
def test_gpu_autotuned_configuration_computes_the_same_and_is_cached():
    from fastgan.kernels import conv_transpose2d as kernels

    x, w, b, args = (t.cuda() if isinstance(t, torch.Tensor) else t
                     for t in _tensors((64, 128, 64, 8, 8, 4, 2, 1, 0, 1, 1), torch.bfloat16))
    tuned_before = len(kernels._TUNED)
    y, stats = fastgan.conv_transpose2d(x, w, b, *args, activation="relu", bn_stats=True, backend="triton")
    assert len(kernels._TUNED) == tuned_before + 1
    fastgan.conv_transpose2d(x, w, b, *args, activation="relu", bn_stats=True, backend="triton")
    assert len(kernels._TUNED) == tuned_before + 1  # the bucket's choice is reused
    ref, _ = reference(x, w, b, args, "relu")
    _assert_close_to(y, ref, x, w, b, args, torch.bfloat16)
    torch.testing.assert_close(stats[1].double(), y.double().mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-4)
