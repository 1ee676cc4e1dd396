"""`fastgan fid`: image folders and .npz files, against features computed in the test process."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
import torch

from fastgan.metrics import save_statistics
from fastgan.metrics.folders import load_image
from fastgan.metrics.inception import FIDInceptionV3

PIL = pytest.importorskip("PIL.Image")


def _folder(path, n, seed, size=24):
    path.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        PIL.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path / f"{i:03d}.png")
    (path / "notes.txt").write_text("not an image")  # ignored, as pytorch-fid ignores it
    return path


def _run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fastgan", "fid", *map(str, args), "--device", "cpu", "--quiet"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fid")
    torch.manual_seed(0)
    net = FIDInceptionV3()
    weights = tmp / "pt_inception-test.pth"
    torch.save(net.state_dict(), weights)
    return tmp, net, weights, _folder(tmp / "a", 70, 1), _folder(tmp / "b", 66, 2)


def _expected_fid(net, *folders):
    stats = []
    with torch.no_grad():
        for folder in folders:
            x = torch.stack([load_image(p) for p in sorted(folder.glob("*.png"))])
            f = net.feature_maps(x, (64,), pool=True)[64].double().numpy()
            stats.append((f.mean(0), np.cov(f, rowvar=False)))
    (m1, s1), (m2, s2) = stats
    return ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)


def test_fid_of_two_folders_and_of_saved_statistics(setup):
    tmp, net, weights, a, b = setup
    expected = _expected_fid(net, a, b)
    proc = _run(a, b, "--dims", 64, "--batch-size", 16, "--weights", weights)
    assert proc.returncode == 0, proc.stderr
    fid = float(proc.stdout.split("FID:")[1])
    assert abs(fid - expected) <= 1e-5 * expected + 1e-6
    stats = tmp / "a.npz"
    proc = _run(a, stats, "--dims", 64, "--save-stats", env={"FASTGAN_INCEPTION_WEIGHTS": str(weights)})
    assert proc.returncode == 0, proc.stderr
    with np.load(stats) as f:
        assert f["mu"].shape == (64,) and f["sigma"].shape == (64, 64)
    proc = _run(stats, b, "--dims", 64, "--weights", weights)
    assert proc.returncode == 0, proc.stderr
    assert abs(float(proc.stdout.split("FID:")[1]) - fid) <= 1e-6 * fid + 1e-9


def test_fid_errors_are_one_clear_line(setup, tmp_path):
    tmp, net, weights, a, b = setup
    proc = _run(a, b, "--dims", 64, env={"FASTGAN_INCEPTION_WEIGHTS": ""})
    assert proc.returncode == 2 and "pt_inception-2015-12-05-6726825d.pth" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _run(tmp_path / "missing", b, "--weights", weights)
    assert proc.returncode == 2 and "is not a folder of images" in proc.stderr
    save_statistics(tmp_path / "s64.npz", np.zeros(64), np.eye(64))
    proc = _run(tmp_path / "s64.npz", b, "--dims", 192, "--weights", weights)
    assert proc.returncode == 2 and "holds 64-d statistics; --dims is 192" in proc.stderr
    proc = _run(a, tmp_path / "out.txt", "--save-stats", "--dims", 64, "--weights", weights)
    assert proc.returncode == 2 and "--save-stats writes an .npz file" in proc.stderr
