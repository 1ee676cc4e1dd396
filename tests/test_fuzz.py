"""Property-based tests across backends: hypothesis draws shapes (0, 1, primes, several tiles), dtypes, layouts and
strides, and values (ordinary, zero, constant, +-1e+-30, NaN/Inf, with and without check_finite), and every kernel
backend (Triton under the interpreter without a GPU, Triton and CUDA with one) must give the torch reference's
result within the dtype's tolerance, or raise the same error.

Profiles (``FASTGAN_FUZZ=ci|long``, see conftest.py): ``ci`` (the default) draws a fixed, derandomised set of examples
in well under two minutes; ``long`` draws many more, to run by hand:

    FASTGAN_FUZZ=long python -m pytest tests/test_fuzz.py
"""
import math

import pytest
import torch
import torch.nn.functional as F

hypothesis = pytest.importorskip("hypothesis")
from conftest import INTERPRETING  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import note as _hypothesis_note  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastgan  # noqa: E402
from fastgan.ops import spectral_norm_plan as plan  # noqa: E402

HAS_CUDA = torch.cuda.is_available()
KERNEL_BACKENDS = (["triton", "cuda"] if HAS_CUDA else []) + (["triton"] if INTERPRETING and not HAS_CUDA else [])
DEVICE = "cuda" if HAS_CUDA else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
SIZES = st.sampled_from([1, 2, 3, 5, 7, 13, 17, 40])  # 1, primes, and (with small tiles) several tiles
# How a tensor's values are drawn: ordinary, degenerate, or non-finite.
REGIMES = ["normal", "zero", "constant", "tiny", "huge", "nan", "inf"]
ROUNDING = {torch.float32: 2.0 ** -24, torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}  # unit roundoff

pytestmark = [pytest.mark.kernels, pytest.mark.usefixtures("small_tiles_for_module"),
              pytest.mark.skipif(not KERNEL_BACKENDS, reason="no kernel backend here (needs TRITON_INTERPRET=1 or a "
                                                             "GPU)")]


def note(message):
    """hypothesis.note inside a drawn example (nothing outside one: the assertion messages say what differs)."""
    try:
        _hypothesis_note(message)
    except hypothesis.errors.InvalidArgument:
        pass


def _values(draw, shape, dtype, regime, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if regime == "zero":
        x.zero_()
    elif regime == "constant":
        x.fill_(draw(st.sampled_from([0.5, -3.0, 1e4])))
    elif regime == "tiny":
        x *= 1e-30
    elif regime == "huge":
        x *= 1e30
    elif regime in ("nan", "inf") and x.numel():
        x.view(-1)[draw(st.integers(0, x.numel() - 1))] = float("nan") if regime == "nan" else -float("inf")
    return x.to(dtype)


def _laid_out(draw, x):
    """x as stored: contiguous, transposed in memory (last two dims), or a strided view into a wider buffer."""
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided"]))
    if layout == "transposed" and x.dim() >= 2:
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    if layout == "strided":
        wide = torch.empty(*x.shape[:-1], 2 * x.shape[-1] + 1, dtype=x.dtype)
        view = wide[..., 1::2]
        view.copy_(x)
        return view
    return x


def _image_layout(draw, x):
    """An (N, C, H, W) x as stored: NCHW, channels_last, or one of _laid_out's layouts."""
    layout = draw(st.sampled_from(["nchw", "channels_last", "strided"]))
    if layout == "channels_last":
        return x.contiguous(memory_format=torch.channels_last)
    return _laid_out(draw, x) if layout == "strided" else x


def _outcome(fn):
    """('ok', result) or ('error', type, message)."""
    try:
        return ("ok", fn())
    except (ValueError, TypeError, IndexError, RuntimeError) as e:
        return ("error", type(e).__name__, str(e))


def _close(name, got, ref, rtol, atol=0.0):
    """Within tolerance where the reference is finite; non-finite exactly where it is (NaN where it is NaN)."""
    got, ref = got.double().cpu(), ref.double().cpu()
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    fin = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(got), fin), f"{name}: finite in one backend, not in the other"
    assert torch.equal(torch.isnan(got), torch.isnan(ref)), f"{name}: NaN in one backend, not in the other"
    assert torch.equal(got[~fin & ~torch.isnan(ref)], ref[~fin & ~torch.isnan(ref)]), f"{name}: infinities differ"
    if fin.any():
        scale = ref[fin].abs().max()
        err = (got[fin] - ref[fin]).abs().max()
        assert err <= rtol * scale + atol, f"{name}: max error {float(err):.3g} > {rtol:.3g} x {float(scale):.3g}"


def _same(kernel, reference, compare):
    note(f"reference: {reference[0]}{'' if reference[0] == 'ok' else ': ' + reference[2]}")
    note(f"kernel: {kernel[0]}{'' if kernel[0] == 'ok' else ': ' + kernel[2]}")
    raised = kernel[1:] if kernel[0] == "error" else reference[1:]
    assert kernel[0] == reference[0], f"one backend raised, the other did not: {raised}"
    if reference[0] == "error":
        assert kernel[1:] == reference[1:]
    else:
        compare(kernel[1], reference[1])


# ---------------------------------------------------------------- spectral norm


@st.composite
def sn_groups(draw):
    dtype = draw(st.sampled_from(DTYPES))
    group = []
    for i in range(draw(st.integers(1, 3))):
        ndim = draw(st.integers(2, 4))
        shape = tuple(draw(SIZES) if k < 2 else draw(st.sampled_from([1, 2, 3])) for k in range(ndim))
        if draw(st.integers(0, 9)) == 0:  # now and then an empty weight
            shape = (0,) + shape[1:]
        dim = draw(st.integers(0, min(ndim - 1, 1)))
        regime = draw(st.sampled_from(REGIMES))
        w = _laid_out(draw, _values(draw, shape, dtype, regime, seed=draw(st.integers(0, 2**16))))
        _, h, _, wc = plan.matrix_geometry(shape, dim)
        g = torch.Generator().manual_seed(i)
        u, v = F.normalize(torch.randn(h, generator=g), dim=0), F.normalize(torch.randn(wc, generator=g), dim=0)
        group.append((w, u, v, dim, regime))
    options = dict(n_power_iterations=draw(st.integers(0, 2)), u_first=draw(st.booleans()),
                   check_finite=draw(st.booleans()))
    return dtype, group, options


def _sn_call(backend, dtype, group, options, grad_seed):
    device = group[0][0].device if backend == "cuda-emulated" else DEVICE
    backend = "cuda" if backend == "cuda-emulated" else backend
    ws = [w.clone().to(device).requires_grad_() for w, *_ in group]
    us = [u.clone().to(device) for _, u, *_ in group]
    vs = [v.clone().to(device) for _, _, v, *_ in group]
    dims = [d for *_, d, _ in group]
    out, sigma = fastgan.spectral_normalize(ws, us, vs, dims=dims, backend=backend, **options)
    g = torch.Generator().manual_seed(grad_seed)
    grads = [torch.randn(o.shape, generator=g).to(device, o.dtype) for o in out]
    torch.autograd.backward(out, grads)
    # dW = G / sigma - <G, W/sigma> u v^T / sigma: its terms are of the size of |G| / sigma, whatever dW's own size
    terms = [float(gr.abs().max()) / abs(float(s)) if gr.numel() and s != 0 else 0.0 for gr, s in zip(grads, sigma)]
    return out, sigma, us, vs, [w.grad if w.grad is not None else torch.zeros_like(w) for w in ws], terms


def sn_agree(backends, dtype, group, options, grad_seed):
    """Every backend of ``backends`` gives the torch reference's result for this group, or its error."""
    note(f"{dtype}, {[(tuple(w.shape), w.stride(), d, r) for w, _, _, d, r in group]}, {options}")
    reference = _outcome(lambda: _sn_call("torch", dtype, group, options, grad_seed))

    def compare(got, ref):
        out, sigma, us, vs, dws, _ = got
        r_out, r_sigma, r_us, r_vs, r_dws, terms = ref
        # sigma below float32's normal range (weights ~1e-30) is known to a few bits only; the normalised weights
        # and gradients inherit its error
        smallest = float(r_sigma[torch.isfinite(r_sigma) & (r_sigma != 0)].abs().min()) if (
            torch.isfinite(r_sigma) & (r_sigma != 0)).any() else 1.0
        rel = max(1e-5, 64 * 2.0 ** -149 / smallest)
        _close("sigma", sigma, r_sigma, rel)
        for i, (a, b) in enumerate(zip(us + vs, r_us + r_vs)):
            _close(f"u/v {i}", a, b, 1e-4, 1e-6)
        for i, (a, b) in enumerate(zip(out, r_out)):
            _close(f"W/sigma {i}", a, b, 4 * ROUNDING[dtype] + rel)
        for i, (a, b, t) in enumerate(zip(dws, r_dws, terms)):
            tol = 8 * ROUNDING[dtype] + 4 * rel
            _close(f"dW {i}", a, b, tol, tol * t if math.isfinite(t) else 0.0)

    for backend in backends:
        _same(_outcome(lambda: _sn_call(backend, dtype, group, options, grad_seed)), reference, compare)


@given(sn_groups(), st.integers(0, 2**16))
def test_spectral_norm_backends_agree(case, grad_seed):
    sn_agree(KERNEL_BACKENDS, *case, grad_seed)


# ---------------------------------------------------------------- batch norm


@st.composite
def bn_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    N, C = draw(st.sampled_from([1, 2, 3, 5])), draw(SIZES)
    H, W = draw(st.sampled_from([0, 1, 2, 3, 7])), draw(st.sampled_from([1, 2, 5, 9]))
    regime = draw(st.sampled_from(REGIMES))
    x = _values(draw, (N, C, H, W), dtype, regime, seed=draw(st.integers(0, 2**16)))
    x = _image_layout(draw, x)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    affine = draw(st.sampled_from(["channel", "sample", "mixed", "none"]))
    w = b = None
    if affine != "none":
        w = torch.randn((N, C) if affine == "sample" else (C,), generator=g) * 0.5 + 1
        b = torch.randn((N, C) if affine in ("sample", "mixed") else (C,), generator=g) * 0.3
    rm, rv = torch.randn(C, generator=g) * 0.1, torch.rand(C, generator=g) + 0.5
    options = dict(training=draw(st.booleans()), activation=draw(st.sampled_from([None, "relu", "leaky_relu"])),
                   negative_slope=0.2, check_finite=draw(st.booleans()))
    return x, w, b, rm, rv, options


def _bn_call(backend, x, w, b, rm, rv, options, grad_seed):
    xx = x.clone().to(DEVICE).requires_grad_()
    ww, bb = (t.clone().to(DEVICE).requires_grad_() if t is not None else None for t in (w, b))
    rmean, rvar = rm.clone().to(DEVICE), rv.clone().to(DEVICE)
    y = fastgan.conditional_batch_norm(xx, ww, bb, rmean, rvar, backend=backend, **options)
    gy = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed)).to(DEVICE, y.dtype)
    y.backward(gy)
    grads = [t.grad if t is not None and t.grad is not None else None for t in (xx, ww, bb)]
    return y, rmean, rvar, grads


@given(bn_cases(), st.integers(0, 2**16))
def test_batch_norm_backends_agree(case, grad_seed):
    x, w, b, rm, rv, options = case
    note(f"x {tuple(x.shape)} {x.dtype} strides {x.stride()}, weight {None if w is None else tuple(w.shape)}, "
         f"{options}")
    reference = _outcome(lambda: _bn_call("torch", x, w, b, rm, rv, options, grad_seed))
    u = ROUNDING[x.dtype]

    def compare(got, ref):
        y, rmean, rvar, grads = got
        r_y, r_rmean, r_rvar, r_grads = ref
        assert y.stride() == r_y.stride() or y.numel() == 0, "the output is laid out like the input"
        _close("y", y, r_y, 8 * u + 1e-5)
        _close("running_mean", rmean, r_rmean, 1e-5, 1e-6)
        _close("running_var", rvar, r_rvar, 1e-5, 1e-6)
        for name, a, c in zip(("dx", "dweight", "dbias"), grads, r_grads):
            assert (a is None) == (c is None), name
            if a is not None:
                _close(name, a, c, 16 * u + 1e-4)

    for backend in KERNEL_BACKENDS:
        _same(_outcome(lambda: _bn_call(backend, x, w, b, rm, rv, options, grad_seed)), reference, compare)


# ---------------------------------------------------------------- transposed convolution


@st.composite
def conv_transpose_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    N = draw(st.sampled_from([0, 1, 2, 3]))
    c_in, c_out = groups * draw(st.sampled_from([1, 2, 3, 17])), groups * draw(st.sampled_from([1, 3, 5, 40]))
    H, W = draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 2, 4]))
    k, stride, dilation = draw(st.integers(1, 5)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    # now and then a padding that empties the output, or an output_padding torch refuses
    odd = draw(st.integers(0, 9)) == 0
    padding = draw(st.integers(0, dilation * (k - 1) + 1 if odd else dilation * (k - 1) // 2))
    output_padding = draw(st.integers(0, max(stride, dilation) if odd else max(stride, dilation) - 1))
    regime = draw(st.sampled_from(REGIMES))
    x = _values(draw, (N, c_in, H, W), dtype, regime, seed=draw(st.integers(0, 2**16)))
    x = _image_layout(draw, x)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    w = (torch.randn(c_in, c_out // groups, k, k, generator=g) / (c_in * k) ** 0.5).to(dtype)
    b = torch.randn(c_out, generator=g).to(dtype) if draw(st.booleans()) else None
    options = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation,
                   activation=draw(st.sampled_from([None, "relu", "leaky_relu", "tanh", "sigmoid"])),
                   negative_slope=0.2, bn_stats=draw(st.booleans()), check_finite=draw(st.booleans()))
    return x, w, b, options


def _ct_call(backend, x, w, b, options):
    dev = (lambda t: t.to(DEVICE)) if backend != "torch" else (lambda t: t.double())  # the reference in float64
    with torch.backends.cudnn.flags(allow_tf32=False):
        out = fastgan.conv_transpose2d(dev(x), dev(w), None if b is None else dev(b), backend=backend, **options)
    return out if options["bn_stats"] else (out, None)


@given(conv_transpose_cases())
def test_conv_transpose2d_backends_agree(case):
    x, w, b, options = case
    note(f"x {tuple(x.shape)} {x.dtype} strides {x.stride()}, weight {tuple(w.shape)}, bias {b is not None}, "
         f"{options}")
    reference = _outcome(lambda: _ct_call("torch", x, w, b, options))
    u = ROUNDING[x.dtype]

    def compare(got, ref):
        y, stats = got
        r_y, _ = ref
        assert y.dtype == x.dtype and y.shape == r_y.shape
        if y.numel() == 0:
            return
        # each output is a sum of up to K = C_in/groups x taps products, rounded once to the dtype at the end
        _close("y", y, r_y.to(x.dtype), 8 * u + 1e-5, 1e-30)
        if stats is not None:  # the statistics are those of y as stored, in float32
            v = y.double().cpu()
            mean = v.mean(dim=(0, 2, 3))
            r_stats = torch.stack([torch.full_like(mean, v.numel() / v.shape[1]), mean,
                                   (v - mean[None, :, None, None]).square().sum(dim=(0, 2, 3))]).float()
            fin = torch.isfinite(r_stats)
            assert torch.equal(torch.isfinite(stats.cpu()), fin), "stats: finite in one, not in the other"
            scale = v[torch.isfinite(v)].abs().max() if torch.isfinite(v).any() else 1.0
            for row, tol in ((0, 0.0), (1, 1e-5 * scale), (2, 1e-5 * scale ** 2 * v[0].numel() * v.shape[0])):
                got_row, ref_row = stats[row].double().cpu(), r_stats[row].double()
                assert ((got_row - ref_row).abs()[fin[row]] <= tol + 1e-5 * ref_row.abs()[fin[row]]).all(), row

    for backend in KERNEL_BACKENDS:
        _same(_outcome(lambda: _ct_call(backend, x, w, b, options)), reference, compare)


# ---------------------------------------------------------------- gradient penalty ops


@st.composite
def penalty_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = (draw(st.sampled_from([1, 2, 3, 5])),) + tuple(draw(SIZES) for _ in range(draw(st.integers(0, 3))))
    regime = draw(st.sampled_from(REGIMES))
    seed = draw(st.integers(0, 2**16))
    g = _laid_out(draw, _values(draw, shape, dtype, regime, seed))
    real = _values(draw, shape, dtype, "normal", seed + 1)
    eps = torch.rand(shape[0], generator=torch.Generator().manual_seed(seed))
    options = dict(kind=draw(st.sampled_from(["norm", "squared"])), weight=draw(st.sampled_from([0.0, 1.0, 10.0])),
                   center=draw(st.sampled_from([0.0, 1.0])), one_sided=draw(st.booleans()))
    return g, real, eps, options


def _penalty_call(backend, g, real, eps, options):
    gg = g.clone().to(DEVICE).requires_grad_()
    pen = fastgan.penalty_of_gradient(gg, backend=backend, **options)
    (dg,) = torch.autograd.grad(pen, gg)
    x = fastgan.interpolate_samples(real.to(DEVICE), g.detach().to(DEVICE), eps.to(DEVICE), backend=backend)
    return pen, dg, x


@given(penalty_cases())
def test_gradient_penalty_ops_backends_agree(case):
    g, real, eps, options = case
    note(f"g {tuple(g.shape)} {g.dtype} strides {g.stride()}, {options}")
    reference = _outcome(lambda: _penalty_call("torch", g, real, eps, options))
    u = ROUNDING[g.dtype]

    def compare(got, ref):
        _close("penalty", got[0], ref[0], 1e-5, 1e-30)
        _close("seed gradient", got[1], ref[1], 4 * u + 1e-5, 1e-30)
        _close("interpolate", got[2], ref[2], 4 * u, 1e-30)

    for backend in KERNEL_BACKENDS:
        _same(_outcome(lambda: _penalty_call(backend, g, real, eps, options)), reference, compare)


# ---------------------------------------------------------------- masked convolution


@st.composite
def masked_conv_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    sub = draw(st.sampled_from([1, 3]))
    gate = draw(st.booleans())
    N = draw(st.sampled_from([0, 1, 2, 3]))
    c_in, half = sub * draw(st.sampled_from([1, 2, 6])), sub * draw(st.sampled_from([1, 3, 7]))
    c_out = 2 * half if gate else half
    kh, kw = draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 3, 4, 5]))
    H, W = draw(st.sampled_from([1, 2, 3, 5])), draw(st.sampled_from([1, 2, 4, 7]))
    regime = draw(st.sampled_from(REGIMES))
    x = _image_layout(draw, _values(draw, (N, c_in, H, W), dtype, regime, seed=draw(st.integers(0, 2**16))))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    w = (torch.randn(c_out, c_in, kh, kw, generator=g) / (c_in * kh * kw) ** 0.5).to(dtype)
    b = torch.randn(c_out, generator=g).to(dtype) if draw(st.booleans()) else None
    add = draw(st.sampled_from([None, (N, c_out, 1, 1), (N, c_out, H, W), (1, c_out, 1, W)]))
    add = None if add is None else torch.randn(add, generator=g).to(dtype)
    options = dict(mask=draw(st.sampled_from(["A", "B", None])), sub_pixels=sub, gate=gate,
                   anchor=(draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1))), return_pre=True,
                   check_finite=draw(st.booleans()))
    return x, w, b, add, options


def _masked_conv_reference(x, w, b, add, options):
    """float64 over the kept taps only (F.unfold): the kernels' semantics, where eager conv2d(x, w * mask) would
    also carry a NaN through the masked taps; the pre-activation rounded to the dtype, as the kernels store it."""
    from fastgan.ops import masked_conv2d_reference as ref

    if options["check_finite"]:
        fastgan.masked_conv2d(x, w, b, add=add, **{**options, "return_pre": False}, backend="torch")
    if x.numel() == 0:
        return fastgan.masked_conv2d(x, w, b, add=add, **options, backend="torch")
    geom = ref.Geometry(tuple(w.shape[2:]), options["anchor"], ref.MASKS[options["mask"]], options["sub_pixels"],
                        options["gate"])
    N, c_in, H, W = x.shape
    wd = w.double()
    kept = (wd * ref.mask(wd, geom)).flatten(2)[:, :, :geom.taps]
    cols = F.unfold(F.pad(x.double(), geom.padding), tuple(w.shape[2:])).view(N, c_in, -1, H * W)[:, :, :geom.taps]
    pre = torch.einsum("nctl,oct->nol", cols, kept).reshape(N, -1, H, W)
    if b is not None:
        pre = pre + b.double()[None, :, None, None]
    if add is not None:
        pre = pre + add.double()
    pre = pre.to(x.dtype).double()
    return (ref.gate(pre) if options["gate"] else pre), pre


def _masked_conv_call(backend, x, w, b, add, options):
    if backend == "torch":
        return _masked_conv_reference(x, w, b, add, options)
    with torch.backends.cudnn.flags(allow_tf32=False):
        return fastgan.masked_conv2d(x.to(DEVICE), w.to(DEVICE), None if b is None else b.to(DEVICE),
                                     add=None if add is None else add.to(DEVICE), backend=backend, **options)


@given(masked_conv_cases())
def test_masked_conv2d_backends_agree(case):
    x, w, b, add, options = case
    note(f"x {tuple(x.shape)} {x.dtype} strides {x.stride()}, weight {tuple(w.shape)}, bias {b is not None}, "
         f"add {None if add is None else tuple(add.shape)}, {options}")
    reference = _outcome(lambda: _masked_conv_call("torch", x, w, b, add, options))
    u = ROUNDING[x.dtype]

    def compare(got, ref):
        assert got[0].dtype == x.dtype
        # pre: a sum of up to C_in x taps products in float32, rounded once; y: the gate of the rounded pre
        _close("pre", got[1], ref[1], 2 * u + 1e-5, 1e-30)
        _close("y", got[0], ref[0], 4 * u + 1e-5, 1e-30)

    for backend in KERNEL_BACKENDS:
        _same(_outcome(lambda: _masked_conv_call(backend, x, w, b, add, options)), reference, compare)


# ---------------------------------------------------------------- codebook search


@st.composite
def codebook_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    n, k, d = draw(st.sampled_from([0, 1, 3, 40])), draw(st.sampled_from([1, 2, 17, 70])), draw(
        st.sampled_from([1, 3, 16, 65]))
    regime = draw(st.sampled_from(["normal", "zero", "constant", "tiny", "nan", "inf"]))
    z = _laid_out(draw, _values(draw, (n, d), dtype, regime, seed=draw(st.integers(0, 2**16))))
    e = _values(draw, (k, d), dtype, "normal", seed=draw(st.integers(0, 2**16)))
    if draw(st.booleans()) and k > 1:  # duplicated codes: ties
        e[k // 2:] = e[:k - k // 2].clone()
    return z, e


def _codebook_call(backend, z, e):
    return fastgan.codebook_search(z.to(DEVICE), e.to(DEVICE), backend=backend, check_finite=True)


@given(codebook_cases())
def test_codebook_search_backends_agree(case):
    """Finite inputs: the chosen code is at the float64 minimum distance (within float32 round-off of near-ties),
    of duplicated codes the first; NaN / Inf refused by check_finite in every backend."""
    z, e = case
    note(f"z {tuple(z.shape)} {z.dtype} strides {z.stride()}, codes {tuple(e.shape)}")
    reference = _outcome(lambda: _codebook_call("torch", z, e))

    def compare(got, ref):
        full = torch.cdist(z.double(), e.double()).square()
        chosen = full.gather(1, got[0].cpu()[:, None])[:, 0]
        best = full.min(1).values
        assert (chosen - best <= 1e-4 * (1 + best)).all(), "a code farther than the nearest"
        for i in got[0].cpu().tolist():  # a duplicated code: the first copy
            assert not (e[:i] == e[i]).all(1).any(), f"code {i} chosen over an identical code before it"

    for backend in KERNEL_BACKENDS:
        _same(_outcome(lambda: _codebook_call(backend, z, e)), reference, compare)


def test_profiles_are_registered():
    profile = hypothesis.settings()
    assert profile.deadline is None and profile.max_examples >= 20
    assert math.isfinite(profile.max_examples)
