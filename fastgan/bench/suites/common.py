"""What the benchmark suites share: which fastgan backends can run a case, the one set of tensors kept at a time, the
correctness check against a reference that runs before a case is timed, and the targets a case records.

The check (:func:`compare_with_reference`) calls the reference implementation (eager PyTorch) and then every other
implementation once, each from the same state, on the case's own inputs, and compares what each returns (and,
optionally, the state it leaves, e.g. running statistics or u and v) with the reference's: norm-relative error,
against a tolerance by kind of output (set by each suite by dtype). What is off, returns another dtype or shape, or
raises is named in ``"failed"`` with the reason, which the runner records instead of a time, and in ``"flag"``, the
case's note.
"""
from __future__ import annotations

import functools
import gc
from collections import OrderedDict
from typing import Callable, NamedTuple

import torch

from ..runner import first_line


def fastgan_backends(op: str, device: str, dtype: str, backends) -> list[tuple[str, str | None]]:
    """(backend, why it cannot run ``op`` on ``device`` in ``dtype``, or None) for each of ``backends``."""
    from ... import _backend

    dev, dt = torch.device(device), getattr(torch, dtype)
    return [(name, _backend.unavailable_reason(name, dev, dt, op)) for name in backends]


# One set of tensors at a time, of whichever suite: the cases that share one (a shape and dtype) are consecutive.
_current: dict = {}


def current(key, make: Callable):
    """The object kept for ``key``; for a new key, the one kept before is dropped (its memory freed, and
    torch.compile's caches reset: the guards of stale entries would be checked on every call), then ``make()``."""
    if key not in _current:
        _current.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        torch._dynamo.reset()
        _current[key] = make()
    return _current[key]


# ---------------------------------------------------------------- the check


def rel_err(a, ref) -> float:
    """||a - ref|| / ||ref||, computed in float32 (float64 for float64 tensors); for lists of tensors, the largest."""
    if isinstance(ref, (list, tuple)):
        return max((rel_err(x, r) for x, r in zip(a, ref, strict=True)), default=0.0)
    dt = torch.float64 if ref.dtype == torch.float64 else torch.float32
    a, ref = a.detach().to(dt), ref.detach().to(dt)
    return float((a - ref).norm() / ref.norm().clamp_min(1e-30))


def _first_tensor(out):
    return _first_tensor(out[0]) if isinstance(out, (list, tuple)) else out


def _snapshot(state: Callable | None, name: str) -> "OrderedDict":
    if state is None:
        return OrderedDict()
    return OrderedDict((k, [t.detach().clone() for t in v] if isinstance(v, (list, tuple)) else v.detach().clone())
                       for k, v in state(name).items())


def compare_with_reference(impls, outputs, tolerance: dict, kinds: dict, *, reference: str = "eager",
                           reset: Callable | None = None, state: Callable | None = None,
                           same_dtype: bool = True) -> dict:
    """Call ``impls[reference]``, then every other implementation, once each, and compare their results.

    ``outputs``: the names of what a call returns: one name, the call returns one result; several, a tuple of as
    many; a result is a tensor or a list of tensors (its error is the largest of theirs). ``reset()``, when given,
    runs before each call (every implementation starts from the same state); ``state(name)``, an ordered mapping of
    further results to compare, read after that implementation's call (an implementation without an entry, e.g.
    one that keeps no running statistics of its own, is not compared on it). ``kinds`` maps every result name to a key
    of ``tolerance`` (the largest norm-relative error allowed). ``same_dtype``: the first tensor returned must have
    the reference's dtype (and always its shape). Implementations that are exceptions are left out.

    Returns ``{"tolerance", "reference", "errors": {impl: {result: error}}, "dtypes": {impl: dtype}}``, plus
    ``"failed"`` (impl -> why) and ``"flag"`` (every failure, one line) when an implementation fails.
    """
    outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)

    def call(fn, name):
        if reset is not None:
            reset()
        got = fn()
        got = (got,) if len(outputs) == 1 else tuple(got)
        return got, _snapshot(state, name)

    ref, ref_state = call(impls[reference], reference)
    report = {"tolerance": dict(tolerance), "reference": reference, "errors": OrderedDict(), "dtypes": OrderedDict()}
    flags, failed, raised = [], OrderedDict(), OrderedDict()
    for name, fn in impls.items():
        if name == reference or isinstance(fn, BaseException):
            continue
        try:
            got, got_state = call(fn, name)
        except Exception as e:  # noqa: BLE001 - reported as this implementation's failure
            raised[name] = first_line(e)
            continue
        errs = OrderedDict((k, rel_err(g, r)) for k, g, r in zip(outputs, got, ref))
        errs.update((k, rel_err(got_state[k], r)) for k, r in ref_state.items() if k in got_state)
        first, ref_first = _first_tensor(got), _first_tensor(ref)
        report["errors"][name] = errs
        report["dtypes"][name] = str(first.dtype).replace("torch.", "")
        why = []
        bad = [f"{k} error {v:.2g} > {tolerance[kinds[k]]:g}" for k, v in errs.items()
               if not v <= tolerance[kinds[k]]]
        if bad:
            why.append(f"{name} off: " + ", ".join(bad))
        if first.shape != ref_first.shape or (same_dtype and first.dtype != ref_first.dtype):
            why.append(f"{name} returned {tuple(first.shape)} {first.dtype}, {reference} {tuple(ref_first.shape)} "
                       f"{ref_first.dtype}")
        if why:
            failed[name] = "; ".join(why)
            flags += why
        del got, got_state
    if raised:
        failed.update(raised)
        flags.append("failed: " + ", ".join(f"{n} ({why})" for n, why in raised.items()))
    if failed:
        report["failed"] = dict(failed)
        report["flag"] = "; ".join(flags)
    return report


# ---------------------------------------------------------------- targets


class Target(NamedTuple):
    """A goal a case's numbers are held to: ``value(rec) >= threshold`` (or ``<=``, with ``at_most``)."""

    label: str
    value: Callable[[dict], float | None]
    threshold: float
    at_most: bool = False


def _rec_get(key: str, rec: dict):
    return rec.get(key)


def _impl_ms(name: str, rec: dict):
    return rec["impls"].get(name, {}).get("median_ms")


def record_value(key: str) -> Callable[[dict], float | None]:
    """The getter of ``rec[key]`` (a derived number: ``speedup_vs_eager``, ``pct_copy_bw``, ...)."""
    return functools.partial(_rec_get, key)


def impl_ms(name: str) -> Callable[[dict], float | None]:
    """The getter of the median milliseconds of implementation ``name``."""
    return functools.partial(_impl_ms, name)


def record_targets(targets, rec: dict) -> None:
    """The case's ``finish``: record which ``targets`` the measured numbers meet (those with a value)."""
    rec["targets"] = []
    for t in targets:
        value = t.value(rec)
        if value is not None:
            met = value <= t.threshold if t.at_most else value >= t.threshold
            rec["targets"].append({"target": t.label, "value": value, "threshold": t.threshold, "met": bool(met)})
