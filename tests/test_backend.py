"""Backend choice: argument, use_backend (call and context manager), FASTGAN_BACKEND, auto, clear errors."""
import pytest
import torch

import fastgan
from fastgan import _backend

CPU = torch.device("cpu")


def test_auto_on_cpu_follows_the_interpreter_flag(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert _backend.resolve("spectral_norm", CPU, torch.float32) == "torch"
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    expected = "torch" if _backend._import_triton() else "triton"
    assert _backend.resolve("spectral_norm", CPU, torch.float32) == expected


def test_auto_keeps_float64_on_torch(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _backend.resolve("spectral_norm", CPU, torch.float64) == "torch"


def test_explicit_unavailable_backend_says_why(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(_backend.BackendUnavailable, match="CUDA tensors"):
        _backend.resolve("spectral_norm", CPU, torch.float32, "cuda")
    with pytest.raises(_backend.BackendUnavailable, match="TRITON_INTERPRET"):
        _backend.resolve("spectral_norm", CPU, torch.float32, "triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(_backend.BackendUnavailable, match="float64"):
        _backend.resolve("spectral_norm", CPU, torch.float64, "triton")


def test_unknown_backend_names_the_choices():
    with pytest.raises(_backend.BackendUnavailable, match="torch, triton, cuda"):
        _backend.resolve("spectral_norm", CPU, torch.float32, "cudnn")
    with pytest.raises(ValueError, match="unknown backend"):
        fastgan.use_backend("fast")


def test_precedence_argument_then_use_backend_then_env(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("FASTGAN_BACKEND", "cuda")
    with pytest.raises(_backend.BackendUnavailable):
        _backend.resolve("spectral_norm", CPU, torch.float32)  # the environment asks for cuda
    with fastgan.use_backend("torch"):  # the context beats the environment
        assert _backend.resolve("spectral_norm", CPU, torch.float32) == "torch"
        assert fastgan.current_backend() == "torch"
        with pytest.raises(_backend.BackendUnavailable):  # the argument beats the context
            _backend.resolve("spectral_norm", CPU, torch.float32, "cuda")
    assert fastgan.current_backend() == "cuda"  # restored on exit
    monkeypatch.delenv("FASTGAN_BACKEND")
    assert fastgan.current_backend() == "auto"


def test_use_backend_as_a_call_stays_in_force():
    try:
        fastgan.use_backend("torch")
        assert fastgan.current_backend() == "torch"
    finally:
        fastgan.use_backend(None)
    assert fastgan.current_backend() == "auto"


def test_op_call_honours_explicit_backend_error():
    w = torch.randn(4, 3)
    u, v = torch.randn(4), torch.randn(3)
    with pytest.raises(_backend.BackendUnavailable, match="cuda"):
        fastgan.spectral_normalize(w, u, v, backend="cuda")


def test_a_backend_that_is_not_a_name_is_a_type_error():
    import fastgan

    for bad in (3, ["torch"], b"torch"):
        with pytest.raises(TypeError, match="the backend is a name"):
            fastgan.use_backend(bad)
        with pytest.raises(TypeError, match="the backend is a name"):
            fastgan.conditional_batch_norm(torch.randn(2, 3, 4, 4), backend=bad)
    assert fastgan.current_backend() in ("auto", "torch", "triton", "cuda")
