"""The gradient-penalty ops: the per-sample interpolation of real and fake samples, and the penalty of a gradient
g = dD/dx with its seed gradient; dispatch to the Triton and CUDA kernels, torch.library registration and autograd.

    interpolate_samples(real, fake, eps) = eps_n real_n + (1 - eps_n) fake_n
    penalty_of_gradient(g, 'norm')       = weight mean_n (||g_n|| - center)^2    (one-sided: max(., 0))
    penalty_of_gradient(g, 'squared')    = weight / 2 mean_n ||g_n||^2           (R1 / R2: weight = gamma)

Norms are accumulated in float32; the seed gradient of the norm penalty is 2 weight (||g_n|| - center) g_n /
(N ||g_n||), 0 where ||g_n|| = 0 (as torch's norm backward). The high-level penalties that call a discriminator
are in ``fastgan/penalties.py``.

The op's files: ``gradient_penalty_reference.py`` (eager reference), this file (host code),
``fastgan/kernels/gradient_penalty.py`` (Triton kernels), ``gradient_penalty_cuda.py`` (the CUDA kernels of
``csrc/gradient_penalty.cu`` behind the same launchers). Registered ops: ``fastgan::gradient_penalty_interpolate``
and ``fastgan::gradient_penalty`` (a 0-dim float32 penalty, and the per-sample squared norms its backward reuses;
its backward is the seed gradient, from differentiable
torch ops while a double backward is recorded), and their backwards ``fastgan::gradient_penalty_interpolate_backward``
and ``fastgan::gradient_penalty_backward`` (what traced backwards call).
"""
from __future__ import annotations

import torch

from .. import _backend
from . import _op
from . import gradient_penalty_reference as ref

OP = "gradient_penalty"
_backend.register_op(OP, ("torch", "triton", "cuda"))
_LAUNCH = _op.Launchers(triton="fastgan.kernels.gradient_penalty", cuda="fastgan.ops.gradient_penalty_cuda")
KINDS = {"norm": ref.NORM, "squared": ref.SQUARED}
_INT32_MAX = 2 ** 31 - 1


# ---------------------------------------------------------------- implementations


def _interpolate_impl(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, backend: str) -> torch.Tensor:
    if backend == "torch":  # (contiguous, as the kernels write it: one layout for every backend and the fake)
        return ref.interpolate(real, fake, eps).contiguous()
    out = torch.empty_like(real, memory_format=torch.contiguous_format)
    _LAUNCH[backend].interpolate(real.contiguous(), fake.contiguous(), eps.float().contiguous(), out)
    return out


def _interpolate_setup(ctx, inputs, output):
    real, fake, eps, backend = inputs
    ctx.save_for_backward(eps)
    ctx.backend = backend


def _interpolate_backward_impl(g: torch.Tensor, eps: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    if backend == "torch":
        e = ref.per_sample(eps.to(ref.acc_dtype(g.dtype)), g)
        return (e * g).to(g.dtype).contiguous(), ((1 - e) * g).to(g.dtype).contiguous()
    g = g.contiguous()
    d_real, d_fake = torch.empty_like(g), torch.empty_like(g)
    _LAUNCH[backend].interpolate_backward(g, eps.float().contiguous(), d_real, d_fake)
    return d_real, d_fake


@torch.library.custom_op("fastgan::gradient_penalty_interpolate_backward", mutates_args=())
def _interpolate_backward_op(g: torch.Tensor, eps: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return _interpolate_backward_impl(g, eps, backend)


@_interpolate_backward_op.register_fake
def _(g, eps, backend):
    return torch.empty_like(g, memory_format=torch.contiguous_format), torch.empty_like(
        g, memory_format=torch.contiguous_format)


def _interpolate_backward(ctx, g):
    (eps,) = ctx.saved_tensors
    if torch.is_grad_enabled():  # recording a double backward: differentiable torch ops
        d_real, d_fake = _interpolate_backward_impl(g, eps, "torch")
    elif getattr(ctx, "traced", False):
        d_real, d_fake = torch.ops.fastgan.gradient_penalty_interpolate_backward(g, eps, ctx.backend)
    else:
        d_real, d_fake = _interpolate_backward_impl(g, eps, ctx.backend)
    return d_real, d_fake, None, None


def _squared_norms(g: torch.Tensor, backend: str) -> torch.Tensor:
    if backend == "torch":
        return ref.squared_norms(g)
    return _LAUNCH[backend].squared_norms(g.contiguous())


def _penalty_impl(g: torch.Tensor, kind: int, weight: float, center: float, one_sided: bool,
                  backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(the penalty, the per-sample squared norms (N,), which the backward reuses instead of reading g again)."""
    sq = _squared_norms(g, backend)
    return ref.penalty_of_norms(sq, kind, weight, center, one_sided), sq


def _penalty_setup(ctx, inputs, output):
    g, kind, weight, center, one_sided, backend = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(g, output[1])
    ctx.options = (kind, weight, center, one_sided)
    ctx.backend = backend


def _penalty_backward_impl(gout: torch.Tensor, g: torch.Tensor, sq: torch.Tensor, kind: int, weight: float,
                           center: float, one_sided: bool, backend: str) -> torch.Tensor:
    """The seed gradient c_n g_n gout from the forward's squared norms ``sq`` (torch ops for the torch backend)."""
    coef = ref.seed_coefficients(sq, kind, weight, center, one_sided) * gout
    if backend == "torch":
        return (ref.per_sample(coef, g) * g).to(g.dtype).contiguous()
    g = g.contiguous()
    dg = torch.empty_like(g)
    _LAUNCH[backend].scale_rows(g, coef.float().contiguous(), dg)
    return dg


@torch.library.custom_op("fastgan::gradient_penalty_backward", mutates_args=())
def _penalty_backward_op(gout: torch.Tensor, g: torch.Tensor, sq: torch.Tensor, kind: int, weight: float,
                         center: float, one_sided: bool, backend: str) -> torch.Tensor:
    return _penalty_backward_impl(gout, g, sq, kind, weight, center, one_sided, backend)


@_penalty_backward_op.register_fake
def _(gout, g, sq, kind, weight, center, one_sided, backend):
    return torch.empty_like(g, memory_format=torch.contiguous_format)


def _penalty_backward(ctx, gout, gsq):
    g, sq = ctx.saved_tensors
    if torch.is_grad_enabled():  # recording a double backward: differentiable torch ops, norms included
        dg = _penalty_backward_impl(gout, g, ref.squared_norms(g), *ctx.options, "torch")
    elif getattr(ctx, "traced", False):
        dg = torch.ops.fastgan.gradient_penalty_backward(gout, g, sq, *ctx.options, ctx.backend)
    else:
        dg = _penalty_backward_impl(gout, g, sq, *ctx.options, ctx.backend)
    return dg, None, None, None, None, None


_INTERPOLATE = _op.DifferentiableOp("gradient_penalty_interpolate", _interpolate_impl,
                                    fake=lambda real, fake, eps, backend: torch.empty_like(
                                        real, memory_format=torch.contiguous_format),
                                    setup_context=_interpolate_setup, backward=_interpolate_backward)
_PENALTY = _op.DifferentiableOp(
    "gradient_penalty", _penalty_impl,
    fake=lambda g, kind, weight, center, one_sided, backend: (g.new_empty((), dtype=ref.acc_dtype(g.dtype)),
                                                             g.new_empty(g.shape[0], dtype=ref.acc_dtype(g.dtype))),
    setup_context=_penalty_setup, backward=_penalty_backward)


# ---------------------------------------------------------------- validation and dispatch


def _resolve(t: torch.Tensor, backend, where: str) -> str:
    if t.numel() == 0:
        _backend.resolve(OP, t.device, t.dtype, backend)
        return "torch"
    return _op.resolve(OP, t.device, t.dtype, backend, where, _too_large, t)


_MAX_SAMPLE = 65535 * 1024  # the Triton kernels' grid: at most 65535 blocks of 1024 elements along a sample


def _too_large(t):
    if t.numel() > _INT32_MAX or t[0].numel() > _MAX_SAMPLE:
        return (f"takes up to 2^31 - 1 elements, {_MAX_SAMPLE} a sample; a tensor of shape {tuple(t.shape)} is too "
                "large")
    return None


def _call(op: _op.DifferentiableOp, impl, args, tensors):
    """The traced path (the registered op), the eager twin where a gradient is needed, else the implementation."""
    if _op.traced(tensors[0]):
        return op.op(*args)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return op.Function.apply(*args)
    return impl(*args)


# ---------------------------------------------------------------- public functional API


def interpolate_samples(real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor, *,
                        backend: str | None = None) -> torch.Tensor:
    """eps_n real_n + (1 - eps_n) fake_n for every sample n (WGAN-GP's interpolates), in one pass.

    Args:
        real, fake: (N, ...) of one shape, dtype (float32, float16, bfloat16; float64 on the torch backend) and
            device.
        eps: (N,) floating point, one weight per sample (float32 arithmetic).

    Returns:
        (N, ...) in the dtype of real, contiguous; differentiable in real and fake.
    """
    where = "interpolate_samples"
    for name, t in (("real", real), ("fake", fake), ("eps", eps)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{where}: {name} must be a floating-point tensor, got "
                            f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
    if real.shape != fake.shape or real.dtype != fake.dtype or real.device != fake.device:
        raise ValueError(f"{where}: real and fake must have one shape, dtype and device; got {tuple(real.shape)} "
                         f"{real.dtype} {real.device} and {tuple(fake.shape)} {fake.dtype} {fake.device}")
    if real.dim() < 1 or tuple(eps.shape) != (real.shape[0],) or eps.device != real.device:
        raise ValueError(f"{where}: eps must be one weight per sample, shape ({real.shape[0] if real.dim() else 0},) "
                         f"on {real.device}; got {tuple(eps.shape)} on {eps.device}")
    name = _resolve(real, backend, where)
    return _call(_INTERPOLATE, _interpolate_impl, (real, fake, eps.detach(), name), (real, fake))


def penalty_of_gradient(grad: torch.Tensor, kind: str = "norm", weight: float = 10.0, center: float = 1.0,
                        one_sided: bool = False, *, backend: str | None = None) -> torch.Tensor:
    """The penalty of a per-sample gradient ``grad`` = dD/dx (N, ...): ``kind='norm'``: weight mean_n
    (||g_n|| - center)^2 (``one_sided``: only norms above center; WGAN-GP, DRAGAN); ``kind='squared'``:
    weight / 2 mean_n ||g_n||^2 (R1, R2 with weight = gamma). Norms in float32 (float64 for float64 grad).

    Returns a 0-dim float32 tensor (float64 for float64 grad), differentiable in grad (the seed gradient in one
    pass; double backward through torch ops).
    """
    where = "penalty_of_gradient"
    if not isinstance(grad, torch.Tensor) or not grad.is_floating_point() or grad.dim() < 1:
        raise TypeError(f"{where}: grad must be a floating-point tensor (N, ...)")
    if kind not in KINDS:
        raise ValueError(f"{where}: kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
    for name, v in (("weight", weight), ("center", center)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not float("-inf") < v < float("inf"):
            raise ValueError(f"{where}: {name} must be a finite number, got {v!r}")
    if weight < 0:
        raise ValueError(f"{where}: weight must be >= 0 (a negative penalty rewards steep gradients), got {weight}")
    if grad.shape[0] == 0:
        raise ValueError(f"{where}: grad has no samples (shape {tuple(grad.shape)})")
    name = _resolve(grad, backend, where)
    return _call(_PENALTY, _penalty_impl, (grad, KINDS[kind], float(weight), float(center), bool(one_sided), name),
                 (grad,))[0]
