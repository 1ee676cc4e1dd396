"""Build script: the Python package always; the CUDA extension ``fastgan._C`` when a CUDA compiler is found.

FASTGAN_BUILD_CUDA=auto (default): build it if nvcc is found; on failure warn and install pure Python.
FASTGAN_BUILD_CUDA=1: build it or fail.  FASTGAN_BUILD_CUDA=0: skip it.
FASTGAN_CUDA_ARCHS: semicolon-separated compute capabilities, default "80;90".

The extension is compiled with ``-Xptxas -v``; the per-kernel register and spill report is written next to it
as ``fastgan/_build_info.json`` (read by ``fastgan info`` and by the tests).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def _find_nvcc():
    if os.environ.get("CUDACXX"):  # an explicit choice is never second-guessed
        cxx = os.environ["CUDACXX"]
        return cxx if os.path.isfile(cxx) and os.access(cxx, os.X_OK) else None
    candidates = []
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "bin", "nvcc"))
    candidates += [shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def _cuda_archs():
    raw = os.environ.get("FASTGAN_CUDA_ARCHS", "80;90")
    archs = [a.strip() for a in re.split(r"[;, ]+", raw) if a.strip()]
    for a in archs:
        if not re.fullmatch(r"\d{2,3}a?", a):
            raise ValueError(f"FASTGAN_CUDA_ARCHS={raw!r}: '{a}' is not a compute capability like 80 or 90")
    return archs


def _load_ptxas_parser():
    # by path: importing the fastgan package would import torch, which the build environment need not have
    import importlib.util

    spec = importlib.util.spec_from_file_location("_fastgan_ptxas", ROOT / "fastgan" / "_ptxas.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.parse_ptxas_report


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    def run(self):
        for ext in self.extensions:
            self.build_extension(ext)

    def _write_info(self, ext, info):
        path = Path(self.get_ext_fullpath(ext.name)).parent / "_build_info.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(info, indent=1))

    def build_extension(self, ext):
        mode = os.environ.get("FASTGAN_BUILD_CUDA", "auto").strip().lower()
        if mode not in ("auto", "1", "0"):
            raise ValueError(f"FASTGAN_BUILD_CUDA={mode!r}: use auto, 1 or 0")
        info = {"built": False, "mode": mode}
        if mode == "0":
            info["reason"] = "FASTGAN_BUILD_CUDA=0"
            self._write_info(ext, info)
            return
        nvcc = _find_nvcc()
        if nvcc is None:
            info["reason"] = "no CUDA compiler found (set CUDACXX or CUDA_HOME, or put nvcc on PATH)"
            if mode == "1":
                raise RuntimeError("FASTGAN_BUILD_CUDA=1 but " + info["reason"])
            print(f"WARNING: fastgan: {info['reason']}; installing without the CUDA extension", file=sys.stderr)
            self._write_info(ext, info)
            return
        try:
            info.update(self._cmake_build(ext, nvcc))
            info["built"] = True
        except Exception as e:  # noqa: BLE001 - any build failure falls back in auto mode
            if mode == "1":
                raise
            info["reason"] = f"CUDA build failed: {e}"
            print(f"WARNING: fastgan: {info['reason']}\nInstalling without the CUDA extension "
                  "(FASTGAN_BUILD_CUDA=1 makes this an error).", file=sys.stderr)
        self._write_info(ext, info)

    def _cmake_build(self, ext, nvcc):
        archs = _cuda_archs()
        import pybind11

        # SASS for every listed arch, plus PTX of the newest so later GPUs can JIT it.
        cmake_archs = [f"{a}-real" for a in archs[:-1]] + [archs[-1]]
        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_temp = Path(self.build_temp).resolve() / "cmake"
        build_temp.mkdir(parents=True, exist_ok=True)
        cfg = "Release"
        args = [
            f"-S{ROOT}", f"-B{build_temp}",
            f"-DCMAKE_CUDA_COMPILER={nvcc}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DFASTGAN_CUDA_ARCHS={';'.join(cmake_archs)}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DFASTGAN_EXT_SUFFIX={sysconfig.get_config_var('EXT_SUFFIX')}",
        ]
        if shutil.which("ninja"):
            args.append("-GNinja")
        log = []
        for cmd in (["cmake", *args], ["cmake", "--build", str(build_temp), "--config", cfg, "--verbose"]):
            proc = subprocess.run(cmd, cwd=build_temp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            log.append(proc.stdout)
            if proc.returncode != 0:
                lines = proc.stdout.splitlines()
                errors = [ln for ln in lines if re.search(r"error|FAILED", ln, re.I)][:20]
                detail = "\n".join(errors or lines[-40:])
                raise RuntimeError(f"`{' '.join(cmd[:3])}` exited with {proc.returncode}:\n{detail}")
        text = "\n".join(log)
        nvcc_version = subprocess.run([nvcc, "--version"], stdout=subprocess.PIPE, text=True).stdout
        m = re.search(r"release (\d+\.\d+)", nvcc_version)
        kernels = _load_ptxas_parser()(text)
        spills = [k for k in kernels if k.get("spill_stores", 0) or k.get("spill_loads", 0)]
        for k in spills:
            print(f"WARNING: fastgan: register spills in {k['kernel']} ({k['arch']})", file=sys.stderr)
        return {"archs": archs, "nvcc": nvcc, "cuda_version": m.group(1) if m else None, "kernels": kernels}


setup(ext_modules=[CMakeExtension("fastgan._C")], cmdclass={"build_ext": CMakeBuild})
