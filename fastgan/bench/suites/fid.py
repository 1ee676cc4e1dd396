"""FID suite: the Fréchet distance at d=2048 (Inception pool3 features) and the streaming feature statistics.

Cases:

* ``frechet distance d=2048 (CPU)``, always run, float64 numpy/CPU inputs: ``fastgan[exact]``
  (:func:`fastgan.metrics.frechet.frechet_distance`), ``fastgan[cached]`` (``FrechetReference.distance``, the
  reference built outside the timing), ``scipy sqrtm (pytorch-fid)`` (pytorch-fid's ``calculate_frechet_distance``:
  ``scipy.linalg.sqrtm(sigma1 @ sigma2)``, real part of the trace) and ``torch eigvals (torchmetrics)``
  (``eigvals(sigma1 @ sigma2).sqrt().real.sum()`` in float64). scipy takes seconds, so each implementation has its
  own number of repetitions (recorded in the report). Every implementation runs with torch's intra-op thread count:
  OpenBLAS (numpy's and scipy's) is set to it around the scipy route.
* ``frechet distance d=2048 (GPU)``, on CUDA float64 tensors: ``fastgan[exact]``, ``fastgan[cached]``,
  ``fastgan[newton_schulz]`` (``method="newton_schulz"``) and ``torch eigvals (torchmetrics)`` on the GPU.
* ``feature statistics update b=256/1024 d=2048``, on CUDA: ``fastgan[triton]``
  (``FeatureStatistics(precision="float32", backend="triton").update(x)``) against
  ``torch.matmul(x.T, x)`` in float32 with TF32 off; TFLOP/s count 2 b d^2 flops for the GEMM and b d (d + 1) for
  the fused kernel, which computes the upper triangle only.

Before a case is timed, every implementation is called once and the results compared: the exact routes must agree
to 1e-6 relative (a disagreement flags the case; a fastgan route that disagrees with every baseline fails);
Newton–Schulz, inexact by design, must agree to 1e-3 relative on tr sqrt(S1 S2), and the fused statistics with
float64 to 1e-4. An implementation that fails (or raises) is reported with its error and not timed. The inputs are
covariances of two sets of 10,000 features with a power-law spectrum (X = Z diag(k^-1/2), Z standard normal, plus a
positive mean), made from a fixed seed.
"""
from __future__ import annotations

import ctypes
import functools
import math
import os
import warnings
from collections import OrderedDict

import numpy as np
import torch

from ..environment import cpu_model
from ..runner import Case, Unavailable, first_line
from .common import Target, impl_ms, record_targets, record_value

SUITE = "fid"
CPU_TIMING_ON_REQUEST = True  # minutes on a small CPU: only with --suite fid
DIM = 2048  # Inception-v3 pool3 features; fastgan bench --fid-dim changes it
SAMPLES = 10_000  # per set (at least 2 * dim)
SEED = 0
EXPONENT = 0.5  # feature k has standard deviation k^-EXPONENT
BATCHES = (256, 1024)

EXACT, CACHED, NEWTON_SCHULZ = "fastgan[exact]", "fastgan[cached]", "fastgan[newton_schulz]"
TRITON = "fastgan[triton]"
SCIPY, EIGVALS = "scipy sqrtm (pytorch-fid)", "torch eigvals (torchmetrics)"
MATMUL = "torch matmul fp32 (TF32 off)"

AGREEMENT_RTOL = 1e-6  # exact routes: max relative difference of the distances
NEWTON_SCHULZ_RTOL = 1e-3  # relative difference of tr sqrt(S1 S2) from the exact routes' mean
STATS_RTOL = 1e-4  # float32 statistics and float32 GEMM against float64 (TF32 would be ~1e-3)
CPU_REPS = {EXACT: (0, 3), CACHED: (0, 3), EIGVALS: (0, 3), SCIPY: (0, 1)}  # (warm-up, timed) after the check
CPU_SPEEDUP_TARGETS = ((SCIPY, 10.0), (EIGVALS, 2.5))
GPU_DISTANCE_TARGET_MS = 25.0
STATS_TARGET_PCT = 70.0


# ---------------------------------------------------------------- options and environment


def add_arguments(parser) -> None:
    """The suite's option of ``fastgan bench``."""
    parser.add_argument("--fid-dim", type=int, default=None, metavar="D",
                        help=f"feature dimension of the fid suite (default: {DIM}, Inception pool3); a small one "
                             "makes a quick check")
    parser.add_argument("--fid-threads", type=int, default=None, metavar="N",
                        help="CPU threads of the fid suite's CPU case: torch's intra-op threads, and OpenBLAS's "
                             f"around the scipy route (default: torch's default, here {torch.get_num_threads()})")


def configure(args) -> None:
    """Apply ``--fid-dim`` and ``--fid-threads`` (the latter sets torch's thread count for the whole process)."""
    global DIM
    dim, threads = getattr(args, "fid_dim", None), getattr(args, "fid_threads", None)
    if dim is not None:
        if dim < 2:
            raise SystemExit(f"fastgan bench: --fid-dim must be at least 2, got {dim}")
        DIM = dim
    if threads is not None:
        if threads < 1:
            raise SystemExit(f"fastgan bench: --fid-threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def samples(dim: int) -> int:
    """Features per set: SAMPLES, or 2 * dim when that is more (the covariances must be non-singular)."""
    return max(SAMPLES, 2 * dim)


def _openblas_libraries() -> "OrderedDict[str, tuple]":
    """path -> (get_num_threads, set_num_threads) of every OpenBLAS loaded in this process (numpy's, scipy's)."""
    libs = OrderedDict()
    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
    except OSError:
        return libs
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                set_ = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and set_ is not None:
                    libs[path] = (get, set_)
                    break
            if path in libs:
                break
    return libs


def thread_info() -> dict:
    """Thread counts: torch's intra-op threads (its MKL/OpenMP), OpenBLAS's (numpy, scipy), CPUs, the CPU model."""
    import scipy.linalg  # noqa: F401 - loads scipy's OpenBLAS, so that its thread count can be read

    blas = {os.path.basename(p): int(get()) for p, (get, _) in _openblas_libraries().items()}
    n = torch.get_num_threads()
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "load_average_1min": load, "torch_threads": n,
            "openblas_threads": blas,
            "scipy_route_threads": n if blas else None,
            "equal_threads": bool(blas),
            "note": (f"every CPU implementation runs with {n} threads (OpenBLAS set to {n} around the scipy route)"
                     if blas else "OpenBLAS not found: the scipy route runs with its BLAS's own thread count, "
                     "which may differ from torch's")}


def _with_blas_threads(fn, n: int):
    """fn with every loaded OpenBLAS set to n threads around the call (restored after)."""
    libs = list(_openblas_libraries().values())
    if not libs:
        return fn

    def call():
        before = [int(get()) for get, _ in libs]
        for _, set_ in libs:
            set_(n)
        try:
            return fn()
        finally:
            for (_, set_), k in zip(libs, before):
                set_(k)
    return call


# ---------------------------------------------------------------- inputs and baselines


@functools.lru_cache(maxsize=1)
def inputs(dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mu1, sigma1, mu2, sigma2), float64: two sets of ``samples(dim)`` features X = Z diag(k^-1/2) + mean."""
    n = samples(dim)
    rng = np.random.default_rng(SEED)
    scale = np.arange(1, dim + 1, dtype=np.float64) ** -EXPONENT
    mean = rng.uniform(0.1, 1.0, dim)  # pooled activations are non-negative
    out = []
    for shift in (0.0, 0.05):  # the second set: other samples and a slightly shifted mean
        x = rng.standard_normal((n, dim)) * scale + (mean + shift * rng.standard_normal(dim))
        mu = x.mean(0)
        x -= mu
        sigma = x.T @ x / (n - 1)
        out += [mu, (sigma + sigma.T) * 0.5]
    return tuple(out)


def pytorch_fid_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """pytorch-fid's ``calculate_frechet_distance`` (fid_score.py), on float64 numpy arrays.

    pytorch-fid passes ``disp=False``, deprecated since scipy 1.16, which adds an error estimate (one more d x d
    product); it is left out here, so this baseline is, if anything, faster than pytorch-fid's.
    """
    from scipy import linalg

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def torchmetrics_distance(mu1, sigma1, mu2, sigma2) -> torch.Tensor:
    """torchmetrics' ``_compute_fid`` (image/fid.py), on float64 tensors."""
    a = (mu1 - mu2).square().sum(dim=-1)
    b = sigma1.trace() + sigma2.trace()
    c = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum(dim=-1)
    return a + b - 2 * c


def features(batch: int, dim: int, device, seed: int) -> torch.Tensor:
    """(batch, dim) float32 features like Inception's: positive means 0.1-1, standard deviations 0.05-0.5."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    mean = torch.rand(dim, generator=gen) * 0.9 + 0.1
    std = torch.rand(dim, generator=gen) * 0.45 + 0.05
    return (mean + std * torch.randn(batch, dim, generator=gen)).to(device)


def matmul_fp32(x: torch.Tensor) -> torch.Tensor:
    """torch.matmul(x.T, x) in float32 with TF32 off (restored after)."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return torch.matmul(x.T, x)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


# ---------------------------------------------------------------- cases


def exact_route_gflop(dim: int) -> float:
    """Approximate flops of fastgan's exact route: Cholesky d^3/3, F^T S2 F 4 d^3, eigvalsh 4 d^3/3."""
    return (1 / 3 + 4 + 4 / 3) * dim ** 3 / 1e9


def describe() -> dict:
    """The inputs, the CPU and its thread counts."""
    d, n = DIM, samples(DIM)
    t = thread_info()
    return {"dim": d, "samples": n, "seed": SEED, "exponent": EXPONENT, "threads": t,
            "lines": [f"inputs: d={d}, covariances of 2 x {n:,} features X = Z diag(k^-{EXPONENT:g}) + mean "
                      f"(seed {SEED}), float64",
                      f"CPU: {t['cpu_model']}, {t['cpus']} CPUs (load average {t['load_average_1min']} when the "
                      f"run began); torch threads {t['torch_threads']}, OpenBLAS "
                      f"threads {t['openblas_threads'] or 'not found'}; {t['note']}",
                      "CPU repetitions: each implementation is called once by the agreement check, then timed "
                      + ", ".join(f"{name} x{r[1]}" for name, r in CPU_REPS.items()) + " (median)"]}


def cases(device: str = "cuda", dtypes=("float32", "bfloat16"), dim: int | None = None) -> list[Case]:
    """The CPU distance (always), the GPU distance and the statistics updates (on ``device``; float32 only)."""
    d = dim or DIM
    n = samples(d)
    in_bytes = 2 * (d * d + d) * 8
    gflop = exact_route_gflop(d)
    dist_desc = (f"frechet distance d={d}: floor = reading mu and sigma of both sets once, 2 (d^2 + d) float64 = "
                 f"{in_bytes / 1e6:.1f} MB; compute-bound: fastgan's exact route is ~{gflop:.3g} GFLOP (Cholesky "
                 "d^3/3, F^T S2 F 4 d^3, eigvalsh 4 d^3/3)")
    base = {"op": "frechet_distance", "dim": d, "samples": n, "seed": SEED, "exponent": EXPONENT,
            "exact_route_gflop": gflop, "agreement_rtol": AGREEMENT_RTOL}
    speed_targets = [Target(f"x {b} >= {x:g}", record_value(f"speedup_vs_{b}"), x) for b, x in CPU_SPEEDUP_TARGETS]
    out = [Case(SUITE, f"frechet distance d={d} (CPU)", "float64", "fwd", in_bytes, dist_desc, device="cpu",
                params={**base, "threads": thread_info(),
                        "reps": {k: {"warmup": w, "timed": r} for k, (w, r) in CPU_REPS.items()},
                        "targets": [t.label for t in speed_targets]},
                setup=functools.partial(_setup_cpu_distance, d), baselines=(SCIPY, EIGVALS), primary=EXACT,
                reps=dict(CPU_REPS), check=functools.partial(_check_distance, d),
                finish=functools.partial(record_targets, speed_targets))]
    gpu_targets = [Target(f"{name} <= {GPU_DISTANCE_TARGET_MS:g} ms", impl_ms(name), GPU_DISTANCE_TARGET_MS,
                          at_most=True) for name in (EXACT, NEWTON_SCHULZ)]
    out.append(Case(SUITE, f"frechet distance d={d} (GPU)", "float64", "fwd", in_bytes, dist_desc, device=device,
                    params={**base, "newton_schulz_rtol": NEWTON_SCHULZ_RTOL,
                            "targets": [t.label for t in gpu_targets]},
                    setup=functools.partial(_setup_gpu_distance, d, device), baselines=(EIGVALS,), primary=EXACT,
                    check=functools.partial(_check_distance, d),
                    finish=functools.partial(record_targets, gpu_targets)))
    if "float32" in dtypes:
        for b in BATCHES:
            fused, gemm = b * d * (d + 1), 2 * b * d * d
            floor = b * d * 4 + 2 * 4 * d * (d + 1) // 2
            desc = (f"statistics update b={b}, d={d}: floor = read x once and read + write the upper triangle of "
                    f"M2, float32 = {floor / 1e6:.1f} MB; useful flops: fused kernel b d (d+1) = {fused:.4g} (upper "
                    f"triangle), torch.matmul(x.T, x) 2 b d^2 = {gemm:.4g}")
            target = Target(f"% {MATMUL} rate >= {STATS_TARGET_PCT:g}", record_value("pct_reference_rate"),
                            STATS_TARGET_PCT)
            out.append(Case(SUITE, f"feature statistics update b={b} d={d}", "float32", "fwd", floor, desc,
                            device=device,
                            params={"op": "feature_statistics_update", "batch": b, "dim": d, "fused_flops": fused,
                                    "gemm_flops": gemm, "stats_rtol": STATS_RTOL, "targets": [target.label]},
                            setup=functools.partial(_setup_stats, d, b, device), baselines=(MATMUL,),
                            primary=TRITON, flops={TRITON: fused, MATMUL: gemm}, rate_reference=MATMUL,
                            check=functools.partial(_check_stats, d, b, device),
                            finish=functools.partial(record_targets, [target])))
    return out


# ---------------------------------------------------------------- setup (not timed)


def _setup_cpu_distance(dim: int, with_compile: bool) -> OrderedDict:
    from ...metrics.frechet import FrechetReference, frechet_distance

    mu1, s1, mu2, s2 = inputs(dim)
    ref = FrechetReference(mu1, s1)
    t = [torch.from_numpy(a) for a in (mu1, s1, mu2, s2)]
    return OrderedDict([
        (EXACT, lambda: frechet_distance(mu1, s1, mu2, s2)),
        (CACHED, lambda: ref.distance(mu2, s2)),
        (SCIPY, _with_blas_threads(lambda: pytorch_fid_distance(mu1, s1, mu2, s2), torch.get_num_threads())),
        (EIGVALS, lambda: torchmetrics_distance(*t)),
    ])


def _setup_gpu_distance(dim: int, device: str, with_compile: bool) -> OrderedDict:
    from ... import _backend
    from ...metrics import newton_schulz
    from ...metrics.frechet import FrechetReference, frechet_distance

    mu1, s1, mu2, s2 = (torch.from_numpy(a).to(device) for a in inputs(dim))
    ref = FrechetReference(mu1, s1)
    impls = OrderedDict([(EXACT, lambda: frechet_distance(mu1, s1, mu2, s2)),
                         (CACHED, lambda: ref.distance(mu2, s2))])
    why = _backend.unavailable_reason("triton", torch.device(device), torch.float32, newton_schulz.OP)
    impls[NEWTON_SCHULZ] = Unavailable(why) if why else (
        lambda: frechet_distance(mu1, s1, mu2, s2, method="newton_schulz", return_info=True))
    impls[EIGVALS] = lambda: torchmetrics_distance(mu1, s1, mu2, s2)
    return impls


def _setup_stats(dim: int, batch: int, device: str, with_compile: bool) -> OrderedDict:
    from ... import _backend
    from ...metrics.statistics import FeatureStatistics
    from ...ops import feature_stats

    x = features(batch, dim, device, SEED)
    why = _backend.unavailable_reason("triton", torch.device(device), torch.float32, feature_stats.OP)
    impls = OrderedDict()
    if why:
        impls[TRITON] = Unavailable(why)
    else:
        stats = FeatureStatistics(dim, device=device, precision="float32", backend="triton")
        impls[TRITON] = functools.partial(stats.update, x)
    impls[MATMUL] = functools.partial(matmul_fp32, x)
    return impls


# ---------------------------------------------------------------- checks and targets


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _check_distance(dim: int, impls) -> dict:
    """Call every implementation once; the exact ones must agree to AGREEMENT_RTOL (else the case is flagged; a
    fastgan one that disagrees with every baseline fails), Newton–Schulz (if there) must take its own route (else
    flagged) and agree on tr sqrt(S1 S2) to NEWTON_SCHULZ_RTOL (else it fails). Failures are not timed."""
    values, errors, flags, info, failed = OrderedDict(), OrderedDict(), [], {}, OrderedDict()
    for name, fn in impls.items():
        if isinstance(fn, BaseException):
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                out = fn()
            if isinstance(out, tuple):
                out, info[name] = out[0], dict(out[1])
            values[name] = float(out)
            if caught:
                info.setdefault(name, {})["warnings"] = [str(w.message).splitlines()[0] for w in caught]
        except Exception as e:  # noqa: BLE001 - reported as this implementation's failure
            errors[name] = first_line(e)
    exact = OrderedDict((n, v) for n, v in values.items() if n != NEWTON_SCHULZ)
    pairs = [(a, b) for i, a in enumerate(exact) for b in list(exact)[i + 1:]]
    max_rel = max((_rel(exact[a], exact[b]) for a, b in pairs), default=0.0)
    out = {"values": dict(values), "max_rel_diff": max_rel, "rtol": AGREEMENT_RTOL, "compared": list(exact)}
    if errors:
        out["errors"] = dict(errors)
        failed.update(errors)
        flags.append("failed: " + ", ".join(errors))
    if not all(math.isfinite(v) for v in values.values()):
        flags.append("non-finite result")
        failed.update((n, f"non-finite result {v}") for n, v in values.items()
                      if n.startswith("fastgan") and not math.isfinite(v))
    elif max_rel > AGREEMENT_RTOL:
        worst = max(pairs, key=lambda p: _rel(exact[p[0]], exact[p[1]]))
        flags.append(f"disagree: max rel diff {max_rel:.2g} > {AGREEMENT_RTOL:g} ({worst[0]} vs {worst[1]})")
        baselines = [n for n in exact if not n.startswith("fastgan")]
        for name in exact:
            closest = min((_rel(exact[name], exact[b]) for b in baselines), default=0.0)
            if name.startswith("fastgan") and closest > AGREEMENT_RTOL:
                failed[name] = f"rel diff {closest:.2g} > {AGREEMENT_RTOL:g} from every baseline"
                flags.append(f"{name} off: {failed[name]}")
    if NEWTON_SCHULZ in values and exact:
        mu1, s1, mu2, s2 = inputs(dim)
        terms = float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2))
        ref = sum(exact.values()) / len(exact)
        tr_ns, tr_ref = (terms - values[NEWTON_SCHULZ]) / 2, (terms - ref) / 2
        ns = {"rel_diff_trace_sqrt": _rel(tr_ns, tr_ref), "rel_diff_distance": _rel(values[NEWTON_SCHULZ], ref),
              "rtol_trace_sqrt": NEWTON_SCHULZ_RTOL, **info.get(NEWTON_SCHULZ, {})}
        out["newton_schulz"] = ns
        if ns.get("route") != "newton_schulz":
            flags.append(f"{NEWTON_SCHULZ} fell back to the exact route (its time includes the failed iteration)")
        elif not ns["rel_diff_trace_sqrt"] <= NEWTON_SCHULZ_RTOL:
            failed[NEWTON_SCHULZ] = (f"off by {ns['rel_diff_trace_sqrt']:.2g} > {NEWTON_SCHULZ_RTOL:g} relative on "
                                     "tr sqrt(S1 S2)")
            flags.append(f"{NEWTON_SCHULZ} {failed[NEWTON_SCHULZ]}")
    others = {n: i for n, i in info.items() if n != NEWTON_SCHULZ}
    if others:
        out["info"] = others
    if failed:
        out["failed"] = dict(failed)
    if flags:
        out["flag"] = "; ".join(flags)
    return out


def _check_stats(dim: int, batch: int, device: str, impls) -> dict:
    """The fused statistics of two batches against float64, and the GEMM against float64 (TF32 must be off)."""
    from ...metrics.statistics import FeatureStatistics

    out, flags = {"rtol": STATS_RTOL}, []
    x1, x2 = features(batch, dim, device, SEED), features(batch, dim, device, SEED + 1)
    if not isinstance(impls.get(TRITON), BaseException):
        stats = FeatureStatistics(dim, device=device, precision="float32", backend="triton")
        stats.update(x1)
        stats.update(x2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fewer samples than dimensions: singular, but exact for the check
            cov = stats.covariance
        x64 = torch.cat([x1, x2]).double()
        ref_cov = torch.cov(x64.T)
        out["covariance_rel_err"] = float((cov - ref_cov).norm() / ref_cov.norm())
        out["mean_rel_err"] = float((stats.mean - x64.mean(0)).norm() / x64.mean(0).norm())
        if not out["covariance_rel_err"] <= STATS_RTOL or not out["mean_rel_err"] <= STATS_RTOL:
            out["failed"] = {TRITON: f"statistics off by {out['covariance_rel_err']:.2g} (covariance), "
                                     f"{out['mean_rel_err']:.2g} (mean) relative > {STATS_RTOL:g}"}
            flags.append(f"{TRITON} {out['failed'][TRITON]}")
    gram = matmul_fp32(x1).double()
    ref_gram = x1.double().T @ x1.double()
    out["matmul_rel_err"] = float((gram - ref_gram).norm() / ref_gram.norm())
    if not out["matmul_rel_err"] <= STATS_RTOL:
        flags.append(f"{MATMUL} off by {out['matmul_rel_err']:.2g} relative (TF32 on?)")
    if flags:
        out["flag"] = "; ".join(flags)
    return out
