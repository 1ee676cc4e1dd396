"""fastgan.convert on models written like pytorch/examples DCGAN, BigGAN-PyTorch and StudioGAN (tests/source_models.py):
the converted model is the same model (outputs, gradients, state over optimizer steps, in float64 against the
unconverted original), keeps its checkpoints' keys both ways, reports what it did, and reverts."""
import copy
import inspect
import types

import pytest
import source_models as sm
import torch
import torch.nn.functional as F
from conftest import INTERPRETING
from torch import nn

import fastgan
from fastgan.nn.spectral_norm import BigGANSpectralNorm, LegacySpectralNorm


def _labels(n, k=5, seed=0):
    return torch.randint(k, (n,), generator=torch.Generator().manual_seed(seed))


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


MODELS = {  # name -> (factory, inputs(step, dtype))
    "dcgan": (sm.DCGANGenerator, lambda s, dt: (_randn(4, 16, 1, 1, seed=s, dtype=dt),)),
    "studiogan_G": (sm.StudioGANGenerator, lambda s, dt: (_randn(4, 8, seed=s, dtype=dt), _labels(4, seed=s))),
    "studiogan_D": (sm.StudioGANDiscriminator, lambda s, dt: (_randn(4, 3, 8, 8, seed=s, dtype=dt),
                                                              _labels(4, seed=s))),
    "studiogan_D_cifar_size": (lambda: sm.StudioGANDiscriminator(ch=128, num_classes=10),
                               lambda s, dt: (_randn(4, 3, 32, 32, seed=s, dtype=dt), _labels(4, 10, seed=s))),
    "biggan_G": (sm.BigGANGenerator, lambda s, dt: (_randn(4, 12, seed=s, dtype=dt), _randn(4, 6, seed=s + 50,
                                                                                            dtype=dt))),
    "biggan_G_embedding": (lambda: sm.BigGANGenerator(G_shared=False),
                           lambda s, dt: (_randn(4, 12, seed=s, dtype=dt), _labels(4, seed=s))),
    "biggan_G_cifar_size": (lambda: sm.BigGANGenerator(ch=64, dim_z=128, n_classes=10, G_shared=False,
                                                       resolution=32),  # BigGAN's CIFAR widths: 256 channels
                            lambda s, dt: (_randn(4, 128, seed=s, dtype=dt), _labels(4, 10, seed=s))),
    "biggan_D": (sm.BigGANDiscriminator, lambda s, dt: (_randn(4, 3, 8, 8, seed=s, dtype=dt), _labels(4, seed=s))),
}


def _pair(name, dtype=torch.float64, **kwargs):
    make, inputs = MODELS[name]
    torch.manual_seed(0)
    original = make().to(dtype)
    converted, report = fastgan.convert(copy.deepcopy(original), report=True, **kwargs)
    return original, converted, report, inputs


def _train_together(original, converted, inputs, steps, dtype, check, loss=lambda out: out.square().mean()):
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (original, converted)]
    for step in range(steps):
        args = inputs(step, dtype)
        outs = []
        for model, opt in zip((original, converted), opts):
            opt.zero_grad()
            out = model(*args)
            loss(out).backward()
            outs.append(out.detach())
        check(outs[1], outs[0])
        for (name, p), q in zip(original.named_parameters(), converted.parameters()):
            check(q.grad, p.grad, msg=f"gradient of {name} at step {step}")
        for opt in opts:
            opt.step()
        for (key, a), b in zip(original.state_dict().items(), converted.state_dict().values()):
            check(b.double(), a.double(), msg=f"{key} after step {step}")


def _check64(a, b, msg=""):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11, msg=lambda m: f"{msg}: {m}")


@pytest.mark.parametrize("name", list(MODELS))
def test_converted_model_trains_and_evaluates_as_the_original_in_float64(name):
    original, converted, report, inputs = _pair(name)
    assert report.replaced and not [s for s in report.skipped if "differs" in s[2]]
    assert list(converted.state_dict()) == list(original.state_dict())
    _train_together(original, converted, inputs, 3, torch.float64, _check64)
    original.eval(), converted.eval()
    args = inputs(7, torch.float64)
    _check64(converted(*args), original(*args))


@pytest.mark.skipif(not INTERPRETING, reason="the Triton kernels run on CPU tensors only under TRITON_INTERPRET=1")
@pytest.mark.parametrize("name", ["dcgan", "studiogan_G", "biggan_G", "biggan_D"])
def test_converted_model_on_the_triton_kernels(name, small_tiles):
    original, converted, _, inputs = _pair(name, torch.float32)

    def check(a, b, msg=""):
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5, msg=lambda m: f"{msg}: {m}")

    with fastgan.use_backend("triton"):
        _train_together(original, converted, inputs, 2, torch.float32, check)


def test_report_lists_each_kind_of_layer_and_the_fused_activations():
    _, _, report, _ = _pair("biggan_G")
    rows = {(path, to.split(" ")[0]) for path, _, to in report.replaced}
    assert ("blocks.0.0.bn1", "fused") in rows and ("output_layer.0", "fused") in rows
    assert ("blocks.0.0.conv1.weight", "fastgan") in rows and ("blocks.0.0.bn1.gain.weight", "fastgan") in rows
    traced = [r for r in report.fused if "torch.fx trace" in r[2]]
    assert sorted((where, layers.split(" ")[0]) for where, layers, _ in traced) == [
        ("blocks.0.0", "bn1"), ("blocks.0.0", "bn2"), ("blocks.1.0", "bn1"), ("blocks.1.0", "bn2")]
    assert ("output_layer", "0 (bn) -> 1 (ReLU)", "one fused call (relu) when run in a row") in report.fused
    text = str(report)
    assert "replaced" in text and "fused 5:" in text and "blocks.1.0.bn2" in text
    _, _, report, _ = _pair("studiogan_G")
    kinds = [what for _, what, _ in report.replaced]
    assert kinds.count("torch.nn.utils.spectral_norm") == 17
    assert sum("StudioGAN ConditionalBatchNorm2d" in k for k in kinds) == 4
    assert sum(k == "BatchNorm2d" for k in kinds) == 1  # bn4 only: the CBNs' inner bn are part of them
    assert any(path == "(model)" and "not fused" in why for path, _, why in report.skipped)  # G's loop


class _TwoSingularValues(sm.BigSNConv2d):
    pass


class _WrongCcbn(sm.ccbn):
    """Looks like BigGAN's ccbn, computes something else (no 1 + gain)."""

    def forward(self, x, y):
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, 0.1, self.eps)
        return out * self.gain(y).view(y.size(0), -1, 1, 1) + self.bias(y).view(y.size(0), -1, 1, 1)


def test_what_does_not_match_exactly_is_skipped_with_the_reason():
    torch.manual_seed(0)
    cross = sm.ccbn(4, 3, nn.Linear)
    cross.cross_replica = True
    model = nn.ModuleDict({"svs": sm.BigSNConv2d(3, 4, num_svs=2), "wrong": _WrongCcbn(4, 3, nn.Linear),
                           "cross": cross, "ok": sm.BigSNConv2d(3, 4)})
    before = copy.deepcopy(model)
    _, report = fastgan.convert(model, report=True)
    why = {path: reason for path, _, reason in report.skipped}
    assert "num_svs=2" in why["svs.weight"]
    assert "differs" in why["wrong"]
    assert "cross_replica" in why["cross"]
    assert [path for path, *_ in report.replaced] == ["ok.weight", "(model)"]
    for key in ("svs", "wrong", "cross"):
        assert type(model[key]) is type(before[key])


def test_checkpoints_load_strictly_both_ways():
    for name in ("studiogan_G", "biggan_G", "biggan_D", "dcgan"):
        original, converted, _, inputs = _pair(name)
        _train_together(original, converted, inputs, 1, torch.float64, _check64)
        fresh_source, fresh_converted = MODELS[name][0]().double(), fastgan.convert(MODELS[name][0]().double())
        fresh_source.load_state_dict(converted.state_dict(), strict=True)  # new checkpoint -> source codebase
        fresh_converted.load_state_dict(original.state_dict(), strict=True)  # old checkpoint -> converted model
        for model in (fresh_source, fresh_converted, original):
            model.eval()
        args = inputs(3, torch.float64)
        _check64(fresh_source(*args), original(*args))
        _check64(fresh_converted(*args), original(*args))


def _r1(D, x, y):
    x = x.detach().requires_grad_(True)
    out = D(x, y)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    return out.mean() + 5.0 * grad.square().flatten(1).sum(1).mean()


@pytest.mark.parametrize("name", ["studiogan_D", "studiogan_D_cifar_size", "biggan_D"])
def test_r1_through_a_converted_discriminator(name):
    original, converted, _, inputs = _pair(name)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05) for m in (original, converted)]
    for step in range(3):
        x, y = inputs(step, torch.float64)
        for model, opt in zip((original, converted), opts):
            opt.zero_grad()
            _r1(model, x, y).backward()
        for p, q in zip(original.parameters(), converted.parameters()):
            _check64(q.grad, p.grad, msg=f"step {step}")
        for opt in opts:
            opt.step()


@pytest.mark.parametrize("name", ["studiogan_G", "biggan_G", "dcgan"])
def test_revert_gives_back_the_source_modules_with_their_current_state(name):
    original, converted, _, inputs = _pair(name)
    _train_together(original, converted, inputs, 2, torch.float64, _check64)
    fastgan.revert(converted)
    assert [type(m) for m in converted.modules()] == [type(m) for m in original.modules()]
    assert not any(isinstance(h, LegacySpectralNorm) for m in converted.modules() for h in
                   m._forward_pre_hooks.values())
    assert not any("_fastgan_source" in m.__dict__ or "_fastgan_sn" in m.__dict__ or "forward" in m.__dict__
                   for m in converted.modules())
    assert not converted._forward_pre_hooks  # the group's hooks are gone
    _train_together(original, converted, inputs, 1, torch.float64, _check64)
    original.eval(), converted.eval()
    args = inputs(5, torch.float64)
    _check64(converted(*args), original(*args))


@pytest.mark.parametrize("when", ["before", "after"])
def test_G_ema_deepcopy_converts_before_or_after_the_copy(when):
    torch.manual_seed(0)
    G = sm.BigGANGenerator().double()
    reference = copy.deepcopy(G)
    if when == "before":
        G_ema = fastgan.convert(copy.deepcopy(G))
        fastgan.convert(G)
    else:
        fastgan.convert(G)
        G_ema = copy.deepcopy(G)
    assert len(list(fastgan.nn.spectral_norm_layers(G_ema))) == 16
    z, y = _randn(3, 12), _randn(3, 6, seed=1)
    for model in (G, G_ema, reference):
        model.train()
    _check64(G_ema(z, y), reference(z, y))  # the copy's group computes the copy's layers
    _check64(G(z, y), G_ema(z, y))
    with torch.no_grad():  # an EMA update written through .data, as BigGAN-PyTorch does
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.data.mul_(0.5).add_(p.data, alpha=0.5)
    G_ema.eval()
    assert torch.isfinite(G_ema(z, y)).all()
    assert G_ema.blocks[0][0].conv1.weight is not G.blocks[0][0].conv1.weight


def test_optimizer_built_before_convert_keeps_training_the_same_parameters():
    torch.manual_seed(0)
    D = sm.StudioGANDiscriminator().double()
    opt = torch.optim.Adam(D.parameters(), lr=1e-3)
    ids = [id(p) for p in D.parameters()]
    fastgan.convert(D)
    assert [id(p) for p in D.parameters()] == ids
    x, y = _randn(2, 3, 8, 8), _labels(2)
    before = [p.detach().clone() for p in D.parameters()]
    D(x, y).mean().backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, D.parameters()) if b.grad is not None)


def test_wrappers_compiled_modules_and_compile_of_a_converted_model():
    torch.manual_seed(0)
    D = sm.StudioGANDiscriminator()
    dp = nn.DataParallel(D)
    out, report = fastgan.convert(dp, report=True)
    assert out is dp and any(isinstance(h, LegacySpectralNorm) for m in D.modules() for h in
                             m._forward_pre_hooks.values())
    assert any(what == "SpectralNormGroup" for _, what, _ in report.skipped)  # replicas: no group
    with pytest.raises(TypeError, match="convert the plain module first"):
        fastgan.convert(torch.compile(sm.StudioGANDiscriminator()))
    G = sm.BigGANGenerator()
    reference = copy.deepcopy(G)
    compiled = torch.compile(fastgan.convert(G), fullgraph=True, backend="aot_eager")
    z, y = _randn(3, 12, dtype=torch.float32), _randn(3, 6, seed=1, dtype=torch.float32)
    torch.testing.assert_close(compiled(z, y), reference(z, y), rtol=1e-4, atol=1e-5)
    for (key, a), b in zip(reference.state_dict().items(), G.state_dict().values()):  # u0, sv0, running stats
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=key)


class _SometimesTwice(nn.Module):
    """One SN layer used twice in a forward, another only when asked: the group must iterate as the layers
    would alone."""

    def __init__(self):
        super().__init__()
        self.a = sm.sn_linear(4, 4)
        self.b = sm.sn_linear(4, 1)
        self.use_b = True

    def forward(self, x):
        h = self.a(torch.relu(self.a(x)))
        return self.b(h) if self.use_b else h.sum(1, keepdim=True)


def test_group_iterates_exactly_as_the_layers_would_alone():
    torch.manual_seed(0)
    original = _SometimesTwice().double()
    converted = fastgan.convert(copy.deepcopy(original))
    assert "_fastgan_sn_group" in converted.__dict__
    for step, use_b in enumerate((True, False, True, False)):
        original.use_b = converted.use_b = use_b
        x = _randn(3, 4, seed=step)
        _check64(converted(x), original(x))
        for (key, a), b in zip(original.state_dict().items(), converted.state_dict().values()):
            _check64(b, a, msg=f"{key} at step {step}")


@pytest.mark.parametrize("split_D", [False, True])
def test_biggans_G_D_wrapper_converted_whole_trains_as_the_original(split_D):
    """One group over G and D: G runs under no_grad in a D step, D after it with gradient (once or twice)."""
    torch.manual_seed(0)
    original = sm.G_D(sm.BigGANGenerator(), sm.BigGANDiscriminator(ch=4, n_classes=5)).double()
    converted = fastgan.convert(copy.deepcopy(original))
    opts = {id(m): (torch.optim.SGD(m.G.parameters(), lr=0.05), torch.optim.SGD(m.D.parameters(), lr=0.05))
            for m in (original, converted)}
    for step in range(3):
        z, gy, x = _randn(4, 12, seed=step), _labels(4, seed=step), _randn(4, 3, 16, 16, seed=step + 9)
        for m in (original, converted):
            opt_G, opt_D = opts[id(m)]
            opt_D.zero_grad()
            fake, real = m(z, gy, x, gy, split_D=split_D)
            (F.relu(1 - real).mean() + F.relu(1 + fake).mean()).backward()
            opt_D.step()
            opt_G.zero_grad()
            (-m(z, gy, train_G=True, split_D=split_D).mean()).backward()
            opt_G.step()
        for (key, a), b in zip(original.state_dict().items(), converted.state_dict().values()):
            _check64(b, a, msg=f"{key} after step {step}")


class _BranchOnInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU()

    def forward(self, x, flip=None):
        h = self.act(self.bn(x))
        if flip is not None:
            h = h.flip(-1)
        return h


def test_a_forward_that_branches_on_its_inputs_is_not_traced():
    model = _BranchOnInput()
    _, report = fastgan.convert(model, report=True)
    assert type(model) is _BranchOnInput and not report.fused
    assert any("branches on 'flip'" in why for _, _, why in report.skipped)
    x = _randn(2, 3, 4, 4, dtype=torch.float32)
    torch.testing.assert_close(model(x, flip=True), F.relu(F.batch_norm(x, None, None, training=True)).flip(-1),
                               rtol=1e-5, atol=1e-5)


def test_nan_weight_converts_nothing():
    torch.manual_seed(0)
    D = sm.BigGANDiscriminator()
    with torch.no_grad():
        D.linear.weight[0, 0] = float("nan")
    types = [type(m) for m in D.modules()]
    with pytest.raises(ValueError, match="nothing was converted"):
        fastgan.convert(D)
    assert [type(m) for m in D.modules()] == types
    assert not any(isinstance(m.__dict__.get("_fastgan_sn"), BigGANSpectralNorm) for m in D.modules())


@pytest.mark.parametrize("source", ["biggan", "studiogan"])
def test_checkpoint_converters_go_both_ways_for_whole_models(source):
    """from_* then to_* gives back a checkpoint that loads strictly into the source codebase's model: every SN
    conv/linear/embedding and every batch norm, not only the conditional ones."""
    torch.manual_seed(0)
    make = sm.BigGANGenerator if source == "biggan" else sm.StudioGANGenerator
    there, back = ((fastgan.from_biggan_ccbn, fastgan.to_biggan_ccbn) if source == "biggan" else
                   (fastgan.from_studiogan_cbn, fastgan.to_studiogan_cbn))
    model = make().double()
    with torch.no_grad():
        model(*MODELS[f"{source}_G"][1](0, torch.float64))  # moves u, v and the running statistics
    sd = model.state_dict()
    ours = there(sd)
    assert not any(k.endswith(("stored_mean", "u0", "weight_orig", "bn.running_mean")) for k in ours)
    restored = back(ours)
    assert set(restored) == set(sd)
    fresh = make().double()
    fresh.load_state_dict(restored, strict=True)
    model.eval(), fresh.eval()
    args = MODELS[f"{source}_G"][1](1, torch.float64)
    _check64(fresh(*args), model(*args))


def test_cli_prints_the_report(capsys):
    from fastgan.cli import main

    assert main(["convert", "--report", "source_models:StudioGANDiscriminator"]) == 0
    out = capsys.readouterr().out
    assert "StudioGANDiscriminator" in out and "blocks.0.conv2d1.weight" in out and "LegacySpectralNorm" in out
    assert main(["convert", "--report", "source_models"]) == 2
    assert "MODULE:FACTORY" in capsys.readouterr().err


def test_sync_batchnorm_without_torch_distributed_is_a_batch_norm_as_torchs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.SyncBatchNorm(4), nn.ReLU())
    reference = copy.deepcopy(model)
    fastgan.convert(model)
    x = _randn(2, 3, 6, 6, dtype=torch.float32)
    for train in (True, False):
        model.train(train), reference.train(train)
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-6)
    fastgan.revert(model)
    assert type(model[1]) is nn.SyncBatchNorm and type(model[2]) is nn.ReLU


def test_a_converted_model_pickles_whole_and_stays_converted(tmp_path):
    torch.manual_seed(0)
    G = sm.BigGANGenerator().double()
    reference = copy.deepcopy(G)
    fastgan.convert(G)
    torch.save(G, tmp_path / "G.pt")
    H = torch.load(tmp_path / "G.pt", weights_only=False)
    assert "_fastgan_trace" in H.blocks[0][0].__dict__  # still the fused forward
    assert "_fastgan_sn_group" in H.__dict__
    z, y = _randn(3, 12), _randn(3, 6, seed=1)
    _check64(H(z, y), reference(z, y))  # training forwards: u0, sv0, running statistics move alike
    for (key, a), b in zip(reference.state_dict().items(), H.state_dict().values()):
        _check64(b, a, msg=key)
    assert len(H.__dict__["_fastgan_sn_group"]) == 16  # bound to the reloaded model's layers


_SCALE = torch.full((1, 3, 1, 1), 2.0)  # a module-level tensor: the trace holds it as a constant of its own


class _WithConstant(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(self.bn(x)) * _SCALE


def test_a_traced_forward_with_constants_is_left_as_it_is():
    model = _WithConstant()
    x = _randn(2, 3, 4, 4, dtype=torch.float32)
    expected = F.relu(F.batch_norm(x, None, None, training=True)) * 2
    _, report = fastgan.convert(model, report=True)
    assert type(model) is _WithConstant and not report.fused
    assert any("constants" in why for *_, why in report.skipped)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


class _LeakyBlock(nn.Module):
    """A block torch.fx traces: BN -> LeakyReLU (not idempotent, unlike ReLU), a branch on a config attribute."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2)
        self.mode = "plain"

    def forward(self, x):
        h = self.act(self.bn(self.conv(x)))
        return h if self.mode == "plain" else -h


class _TrainingBranch(_LeakyBlock):
    def forward(self, x):
        h = self.act(self.bn(self.conv(x)))
        return h * 2 if self.training else h


def test_a_traced_forward_pickles_deep_copies_and_reverts_as_itself(tmp_path):
    torch.manual_seed(0)
    original = _LeakyBlock().double()
    converted, report = fastgan.convert(copy.deepcopy(original), report=True)
    assert [layers for _, layers, _ in report.fused] == ["bn (BatchNorm2d) -> act (LeakyReLU)"]
    torch.save(converted, tmp_path / "block.pt")
    pairs = [(converted, original), (copy.deepcopy(converted), copy.deepcopy(original)),
             (torch.load(tmp_path / "block.pt", weights_only=False), copy.deepcopy(original))]
    x = _randn(2, 3, 5, 5)
    for model, reference in pairs:
        _check64(model(x), reference(x))
        model.eval(), reference.eval()
        _check64(model(x), reference(x))
    fastgan.revert(converted)
    assert type(converted) is _LeakyBlock and type(converted.act) is nn.LeakyReLU
    _check64(converted(x), original(x))


def test_a_traced_forward_refuses_to_run_once_a_branch_attribute_changed():
    converted = fastgan.convert(_LeakyBlock())
    converted.mode = "negated"
    with pytest.raises(RuntimeError, match=r"self.mode = 'plain'; it is now 'negated'.*revert"):
        converted(_randn(2, 3, 5, 5, dtype=torch.float32))


def test_a_forward_that_branches_on_the_training_flag_is_not_traced():
    torch.manual_seed(0)
    original = _TrainingBranch().double()
    converted, report = fastgan.convert(copy.deepcopy(original), report=True)
    assert type(converted) is _TrainingBranch and not report.fused
    assert any("training flag" in why for *_, why in report.skipped)
    x = _randn(2, 3, 5, 5)
    _check64(converted(x), original(x))
    original.eval(), converted.eval()
    _check64(converted(x), original(x))


def _dcgan_pair(**kwargs):
    torch.manual_seed(0)
    original = sm.DCGANGenerator().double()
    return original, fastgan.convert(copy.deepcopy(original), **kwargs)


@pytest.mark.parametrize("edit", ["bn", "conv", "act"])
def test_a_layer_assigned_into_a_converted_sequential_computes_as_assigned(edit):
    original, converted = _dcgan_pair()
    for model in (original, converted):
        torch.manual_seed(1)
        new = {"bn": lambda: nn.BatchNorm2d(32), "conv": lambda: nn.ConvTranspose2d(16, 32, 4, 1, 0, bias=False),
               "act": lambda: nn.LeakyReLU(0.2)}[edit]().double()
        model.main[{"bn": 1, "conv": 0, "act": 2}[edit]] = new
    z = _randn(3, 16, 1, 1)
    _check64(converted(z), original(z))


def test_single_layers_slices_and_a_loop_over_a_converted_sequential_compute_as_before():
    original, converted = _dcgan_pair()
    z = _randn(3, 16, 1, 1)
    h = original.main[0](z)
    _check64(converted.main[0](z), h)  # the ConvT alone, not ConvT -> BN -> ReLU
    _check64(converted.main[1](h), original.main[1](h))  # the BN alone
    _check64(converted.main[:1](z), original.main[:1](z))  # a slice that cuts a run
    _check64(converted.main[3:6](h.relu()), original.main[3:6](h.relu()))  # one that holds one, fused
    x, y = z, z
    for a, b in zip(original.main, converted.main):
        x, y = a(x), b(y)
    _check64(y, x)
    for (key, a), b in zip(original.state_dict().items(), converted.state_dict().values()):
        _check64(b, a, msg=key)  # each call moved the running statistics alike


@pytest.mark.parametrize("when", ["before", "after"])
def test_hooks_on_fused_layers_run_as_they_would(when):
    torch.manual_seed(0)
    original = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                             nn.ConvTranspose2d(4, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.ReLU()).double()
    converted = copy.deepcopy(original)
    seen = {id(m): [] for m in (original, converted)}

    def hook(model):
        model[2].register_forward_pre_hook(lambda mod, args: (args[0] - 1,))
        model[4].register_forward_hook(lambda mod, args, out: seen[id(model)].append(out.min().item()))

    if when == "before":
        hook(converted)
    converted, report = fastgan.convert(converted, report=True)
    if when == "before":
        assert not report.fused and any("hooks" in why for *_, why in report.skipped)
    else:
        assert len(report.fused) == 2
        hook(converted)
    hook(original)
    x = _randn(2, 3, 6, 6)
    _check64(converted(x), original(x))
    assert seen[id(converted)] == pytest.approx(seen[id(original)]) and seen[id(original)][0] < 0


def test_a_converted_batch_norm_given_the_wrong_channels_says_so():
    _, converted = _dcgan_pair()
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected x with 32 channels"):
        converted.main[1](_randn(2, 31, 4, 4))


def test_converting_twice_says_what_was_left():
    _, converted = _dcgan_pair()
    _, report = fastgan.convert(converted, report=True)
    assert not report.replaced and not report.fused
    assert any("converted before" in what for _, what, _ in report.skipped)


def test_a_residual_batch_norm_output_is_not_fused_and_the_report_says_why():
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn, self.act = nn.BatchNorm2d(3), nn.ReLU()

        def forward(self, x):
            h = self.bn(x)
            return self.act(h) + h

    model, report = fastgan.convert(Residual(), report=True)
    assert not report.fused and any("another use" in why for *_, why in report.skipped)
    x = _randn(2, 3, 4, 4, dtype=torch.float32)
    h = F.batch_norm(x, None, None, training=True)
    torch.testing.assert_close(model(x), h.relu() + h, rtol=1e-5, atol=1e-5)


class _Scaled(nn.Module):
    """A traced forward reading a float attribute (a fade-in alpha) and calling its BN with a keyword."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.act = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2)
        self.alpha = 0.5

    def forward(self, x):
        return self.act(self.bn(input=self.conv(x))) * self.alpha


class _Config(_Scaled):
    def forward(self, x):
        return self.act(self.bn(self.conv(x))) * self.cfg.scale


class _Dropout(_Scaled):
    def forward(self, x):
        return F.dropout(self.act(self.bn(self.conv(x))), 0.5, self.training)


class _OtherSelf(_Scaled):
    def forward(s, x):  # noqa: N805 - the first argument need not be called self
        return s.helper(s.act(s.bn(s.conv(x))))

    def helper(self, h):
        return h * 2 if self.alpha > 1 else h


def test_activations_and_modules_changed_after_convert_are_followed():
    torch.manual_seed(0)
    seq = nn.Sequential(nn.ConvTranspose2d(3, 4, 4, 2, 1), nn.BatchNorm2d(4), nn.LeakyReLU(0.2),
                        nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.LeakyReLU(0.2)).double()
    for original, edit in [(seq, lambda m: [setattr(m[i], "negative_slope", 0.5) for i in (2, 5)]),
                           (_Scaled().double(), lambda m: setattr(m.act, "negative_slope", 0.5)),
                           (_Scaled().double(), lambda m: setattr(m, "act", nn.Tanh())),
                           (_Scaled().double(), lambda m: setattr(m, "bn", nn.Identity()))]:
        converted, report = fastgan.convert(copy.deepcopy(original), report=True)
        assert report.fused
        x = _randn(2, 3, 5, 5)
        for model in (original, converted):
            edit(model)
        for train in (True, False):
            original.train(train), converted.train(train)
            _check64(converted(x), original(x))


def test_what_a_trace_would_fix_is_checked_or_not_traced():
    converted = fastgan.convert(_Scaled())
    assert list(inspect.signature(converted.forward).parameters) == ["x"]
    x = _randn(2, 3, 5, 5, dtype=torch.float32)
    converted(x)
    converted.alpha = 1.0
    with pytest.raises(RuntimeError, match=r"self.alpha = 0.5; it is now 1.0"):
        converted(x)
    for cls, why in [(_Config, "reads self.cfg, a SimpleNamespace"), (_Dropout, "training flag"),
                     (_OtherSelf, "calls the method self.helper")]:
        model = cls()
        model.cfg = types.SimpleNamespace(scale=2.0)
        _, report = fastgan.convert(model, report=True)
        assert type(model) is cls and not report.fused, cls
        assert any(why in w for *_, w in report.skipped), (cls, report.skipped)


def test_a_sequential_ending_in_conv_transpose_then_batch_norm_converts():
    torch.manual_seed(0)
    original = nn.Sequential(nn.ConvTranspose2d(3, 4, 4, 2, 1), nn.BatchNorm2d(4)).double()
    converted, report = fastgan.convert(copy.deepcopy(original), report=True)
    assert [layers for _, layers, _ in report.fused] == ["0 (ConvTranspose2d) -> 1 (BatchNorm2d)"]
    x = _randn(2, 3, 4, 4)
    for train in (True, False):
        original.train(train), converted.train(train)
        _check64(converted(x), original(x))
