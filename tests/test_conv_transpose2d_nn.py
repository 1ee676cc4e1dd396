"""The transposed-convolution modules against the torch modules they replace: fastgan.nn.ConvTranspose2d vs
nn.ConvTranspose2d, ConvTransposeBNAct vs nn.Sequential(ConvTranspose2d, BatchNorm2d, ReLU) over several training
steps (outputs, gradients, running statistics, eval), UpsampleConv2d vs nn.Upsample + nn.Conv2d; state dicts
loading both ways."""
import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import INTERPRETING
from torch import nn

import fastgan
from fastgan.nn import ConvTranspose2d, ConvTransposeBNAct, UpsampleConv2d

BACKENDS = ["torch"] + ([pytest.param("triton", marks=pytest.mark.kernels)] if INTERPRETING else [])


def _close(a, b, dtype):
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    a, b = a.detach(), b.detach()
    torch.testing.assert_close(a.to(b.dtype), b, rtol=tol, atol=tol * max(1.0, float(b.abs().max())))


def test_conv_transpose2d_is_the_torch_module():
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    torch.manual_seed(0)
    mod = ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    assert isinstance(mod, nn.ConvTranspose2d)
    assert mod.state_dict().keys() == ref.state_dict().keys()
    for a, b in zip(mod.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)  # the same initialisation
    x = torch.randn(2, 6, 5, 4)
    _close(mod(x), ref(x), torch.float32)
    _close(mod(x[0]), ref(x[0]), torch.float32)  # unbatched input
    _close(mod(x, output_size=(10, 8)), ref(x, output_size=(10, 8)), torch.float32)
    tanh = ConvTranspose2d(6, 4, 3, groups=2, activation="tanh")
    tanh.load_state_dict(ref.state_dict())
    _close(tanh(x), torch.tanh(F.conv_transpose2d(x, ref.weight, ref.bias, 1, 0, 0, 2)), torch.float32)
    assert "activation='tanh'" in repr(tanh)
    with pytest.raises(ValueError, match="activation must be one of"):
        ConvTranspose2d(6, 4, 3, activation="gelu")


def _pair(momentum=0.1, track=True, activation="relu", dtype=torch.float64, bias=False):
    torch.manual_seed(1)
    act = {"relu": nn.ReLU(), "leaky_relu": nn.LeakyReLU(0.2), None: nn.Identity()}[activation]
    ref = nn.Sequential(nn.ConvTranspose2d(5, 6, 4, 2, 1, bias=bias), nn.BatchNorm2d(6, momentum=momentum,
                                                                                      track_running_stats=track),
                        act).to(dtype)
    blk = ConvTransposeBNAct(5, 6, 4, 2, 1, bias=bias, momentum=momentum, track_running_stats=track,
                             activation=activation, negative_slope=0.2).to(dtype)
    blk.load_state_dict(ref.state_dict(), strict=True)
    return ref, blk


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", [dict(), dict(momentum=None, activation="leaky_relu", bias=True),
                                     dict(track=False, activation=None)], ids=["default", "cumulative", "untracked"])
def test_block_trains_like_the_three_torch_modules(backend, options):
    dtype = torch.float64 if backend == "torch" else torch.float32
    ref, blk = _pair(dtype=dtype, **options)
    assert list(blk.state_dict()) == list(ref.state_dict())
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (ref, blk)]
    with fastgan.use_backend(backend):
        for _ in range(3):
            x = torch.randn(3, 5, 4, 3, dtype=dtype)
            outs = []
            for m, opt in zip((ref, blk), opts):
                opt.zero_grad()
                y = m(x)
                (y * torch.arange(y.numel(), dtype=dtype).reshape(y.shape).cos()).sum().backward()
                opt.step()
                outs.append(y)
            _close(outs[1], outs[0], dtype)
            for a, b in zip(blk.state_dict().values(), ref.state_dict().values()):
                if a.is_floating_point():
                    _close(a, b, dtype)
                else:
                    assert torch.equal(a, b)  # num_batches_tracked
        for m in (ref, blk):
            m.eval()
        x = torch.randn(2, 5, 4, 3, dtype=dtype)
        _close(blk(x), ref(x), dtype)


def test_block_state_dict_loads_both_ways_and_from_modules_shares_parameters():
    ref, blk = _pair()
    back = copy.deepcopy(ref)
    back.load_state_dict(blk.state_dict(), strict=True)
    conv, bn = nn.ConvTranspose2d(5, 6, 4, 2, 1, bias=False), nn.BatchNorm2d(6)
    made = ConvTransposeBNAct.from_modules(conv, bn, nn.ReLU())
    assert made[0].weight is conv.weight and made[1].running_mean is bn.running_mean
    x = torch.randn(2, 5, 3, 3)
    expected = torch.relu(F.batch_norm(F.conv_transpose2d(x, conv.weight, None, 2, 1), bn.running_mean.clone(),
                                       bn.running_var.clone(), bn.weight, bn.bias, True))
    _close(made(x), expected, torch.float32)
    assert bn.num_batches_tracked.item() == 1  # the shared buffer was updated
    with pytest.raises(ValueError, match="cannot fuse Tanh"):
        ConvTransposeBNAct.from_modules(conv, bn, nn.Tanh())
    with pytest.raises(ValueError, match="bn has 5 features but conv has 6 output channels"):
        ConvTransposeBNAct.from_modules(conv, nn.BatchNorm2d(5))
    with pytest.raises(TypeError, match="without an activation"):
        ConvTransposeBNAct.from_modules(ConvTranspose2d(5, 6, 4, activation="tanh"), bn)
    with pytest.raises(ValueError, match="forward hooks"):
        ConvTransposeBNAct.from_modules(nn.utils.spectral_norm(nn.ConvTranspose2d(5, 6, 4)), nn.BatchNorm2d(6))


def test_block_from_a_spectral_normed_conv_and_sync_batch_norm_computes_the_modules():
    torch.manual_seed(4)
    conv = nn.utils.parametrizations.spectral_norm(nn.ConvTranspose2d(5, 6, 4, 2, 1, bias=False))
    bn = nn.SyncBatchNorm(6)  # (no process group here: plain batch norm, as torch runs it)
    ref_conv, ref_bn = copy.deepcopy(conv), copy.deepcopy(bn)
    block = ConvTransposeBNAct.from_modules(conv, bn, nn.LeakyReLU(0.2))
    x = torch.randn(3, 5, 4, 4)
    torch.testing.assert_close(block(x), F.leaky_relu(ref_bn(ref_conv(x)), 0.2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, ref_bn.running_var)
    torch.testing.assert_close(conv.parametrizations.weight.original, ref_conv.parametrizations.weight.original)


def test_block_is_indexed_like_the_sequential_but_not_sliced():
    _, blk = _pair()
    assert blk[0] is blk.conv and blk[1] is blk.bn and blk[-1] is blk.bn and len(blk) == 2
    with pytest.raises(IndexError, match="index 0 .* or 1"):
        blk[2]
    with pytest.raises(IndexError, match="index 0 .* or 1"):
        blk[0:1]
    assert "activation='relu'" in repr(blk)


@pytest.mark.parametrize("backend", BACKENDS)
def test_upsample_conv2d_module_is_upsample_then_conv2d(backend):
    torch.manual_seed(2)
    ref = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(4, 6, 3, padding=1))
    torch.manual_seed(2)
    mod = UpsampleConv2d(4, 6, 3)
    assert isinstance(mod, nn.Conv2d)
    mod.load_state_dict(ref[1].state_dict(), strict=True)
    ref[1].load_state_dict(mod.state_dict(), strict=True)
    x = torch.randn(2, 4, 5, 3, requires_grad=True)
    with fastgan.use_backend(backend), torch.backends.cudnn.flags(allow_tf32=False):
        y = mod(x)
    yr = ref(x)
    _close(y, yr, torch.float32)
    gy = torch.randn_like(yr)
    got = torch.autograd.grad(y, (x, mod.weight, mod.bias), gy)
    exp = torch.autograd.grad(yr, (x, ref[1].weight, ref[1].bias), gy)
    for a, b in zip(got, exp):
        _close(a, b, torch.float32)


@pytest.mark.parametrize("kwargs, match", [(dict(kernel_size=4), "odd square kernel"),
                                           (dict(padding=0), "padding kernel_size // 2"),
                                           (dict(stride=2), "stride 1"), (dict(dilation=2), "dilation 1"),
                                           (dict(padding_mode="reflect"), "padding_mode 'zeros'")])
def test_upsample_conv2d_module_refuses_what_it_does_not_compute(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UpsampleConv2d(4, 6, **({"kernel_size": 3} | kwargs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_block_in_eval_folds_batch_norm_into_the_convolution(backend):
    torch.manual_seed(3)
    ref = nn.Sequential(nn.ConvTranspose2d(4, 6, 3, 2, 1, 1, groups=2, bias=True), nn.BatchNorm2d(6),
                        nn.LeakyReLU(0.2))
    with torch.no_grad():  # running statistics and affine parameters away from their initial values
        ref[1].running_mean.uniform_(-1, 1)
        ref[1].running_var.uniform_(0.5, 2)
        ref[1].weight.uniform_(0.5, 1.5)
        ref[1].bias.uniform_(-0.5, 0.5)
    blk = ConvTransposeBNAct(4, 6, 3, 2, 1, 1, groups=2, bias=True, activation="leaky_relu", negative_slope=0.2)
    blk.load_state_dict(ref.state_dict())
    ref.eval()
    blk.eval()
    x = torch.randn(2, 4, 3, 5, requires_grad=True)
    with fastgan.use_backend(backend), torch.backends.cudnn.flags(allow_tf32=False):
        y = blk(x)
    yr = ref(x)
    _close(y, yr, torch.float32)
    gy = torch.randn_like(yr)
    for a, b in zip(torch.autograd.grad(y, (x, blk[0].weight, blk[1].weight), gy),
                    torch.autograd.grad(yr, (x, ref[0].weight, ref[1].weight), gy)):
        _close(a, b, torch.float32)
    assert blk[1].num_batches_tracked.item() == 0  # eval leaves the statistics alone
