"""What every op's host code shares: dtype codes, the stream, the accumulation dtype, finite checks, the choice of
backend with its fallback to torch, the per-backend launchers, and the helper that builds a differentiable op in
its two forms (registered custom op, eager autograd.Function) from one set of implementation functions.

See docs/adding-an-op.md for how an op's files use it.
"""
from __future__ import annotations

import importlib
from typing import Callable

import torch

from .. import _backend

DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}  # enum DType in csrc/common.cuh


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype reductions accumulate in: float64 for float64 inputs (the torch backend), else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# the current stream's cudaStream_t as an int, without building a torch.cuda.Stream (one C call; None in CPU builds)
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


def cuda_where(device: torch.device) -> tuple[int, int]:
    """(device index, current stream): the last two arguments of every CUDA entry point."""
    return device.index, _raw_stream(device.index)


def traced(t: torch.Tensor) -> bool:
    """True when the registered ops must be used: under torch.compile/export, or for tensor subclasses (fake or
    functional tensors have no address for the kernels or the host caches)."""
    return torch.compiler.is_compiling() or type(t) not in (torch.Tensor, torch.nn.Parameter)


def check_finite(where: str, named_tensors, what: str = "") -> None:
    """Raise ValueError naming every (name, tensor) pair that holds NaN or Inf (None tensors are skipped):
    "<where>: non-finite values (NaN or Inf) in <what><names>".

    One reduction and one host sync per tensor: the ops do this only when asked (``check_finite=True``)."""
    bad = [name for name, t in named_tensors if t is not None and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{where}: non-finite values (NaN or Inf) in {what}{', '.join(bad)}")


def resolve(op: str, device: torch.device, dtype: torch.dtype, backend: str | None, where: str,
            kernel_limit: Callable[..., str | None] | None = None, *limit_args) -> str:
    """The backend of one call: :func:`fastgan._backend.resolve`, then ``kernel_limit(*limit_args)`` for what only
    the torch backend computes (a sentence saying why, or None). Under ``auto`` such a call falls back to torch; a
    kernel backend asked for by name raises BackendUnavailable with the sentence, prefixed by ``where`` (the public
    name of the op)."""
    name = _backend.resolve(op, device, dtype, backend)
    if name != "torch" and kernel_limit is not None:
        why = kernel_limit(*limit_args)
        if why is not None:
            if _backend.requested(backend) != "auto":
                raise _backend.BackendUnavailable(f"{where}: the {name} backend {why} (use backend='torch')")
            return "torch"
    return name


class Launchers(dict):
    """An op's kernel launchers per backend, imported on first use (Triton is imported only when it runs).

    ``Launchers(triton="fastgan.kernels.x", cuda="fastgan.ops.x_cuda")[backend]`` is the module; both modules
    define the same functions with the same arguments, so an op's host code calls a stage without branching on
    the backend. (A dict: a lookup after the first is one C-level dict access.)
    """

    def __init__(self, **modules: str):
        super().__init__()
        self.modules = modules

    def __missing__(self, backend: str):
        self[backend] = mod = importlib.import_module(self.modules[backend])
        return mod


class DifferentiableOp:
    """One differentiable op in its two forms, built from the same implementation functions.

    * ``self.op``: the ``torch.library`` custom op ``fastgan::<name>`` (schema from ``impl``'s annotations) with
      ``fake`` and the autograd formula registered: what torch.compile, torch.export and tensor subclasses run.
    * ``self.Function``: its eager twin, an ``autograd.Function`` whose forward is ``eager_forward(ctx, *args)``
      (default: ``impl(*args)`` with ``setup_context``, the form torch.func transforms need): eager calls skip the
      dispatcher, whose Python-level dispatch costs tens of microseconds per call.

    ``setup_context(ctx, inputs, output)`` saves what the backward needs. The registered form sets ``ctx.traced =
    True`` (the eager form leaves it unset: read it as ``getattr(ctx, "traced", False)``) so that
    ``backward(ctx, *grads)`` can reach the fused backward through its own registered op
    when traced and call the implementation directly when eager. ``backward`` runs with grad mode on when a
    double backward is being recorded (``create_graph=True``): it must then compute the gradients from
    differentiable torch ops (the op's composite), as the fused kernels are not differentiable.
    """

    def __init__(self, name: str, impl: Callable, *, fake: Callable, setup_context: Callable, backward: Callable,
                 eager_forward: Callable | None = None):
        self.op = torch.library.custom_op(f"fastgan::{name}", impl, mutates_args=())
        self.op.register_fake(fake)

        def traced_setup(ctx, inputs, output):
            ctx.traced = True
            setup_context(ctx, inputs, output)

        self.op.register_autograd(backward, setup_context=traced_setup)

        # without an eager_forward, the twin takes torch.func's form (forward without ctx, then setup_context), so
        # that torch.func.grad / jacrev work on it too
        body = ({"forward": staticmethod(impl), "setup_context": staticmethod(setup_context)}
                if eager_forward is None else {"forward": staticmethod(eager_forward)})
        # named like the op in CamelCase: autograd graphs and profiles show <Name>Backward
        self.Function = type("".join(p.title() for p in name.split("_")), (torch.autograd.Function,),
                             {**body, "backward": staticmethod(backward),
                              "__doc__": f"Eager twin of fastgan::{name} (see DifferentiableOp)."})
