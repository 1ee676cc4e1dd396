"""Host-overhead suite: the time each op's eager call spends on the host (validation, caches, launch plans,
allocations, autograd), with every kernel launch replaced by a no-op, so that it is measured, and tracked, on any
machine, a CPU one included.

At model scale this decides forward + backward speed: on an H200 the spectral-norm backward issued about 1.3 ms per
call for 0.36 ms of kernels. The kernels' host side runs as it does on a GPU (the tensors are CPU tensors standing
in for device memory): Triton kernels are not launched (``JITFunction.run`` returns at once), the CUDA extension's
entry points are stubs, and the CUDA stream lookup returns a dummy. What is not counted: Triton's and the
extension's own launch cost, and the GPU caching allocator (CPU allocations stand in for it).

The tensors are small (a weight set's shapes with every dimension cut to at most 4, batches of 4): the host path
does not depend on sizes, and what does (CPU copies, gradient accumulation) would be device work on a GPU. The
backward is ``torch.autograd.grad`` (no accumulation into ``.grad``).

Implementations ``fastgan[triton]`` and ``fastgan[cuda]``: the eager call on that backend. Timed on the CPU, one
call per sample, the median of many.
"""
from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict

import torch
import torch.nn.functional as F

from ..runner import Case

SUITE = "host_overhead"
BACKENDS = ("cuda", "triton")
REPS = (200, 2000)  # warm-up calls, timed calls
DESC = "host time per call only: every kernel launch replaced by a no-op (no floor: nothing is moved)"


class _StubExtension:
    """fastgan._C with every entry point a no-op."""

    def __getattr__(self, name):
        return lambda *args: None


class _Patcher:
    """setattr that is undone on exit (monkeypatching without pytest)."""

    def __enter__(self):
        self._undo = []
        return self

    def __call__(self, obj, name, value):
        self._undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def __exit__(self, *exc):
        for obj, name, value in reversed(self._undo):
            setattr(obj, name, value)
        return False


@contextlib.contextmanager
def kernels_as_no_ops():
    """Within: the triton and cuda backends run on CPU tensors, their kernels not launched."""
    import triton.runtime.interpreter
    import triton.runtime.jit

    from ... import _backend
    from ...ops import _op

    real = _backend.unavailable_reason

    def available(backend, device, dtype, op=None):
        if backend in BACKENDS and dtype in (torch.float32, torch.float16, torch.bfloat16):
            return None
        return real(backend, device, dtype, op)

    with _Patcher() as patch:
        for cls in (triton.runtime.jit.JITFunction, triton.runtime.interpreter.InterpretedFunction):
            patch(cls, "run", lambda self, *args, **kwargs: None)  # (the second under TRITON_INTERPRET=1)
        patch(_backend, "unavailable_reason", available)
        patch(_backend, "extension", lambda: _StubExtension())
        patch(_op, "_raw_stream", lambda device_index: 0)  # the ops' stream lookup (a C call on a GPU build)
        yield


# ---------------------------------------------------------------- the calls


def _sn_weights(name: str, requires_grad: bool):
    from .spectral_norm import WEIGHT_SETS

    gen = torch.Generator().manual_seed(0)
    ws, us, vs = [], [], []
    for shape in WEIGHT_SETS[name]:
        w = torch.randn([min(d, 4) for d in shape], generator=gen).requires_grad_(requires_grad)
        ws.append(w)
        us.append(F.normalize(torch.randn(w.shape[0], generator=gen), dim=0))
        vs.append(F.normalize(torch.randn(w[0].numel(), generator=gen), dim=0))
    return ws, us, vs


def _sn_call(name: str, mode: str, backend: str):
    import fastgan

    ws, us, vs = _sn_weights(name, mode == "fwd+bwd")
    grads = [torch.ones_like(w) for w in ws]

    def fwd():
        return fastgan.spectral_normalize(ws, us, vs, backend=backend)

    def fwd_bwd():
        out, _ = fwd()
        torch.autograd.grad(out, ws, grads)

    return fwd if mode == "fwd" else fwd_bwd


def _bn_call(shape, per_sample: bool, training: bool, mode: str, backend: str):
    import fastgan

    n, c = shape[:2]
    x = torch.randn(shape).requires_grad_(mode == "fwd+bwd")
    w = torch.ones((n, c) if per_sample else (c,)).requires_grad_(mode == "fwd+bwd")
    b = torch.zeros((n, c) if per_sample else (c,)).requires_grad_(mode == "fwd+bwd")
    rm, rv = torch.zeros(c), torch.ones(c)
    gy = torch.ones(shape)

    def fwd():
        return fastgan.conditional_batch_norm(x, w, b, rm, rv, training, activation="relu", backend=backend)

    def fwd_bwd():
        torch.autograd.grad(fwd(), [x, w, b], gy)

    return fwd if mode == "fwd" else fwd_bwd


def _ct_call(with_bn: bool, mode: str, backend: str):
    """DCGAN's block (ConvT k4 s2 p1, BN, ReLU; channels cut) through fastgan.conv_transpose2d (triton: it has no
    cuda backend) with bn_stats, then conditional_batch_norm(stats=) on ``backend``; or the ConvT + ReLU alone."""
    import fastgan

    x = torch.randn(4, 16, 4, 4).requires_grad_(mode == "fwd+bwd")
    w = torch.randn(16, 8, 4, 4).requires_grad_(mode == "fwd+bwd")
    bn_w, bn_b, rm, rv = torch.ones(8), torch.zeros(8), torch.zeros(8), torch.ones(8)
    gy = torch.ones(4, 8, 8, 8)

    def fwd():
        if not with_bn:
            return fastgan.conv_transpose2d(x, w, None, 2, 1, activation="relu", backend="triton")
        y, stats = fastgan.conv_transpose2d(x, w, None, 2, 1, bn_stats=True, backend="triton")
        return fastgan.conditional_batch_norm(y, bn_w, bn_b, rm, rv, True, activation="relu", stats=stats,
                                              backend=backend)

    def fwd_bwd():
        torch.autograd.grad(fwd(), [x, w], gy)

    return fwd if mode == "fwd" else fwd_bwd


def _cb_call(mode: str, backend: str):
    """VectorQuantizer's search (a VQ-VAE's 8x8 latents of batch 4, 512 codes of 64): on triton (no cuda backend)."""
    import fastgan

    z, e = torch.randn(256, 64), torch.randn(512, 64)
    return lambda: fastgan.codebook_search(z, e, backend="triton")


def _mc_call(mode: str, backend: str):
    """A gated PixelCNN horizontal-stack layer (batch 4 of 8x8, h = 32) with its add tensor: on triton."""
    import fastgan

    x, w, b = torch.randn(4, 32, 8, 8), torch.randn(64, 32, 1, 3), torch.randn(64)
    add = torch.randn(4, 64, 8, 8)
    if mode == "fwd":
        return lambda: fastgan.masked_conv2d(x, w, b, mask="B", anchor=(0, 2), gate=True, add=add, backend="triton")
    x.requires_grad_(True)
    w.requires_grad_(True)
    gy = torch.randn(4, 32, 8, 8)

    def fwd_bwd():
        y = fastgan.masked_conv2d(x, w, b, mask="B", anchor=(0, 2), gate=True, add=add, backend="triton")
        torch.autograd.grad(y, [x, w], gy)
    return fwd_bwd


_active = contextlib.ExitStack()  # the no-op kernels of the case being timed (setup enters, finish leaves)


def _setup(make_call, with_compile: bool) -> OrderedDict:
    _active.close()
    _active.enter_context(kernels_as_no_ops())
    try:
        impls = OrderedDict()
        for b in BACKENDS:
            fn = make_call(backend=b)
            fn()  # the first call builds the caches
            impls[f"fastgan[{b}]"] = fn
        return impls
    except BaseException:
        _active.close()
        raise


def _finish(rec: dict) -> None:
    _active.close()
    for v in rec["impls"].values():
        if "median_ms" in v:
            v["us_per_call"] = round(v["median_ms"] * 1e3, 2)


# the calls: (name, dtype, mode, factory of the call given a backend)
CALLS = [
    *[(f"spectral_normalize {ws}", mode, functools.partial(_sn_call, ws, mode))
      for ws in ("SNGAN-32 D", "SNGAN-128 D") for mode in ("fwd", "fwd+bwd")],
    *[(f"cond_batch_norm {label}", mode, functools.partial(_bn_call, shape, per_sample, training, mode))
      for label, shape, per_sample, training in (("BN + ReLU train", (4, 512, 4, 4), False, True),
                                                 ("ccbn + ReLU train", (4, 96, 4, 4), True, True),
                                                 ("BN + ReLU eval", (4, 512, 4, 4), False, False))
      for mode in (("fwd", "fwd+bwd") if training else ("fwd",))],
    *[(f"conv_transpose2d {label}", mode, functools.partial(_ct_call, with_bn, mode))
      for label, with_bn in (("ConvT + ReLU", False), ("ConvT + BN + ReLU train", True))
      for mode in ("fwd", "fwd+bwd")],
    ("codebook_search N=256 K=512 D=64", "fwd", functools.partial(_cb_call, "fwd")),
    *[("masked_conv2d gated 1x3 mask B", mode, functools.partial(_mc_call, mode)) for mode in ("fwd", "fwd+bwd")],
]


def describe() -> dict:
    return {"note": DESC, "reps": {"warmup": REPS[0], "timed": REPS[1]}}


def cases(device: str = "cuda", dtypes=("float32",)) -> list[Case]:
    """One case per call and mode, float32 (the host path does not depend on the dtype)."""
    return [Case(SUITE, name, "float32", mode, 0, DESC, device="cpu", params={"call": name},
                 setup=functools.partial(_setup, make), finish=_finish, baselines=(),
                 reps={f"fastgan[{b}]": REPS for b in BACKENDS})
            for name, mode, make in CALLS]
