"""Conditional batch norm: batch statistics per channel, a per-sample (N, C) or per-channel (C,) scale and shift,
an optional fused activation; the functional op, dispatch to the Triton and CUDA kernels, torch.library
registration, autograd (double backward included) and statistics synced across processes.

    y = act((x - mean_c) / sqrt(var_c + eps) * weight[n, c] + bias[n, c])

Training uses the batch's mean and biased variance over (N, H, W) and updates the running statistics in place
(unbiased variance, ``momentum``), as ``F.batch_norm``; eval uses the running statistics. Plain BatchNorm2d is
the per-channel case; BigGAN's ``ccbn`` and StudioGAN's ``ConditionalBatchNorm2d`` are the per-sample case.

The op's files: ``cond_batch_norm_reference.py`` (eager torch reference, composite backward, shape helpers),
this file (host code), ``fastgan/kernels/cond_batch_norm.py`` (Triton kernels and launchers),
``cond_batch_norm_cuda.py`` with ``csrc/cond_batch_norm*.cu`` (CUDA kernels behind the same launchers). The
kernel backends run the training forward in two passes over x (statistics; then normalise, scale, shift and
activate) and the backward in two (per-(n, c) sums of g = dy act'(z) and g xhat; then dx).

Registered ops (traced calls; eager calls run the same implementations behind the eager twin):
``fastgan::cond_batch_norm_stats`` (``batch_stats`` (2, C) = (mean, invstd); mutates the running statistics, no
gradient), ``fastgan::cond_batch_norm`` (y from x and either ``batch_stats`` (training) or ``running_stats`` =
(running_mean, running_var) (eval); its backward is the whole batch-norm gradient) and
``fastgan::cond_batch_norm_backward``.
"""
from __future__ import annotations

import torch

from .. import _backend, activations
from . import _op
from . import cond_batch_norm_reference as ref
from .cond_batch_norm_reference import Config, dims, kernel_layout, like_layout

OP = "cond_batch_norm"
_backend.register_op(OP, ("torch", "triton", "cuda"))
_LAUNCH = _op.Launchers(triton="fastgan.kernels.cond_batch_norm", cuda="fastgan.ops.cond_batch_norm_cuda")
_INT32_MAX = 2 ** 31 - 1


# ---------------------------------------------------------------- kernel stages (triton / cuda)


def _f32(t):
    if t is None or (t.dtype == torch.float32 and t.is_contiguous()):
        return t
    return t.to(torch.float32).contiguous()


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


def _mean_and_stat(batch_stats, running_stats):
    """The kernels' (mean, stat, eval) arguments: stat is invstd in training, the running variance in eval.
    (batch_stats come from the kernels, or the synced merge: float32 already.)"""
    if batch_stats is not None:
        return batch_stats[0], batch_stats[1], False
    return _f32(running_stats[0]), _f32(running_stats[1]), True


def _kernel_moments(x, cl, backend, running_mean=None, running_var=None, momentum=0.0, eps=0.0, raw=False):
    """(2, C) float32: batch_stats, updating the running statistics, or (mean, M2) when ``raw``."""
    N, C, HW = dims(x)
    part = torch.empty((N, C, 2), dtype=torch.float32, device=x.device)
    stats = torch.empty((2, C), dtype=torch.float32, device=x.device)
    _LAUNCH[backend].moments(x, part, stats, running_mean, running_var, cl, momentum, eps, raw)
    return stats


def _kernel_backward(gy, x, cl, weight, bias, batch_stats, running_stats, cfg, inv_m, reduce_sums, per_sample):
    N, C, HW = dims(x)
    dev = x.device
    ws = _w_stride(weight, bias, C)
    sums = torch.empty((N, C, 2), dtype=torch.float32, device=dev)
    k = torch.empty((4, C), dtype=torch.float32, device=dev)
    dx = torch.empty_like(x)
    mean, stat, eval_mode = _mean_and_stat(batch_stats, running_stats)
    _LAUNCH[cfg.backend].backward(gy, x, mean, stat, weight, bias, sums, k, dx, ws, cl, cfg.act, cfg.slope,
                                  eval_mode, cfg.eps, 1.0 / (N * HW) if inv_m is None else inv_m,
                                  None if eval_mode else reduce_sums)
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


def _stats_impl(x, running_mean, running_var, cfg, moments=None):
    """(batch_stats, inv_m) of a training call: (mean, invstd) of the batch (over every process when synced), the
    running statistics updated; inv_m = 1 / the number of values per channel. ``moments``: (count, mean, M2) of x
    computed by the op that wrote x (``conv_transpose2d(bn_stats=True)``), used instead of a pass over x."""
    x, cl = kernel_layout(x)
    N, C, HW = dims(x)
    running = running_mean is not None
    count = N * HW
    if cfg.backend == "torch" or cfg.sync or moments is not None:
        if moments is not None:
            mean, m2 = (moments[i].to(_op.acc_dtype(x.dtype)) for i in (1, 2))
        elif cfg.backend == "torch":
            mean, m2 = ref.batch_moments(x.reshape(N, C, HW).to(_op.acc_dtype(x.dtype)))
        else:
            mean, m2 = _kernel_moments(x, cl, cfg.backend, raw=True)
        if cfg.sync:
            count, mean, m2 = _all_gather_moments(count, mean, m2, cfg.process_group)
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


def _apply_impl(x, weight, bias, batch_stats, running_stats, cfg):
    """y, normalised with ``batch_stats`` (training) or ``running_stats`` (eval; the other one is None)."""
    x, cl = kernel_layout(x)
    N, C, HW = dims(x)
    if cfg.backend == "torch":
        acc = _op.acc_dtype(x.dtype)
        st = batch_stats if batch_stats is not None else ref.invstd_of(running_stats, cfg.eps, acc)
        return like_layout(ref.forward(x.to(acc), weight, bias, st.to(acc), cfg).to(x.dtype), cl)
    w, b = _kernel_params(weight, bias, N, C)
    mean, stat, eval_mode = _mean_and_stat(batch_stats, running_stats)
    y = torch.empty_like(x)
    _LAUNCH[cfg.backend].apply(x, y, mean, stat, w, b, _w_stride(w, b, C), cl, cfg.act, cfg.slope, eval_mode,
                               cfg.eps)
    return y


def _backward_impl(gy, x, weight, bias, batch_stats, running_stats, cfg, inv_m):
    """(dx, dweight, dbias) without recording a graph; dweight/dbias None where weight/bias are None."""
    x, cl = kernel_layout(x)
    N, C, HW = dims(x)
    reduce_sums = (lambda t: _all_reduce(t, cfg.process_group)) if cfg.sync and cfg.training else None
    if cfg.backend == "torch":
        acc = _op.acc_dtype(x.dtype)
        st = batch_stats if batch_stats is not None else ref.invstd_of(running_stats, cfg.eps, acc)
        dx, dw, db = ref.composite_backward(gy.reshape(N, C, HW).to(acc), x.reshape(N, C, HW).to(acc), weight,
                                            bias, st, cfg, inv_m, reduce_sums)
        return like_layout(dx.to(x.dtype).reshape(x.shape), cl), dw, db
    gy = like_layout(gy.to(x.dtype), cl)
    per_sample = (weight is not None and weight.dim() == 2, bias is not None and bias.dim() == 2)
    dx, dw, db = _kernel_backward(gy, x, cl, *_kernel_params(weight, bias, N, C), batch_stats, running_stats, cfg,
                                  inv_m, reduce_sums, per_sample)
    if dw is not None:
        dw = dw.to(weight.dtype)
    if bias is not None:
        db = db.to(bias.dtype)
    return dx, dw, db


def _double_backward_grads(gy, x, weight, bias, running_stats, cfg):
    """The gradients as differentiable torch ops of (gy, x, weight, bias): used while a graph is recorded."""
    if cfg.sync and cfg.training:
        raise NotImplementedError("conditional_batch_norm: double backward (create_graph=True) through statistics "
                                  "synced across processes is not supported; use sync=False in the penalty pass")
    N, C, HW = dims(x)
    acc = _op.acc_dtype(x.dtype)
    st = None if running_stats is None else ref.invstd_of(running_stats, cfg.eps, acc)
    dx, dw, db = ref.composite_backward(gy.reshape(N, C, HW).to(acc), x.reshape(N, C, HW).to(acc), weight, bias,
                                        st, cfg)
    return dx.to(x.dtype).reshape(x.shape), dw, db


# ---------------------------------------------------------------- registration: the stats op, the differentiable op


@torch.library.custom_op("fastgan::cond_batch_norm_stats", mutates_args=("running_mean", "running_var"))
def _stats_op(x: torch.Tensor, running_mean: torch.Tensor | None, running_var: torch.Tensor | None, momentum: float,
              eps: float, backend: str, moments: torch.Tensor | None = None) -> torch.Tensor:
    return _stats_impl(x, running_mean, running_var, Config(True, momentum, eps, activations.NONE, 0.0, backend),
                       moments)[0]


@_stats_op.register_fake
def _(x, running_mean, running_var, momentum, eps, backend, moments=None):
    return x.new_empty((2, x.shape[1]), dtype=_op.acc_dtype(x.dtype))


def _fake_like_layout(x):
    cl = not x.is_contiguous() and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    return torch.empty_like(x, memory_format=torch.channels_last if cl else torch.contiguous_format)


def _no_grad_placeholder(x):
    return x.new_empty((0,), dtype=torch.float32)


@torch.library.custom_op("fastgan::cond_batch_norm_backward", mutates_args=())
def _backward_op(gy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                 batch_stats: torch.Tensor | None, running_stats: torch.Tensor | None, eps: float, act: int,
                 slope: float, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    cfg = Config(batch_stats is not None, 0.0, eps, act, slope, backend)
    N, _, HW = dims(x)
    dx, dw, db = _backward_impl(gy, x, weight, bias, batch_stats, running_stats, cfg, 1.0 / (N * HW))
    # outputs of a custom op may not alias: the kernels' dweight and dbias can be views of one buffer, and a
    # missing weight and bias each get their own empty placeholder
    return dx, (_no_grad_placeholder(x) if dw is None else dw.clone()), (
        _no_grad_placeholder(x) if db is None else db.clone())


@_backward_op.register_fake
def _(gy, x, weight, bias, batch_stats, running_stats, eps, act, slope, backend):
    return (_fake_like_layout(x), _no_grad_placeholder(x) if weight is None else torch.empty_like(weight),
            _no_grad_placeholder(x) if bias is None else torch.empty_like(bias))


def _apply_op_impl(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                   batch_stats: torch.Tensor | None, running_stats: torch.Tensor | None, eps: float, act: int,
                   slope: float, backend: str) -> torch.Tensor:
    return _apply_impl(x, weight, bias, batch_stats, running_stats,
                       Config(batch_stats is not None, 0.0, eps, act, slope, backend))


def _apply_op_fake(x, weight, bias, batch_stats, running_stats, eps, act, slope, backend):
    return _fake_like_layout(x)


def _setup_context(ctx, inputs, output):
    x, weight, bias, batch_stats, running_stats, eps, act, slope, backend = inputs
    ctx.save_for_backward(x, weight, bias, batch_stats, running_stats)
    ctx.cfg, ctx.inv_m = Config(batch_stats is not None, 0.0, eps, act, slope, backend), None


def _eager_forward(ctx, x, weight, bias, running_mean, running_var, cfg, moments=None):
    """The eager twin's forward: statistics and y in one call (the synced path's collectives are not traced);
    in eval a copy of the running statistics is saved (the backward must not see them change)."""
    batch_stats = running_stats = None
    if cfg.training:
        batch_stats, ctx.inv_m = _stats_impl(x, running_mean, running_var, cfg, moments)
        y = _apply_impl(x, weight, bias, batch_stats, None, cfg)
    else:
        acc = _op.acc_dtype(x.dtype)
        running_stats, ctx.inv_m = torch.stack([running_mean.to(acc), running_var.to(acc)]), None
        y = _apply_impl(x, weight, bias, None, (running_mean, running_var), cfg)
    ctx.save_for_backward(x, weight, bias, batch_stats, running_stats)
    ctx.cfg = cfg
    # an output that is a view of something made here cannot be modified in place afterwards (F.relu_, a shared
    # nn.ReLU(inplace=True)): the implementations return new tensors, and this keeps it so
    return y.clone() if y._is_view() else y


def _backward(ctx, gy):
    x, weight, bias, batch_stats, running_stats = ctx.saved_tensors
    cfg = ctx.cfg
    if torch.is_grad_enabled():  # recording a double backward
        dx, dw, db = _double_backward_grads(gy, x, weight, bias, running_stats, cfg)
    elif getattr(ctx, "traced", False):
        dx, dw, db = torch.ops.fastgan.cond_batch_norm_backward(gy, x, weight, bias, batch_stats, running_stats,
                                                                cfg.eps, cfg.act, cfg.slope, cfg.backend)
    else:
        dx, dw, db = _backward_impl(gy, x, weight, bias, batch_stats, running_stats, cfg, ctx.inv_m)
    need = ctx.needs_input_grad
    # the statistics are functions of x whose gradient the formula above already includes
    return (dx if need[0] else None, dw if need[1] and weight is not None else None,
            db if need[2] and bias is not None else None) + (None,) * (len(need) - 3)


_COND_BATCH_NORM = _op.DifferentiableOp("cond_batch_norm", _apply_op_impl, fake=_apply_op_fake,
                                        setup_context=_setup_context, backward=_backward,
                                        eager_forward=_eager_forward)


# ---------------------------------------------------------------- validation


def _check(x, weight, bias, running_mean, running_var, training, momentum, eps):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"conditional_batch_norm: x must be a tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise ValueError(f"conditional_batch_norm: x must have shape (N, C, ...) with at least 2 dimensions, got "
                         f"shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
        raise TypeError(f"conditional_batch_norm: x has dtype {x.dtype}; use float32, float16, bfloat16 or float64")
    N, C, HW = dims(x)
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
    if training and N * HW == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {x.shape}")
    if not (isinstance(eps, (int, float)) and 0 < eps < float("inf")):
        raise ValueError(f"conditional_batch_norm: eps must be a positive finite number, got {eps!r}")
    if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise ValueError(f"conditional_batch_norm: momentum must be a number in [0, 1], got {momentum!r} (the "
                         "modules turn momentum=None into the cumulative average)")


def _check_stats(x, stats, training):
    C = x.shape[1]
    if not training:
        raise ValueError("conditional_batch_norm: stats= replaces the batch statistics of a training call; in eval "
                         "(training=False) the running statistics normalise: leave stats out")
    if (not isinstance(stats, torch.Tensor) or tuple(stats.shape) != (3, C)
            or stats.dtype not in (torch.float32, torch.float64)):
        got = (f"{tuple(stats.shape)} {stats.dtype}" if isinstance(stats, torch.Tensor) else type(stats).__name__)
        raise ValueError(f"conditional_batch_norm: stats must be a (3, {C}) float32 (or float64) tensor (count, "
                         f"mean, M2 per channel, from conv_transpose2d(..., bn_stats=True)), got {got}")
    if stats.device != x.device:
        raise ValueError(f"conditional_batch_norm: stats is on {stats.device} but x is on {x.device}")


def _resolve(x, backend):
    if x.numel() == 0:  # nothing to launch: the reference returns the empty result
        _backend.resolve(OP, x.device, x.dtype, backend)  # (still refuses an unavailable backend)
        return "torch"
    return _op.resolve(OP, x.device, x.dtype, backend, "conditional_batch_norm", _too_large_for_kernels, x)


def _too_large_for_kernels(x):
    N, C, HW = dims(x)
    if C * HW > _INT32_MAX or N * C > _INT32_MAX:
        return (f"indexes a sample and the (N, C) statistics with 32-bit integers; x of shape {tuple(x.shape)} is "
                "too large")
    return None


def _forward_no_grad(x, weight, bias, running_mean, running_var, cfg, moments):
    if cfg.training:
        return _apply_impl(x, weight, bias, _stats_impl(x, running_mean, running_var, cfg, moments)[0], None, cfg)
    return _apply_impl(x, weight, bias, None, (running_mean, running_var), cfg)


# ---------------------------------------------------------------- public functional API


def conditional_batch_norm(x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None,
                           running_mean: torch.Tensor | None = None, running_var: torch.Tensor | None = None,
                           training: bool = True, momentum: float = 0.1, eps: float = 1e-5,
                           activation: str | tuple | None = None, negative_slope: float = 0.01, *,
                           sync: bool = False, process_group=None, backend: str | None = None,
                           check_finite: bool = False, stats: torch.Tensor | None = None) -> torch.Tensor:
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
        stats: (3, C) (count, mean, M2) of x per channel, as ``fastgan.conv_transpose2d(..., bn_stats=True)``
            returns them with x: the statistics pass over x is skipped (training only). They must be x's own.

    Returns:
        y shaped, typed and laid out like x. Double backward is supported (except with ``sync``).
    """
    _check(x, weight, bias, running_mean, running_var, training, momentum, eps)
    if stats is not None:
        _check_stats(x, stats, training)
    act, slope = activations.lookup(activation, negative_slope, "conditional_batch_norm", activations.BATCH_NORM)
    if check_finite:
        _op.check_finite("conditional_batch_norm", (("x", x), ("weight", weight), ("bias", bias)))
    name = _resolve(x, backend)
    if training and x.numel() == 0:  # as F.batch_norm: an empty result, the running statistics left alone
        return x.clone()
    if sync:
        import torch.distributed as dist

        if _op.traced(x):
            raise RuntimeError("conditional_batch_norm: sync=True runs eagerly only; it cannot be traced by "
                               "torch.compile (compile the rest, or use sync=False)")
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("conditional_batch_norm: sync=True needs torch.distributed to be initialised "
                               "(dist.init_process_group)")
        sync = training and dist.get_world_size(process_group) > 1
    cfg = Config(bool(training), float(momentum), float(eps), act.code, slope, name,
                 process_group if sync else None, bool(sync))
    if _op.traced(x):
        batch_stats = running_stats = None
        if cfg.training:
            batch_stats = torch.ops.fastgan.cond_batch_norm_stats(x.detach(), running_mean, running_var,
                                                                  cfg.momentum, cfg.eps, name, stats)
        else:
            acc = _op.acc_dtype(x.dtype)
            running_stats = torch.stack([running_mean.to(acc), running_var.to(acc)])
        return torch.ops.fastgan.cond_batch_norm(x, weight, bias, batch_stats, running_stats, cfg.eps, cfg.act,
                                                 slope, name)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return _COND_BATCH_NORM.Function.apply(x, weight, bias, running_mean, running_var, cfg, stats)
    return _forward_no_grad(x, weight, bias, running_mean, running_var, cfg, stats)
