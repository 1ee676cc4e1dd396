"""Spectral-norm modules: drop-in behaviour, the model-level group, double backward, checkpoints, convert()."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from conftest import INTERPRETING
from torch import nn
from torch.nn.utils import parametrizations

import fastgan
from fastgan.nn import SNConv2d, SNConvTranspose2d, SNEmbedding, SNLinear, SpectralNormGroup
from fastgan.ops import spectral_norm as sn_op


def _disc(sn, seed=0, width=8):
    """A small SNGAN-style discriminator for 8x8 inputs, every conv/linear spectral-normed by ``sn``."""
    torch.manual_seed(seed)
    layers = [nn.Conv2d(3, width, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(width, 2 * width, 4, 2, 1),
              nn.LeakyReLU(0.1), nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.LeakyReLU(0.1), nn.Flatten(),
              nn.Linear(2 * width * 16, 1)]
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            sn(layer)
    return nn.Sequential(*layers)


def _originals(model):
    return [m.parametrizations.weight.original for m in model.modules() if hasattr(m, "parametrizations")]


def _uvs(model):
    return [t for m in model.modules() if hasattr(m, "parametrizations")
            for t in (m.parametrizations.weight[0]._u, m.parametrizations.weight[0]._v)]


def _backends():
    return ["torch"] + (["triton"] if INTERPRETING else [])


# ---------------------------------------------------------------- layers


@pytest.mark.parametrize("make", [lambda: nn.Conv2d(5, 7, 3), lambda: nn.ConvTranspose2d(5, 7, 4, 2, 1),
                                  lambda: nn.Linear(13, 1), lambda: nn.Embedding(10, 6)])
def test_drop_in_for_parametrizations_spectral_norm(make):
    base = make()
    theirs, ours = copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(1)
    parametrizations.spectral_norm(theirs)
    torch.manual_seed(1)
    with fastgan.use_backend("torch"):
        fastgan.nn.spectral_norm(ours)
        assert ours.parametrizations.weight[0].dim == theirs.parametrizations.weight[0].dim
        assert list(ours.state_dict()) == list(theirs.state_dict())
        for _ in range(2):
            torch.testing.assert_close(ours.weight, theirs.weight, rtol=1e-6, atol=1e-7)
        ours.load_state_dict(theirs.state_dict())  # checkpoints of either load into the other
        theirs.load_state_dict(ours.state_dict())


def test_sn_layer_classes_are_spectral_normed():
    torch.manual_seed(0)
    for layer, x in ((SNConv2d(3, 4, 3, padding=1, eps=1e-6), torch.randn(2, 3, 5, 5)),
                     (SNConvTranspose2d(4, 3, 4, 2, 1, n_power_iterations=2), torch.randn(2, 4, 3, 3)),
                     (SNLinear(7, 5), torch.randn(2, 7)), (SNEmbedding(9, 4), torch.tensor([0, 8]))):
        layer.eval()
        sn = layer.parametrizations.weight[0]
        w = layer.parametrizations.weight.original
        mat = w.movedim(sn.dim, 0).flatten(1)
        sigma = torch.dot(sn._u, mat @ sn._v)
        torch.testing.assert_close(layer.weight, w / sigma)
        assert layer(x).shape[0] == 2
    assert SNConvTranspose2d(4, 3, 4).parametrizations.weight[0].dim == 1
    assert SNConv2d(3, 4, 3, eps=1e-6).parametrizations.weight[0].eps == 1e-6


def test_low_precision_model_keeps_u_v_in_float32():
    model = _disc(fastgan.nn.spectral_norm).to(torch.bfloat16)
    for t in _uvs(model):
        assert t.dtype == torch.float32
    assert model(torch.randn(2, 3, 8, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert all(t.dtype == torch.float64 for t in _uvs(model.double()))


def test_construction_errors_are_clear():
    with pytest.raises(ValueError, match="n_power_iterations"):
        SNLinear(3, 4, n_power_iterations=0)
    with pytest.raises(ValueError, match="eps"):
        SNLinear(3, 4, eps=0)
    with pytest.raises(IndexError, match="out of range"):
        fastgan.nn.spectral_norm(nn.Linear(3, 4), dim=2)
    with pytest.raises(ValueError, match="no parameter or buffer named 'kernel'"):
        fastgan.nn.spectral_norm(nn.Linear(3, 4), name="kernel")
    lin = nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"Linear\.weight holds NaN or Inf values \(1 of 12\)"):
        fastgan.nn.spectral_norm(lin)
    holder = nn.Module()
    holder.register_buffer("weight", torch.ones(3, 3, dtype=torch.int32))
    with pytest.raises(TypeError, match="floating-point"):
        fastgan.nn.spectral_norm(holder)


def test_wrong_u_shape_in_a_checkpoint_names_the_key():
    layer = SNLinear(6, 4)
    sd = layer.state_dict()
    sd["parametrizations.weight.0._u"] = torch.randn(5)
    with pytest.raises(RuntimeError, match=r"parametrizations\.weight\.0\._u has shape \(5,\).*needs \(4,\)"):
        layer.load_state_dict(sd)


def test_compiled_module_fullgraph_matches_eager():
    eager = _disc(fastgan.nn.spectral_norm)
    compiled_model = copy.deepcopy(eager)
    compiled = torch.compile(compiled_model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 8, 8)
    with fastgan.use_backend("torch"):
        for _ in range(2):
            torch.testing.assert_close(compiled(x), eager(x))
    for a, b in zip(_uvs(eager), _uvs(compiled_model)):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- the group


def _train_steps(model, steps, seed=3, group=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(seed)
    outs = []
    for _ in range(steps):
        x = torch.randn(4, 3, 8, 8, generator=gen)
        out = model(x)
        loss = out.square().mean()
        opt.zero_grad()
        loss.backward()
        outs.append(out.detach())
        opt.step()
    return outs


@pytest.mark.parametrize("backend", _backends())
def test_group_matches_per_layer_training(backend):
    with fastgan.use_backend(backend):
        alone, grouped = _disc(fastgan.nn.spectral_norm), _disc(fastgan.nn.spectral_norm)
        group = SpectralNormGroup(grouped)
        assert len(group) == 4
        for a, b in zip(_train_steps(alone, 3), _train_steps(grouped, 3)):
            torch.testing.assert_close(b, a, rtol=2e-6, atol=1e-7)
        for a, b in zip(list(alone.parameters()) + _uvs(alone), list(grouped.parameters()) + _uvs(grouped)):
            torch.testing.assert_close(b, a, rtol=2e-6, atol=1e-7)
        alone.eval(), grouped.eval()
        x = torch.randn(3, 3, 8, 8)
        torch.testing.assert_close(grouped(x), alone(x), rtol=2e-6, atol=1e-7)


def _count_calls(monkeypatch):
    """Record (group size, iterations) of every power-iteration launch sequence (0 iterations: sigma only)."""
    calls = []
    real = sn_op.PreparedGroup.power_iteration

    def counting(self, n_iter, *args, **kwargs):
        calls.append((len(self.weights), n_iter))
        return real(self, n_iter, *args, **kwargs)

    monkeypatch.setattr(sn_op.PreparedGroup, "power_iteration", counting)
    return calls


def test_group_makes_one_batched_call_per_forward(monkeypatch):
    model = _disc(fastgan.nn.spectral_norm)
    calls = _count_calls(monkeypatch)
    model(torch.randn(2, 3, 8, 8))
    assert calls == [(1, 1)] * 4
    calls.clear()
    group = SpectralNormGroup(model)
    model(torch.randn(2, 3, 8, 8))
    model(torch.randn(2, 3, 8, 8))
    assert calls == [(4, 1), (4, 1)]
    calls.clear()
    model.eval()
    model(torch.randn(2, 3, 8, 8))
    model(torch.randn(2, 3, 8, 8))  # eval: sigma from the current weights at every forward, as PyTorch
    assert calls == [(4, 0), (4, 0)]
    group.remove()
    calls.clear()
    model(torch.randn(2, 3, 8, 8))
    assert calls == [(1, 0)] * 4


def test_group_step_mode_iterates_once_per_optimizer_step(monkeypatch):
    """D(real), D(fake) in one step share one power iteration; the reference runs the second forward in eval."""
    grouped, ref = _disc(fastgan.nn.spectral_norm), _disc(fastgan.nn.spectral_norm)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (grouped, ref)]
    SpectralNormGroup(grouped, update="step", optimizer=opts[0])
    calls = _count_calls(monkeypatch)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        real, fake = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)
        calls.clear()
        loss_g = grouped(real).mean() - grouped(fake).mean()
        assert calls == [(4, 1), (4, 0)], "one iteration for the two forwards of this step"
        out_r = ref(real)
        ref.eval()
        out_f = ref(fake)
        ref.train()
        loss_r = out_r.mean() - out_f.mean()
        torch.testing.assert_close(loss_g, loss_r, rtol=2e-6, atol=1e-7)
        for opt, loss in zip(opts, (loss_g, loss_r)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(list(grouped.parameters()) + _uvs(grouped), list(ref.parameters()) + _uvs(ref)):
        torch.testing.assert_close(a, b, rtol=2e-6, atol=1e-7)


# Writes that do not bump autograd's version counters (an EMA copy written through .data, as BigGAN's and
# StyleGAN's G_ema) and ones that do (load_state_dict, copy_ under no_grad).
_WRITES = {
    "data.mul_": lambda m, src: m[0].parametrizations.weight.original.data.mul_(3),
    "data.copy_": lambda m, src: [p.data.copy_(q) for p, q in zip(m.parameters(), src.parameters())],
    "data.lerp_": lambda m, src: [p.data.lerp_(q, 0.5) for p, q in zip(m.parameters(), src.parameters())],
    "load_state_dict": lambda m, src: m.load_state_dict(src.state_dict()),
    "no_grad copy_": lambda m, src: [p.copy_(q) for p, q in zip(m.parameters(), src.parameters())],
}


@pytest.mark.parametrize("backend, write", [("torch", w) for w in _WRITES]
                         + [(b, w) for b in _backends()[1:] for w in ("data.mul_", "load_state_dict")])
def test_group_follows_weights_written_behind_autograds_back(backend, write):
    """In eval, sigma comes from the current weights at every forward; with update='step', the forwards after the
    step's first keep its u and v but still normalise the current weights."""
    x = torch.randn(2, 3, 8, 8)
    with fastgan.use_backend(backend), torch.no_grad():
        source = _disc(fastgan.nn.spectral_norm, seed=7)
        grouped, alone = _disc(fastgan.nn.spectral_norm), _disc(fastgan.nn.spectral_norm)
        SpectralNormGroup(grouped)
        grouped.eval(), alone.eval()
        torch.testing.assert_close(grouped(x), alone(x))
        for model in (grouped, alone):
            _WRITES[write](model, source)
        torch.testing.assert_close(grouped(x), alone(x), rtol=2e-6, atol=1e-6)

        # training, update='step': the second forward of a step uses the first one's u and v, current weights
        grouped, ref = _disc(fastgan.nn.spectral_norm), _disc(fastgan.nn.spectral_norm)
        opt = torch.optim.SGD(grouped.parameters(), lr=0.1)
        SpectralNormGroup(grouped, update="step", optimizer=opt)
        torch.testing.assert_close(grouped(x), ref(x))  # both iterate once
        for model in (grouped, ref):
            _WRITES[write](model, source)
        ref.eval()  # the same u, v, no iteration
        torch.testing.assert_close(grouped(x), ref(x), rtol=2e-6, atol=1e-6)


def test_step_mode_needs_the_optimizer_and_follows_its_steps():
    model = _disc(fastgan.nn.spectral_norm)
    with pytest.raises(ValueError, match="optimizer=opt_D"):
        SpectralNormGroup(model, update="step")
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        SpectralNormGroup(model, update="step", optimizer=object())
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that changes nothing still starts an iteration
    group = SpectralNormGroup(model, update="step", optimizer=[opt])
    u = model[0].parametrizations.weight[0]._u
    x = torch.randn(2, 3, 8, 8)
    model(x)
    first = u.clone()
    model(x)
    assert torch.equal(u, first), "no iteration between optimizer steps"
    opt.step()
    model(x)
    assert not torch.equal(u, first), "the first forward after a step iterates"
    after = u.clone()
    group.step()  # where weights are updated without the optimizer
    model(x)
    assert not torch.equal(u, after)
    group.remove()
    opt.step()  # the hook is gone with the group
    assert group._steps == 2


def test_layers_called_outside_the_model_forward_compute_their_own_weight():
    model = _disc(fastgan.nn.spectral_norm)
    twin = copy.deepcopy(model)
    SpectralNormGroup(model)
    model(torch.randn(2, 3, 8, 8))
    twin(torch.randn(2, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(model[0](x), twin[0](x))  # a submodule alone, then the next forward
    torch.testing.assert_close(model(x), twin(x))


class _FrozenThenTrained(nn.Module):
    """Two SN parts in one forward, the first run under no_grad (as BigGAN's G_D runs G for a D step)."""

    def __init__(self):
        super().__init__()
        self.first, self.second = _disc(fastgan.nn.spectral_norm, seed=1), _disc(fastgan.nn.spectral_norm, seed=2)

    def forward(self, x):
        with torch.no_grad():
            h = self.first(x)
        return self.second(x + h.mean())


@pytest.mark.parametrize("exact", [False, True])
def test_a_group_pass_under_no_grad_still_gives_later_layers_their_gradient(exact):
    model = _FrozenThenTrained()
    twin = copy.deepcopy(model)
    SpectralNormGroup(model, exact=exact)
    x = torch.randn(2, 3, 8, 8)
    for m in (model, twin):
        m(x).sum().backward()
    for a, b in zip(_originals(model.second), _originals(twin.second)):
        assert a.grad is not None
        torch.testing.assert_close(a.grad, b.grad)
    for a, b in zip(_uvs(model), _uvs(twin)):  # one iteration each, as alone
        torch.testing.assert_close(a, b)


def test_group_checks_finiteness_and_names_the_layer():
    model = _disc(fastgan.nn.spectral_norm)
    SpectralNormGroup(model, check_finite=True)
    with torch.no_grad():
        model[2].parametrizations.weight.original[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"2\.weight"):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="no fastgan spectral-norm layer"):
        SpectralNormGroup(nn.Linear(2, 2))


def test_a_deepcopy_of_a_grouped_model_is_detached_from_the_group():
    model = _disc(fastgan.nn.spectral_norm)
    SpectralNormGroup(model)
    twin = copy.deepcopy(model)  # e.g. an EMA copy of a generator
    assert all(layer[3]._group_ref is None for layer in fastgan.nn.spectral_norm_layers(twin))
    torch.save(twin.state_dict(), io.BytesIO())
    x = torch.randn(2, 3, 8, 8)
    model.eval(), twin.eval()
    torch.testing.assert_close(twin(x), model(x))


# ---------------------------------------------------------------- double backward through SN layers


def _penalty_grads(model, kind):
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, 8, 8, generator=gen)
    if kind == "r1":
        x = real.requires_grad_()
        out = model(x)
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        loss = F.softplus(-out).mean() + 5.0 * g.square().flatten(1).sum(1).mean()
    else:  # WGAN-GP
        eps = torch.rand(4, 1, 1, 1, generator=gen)
        x = (eps * real + (1 - eps) * fake).requires_grad_()
        out = model(x)
        (g,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        loss = model(fake).mean() - model(real).mean() + 10.0 * (g.flatten(1).norm(dim=1) - 1).square().mean()
    return torch.autograd.grad(loss, _originals(model) + [p for n, p in model.named_parameters() if "bias" in n])


@pytest.mark.parametrize("kind", ["r1", "wgan-gp"])
@pytest.mark.parametrize("backend", _backends())
def test_gradient_penalty_matches_pytorch_spectral_norm(kind, backend):
    theirs, ours = _disc(parametrizations.spectral_norm), _disc(fastgan.nn.spectral_norm)
    with fastgan.use_backend(backend):
        SpectralNormGroup(ours)
        expected, got = _penalty_grads(theirs, kind), _penalty_grads(ours, kind)
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)


def test_double_backward_through_the_normalised_weight_itself():
    """A penalty on weight gradients (create_graph through spectral_norm's backward) matches PyTorch's."""
    grads = []
    for sn in (parametrizations.spectral_norm, fastgan.nn.spectral_norm):
        torch.manual_seed(0)
        layer = sn(nn.Linear(5, 3))
        x = torch.randn(4, 5)
        orig = layer.parametrizations.weight.original
        (gw,) = torch.autograd.grad(layer(x).square().sum(), orig, create_graph=True)
        grads.append(torch.autograd.grad(gw.square().sum(), orig)[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- checkpoints from other layouts


def test_legacy_checkpoint_loads_and_gives_the_same_eval_output():
    legacy = _disc(torch.nn.utils.spectral_norm)
    _train_steps(legacy, 2)
    legacy.eval()
    sd = legacy.state_dict()
    assert any(k.endswith("weight_orig") for k in sd)
    x = torch.randn(3, 3, 8, 8)
    for load in ("converter", "direct"):
        ours = _disc(fastgan.nn.spectral_norm, seed=9).eval()
        ours.load_state_dict(fastgan.from_legacy_spectral_norm(sd) if load == "converter" else sd)
        torch.testing.assert_close(ours(x), legacy(x), rtol=1e-6, atol=1e-7)


def _biggan_power_iteration(W, u0, eps, update):
    """BigGAN-PyTorch's power_iteration for num_svs=1 (layers.py): v = N(u W), u = N(v W^T) without gradient,
    then sv = v W^T u^T with gradient; u0 is overwritten only in training."""
    with torch.no_grad():
        v = F.normalize(u0 @ W, eps=eps)
        u = F.normalize(v @ W.t(), eps=eps)
        if update:
            u0[:] = u
    return (v @ W.t() @ u.t()).squeeze()


class _BigGANSNConv2d(nn.Conv2d):
    """BigGAN-PyTorch's SNConv2d semantics: buffers u0 (1, out) and sv0 (1,); it iterates in eval too, without
    storing the result."""

    def __init__(self, *args, eps=1e-12, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = eps
        self.register_buffer("u0", torch.randn(1, self.out_channels))
        self.register_buffer("sv0", torch.ones(1))

    def forward(self, x):
        sv = _biggan_power_iteration(self.weight.view(self.weight.size(0), -1), self.u0, self.eps, self.training)
        if self.training:
            self.sv0[:] = sv.detach()
        return F.conv2d(x, self.weight / sv, self.bias, self.stride, self.padding)


def test_biggan_checkpoint_loads_and_gives_the_same_eval_output():
    torch.manual_seed(0)
    bg = _BigGANSNConv2d(4, 6, 3, padding=1, eps=1e-6)
    x = torch.randn(2, 4, 5, 5)
    for _ in range(3):
        bg(x)  # training forwards update u0
    bg.eval()
    expected = bg(x)
    sd = bg.state_dict()
    assert set(sd) == {"weight", "bias", "u0", "sv0"}
    for load in ("converter", "direct"):
        ours = SNConv2d(4, 6, 3, padding=1, eps=1e-6).eval()
        ours.load_state_dict(fastgan.from_biggan_spectral_norm(sd, eps=1e-6) if load == "converter" else sd)
        torch.testing.assert_close(ours(x), expected, rtol=1e-6, atol=1e-6)


def test_convert_swaps_pytorch_spectral_norm_in_a_live_model():
    torch.manual_seed(0)
    model = nn.Sequential(parametrizations.spectral_norm(nn.Conv2d(3, 4, 3)), nn.ReLU(),
                          torch.nn.utils.spectral_norm(nn.Conv2d(4, 5, 3)), nn.ReLU(),
                          parametrizations.spectral_norm(nn.ConvTranspose2d(5, 2, 1)), nn.Flatten(),
                          torch.nn.utils.spectral_norm(nn.Linear(2 * 4 * 4, 1)))
    for _ in range(2):
        model(torch.randn(2, 3, 8, 8))  # training forwards move u and v away from their start
    model.eval()
    x = torch.randn(3, 3, 8, 8)
    expected = model(x)
    params_before = {id(p) for p in model.parameters()}
    keys_before = list(model.state_dict())
    fastgan.convert(model)
    assert {id(p) for p in model.parameters()} == params_before  # optimizers built before keep working
    assert sorted(layer[3].dim for layer in fastgan.nn.spectral_norm_layers(model)) == [0, 0, 0, 1]
    torch.testing.assert_close(model(x), expected, rtol=1e-6, atol=1e-7)
    assert list(model.state_dict()) == keys_before  # each layer keeps its source's layout (legacy: weight_orig)
    model.train()
    model(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def _mixed_generator(seed=0):
    """Both PyTorch spectral norms and a BatchNorm2d + ReLU(inplace): what convert swaps."""
    torch.manual_seed(seed)
    return nn.Sequential(parametrizations.spectral_norm(nn.Conv2d(3, 4, 3)), nn.BatchNorm2d(4), nn.ReLU(True),
                         torch.nn.utils.spectral_norm(nn.Conv2d(4, 5, 3)), nn.Flatten(),
                         parametrizations.spectral_norm(nn.Linear(5 * 4 * 4, 1)))


@pytest.mark.parametrize("first", ["original", "copy"])
def test_convert_a_deepcopy_and_its_original_independently(first):
    """G_ema = copy.deepcopy(G), then convert either or both: deepcopy shares the parametrized class, whose
    properties removing a parametrization deletes."""
    G = _mixed_generator()
    with torch.no_grad():  # (the legacy SN's weight attribute of a forward with grad cannot be deep-copied)
        G(torch.randn(2, 3, 8, 8))
    G_ema = copy.deepcopy(G)
    x = torch.randn(3, 3, 8, 8)
    G.eval(), G_ema.eval()
    expected = G(x).detach()
    models = [G, G_ema] if first == "original" else [G_ema, G]
    fastgan.convert(models[0])
    torch.testing.assert_close(models[1](x), expected)  # the other one is untouched and still works
    assert len(list(fastgan.nn.spectral_norm_layers(models[1]))) == 0
    fastgan.convert(models[1])
    for model in models:
        assert len(list(fastgan.nn.spectral_norm_layers(model))) == 3
        torch.testing.assert_close(model(x), expected, rtol=1e-6, atol=1e-7)
    G.train(), G_ema.train()
    torch.testing.assert_close(G(x), G_ema(x))
    G(x).sum().backward()
    assert all(p.grad is None for p in G_ema.parameters())


def test_convert_is_all_or_nothing():
    model = _mixed_generator()
    with torch.no_grad():
        model[5].parametrizations.weight.original[0, 3] = float("nan")
    keys, types = list(model.state_dict()), [type(m) for m in model.modules()]
    with pytest.raises(ValueError, match=r"5\.weight holds NaN.*nothing was converted"):
        fastgan.convert(model)
    assert list(model.state_dict()) == keys and [type(m) for m in model.modules()] == types
    assert isinstance(model[0].parametrizations.weight[0], parametrizations._SpectralNorm)
    with torch.no_grad():
        model[5].parametrizations.weight.original[0, 3] = 0.0
    fastgan.convert(model)
    assert len(list(fastgan.nn.spectral_norm_layers(model))) == 3
