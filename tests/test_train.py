"""fastgan.train, fastgan.data and `fastgan train`: short runs of every zoo GAN, exact resume, the embedded data
sets and their metrics, image folders and .npz arrays, bad command lines."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from fastgan import data, models
from fastgan.train import TrainConfig, Trainer

pytestmark = pytest.mark.no_triton  # the torch backend only


def _config(tmp_path, model="dcgan", **kw):
    base = dict(model=model, steps=4, batch_size=8, resolution=32, width=4, backend="torch", seed=3,
                out=str(tmp_path / model), data_size=256, sample_every=2, checkpoint_every=2, progress=False,
                evaluate=False)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("model", list(models.GANS))
def test_a_short_run_writes_its_files_with_finite_losses(tmp_path, model):
    cfg = _config(tmp_path, model)
    summary = Trainer(cfg).fit()
    out = tmp_path / model
    for name in ("losses.csv", "losses.png", "samples.png", "checkpoint.pt", "summary.json",
                 "samples/step_000002.png"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "losses.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r[k])) for r in rows for k in ("d_loss", "g_loss", "penalty"))
    assert (float(rows[-1]["penalty"]) > 0) == (models.GANS[model].penalty is not None)
    assert summary["steps"] == 4


def test_the_ring_gan_moves_to_the_ring_and_its_metric_counts_right(tmp_path):
    """The MLP GAN on the 8-Gaussian ring: a short run brings its points' radius toward the ring's, and ends with
    the ring metrics, which an independent count here reproduces; its samples are drawn as a scatter plot."""
    trainer = Trainer(_config(tmp_path, "ring", steps=300, batch_size=64, width=64, evaluate=True,
                              sample_every=1000, checkpoint_every=1000))
    radius = trainer.data.radius

    def off_ring():
        return float((trainer.samples(*trainer._ring_latents()).norm(dim=1) - radius).abs().mean())

    before = off_ring()
    m = trainer.fit()["metric"]
    assert off_ring() < 0.75 * before  # (1.98 -> 1.27 at this seed)
    pts = trainer.samples(*trainer._ring_latents())
    d, which = torch.cdist(pts.double(), trainer.data.centers.double()).min(dim=1)
    good = d <= 3 * trainer.data.std
    assert m["high_quality"] == pytest.approx(float(good.double().mean()))
    assert m["modes_covered"] == int((torch.bincount(which[good], minlength=8) >= 20).sum())
    assert (tmp_path / "ring" / "samples.png").exists()


def test_the_discriminator_learns_to_tell_real_from_fake(tmp_path):
    """A few dozen steps of DCGAN: D's loss falls from its chance value 2 log 2 (and its logits part)."""
    trainer = Trainer(_config(tmp_path, steps=30, batch_size=16, width=8, sample_every=100, checkpoint_every=100))
    trainer.fit()
    first, last = trainer.history[0], trainer.history[-1]
    assert abs(first["d_loss"] - 2 * np.log(2)) < 0.3
    assert last["d_loss"] < first["d_loss"] - 0.3
    assert last["d_real"] > last["d_fake"]


def _params(trainer):
    return {f"{w}.{k}": v.clone() for w, m in (("G", trainer.G), ("D", trainer.D))
            for k, v in m.state_dict().items()}


@pytest.mark.parametrize("model", ["dcgan", "wgan-gp"])
def test_a_resumed_run_takes_the_uninterrupted_runs_steps_bitwise(tmp_path, model):
    straight = Trainer(_config(tmp_path / "a", model, steps=4))
    straight.fit()
    first = Trainer(_config(tmp_path / "b", model, steps=2))
    first.fit()
    resumed = Trainer(_config(tmp_path / "b", model, steps=4), resume=True)
    assert resumed.step_count == 2
    resumed.fit()
    a, b = _params(straight), _params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in straight.history]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history]


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    Trainer(_config(tmp_path, steps=1)).fit()
    with pytest.raises(ValueError, match="use another --out"):
        Trainer(_config(tmp_path, steps=2, width=8), resume=True)


def test_samples_are_images_of_the_fixed_latents(tmp_path):
    trainer = Trainer(_config(tmp_path, ema=0.9))
    trainer.fit()
    x = trainer.samples()
    assert x.shape == (64, 3, 32, 32) and float(x.abs().max()) <= 1.0
    torch.testing.assert_close(trainer.samples(), x)  # eval mode: deterministic
    assert trainer.G.training  # put back


def test_shapes_are_deterministic_labelled_images():
    a, b = data.Shapes(24, size=100, seed=5), data.Shapes(24, size=100, seed=5)
    x, y = a.batch(torch.arange(10))
    x2, y2 = b.batch(torch.arange(10))
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (10, 3, 24, 24) and x.min() >= -1 and x.max() <= 1
    assert set(a.labels.tolist()) == set(range(len(data.SHAPE_CLASSES)))
    # the shape covers a share of the image that depends on its class and size, and its colour is the table's
    cover = (x > -0.8).any(dim=1).float().mean(dim=(1, 2))
    assert bool((cover > 0.05).all() and (cover < 0.7).all())
    assert not torch.equal(data.Shapes(24, size=100, seed=6).batch(torch.arange(10))[0], x)


def test_ring_metrics_tell_coverage_from_collapse():
    ring = data.Ring()
    g = torch.Generator().manual_seed(0)
    good = ring.metrics(ring.sample(2500, g)[0])
    assert good["modes_covered"] == 8 and good["high_quality"] > 0.98  # P(chi2_2 <= 9) = 0.989
    collapsed = ring.metrics(ring.centers[3] + 0.01 * torch.randn(2500, 2, generator=g))
    assert collapsed["modes_covered"] == 1
    off = ring.metrics(torch.zeros(2500, 2))
    assert off["modes_covered"] == 0 and off["high_quality"] == 0.0


def test_image_folders_and_npz_arrays_load(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (6, 20, 16, 3), dtype=np.uint8)  # not square: centre-cropped
    for i, a in enumerate(arr):
        d = tmp_path / "folder" / ("cats" if i < 4 else "dogs")
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(d / f"{i}.png")
    imgs = data.load_images(tmp_path / "folder", 16)
    assert len(imgs) == 6 and imgs.num_classes == 2 and imgs.resolution == 16
    x, y = imgs.batch([0, 5])
    assert y.tolist() == [0, 1]
    torch.testing.assert_close(x[0], torch.from_numpy(arr[0, 2:18]).permute(2, 0, 1).float() / 127.5 - 1)
    sq = rng.integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "x.npz", x=sq, y=np.arange(5))
    imgs = data.load_images(tmp_path / "x.npz", 16)
    x, y = imgs.batch([4])
    assert y.tolist() == [4]
    torch.testing.assert_close(x[0], torch.from_numpy(sq[4]).permute(2, 0, 1).float() / 127.5 - 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        data.load_images(tmp_path / "empty", 16)
    with pytest.raises(ValueError, match="is a file: give a folder of images or an .npz array"):
        data.load_images(tmp_path / "folder" / "cats" / "0.png", 16)


def _user_env(**extra):
    """The environment a user runs in: without the interpreter switch conftest sets (under it, `auto` would
    run the fused layers' Triton kernels interpreted, on the CPU)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return {**env, **extra}


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastgan", "train", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env=_user_env())


@pytest.mark.parametrize("args,message", [
    (["stylegan"], "unknown model 'stylegan'; one of dcgan, wgan-gp, sngan"),
    (["dcgan", "--data", "no/such/folder"], "no data at no/such/folder"),
    (["sngan", "--resolution", "64"], "sngan supports --resolution 32, not 64"),
    (["dcgan", "--steps", "0"], "steps must be a positive integer"),
    (["dcgan", "--resume"], "no checkpoint to resume from at"),
    (["dcgan", "--joint-d"], "mixes their batch-norm statistics"),
])
def test_bad_command_lines_get_one_line_errors(tmp_path, args, message):
    r = _cli(*args, "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_the_command_trains_and_says_where_its_files_are(tmp_path):
    r = _cli("dcgan", "--steps", "3", "--batch-size", "4", "--width", "4", "--out", str(tmp_path / "run"),
             "--quiet", "--eval-samples", "200", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 steps" in r.stdout and str(tmp_path / "run" / "samples.png") in r.stdout
    assert (tmp_path / "run" / "samples.png").exists()
    assert "Frechet distance in small-classifier features (not FID)" in r.stdout and "FID:" not in r.stdout


def test_the_classifier_distance_tells_real_from_noise():
    """The metric's own check: two real sets are close, real vs random images far, and the classifier learns."""
    from fastgan.metrics.classifier_distance import classifier_frechet_distance, train_classifier

    shapes = data.Shapes(32, size=2000, seed=1)
    net = train_classifier(shapes)
    assert net.accuracy > 0.8  # 4 classes: chance 0.25
    real = [shapes.batch(torch.arange(i, i + 100))[0] for i in range(0, 500, 100)]
    real2 = [shapes.batch(torch.arange(i, i + 100))[0] for i in range(500, 1000, 100)]
    noise = [torch.rand(100, 3, 16, 16, generator=torch.Generator().manual_seed(i)) * 2 - 1 for i in range(5)]
    same = classifier_frechet_distance(net, real, real2)
    assert classifier_frechet_distance(net, real, noise) > 10 * same


def test_two_processes_on_gloo_train_one_model(tmp_path):
    """torchrun with 2 CPU processes: gradients averaged, BN statistics synced, one set of files, the same weights
    on both ranks at the end (the trainer checks it), the metric's statistics reduced across them."""
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                        "127.0.0.1", "--master-port", str(port), "-m", "fastgan", "train", "dcgan", "--steps", "3",
                        "--batch-size", "4", "--width", "4", "--out", str(tmp_path / "run"), "--quiet",
                        "--eval-samples", "200", "--checkpoint-every", "2"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600, env=_user_env(OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["steps"] == 3
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0], state["rng"][1])
    assert r.stdout.count("Frechet distance") == 1  # rank 0 speaks for the run


def test_an_ema_copy_written_through_data_keeps_spectral_norm_right():
    """EMA of a G with fastgan SN layers (grouped): weights written through .data, then the copy in eval equals an
    eager build loaded with the copy's state (sigma recomputed from the current weights, not a stale cache)."""
    from fastgan import use_backend
    from fastgan.train import EMA

    torch.manual_seed(0)
    with use_backend("torch"):
        G, _ = models.build("cond-resnet", 32, 8, fused=True, num_classes=4)
        ema = EMA(G, 0.9)
        opt = torch.optim.SGD(G.parameters(), lr=0.1)
        z, y = torch.randn(4, models.latent_size("cond-resnet", G)), torch.tensor([0, 1, 2, 3])
        for _ in range(3):
            loss = G(z, y).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update(G)
        eager, _ = models.build("cond-resnet", 32, 8, fused=False, num_classes=4)
        eager.load_state_dict(ema.module.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(ema.module(z, y), eager.eval()(z, y), rtol=1e-4, atol=1e-5)
    assert ema.module.sn_group is not G.sn_group


def test_a_joint_d_call_takes_the_separate_calls_steps(tmp_path):
    """--joint-d on a critic without batch norm or spectral norm: the same draws, the same losses and weights."""
    runs = {}
    for joint in (False, True):
        trainer = Trainer(_config(tmp_path / str(joint), "wgan-gp", steps=2, joint_d=joint))
        trainer.fit()
        runs[joint] = trainer
    for a, b in zip(runs[False].history, runs[True].history):
        for k in ("d_loss", "g_loss", "penalty", "d_real", "d_fake"):
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k
    for p, q in zip(runs[False].D.parameters(), runs[True].D.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_joint_d_call_of_a_conditional_gan_trains(tmp_path):
    trainer = Trainer(_config(tmp_path, "cond-resnet", steps=2, joint_d=True))
    trainer.fit()
    assert all(np.isfinite(r[k]) for r in trainer.history for k in ("d_loss", "g_loss"))


def test_a_joint_d_call_is_refused_for_a_discriminator_with_batch_norm(tmp_path):
    with pytest.raises(ValueError, match="batch-norm statistics"):
        Trainer(_config(tmp_path, "dcgan", joint_d=True))


def test_tensorboard_logs_the_csvs_losses_and_the_sample_grids(tmp_path):
    pytest.importorskip("tensorboard", reason="the [test] extra installs tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(_config(tmp_path, tensorboard=True)).fit()
    events = EventAccumulator(str(tmp_path / "dcgan" / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    rows = list(csv.DictReader(open(tmp_path / "dcgan" / "losses.csv")))
    for k in ("d_loss", "g_loss", "d_real"):
        logged = events.Scalars(f"train/{k}")
        assert [e.step for e in logged] == [int(r["step"]) for r in rows]
        assert [e.value for e in logged] == pytest.approx([float(r[k]) for r in rows], rel=1e-5)
    assert [e.step for e in events.Images("samples")] == [2, 4]  # every --sample-every (the last step is one)


def test_tensorboard_without_the_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    with pytest.raises(ValueError, match="pip install tensorboard"):
        _config(tmp_path, tensorboard=True).validate()
