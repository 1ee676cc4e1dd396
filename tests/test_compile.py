"""Compilation without a GPU: every Triton kernel configuration for sm_80 and sm_90, and the CUDA extension."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastgan import _backend

# kernels whose loads must be 16 bytes wide on aligned data (the ones that move the bytes)
BANDWIDTH_KERNELS = {"_sn_rows_kernel", "_sn_cols_kernel", "_sn_scale_kernel", "_sn_dot_kernel", "_sn_grad_kernel",
                     "_interpolate_kernel", "_interpolate_backward_kernel", "_squared_norm_partials_kernel",
                     "_scale_rows_kernel"}


@pytest.fixture(scope="module")
def aot_records():
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-m", "fastgan.kernels.aot", "--arch", "80", "90", "--json"], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=900)
    assert proc.stdout, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_every_triton_configuration_compiles_for_sm80_and_sm90(aot_records):
    from fastgan.kernels import aot

    n_configs = sum(len(opts.get("archs", (80, 90))) for *_, opts in aot.configs())
    assert len(aot_records) == n_configs
    assert {r["arch"] for r in aot_records} == {"sm_80", "sm_90a"}
    errors = [f"{r['kernel']} {r['arch']} {r['constexprs']}: {r['error']}" for r in aot_records if "error" in r]
    assert not errors, "\n".join(errors)


def test_no_triton_kernel_spills_or_uses_local_memory(aot_records):
    bad = [f"{r['kernel']} {r['arch']} {r['constexprs']}: spills {r['spill_stores']}/{r['spill_loads']}, "
           f"stack {r['stack']}" for r in aot_records if r["spill_stores"] or r["spill_loads"] or r["stack"]]
    assert not bad, "\n".join(bad)


def test_bandwidth_kernels_load_16_bytes_at_a_time(aot_records):
    missing = [f"{r['kernel']} {r['arch']} {r['constexprs']}" for r in aot_records
               if r["kernel"] in BANDWIDTH_KERNELS and r["constexprs"].get("HAS_OUTER") != "True"
               and r["constexprs"].get("UNIT_SC") != "False" and r["vector_loads"] == 0]
    assert not missing, "no 16-byte loads in:\n" + "\n".join(missing)


def test_cuda_extension_is_built_where_nvcc_exists_and_does_not_spill():
    info = _backend.build_info()
    if os.environ.get("FASTGAN_BUILD_CUDA", "auto") == "0" or not (shutil.which("nvcc") or os.environ.get("CUDACXX")):
        pytest.skip("no CUDA compiler here (or FASTGAN_BUILD_CUDA=0): the extension is not expected")
    assert info.get("built"), f"nvcc is on PATH but the extension was not built: {info.get('reason')}"
    mod, why = _backend._import_extension()
    assert mod is not None, why
    kernels = info["kernels"]
    archs = {k["arch"] for k in kernels}
    assert {"sm_80", "sm_90"} <= archs, archs
    names = {k["kernel"] for k in kernels}
    for arch in ("sm_80", "sm_90"):
        assert {k["kernel"] for k in kernels if k["arch"] == arch} == names, f"kernels missing for {arch}"
    bad = [k for k in kernels if k.get("spill_stores") or k.get("spill_loads") or k.get("stack")]
    assert not bad, bad
    assert len(names) >= 20  # rows/cols x 3 layouts x 3 dtypes, finalize x 2, elementwise x 3 dtypes


# CUDA kernels whose VEC=true instantiations move 16-byte vectors: every global store of theirs must be 128-bit
# (nvcc 13 split the cond_batch_norm elementwise stores into 4- and 2-byte ones while their loads stayed 128-bit)
VECTOR_STORE_KERNELS = re.compile(r"(eltwise_n(chw|hwc)_kernel|gp\d+(interpolate|interpolate_backward|scale_rows)"
                                  r"_kernel)I.*Lb1")


def test_cuda_vector_kernels_store_16_bytes_at_a_time():
    spec = importlib.util.find_spec("fastgan._C")
    so = spec.origin if spec is not None else None
    cuobjdump = shutil.which("cuobjdump") or next(iter(Path(sys.prefix).glob(
        "lib/python*/site-packages/triton/backends/nvidia/bin/cuobjdump")), None)
    if so is None or cuobjdump is None:
        pytest.skip("no built extension or no cuobjdump here")
    sass = subprocess.run([str(cuobjdump), "-sass", "-arch", "sm_90", str(so)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300).stdout
    checked, bad = 0, []
    for func in re.split(r"\n\s*Function : ", sass)[1:]:
        name = func.split("\n", 1)[0]
        if VECTOR_STORE_KERNELS.search(name):
            checked += 1
            narrow = [s for s in re.findall(r"STG\.E(\.[A-Z0-9]+)?", func) if s != ".128"]
            if narrow:
                bad.append(f"{name}: {len(narrow)} stores narrower than 16 bytes")
    assert checked >= 21, f"only {checked} vector kernels found in the SASS"  # 12 eltwise, 9 penalty
    assert not bad, "\n".join(bad)
