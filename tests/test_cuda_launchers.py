"""The Python side of the CUDA backend (fastgan/ops/*_cuda.py) calls every entry point of csrc/ops.h with the
arguments it declares: as many, each of the declared kind (an address or integer, a bool, a float), with addresses
of the tensors the stage works on. Run on the CPU: the calls of every op go through the cuda backend with the
extension replaced by one that checks each call against ops.h (the kernels themselves are tested under the
emulation and on the GPU). The spectral-norm and gradient-penalty launchers also run under the emulation; the
conditional-batch-norm ones only here."""
import pytest
import torch
import torch.nn.functional as F

import fastgan
from fastgan import _backend
from fastgan.bench.suites import host_overhead
from fastgan.ops import _op

from cuda_emulation import emulate

KINDS = {"uintptr_t": int, "int64_t": int, "int": int, "bool": bool, "float": float, "double": float}


class CheckingExtension:
    """fastgan._C whose entry points check their arguments against ops.h and record the calls."""

    def __init__(self):
        self.decls = emulate.entry_points((emulate.CSRC / "ops.h").read_text(), "")
        self.calls = []

    def __getattr__(self, name):
        if name not in self.decls:
            raise AttributeError(f"fastgan._C has no entry point {name!r} (csrc/ops.h declares {sorted(self.decls)})")
        params = self.decls[name]

        def call(*args):
            assert len(args) == len(params), f"{name}: {len(args)} arguments, ops.h declares {params}"
            for value, (ctype, pname) in zip(args, params):
                if pname == "device" and value is None:
                    continue  # CPU tensors stand in for device memory here: their device has no index
                kind = KINDS[ctype]
                ok = isinstance(value, bool) if kind is bool else (
                    isinstance(value, kind) and not isinstance(value, bool))
                assert ok, f"{name}: {pname} ({ctype}) got {type(value).__name__} {value!r}"
            self.calls.append((name, dict(zip((p for _, p in params), args))))

        return call


@pytest.fixture
def ext():
    checking = CheckingExtension()
    with host_overhead.kernels_as_no_ops(), pytest.MonkeyPatch.context() as mp:
        mp.setattr(_backend, "extension", lambda: checking)
        mp.setattr(_op, "_raw_stream", lambda device_index: 7)
        yield checking


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_cond_batch_norm_calls_match_ops_h(ext, per_sample, channels_last):
    x = torch.randn(3, 5, 4, 2)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    w = torch.randn(3, 5) if per_sample else torch.randn(5)
    b = torch.randn(5, requires_grad=True)  # the other kind: expanded to (N, C) for the kernels when w is per sample
    w.requires_grad_()
    rm, rv = torch.zeros(5), torch.ones(5)
    y = fastgan.conditional_batch_norm(x, w, b, rm, rv, True, activation="leaky_relu", negative_slope=0.2,
                                       backend="cuda")
    torch.autograd.grad(y, (x, w, b), torch.randn_like(y))
    fastgan.conditional_batch_norm(x.detach(), w.detach(), None, rm, rv, False, backend="cuda")
    names = [n for n, _ in ext.calls]
    assert names == ["cond_batch_norm_partial_stats", "cond_batch_norm_finalize_stats", "cond_batch_norm_apply",
                     "cond_batch_norm_backward_reduce", "cond_batch_norm_backward_finalize",
                     "cond_batch_norm_backward_dx", "cond_batch_norm_apply"]
    calls = [a for _, a in ext.calls]
    assert all(a["stream"] == 7 for a in calls)
    assert calls[0]["x"] == x.data_ptr() and calls[0]["channels_last"] == channels_last
    assert (calls[0]["N"], calls[0]["C"], calls[0]["HW"]) == (3, 5, 8)
    assert calls[1]["running_mean"] == rm.data_ptr() and calls[1]["update"] is True
    assert calls[2]["act"] == fastgan.activations.LEAKY_RELU and calls[2]["w_stride_n"] == (5 if per_sample else 0)
    assert calls[2]["eval"] is False and calls[6]["eval"] is True and calls[6]["bias"] == 0
    assert calls[6]["mean"] == rm.data_ptr() and calls[6]["istd_or_var"] == rv.data_ptr()


def test_spectral_norm_calls_match_ops_h(ext):
    ws = [torch.randn(6, 3, 3, 3, requires_grad=True), torch.randn(4, 6, requires_grad=True)]
    us = [F.normalize(torch.randn(6), dim=0), F.normalize(torch.randn(4), dim=0)]
    vs = [F.normalize(torch.randn(27), dim=0), F.normalize(torch.randn(6), dim=0)]
    outs, _ = fastgan.spectral_normalize(ws, us, vs, n_power_iterations=2, backend="cuda")
    torch.autograd.grad(outs, ws, [torch.ones_like(o) for o in outs])
    names = [n for n, _ in ext.calls]
    assert names == ["spectral_norm_power_iteration", "spectral_norm_normalize", "spectral_norm_normalize_backward"]
    assert ext.calls[0][1]["n_iter"] == 2 and ext.calls[0][1]["groups"] == 2
    assert all(a["stream"] == 7 for _, a in ext.calls)


def test_gradient_penalty_calls_match_ops_h(ext):
    real, fake = torch.randn(3, 2, 5, 7, requires_grad=True), torch.randn(3, 2, 5, 7, requires_grad=True)
    eps = torch.rand(3)
    x = fastgan.interpolate_samples(real, fake, eps, backend="cuda")
    torch.autograd.grad(x, (real, fake), torch.ones_like(x))
    g = torch.randn(3, 5000, dtype=torch.bfloat16, requires_grad=True)
    torch.autograd.grad(fastgan.penalty_of_gradient(g, backend="cuda"), g)
    names = [n for n, _ in ext.calls]
    assert names == ["gradient_penalty_interpolate", "gradient_penalty_interpolate_backward",
                     "gradient_penalty_squared_norms",  # once: the backward reuses the forward's norms
                     "gradient_penalty_scale_rows"]
    calls = [a for _, a in ext.calls]
    assert all(a["stream"] == 7 for a in calls)
    assert calls[0]["real"] == real.data_ptr() and calls[0]["fake"] == fake.data_ptr()
    assert (calls[0]["N"], calls[0]["D"], calls[0]["dtype"]) == (3, 70, _op.DTYPE_CODE[torch.float32])
    assert calls[2]["g"] == g.data_ptr() and (calls[2]["N"], calls[2]["D"]) == (3, 5000)
    assert calls[2]["n_tiles"] == 2 and calls[2]["dtype"] == _op.DTYPE_CODE[torch.bfloat16]  # 10000 bytes a sample
    assert calls[3]["g"] == g.data_ptr()
