"""FASTGAN_BUILD_CUDA=auto|1|0: pure-Python fallback with a warning, loud failure, or skip."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _build(tmp_path, **env_overrides):
    env = dict(os.environ)
    env.update(env_overrides)
    out = tmp_path / "lib"
    proc = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "-b", str(out), "-t", str(tmp_path / "tmp")],
                          cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    info_path = out / "fastgan" / "_build_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else None
    return proc, info, out


def test_build_cuda_0_skips_the_extension(tmp_path):
    proc, info, out = _build(tmp_path, FASTGAN_BUILD_CUDA="0")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert info == {"built": False, "mode": "0", "reason": "FASTGAN_BUILD_CUDA=0"}
    assert not list(out.glob("fastgan/_C*"))


def test_auto_without_a_cuda_compiler_installs_pure_python_with_a_warning(tmp_path):
    proc, info, out = _build(tmp_path, FASTGAN_BUILD_CUDA="auto", CUDACXX="/nonexistent/nvcc")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "WARNING: fastgan: no CUDA compiler found" in proc.stdout
    assert info["built"] is False and "no CUDA compiler" in info["reason"]


def test_auto_with_a_failing_compiler_falls_back_and_1_fails_loudly(tmp_path):
    proc, info, _ = _build(tmp_path, FASTGAN_BUILD_CUDA="auto", CUDACXX="/bin/false")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "CUDA build failed" in proc.stdout and info["built"] is False
    proc, _, _ = _build(tmp_path, FASTGAN_BUILD_CUDA="1", CUDACXX="/bin/false")
    assert proc.returncode != 0


def test_build_cuda_1_without_a_compiler_fails_and_says_what_to_do(tmp_path):
    proc, _, _ = _build(tmp_path, FASTGAN_BUILD_CUDA="1", CUDACXX="/nonexistent/nvcc")
    assert proc.returncode != 0
    assert "FASTGAN_BUILD_CUDA=1 but no CUDA compiler found" in proc.stdout


def test_bad_switch_values_are_refused(tmp_path):
    proc, _, _ = _build(tmp_path, FASTGAN_BUILD_CUDA="yes")
    assert proc.returncode != 0 and "use auto, 1 or 0" in proc.stdout
    proc, _, _ = _build(tmp_path, FASTGAN_BUILD_CUDA="1", FASTGAN_CUDA_ARCHS="sm90")
    assert proc.returncode != 0 and "not a compute capability" in proc.stdout
