"""What a benchmark ran on: versions, the GPU (and the CPU model), the CUDA extension as built, and the device's
bandwidth (the datasheet figure and a measured device-to-device copy). ``fastgan info`` prints the same description
(:func:`summary_rows`)."""
from __future__ import annotations

import functools
import platform
import re

import torch

# Datasheet HBM bandwidth in GB/s, for reference only (the roofline used is the measured copy). A row applies when
# its pattern matches the lower-cased device name; the first match wins. The H100 SXM calls itself
# "NVIDIA H100 80GB HBM3".
DATASHEET_GBS = [
    ("H200", r"h200", 4800.0),
    ("H100 PCIe", r"h100.*pcie", 2000.0),
    ("H100 SXM", r"h100.*(sxm|hbm3)", 3350.0),
    ("A100 80GB", r"a100.*80gb", 2000.0),
    ("A100 40GB", r"a100.*40gb", 1550.0),
]
FLOOR_REFERENCES = ("H100 SXM", "H200")  # floor times given for these in every report


def datasheet_bandwidth(device_name: str | None) -> tuple[str, float] | None:
    """(label, GB/s) of the datasheet row matching ``device_name``, or None."""
    if not device_name:
        return None
    low = device_name.lower()
    for label, pattern, gbs in DATASHEET_GBS:
        if re.search(pattern, low):
            return label, gbs
    return None


def floor_us_at_datasheet(floor_bytes: int) -> dict:
    """Microseconds that ``floor_bytes`` take at the datasheet bandwidth of each of FLOOR_REFERENCES."""
    return {label: floor_bytes / (gbs * 1e9) * 1e6 for label, _, gbs in DATASHEET_GBS if label in FLOOR_REFERENCES}


# Datasheet dense (no sparsity) tensor-core peaks in TFLOP/s, by the kind of product (peak_kind); the rows match as
# DATASHEET_GBS's do. float32: the CUDA cores' rate, for float32 without TF32. The H200 row is the SXM part's.
DATASHEET_TFLOPS = [
    ("H200", r"h200", {"bfloat16": 989.4, "float16": 989.4, "tf32": 494.7, "float32": 66.9}),
    ("H100 PCIe", r"h100.*pcie", {"bfloat16": 756.5, "float16": 756.5, "tf32": 378.0, "float32": 51.2}),
    ("H100 SXM", r"h100.*(sxm|hbm3)", {"bfloat16": 989.4, "float16": 989.4, "tf32": 494.7, "float32": 66.9}),
    ("A100 80GB", r"a100.*80gb", {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5}),
    ("A100 40GB", r"a100.*40gb", {"bfloat16": 312.0, "float16": 312.0, "tf32": 156.0, "float32": 19.5}),
]


def peak_kind(dtype: str) -> str:
    """The product a convolution of ``dtype`` runs on: float32 is TF32 where ``torch.backends.cudnn.allow_tf32``
    (PyTorch's default; cuDNN and fastgan's Triton convolution follow it)."""
    if dtype == "float32":
        return "tf32" if torch.backends.cudnn.allow_tf32 else "float32"
    return dtype


def datasheet_peak(device_name: str | None) -> tuple[str, dict] | None:
    """(label, {peak kind: dense TFLOP/s}) of the DATASHEET_TFLOPS row matching ``device_name``, or None."""
    low = (device_name or "").lower()
    return next(((label, peaks) for label, pattern, peaks in DATASHEET_TFLOPS if low and re.search(pattern, low)),
                None)


def floor_us_at_peak(flops: int, dtype: str) -> dict:
    """Microseconds that ``flops`` take at the datasheet dense peak of each of FLOOR_REFERENCES, for ``dtype``."""
    kind = peak_kind(dtype)
    return {label: flops / (peaks[kind] * 1e12) * 1e6 for label, _, peaks in DATASHEET_TFLOPS
            if label in FLOOR_REFERENCES and kind in peaks}


def build_summary() -> dict:
    """The CUDA extension as built and as imported: built, importable, reason, archs, CUDA version, kernels."""
    from .. import _backend

    info = _backend.build_info()
    kernels = info.get("kernels") or []
    _, import_error = _backend._import_extension()
    return {
        "built": bool(info.get("built")),
        "importable": import_error is None,
        "reason": info.get("reason") or (None if info else "no build report (fastgan/_build_info.json is missing)"),
        "import_error": import_error,
        "archs": list(info.get("archs") or []),
        "cuda_version": info.get("cuda_version"),
        "kernels": len(kernels),
        "kernels_spilling": sum(1 for k in kernels if k.get("spill_stores") or k.get("spill_loads")),
    }


def environment() -> dict:
    """Versions, the GPU (or None) and the extension's build summary."""
    from .. import __version__, _backend

    try:
        import triton
        triton_version = triton.__version__
    except Exception:  # noqa: BLE001
        triton_version = None
    env = {
        "fastgan": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "triton": triton_version,
        "triton_interpret": _backend.triton_interpreting(), "build": build_summary(), "gpu": None,
    }
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": p.name, "capability": f"{p.major}.{p.minor}", "sms": p.multi_processor_count,
                      "memory_gib": round(p.total_memory / 2**30, 1)}
    return env


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def describe_gpu(gpu: dict | None) -> str:
    """One line for the GPU of environment()."""
    if not gpu:
        return "no CUDA device"
    return f"{gpu['name']} (compute capability {gpu['capability']}, {gpu['sms']} SMs, {gpu['memory_gib']} GiB)"


def describe_build(b: dict) -> str:
    """One line for the CUDA extension of environment()."""
    if not b["built"]:
        return f"not built ({b['reason']})"
    return (f"built for {', '.join('sm_' + a for a in b['archs']) or '?'} with CUDA {b['cuda_version']}, "
            f"{b['kernels']} kernels x arch ({b['kernels_spilling']} with register spills)"
            + ("" if b["importable"] else f"; does not import: {b['import_error']}"))


def describe_versions(env: dict) -> str:
    """One line: the versions of fastgan, python, torch (and its CUDA), triton; TRITON_INTERPRET when set."""
    return (f"fastgan {env['fastgan']}, python {env['python']}, torch {env['torch']} "
            f"(CUDA {env['torch_cuda'] or 'none'}), triton {env['triton'] or 'not installed'}"
            + (", TRITON_INTERPRET=1" if env["triton_interpret"] else ""))


def summary_rows(env: dict) -> list[tuple[str, str]]:
    """(label, text) rows of environment(), one a fact: what ``fastgan info`` prints first."""
    return [
        ("fastgan", env["fastgan"]),
        ("python", env["python"]),
        ("torch", f"{env['torch']} (CUDA {env['torch_cuda'] or 'none'})"),
        ("triton", env["triton"] or "not installed"),
        ("TRITON_INTERPRET", "1 (Triton kernels run on the CPU, emulated)" if env["triton_interpret"] else "not set"),
        ("CUDA extension", describe_build(env["build"])),
        ("GPU", describe_gpu(env["gpu"])),
    ]


def measure_copy_bandwidth(quick: bool = False) -> float:
    """GB/s of a 1 GiB device-to-device copy (bytes read + written), median of do_bench."""
    import triton.testing

    n = 2**30 // 4
    src = torch.empty(n, dtype=torch.float32, device="cuda").fill_(1.0)
    dst = torch.empty_like(src)
    ms = triton.testing.do_bench(functools.partial(dst.copy_, src), warmup=5 if quick else 25,
                                 rep=20 if quick else 100, return_mode="median")
    src = dst = None  # free the 2 GiB before the suites run
    torch.cuda.empty_cache()
    return 2 * 2**30 / (ms * 1e-3) / 1e9


def measure_dense_peak(kind: str, quick: bool = False) -> float:
    """TFLOP/s of an 8192^3 matrix product of ``kind`` (a peak_kind: 'tf32' is float32 with TF32 allowed),
    median of do_bench: the device's measured dense peak."""
    import triton.testing

    n = 8192
    dt = torch.float32 if kind in ("tf32", "float32") else getattr(torch, kind)
    a = torch.randn(n, n, device="cuda").to(dt)
    b, c = torch.randn(n, n, device="cuda").to(dt), torch.empty(n, n, device="cuda", dtype=dt)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
    try:
        ms = triton.testing.do_bench(functools.partial(torch.mm, a, b, out=c), warmup=5 if quick else 25,
                                     rep=20 if quick else 100, return_mode="median")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    a = b = c = None
    torch.cuda.empty_cache()
    return 2 * n ** 3 / (ms * 1e-3) / 1e12
