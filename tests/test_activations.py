"""The activation table (fastgan/activations.py) against torch, and the codes the CUDA sources compare with (their
enums, read from csrc/) against the Python side: the activation codes, the dtype codes and the spectral-norm
plan's table fields."""
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastgan import activations
from fastgan.ops import _op
from fastgan.ops import spectral_norm_plan as plan

CSRC = Path(__file__).resolve().parent.parent / "csrc"


def cuda_enum(name: str) -> dict[str, int]:
    """The enumerators of ``enum <name>`` in csrc/ (implicit values counted as C++ does)."""
    found = []
    for path in sorted(CSRC.glob("*")):
        if path.suffix in (".cu", ".cuh", ".h"):
            found += re.findall(rf"enum\s+(?:class\s+)?{name}\b[^{{;]*\{{([^}}]*)\}}", path.read_text())
    assert len(found) == 1, f"enum {name} is defined {len(found)} times in csrc/"
    out, value = {}, 0
    for item in re.sub(r"//[^\n]*", "", found[0]).split(","):
        item = item.strip()
        if not item:
            continue
        key, _, explicit = item.partition("=")
        value = int(explicit) if explicit.strip() else value
        out[key.strip()] = value
        value += 1
    return out


def test_cuda_activation_codes_are_the_table():
    # the CUDA kernels are batch norm's: they compute the activations batch norm fuses, with the table's codes
    names = {"ACT_NONE": None, "ACT_RELU": "relu", "ACT_LEAKY_RELU": "leaky_relu"}
    enum = cuda_enum("Activation")
    assert set(enum) == set(names)
    assert set(names.values()) == set(activations.BATCH_NORM)
    assert {names[k]: v for k, v in enum.items()} == {n: activations.ACTIVATIONS[n].code for n in names.values()}


def test_cuda_dtype_codes_are_the_python_ones():
    enum = cuda_enum("DType")
    assert list(enum.values()) == sorted(_op.DTYPE_CODE.values())
    assert dict(zip(enum.values(), enum)) == {0: "kFloat32", 1: "kFloat16", 2: "kBFloat16"}
    assert _op.DTYPE_CODE == {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def test_cuda_spectral_norm_table_fields_are_the_plan():
    for enum_name, count in (("Meta", "NF"), ("EMeta", "NE")):
        enum = cuda_enum(enum_name)
        for field, value in enum.items():
            assert getattr(plan, field) == value, f"{enum_name}::{field}"
        assert enum[count] == len(enum) - 1


@pytest.mark.parametrize("name", list(activations.ACTIVATIONS))
def test_reference_forward_and_derivative_are_torch(name):
    act = activations.ACTIVATIONS[name]
    z = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0, float("nan"), float("-inf")], dtype=torch.float64,
                     requires_grad=True)
    slope = 0.2
    module = act.modules[0](slope) if act.has_slope else (act.modules[0]() if act.modules else nn.Identity())
    y = module(z)
    (g,) = torch.autograd.grad(y, z, torch.arange(1.0, 8.0, dtype=torch.float64))
    torch.testing.assert_close(act.forward(z.detach(), slope), y.detach(), equal_nan=True)
    gy = torch.arange(1.0, 8.0, dtype=torch.float64)
    torch.testing.assert_close(act.backward(gy, z.detach(), slope), g, equal_nan=True)
    torch.testing.assert_close(act.backward_from_output(gy, y.detach(), slope), g, equal_nan=True)
    assert activations.BY_CODE[act.code] is act


def test_lookup_accepts_the_documented_forms_and_refuses_the_rest():
    assert activations.lookup(None, 0.01, "f") == (activations.ACTIVATIONS[None], 0.01)
    assert activations.lookup(("leaky_relu", 0.2), 0.01, "f") == (activations.ACTIVATIONS["leaky_relu"], 0.2)
    for bad, slope, match in (("gelu", 0.01, "activation must be one of"), (F.relu, 0.01, "activation must be"),
                              ("leaky_relu", 0.0, "negative_slope > 0"), ("relu", float("nan"), "finite")):
        with pytest.raises(ValueError, match=match):
            activations.lookup(bad, slope, "f")
    assert activations.lookup("tanh", 0.01, "f")[0].name == "tanh"
    with pytest.raises(ValueError, match="activation must be one of None, 'relu', 'leaky_relu'"):
        activations.lookup("tanh", 0.01, "f", activations.BATCH_NORM)


def test_of_module_names_what_the_kernels_compute():
    assert activations.of_module(nn.ReLU()) == ("relu", 0.01)
    assert activations.of_module(nn.ReLU(inplace=True)) == ("relu", 0.01)
    assert activations.of_module(nn.LeakyReLU(0.2)) == ("leaky_relu", 0.2)
    assert activations.of_module(nn.LeakyReLU(0.0)) is None  # not what leaky_relu computes (slope > 0)
    assert activations.of_module(nn.GELU()) is None
    assert activations.of_module(nn.Tanh()) == ("tanh", 0.01)
    assert activations.of_module(nn.Tanh(), activations.BATCH_NORM) is None  # batch norm does not fuse it
    assert activations.of_module(None) is None

    class MyReLU(nn.ReLU):  # a subclass may do more than its base: not fused
        pass

    assert activations.of_module(MyReLU()) is None
