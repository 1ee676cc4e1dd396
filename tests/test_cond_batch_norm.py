"""Conditional batch norm op: every backend against F.batch_norm + affine + activation in float64."""
import pytest
import torch
import torch.nn.functional as F
from conftest import INTERPRETING

import fastgan
from fastgan.ops import cond_batch_norm as cbn_mod
from fastgan.ops.cond_batch_norm import conditional_batch_norm

KERNEL_BACKENDS = [pytest.param("triton", marks=pytest.mark.kernels)]
CPU_BACKENDS = ["torch"] + (KERNEL_BACKENDS if INTERPRETING else [])


def reference(x, weight, bias, rm, rv, training, act=None, slope=0.01, eps=1e-5, momentum=0.1):
    """F.batch_norm in float64, then the per-sample or per-channel affine, then the activation."""
    y = F.batch_norm(x.double(), rm, rv, None, None, training, momentum, eps)
    shape = lambda t: t.double().reshape(t.shape[0] if t.dim() == 2 else 1, -1, *([1] * (x.dim() - 2)))  # noqa: E731
    if weight is not None:
        y = y * shape(weight)
    if bias is not None:
        y = y + shape(bias)
    if act == "relu":
        y = F.relu(y)
    elif act == "leaky_relu":
        y = F.leaky_relu(y, slope)
    return y


def _layout(x, kind):
    if kind == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    if kind == "strided":  # neither layout: every other column of a wider tensor
        wide = torch.cat([x, x], dim=-1).contiguous()
        return wide[..., ::2].copy_(x)
    return x


def _case(shape, per_sample, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    N, C = shape[:2]
    x = (torch.randn(shape, generator=g) * 1.7 + 0.6).to(dtype)
    # per_sample: True for (N, C) weight and bias, "weight" or "bias" for only that one, False for neither
    w = torch.randn((N, C) if per_sample in (True, "weight") else (C,), generator=g) * 0.5 + 1
    b = torch.randn((N, C) if per_sample in (True, "bias") else (C,), generator=g) * 0.3
    rm, rv = torch.randn(C, generator=g) * 0.1, torch.rand(C, generator=g) + 0.5
    return x, w, b, rm, rv


def _run(backend, x, w, b, rm, rv, training, act, gy, slope=0.01):
    xx, ww, bb = (t.clone().requires_grad_() for t in (x, w, b))
    y = conditional_batch_norm(xx, ww, bb, rm, rv, training, activation=act, negative_slope=slope, backend=backend)
    y.backward(gy)
    return y, xx.grad, ww.grad, bb.grad


def _check_against_reference(backend, shape, layout, per_sample, act, training, tol=2e-5):
    x, w, b, rm, rv = _case(shape, per_sample)
    x = _layout(x, layout)
    x_before = x.clone()
    gy = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    rm_ref, rv_ref = rm.double(), rv.double()
    xr, wr, br = (t.double().requires_grad_() for t in (x, w, b))
    yr = reference(xr, wr, br, rm_ref, rv_ref, training, act, slope=0.2)
    yr.backward(gy.double())
    y, dx, dw, db = _run(backend, x, w, b, rm, rv, training, act, gy, slope=0.2)
    label = f"{backend} {shape} {layout} per_sample={per_sample} act={act} training={training}"
    for name, got, want in (("y", y, yr), ("dx", dx, xr.grad), ("dweight", dw, wr.grad), ("dbias", db, br.grad),
                            ("running_mean", rm, rm_ref), ("running_var", rv, rv_ref)):
        assert got.shape == want.shape, f"{label}: {name} shape {tuple(got.shape)} != {tuple(want.shape)}"
        err = (got.double() - want).abs().max().item()
        scale = want.abs().max().item() + 1e-3
        assert err <= tol * max(1.0, scale), f"{label}: {name} off by {err:.3g} (scale {scale:.3g})"
    expected_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    assert y.is_contiguous(memory_format=expected_format), label
    assert torch.equal(x, x_before), f"{label}: the input was modified"


SHAPES = [(3, 5, 7, 3), (2, 7, 1, 1), (5, 16, 2, 2), (1, 3, 5, 4), (4, 3, 8, 8)]


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_training_matches_reference(backend, shape):
    for layout in ("nchw", "channels_last", "strided"):
        for per_sample, act in ((False, None), (True, "relu"), (True, "leaky_relu"), (False, "relu"),
                                ("weight", "relu"), ("bias", None)):
            _check_against_reference(backend, shape, layout, per_sample, act, training=True)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 5, 3, 2), (6, 4, 4, 4)], ids=lambda s: "x".join(map(str, s)))
def test_eval_matches_reference(backend, shape):
    for layout in ("nchw", "channels_last"):
        for per_sample, act in ((False, None), (True, "leaky_relu"), (True, "relu")):
            _check_against_reference(backend, shape, layout, per_sample, act, training=False)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_no_affine_no_running_stats_and_other_ranks(backend):
    for shape in ((6, 5), (4, 3, 10), (3, 4, 2, 3, 2)):
        x = torch.randn(shape, dtype=torch.float32) * 3 + 1
        xx = x.clone().requires_grad_()
        y = conditional_batch_norm(xx, backend=backend)
        xr = x.double().requires_grad_()
        yr = F.batch_norm(xr, None, None, training=True)
        gy = torch.randn(shape)
        y.backward(gy)
        yr.backward(gy.double())
        assert (y.double() - yr).abs().max() < 1e-5, shape
        assert (xx.grad.double() - xr.grad).abs().max() < 1e-5, shape


@pytest.mark.kernels
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_triton_matches_reference(interpreter, dtype):
    x, w, b, rm, rv = _case((4, 6, 5, 4), per_sample=True, dtype=dtype)
    gy = torch.randn(x.shape).to(dtype)
    rm_ref, rv_ref = rm.double(), rv.double()
    xr, wr, br = (t.double().requires_grad_() for t in (x, w, b))
    yr = reference(xr, wr, br, rm_ref, rv_ref, True, "relu")
    yr.backward(gy.double())
    y, dx, dw, db = _run("triton", x, w, b, rm, rv, True, "relu", gy)
    assert y.dtype == dtype and dx.dtype == dtype and dw.dtype == torch.float32
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    for got, want in ((y, yr), (dx, xr.grad), (dw, wr.grad), (db, br.grad), (rm, rm_ref), (rv, rv_ref)):
        assert (got.double() - want).abs().max() <= tol * (1 + want.abs().max())


@pytest.mark.kernels
def test_triton_is_deterministic_and_statistics_are_float32(interpreter):
    x, w, b, rm, rv = _case((5, 3, 6, 6), per_sample=True)
    gy = torch.randn(x.shape)
    outs = [_run("triton", x, w, b, rm.clone(), rv.clone(), True, "relu", gy) for _ in range(2)]
    for a, b_ in zip(*outs):
        assert torch.equal(a, b_)


def test_gradcheck_and_gradgradcheck_float64():
    g = torch.Generator().manual_seed(3)
    for training in (True, False):
        for per_sample, act in ((True, None), (False, "leaky_relu")):
            x = torch.randn(3, 2, 3, 2, generator=g, dtype=torch.float64, requires_grad=True)
            pshape = (3, 2) if per_sample else (2,)
            w = (torch.rand(pshape, generator=g, dtype=torch.float64) + 0.5).requires_grad_()
            b = torch.randn(pshape, generator=g, dtype=torch.float64, requires_grad=True)
            rm = torch.zeros(2, dtype=torch.float64)
            rv = torch.ones(2, dtype=torch.float64)

            def f(x, w, b):
                return conditional_batch_norm(x, w, b, rm.clone(), rv.clone(), training, activation=act,
                                              negative_slope=0.3, backend="torch")

            assert torch.autograd.gradcheck(f, (x, w, b))
            assert torch.autograd.gradgradcheck(f, (x, w, b))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_double_backward_matches_reference_r1_penalty(backend):
    """R1-style: d/dparams of |d sum(D(x) * v) / dx|^2 with a CBN inside D, against float64 PyTorch."""
    x, w, b, rm, rv = _case((4, 3, 3, 3), per_sample=True, seed=5)
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(6))

    def penalty(fn, x, w, b):
        x = x.clone().requires_grad_()
        out = (fn(x, w, b) * v.to(x.dtype)).sum()
        (gx,) = torch.autograd.grad(out, x, create_graph=True)
        return gx.square().sum()

    wf, bf = w.clone().requires_grad_(), b.clone().requires_grad_()
    p = penalty(lambda x, w, b: conditional_batch_norm(x, w, b, None, None, True, activation="leaky_relu",
                                                       negative_slope=0.2, backend=backend), x, wf, bf)
    # bias moves dx only through the activation's piecewise-constant slope: a zero gradient (or none)
    dw, db = torch.autograd.grad(p, (wf, bf), allow_unused=True)
    wr, br = w.double().requires_grad_(), b.double().requires_grad_()
    pr = penalty(lambda x, w, b: reference(x, w, b, None, None, True, "leaky_relu", 0.2), x.double(), wr, br)
    dwr, dbr = torch.autograd.grad(pr, (wr, br), allow_unused=True)
    assert abs(p.item() - pr.item()) <= 1e-4 * abs(pr.item())
    assert (dw.double() - dwr).abs().max() <= 1e-4 * dwr.abs().max()
    assert db is None or not db.any()
    assert dbr is None or not dbr.any()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck_registered_ops(backend):
    x, w, b, rm, rv = _case((3, 4, 3, 2), per_sample=True)
    for training in (True, False):
        # training: the batch's (mean, invstd); eval: the running (mean, var)
        batch_stats = (torch.ops.fastgan.cond_batch_norm_stats(x, rm.clone(), rv.clone(), 0.1, 1e-5, backend)
                       if training else None)
        running_stats = None if training else torch.stack([rm, rv])
        args = (x.requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_(), batch_stats,
                running_stats, 1e-5, 1, 0.0, backend)
        torch.library.opcheck(torch.ops.fastgan.cond_batch_norm.default, args)
        x = x.detach()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.fastgan.cond_batch_norm_stats.default, (x_cl, rm.clone(), rv.clone(), 0.1, 1e-5,
                                                                            backend))
    torch.library.opcheck(torch.ops.fastgan.cond_batch_norm_backward.default,
                          (torch.randn_like(x_cl), x_cl, w, None, torch.stack([rm, rv + 1]), None, 1e-5, 2, 0.2,
                           backend))
    torch.library.opcheck(torch.ops.fastgan.cond_batch_norm_backward.default,
                          (torch.randn_like(x), x, w[0], b[0], torch.stack([rm, rv + 1]), None, 1e-5, 1, 0.0,
                           backend))
    torch.library.opcheck(torch.ops.fastgan.cond_batch_norm_backward.default,
                          (torch.randn_like(x), x, w[0], b[0], None, torch.stack([rm, rv + 1]), 1e-5, 1, 0.0,
                           backend))


def test_torch_compile_fullgraph_matches_eager():
    x, w, b, rm, rv = _case((4, 3, 5, 5), per_sample=True)
    gy = torch.randn(x.shape)

    def f(x, w, b, rm, rv):
        return conditional_batch_norm(x, w, b, rm, rv, True, activation="relu", backend="torch")

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    outs = []
    for fn in (f, compiled):
        rm_, rv_ = rm.clone(), rv.clone()
        y, dx, dw, db = (lambda xx, ww, bb: (fn(xx, ww, bb, rm_, rv_), xx, ww, bb))(
            *(t.clone().requires_grad_() for t in (x, w, b)))
        y.backward(gy)
        outs.append((y, dx.grad, dw.grad, db.grad, rm_, rv_))
    for a, b_ in zip(*outs):
        torch.testing.assert_close(a, b_)


def test_bad_input_raises_clear_errors():
    x = torch.randn(4, 3, 2, 2)
    with pytest.raises(ValueError, match=r"weight has shape \(4,\)"):
        conditional_batch_norm(x, torch.ones(4))
    with pytest.raises(ValueError, match=r"expected \(3,\) per channel or \(4, 3\) per sample"):
        conditional_batch_norm(x, None, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"running_mean has shape \(5,\)"):
        conditional_batch_norm(x, None, None, torch.zeros(5), torch.ones(5))
    with pytest.raises(ValueError, match="both running_mean and running_var"):
        conditional_batch_norm(x, None, None, torch.zeros(3), None)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        conditional_batch_norm(torch.randn(1, 3, 1, 1))
    with pytest.raises(ValueError, match="needed when training=False"):
        conditional_batch_norm(x, training=False)
    with pytest.raises(TypeError, match="dtype torch.int64"):
        conditional_batch_norm(torch.ones(4, 3, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        conditional_batch_norm(torch.randn(5))
    with pytest.raises(ValueError, match="activation must be"):
        conditional_batch_norm(x, activation="gelu")
    with pytest.raises(ValueError, match="momentum must be"):
        conditional_batch_norm(x, momentum=None)
    bad = x.clone()
    bad[1, 2, 0, 1] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values \(NaN or Inf\) in x"):
        conditional_batch_norm(bad, check_finite=True)
    with pytest.raises(RuntimeError, match="torch.distributed to be initialised"):
        conditional_batch_norm(x, sync=True)
    with pytest.raises(fastgan.BackendUnavailable, match="cuda"):
        conditional_batch_norm(x, backend="cuda")


def test_registry_and_public_name():
    assert fastgan.conditional_batch_norm is conditional_batch_norm
    from fastgan import _backend

    assert _backend._OPS[cbn_mod.OP] == ("torch", "triton", "cuda")


# ---------------------------------------------------------------- on a GPU


def _gpu_backends():
    from fastgan import _backend

    return [b for b in ("cuda", "triton") if _backend.unavailable_reason(b, torch.device("cuda"), torch.float32,
                                                                         cbn_mod.OP) is None]


# (dtype, per_sample, activation, training): every flag in float32, one training case per 16-bit dtype (each
# combination is a Triton compilation: the list is kept short for bench/device_check.sh's time budget)
GPU_CONFIGS = [(torch.float32, True, "relu", True), (torch.float32, False, None, True),
               (torch.float32, "weight", "leaky_relu", True), (torch.float32, True, "leaky_relu", False),
               (torch.bfloat16, True, "relu", True), (torch.float16, False, "relu", True)]


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(3, 5, 7, 3), (128, 512, 4, 4), (8, 96, 33, 31)],
                         ids=lambda s: "x".join(map(str, s)))
def test_gpu_backends_match_reference(shape):
    backends = _gpu_backends()
    assert backends, "no kernel backend available on this GPU"
    for backend in backends:
        for layout in ("nchw", "channels_last"):
            for dtype, per_sample, act, training in GPU_CONFIGS:
                x, w, b, rm, rv = (t.cuda() for t in _case(shape, per_sample, dtype=dtype))
                x = _layout(x, layout)
                gy = torch.randn(shape, device="cuda").to(dtype)
                rm_ref, rv_ref = rm.double(), rv.double()
                xr, wr, br = (t.double().requires_grad_() for t in (x, w, b))
                yr = reference(xr, wr, br, rm_ref, rv_ref, training, act, slope=0.2)
                yr.backward(gy.double())
                y, dx, dw, db = _run(backend, x, w, b, rm, rv, training, act, gy, slope=0.2)
                tol = {torch.float32: 1e-4, torch.float16: 4e-3, torch.bfloat16: 3e-2}[dtype]
                label = f"{backend} {dtype} {layout} per_sample={per_sample} act={act} training={training}"
                for name, got, want in (("y", y, yr), ("dx", dx, xr.grad), ("dw", dw, wr.grad), ("db", db, br.grad),
                                        ("rm", rm, rm_ref), ("rv", rv, rv_ref)):
                    err = ((got.double() - want).abs().max() / (1 + want.abs().max())).item()
                    assert err <= tol, f"{label}: {name} off by {err:.3g}"


@pytest.mark.gpu
def test_gpu_backends_are_deterministic():
    for backend in _gpu_backends():
        x, w, b, rm, rv = (t.cuda() for t in _case((64, 96, 32, 32), True))
        gy = torch.randn(x.shape, device="cuda")
        runs = [_run(backend, x, w, b, rm.clone(), rv.clone(), True, "relu", gy) for _ in range(2)]
        for a, b_ in zip(*runs):
            assert torch.equal(a, b_), backend


@pytest.mark.gpu
def test_gpu_double_backward_and_compile():
    x, w, b, rm, rv = (t.cuda() for t in _case((8, 16, 8, 8), True))
    for backend in _gpu_backends():
        xx = x.clone().requires_grad_()
        y = conditional_batch_norm(xx, w, b, None, None, True, activation="relu", backend=backend)
        (gx,) = torch.autograd.grad(y.square().sum(), xx, create_graph=True)
        gx.square().sum().backward()
        assert torch.isfinite(xx.grad).all()
        f = torch.compile(lambda x: conditional_batch_norm(x, w, b, rm, rv, True, activation="relu",
                                                           backend=backend), fullgraph=True)
        torch.testing.assert_close(f(x), conditional_batch_norm(x, w, b, rm.clone(), rv.clone(), True,
                                                                activation="relu", backend=backend),
                                   rtol=1e-5, atol=1e-5)



@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_nan_input_propagates_through_relu_like_pytorch(backend):
    x = torch.randn(3, 2, 2, 2)
    x[1, 0, 1, 1] = float("nan")
    y = conditional_batch_norm(x, activation="relu", backend=backend)
    expected = F.relu(F.batch_norm(x, None, None, training=True))
    assert torch.equal(torch.isnan(y), torch.isnan(expected)) and torch.isnan(y[:, 0]).all()


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_relu_gradient_at_nan_passes_like_pytorch(backend):
    x = torch.randn(3, 2, 2, 2)
    x[1, 0, 1, 1] = float("nan")  # channel 0 normalises to NaN everywhere
    w = torch.ones(2)
    eval_stats = (torch.zeros(2), torch.ones(2))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    gy = torch.randn(x.shape)
    conditional_batch_norm(xa, w, None, *eval_stats, training=False, activation="relu", backend=backend).backward(gy)
    F.relu(F.batch_norm(xb, *eval_stats, w, None, training=False)).backward(gy)
    assert torch.equal(torch.isnan(xa.grad), torch.isnan(xb.grad))
    torch.testing.assert_close(xa.grad.nan_to_num(), xb.grad.nan_to_num())


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("scale", [1e19, 1e30])
def test_huge_inputs_give_the_torch_reference(backend, dtype, scale):
    """Squared deviations overflow to inf: the variance is inf, y is 0 (invstd 0), as the reference gives; the
    Chan merge must not turn inf * 0 into NaN."""
    x, w, b, rm, rv = _case((3, 4, 5, 7), False, seed=3)
    x = (x * scale).to(dtype)
    rm_ref, rv_ref = rm.clone(), rv.clone()
    ref = conditional_batch_norm(x, w, b, rm_ref, rv_ref, True, backend="torch")
    y = conditional_batch_norm(x, w, b, rm, rv, True, backend=backend)
    assert torch.isinf(rv_ref).all()
    torch.testing.assert_close(y, ref, equal_nan=False)
    torch.testing.assert_close(rv, rv_ref)
    torch.testing.assert_close(rm, rm_ref, rtol=1e-5, atol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("shape", [(0, 3, 4, 4), (2, 3, 0, 0)])
def test_empty_batches_in_eval_give_empty_outputs_like_pytorch(backend, shape):
    x = torch.randn(shape, requires_grad=True)
    C = shape[1]
    rm, rv = torch.zeros(C), torch.ones(C)
    w = torch.ones(C, requires_grad=True)
    expected = F.batch_norm(x, rm, rv, w, None, False)
    y = conditional_batch_norm(x, w, None, rm, rv, False, backend=backend)
    assert y.shape == expected.shape == shape
    y.sum().backward()
    assert x.grad.shape == shape and not w.grad.any()
