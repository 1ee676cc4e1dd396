"""Gradient penalties (fastgan/penalties.py) against the textbook autograd.grad(create_graph=True) implementations
in float64, for discriminators of torch layers and of fastgan layers; the fused ops (interpolation, penalty of a
gradient) against their references, under the interpreter for the Triton kernels; gradcheck; lazy regularisation;
bad input."""
import pytest
import torch
import torch.nn.functional as F
from conftest import INTERPRETING
from torch import nn

import fastgan
from fastgan.ops import gradient_penalty_reference as ref

KERNEL_BACKENDS = [pytest.param("triton", marks=pytest.mark.kernels)]
CPU_BACKENDS = ["torch"] + (KERNEL_BACKENDS if INTERPRETING else [])


def dcgan_critic(dtype=torch.float64):
    """A DCGAN-style WGAN-GP critic at 16x16 (no batch norm: layer norm would go here)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1), nn.LeakyReLU(0.2),
                         nn.Conv2d(16, 1, 4, 1, 0), nn.Flatten()).to(dtype)


class ProjectionD(nn.Module):
    """An SNGAN-style projection discriminator of fastgan layers: SN convs, an SN linear, an SN class embedding,
    and (to cover it under the penalty) a transposed convolution."""

    def __init__(self, n_classes=3):
        super().__init__()
        torch.manual_seed(1)
        self.up = fastgan.nn.ConvTranspose2d(3, 4, 4, 2, 1, activation="leaky_relu", negative_slope=0.2)
        self.c1 = fastgan.nn.SNConv2d(4, 8, 3, 2, 1)
        self.c2 = fastgan.nn.SNConv2d(8, 8, 3, 2, 1)
        self.lin = fastgan.nn.SNLinear(8, 1)
        self.embed = fastgan.nn.SNEmbedding(n_classes, 8)

    def forward(self, x, y):
        h = F.leaky_relu(self.c2(F.leaky_relu(self.c1(self.up(x)), 0.2)), 0.2).sum(dim=(2, 3))
        return self.lin(h).squeeze(1) + (self.embed(y) * h).sum(1)


def textbook_wgan_gp(D, real, fake, eps, weight=10.0, center=1.0, args=()):
    e = eps.view(-1, *([1] * (real.dim() - 1))).to(real.dtype)
    x = (e * real + (1 - e) * fake).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x, *args).sum(), x, create_graph=True)
    return weight * ((g.reshape(g.shape[0], -1).norm(2, dim=1) - center) ** 2).mean()


def textbook_r1(D, real, gamma=10.0, args=()):
    x = real.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x, *args).sum(), x, create_graph=True)
    return gamma / 2 * g.reshape(g.shape[0], -1).pow(2).sum(1).mean()


def _param_grads(loss, module):
    return torch.autograd.grad(loss, list(module.parameters()), allow_unused=True, materialize_grads=True)


def _assert_same(p, p_ref, D, tol):
    torch.testing.assert_close(p.double(), p_ref.double(), rtol=tol, atol=tol)
    for a, b in zip(_param_grads(p, D), _param_grads(p_ref, D)):
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_wgan_gp_and_r1_are_the_textbook_ones_for_a_torch_critic(backend):
    dtype, tol = (torch.float64, 1e-10) if backend == "torch" else (torch.float32, 2e-5)
    D = dcgan_critic(dtype)
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(5, 3, 16, 16, generator=g, dtype=dtype), torch.randn(5, 3, 16, 16, generator=g,
                                                                                  dtype=dtype)
    eps = torch.rand(5, generator=g, dtype=dtype)
    _assert_same(fastgan.gradient_penalty(D, real, fake, eps=eps, backend=backend),
                 textbook_wgan_gp(D, real, fake, eps), D, tol)
    _assert_same(fastgan.gradient_penalty(D, real, fake, eps=eps, weight=3.0, center=0.5, backend=backend),
                 textbook_wgan_gp(D, real, fake, eps, 3.0, 0.5), D, tol)
    _assert_same(fastgan.r1_penalty(D, real, 10.0, backend=backend), textbook_r1(D, real, 10.0), D, tol)
    _assert_same(fastgan.r2_penalty(D, fake, 1.0, backend=backend), textbook_r1(D, fake, 1.0), D, tol)


def test_penalties_through_fastgan_layers_match_the_textbook():
    D = ProjectionD().double()
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(4, 3, 8, 8, generator=g,
                                                                                        dtype=torch.float64)
    labels, eps = torch.tensor([0, 2, 1, 2]), torch.rand(4, generator=g, dtype=torch.float64)
    with fastgan.use_backend("torch"):
        D.eval()  # the power iteration left alone: both calls see the same weights
        _assert_same(fastgan.gradient_penalty(D, real, fake, eps=eps, critic_args=(labels,)),
                     textbook_wgan_gp(D, real, fake, eps, args=(labels,)), D, 1e-9)
        pen, out = fastgan.r1_penalty(D, real, 10.0, critic_args=(labels,), return_outputs=True)
        _assert_same(pen, textbook_r1(D, real, 10.0, args=(labels,)), D, 1e-9)
        torch.testing.assert_close(out, D(real, labels))  # D(real), usable by the adversarial loss


class MixedActivationsD(nn.Module):
    """ReLU / LeakyReLU modules (pruned in the penalty pass; in place or not; one called on a view, left to torch),
    a functional ReLU (left to torch) and a smooth activation (SiLU, whose second derivative is not zero) on the
    first layer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, 1, 1) for a, b in ((3, 8), (8, 8), (8, 8), (8, 8), (8, 8)))
        self.relu, self.relu_ = nn.ReLU(), nn.ReLU(inplace=True)
        self.leaky, self.leaky_ = nn.LeakyReLU(0.1), nn.LeakyReLU(0.2, inplace=True)
        self.lin = nn.Linear(8, 1)

    def forward(self, x):
        c = self.convs
        h = F.silu(c[0](x))
        h = self.relu(c[1](h)) + F.relu(h)
        h = self.relu_(c[2](h))
        h = c[3](h)
        h = torch.cat([self.relu_(h[:, :4]), self.leaky(h[:, 4:])], dim=1)
        h = self.leaky_(c[4](h))
        return self.lin(h.mean(dim=(2, 3)))


def _conv_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return {str(k): v for k, v in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize("make", [dcgan_critic, lambda: MixedActivationsD().double()], ids=["dcgan", "mixed"])
def test_the_penalty_backward_runs_no_backward_of_zeros(make):
    """torch's relu / leaky_relu backward records a zeros_like dependence on the activation's input; through the
    penalty pass that dependence is pruned: the same gradients, none of the forward graph's backward (input and
    weight gradients of every convolution) on zeros."""
    D = make()
    g = torch.Generator().manual_seed(6)
    real, fake = (torch.randn(3, 3, 16, 16, generator=g, dtype=torch.float64) for _ in range(2))
    eps = torch.rand(3, generator=g, dtype=torch.float64)
    pens = {"fastgan": fastgan.gradient_penalty(D, real, fake, eps=eps, backend="torch"),
            "textbook": textbook_wgan_gp(D, real, fake, eps)}
    flops, grads = {}, {}
    for name, pen in pens.items():
        D.zero_grad(set_to_none=True)
        flops[name] = _conv_flops(pen.backward)
        grads[name] = [p.grad for p in D.parameters()]
    torch.testing.assert_close(pens["fastgan"], pens["textbook"], rtol=1e-12, atol=0)
    for a, b in zip(grads["fastgan"], grads["textbook"]):
        if a is None:  # a gradient that is zero through the penalty (a bias), which torch computes as zeros
            assert b is None or not b.any()
        else:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12 * float(b.abs().max()))
    wasted = flops["textbook"].get("aten.convolution_backward", 0)
    assert wasted > 0  # (the textbook step does run it: else this test shows nothing)
    if make is dcgan_critic:  # every activation pruned: no backward of the forward graph at all
        assert "aten.convolution_backward" not in flops["fastgan"]
        assert flops["fastgan"]["aten.convolution"] == flops["textbook"]["aten.convolution"]
    else:  # SiLU's second derivative and the functional ReLU: the backward below them stays
        assert 0 < flops["fastgan"].get("aten.convolution_backward", 0) < wasted
    assert not any("forward" in m.__dict__ for m in D.modules())  # the modules are put back


def test_a_module_whose_forward_is_replaced_is_left_alone():
    D = dcgan_critic()
    act = D[1]
    act.forward = lambda x: F.leaky_relu(x, 0.2)  # e.g. another library's patch
    real, fake = torch.randn(2, 3, 16, 16, dtype=torch.float64), torch.randn(2, 3, 16, 16, dtype=torch.float64)
    eps = torch.rand(2, dtype=torch.float64)
    _assert_same(fastgan.gradient_penalty(D, real, fake, eps=eps), textbook_wgan_gp(D, real, fake, eps), D, 1e-10)
    assert "forward" in act.__dict__ and "forward" not in D[3].__dict__


def test_the_pruned_activations_keep_the_first_order_graph():
    """With return_outputs, D(real) of the R1 pass serves the loss: its backward goes through the pruned
    activations' first-order backward; the step's gradients equal the textbook step's (R1 + D(real) loss)."""
    D = MixedActivationsD().double()
    real = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    pen, out = fastgan.r1_penalty(D, real, 10.0, return_outputs=True, backend="torch")
    loss = F.softplus(-out).mean() + pen
    ref_loss = F.softplus(-D(real)).mean() + textbook_r1(D, real, 10.0)
    _assert_same(loss, ref_loss, D, 1e-10)


def test_spectral_norm_backward_records_no_double_backward_in_a_penalty_step(monkeypatch):
    """The penalty's create_graph pass differentiates D in its input only: the SN layers' weight backward runs in
    loss.backward() alone, without recording a graph (the fused backward; the composite one that records a double
    backward is never needed)."""
    from fastgan.ops import spectral_norm as sn_op

    grad_modes = []
    composite = sn_op.ref.composite_backward
    monkeypatch.setattr(sn_op.ref, "composite_backward",
                        lambda *a: grad_modes.append(torch.is_grad_enabled()) or composite(*a))
    D = ProjectionD().double()
    real, fake = torch.randn(4, 3, 8, 8, dtype=torch.float64), torch.randn(4, 3, 8, 8, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 2])
    with fastgan.use_backend("torch"):  # (whose fused backward evaluates the composite without a graph)
        pen = fastgan.gradient_penalty(D, real, fake, critic_args=(labels,))
        assert grad_modes == []
        (D(fake, labels).mean() - D(real, labels).mean() + pen).backward()
    assert grad_modes and not any(grad_modes)


def test_dragan_is_kodali_et_als_penalty():
    """DRAGAN against its textbook form, with the same draws (u per element, then eps per sample)."""
    D = dcgan_critic()
    real = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    pen = fastgan.dragan_penalty(D, real, weight=5.0, perturbation=0.5, generator=torch.Generator().manual_seed(9))
    g = torch.Generator().manual_seed(9)
    u = torch.rand(real.shape, generator=g, dtype=torch.float64)
    eps = torch.rand(4, generator=g).double().view(-1, 1, 1, 1)
    x = (real + eps * (real + 0.5 * real.std() * u - real)).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
    _assert_same(pen, 5.0 * ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean(), D, 1e-10)
    with pytest.raises(ValueError, match="perturbation"):
        fastgan.dragan_penalty(D, real, perturbation=-1.0)


def test_one_sided_penalty_and_batch_of_one():
    D = dcgan_critic()
    real, fake = torch.randn(1, 3, 16, 16, dtype=torch.float64), torch.randn(1, 3, 16, 16, dtype=torch.float64)
    eps = torch.tensor([0.3], dtype=torch.float64)
    x = (0.3 * real + 0.7 * fake).requires_grad_(True)
    size = float(torch.autograd.grad(D(x).sum(), x)[0].norm())
    for center in (0.5 * size, 2 * size):  # active and inactive
        (g,) = torch.autograd.grad(D(x).sum(), x, create_graph=True)
        expected = 10 * torch.clamp(g.norm() - center, min=0) ** 2
        _assert_same(fastgan.gradient_penalty(D, real, fake, eps=eps, center=center, one_sided=True,
                                              backend="torch"), expected, D, 1e-10)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fused_ops_match_their_references(backend):
    for dtype in ((torch.float32, torch.bfloat16, torch.float16) if backend != "torch" else (torch.float64,)):
        g = torch.Generator().manual_seed(4)
        real = torch.randn(3, 5, 7, 11, generator=g).to(dtype)  # 385 elements a sample: one partial tile
        fake = torch.randn(3, 5, 7, 11, generator=g).to(dtype)
        eps = torch.rand(3, generator=g)
        x = fastgan.interpolate_samples(real, fake, eps, backend=backend)
        e = eps.double().view(3, 1, 1, 1)
        torch.testing.assert_close(x.double(), e * real.double() + (1 - e) * fake.double(), rtol=0,
                                   atol=4 * float(torch.finfo(dtype).eps) * 4)
        grad = torch.randn(3, 2, 700, generator=g).to(dtype).requires_grad_(True)  # 1400: two blocks a sample
        grad.data[1].zero_()  # a zero gradient: the norm penalty's seed is 0 there, as torch's norm backward
        for kind, center in (("norm", 1.0), ("squared", 0.0)):
            p = fastgan.penalty_of_gradient(grad, kind, 10.0, center, backend=backend)
            gd = grad.detach().double().requires_grad_(True)
            n = gd.reshape(3, -1).norm(dim=1)
            pr = 10 * ((n - 1) ** 2).mean() if kind == "norm" else 5 * (n ** 2).mean()
            torch.testing.assert_close(p.double(), pr, rtol=1e-5, atol=1e-6)
            (dg,) = torch.autograd.grad(p, grad)
            (dr,) = torch.autograd.grad(pr, gd)
            torch.testing.assert_close(dg.double(), dr, rtol=1e-2 if dtype != torch.float32 else 1e-5,
                                       atol=1e-3 * float(dr.abs().max()))


def test_gradcheck_of_the_fused_ops():
    g = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    for kind, one_sided in (("norm", False), ("norm", True), ("squared", False)):
        assert torch.autograd.gradcheck(lambda t: fastgan.penalty_of_gradient(t, kind, 2.0, 0.5, one_sided,
                                                                              backend="torch"), (g,))
        assert torch.autograd.gradgradcheck(lambda t: fastgan.penalty_of_gradient(t, kind, 2.0, 0.5, one_sided,
                                                                                  backend="torch"), (g,))
    real, fake = (torch.randn(3, 4, dtype=torch.float64, requires_grad=True) for _ in range(2))
    eps = torch.rand(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda r, f: fastgan.interpolate_samples(r, f, eps, backend="torch"),
                                    (real, fake))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_opcheck(backend):
    g = torch.randn(3, 4, 5, requires_grad=True)
    torch.library.opcheck(torch.ops.fastgan.gradient_penalty.default, (g, ref.NORM, 10.0, 1.0, False, backend))
    torch.library.opcheck(torch.ops.fastgan.gradient_penalty.default, (g, ref.SQUARED, 1.0, 0.0, False, backend))
    real, fake = torch.randn(3, 4, 5, requires_grad=True), torch.randn(3, 4, 5)
    torch.library.opcheck(torch.ops.fastgan.gradient_penalty_interpolate.default, (real, fake, torch.rand(3),
                                                                                   backend))
    # channels_last samples: every backend (and the fake) returns contiguous tensors
    cl = torch.randn(3, 4, 5, 6).to(memory_format=torch.channels_last).requires_grad_(True)
    torch.library.opcheck(torch.ops.fastgan.gradient_penalty_interpolate.default, (cl, cl.detach() + 1,
                                                                                   torch.rand(3), backend))
    torch.library.opcheck(torch.ops.fastgan.gradient_penalty.default, (cl, ref.NORM, 10.0, 1.0, False, backend))


def test_lazy_regularizer_gives_k_times_the_penalty_every_k_steps():
    D = dcgan_critic()
    real = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    lazy = fastgan.LazyRegularizer(fastgan.r1_penalty, every=4)
    got = [lazy(D, real, 10.0, backend="torch") for _ in range(9)]
    full = fastgan.r1_penalty(D, real, 10.0, backend="torch")
    assert [p is not None for p in got] == [True, False, False, False, True, False, False, False, True]
    torch.testing.assert_close(got[4], 4 * full)
    resumed = fastgan.LazyRegularizer(fastgan.r1_penalty, every=4)
    resumed.load_state_dict(lazy.state_dict())
    assert resumed.due() == lazy.due() and resumed.step == 9
    with pytest.raises(ValueError, match="every must be a positive int"):
        fastgan.LazyRegularizer(fastgan.r1_penalty, every=0)


def test_grad_scaler_gradient_is_unscaled_before_its_norm():
    D = dcgan_critic()
    real, fake = torch.randn(3, 3, 16, 16, dtype=torch.float64), torch.randn(3, 3, 16, 16, dtype=torch.float64)
    eps = torch.rand(3, dtype=torch.float64)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 14)
    _assert_same(fastgan.gradient_penalty(D, real, fake, eps=eps, scaler=scaler, backend="torch"),
                 textbook_wgan_gp(D, real, fake, eps), D, 1e-10)
    _assert_same(fastgan.r1_penalty(D, real, scaler=scaler, backend="torch"), textbook_r1(D, real), D, 1e-10)


def test_bad_input_is_refused_with_a_clear_error():
    D = dcgan_critic()
    real = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    with pytest.raises(ValueError, match="real and fake must have one shape, dtype and device"):
        fastgan.gradient_penalty(D, real, torch.randn(2, 3, 8, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="real and fake must have one shape, dtype and device"):
        fastgan.gradient_penalty(D, real, real.float())
    with pytest.raises(ValueError, match="weight must be a finite number >= 0"):
        fastgan.gradient_penalty(D, real, real, weight=-1.0)
    with pytest.raises(ValueError, match="does not depend on its input"):
        fastgan.r1_penalty(lambda x: D(x.detach()), real)
    with pytest.raises(ValueError, match="no samples"):
        fastgan.r1_penalty(D, real[:0])
    with pytest.raises(ValueError, match="kind must be one of"):
        fastgan.penalty_of_gradient(real, "l1")
    bad = real.clone()
    bad[1, 0, 3, 3] = float("nan")

    def square(x):  # its gradient 2x is NaN where x is
        return (x * x).sum(dim=(1, 2, 3))

    with pytest.raises(FloatingPointError, match="NaN or Inf for 1 of 2 samples"):
        fastgan.r1_penalty(square, bad)
    pen = fastgan.r1_penalty(square, bad, nan_to_num=True)
    good = real.clone()
    good[1, 0, 3, 3] = 0.0
    torch.testing.assert_close(pen, fastgan.r1_penalty(square, good))
    assert torch.isnan(fastgan.r1_penalty(square, bad, check_finite=False))  # asked for: no check


def test_r1_through_fastgan_batch_norm_in_training_matches_torch():
    def make(bn):
        torch.manual_seed(5)
        return nn.Sequential(nn.Conv2d(3, 6, 3, 2, 1), bn(6), nn.LeakyReLU(0.2), nn.Flatten(),
                             nn.Linear(6 * 4 * 4, 1)).double()

    ref_D = make(nn.BatchNorm2d)
    D = make(lambda c: fastgan.nn.BatchNorm2d(c, activation=None))
    D.load_state_dict(ref_D.state_dict())
    real = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    with fastgan.use_backend("torch"):
        pen = fastgan.r1_penalty(D, real, 10.0)
        grads = _param_grads(pen, D)
    pen_ref = textbook_r1(ref_D, real, 10.0)
    torch.testing.assert_close(pen, pen_ref)
    for a, b in zip(grads, _param_grads(pen_ref, ref_D)):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(D[1].running_var, ref_D[1].running_var)


class _NormD(nn.Module):
    """conv -> (conditional) batch norm in training -> LeakyReLU -> linear; ``fused``: fastgan's BN / CBN with the
    activation fused, else torch's BatchNorm2d (and a class-indexed affine) and nn.LeakyReLU."""

    def __init__(self, fused, conditional):
        super().__init__()
        torch.manual_seed(5)
        self.conv, self.lin = nn.Conv2d(3, 6, 3, 2, 1), nn.Linear(6 * 4 * 4, 1)
        self.fused, self.conditional = fused, conditional
        if fused and conditional:
            self.bn = fastgan.nn.ConditionalBatchNorm2d(6, 3, activation="leaky_relu", negative_slope=0.2)
        elif fused:
            self.bn = fastgan.nn.BatchNorm2d(6, activation="leaky_relu", negative_slope=0.2)
        else:
            self.bn = nn.BatchNorm2d(6, affine=not conditional)
            self.act = nn.LeakyReLU(0.2)
            if conditional:
                self.weight, self.bias = nn.Parameter(torch.ones(3, 6)), nn.Parameter(torch.zeros(3, 6))
        with torch.no_grad():  # away from the identity affine, so that its gradients show
            for n, p in self.named_parameters():
                if not n.startswith(("conv", "lin")):
                    p.copy_(torch.randn_like(p) * 0.5 + (1.0 if n.endswith("weight") else 0.0))

    def forward(self, x, y):
        h = self.conv(x)
        if not self.fused:
            h = self.bn(h)
            if self.conditional:
                h = h * self.weight[y][:, :, None, None] + self.bias[y][:, :, None, None]
            h = self.act(h)
        else:
            h = self.bn(h, y) if self.conditional else self.bn(h)
        return self.lin(h.flatten(1))


@pytest.mark.parametrize("conditional", [False, True], ids=["batch_norm", "cond_batch_norm"])
def test_penalties_through_fastgan_norms_with_fused_activations_match_torch(conditional):
    """fastgan's BN and CBN (training, LeakyReLU fused) under the double backward of R1 and WGAN-GP: the same
    penalty and parameter gradients as torch's layers through the textbook penalty."""
    ref_D, D = _NormD(False, conditional).double(), _NormD(True, conditional).double()
    sd = {k.replace("bn.weight", "weight").replace("bn.bias", "bias") if conditional else k: v
          for k, v in ref_D.state_dict().items()}
    D.load_state_dict({("bn." + k if conditional and k in ("weight", "bias") else k): v for k, v in sd.items()})
    g = torch.Generator().manual_seed(10)
    real, fake = (torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    y, eps = torch.tensor([0, 2, 1, 2, 0]), torch.rand(5, generator=g, dtype=torch.float64)
    with fastgan.use_backend("torch"):
        pens = [fastgan.r1_penalty(D, real, 10.0, critic_args=(y,)),
                fastgan.gradient_penalty(D, real, fake, eps=eps, critic_args=(y,))]
        grads = [_param_grads(p, D) for p in pens]
    refs = [textbook_r1(ref_D, real, 10.0, args=(y,)), textbook_wgan_gp(ref_D, real, fake, eps, args=(y,))]
    names = [n for n, _ in D.named_parameters()]
    ref_params = dict(ref_D.named_parameters())
    for pen, grad, ref_pen in zip(pens, grads, refs):
        torch.testing.assert_close(pen, ref_pen, rtol=1e-10, atol=0)
        ref_grad = dict(zip(ref_params, _param_grads(ref_pen, ref_D)))
        for n, a in zip(names, grad):
            b = ref_grad[n.removeprefix("bn.") if conditional and n.startswith("bn.") else n]
            assert b.abs().max() > 0 or n.endswith("bias"), n  # (each gradient shows, but a last bias)
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=n)


def _gpu_backends():
    from fastgan import _backend

    return [b for b in ("cuda", "triton")
            if _backend.unavailable_reason(b, torch.device("cuda"), torch.float32, "gradient_penalty") is None]


def _misaligned(t):
    """t's values in a contiguous tensor one element past an allocation's start (no 16-byte accesses)."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device=t.device)
    out = buf[1:].view(t.shape)
    out.copy_(t)
    return out


GPU_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}  # of the largest magnitude


# (1, 1): one element; 3x5x7x11: odd D below a block's tile; 64x3x64x64: the vector paths over full tiles;
# 2x3x257x255: odd D over many tiles (the scalar paths); misaligned: D a multiple of a vector, pointers not aligned
@pytest.mark.gpu
@pytest.mark.parametrize("shape, misaligned", [((1, 1), False), ((3, 5, 7, 11), False), ((64, 3, 64, 64), False),
                                               ((2, 3, 257, 255), False), ((4, 3, 32, 32), True)],
                         ids=["1x1", "3x5x7x11", "64x3x64x64", "2x3x257x255", "4x3x32x32-misaligned"])
def test_gpu_kernel_backends_match_float64(shape, misaligned):
    """The four kernel stages on the device (interpolation, its backward, the squared norms under the penalty and
    the seed gradient's scaling of rows), each kernel backend (cuda required) against float64 torch."""
    backends = _gpu_backends()
    assert "cuda" in backends, "the cuda backend is not available on this GPU (build the extension first)"
    for backend in backends:
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            gen = torch.Generator(device="cuda").manual_seed(7)
            real, fake, gy, grad = (torch.randn(shape, device="cuda", generator=gen).to(dtype) for _ in range(4))
            if misaligned:
                real, fake, gy, grad = map(_misaligned, (real, fake, gy, grad))
            eps = torch.rand(shape[0], device="cuda", generator=gen)
            label, tol = f"{backend} {dtype} {shape}{' misaligned' if misaligned else ''}", GPU_TOL[dtype]

            def close(name, got, want):
                err = ((got.double() - want).abs().max() / (1 + want.abs().max())).item()
                assert err <= tol, f"{label}: {name} off by {err:.3g}"

            e = ref.per_sample(eps.double(), real)
            r, f = real.detach().requires_grad_(), fake.detach().requires_grad_()
            x = fastgan.interpolate_samples(r, f, eps, backend=backend)
            assert x.dtype == dtype and x.is_contiguous()
            close("interpolate", x, e * real.double() + (1 - e) * fake.double())
            d_real, d_fake = torch.autograd.grad(x, (r, f), gy)
            close("d_real", d_real, e * gy.double())
            close("d_fake", d_fake, (1 - e) * gy.double())
            for kind, weight, center, one_sided in (("norm", 10.0, 1.0, False), ("norm", 2.0, 30.0, True),
                                                    ("squared", 5.0, 0.0, False)):
                g = grad.detach().requires_grad_()
                p = fastgan.penalty_of_gradient(g, kind, weight, center, one_sided, backend=backend)
                (dg,) = torch.autograd.grad(p, g)
                g64 = grad.double().requires_grad_()
                p64 = ref.penalty(g64, {"norm": ref.NORM, "squared": ref.SQUARED}[kind], weight, center, one_sided)
                (dg64,) = torch.autograd.grad(p64, g64)
                assert p.dtype == torch.float32 and dg.dtype == dtype
                torch.testing.assert_close(p.double(), p64.detach(), rtol=1e-5, atol=1e-6, msg=f"{label}: {kind}")
                close(f"seed gradient ({kind}, one-sided {one_sided})", dg, dg64)


@pytest.mark.gpu
def test_gpu_kernel_backends_are_deterministic():
    for backend in _gpu_backends():
        g = torch.randn(64, 3, 128, 128, device="cuda").requires_grad_()
        runs = []
        for _ in range(2):
            p = fastgan.penalty_of_gradient(g, backend=backend)
            runs.append((p, *torch.autograd.grad(p, g)))
        for a, b in zip(*runs):
            assert torch.equal(a, b), backend
