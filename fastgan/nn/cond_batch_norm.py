"""Batch-norm modules on the fused conditional batch norm: a drop-in ``BatchNorm2d``, class-conditional
``ConditionalBatchNorm2d`` (an embedding of the labels), and ``LinearConditionalBatchNorm2d`` (BigGAN's ``ccbn``,
StudioGAN's ``ConditionalBatchNorm2d``: gain and bias linear in a conditioning vector), each with an optional fused
ReLU / leaky ReLU and statistics synced across processes.

Running statistics behave as in ``torch.nn.BatchNorm2d``: ``running_mean``, ``running_var`` and
``num_batches_tracked`` buffers, ``momentum=None`` for the cumulative average, ``track_running_stats=False`` for
batch statistics in eval too.
"""
from __future__ import annotations

import torch
from torch import nn

from .. import activations
from ..checkpoints import rename_cbn_keys_in_place
from ..ops.cond_batch_norm import conditional_batch_norm
from .spectral_norm import SNLinear


def _bn_forward(m, x: torch.Tensor, weight, bias, stats=None, opts=None) -> torch.Tensor:
    """The call of ``torch.nn.BatchNorm2d.forward`` (momentum, num_batches_tracked, eval without running stats)
    made through the fused op; ``m`` holds the usual attributes and buffers. ``stats``: x's (count, mean, M2), used
    when the call normalises with batch statistics (see ``conditional_batch_norm``). ``opts``: what holds
    activation, negative_slope, sync and process_group (default ``m``)."""
    opts = m if opts is None else opts
    if x.dim() != 4:
        raise ValueError(f"{type(m).__name__}: expected 4D input (got {x.dim()}D input)")
    if x.shape[1] != m.num_features:
        raise ValueError(f"{type(m).__name__}: expected x with {m.num_features} channels (N, {m.num_features}, H, W), "
                         f"got {tuple(x.shape)}")
    factor = 0.0 if m.momentum is None else m.momentum
    if m.training and m.track_running_stats and m.num_batches_tracked is not None:
        m.num_batches_tracked.add_(1)
        factor = 1.0 / float(m.num_batches_tracked) if m.momentum is None else m.momentum
    batch_stats = m.training or (m.running_mean is None and m.running_var is None)
    if stats is not None and not batch_stats:
        raise ValueError(f"{type(m).__name__}: stats= replaces the batch statistics of a training call; in eval the "
                         "running statistics normalise: leave stats out")
    use_running = not m.training or m.track_running_stats
    return conditional_batch_norm(x, weight, bias, m.running_mean if use_running else None,
                                  m.running_var if use_running else None, batch_stats, factor, m.eps,
                                  opts.activation, opts.negative_slope, sync=opts.sync and batch_stats,
                                  process_group=opts.process_group, stats=stats)


class _SyncOptions:
    """activation, negative_slope, sync, process_group attributes and their repr."""

    def _set_options(self, activation, negative_slope, sync, process_group):
        activations.lookup(activation, negative_slope, type(self).__name__, activations.BATCH_NORM)  # validates
        self.activation = activation
        self.negative_slope = float(negative_slope)
        self.sync = bool(sync)
        self.process_group = process_group

    def _options_repr(self) -> str:
        out = ""
        if self.activation is not None:
            out += f", activation={self.activation!r}"
            if self.activation == "leaky_relu":
                out += f", negative_slope={self.negative_slope}"
        if self.sync:
            out += ", sync=True"
        return out


class BatchNorm2d(nn.BatchNorm2d, _SyncOptions):
    """Drop-in for ``torch.nn.BatchNorm2d`` (same arguments, parameters, buffers and state-dict keys; an
    instance of it) on the fused kernels, with an optional fused activation (``activation='relu'`` or
    ``'leaky_relu'``) and ``sync=True`` for statistics combined across processes like ``nn.SyncBatchNorm``.

    Input (N, C, H, W) float32/float16/bfloat16, NCHW or channels_last; output alike.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, device=None, dtype=None, activation: str | None = None,
                 negative_slope: float = 0.01, sync: bool = False, process_group=None, **kwargs):
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype, **kwargs)
        self._set_options(activation, negative_slope, sync, process_group)

    def forward(self, input: torch.Tensor, stats: torch.Tensor | None = None) -> torch.Tensor:
        """``stats``: the input's per-channel (count, mean, M2) where the op that made it computed them
        (``fastgan.conv_transpose2d(..., bn_stats=True)``): the statistics pass is skipped."""
        return _bn_forward(self, input, self.weight, self.bias, stats)

    def extra_repr(self) -> str:
        return super().extra_repr() + self._options_repr()


class _ConditionalBase(nn.Module, _SyncOptions):
    def __init__(self, num_features, eps, momentum, track_running_stats, activation, negative_slope, sync,
                 process_group, device=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.track_running_stats = track_running_stats
        self._set_options(activation, negative_slope, sync, process_group)
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, device=device))
            self.register_buffer("running_var", torch.ones(num_features, device=device))
            self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=device))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def _check_x(self, x):
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.num_features:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{type(self).__name__}: expected x of shape (N, {self.num_features}, H, W), got {shape}")

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"track_running_stats={self.track_running_stats}" + self._options_repr())


class ConditionalBatchNorm2d(_ConditionalBase):
    """Class-conditional batch norm: ``y = act(BN(x) * weight[labels] + bias[labels])``.

    Parameters ``weight`` and ``bias`` of shape (num_classes, num_features), initialised to 1 and 0 (each class
    starts as plain batch norm). ``forward(x, labels)``: x (N, C, H, W); labels (N,) int64/int32 class indices,
    checked to lie in [0, num_classes) (``check_labels=False`` skips the check and its host sync, clamping
    out-of-range labels instead of reading out of bounds).
    """

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 track_running_stats: bool = True, activation: str | None = None, negative_slope: float = 0.01,
                 sync: bool = False, process_group=None, check_labels: bool = True, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, track_running_stats, activation, negative_slope, sync,
                         process_group, device)
        self.num_classes = num_classes
        self.check_labels = check_labels
        self.weight = nn.Parameter(torch.ones(num_classes, num_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(num_classes, num_features, device=device, dtype=dtype))

    def _labels(self, labels, n):
        if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.int32, torch.int16,
                                                                          torch.uint8, torch.int8):
            what = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise TypeError(f"ConditionalBatchNorm2d: labels must be an integer tensor of class indices, got {what} "
                            "(one-hot or embedded labels go to LinearConditionalBatchNorm2d)")
        if labels.shape != (n,):
            raise ValueError(f"ConditionalBatchNorm2d: labels must have shape ({n},) for a batch of {n}, got "
                             f"{tuple(labels.shape)}")
        if labels.device != self.weight.device:
            raise ValueError(f"ConditionalBatchNorm2d: labels are on {labels.device}, the module on "
                             f"{self.weight.device}")
        if self.check_labels:
            bad = (labels < 0) | (labels >= self.num_classes)
            if bool(bad.any()):
                first = labels[bad][0].item()
                raise IndexError(f"ConditionalBatchNorm2d: label {first} is out of range for {self.num_classes} "
                                 f"classes (labels must lie in [0, {self.num_classes - 1}])")
            return labels.long()
        return labels.long().clamp(0, self.num_classes - 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        self._check_x(x)
        idx = self._labels(labels, x.shape[0])
        return _bn_forward(self, x, self.weight[idx], self.bias[idx])

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, " + super().extra_repr()


class LinearConditionalBatchNorm2d(_ConditionalBase):
    """Batch norm conditioned on a vector c: ``y = act(BN(x) * (1 + gain(c)) + bias(c))`` with ``gain`` and
    ``bias`` bias-free linear layers (spectral-normed with ``spectral_norm=True``), as BigGAN-PyTorch's ``ccbn``
    and StudioGAN's ``ConditionalBatchNorm2d``.

    ``forward(x, c)``: x (N, C, H, W), c (N, cond_features). Checkpoints in both source layouts load directly:
    BigGAN (``gain.weight``, ``bias.weight``, ``stored_mean``, ``stored_var``; SN as ``u0``/``sv0``) and StudioGAN
    (``bn.running_mean``, ``bn.running_var``, ``bn.num_batches_tracked``; SN as ``weight_orig``/``_u``/``_v``);
    see also :func:`fastgan.from_biggan_ccbn` and :func:`fastgan.from_studiogan_cbn`.
    """

    def __init__(self, num_features: int, cond_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 spectral_norm: bool = False, sn_eps: float = 1e-12, track_running_stats: bool = True,
                 activation: str | None = None, negative_slope: float = 0.01, sync: bool = False,
                 process_group=None, device=None, dtype=None):
        super().__init__(num_features, eps, momentum, track_running_stats, activation, negative_slope, sync,
                         process_group, device)
        self.cond_features = cond_features
        if spectral_norm:
            self.gain = SNLinear(cond_features, num_features, bias=False, eps=sn_eps, device=device, dtype=dtype)
            self.bias = SNLinear(cond_features, num_features, bias=False, eps=sn_eps, device=device, dtype=dtype)
        else:
            self.gain = nn.Linear(cond_features, num_features, bias=False, device=device, dtype=dtype)
            self.bias = nn.Linear(cond_features, num_features, bias=False, device=device, dtype=dtype)
        self._register_load_state_dict_pre_hook(_rename_cbn_keys, with_module=True)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        self._check_x(x)
        if not isinstance(c, torch.Tensor) or c.dim() != 2 or c.shape != (x.shape[0], self.cond_features):
            shape = tuple(c.shape) if isinstance(c, torch.Tensor) else type(c).__name__
            raise ValueError(f"LinearConditionalBatchNorm2d: expected c of shape ({x.shape[0]}, {self.cond_features}),"
                             f" got {shape}")
        return _bn_forward(self, x, 1 + self.gain(c), self.bias(c))

    def extra_repr(self) -> str:
        return f"cond_features={self.cond_features}, " + super().extra_repr()


def _rename_cbn_keys(module, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
    rename_cbn_keys_in_place(state_dict, prefix, with_counter=module.track_running_stats)


def convert_sync_batchnorm(module: nn.Module, process_group=None) -> nn.Module:
    """Turn on synced statistics in every fastgan batch-norm module of ``module`` (and swap torch's BatchNorm2d
    and SyncBatchNorm for fastgan's ``BatchNorm2d`` with ``sync=True``, keeping parameters and buffers), like
    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm``. Returns the (possibly new) module."""
    if isinstance(module, (BatchNorm2d, _ConditionalBase)):
        module.sync, module.process_group = True, process_group
        for child in module.children():
            convert_sync_batchnorm(child, process_group)
        return module
    if type(module) in (nn.BatchNorm2d, nn.SyncBatchNorm):
        module = from_torch_batchnorm(module, sync=True, process_group=process_group)
        return module
    for name, child in module.named_children():
        new = convert_sync_batchnorm(child, process_group)
        if new is not child:
            setattr(module, name, new)
    return module


def from_torch_batchnorm(bn: nn.Module, activation: str | None = None, negative_slope: float = 0.01,
                         sync: bool = False, process_group=None) -> BatchNorm2d:
    """A fastgan ``BatchNorm2d`` that shares ``bn``'s parameters and buffers (the same tensor objects)."""
    new = BatchNorm2d.__new__(BatchNorm2d)
    nn.Module.__init__(new)
    machinery = set(vars(new)) - {"training"}
    for attr, value in vars(bn).items():  # num_features, eps, momentum, affine, track_running_stats, ...
        if attr not in machinery:
            setattr(new, attr, value)
    for name, p in bn._parameters.items():
        new._parameters[name] = p
    for name, b in bn._buffers.items():
        new._buffers[name] = b
    new._non_persistent_buffers_set = set(bn._non_persistent_buffers_set)
    new._set_options(activation, negative_slope, sync, process_group if sync else None)
    if sync and process_group is None and isinstance(bn, nn.SyncBatchNorm):
        new.process_group = bn.process_group
    return new
