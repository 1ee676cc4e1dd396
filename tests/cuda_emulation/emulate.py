"""The CUDA C++ kernels of fastgan compiled for the CPU: the machinery the emulation tests share.

The .cu files of an op in csrc/ (OP_SOURCES) are compiled with g++ against shim.h (one std::thread per CUDA thread,
checked barriers and shuffles; what it does and does not emulate is in its header), as one translation unit
generated here: the files one after another, each after a #line naming it, with every `kernel<<<...>>>(...)` launch
rewritten into an `emu::launch`, then an extern "C" wrapper that ctypes calls for each entry point of csrc/ops.h
with the op's prefix, with keyword arguments named as in ops.h. Launches stay in the .cu files (the headers are
included as they are).
"""
import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
SHIM_DIR = Path(__file__).resolve().parent
# The .cu files of each op, in the order they are compiled; every .cu of csrc/ belongs to one (checked by the tests).
OP_SOURCES = {
    "cond_batch_norm": ["cond_batch_norm_stats.cu", "cond_batch_norm_eltwise.cu", "cond_batch_norm_backward.cu"],
    "spectral_norm": ["spectral_norm.cu"],
    "gradient_penalty": ["gradient_penalty.cu"],
}
SM_COUNTS = {132: 0, 1: 1}  # SM count -> emulated device (the host code caches the count per device)
CTYPES = {"uintptr_t": ctypes.c_size_t, "int64_t": ctypes.c_int64, "int": ctypes.c_int, "bool": ctypes.c_bool,
          "double": ctypes.c_double}


def _split_top_level(text):
    """`text` split at the commas outside parentheses, brackets and braces."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return parts + [text[start:].strip()]


_LAUNCH = re.compile(r"(?P<kernel>\w+)(?P<targs>\s*<[^;{}<>]*>)?\s*<<<(?P<config>.*?)>>>\s*\(", re.S)


def rewrite_launches(src):
    """(source, kernel names): each `kernel<targs><<<grid, block[, smem[, stream]]>>>(args);` replaced by
    `emu::launch<&kernel<targs>>(dim3(grid), dim3(block), smem, stream, args);` on as many lines."""
    out, names, pos = [], [], 0
    for m in _LAUNCH.finditer(src):
        depth, i = 1, m.end()
        while depth:
            depth += (src[i] == "(") - (src[i] == ")")
            i += 1
        args = src[m.end():i - 1]
        end = src.index(";", i) + 1
        assert not src[i:end - 1].strip(), f"unexpected text after the launch of {m['kernel']}: {src[i:end]!r}"
        config = _split_top_level(m["config"])
        assert 2 <= len(config) <= 4, f"launch configuration of {m['kernel']}: {m['config']!r}"
        grid, block, smem, stream = (config + ["0", "0"])[:4]
        kernel = m["kernel"] + (m["targs"] or "").strip()
        call = f"emu::launch<&{kernel}>(dim3({grid}), dim3({block}), {smem}, {stream}, {args.strip()});"
        out += [src[pos:m.start()], call, "\n" * src.count("\n", m.start(), end)]
        names.append(m["kernel"])
        pos = end
    out.append(src[pos:])
    return "".join(out), names


def entry_points(header, prefix):
    """{name: [(type, parameter), ...]} of the entry points declared in ops.h whose names start with ``prefix``."""
    decls = {}
    for m in re.finditer(rf"void\s+({prefix}\w+)\s*\(([^)]*)\)\s*;", header):
        params = [p.rsplit(None, 1) for p in _split_top_level(" ".join(m[2].split()))]
        decls[m[1]] = [(t.strip(), n) for t, n in params]
    return decls


def wrappers(decls):
    """extern "C" wrappers that return 0, or 1 with the message in emu_last_message()."""
    lines = ['extern "C" {']
    for name, params in decls.items():
        sig = ", ".join(f"{t} {n}" for t, n in params)
        args = ", ".join(n for _, n in params)
        lines.append(f"int emu_{name}({sig}) {{ return emu::guard([&] {{ fastgan::{name}({args}); }}); }}")
    return "\n".join(lines + ["}", ""])


def emulation_source(op, prefix):
    """(C++ source, launched kernel names, entry point declarations) of the .cu files of `op` (OP_SOURCES)."""
    parts, names = ['#include "shim.h"\n'], []
    for cu_file in OP_SOURCES[op]:
        cu, found = rewrite_launches((CSRC / cu_file).read_text())
        parts.append(f'#line 1 "csrc/{cu_file}"\n' + cu + "\n")
        names += found
    decls = entry_points((CSRC / "ops.h").read_text(), prefix)
    return "".join(parts) + wrappers(decls), names, decls


def cuda_include_dir():
    """The directory of cuda_runtime.h, from CUDA_HOME / CUDA_PATH, the nvcc on PATH, or /usr/local/cuda."""
    roots = [Path(os.environ[v]) for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    nvcc = shutil.which("nvcc")
    if nvcc:
        roots.append(Path(nvcc).resolve().parent.parent)
    roots.append(Path("/usr/local/cuda"))
    for root in roots:
        for inc in (root / "include", root / "targets" / "x86_64-linux" / "include"):
            if (inc / "cuda_runtime.h").is_file():
                return inc
    return None


def compile_emulation(src, out_dir, name):
    """Compiles `src` with the shim into a shared library; skips without g++ or the CUDA headers."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: the CUDA emulation compiles the kernels with it")
    inc = cuda_include_dir()
    if inc is None:
        pytest.skip("CUDA headers not found (cuda_runtime.h under CUDA_HOME, next to nvcc, or in /usr/local/cuda)")
    cpp, lib = out_dir / f"{name}.cpp", out_dir / f"{name}.so"
    cpp.write_text(src)
    cmd = [gxx, "-O2", "-std=c++20", "-shared", "-fPIC", "-pthread", "-I", str(SHIM_DIR), "-I", str(CSRC),
           "-I", str(inc), "-o", str(lib), str(cpp)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"compiling the CUDA emulation failed:\n{' '.join(cmd)}\n{proc.stdout[-6000:]}", pytrace=False)
    lib = ctypes.CDLL(str(lib))
    lib.emu_last_message.restype = ctypes.c_char_p
    lib.emu_launch_log.restype = ctypes.c_char_p
    lib.emu_log_launches.argtypes = [ctypes.c_bool]
    lib.emu_set_sm_count.argtypes = [ctypes.c_int, ctypes.c_int]
    return lib


class Emulation:
    """The entry points, called as ``emu.cond_batch_norm_apply(x=..., y=..., ...)`` with the names of ops.h;
    ``device`` and ``stream`` are filled in (the device picks the SM count). A failed call raises RuntimeError.
    Every launch is logged in ``launched``: (kernel with its template arguments, grid, block, the integral
    arguments in order)."""

    def __init__(self, lib, decls):
        self.lib, self.decls, self.sms = lib, decls, 132
        self.launched, self.cases_done = [], set()
        for name, params in decls.items():
            getattr(lib, f"emu_{name}").argtypes = [CTYPES[t] for t, _ in params]
        for sms, device in SM_COUNTS.items():
            lib.emu_set_sm_count(device, sms)
        lib.emu_log_launches(True)

    def __getattr__(self, name):
        if name not in self.decls:
            raise AttributeError(name)

        def call(**kwargs):
            kwargs.update(device=SM_COUNTS[self.sms], stream=0)
            names = [n for _, n in self.decls[name]]
            assert sorted(kwargs) == sorted(names), f"{name}: arguments {sorted(kwargs)}, ops.h has {names}"
            failed = getattr(self.lib, f"emu_{name}")(*(kwargs[n] for n in names))
            for line in self.lib.emu_launch_log().decode().splitlines():
                kernel, grid, block, args = line.split("|")
                ints = [int(a) if a != "-" else None for a in args.split(",")]
                self.launched.append((kernel, int(grid), int(block), ints))
            self.lib.emu_log_launches(True)  # clears the log
            if failed:
                raise RuntimeError(f"{name}: {self.lib.emu_last_message().decode()}")

        return call

    def positional(self, name):
        """The entry point as the extension's binding takes it: positional arguments in the order of ops.h,
        ``device`` and ``stream`` among them (ignored: the emulated device follows ``sms``)."""
        params = [n for _, n in self.decls[name]]
        call = getattr(self, name)

        def run(*args):
            assert len(args) == len(params), f"{name}: {len(args)} arguments, ops.h has {params}"
            call(**{n: a for n, a in zip(params, args) if n not in ("device", "stream")})

        return run
