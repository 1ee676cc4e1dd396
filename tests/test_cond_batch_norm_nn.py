"""Batch-norm modules, checkpoints from other codebases, convert(), and statistics synced over 2 processes."""
import copy
import os
import socket

import pytest
import torch
import torch.nn.functional as F
from conftest import INTERPRETING
from torch import nn

import fastgan
from fastgan.nn import BatchNorm2d, ConditionalBatchNorm2d, LinearConditionalBatchNorm2d

BACKENDS = ["torch"] + (["triton"] if INTERPRETING else [])


def _steps(ours, theirs, inputs, backend, train=True):
    """Run both modules over the inputs (training), compare outputs, input gradients and parameter gradients."""
    ours.train(train)
    theirs.train(train)
    for x in inputs:
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        with fastgan.use_backend(backend):
            ya = ours(xa)
        yb = theirs(xb)
        gy = torch.randn_like(yb)
        ya.backward(gy)
        yb.backward(gy)
        torch.testing.assert_close(ya, yb, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    for (name, pa), pb in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, ba), bb in zip(ours.named_buffers(), theirs.buffers()):
        torch.testing.assert_close(ba, bb, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kwargs", [{}, {"momentum": None}, {"affine": False}, {"track_running_stats": False}],
                         ids=["default", "cumulative", "no_affine", "no_running"])
def test_batchnorm2d_matches_torch_over_steps(backend, kwargs):
    torch.manual_seed(0)
    ours, theirs = BatchNorm2d(5, **kwargs), nn.BatchNorm2d(5, **kwargs)
    if ours.affine:
        with torch.no_grad():
            for m in (ours, theirs):
                m.weight.copy_(torch.linspace(0.5, 1.5, 5))
                m.bias.copy_(torch.linspace(-0.2, 0.3, 5))
    inputs = [torch.randn(4, 5, 3, 3) * (i + 1) + i for i in range(3)]
    _steps(ours, theirs, inputs, backend)
    _steps(ours, theirs, inputs[:1], backend, train=False)
    assert isinstance(ours, nn.BatchNorm2d)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_activation_matches_bn_then_activation(backend):
    torch.manual_seed(1)
    for act, mod in (("relu", nn.ReLU()), ("leaky_relu", nn.LeakyReLU(0.2))):
        ours = BatchNorm2d(3, activation=act, negative_slope=0.2)
        theirs = nn.Sequential(nn.BatchNorm2d(3), mod)
        _steps(ours, theirs, [torch.randn(6, 3, 4, 4).contiguous(memory_format=torch.channels_last)], backend)
    assert "activation='leaky_relu'" in repr(ours)


def test_batchnorm2d_state_dict_round_trip_with_torch():
    theirs = nn.BatchNorm2d(4)
    theirs.train()
    theirs(torch.randn(3, 4, 2, 2) * 2 + 1)
    ours = BatchNorm2d(4)
    ours.load_state_dict(theirs.state_dict())
    back = nn.BatchNorm2d(4)
    back.load_state_dict(ours.state_dict())
    for k, v in theirs.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert list(ours.state_dict()) == list(theirs.state_dict())


class _ReferenceCBN(nn.Module):
    """Class-conditional BN as GAN code writes it: BN without affine, then an embedding's gamma and beta."""

    def __init__(self, c, k):
        super().__init__()
        self.bn = nn.BatchNorm2d(c, affine=False)
        self.embed = nn.Embedding(k, 2 * c)

    def forward(self, x, y):
        g, b = self.embed(y).chunk(2, 1)
        return F.relu(self.bn(x) * g[:, :, None, None] + b[:, :, None, None])


@pytest.mark.parametrize("backend", BACKENDS)
def test_conditional_batchnorm_matches_embedding_reference(backend):
    torch.manual_seed(2)
    ours = ConditionalBatchNorm2d(6, 10, activation="relu")
    assert torch.equal(ours.weight, torch.ones(10, 6)) and torch.equal(ours.bias, torch.zeros(10, 6))
    ref = _ReferenceCBN(6, 10)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(10, 6) * 0.2 + 1)
        ours.bias.copy_(torch.randn(10, 6) * 0.2)
        ref.embed.weight.copy_(torch.cat([ours.weight, ours.bias], 1))
    for train in (True, True, False):
        ours.train(train)
        ref.train(train)
        x = torch.randn(5, 6, 3, 3) + 1
        y = torch.tensor([0, 9, 3, 3, 7])
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        with fastgan.use_backend(backend):
            out = ours(xa, y)
        expected = ref(xb, y)
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        gy = torch.randn_like(out)
        out.backward(gy)
        expected.backward(gy)
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.cat([ours.weight.grad, ours.bias.grad], 1), ref.embed.weight.grad,
                               rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ours.running_mean, ref.bn.running_mean)
    torch.testing.assert_close(ours.running_var, ref.bn.running_var)


def test_conditional_batchnorm_rejects_bad_labels():
    m = ConditionalBatchNorm2d(3, 4)
    x = torch.randn(2, 3, 2, 2)
    with pytest.raises(IndexError, match=r"label 4 is out of range for 4 classes"):
        m(x, torch.tensor([0, 4]))
    with pytest.raises(IndexError, match=r"label -1"):
        m(x, torch.tensor([-1, 0]))
    with pytest.raises(TypeError, match="integer tensor of class indices"):
        m(x, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\)"):
        m(x, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 3, H, W\)"):
        m(torch.randn(2, 4, 2, 2), torch.tensor([0, 1]))
    unchecked = ConditionalBatchNorm2d(3, 4, check_labels=False)
    assert torch.isfinite(unchecked(x, torch.tensor([0, 7]))).all()  # clamped, never read out of bounds


class _BigGANccbn(nn.Module):
    """BigGAN-PyTorch's ccbn (norm_style='bn'), written from its description: keys gain/bias linears, stored_*."""

    def __init__(self, out, inp, eps=1e-5, momentum=0.1):
        super().__init__()
        self.gain = nn.Linear(inp, out, bias=False)
        self.bias = nn.Linear(inp, out, bias=False)
        self.register_buffer("stored_mean", torch.zeros(out))
        self.register_buffer("stored_var", torch.ones(out))
        self.eps, self.momentum = eps, momentum

    def forward(self, x, y):
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, self.momentum, self.eps)
        return out * gain + bias


class _StudioGANcbn(nn.Module):
    """StudioGAN's ConditionalBatchNorm2d with spectral-normed linears (legacy torch SN)."""

    def __init__(self, inp, out):
        super().__init__()
        self.bn = nn.BatchNorm2d(out, eps=1e-4, momentum=0.1, affine=False)
        self.gain = nn.utils.spectral_norm(nn.Linear(inp, out, bias=False), eps=1e-6)
        self.bias = nn.utils.spectral_norm(nn.Linear(inp, out, bias=False), eps=1e-6)

    def forward(self, x, y):
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        return self.bn(x) * gain + bias


def test_linear_cbn_matches_and_loads_biggan_ccbn():
    torch.manual_seed(3)
    src = _BigGANccbn(6, 8)
    src.train()
    for _ in range(2):
        src(torch.randn(4, 6, 3, 3) + 2, torch.randn(4, 8))
    sd = src.state_dict()
    ours = LinearConditionalBatchNorm2d(6, 8)
    ours.load_state_dict(sd)  # directly
    converted = fastgan.from_biggan_ccbn(sd)
    assert set(converted) == {"gain.weight", "bias.weight", "running_mean", "running_var", "num_batches_tracked"}
    ours2 = LinearConditionalBatchNorm2d(6, 8)
    ours2.load_state_dict(converted)
    x, c = torch.randn(5, 6, 3, 3), torch.randn(5, 8)
    for m in (ours, ours2):
        ref = copy.deepcopy(src)
        for train in (False, True, False):
            m.train(train)
            ref.train(train)
            torch.testing.assert_close(m(x, c), ref(x, c), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(m.running_var, ref.stored_var)


def test_linear_cbn_loads_studiogan_layout_with_spectral_norm():
    torch.manual_seed(4)
    src = _StudioGANcbn(8, 6)
    src.train()
    for _ in range(3):
        src(torch.randn(4, 6, 3, 3) - 1, torch.randn(4, 8))
    src.eval()
    sd = src.state_dict()
    x, c = torch.randn(5, 6, 3, 3), torch.randn(5, 8)
    expected = src(x, c)
    for load in (sd, fastgan.from_studiogan_cbn(sd)):
        ours = LinearConditionalBatchNorm2d(6, 8, eps=1e-4, spectral_norm=True, sn_eps=1e-6).eval()
        ours.load_state_dict(load)
        torch.testing.assert_close(ours(x, c), expected, rtol=1e-5, atol=1e-5)
        assert int(ours.num_batches_tracked) == 3


def test_linear_cbn_state_dict_goes_back_to_studiogan_and_biggan_layouts():
    torch.manual_seed(8)
    ours = LinearConditionalBatchNorm2d(6, 8, eps=1e-4, spectral_norm=True, sn_eps=1e-6)
    ours.train()
    for _ in range(2):
        ours(torch.randn(4, 6, 3, 3) + 1, torch.randn(4, 8))
    ours.eval()
    x, c = torch.randn(5, 6, 3, 3), torch.randn(5, 8)
    studio = _StudioGANcbn(8, 6)
    studio.load_state_dict(fastgan.to_studiogan_cbn(ours.state_dict()))
    studio.eval()
    torch.testing.assert_close(studio(x, c), ours(x, c), rtol=1e-5, atol=1e-5)
    assert int(studio.bn.num_batches_tracked) == 2

    plain = LinearConditionalBatchNorm2d(6, 8)
    plain.train()
    plain(torch.randn(4, 6, 3, 3), torch.randn(4, 8))
    biggan = _BigGANccbn(6, 8)
    biggan.load_state_dict(fastgan.to_biggan_ccbn(plain.state_dict()))
    plain.eval()
    biggan.eval()
    torch.testing.assert_close(biggan(x, c), plain(x, c), rtol=1e-5, atol=1e-5)

    sd = fastgan.to_biggan_ccbn(ours.state_dict())  # SN layers as BigGAN's weight, u0, sv0
    assert sd["gain.u0"].shape == (1, 6) and sd["gain.sv0"].shape == (1,)
    u, v = ours.gain.parametrizations.weight[0]._u, ours.gain.parametrizations.weight[0]._v
    W = ours.gain.parametrizations.weight.original
    torch.testing.assert_close(sd["gain.sv0"], torch.dot(u, W @ v).reshape(1))
    back = LinearConditionalBatchNorm2d(6, 8, eps=1e-4, spectral_norm=True, sn_eps=1e-6).eval()
    back.load_state_dict(sd)
    torch.testing.assert_close(back.running_var, ours.running_var)


def test_biggan_plain_bn_layer_converts_gain_to_weight():
    sd = {"bn.gain": torch.rand(4) + 0.5, "bn.bias": torch.randn(4), "bn.stored_mean": torch.randn(4),
          "bn.stored_var": torch.rand(4) + 0.5}
    out = fastgan.from_biggan_ccbn(sd)
    m = BatchNorm2d(4).eval()
    m.load_state_dict({k[3:]: v for k, v in out.items()})
    x = torch.randn(3, 4, 2, 2)
    expected = F.batch_norm(x, sd["bn.stored_mean"], sd["bn.stored_var"], sd["bn.gain"], sd["bn.bias"], False)
    torch.testing.assert_close(m(x), expected)


@pytest.mark.parametrize("conv_transpose", [False, True])
def test_convert_swaps_batchnorm_and_fuses_relu(conv_transpose):
    torch.manual_seed(5)
    model = nn.Sequential(nn.ConvTranspose2d(4, 6, 4, 2, 1), nn.BatchNorm2d(6), nn.ReLU(True),
                          nn.ConvTranspose2d(6, 3, 4, 2, 1), nn.BatchNorm2d(3), nn.LeakyReLU(0.2), nn.Tanh())
    reference = copy.deepcopy(model)
    params_before = [id(p) for p in model.parameters()]
    fastgan.convert(model, conv_transpose=conv_transpose)
    runs = [model[i].__dict__["_fastgan_run"] for i in ((0, 3) if conv_transpose else (1, 4))]
    assert [partners for partners, *_ in runs] == ([(model[1], model[2]), (model[4], model[5])] if conv_transpose
                                                   else [(model[2],), (model[5],)])
    if conv_transpose:  # ConvT -> BN -> act computed by one ConvTransposeBNAct on the same modules
        blocks = [block for *_, block in runs]
        assert [(b.activation, b.negative_slope) for b in blocks] == [("relu", 0.01), ("leaky_relu", 0.2)]
        assert blocks[0].bn is model[1] and blocks[1].conv is model[3]
    else:
        assert isinstance(model[1], BatchNorm2d) and [spec for *_, spec in runs] == [("relu", 0.01),
                                                                                     ("leaky_relu", 0.2)]
    assert [id(p) for p in model.parameters()] == params_before
    assert list(model.state_dict()) == list(reference.state_dict())
    x = torch.randn(2, 4, 3, 3)
    for train in (True, False):
        model.train(train)
        reference.train(train)
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- 2 processes on gloo


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sync_worker(rank, world, port, backend, x, w, b, gy, out_dir):
    import torch.distributed as dist

    if backend == "triton":
        os.environ["TRITON_INTERPRET"] = "1"
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        n = x.shape[0] // world
        xs = x[rank * n:(rank + 1) * n].clone().requires_grad_()
        ws = w[rank * n:(rank + 1) * n].clone().requires_grad_()
        bs = b.clone().requires_grad_()
        rm, rv = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
        y = fastgan.conditional_batch_norm(xs, ws, bs, rm, rv, True, activation="relu", sync=True, backend=backend)
        y.backward(gy[rank * n:(rank + 1) * n])
        torch.save({"y": y.detach(), "dx": xs.grad, "dw": ws.grad, "db": bs.grad, "rm": rm, "rv": rv},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("backend", BACKENDS)
def test_sync_over_two_gloo_processes_equals_one_process_on_the_whole_batch(backend, tmp_path):
    import torch.multiprocessing as mp

    torch.manual_seed(6)
    x = torch.randn(6, 5, 3, 4) * 2 + 1
    w = torch.randn(6, 5) * 0.3 + 1  # per-sample gamma: each rank gets its own rows
    b = torch.randn(5) * 0.2  # per-channel beta: its gradient is a per-rank partial sum
    gy = torch.randn_like(x)
    mp.start_processes(_sync_worker, args=(2, _free_port(), backend, x, w, b, gy, str(tmp_path)), nprocs=2,
                       join=True, start_method="spawn")
    parts = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    xr, wr, br = x.double().requires_grad_(), w.double().requires_grad_(), b.double().requires_grad_()
    rm, rv = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    yr = F.relu(F.batch_norm(xr, rm, rv, None, None, True) * wr[:, :, None, None] + br[None, :, None, None])
    yr.backward(gy.double())
    tol = {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(torch.cat([p["y"] for p in parts]).double(), yr.detach(), **tol)
    torch.testing.assert_close(torch.cat([p["dx"] for p in parts]).double(), xr.grad, **tol)
    torch.testing.assert_close(torch.cat([p["dw"] for p in parts]).double(), wr.grad, **tol)
    torch.testing.assert_close((parts[0]["db"] + parts[1]["db"]).double(), br.grad, **tol)
    for p in parts:
        torch.testing.assert_close(p["rm"].double(), rm, **tol)
        torch.testing.assert_close(p["rv"].double(), rv, **tol)


def test_convert_sync_batchnorm_sets_sync_and_swaps_torch_modules():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), BatchNorm2d(4), ConditionalBatchNorm2d(4, 3))
    weight = model[1].weight
    out = fastgan.nn.convert_sync_batchnorm(model)
    assert out is model
    assert isinstance(model[1], BatchNorm2d) and model[1].sync and model[1].weight is weight
    assert model[2].sync and model[3].sync


@pytest.mark.gpu
def test_bad_labels_on_the_gpu_raise_and_leave_the_device_usable():
    m = ConditionalBatchNorm2d(8, 5).cuda()
    x = torch.randn(4, 8, 3, 3, device="cuda")
    with pytest.raises(IndexError, match="out of range"):
        m(x, torch.tensor([0, 1, 5, 2], device="cuda"))
    unchecked = ConditionalBatchNorm2d(8, 5, check_labels=False).cuda()
    y = unchecked(x, torch.tensor([0, 1, 99, -3], device="cuda"))
    torch.cuda.synchronize()
    assert torch.isfinite(y).all()
    assert torch.isfinite(m(x, torch.tensor([0, 1, 4, 2], device="cuda"))).all()


@pytest.mark.parametrize("affine", [True, False])  # False: StudioGAN's inner BN (no dweight, no dbias)
def test_module_under_torch_compile_fullgraph_matches_eager(affine):
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), BatchNorm2d(8, affine=affine, activation="relu"),
                          nn.Conv2d(8, 4, 3))
    reference = copy.deepcopy(model)
    compiled = torch.compile(model, fullgraph=True)
    x = torch.randn(4, 3, 8, 8)
    out, expected = compiled(x), reference(x)
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model[0].weight.grad, reference[0].weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model[1].running_var, reference[1].running_var)
    assert int(model[1].num_batches_tracked) == 1
    model.eval()
    reference.eval()
    torch.testing.assert_close(compiled(x), reference(x), rtol=1e-5, atol=1e-5)


def _bn_modules():
    """Every fastgan batch-norm module, each with the call that runs it on x (N, 6, H, W)."""
    labels = torch.tensor([0, 2, 1, 2])
    cond = torch.randn(4, 5)
    return {
        "BatchNorm2d": (lambda: BatchNorm2d(6), lambda m, x: m(x)),
        "BatchNorm2d(affine=False)": (lambda: BatchNorm2d(6, affine=False), lambda m, x: m(x)),
        "BatchNorm2d(relu)": (lambda: BatchNorm2d(6, activation="relu"), lambda m, x: m(x)),
        "ConditionalBatchNorm2d": (lambda: ConditionalBatchNorm2d(6, 3), lambda m, x: m(x, labels)),
        "LinearConditionalBatchNorm2d": (lambda: LinearConditionalBatchNorm2d(6, 5), lambda m, x: m(x, cond)),
        "LinearConditionalBatchNorm2d(sn)": (lambda: LinearConditionalBatchNorm2d(6, 5, spectral_norm=True),
                                             lambda m, x: m(x, cond)),
    }


@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", list(_bn_modules()))
def test_in_place_activation_after_every_module(kind, backend, train, grad):
    """StudioGAN applies one shared nn.ReLU(inplace=True) to batch-norm outputs; pytorch/examples' DCGAN
    nn.ReLU(True) and nn.LeakyReLU(0.2, inplace=True): the output must be modifiable in place, and the gradient
    be that of BN followed by the out-of-place activation."""
    make, call = _bn_modules()[kind]
    torch.manual_seed(0)
    module = make()
    twin = copy.deepcopy(module)
    module.train(train), twin.train(train)
    x = torch.randn(4, 6, 5, 5)
    with fastgan.use_backend(backend), torch.set_grad_enabled(grad):
        for act_inplace, act in ((nn.ReLU(inplace=True), F.relu), (nn.LeakyReLU(0.2, inplace=True),
                                                                     lambda t: F.leaky_relu(t, 0.2))):
            xa, xb = x.clone().requires_grad_(grad), x.clone().requires_grad_(grad)
            ya, yb = act_inplace(call(module, xa)), act(call(twin, xb))
            torch.testing.assert_close(ya, yb)
            if grad:
                gy = torch.randn_like(ya)
                ya.backward(gy)
                yb.backward(gy)
                torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)
                for pa, pb in zip(module.parameters(), twin.parameters()):
                    torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-5, atol=1e-6)


class _StudioGANStyleGenerator(nn.Module):
    """Written in the style of PyTorch-StudioGAN's generators: one nn.ReLU(inplace=True) instance shared by every
    block and applied to batch-norm outputs, blocks built in a ModuleList, conv layers with a BN before them."""

    def __init__(self, z_dim=8, ch=6):
        super().__init__()
        self.ch = ch
        self.linear0 = nn.Linear(z_dim, ch * 4 * 4)
        self.activation = nn.ReLU(inplace=True)
        self.blocks = nn.ModuleList()
        for _ in range(2):
            self.blocks.append(nn.ModuleList([nn.BatchNorm2d(ch), nn.Conv2d(ch, ch, 3, padding=1)]))
        self.bn4 = nn.BatchNorm2d(ch)
        self.conv4 = nn.Conv2d(ch, 3, 3, padding=1)

    def forward(self, z):
        h = self.linear0(z).view(-1, self.ch, 4, 4)
        for bn, conv in self.blocks:
            h = conv(self.activation(bn(h)))
            h = nn.functional.interpolate(h, scale_factor=2)
        return torch.tanh(self.conv4(self.activation(self.bn4(h))))


@pytest.mark.parametrize("backend", BACKENDS)
def test_converted_studiogan_style_generator_trains_like_the_original(backend):
    torch.manual_seed(0)
    original = _StudioGANStyleGenerator()
    converted = fastgan.convert(copy.deepcopy(original), fuse_activation=False)
    assert sum(isinstance(m, BatchNorm2d) for m in converted.modules()) == 3
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (original, converted)]
    gen = torch.Generator().manual_seed(1)
    with fastgan.use_backend(backend):
        for _ in range(3):
            z = torch.randn(5, 8, generator=gen)
            for model, opt in zip((original, converted), opts):
                opt.zero_grad()
                model(z).square().mean().backward()
                opt.step()
            for a, b in zip(original.state_dict().values(), converted.state_dict().values()):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    original.eval(), converted.eval()
    z = torch.randn(5, 8, generator=gen)
    torch.testing.assert_close(converted(z), original(z), rtol=1e-4, atol=1e-5)
