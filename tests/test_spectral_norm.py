"""The grouped spectral-norm op: against PyTorch's own spectral norm, float64 references, gradcheck, opcheck."""
import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import rel_err
from torch.nn.utils import parametrizations

import fastgan
from fastgan import _backend
from fastgan.ops import spectral_norm as sn_op
from fastgan.ops import spectral_norm_plan as plan

# (weight shape, dim): 1xk, kx1, primes, conv, linear, transposed-conv (dim 1) and dim 2 layouts
ODD_SHAPES = [((1, 37), 0), ((41, 1), 0), ((13, 29), 0), ((7, 5, 3, 3), 0), ((11, 3, 1, 1), 0), ((6, 11, 4, 4), 1),
              ((3, 5, 2), 2), ((2, 3, 5, 7), -1), ((40, 300), 0)]


def _random_group(shapes, dtype=torch.float32, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    ws, us, vs, dims = [], [], [], []
    for shape, dim in shapes:
        w = torch.randn(shape, generator=gen) * (1 + torch.rand((), generator=gen) * 3)
        _, h, _, wc = plan.matrix_geometry(shape, dim % len(shape))
        ws.append(w.to(device, dtype))
        us.append(F.normalize(torch.randn(h, generator=gen), dim=0).to(device))
        vs.append(F.normalize(torch.randn(wc, generator=gen), dim=0).to(device))
        dims.append(dim)
    return ws, us, vs, dims


def _float64_reference(ws, us, vs, dims, n_iter, u_first=True):
    u64, v64 = [u.double() for u in us], [v.double() for v in vs]
    outs, sigma = fastgan.spectral_normalize([w.double() for w in ws], u64, v64, dims=dims, n_power_iterations=n_iter,
                                             u_first=u_first, backend="torch")
    return outs, sigma, u64, v64


# ---------------------------------------------------------------- reference path vs PyTorch


class _Holder(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.weight = torch.nn.Parameter(w.clone())


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_iter", [1, 2, 5])
def test_reference_matches_parametrizations_spectral_norm(seed, n_iter):
    """Same u, v, sigma and weight as torch.nn.utils.parametrizations.spectral_norm, step after step."""
    for shape, dim in ODD_SHAPES:
        w = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 2
        theirs, ours = _Holder(w), _Holder(w)
        torch.manual_seed(seed)
        parametrizations.spectral_norm(theirs, n_power_iterations=n_iter, dim=dim)
        torch.manual_seed(seed)
        with fastgan.use_backend("torch"):
            fastgan.nn.spectral_norm(ours, n_power_iterations=n_iter, dim=dim)
            for _ in range(3):
                wt, wo = theirs.weight, ours.weight
                p_t, p_o = theirs.parametrizations.weight[0], ours.parametrizations.weight[0]
                torch.testing.assert_close(wo, wt, rtol=1e-6, atol=1e-7)
                torch.testing.assert_close(p_o._u, p_t._u, rtol=1e-6, atol=1e-7)
                torch.testing.assert_close(p_o._v, p_t._v, rtol=1e-6, atol=1e-7)
            theirs.eval(), ours.eval()
            torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_iter", [1, 3])
def test_u_first_false_matches_legacy_spectral_norm(seed, n_iter):
    """The legacy torch.nn.utils.spectral_norm iterates v first; u_first=False reproduces it."""
    for shape, dim in ODD_SHAPES:
        torch.manual_seed(seed)
        legacy = torch.nn.utils.spectral_norm(_Holder(torch.randn(shape) * 2), n_power_iterations=n_iter,
                                              dim=dim % len(shape))
        u, v = legacy.weight_u.clone(), legacy.weight_v.clone()
        hook = next(iter(legacy._forward_pre_hooks.values()))  # the legacy SpectralNorm object
        for _ in range(3):
            expected = hook.compute_weight(legacy, do_power_iteration=True)
            (out,), sigma = fastgan.spectral_normalize(legacy.weight_orig.detach(), u, v, dims=dim,
                                                       n_power_iterations=n_iter, u_first=False, backend="torch")
            torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(u, legacy.weight_u, rtol=1e-6, atol=1e-7)
            torch.testing.assert_close(v, legacy.weight_v, rtol=1e-6, atol=1e-7)
            mat = legacy.weight_orig.detach().movedim(dim, 0).flatten(1)
            torch.testing.assert_close(sigma[0], torch.dot(u, mat @ v), rtol=1e-6, atol=0)


def test_input_weights_are_not_mutated():
    ws, us, vs, dims = _random_group(ODD_SHAPES)
    before = [w.clone() for w in ws]
    fastgan.spectral_normalize(ws, us, vs, dims=dims, n_power_iterations=2)
    for a, b in zip(ws, before):
        assert torch.equal(a, b)


def test_sigma_of_a_converged_iteration_is_the_top_singular_value():
    ws, us, vs, dims = _random_group(ODD_SHAPES, dtype=torch.float64)
    sigma = fastgan.spectral_norm_power_iteration_(ws, us, vs, dims=dims, n_power_iterations=500, backend="torch")
    for w, d, s in zip(ws, dims, sigma):
        top = torch.linalg.matrix_norm(w.movedim(d, 0).flatten(1), ord=2)
        torch.testing.assert_close(s, top, rtol=1e-6, atol=0)


# ---------------------------------------------------------------- Triton under the interpreter vs float64

TOL = {torch.float32: 2e-6, torch.float16: 2e-6, torch.bfloat16: 2e-6}  # u, v, sigma: float32 arithmetic
OUT_TOL = {torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}  # normalised weight: rounding to dtype


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("u_first", [True, False])
@pytest.mark.parametrize("n_iter", [0, 1, 3])
def test_triton_matches_float64_reference(interpreter, small_tiles, dtype, u_first, n_iter):
    ws, us, vs, dims = _random_group(ODD_SHAPES, dtype=dtype, seed=n_iter)
    ref_out, ref_sigma, ref_u, ref_v = _float64_reference(ws, us, vs, dims, n_iter, u_first)
    outs, sigma = fastgan.spectral_normalize(ws, us, vs, dims=dims, n_power_iterations=n_iter, u_first=u_first,
                                             backend="triton")
    assert sigma.dtype == torch.float32 and rel_err(sigma, ref_sigma) < TOL[dtype]
    for i in range(len(ws)):
        assert rel_err(us[i], ref_u[i]) < TOL[dtype], f"u of weight {i}"
        assert rel_err(vs[i], ref_v[i]) < TOL[dtype], f"v of weight {i}"
        assert outs[i].dtype == dtype and outs[i].shape == ws[i].shape
        assert rel_err(outs[i], ref_out[i]) < OUT_TOL[dtype], f"W/sigma of weight {i}"


def test_triton_handles_non_contiguous_and_offset_weights(interpreter, small_tiles):
    base = torch.randn(4000)
    ws = [torch.randn(29, 13).t(), base[3:3 + 7 * 45].view(7, 45), torch.randn(5, 9, 3, 3)[:, ::2]]
    us = [F.normalize(torch.randn(w.shape[0]), dim=0) for w in ws]
    vs = [F.normalize(torch.randn(w[0].numel()), dim=0) for w in ws]
    ref_out, ref_sigma, ref_u, ref_v = _float64_reference(ws, us, vs, [0, 0, 0], 2)
    outs, sigma = fastgan.spectral_normalize(ws, us, vs, n_power_iterations=2, backend="triton")
    assert rel_err(sigma, ref_sigma) < 2e-6
    for o, r in zip(outs, ref_out):
        assert rel_err(o, r) < 2e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_backward_matches_float64_reference(interpreter, small_tiles, dtype):
    ws, us, vs, dims = _random_group(ODD_SHAPES, dtype=dtype, seed=3)
    gen = torch.Generator().manual_seed(7)
    rs = [torch.randn(w.shape, generator=gen) for w in ws]

    def grads(weights, backend):
        weights = [w.detach().clone().requires_grad_() for w in weights]
        outs, _ = fastgan.spectral_normalize(weights, [u.clone() for u in us], [v.clone() for v in vs], dims=dims,
                                             n_power_iterations=1, backend=backend)
        # leave the last weight out of the loss: its gradient must be exactly zero
        loss = sum((o.double() * r.double()).sum() for o, r in zip(outs[:-1], rs))
        return torch.autograd.grad(loss, weights)

    expected = grads([w.double() for w in ws], "torch")
    got = grads(ws, "triton")
    for i, (g, e) in enumerate(zip(got[:-1], expected[:-1])):
        assert g.dtype == dtype
        assert rel_err(g, e) < OUT_TOL[dtype] * 2, f"gradient of weight {i}"
    assert torch.count_nonzero(got[-1]) == 0


def test_triton_flat_output_padding_is_defined(interpreter):
    ws, us, vs, dims = _random_group([((3, 5), 0), ((2, 7), 0)])
    state = sn_op.prepare(ws, us, vs, dims).power_iteration(1, 1e-12, True, "triton")
    flat = torch.ops.fastgan.spectral_norm(ws, state, dims, "triton")
    ref = torch.ops.fastgan.spectral_norm(ws, state, dims, "torch")
    assert torch.equal(flat[15:16], torch.zeros(1)) and flat.shape == ref.shape
    assert rel_err(flat, ref) < 1e-6


# ---------------------------------------------------------------- autograd


def test_gradcheck_and_gradgradcheck_float64():
    ws, us, vs, dims = _random_group([((4, 3), 0), ((3, 2, 2, 2), 1), ((1, 5), 0)], dtype=torch.float64)
    us, vs = [u.double() for u in us], [v.double() for v in vs]

    def f(*weights):
        # n_power_iterations=0: u and v are constants of the function, as the gradient assumes
        outs, _ = fastgan.spectral_normalize(list(weights), us, vs, dims=dims, n_power_iterations=0, backend="torch")
        return tuple(outs)

    inputs = tuple(w.clone().requires_grad_() for w in ws)
    assert torch.autograd.gradcheck(f, inputs)
    assert torch.autograd.gradgradcheck(f, inputs)


def test_gradient_holds_u_v_constant_after_an_iteration():
    """With an iteration, the gradient is still (G - <G, W/s> u v^T)/s with the updated u, v (PyTorch's rule)."""
    w = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    u = F.normalize(torch.randn(6, dtype=torch.float64), dim=0)
    v = F.normalize(torch.randn(4, dtype=torch.float64), dim=0)
    (out,), sigma = fastgan.spectral_normalize(w, u, v, n_power_iterations=1, backend="torch")
    g = torch.randn(6, 4, dtype=torch.float64)
    (dw,) = torch.autograd.grad(out, w, g)
    wn = w.detach() / sigma[0]
    expected = (g - (g * wn).sum() * torch.outer(u, v)) / sigma[0]
    torch.testing.assert_close(dw, expected)


# ---------------------------------------------------------------- torch.library: opcheck, torch.compile


def _opcheck_args(backend):
    ws, us, vs, dims = _random_group([((5, 3), 0), ((2, 3, 2, 2), 1)])
    group = sn_op.prepare([w.clone() for w in ws], [u.clone() for u in us], [v.clone() for v in vs], dims)
    state = group.power_iteration(1, 1e-12, True, backend)
    grad = torch.randn(plan.flat_layout([w.numel() for w in ws])[1])
    return ws, us, vs, dims, state, grad


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_opcheck(backend, request):
    if backend == "triton":
        request.getfixturevalue("interpreter")
    ws, us, vs, dims, state, grad = _opcheck_args(backend)
    wreq = [w.clone().requires_grad_() for w in ws]
    torch.library.opcheck(torch.ops.fastgan.spectral_norm_power_iteration.default,
                          (ws, us, vs, dims, 2, 1e-12, True, backend))
    torch.library.opcheck(torch.ops.fastgan.spectral_norm.default, (wreq, state, dims, backend))
    torch.library.opcheck(torch.ops.fastgan.spectral_norm_backward.default, (grad, ws, state, dims, backend))


def test_torch_compile_fullgraph_matches_eager():
    ws, us, vs, dims = _random_group(ODD_SHAPES[:4])

    def f(weights, us, vs):
        outs, sigma = fastgan.spectral_normalize(weights, us, vs, dims=dims[:4], n_power_iterations=2,
                                                 backend="torch")
        return sum((o * o).sum() for o in outs) + sigma.sum()

    u1, v1 = copy.deepcopy(us), copy.deepcopy(vs)
    expected = f(ws, u1, v1)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    u2, v2 = copy.deepcopy(us), copy.deepcopy(vs)
    got = compiled(ws, u2, v2)
    torch.testing.assert_close(got, expected)
    for a, b in zip(u1 + v1, u2 + v2):  # the in-place update of u and v survives compilation
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- bad input


def test_bad_input_is_rejected_with_a_clear_message():
    w, u, v = torch.randn(4, 3), F.normalize(torch.randn(4), dim=0), F.normalize(torch.randn(3), dim=0)
    cases = [
        (TypeError, "floating-point", dict(weights=torch.ones(4, 3, dtype=torch.int64))),
        (IndexError, "out of range", dict(dims=2)),
        (IndexError, "out of range", dict(dims=-3)),
        (ValueError, "n_power_iterations", dict(n_power_iterations=-1)),
        (ValueError, "n_power_iterations", dict(n_power_iterations=1.5)),
        (ValueError, "n_power_iterations", dict(n_power_iterations=True)),
        (ValueError, "eps", dict(eps=0.0)),
        (ValueError, "eps", dict(eps=float("nan"))),
        (ValueError, r"u vector of weights\[0\] has shape \(3,\), expected \(4,\)", dict(us=torch.randn(3))),
        (ValueError, "v vector", dict(vs=torch.randn(3, 1))),
        (ValueError, "1-D weight", dict(weights=torch.randn(4))),
        (ValueError, "empty", dict(weights=[], us=[], vs=[])),
        (ValueError, "contiguous float32", dict(us=torch.randn(8)[::2])),
    ]
    for exc, match, kw in cases:
        args = dict(weights=w, us=u.clone(), vs=v.clone())
        args.update({k: kw[k] for k in ("weights", "us", "vs") if k in kw})
        opts = {k: val for k, val in kw.items() if k not in ("weights", "us", "vs")}
        with pytest.raises(exc, match=match):
            fastgan.spectral_normalize(args["weights"], args["us"], args["vs"], **opts)


def test_mixed_dtypes_in_a_group_are_refused():
    ws, us, vs, dims = _random_group(ODD_SHAPES[:2])
    ws[1] = ws[1].double()
    with pytest.raises(ValueError, match=r"weights\[1\] is torch.float64"):
        fastgan.spectral_normalize(ws, us, vs, dims=dims)


def test_non_finite_weights_are_named_when_checked():
    ws, us, vs, dims = _random_group(ODD_SHAPES[:3])
    ws[2][0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf.*conv2\.weight"):
        fastgan.spectral_normalize(ws, us, vs, dims=dims, check_finite=True, names=["a", "b", "conv2.weight"])
    zero = [torch.zeros(3, 2)]
    with pytest.raises(ValueError, match="sigma is zero"):
        fastgan.spectral_normalize(zero, [torch.zeros(3)], [torch.zeros(2)], check_finite=True)


def test_kernel_backends_refuse_float64_u_v(interpreter):
    w = torch.randn(4, 3)
    with pytest.raises(_backend.BackendUnavailable, match="float32"):
        fastgan.spectral_normalize(w, torch.randn(4, dtype=torch.float64), torch.randn(3, dtype=torch.float64),
                                   backend="triton")


def _kernel_backends():
    from conftest import INTERPRETING

    return ["torch"] + (["triton"] if INTERPRETING else [])


@pytest.mark.parametrize("backend", _kernel_backends())
def test_mixed_u_v_dtypes_run_on_torch_or_are_refused(backend):
    """One float64 pair in a group of float32 ones: auto computes it on torch, an explicit kernel backend refuses."""
    ws, us, vs, dims = _random_group(ODD_SHAPES[:2])
    us[1], vs[1] = us[1].double(), vs[1].double()
    ref_us, ref_vs = [u.double() for u in us], [v.double() for v in vs]
    _, ref_sigma = fastgan.spectral_normalize([w.double() for w in ws], ref_us, ref_vs, dims=dims, backend="torch")
    if backend != "torch":
        before = [t.clone() for t in us + vs]
        with pytest.raises(_backend.BackendUnavailable, match="float64"):
            fastgan.spectral_normalize(ws, us, vs, dims=dims, backend=backend)
        for a, b in zip(us + vs, before):
            assert torch.equal(a, b)
    with fastgan.use_backend(backend if backend == "torch" else "auto"):
        _, sigma = fastgan.spectral_normalize(ws, us, vs, dims=dims)
    torch.testing.assert_close(sigma.double(), ref_sigma, rtol=1e-5, atol=0)
    for a, b in zip(us + vs, ref_us + ref_vs):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", _kernel_backends())
def test_in_place_changes_of_strides_or_storage_are_seen(backend):
    """The validation and layout caches cover strides and storage: ``t_()`` or ``.data =`` after a call."""
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(40, generator=gen)[:25].view(5, 5)
    u, v = F.normalize(torch.randn(5, generator=gen), dim=0), F.normalize(torch.randn(5, generator=gen), dim=0)
    fastgan.spectral_normalize(w, u, v, n_power_iterations=0, backend=backend)
    changes = [lambda t: t.as_strided_((5, 5), (5, 1), 7), lambda t: t.as_strided_((5, 5), (1, 6), 0),
               lambda t: t.t_(), lambda t: setattr(t, "data", torch.randn(5, 5, generator=gen))]
    for change in changes:
        change(w)
        _, sigma = fastgan.spectral_normalize(w, u, v, n_power_iterations=0, backend=backend)
        expected = torch.dot(u.double(), w.double() @ v.double())
        torch.testing.assert_close(sigma.double()[0], expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("backend", _kernel_backends())
@pytest.mark.parametrize("n_iter", [0, 1, 2])
def test_a_failed_check_writes_nothing(backend, n_iter):
    """check_finite raises before u and v are touched (NaN weight) or restores them (zero sigma)."""
    ws, us, vs, dims = _random_group(ODD_SHAPES[:3])
    ws[1] = torch.zeros_like(ws[1])
    before = [t.clone() for t in us + vs]
    with pytest.raises(ValueError, match=r"sigma is zero or not finite for weights\[1\]"):
        fastgan.spectral_normalize(ws, us, vs, dims=dims, n_power_iterations=n_iter, check_finite=True,
                                   backend=backend)
    ws[1] = torch.full_like(ws[1], float("nan"))
    with pytest.raises(ValueError, match=r"NaN or Inf"):
        fastgan.spectral_norm_power_iteration_(ws, us, vs, dims=dims, n_power_iterations=n_iter, check_finite=True,
                                               backend=backend)
    for a, b in zip(us + vs, before):
        assert torch.equal(a, b)
    # without the check, PyTorch's semantics: a zero weight zeroes its u and v
    ws[1] = torch.zeros_like(ws[1])
    fastgan.spectral_normalize(ws, us, vs, dims=dims, n_power_iterations=max(n_iter, 1), backend=backend)
    assert not us[1].any() and not vs[1].any() and us[0].any()


@pytest.mark.parametrize("backend", _kernel_backends())
@pytest.mark.parametrize("scale", [1e-20, 1e-17, 1e-15, 1e15, 1e18, 1e20])
def test_tiny_and_huge_weights_give_the_torch_reference(backend, scale, small_tiles):
    """Norms without premature underflow, and overflow exactly where torch's float32 norm overflows."""
    ws, us, vs, dims = _random_group(ODD_SHAPES[:4], seed=5)
    ws = [w * scale for w in ws]
    ref_us, ref_vs = [u.clone() for u in us], [v.clone() for v in vs]
    ref, ref_sigma = fastgan.spectral_normalize(ws, ref_us, ref_vs, dims=dims, backend="torch")
    out, sigma = fastgan.spectral_normalize(ws, us, vs, dims=dims, backend=backend)
    # sigma below float32's normal range (1e-20: about 1e-43) is known to a few bits only
    rtol = max(1e-5, float(torch.finfo(torch.float32).smallest_normal) * 2**-23 / max(ref_sigma.abs().min(), 1e-45)
               * 64)
    torch.testing.assert_close(sigma, ref_sigma, rtol=rtol, atol=0)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=0, equal_nan=True)
    for a, b in zip(us + vs, ref_us + ref_vs):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6 * float(b.abs().max()))


@pytest.mark.parametrize("backend", _kernel_backends())
@pytest.mark.parametrize("shape", [(0, 5), (4, 0), (0, 3, 2), (3, 0, 2)])
def test_empty_weights_give_the_torch_reference(backend, shape):
    h, wc = shape[0], int(torch.tensor(shape[1:]).prod())
    group = [torch.randn(shape), torch.randn(3, 3)]
    us = [F.normalize(torch.ones(h), dim=0), F.normalize(torch.ones(3), dim=0)]
    vs = [F.normalize(torch.ones(wc), dim=0), F.normalize(torch.ones(3), dim=0)]
    ref_us, ref_vs = [u.clone() for u in us], [v.clone() for v in vs]
    ref, ref_sigma = fastgan.spectral_normalize(group, ref_us, ref_vs, backend="torch")
    out, sigma = fastgan.spectral_normalize(group, us, vs, backend=backend)
    torch.testing.assert_close(sigma, ref_sigma)
    assert out[0].shape == shape and ref_sigma[0] == 0
    for a, b in zip(out + us + vs, ref + ref_us + ref_vs):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- the CUDA extension agrees with the plan


def test_cuda_extension_table_layout_matches_the_plan():
    mod, why = _backend._import_extension()
    if mod is None:
        pytest.skip(f"extension not built: {why}")
    layout = mod.spectral_norm_layout()
    for name in ("NF", "NE", "COLS_TILE", "ELEM_TILE", "FLAT_ALIGN", "W_PTR", "U_PTR", "V_PTR", "R", "C", "SR", "SC",
                 "Q", "SO", "Y_OFF", "ZP_OFF", "N_RB", "ROWS_PER_TILE", "ROWS_PER_CTILE", "SU_OFF", "SV_OFF",
                 "E_W_PTR", "E_NUMEL", "E_FLAT_OFF", "E_H", "E_Q", "E_SU_OFF", "E_SV_OFF", "E_TILE0", "E_NTILES",
                 "E_ALIGNED"):
        assert layout[name] == getattr(plan, name), name


# ---------------------------------------------------------------- on a GPU: every backend against the others

GPU_SHAPES = ODD_SHAPES + [((64, 27), 0), ((256, 1152), 0), ((512, 2304), 0), ((1000, 1024), 0), ((1, 8192), 0),
                           ((512, 256, 4, 4), 1)]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n_iter", [0, 1, 2])
@pytest.mark.parametrize("u_first", [True, False])
def test_gpu_backends_agree(dtype, n_iter, u_first):
    ws, us, vs, dims = _random_group(GPU_SHAPES, dtype=dtype, seed=11, device="cuda")
    ref_out, ref_sigma, ref_u, ref_v = _float64_reference(ws, us, vs, dims, n_iter, u_first)
    for backend in ("triton", "cuda"):
        why = _backend.unavailable_reason(backend, ws[0].device, dtype, "spectral_norm")
        if why:
            pytest.fail(f"{backend} backend unavailable on the GPU: {why}")
        u2, v2 = [u.clone() for u in us], [v.clone() for v in vs]
        outs, sigma = fastgan.spectral_normalize(ws, u2, v2, dims=dims, n_power_iterations=n_iter, u_first=u_first,
                                                 backend=backend)
        assert rel_err(sigma, ref_sigma) < 1e-5, backend
        for i in range(len(ws)):
            assert rel_err(u2[i], ref_u[i]) < 1e-5, (backend, i)
            assert rel_err(v2[i], ref_v[i]) < 1e-5, (backend, i)
            assert rel_err(outs[i], ref_out[i]) < OUT_TOL[dtype] + 1e-5, (backend, i)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("backend", ["triton", "cuda"])
def test_gpu_backward_and_determinism(dtype, backend):
    ws, us, vs, dims = _random_group(GPU_SHAPES, dtype=dtype, seed=5, device="cuda")
    rs = [torch.randn_like(w, dtype=torch.float64) for w in ws]

    def run(weights, be):
        weights = [w.detach().clone().requires_grad_() for w in weights]
        u2, v2 = [u.clone() for u in us], [v.clone() for v in vs]
        outs, sigma = fastgan.spectral_normalize(weights, u2, v2, dims=dims, n_power_iterations=1, backend=be)
        loss = sum((o.double() * r).sum() for o, r in zip(outs, rs))
        return [o.detach() for o in outs] + [sigma] + u2 + v2 + list(torch.autograd.grad(loss, weights))

    first, second = run(ws, backend), run(ws, backend)
    for a, b in zip(first, second):
        assert torch.equal(a, b), "two runs on the same input differ: a race or a non-deterministic reduction"
    expected = run([w.double() for w in ws], "torch")
    for g, e in zip(first[-len(ws):], expected[-len(ws):]):
        assert rel_err(g, e) < OUT_TOL[dtype] * 2 + 1e-5


@pytest.mark.gpu
def test_gpu_unaligned_weights(small_tiles):
    base = torch.randn(1 << 16, device="cuda")
    ws = [base[1:1 + 33 * 70].view(33, 70), base[5:5 + 64 * 128].view(64, 128).t(), base[8:8 + 9 * 31].view(9, 31)]
    us = [F.normalize(torch.randn(w.shape[0], device="cuda"), dim=0) for w in ws]
    vs = [F.normalize(torch.randn(w.shape[1], device="cuda"), dim=0) for w in ws]
    ref_out, ref_sigma, _, _ = _float64_reference(ws, us, vs, [0, 0, 0], 2)
    for backend in ("triton", "cuda"):
        outs, sigma = fastgan.spectral_normalize(ws, [u.clone() for u in us], [v.clone() for v in vs],
                                                 n_power_iterations=2, backend=backend)
        assert rel_err(sigma, ref_sigma) < 1e-5
        for o, r in zip(outs, ref_out):
            assert rel_err(o, r) < 1e-5


@pytest.mark.gpu
def test_gpu_auto_picks_cuda_then_triton():
    dev = torch.device("cuda")
    expected = "cuda" if _backend.unavailable_reason("cuda", dev, torch.float32) is None else "triton"
    assert _backend.resolve("spectral_norm", dev, torch.float32) == expected
