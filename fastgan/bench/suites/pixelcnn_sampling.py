"""PixelCNN sampling suite: the cached sampler (Ramachandran et al. 2017) against the naive one (a full forward per
sub-pixel), the same model and the same uniform draws: a gated PixelCNN of 8 layers of 60 features (1.23 M
parameters), 16 images of 3x32x32. Timed on the CPU always (the ratio needs no GPU) and on ``device`` when it is
a GPU.

``cached`` draws the whole batch. ``naive`` is timed on its first NAIVE_ROWS rows: each of its H W C steps is the
same full forward on the same batch then one draw, so its whole-image time is that x H / NAIVE_ROWS (the
``naive_full_ms`` of the record, with how it was obtained). Before timing, the images of the rows both draw must be
equal (a failed check is reported, not timed). Target: naive_full / cached >= 20 (``speedup_cached_vs_naive``).
"""
from __future__ import annotations

import functools
from collections import OrderedDict

import torch

from ..runner import Case
from .common import Target, current, record_targets, record_value

SUITE = "pixelcnn_sampling"
SIZE, BATCH, HIDDEN, LAYERS, NAIVE_ROWS = 32, 16, 60, 8, 1
SPEEDUP_TARGET = 20.0
CPU_TIMING_ON_REQUEST = True  # (a minute or more on the CPU: without a GPU, only with --suite pixelcnn_sampling)
SEED = 0


def _model_and_draws(device: str):
    from ...models import pixelcnn as P

    torch.manual_seed(SEED)
    model = P.PixelCNN(3, hidden=HIDDEN, layers=LAYERS, kernel=5, first_kernel=7).to(device).eval()
    u = torch.rand(BATCH, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(SEED + 1), dtype=torch.float64)
    return model, u


def _setup(device: str, with_compile: bool):
    from ...models import pixelcnn as P

    model, u = current((SUITE, device, SIZE, BATCH), lambda: _model_and_draws(device))
    return OrderedDict([("cached", lambda: P.sample_cached(model, BATCH, (SIZE, SIZE), u=u)),
                        ("naive", lambda: P.sample(model, BATCH, (SIZE, SIZE), u=u, rows=NAIVE_ROWS))])


def _check(device: str, impls) -> dict:
    cached, naive = impls["cached"](), impls["naive"]()
    equal = torch.equal(cached[:, :, :NAIVE_ROWS], naive[:, :, :NAIVE_ROWS])
    report = {"equal_images_on_the_rows_both_drew": equal}
    if not equal:
        report["failed"] = {"cached": "draws other images than the naive sampler from the same uniforms"}
        report["flag"] = report["failed"]["cached"]
    return report


def _finish(targets, rec: dict) -> None:
    cached, naive = (rec["impls"].get(k, {}).get("median_ms") for k in ("cached", "naive"))
    if cached and naive:
        rec["naive_full_ms"] = naive * SIZE / NAIVE_ROWS
        rec["naive_full_is"] = ("measured" if NAIVE_ROWS == SIZE
                                else f"{NAIVE_ROWS} of {SIZE} rows measured, x {SIZE / NAIVE_ROWS:g}")
        rec["speedup_cached_vs_naive"] = rec["naive_full_ms"] / cached
    record_targets(targets, rec)


def describe() -> dict:
    return {"image": [3, SIZE, SIZE], "batch": BATCH, "hidden": HIDDEN, "layers": LAYERS, "naive_rows": NAIVE_ROWS,
            "lines": [f"PixelCNN sampling of {BATCH} x 3x{SIZE}x{SIZE}, {LAYERS} gated layers of {HIDDEN}: cached "
                      f"(whole image) vs naive (first {NAIVE_ROWS} row(s), x {SIZE // NAIVE_ROWS} for the whole "
                      f"image); target cached >= {SPEEDUP_TARGET:g}x naive"]}


def cases(device: str = "cuda", dtypes=("float32",)) -> list[Case]:
    targets = [Target(f"cached x naive >= {SPEEDUP_TARGET:g}", record_value("speedup_cached_vs_naive"),
                      SPEEDUP_TARGET)]
    out = []
    for dev in ["cpu"] + ([device] if device != "cpu" else []):
        out.append(Case(SUITE, f"PixelCNN sampling {BATCH}x3x{SIZE}x{SIZE} ({'CPU' if dev == 'cpu' else 'GPU'})",
                        "float32", "fwd", 0, "sampling: no byte floor (latency-bound small products)", device=dev,
                        params={"naive_rows": NAIVE_ROWS, "targets": [targets[0].label]}, baselines=(),
                        primary="cached", reps={"cached": (0, 1), "naive": (0, 1)},
                        setup=functools.partial(_setup, dev), check=functools.partial(_check, dev),
                        finish=functools.partial(_finish, targets)))
    return out
