"""Codebook search suite: VQ-VAE's nearest-code search at its real sizes (a 32x32 latent grid of batch 16 = 16,384
vectors; K = 1024 and 8192 codes of D = 64 and 256), fastgan's fused kernel (no N x K distance matrix) against the
eager ``torch.cdist(z, e).argmin(1)`` and ``torch.compile`` of it.

Before timing, each implementation's indices are checked: the chosen codes' float64 distances must equal the
float64 minimum within float32 round-off (near-ties may pick either code). The case is compute-bound: 2 N K D
flops of products (the floor_flops); the byte floor reads z and the codebook once and writes the indices.
Target: fastgan >= 3x eager at K = 1024 - 8192.

EMA statistics cases (the VQ-VAE's codebook update of one batch, at the same sizes): ``fastgan.codebook_ema_update_``
(a stable sort by code, then one kernel summing each code's rows and updating both moving averages in place)
against the usual eager update (Sonnet's VectorQuantizerEMA, most VQ-VAE code): one-hot encodings (N, K), counts
``onehot.sum(0)``, sums ``onehot.T @ z``, two lerps; and ``torch.compile`` of it. Checked against float64 sums
by index_add (norm-relative error <= 1e-5). No target is set by the issue beyond the search's.
"""
from __future__ import annotations

import functools
from collections import OrderedDict

import torch

from ..runner import Case, Unavailable
from .common import Target, current, fastgan_backends, record_targets, record_value

SUITE = "codebook_search"
DTYPES = ("float32",)
N = 16 * 32 * 32
SHAPES = ((1024, 64), (8192, 64), (1024, 256), (8192, 256))  # (K, D)
SPEEDUP_TARGET = 3.0
SEED = 0


def _tensors(k, d, device):
    g = torch.Generator(device=device).manual_seed(SEED)
    return torch.randn(N, d, device=device, generator=g), torch.randn(k, d, device=device, generator=g)


def _setup(k, d, device, backends, with_compile):
    import fastgan

    z, e = current((SUITE, k, d, device), lambda: _tensors(k, d, device))

    def eager():
        return torch.cdist(z, e).argmin(1)

    impls = OrderedDict()
    for name, why in fastgan_backends("codebook_search", device, "float32", backends):
        impls[f"fastgan[{name}]"] = (Unavailable(why) if why else
                                     functools.partial(lambda b: fastgan.codebook_search(z, e, backend=b)[0], name))
    impls["eager"] = eager
    if with_compile:
        impls["compile"] = torch.compile(eager)
    return impls


def _check(k, d, device, impls):
    z, e = current((SUITE, k, d, device), lambda: _tensors(k, d, device))
    full = None
    failed, errors = OrderedDict(), OrderedDict()
    for name, fn in impls.items():
        if isinstance(fn, BaseException):
            continue
        try:
            index = fn()
        except Exception as ex:  # noqa: BLE001 - reported as this implementation's failure
            failed[name] = f"{type(ex).__name__}: {str(ex).splitlines()[0] if str(ex) else ''}"
            continue
        if full is None:  # float64 distances, in chunks (N x K float64 would be 1 GB at K = 8192)
            full = [torch.cdist(zc.double(), e.double()).square() for zc in z.split(2048)]
            best = torch.cat([f.min(1).values for f in full])
        chosen = torch.cat([f.gather(1, i[:, None])[:, 0] for f, i in zip(full, index.split(2048))])
        err = float(((chosen - best).abs() / best.abs().clamp_min(1.0)).max())
        errors[name] = {"chosen_minus_min": err}
        if not err <= 1e-4:
            failed[name] = f"{name} picks codes farther than the nearest by {err:.2g} (relative)"
    return _report("float64 cdist", errors, failed)


def _report(reference: str, errors, failed) -> dict:
    """A check's report: the errors, and the failed implementations with why (the runner does not time them)."""
    report = {"reference": reference, "errors": errors}
    if failed:
        report["failed"] = dict(failed)
        report["flag"] = "; ".join(failed.values())
    return report


def _ema_tensors(k, d, device):
    z, _ = _tensors(k, d, device)
    g = torch.Generator(device=device).manual_seed(SEED + 1)
    index = torch.randint(0, k, (N,), device=device, generator=g)
    return z, index, torch.bincount(index, minlength=k), torch.ones(k, device=device), torch.zeros(k, d,
                                                                                                  device=device)


def _eager_ema(z, index, count, total, decay=0.99):
    onehot = torch.nn.functional.one_hot(index, count.shape[0]).to(z.dtype)
    count.mul_(decay).add_(onehot.sum(0), alpha=1 - decay)
    total.mul_(decay).add_(onehot.T @ z, alpha=1 - decay)
    return count, total


def _ema_setup(k, d, device, backends, with_compile):
    import fastgan

    z, index, counts, c0, s0 = current((SUITE, "ema", k, d, device), lambda: _ema_tensors(k, d, device))
    state = {}

    def fresh(name):
        state[name] = (c0.clone(), s0.clone())
        return state[name]

    impls = OrderedDict()
    for name, why in fastgan_backends("codebook_search", device, "float32", backends):
        if why:
            impls[f"fastgan[{name}]"] = Unavailable(why)
            continue
        c, s = fresh(f"fastgan[{name}]")
        impls[f"fastgan[{name}]"] = functools.partial(
            lambda c, s, b: (fastgan.codebook_ema_update_(c, s, z, index, counts, 0.99, backend=b), (c, s))[1],
            c, s, name)
    c, s = fresh("eager")
    impls["eager"] = functools.partial(_eager_ema, z, index, c, s)
    if with_compile:
        c, s = fresh("compile")
        impls["compile"] = functools.partial(torch.compile(_eager_ema), z, index, c, s)
    return impls


def _ema_check(k, d, device, impls):
    z, index, counts, c0, s0 = current((SUITE, "ema", k, d, device), lambda: _ema_tensors(k, d, device))
    want = (0.99 * c0.double() + 0.01 * counts.double(),
            0.99 * s0.double() + 0.01 * torch.zeros(k, d, dtype=torch.float64, device=device).index_add_(
                0, index, z.double()))
    failed, errors = OrderedDict(), OrderedDict()
    for name, fn in impls.items():
        if isinstance(fn, BaseException):
            continue
        c, s = fn()  # (one update from the initial statistics: each implementation has its own copy)
        err = max(float((c.double() - want[0]).norm() / want[0].norm()),
                  float((s.double() - want[1]).norm() / want[1].norm()))
        errors[name] = {"statistics": err}
        if not err <= 1e-5:
            failed[name] = f"{name} statistics off by {err:.2g} (norm-relative)"
    return _report("float64 index_add", errors, failed)


def describe() -> dict:
    return {"vectors": N, "shapes": [list(s) for s in SHAPES], "lines": [
        "eager = torch.cdist(z, e).argmin(1); fastgan = fastgan.codebook_search (index only timed with it)",
        "the FLOP floor is at the TF32 tensor-core peak; the kernel multiplies in full float32 (an H100's FMA "
        "rate is ~7x lower), as cdist does without TF32",
        f"target: fastgan x eager >= {SPEEDUP_TARGET:g}"]}


def cases(device: str = "cuda", dtypes=DTYPES, backends=("triton",)) -> list[Case]:
    targets = [Target(f"x eager >= {SPEEDUP_TARGET:g}", record_value("speedup_vs_eager"), SPEEDUP_TARGET)]
    out = []
    for k, d in SHAPES:
        floor = (N * d + k * d) * 4 + N * 8
        out.append(Case(SUITE, f"codebook search N={N} K={k} D={d}", "float32", "fwd", floor,
                        "read z and the codebook once, write int64 indices", device=device,
                        params={"vectors": N, "codes": k, "dim": d, "targets": [targets[0].label]},
                        floor_flops=2 * N * k * d,
                        setup=functools.partial(_setup, k, d, device, tuple(backends)),
                        check=functools.partial(_check, k, d, device),
                        finish=functools.partial(record_targets, targets)))
    for k, d in SHAPES:
        floor = N * d * 4 + N * 8 + 2 * (k * d + k) * 4 * 2
        out.append(Case(SUITE, f"codebook EMA statistics N={N} K={k} D={d}", "float32", "fwd", floor,
                        "read z and the indices once, read and write the statistics once", device=device,
                        params={"vectors": N, "codes": k, "dim": d, "targets": []},
                        setup=functools.partial(_ema_setup, k, d, device, tuple(backends)),
                        check=functools.partial(_ema_check, k, d, device)))
    return out
