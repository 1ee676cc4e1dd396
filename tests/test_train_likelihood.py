"""fastgan train vae | vqvae | pixelcnn: short runs write their files with finite losses, resume bitwise, the final
metric, bad resolutions."""
import csv

import numpy as np
import pytest
import torch

from fastgan.train import TrainConfig
from fastgan.train_likelihood import LikelihoodTrainer

pytestmark = pytest.mark.no_triton  # the torch backend only

METRICS = {"vae": "importance-weighted log p(x)", "vqvae": "reconstruction MSE", "pixelcnn": "bits/dim"}


def _config(tmp_path, model, **kw):
    base = dict(model=model, steps=4, batch_size=4, resolution=8, width=3, backend="torch", seed=3,
                out=str(tmp_path / model), data_size=64, sample_every=2, checkpoint_every=2, progress=False,
                evaluate=False, eval_samples=8)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("model", list(METRICS))
def test_a_short_run_writes_its_files_and_its_metric(tmp_path, model):
    summary = LikelihoodTrainer(_config(tmp_path, model, evaluate=True)).fit()
    out = tmp_path / model
    for name in ("losses.csv", "losses.png", "samples.png", "checkpoint.pt", "summary.json", "samples/step_000002.png"):
        assert (out / name).exists(), name
    rows = list(csv.DictReader(open(out / "losses.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert summary["metric"]["name"].startswith(METRICS[model]) and np.isfinite(summary["metric"]["value"])
    assert summary["metric"]["samples"] == 8


@pytest.mark.parametrize("model", list(METRICS))
def test_a_resumed_run_takes_the_uninterrupted_runs_steps_bitwise(tmp_path, model):
    full = LikelihoodTrainer(_config(tmp_path / "a", model))
    full.fit()
    half = LikelihoodTrainer(_config(tmp_path / "b", model, steps=2))
    half.fit()
    resumed = LikelihoodTrainer(_config(tmp_path / "b", model), resume=True)
    resumed.fit()
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history]
    for p, q in zip(full.net.state_dict().values(), resumed.net.state_dict().values()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("model,resolution,message", [("vae", 12, "power of two >= 8"),
                                                      ("vqvae", 10, "multiple of 4"),
                                                      ("vae", 4, "power of two >= 8")])
def test_a_resolution_the_model_does_not_have_is_refused(tmp_path, model, resolution, message):
    with pytest.raises(ValueError, match=message):
        _config(tmp_path, model, resolution=resolution).validate()


def test_joint_d_is_refused_for_a_model_without_a_discriminator(tmp_path):
    with pytest.raises(ValueError, match="no discriminator"):
        _config(tmp_path, "vae", joint_d=True).validate()


def test_torchrun_is_refused_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="run it without torchrun"):
        LikelihoodTrainer(_config(tmp_path, "vae"))


def test_a_pixelcnn_prior_over_a_vqvaes_codes(tmp_path):
    """--prior-of: the prior models the frozen VQ-VAE's code grid (its bits per code fall from log2 K), resumes
    bitwise, and its samples are decoded images; a checkpoint of another model or resolution is refused."""
    vq = LikelihoodTrainer(_config(tmp_path, "vqvae", steps=3, width=8))
    vq.fit()
    ckpt = str(tmp_path / "vqvae" / "checkpoint.pt")
    before = {k: v.clone() for k, v in vq.net.state_dict().items()}
    prior = LikelihoodTrainer(_config(tmp_path / "p", "pixelcnn", steps=30, width=8, lr=3e-3, prior_of=ckpt,
                                      evaluate=True, sample_every=30))
    summary = prior.fit()
    bits = [r["bits_per_code"] for r in prior.history]
    assert bits[0] < np.log2(512) + 1 and np.mean(bits[-5:]) < bits[0] - 0.5
    assert summary["metric"]["name"].startswith("bits per code of the VQ-VAE's 4 codes")
    assert all(torch.equal(before[k], v) for k, v in prior.vq.state_dict().items())  # frozen
    images = prior.samples(4)
    assert images.shape == (4, 3, 8, 8) and images.abs().max() <= 1
    half = LikelihoodTrainer(_config(tmp_path / "h", "pixelcnn", steps=15, width=8, lr=3e-3, prior_of=ckpt,
                                     sample_every=30))
    half.fit()
    resumed = LikelihoodTrainer(_config(tmp_path / "h", "pixelcnn", steps=30, width=8, lr=3e-3, prior_of=ckpt,
                                        sample_every=30), resume=True)
    resumed.fit()
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in prior.history]
    with pytest.raises(ValueError, match="trained at --resolution 8; pass --resolution 8"):
        LikelihoodTrainer(_config(tmp_path / "r", "pixelcnn", resolution=16, prior_of=ckpt))
    LikelihoodTrainer(_config(tmp_path / "v", "vae", steps=1)).fit()
    with pytest.raises(ValueError, match="not a `fastgan train vqvae` checkpoint"):
        LikelihoodTrainer(_config(tmp_path / "x", "pixelcnn", prior_of=str(tmp_path / "v" / "vae" / "checkpoint.pt")))
    with pytest.raises(ValueError, match="use it with pixelcnn"):
        _config(tmp_path, "vae", prior_of=ckpt).validate()
