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

pytestmark = pytest.mark.no_triton  # (CI runs these on one Triton release)

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
    assert proc.returncode == 2 and "holds 64-d statistics, but the features are 192-d: pass --dims 64" in proc.stderr
    proc = _run(a, tmp_path / "out.txt", "--save-stats", "--dims", 64, "--weights", weights)
    assert proc.returncode == 2 and "--save-stats writes an .npz file" in proc.stderr


# ---------------------------------------------------------------- input that used to go wrong (in-process: fast)


def _main(capsys, *args):
    from fastgan.cli import main

    rc = main(["fid", *map(str, args), "--quiet"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_16_bit_grayscale_images_are_scaled_not_clipped(tmp_path):
    """Pillow's RGB conversion clips 16-bit values at 255: 30000/65535 would load as 1.0."""
    values = np.array([[0, 257, 30000], [40000, 65280, 65535]], dtype=np.uint16)
    PIL.fromarray(values).save(tmp_path / "g16.png")
    with PIL.open(tmp_path / "g16.png") as img:
        assert img.mode.startswith("I")  # what Pillow makes of a 16-bit grayscale PNG
    x = load_image(tmp_path / "g16.png")
    expected = torch.from_numpy(values.astype(np.float64) / 65535).float()
    assert x.shape == (3, 2, 3)
    for channel in x:
        torch.testing.assert_close(channel, expected, rtol=0, atol=1e-7)
    PIL.fromarray((values // 257).astype(np.uint8)).save(tmp_path / "g8.png")  # the same image in 8 bits
    torch.testing.assert_close(load_image(tmp_path / "g8.png"), x, rtol=0, atol=1 / 255)


def test_unreadable_images_are_named(tmp_path):
    PIL.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    for name in ("cut.png", "junk.png"):
        with pytest.raises(ValueError, match=f"{name}: cannot read this image"):
            load_image(tmp_path / name)


def test_statistics_files_are_checked_before_they_are_read(tmp_path, capsys):
    import zipfile

    # a header that promises a 10000 x 10000 sigma (800 MB) with no data behind it: refused from the header
    with zipfile.ZipFile(tmp_path / "big.npz", "w") as zf:
        with zf.open("mu.npy", "w") as f:
            np.lib.format.write_array(f, np.zeros(64))
        with zf.open("sigma.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": (10000, 10000)})
    (tmp_path / "empty.npz").write_bytes(b"")
    save_statistics(tmp_path / "ok.npz", np.zeros(64), np.eye(64))
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:300])
    cases = [("big.npz", r"mu \(64,\) and sigma \(10000, 10000\) are not \(d,\) and \(d, d\)"),
             ("empty.npz", "empty.npz is not a readable .npz statistics file"),
             ("cut.npz", "cut.npz is not a readable .npz statistics file")]
    from fastgan.metrics import load_statistics

    for name, message in cases:
        with pytest.raises(ValueError, match=message):
            load_statistics(tmp_path / name)
        rc, _, err = _main(capsys, tmp_path / name, tmp_path / "ok.npz")
        assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def test_dims_come_from_the_statistics_and_identical_ones_give_zero(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 64))
    save_statistics(tmp_path / "a.npz", x.mean(0), np.cov(x, rowvar=False))
    rc, out, err = _main(capsys, tmp_path / "a.npz", tmp_path / "a.npz")  # no --dims needed for 64-d files
    assert rc == 0, err
    assert out.strip() == "FID: 0.000000"


def test_refusals_come_before_any_work(tmp_path, capsys, monkeypatch):
    """--save-stats to a non-.npz file and a CUDA device that is not there are refused before the network is built
    or an image is read (no weights are given here: building the network would fail first)."""
    folder = _folder(tmp_path / "imgs", 3, 0)
    monkeypatch.setenv("FASTGAN_INCEPTION_WEIGHTS", "")
    rc, _, err = _main(capsys, folder, tmp_path / "out.txt", "--save-stats")
    assert rc == 2 and "--save-stats writes an .npz file" in err
    if not torch.cuda.is_available():
        rc, _, err = _main(capsys, folder, folder, "--device", "cuda")
        assert rc == 2 and "device 'cuda' was asked for" in err and "use device='cpu'" in err
    rc, _, err = _main(capsys, folder, folder, "--dims", 100)
    assert rc == 2 and "--dims 100" in err


def test_version_flag(capsys):
    from fastgan import __version__
    from fastgan.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"fastgan {__version__}"
