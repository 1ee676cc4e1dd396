"""Conditional batch norm: batch statistics per channel, a per-sample (N, C) or per-channel (C,) scale and shift,
an optional fused ReLU / leaky ReLU; the functional op, its eager reference, dispatch to the Triton and CUDA
kernels, torch.library registration, autograd (double backward included) and statistics synced across processes.

    y = act((x - mean_c) / sqrt(var_c + eps) * weight[n, c] + bias[n, c])

Training uses the batch's mean and biased variance over (N, H, W) and updates the running statistics in place
(unbiased variance, ``momentum``), as ``F.batch_norm``; eval uses the running statistics. Plain BatchNorm2d is
the per-channel case; BigGAN's ``ccbn`` and StudioGAN's ``ConditionalBatchNorm2d`` are the per-sample case.

The kernel backends run the training forward in two passes over x (statistics; then normalise, scale, shift and
activate) and the backward in two (per-(n, c) sums of g = dy act'(z) and g xhat; then dx):
see ``fastgan/kernels/cond_batch_norm.py``. Registered ops (used when traced by torch.compile/export; eager
calls run the same implementations behind an autograd.Function): ``fastgan::cond_batch_norm_stats`` (batch
statistics (2, C) = (mean, invstd); mutates the running statistics), ``fastgan::cond_batch_norm`` (y from x and
those statistics, differentiable: its backward is the full batch-norm gradient) and
``fastgan::cond_batch_norm_backward``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import _backend

OP = "cond_batch_norm"
_backend.register_op(OP, ("torch", "triton", "cuda"))

ACTIVATIONS = {None: 0, "relu": 1, "leaky_relu": 2}
_DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_INT32_MAX = 2 ** 31 - 1


@dataclass(frozen=True)
class Config:
    """Everything about a call but its tensors."""

    training: bool
    momentum: float
    eps: float
    act: int
    slope: float
    backend: str
    group: object = None  # a torch.distributed process group when statistics are synced, else None
    sync: bool = False


# ---------------------------------------------------------------- layout


def _layout(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(x in a layout the kernels read, channels_last). Other layouts are copied to NCHW."""
    if x.is_contiguous():
        return x, False
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.contiguous(), False


def _like_layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()


def _dims(x: torch.Tensor) -> tuple[int, int, int]:
    shape = x.shape
    if len(shape) == 4:
        return shape[0], shape[1], shape[2] * shape[3]
    return shape[0], shape[1], math.prod(shape[2:])


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _params(t, N, C, dtype):
    """weight or bias as an (N, C) or (1, C) matrix of dtype (None stays None)."""
    if t is None:
        return None
    return t.to(dtype).reshape(-1 if t.dim() == 2 else 1, C)


# ---------------------------------------------------------------- reference (eager torch) implementation


def _act(z, act, slope):
    if act == 1:
        return torch.relu(z)
    if act == 2:
        return torch.nn.functional.leaky_relu(z, slope)
    return z


def _act_grad(g, z, act, slope):
    if act == 1:
        return torch.where(z <= 0, torch.zeros((), dtype=g.dtype, device=g.device), g)
    if act == 2:
        return torch.where(z > 0, g, g * slope)
    return g


def _batch_moments(x):
    """(mean, M2) per channel over (N, HW), in the accumulation dtype; x is (N, C, HW)."""
    mean = x.mean(dim=(0, 2))
    m2 = (x - mean[None, :, None]).square().sum(dim=(0, 2))
    return mean, m2


def _ref_forward(x, weight, bias, stats, cfg):
    """y from x (N, C, ...) in the accumulation dtype and ``stats`` (2, C) = (mean, invstd): a new tensor (not a
    view of one, which in-place activations on the output could not modify), laid out like x."""
    N, C = x.shape[0], x.shape[1]
    tail = (1,) * (x.dim() - 2)
    scale = stats[1].view(1, C, *tail)
    if weight is not None:
        scale = _params(weight, N, C, x.dtype).view(-1, C, *tail) * scale
    z = (x - stats[0].view(1, C, *tail)) * scale
    if bias is not None:
        z = z + _params(bias, N, C, x.dtype).view(-1, C, *tail)
    return _act(z, cfg.act, cfg.slope)


def _composite_backward(gy, x, weight, bias, stats, cfg, inv_m=None, reduce_sums=None):
    """(dx, dweight, dbias) from differentiable torch ops; x, gy are (N, C, HW) in the accumulation dtype.

    With ``stats`` None (training) mean and invstd are recomputed from x, so that the result is differentiable
    in x as well (double backward). ``reduce_sums`` all-reduces (S1, S2) across processes when synced.
    """
    N, C, HW = x.shape
    eval_mode = not cfg.training
    if stats is None:
        mean, m2 = _batch_moments(x)
        invstd = torch.rsqrt(m2 / (N * HW) + cfg.eps)
    else:
        mean, invstd = stats[0], stats[1]
    gamma = _params(weight, N, C, x.dtype) if weight is not None else torch.ones((1, C), dtype=x.dtype,
                                                                                  device=x.device)
    xhat = (x - mean[None, :, None]) * invstd[None, :, None]
    z = xhat * gamma[:, :, None]
    if bias is not None:
        z = z + _params(bias, N, C, x.dtype)[:, :, None]
    g = _act_grad(gy, z, cfg.act, cfg.slope)
    a = g.sum(dim=2)
    b = (g * xhat).sum(dim=2)
    if eval_mode:
        dx = g * (gamma * invstd[None, :])[:, :, None]
    else:
        s12 = torch.stack([(gamma * a).sum(0), (gamma * b).sum(0)])
        if reduce_sums is not None:
            s12 = reduce_sums(s12)
        inv_m = 1.0 / (N * HW) if inv_m is None else inv_m
        dx = invstd[None, :, None] * (gamma[:, :, None] * g - (s12[0][None, :, None]
                                                               + xhat * s12[1][None, :, None]) * inv_m)
    dw = db = None
    if weight is not None:
        dw = (b if weight.dim() == 2 else b.sum(0)).to(weight.dtype)
    if bias is not None:
        db = (a if bias.dim() == 2 else a.sum(0)).to(bias.dtype)
    return dx, dw, db


# ---------------------------------------------------------------- kernel stages (triton / cuda)


def _stream(device):
    return torch.cuda.current_stream(device).cuda_stream


def _f32(t):
    if t is None or (t.dtype == torch.float32 and t.is_contiguous()):
        return t
    return t.to(torch.float32).contiguous()


def _ptr(t):
    return 0 if t is None else t.data_ptr()


def _kernel_params(weight, bias, N, C):
    """weight and bias as float32 for the kernels, which index both with one stride: a per-channel one paired
    with a per-sample one is expanded to (N, C)."""
    w, b = _f32(weight), _f32(bias)
    if w is not None and b is not None and w.dim() != b.dim():
        if w.dim() == 1:
            w = w.expand(N, C).contiguous()
        else:
            b = b.expand(N, C).contiguous()
    return w, b


def _w_stride(weight, bias, C):
    t = weight if weight is not None else bias
    return C if t is not None and t.dim() == 2 else 0


def _kernel_moments(x, cl, backend, running_mean=None, running_var=None, momentum=0.0, eps=0.0, raw=False):
    """stats (2, C) float32: (mean, invstd) updating the running statistics, or (mean, M2) when ``raw``."""
    N, C, HW = _dims(x)
    dev = x.device
    part = torch.empty((N, C, 2), dtype=torch.float32, device=dev)
    stats = torch.empty((2, C), dtype=torch.float32, device=dev)
    if backend == "triton":
        from ..kernels import cond_batch_norm as tk

        tk.partial_stats(x, part, cl)
        tk.finalize_stats(part, stats, running_mean, running_var, N, C, HW, momentum, eps, raw)
    else:
        ext, st = _backend.extension(), _stream(dev)
        ext.cbn_partial_stats(x.data_ptr(), part.data_ptr(), N, C, HW, cl, _DTYPE_CODE[x.dtype], dev.index, st)
        ext.cbn_finalize_stats(part.data_ptr(), stats.data_ptr(), _ptr(running_mean), _ptr(running_var), N, C, HW,
                               float(momentum), float(eps), running_mean is not None and not raw, raw, dev.index, st)
    return stats


def _kernel_apply(x, cl, mean, stat, weight, bias, cfg, eval_mode):
    N, C, HW = _dims(x)
    y = torch.empty_like(x)
    ws = _w_stride(weight, bias, C)
    if cfg.backend == "triton":
        from ..kernels import cond_batch_norm as tk

        tk.apply(x, y, mean, stat, weight, bias, ws, cl, cfg.act, cfg.slope, eval_mode, cfg.eps)
    else:
        dev = x.device
        _backend.extension().cbn_apply(x.data_ptr(), y.data_ptr(), mean.data_ptr(), stat.data_ptr(), _ptr(weight),
                                       _ptr(bias), N, C, HW, ws, cl, cfg.act, float(cfg.slope), eval_mode,
                                       float(cfg.eps), _DTYPE_CODE[x.dtype], dev.index, _stream(dev))
    return y


def _kernel_backward(gy, x, cl, weight, bias, stats, cfg, inv_m=None, reduce_sums=None, per_sample=(False, False)):
    N, C, HW = _dims(x)
    dev = x.device
    eval_mode = not cfg.training
    ws = _w_stride(weight, bias, C)
    sums = torch.empty((N, C, 2), dtype=torch.float32, device=dev)
    k = torch.empty((4, C), dtype=torch.float32, device=dev)
    dx = torch.empty_like(x)
    mean, stat = stats[0], stats[1]
    inv_m = 1.0 / (N * HW) if inv_m is None else inv_m
    if cfg.backend == "triton":
        from ..kernels import cond_batch_norm as tk

        tk.backward_reduce(gy, x, mean, stat, weight, bias, sums, ws, cl, cfg.act, cfg.slope, eval_mode, cfg.eps)
        tk.backward_finalize(sums, weight, k, N, C, ws)
        if reduce_sums is not None and not eval_mode:
            k[:2] = reduce_sums(k[:2])
        tk.backward_dx(gy, x, mean, stat, weight, bias, k, dx, ws, cl, cfg.act, cfg.slope, eval_mode, cfg.eps,
                       inv_m)
    else:
        ext = _backend.extension()
        code, st = _DTYPE_CODE[x.dtype], _stream(dev)
        ext.cbn_backward_reduce(gy.data_ptr(), x.data_ptr(), mean.data_ptr(), stat.data_ptr(), _ptr(weight),
                                _ptr(bias), sums.data_ptr(), N, C, HW, ws, cl, cfg.act, float(cfg.slope), eval_mode,
                                float(cfg.eps), code, dev.index, st)
        ext.cbn_backward_finalize(sums.data_ptr(), _ptr(weight), k.data_ptr(), N, C, ws, dev.index, st)
        if reduce_sums is not None and not eval_mode:
            k[:2] = reduce_sums(k[:2])
        ext.cbn_backward_dx(gy.data_ptr(), x.data_ptr(), mean.data_ptr(), stat.data_ptr(), _ptr(weight), _ptr(bias),
                            k.data_ptr(), dx.data_ptr(), N, C, HW, ws, cl, cfg.act, float(cfg.slope), eval_mode,
                            float(cfg.eps), float(inv_m), code, dev.index, st)
    dw = db = None
    if weight is not None:
        dw = sums[:, :, 1] if per_sample[0] else k[2]
    if bias is not None:
        db = sums[:, :, 0] if per_sample[1] else k[3]
    return dx, dw, db


# ---------------------------------------------------------------- synced statistics


def _all_gather_moments(count, mean, m2, group):
    """Merge per-process (count, mean, M2) of every channel (count-weighted Chan merge, fixed rank order)."""
    import torch.distributed as dist

    local = torch.cat([mean.new_full((1,), float(count)), mean, m2])
    parts = [torch.empty_like(local) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    allp = torch.stack(parts)
    C = mean.numel()
    counts, means, m2s = allp[:, :1], allp[:, 1:1 + C], allp[:, 1 + C:]
    total = counts.sum()
    g_mean = (counts * means).sum(0) / total
    g_m2 = m2s.sum(0) + (counts * (means - g_mean).square()).sum(0)
    return total, g_mean, g_m2


def _all_reduce(t, group):
    import torch.distributed as dist

    t = t.contiguous()
    dist.all_reduce(t, group=group)
    return t


def _update_running(running_mean, running_var, mean, m2, count, momentum):
    with torch.no_grad():
        running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype), alpha=momentum)
        running_var.mul_(1 - momentum).add_((m2 / (count - 1)).to(running_var.dtype), alpha=momentum)


# ---------------------------------------------------------------- forward / backward implementations


def _stats_impl(x, running_mean, running_var, cfg):
    """(stats, inv_m) of a training call: stats (2, C) = (mean, invstd) of the batch (over every process when
    synced), the running statistics updated; inv_m = 1 / the number of values per channel."""
    x, cl = _layout(x)
    N, C, HW = _dims(x)
    running = running_mean is not None
    count = N * HW
    if cfg.backend == "torch" or cfg.sync:
        if cfg.backend == "torch":
            mean, m2 = _batch_moments(x.reshape(N, C, HW).to(_acc_dtype(x)))
        else:
            mean, m2 = _kernel_moments(x, cl, cfg.backend, raw=True)
        if cfg.sync:
            count, mean, m2 = _all_gather_moments(count, mean, m2, cfg.group)
        if running:
            _update_running(running_mean, running_var, mean, m2, count, cfg.momentum)
        return torch.stack([mean, torch.rsqrt(m2 / count + cfg.eps)]), 1.0 / float(count)
    # the kernel updates the running statistics when they are float32 and contiguous, else a float32 copy
    direct = running and all(t.dtype == torch.float32 and t.is_contiguous() for t in (running_mean, running_var))
    if direct or not running:
        stats = _kernel_moments(x, cl, cfg.backend, running_mean, running_var, cfg.momentum, cfg.eps)
        if running:
            torch.autograd.graph.increment_version([running_mean, running_var])  # written through raw pointers
    else:
        rm, rv = running_mean.float().contiguous(), running_var.float().contiguous()
        stats = _kernel_moments(x, cl, cfg.backend, rm, rv, cfg.momentum, cfg.eps)
        with torch.no_grad():
            running_mean.copy_(rm)
            running_var.copy_(rv)
    return stats, 1.0 / float(count)


def _eval_stats(x, running_mean, running_var):
    acc = _acc_dtype(x)
    return torch.stack([running_mean.to(acc), running_var.to(acc)])


def _apply_impl(x, weight, bias, mean, stat, cfg):
    """y from the statistics: mean and invstd in training, running mean and running var in eval."""
    x, cl = _layout(x)
    N, C, HW = _dims(x)
    if cfg.backend == "torch":
        acc = _acc_dtype(x)
        st = torch.stack([mean, stat] if cfg.training else [mean.to(acc), torch.rsqrt(stat.to(acc) + cfg.eps)])
        return _like_layout(_ref_forward(x.to(acc), weight, bias, st.to(acc), cfg).to(x.dtype), cl)
    return _kernel_apply(x, cl, _f32(mean), _f32(stat), *_kernel_params(weight, bias, N, C), cfg, not cfg.training)


def _backward_impl(gy, x, weight, bias, stats, cfg, inv_m):
    """(dx, dweight, dbias) without recording a graph; dweight/dbias None where weight/bias are None."""
    x, cl = _layout(x)
    N, C, HW = _dims(x)
    reduce_sums = (lambda t: _all_reduce(t, cfg.group)) if cfg.sync and cfg.training else None
    if cfg.backend == "torch":
        acc = _acc_dtype(x)
        st = stats
        if not cfg.training:
            st = torch.stack([stats[0], torch.rsqrt(stats[1] + cfg.eps)])
        dx, dw, db = _composite_backward(gy.reshape(N, C, HW).to(acc), x.reshape(N, C, HW).to(acc), weight, bias,
                                         st, cfg, inv_m, reduce_sums)
        dx = dx.to(x.dtype).reshape(x.shape)
        return (dx.contiguous(memory_format=torch.channels_last) if cl else dx), dw, db
    gy = _like_layout(gy.to(x.dtype), cl)
    per_sample = (weight is not None and weight.dim() == 2, bias is not None and bias.dim() == 2)
    dx, dw, db = _kernel_backward(gy, x, cl, *_kernel_params(weight, bias, N, C), stats, cfg, inv_m, reduce_sums,
                                  per_sample)
    if dw is not None:
        dw = dw.to(weight.dtype)
    if bias is not None:
        db = db.to(bias.dtype)
    return dx, dw, db


def _double_backward_grads(gy, x, weight, bias, stats, cfg):
    """The gradients as differentiable torch ops of (gy, x, weight, bias): used while a graph is recorded."""
    if cfg.sync and cfg.training:
        raise NotImplementedError("conditional_batch_norm: double backward (create_graph=True) through statistics "
                                  "synced across processes is not supported; use sync=False in the penalty pass")
    N, C, HW = _dims(x)
    acc = _acc_dtype(x)
    st = None
    if not cfg.training:
        st = torch.stack([stats[0], torch.rsqrt(stats[1] + cfg.eps)]).to(acc)
    dx, dw, db = _composite_backward(gy.reshape(N, C, HW).to(acc), x.reshape(N, C, HW).to(acc), weight, bias, st,
                                     cfg)
    return dx.to(x.dtype).reshape(x.shape), dw, db


# ---------------------------------------------------------------- torch.library registration (traced calls)


@torch.library.custom_op("fastgan::cond_batch_norm_stats", mutates_args=("running_mean", "running_var"))
def _stats_op(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None, momentum: float,
              eps: float, backend: str) -> torch.Tensor:
    return _stats_impl(x, running_mean, running_var, Config(True, momentum, eps, 0, 0.0, backend))[0]


@_stats_op.register_fake
def _(x, running_mean, running_var, momentum, eps, backend):
    return x.new_empty((2, x.shape[1]), dtype=_acc_dtype(x))


def _fake_like_layout(x):
    cl = not x.is_contiguous() and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.empty_like(x, memory_format=torch.channels_last if cl else torch.contiguous_format)


@torch.library.custom_op("fastgan::cond_batch_norm", mutates_args=())
def _apply_op(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, stats: torch.Tensor,
              training: bool, eps: float, act: int, slope: float, backend: str) -> torch.Tensor:
    return _apply_impl(x, weight, bias, stats[0], stats[1], Config(training, 0.0, eps, act, slope, backend))


@_apply_op.register_fake
def _(x, weight, bias, stats, training, eps, act, slope, backend):
    return _fake_like_layout(x)


@torch.library.custom_op("fastgan::cond_batch_norm_backward", mutates_args=())
def _cbn_backward_op(gy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                     stats: torch.Tensor, training: bool, eps: float, act: int, slope: float,
                     backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = Config(training, 0.0, eps, act, slope, backend)
    N, _, HW = _dims(x)
    dx, dw, db = _backward_impl(gy, x, weight, bias, stats, cfg, 1.0 / (N * HW))
    # outputs of a custom op may not alias: the kernels' dweight and dbias can be views of one buffer, and a
    # missing weight and bias each get their own empty placeholder
    return dx, (_no_grad_placeholder(x) if dw is None else dw.clone()), (
        _no_grad_placeholder(x) if db is None else db.clone())


def _no_grad_placeholder(x):
    return x.new_empty((0,), dtype=torch.float32)


@_cbn_backward_op.register_fake
def _(gy, x, weight, bias, stats, training, eps, act, slope, backend):
    return (_fake_like_layout(x), _no_grad_placeholder(x) if weight is None else torch.empty_like(weight),
            _no_grad_placeholder(x) if bias is None else torch.empty_like(bias))


def _op_setup_context(ctx, inputs, output):
    x, weight, bias, stats, training, eps, act, slope, backend = inputs
    ctx.save_for_backward(x, weight, bias, stats)
    ctx.cfg = Config(training, 0.0, eps, act, slope, backend)


def _op_backward(ctx, gy):
    x, weight, bias, stats = ctx.saved_tensors
    cfg = ctx.cfg
    if torch.is_grad_enabled():
        dx, dw, db = _double_backward_grads(gy, x, weight, bias, stats, cfg)
    else:
        dx, dw, db = torch.ops.fastgan.cond_batch_norm_backward(gy, x, weight, bias, stats, cfg.training, cfg.eps,
                                                                cfg.act, cfg.slope, cfg.backend)
        dw = None if weight is None else dw
        db = None if bias is None else db
    # stats is a function of x whose gradient the formula above already includes
    return dx, dw, db, None, None, None, None, None, None


_apply_op.register_autograd(_op_backward, setup_context=_op_setup_context)


# ---------------------------------------------------------------- eager path


def _forward(x, weight, bias, running_mean, running_var, cfg, save=True):
    """(y, stats, inv_m) of an eager call; in eval, stats is a copy of the running statistics (None unless
    ``save``: the backward must not see them change)."""
    if cfg.training:
        stats, inv_m = _stats_impl(x, running_mean, running_var, cfg)
        return _apply_impl(x, weight, bias, stats[0], stats[1], cfg), stats, inv_m
    stats = _eval_stats(x, running_mean, running_var) if save else None
    y = _apply_impl(x, weight, bias, running_mean, running_var, cfg)
    N, _, HW = _dims(x)
    return y, stats, 1.0 / max(N * HW, 1)  # (eval does not use inv_m; an empty batch has none)


class _CondBatchNorm(torch.autograd.Function):
    """Eager twin of ``fastgan::cond_batch_norm`` and its autograd (same implementation functions); also the path
    of synced statistics, whose collectives are not traced."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, cfg):
        y, stats, inv_m = _forward(x, weight, bias, running_mean, running_var, cfg)
        ctx.save_for_backward(x, weight, bias, stats)
        ctx.cfg, ctx.inv_m = cfg, inv_m
        # an output that is a view of something made here cannot be modified in place afterwards (F.relu_, a
        # shared nn.ReLU(inplace=True)): the implementations return new tensors, and this keeps it so
        return y.clone() if y._is_view() else y

    @staticmethod
    def backward(ctx, gy):
        x, weight, bias, stats = ctx.saved_tensors
        if torch.is_grad_enabled():
            dx, dw, db = _double_backward_grads(gy, x, weight, bias, stats, ctx.cfg)
        else:
            dx, dw, db = _backward_impl(gy, x, weight, bias, stats, ctx.cfg, ctx.inv_m)
        need = ctx.needs_input_grad
        return (dx if need[0] else None, dw if need[1] else None, db if need[2] else None, None, None, None)


# ---------------------------------------------------------------- validation


def _activation_code(activation, negative_slope):
    if isinstance(activation, tuple) and len(activation) == 2 and activation[0] == "leaky_relu":
        activation, negative_slope = activation
    if activation not in ACTIVATIONS:
        raise ValueError(f"conditional_batch_norm: activation must be None, 'relu' or 'leaky_relu' (or "
                         f"('leaky_relu', slope)), got {activation!r}")
    if not (isinstance(negative_slope, (int, float)) and math.isfinite(negative_slope)):
        raise ValueError(f"conditional_batch_norm: negative_slope must be a finite number, got {negative_slope!r}")
    if ACTIVATIONS[activation] == 2 and negative_slope <= 0:
        raise ValueError(f"conditional_batch_norm: leaky_relu needs negative_slope > 0, got {negative_slope} (use "
                         "'relu' for 0)")
    return ACTIVATIONS[activation], float(negative_slope)


def _check(x, weight, bias, running_mean, running_var, training, momentum, eps):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"conditional_batch_norm: x must be a tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"conditional_batch_norm: x must have shape (N, C, ...) with at least 2 dimensions, got "
                         f"shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise TypeError(f"conditional_batch_norm: x has dtype {x.dtype}; use float32, float16, bfloat16 or float64")
    N, C, HW = _dims(x)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"conditional_batch_norm: {name} must be a floating-point tensor or None")
        if t.device != x.device:
            raise ValueError(f"conditional_batch_norm: {name} is on {t.device} but x is on {x.device}")
        if tuple(t.shape) not in ((C,), (N, C)):
            raise ValueError(f"conditional_batch_norm: {name} has shape {tuple(t.shape)}; expected ({C},) per channel "
                             f"or ({N}, {C}) per sample for x of shape {tuple(x.shape)} (C = {C})")
    if (running_mean is None) != (running_var is None):
        raise ValueError("conditional_batch_norm: give both running_mean and running_var, or neither")
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"conditional_batch_norm: {name} must be a floating-point tensor")
        if tuple(t.shape) != (C,):
            raise ValueError(f"conditional_batch_norm: {name} has shape {tuple(t.shape)}, expected ({C},) for x with "
                             f"{C} channels")
        if t.device != x.device:
            raise ValueError(f"conditional_batch_norm: {name} is on {t.device} but x is on {x.device}")
    if not training and running_mean is None:
        raise ValueError("conditional_batch_norm: running_mean and running_var are needed when training=False")
    if training and N * HW <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
    if not (isinstance(eps, (int, float)) and 0 < eps < float("inf")):
        raise ValueError(f"conditional_batch_norm: eps must be a positive finite number, got {eps!r}")
    if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise ValueError(f"conditional_batch_norm: momentum must be a number in [0, 1], got {momentum!r} (the "
                         "modules turn momentum=None into the cumulative average)")


def _check_finite(tensors):
    bad = [name for name, t in tensors if t is not None and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"conditional_batch_norm: non-finite values (NaN or Inf) in {', '.join(bad)}")


def _resolve(x, backend):
    name = _backend.resolve(OP, x.device, x.dtype, backend)
    if name != "torch" and x.numel() == 0:  # nothing to launch: the reference returns the empty result
        return "torch"
    if name != "torch":
        N, C, HW = _dims(x)
        if C * HW > _INT32_MAX or N * C > _INT32_MAX:
            if _backend.requested(backend) != "auto":
                raise _backend.BackendUnavailable(f"conditional_batch_norm: the {name} backend indexes a sample and "
                                                  f"the (N, C) statistics with 32-bit integers; x of shape "
                                                  f"{tuple(x.shape)} is too large (use backend='torch')")
            return "torch"
    return name


def _traced(x):
    return torch.compiler.is_compiling() or type(x) not in (torch.Tensor, torch.nn.Parameter)


# ---------------------------------------------------------------- public functional API


def conditional_batch_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                           running_mean: torch.Tensor | None = None, running_var: torch.Tensor | None = None,
                           training: bool = True, momentum: float = 0.1, eps: float = 1e-5,
                           activation: str | tuple | None = None, negative_slope: float = 0.01, *,
                           sync: bool = False, process_group=None, backend: str | None = None,
                           check_finite: bool = False) -> torch.Tensor:
    """Batch norm with a per-sample or per-channel affine and a fused activation.

    Args:
        x: (N, C, ...) float32, float16 or bfloat16 (float64 on the torch backend), NCHW-contiguous or
            channels_last (other layouts are copied).
        weight, bias: the scale gamma and shift beta, per channel (C,) or per sample (N, C) (BigGAN's
            ``1 + linear(y)`` and ``linear(y)``, or an embedding of class labels); None for 1 and 0.
            Differentiable; computed in float32.
        running_mean, running_var: (C,) running statistics, updated in place when ``training`` (unbiased
            variance); required when ``training`` is False, optional otherwise.
        training: normalise with the batch statistics (True) or the running ones (False).
        momentum: weight of the batch in the running update, in [0, 1].
        eps: added to the variance.
        activation: None, 'relu' or 'leaky_relu' (slope ``negative_slope``; ``('leaky_relu', 0.2)`` also works).
        sync: combine the statistics over the processes of ``process_group`` (torch.distributed, default group)
            like ``nn.SyncBatchNorm``; the backward reduces its sums across them too. Eager only.
        backend: 'torch', 'triton', 'cuda' or 'auto' (default: see ``fastgan.use_backend``).
        check_finite: raise if x, weight or bias holds NaN or Inf (a pass and a host sync).

    Returns:
        y shaped, typed and laid out like x. Double backward is supported (except with ``sync``).
    """
    _check(x, weight, bias, running_mean, running_var, training, momentum, eps)
    act, slope = _activation_code(activation, negative_slope)
    if check_finite:
        _check_finite((("x", x), ("weight", weight), ("bias", bias)))
    name = _resolve(x, backend)
    if sync:
        import torch.distributed as dist

        if _traced(x):
            raise RuntimeError("conditional_batch_norm: sync=True runs eagerly only; it cannot be traced by "
                               "torch.compile (compile the rest, or use sync=False)")
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("conditional_batch_norm: sync=True needs torch.distributed to be initialised "
                               "(dist.init_process_group)")
        sync = training and dist.get_world_size(process_group) > 1
    cfg = Config(bool(training), float(momentum), float(eps), act, slope, name, process_group if sync else None,
                 bool(sync))
    if _traced(x):
        if cfg.training:
            stats = torch.ops.fastgan.cond_batch_norm_stats(x.detach(), running_mean, running_var, cfg.momentum,
                                                            cfg.eps, name)
        else:
            stats = _eval_stats(x, running_mean, running_var)
        return torch.ops.fastgan.cond_batch_norm(x, weight, bias, stats, cfg.training, cfg.eps, act, slope, name)
    needs_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if needs_grad:
        return _CondBatchNorm.apply(x, weight, bias, running_mean, running_var, cfg)
    return _forward(x, weight, bias, running_mean, running_var, cfg, save=False)[0]
