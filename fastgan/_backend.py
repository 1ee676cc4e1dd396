"""Backend registry and choice.

Every op is computed by one of three backends: ``torch`` (the eager reference, runs anywhere), ``triton`` and
``cuda`` (the compiled extension ``fastgan._C``). The backend of a call is, in order of precedence: the op's
``backend=`` argument, :func:`use_backend`, the environment variable ``FASTGAN_BACKEND``, then ``auto``.
``auto`` takes the first backend that can run the call (cuda, then triton, then torch); an explicitly
requested backend that cannot run it raises :class:`BackendUnavailable` saying why.

Triton kernels run on CPU tensors only under ``TRITON_INTERPRET=1`` (Triton's interpreter, set before Triton
is imported): that is how the kernels are tested without a GPU.
"""
from __future__ import annotations

import functools
import os
import threading

import torch

BACKENDS = ("torch", "triton", "cuda")
_AUTO_ORDER = ("cuda", "triton", "torch")
_GPU_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# op name -> backends that implement it
_OPS: dict[str, tuple[str, ...]] = {}

_state = threading.local()


class BackendUnavailable(RuntimeError):
    """An explicitly requested backend cannot run this call."""


def register_op(name: str, backends: tuple[str, ...]) -> None:
    _OPS[name] = tuple(backends)


def triton_interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _once(fn):
    """``fn()`` computed on the first call and kept (functools.lru_cache, but torch.compile traces through this
    without warning about a cache it ignores)."""
    kept = []

    @functools.wraps(fn)
    def wrapper():
        if not kept:
            kept.append(fn())
        return kept[0]
    return wrapper


@_once
def _import_triton() -> str | None:
    """None when Triton imports, else the reason it does not."""
    try:
        import triton  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any import failure makes the backend unavailable
        return f"Triton is not importable ({type(e).__name__}: {e}); install it with `pip install triton` (Linux only)"
    return None


@_once
def _import_extension():
    """(module, None) when fastgan._C imports, else (None, reason)."""
    try:
        from fastgan import _C
    except ImportError as e:
        info = build_info()
        why = info.get("reason") or str(e)
        return None, (f"the CUDA extension fastgan._C is not built ({why}); reinstall with a CUDA compiler on PATH "
                      "and FASTGAN_BUILD_CUDA=1 to see the build error")
    return _C, None


@_once
def build_info() -> dict:
    """The report written by setup.py next to the extension ({} for a source checkout never built)."""
    import json
    from pathlib import Path

    path = Path(__file__).with_name("_build_info.json")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def extension():
    """The compiled extension module, or raise BackendUnavailable."""
    mod, why = _import_extension()
    if mod is None:
        raise BackendUnavailable(why)
    return mod


_reasons: dict = {}


def unavailable_reason(backend: str, device: torch.device, dtype: torch.dtype, op: str | None = None) -> str | None:
    """None if ``backend`` can run ``op`` on tensors of this device and dtype, else a sentence saying why not."""
    key = (backend, device, dtype, op, triton_interpreting())
    try:
        return _reasons[key]
    except KeyError:  # worked out once per key: it reads files and queries the device
        _reasons[key] = reason = _unavailable_reason(backend, device, dtype, op)
        return reason


def _unavailable_reason(backend, device, dtype, op):
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} or 'auto'"
    if op is not None and backend not in _OPS.get(op, BACKENDS):
        return (f"the {backend} backend does not implement {op} (it has: {', '.join(_OPS[op])}; pass backend='auto' "
                f"or one of those to this op)")
    if backend == "torch":
        return None
    if dtype not in _GPU_DTYPES:
        return f"the {backend} backend computes float32, float16 and bfloat16, not {dtype}; use backend='torch'"
    if backend == "triton":
        why = _import_triton()
        if why:
            return why
        if device.type == "cuda":
            if triton_interpreting():
                return "TRITON_INTERPRET=1 is set, so Triton would emulate the GPU kernels on the host"
            return None
        if device.type == "cpu":
            if triton_interpreting():
                return None
            return ("the tensors are on the CPU; Triton kernels run on a CUDA device, or on the CPU under "
                    "TRITON_INTERPRET=1 (set before Triton is imported)")
        return f"Triton kernels do not run on {device.type} tensors"
    # cuda
    if device.type != "cuda":
        return f"the cuda backend needs CUDA tensors, these are on {device.type}"
    _, why = _import_extension()
    if why:
        return why
    archs = build_info().get("archs") or []
    major, minor = torch.cuda.get_device_capability(device)
    cc = 10 * major + minor
    built = [int(a.rstrip("a")) for a in archs]
    if built and cc < min(built):
        return (f"fastgan._C was built for compute capabilities {', '.join(archs)}, this GPU is {major}.{minor}; "
                f"rebuild with FASTGAN_CUDA_ARCHS={cc}")
    return None


def _name(backend, where: str) -> str:
    if not isinstance(backend, str):
        raise TypeError(f"{where}: the backend is a name, one of {', '.join(BACKENDS)} or 'auto' (or None for the "
                        f"default), got {backend!r}")
    return backend.strip().lower()


def requested(explicit: str | None = None) -> str:
    """The backend name asked for (argument, then use_backend, then FASTGAN_BACKEND), 'auto' if none."""
    if explicit is not None:
        return _name(explicit, "backend=")
    chosen = getattr(_state, "backend", None)
    if chosen is not None:
        return chosen
    return (os.environ.get("FASTGAN_BACKEND", "auto") or "auto").strip().lower()


def resolve(op: str, device: torch.device, dtype: torch.dtype, backend: str | None = None) -> str:
    """The backend that computes ``op`` for tensors on ``device`` of ``dtype``."""
    name = requested(backend)
    if name == "auto":
        for candidate in _AUTO_ORDER:
            if unavailable_reason(candidate, device, dtype, op) is None:
                return candidate
        raise AssertionError("the torch backend is always available")
    why = unavailable_reason(name, device, dtype, op)
    if why is not None:
        raise BackendUnavailable(f"{op}: backend {name!r} cannot run on {device.type} {dtype} tensors: {why}")
    return name


class use_backend:
    """Choose the backend for the ops called after it, in this thread: ``'torch'``, ``'triton'``, ``'cuda'`` or
    ``'auto'`` (``None`` also means auto).

    Works as a call (``fastgan.use_backend("triton")``, in effect until changed) and as a context manager
    (``with fastgan.use_backend("torch"): ...`` restores the previous choice on exit).
    """

    def __init__(self, backend: str | None):
        name = None if backend is None else _name(backend, "use_backend")
        if name is not None and name not in (*BACKENDS, "auto"):
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)} or 'auto'")
        self._previous = getattr(_state, "backend", None)
        _state.backend = name

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        _state.backend = self._previous
        return False


def current_backend() -> str:
    """The backend name in force for calls without ``backend=`` (may be 'auto')."""
    return requested(None)
