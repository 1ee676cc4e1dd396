"""The GAN zoo (fastgan/models): fused and eager builds are the same model (names, shapes, outputs and gradients
of a training step on the same weights), the DCGAN keys are pytorch/examples', and the losses are their formulas."""
import pytest
import torch
import torch.nn.functional as F
from conftest import INTERPRETING
from torch import nn

import fastgan
from fastgan import models

CASES = [(name, res) for name in models.GANS for res in models.GANS[name].resolutions if res is not None]


NUM_CLASSES = 3


def _pair(name, res, width):
    eager_G, eager_D = models.build(name, res, width, fused=False, num_classes=NUM_CLASSES)
    with fastgan.use_backend("torch"):  # (the SN layers' initial power iterations: not interpreted)
        G, D = models.build(name, res, width, fused=True, num_classes=NUM_CLASSES)
    assert [(k, v.shape) for k, v in G.state_dict().items()] == [(k, v.shape) for k, v in
                                                                 eager_G.state_dict().items()]
    assert [(k, v.shape) for k, v in D.state_dict().items()] == [(k, v.shape) for k, v in
                                                                 eager_D.state_dict().items()]
    G.load_state_dict(eager_G.state_dict())
    D.load_state_dict(eager_D.state_dict())
    return (eager_G, eager_D), (G, D)


def _training_step(G, D, z, real, spec, y):
    """D loss on real and G(z), and G loss, with every parameter's gradient: what one step of each computes."""
    c = (y,) if spec.conditional else ()
    fake = G(z, *c)
    loss_d = models.d_loss(spec.loss, D(real, *c), D(fake.detach(), *c))
    loss_g = models.g_loss(spec.loss, D(fake, *c))
    params = list(G.parameters()) + list(D.parameters())
    grads_d = torch.autograd.grad(loss_d, list(D.parameters()))
    grads_g = torch.autograd.grad(loss_g, list(G.parameters()))
    assert len(params) == len(grads_d) + len(grads_g)
    return fake, torch.stack([loss_d, loss_g]), grads_d + grads_g


def _assert_same_step(name, res, width, batch, backend, tol):
    spec = models.GANS[name]
    torch.manual_seed(0)
    eager, fused = _pair(name, res, width)
    if name == "cond-resnet":  # SAGAN's gamma starts at 0: move it, so that attention shows in the step
        for m in (*eager, *fused):
            for n, p in m.named_parameters():
                if n.endswith("gamma"):
                    p.data.fill_(0.5)
    g = torch.Generator().manual_seed(1)
    nz = models.latent_size(name, eager[0])
    z, real = torch.randn(batch, nz, generator=g), torch.rand(batch, 3, res, res, generator=g) * 2 - 1
    y = torch.arange(batch) % NUM_CLASSES
    ref = _training_step(*eager, z, real, spec, y)
    with fastgan.use_backend(backend):
        got = _training_step(*fused, z, real, spec, y)
    for a, b in zip(got[:2], ref[:2]):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=tol, atol=tol * float(b.abs().max()))
    scale = max(float(b.abs().max()) for b in ref[2])  # (a bias before a BN has a gradient of round-off only)
    for a, b in zip(got[2], ref[2]):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol * scale)
    for a, b in zip(fused[0].buffers(), eager[0].buffers()):  # running statistics (and SN u, v) updated alike
        torch.testing.assert_close(a.double(), b.double(), rtol=tol, atol=tol)


@pytest.mark.no_triton
@pytest.mark.parametrize("name,res", CASES)
def test_fused_and_eager_builds_take_the_same_training_step(name, res):
    width = 16 if name in ("dcgan", "wgan-gp", "sngan") else 8  # (ResNets: SAGAN's C / 8 needs 8 channels)
    _assert_same_step(name, res, width, 4 if res <= 64 else 2, "torch", 2e-5)


@pytest.mark.kernels
@pytest.mark.skipif(not INTERPRETING,
                    reason="on a GPU the same comparison is the train_step suite's check (bench/device_check.sh)")
@pytest.mark.parametrize("name", [n for n, s in models.GANS.items() if s.data == "shapes"])
def test_fused_builds_on_the_triton_backend_take_the_eager_step(name):
    _assert_same_step(name, 32, 4 if name in ("dcgan", "wgan-gp", "sngan") else 8, 2, "triton", 1e-4)


class ExamplesGenerator(nn.Module):
    """A DCGAN-64 generator written the way pytorch/examples writes it (an nn.Sequential called ``main``)."""

    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        chans = [nz, ngf * 8, ngf * 4, ngf * 2, ngf]
        layers = []
        for i, (a, b) in enumerate(zip(chans[:-1], chans[1:])):
            layers += [nn.ConvTranspose2d(a, b, 4, 1 if i == 0 else 2, 0 if i == 0 else 1, bias=False),
                       nn.BatchNorm2d(b), nn.ReLU(True)]
        self.main = nn.Sequential(*layers, nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class ExamplesDiscriminator(nn.Module):
    def __init__(self, ndf=64, nc=3):
        super().__init__()
        layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in ((ndf, ndf * 2), (ndf * 2, ndf * 4), (ndf * 4, ndf * 8)):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        self.main = nn.Sequential(*layers, nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1, 1).squeeze(1)


@pytest.mark.no_triton
@pytest.mark.parametrize("fused", [False, True])
def test_dcgan_checkpoints_of_pytorch_examples_load_both_ways(fused):
    torch.manual_seed(2)
    ex_G, ex_D = ExamplesGenerator(ngf=8), ExamplesDiscriminator(ndf=8)
    G, D = models.build("dcgan", 64, 8, fused=fused)
    G.load_state_dict(ex_G.state_dict())  # strict: the same keys
    D.load_state_dict(ex_D.state_dict())
    ex_G.load_state_dict(G.state_dict())
    ex_D.load_state_dict(D.state_dict())
    G.eval(), D.eval(), ex_G.eval(), ex_D.eval()
    z = torch.randn(3, 100, 1, 1)
    with fastgan.use_backend("torch"), torch.no_grad():
        x = G(z)
        torch.testing.assert_close(x, ex_G(z), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.sigmoid(D(x)), ex_D(x), rtol=1e-5, atol=1e-6)  # D: logits


@pytest.mark.no_triton
def test_losses_are_their_formulas():
    g = torch.Generator().manual_seed(3)
    r, f = torch.randn(7, generator=g, dtype=torch.float64) * 3, torch.randn(7, generator=g, dtype=torch.float64) * 3
    bce = F.binary_cross_entropy_with_logits
    ones, zeros = torch.ones_like(r), torch.zeros_like(r)
    expected = {
        "minimax": (bce(r, ones) + bce(f, zeros), torch.log(1 - torch.sigmoid(f)).mean()),
        "non_saturating": (bce(r, ones) + bce(f, zeros), bce(f, ones)),
        "hinge": (torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean(), -f.mean()),
        "wasserstein": (f.mean() - r.mean(), -f.mean()),
        "least_squares": (0.5 * ((r - 1) ** 2).mean() + 0.5 * (f ** 2).mean(), 0.5 * ((f - 1) ** 2).mean()),
    }
    assert set(expected) == set(models.losses.KINDS)
    for kind, (d, gl) in expected.items():
        torch.testing.assert_close(models.d_loss(kind, r, f), d, msg=kind)
        torch.testing.assert_close(models.g_loss(kind, f), gl, msg=kind)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        models.d_loss("vanilla", r, f)


@pytest.mark.no_triton
def test_build_refuses_what_the_zoo_does_not_have():
    with pytest.raises(ValueError, match="unknown model 'stylegan'"):
        models.build("stylegan", 32)
    with pytest.raises(ValueError, match="sngan supports resolution 32, not 64"):
        models.build("sngan", 64)


@pytest.mark.no_triton
@pytest.mark.parametrize("name,res", CASES)
def test_sample_shapes_and_range(name, res):
    c = (torch.tensor([0, 2, 1]),) if models.GANS[name].conditional else ()
    with fastgan.use_backend("torch"):
        G, D = models.build(name, res, 8, fused=True, num_classes=NUM_CLASSES)
        x = G(torch.randn(3, models.latent_size(name, G)), *c)
        assert x.shape == (3, 3, res, res) and float(x.abs().max()) <= 1.0
        assert D(x, *c).shape == (3,)
