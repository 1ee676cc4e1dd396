"""Bring live models from other codebases to fastgan's fused layers, and back.

:func:`convert` finds, by structure and by a check of its output, the layers it can compute with fastgan's
kernels, and changes each in place without changing its state: the same module object, parameters, buffers and
state-dict keys (so checkpoints load both ways, strictly, and optimizers built before keep working), the same
function in training and eval (iteration order and mode of each source's spectral norm, momentum and statistics of
each source's batch norm). :func:`revert` gives the plain modules back. Checkpoints of fastgan's own layers in
other layouts are rewritten by :mod:`fastgan.checkpoints`.

Recognised:

  =====================================================  ====================================================
  layer                                                  becomes
  =====================================================  ====================================================
  ``parametrizations.spectral_norm``                     :class:`fastgan.nn.SpectralNorm` (u first)
  legacy ``torch.nn.utils.spectral_norm`` hook           :class:`fastgan.nn.spectral_norm.LegacySpectralNorm`
  BigGAN-PyTorch ``SN*`` layers (``u0``, ``sv0``)        ``W_()`` from the fused op (BigGAN's order and eval)
  ``nn.BatchNorm2d``, ``nn.SyncBatchNorm``               :class:`fastgan.nn.BatchNorm2d`
  BigGAN-PyTorch ``ccbn`` (linear or embedding), ``bn``  forward on the fused conditional batch norm
  StudioGAN ``ConditionalBatchNorm2d``                   forward on the fused conditional batch norm
  ``nn.ConvTranspose2d``                                 :class:`fastgan.nn.ConvTranspose2d`
  =====================================================  ====================================================

A ReLU / LeakyReLU that is the only use of a batch norm's output is computed with it in one call, and so is a
ConvTranspose2d -> BatchNorm2d (-> ReLU) run: inside an ``nn.Sequential`` while its slots hold the run in a row,
and in a module whose forward torch.fx can trace and which has no control flow that depends on its inputs (its
forward is then the trace, with the two calls made one). Each layer called on its own computes as its source did;
a run whose layers have hooks is computed layer by layer.
"""
from __future__ import annotations

import ast
import copy
import functools
import inspect
import textwrap
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _SpectralNorm as TorchSN
from torch.nn.utils.spectral_norm import SpectralNorm as TorchLegacySN

from .nn import converted as conv_fwd
from .nn.cond_batch_norm import BatchNorm2d
from .nn.conv_transpose2d import ConvTranspose2d, ConvTransposeBNAct
from .nn.spectral_norm import (
    BigGANSpectralNorm,
    LegacySpectralNorm,
    SpectralNorm,
    SpectralNormGroup,
    spectral_norm_layers,
)

_VECTOR_DTYPES = (torch.float32, torch.float64)


@dataclass
class ConversionReport:
    """What :func:`convert` did: ``replaced`` (path, from, to) for every layer changed, ``fused`` (where, layers,
    how) for every run of layers computed in one call, ``skipped`` (path, what, why) for every candidate left as
    it was. ``print(report)`` shows them as tables."""

    replaced: list = field(default_factory=list)
    fused: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def __str__(self) -> str:
        def table(rows, head):
            rows = [head] + [tuple(str(c) for c in r) for r in rows]
            widths = [max(len(r[i]) for r in rows) for i in range(3)]
            lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
            lines.insert(1, "  ".join("-" * w for w in widths))
            return "\n".join(lines)

        out = [f"replaced {len(self.replaced)}:", table(self.replaced, ("module", "from", "to"))]
        if self.fused:
            out += ["", f"fused {len(self.fused)}:", table(self.fused, ("in", "layers", "as"))]
        if self.skipped:
            out += ["", f"skipped {len(self.skipped)}:", table(self.skipped, ("module", "what", "why"))]
        return "\n".join(out)


# ---------------------------------------------------------------- changing a class in place, and back


_SUBCLASSES: dict = {}


def _kind_attrs(source: type, kind: str) -> dict:
    """What the subclass of each kind overrides (looked up by name, so that a pickled converted layer rebuilds)."""
    if kind == "biggan_sn":
        return {"W_": _biggan_W_}
    if kind == "traced":
        @functools.wraps(source.forward)  # (its signature, for introspection)
        def forward(self, *args, **kwargs):
            return _run_trace(self, *args, **kwargs)

        return {"forward": forward}
    if kind == "sequential":
        return {"forward": conv_fwd.sequential_forward}
    return {"forward": conv_fwd.CBN_FORWARD[kind]}


def _subclass(source: type, kind: str) -> type:
    """``source`` with the fused forward / W_ of ``kind``, made once per (source, kind). Its instances pickle and
    deep-copy as themselves (rebuilt through :func:`_converted_instance`)."""
    key = (source, kind)
    if key not in _SUBCLASSES:
        attrs = {**_kind_attrs(source, kind), "_fastgan_kind": kind, "__reduce_ex__": _reduce_converted,
                 "__module__": source.__module__, "__qualname__": source.__qualname__}
        _SUBCLASSES[key] = type(source.__name__, (source,), attrs)
    return _SUBCLASSES[key]


def _converted_instance(source: type, kind: str):
    cls = _subclass(source, kind)
    return cls.__new__(cls)


def _reduce_converted(self, protocol):
    return _converted_instance, (type(self).__bases__[0], type(self)._fastgan_kind), self.__dict__.copy()


def _swap_class(obj, new_cls: type, **attrs) -> None:
    """Make ``obj`` a ``new_cls`` with the extra attributes ``attrs``, remembering how to undo it."""
    state = obj.__dict__
    saved = {k: state[k] for k in attrs if k in state}
    added = [k for k in attrs if k not in state]
    state.update(attrs)
    state["_fastgan_source"] = (type(obj), added, saved)
    obj.__class__ = new_cls


def _swap_again(obj, new_cls: type, **attrs) -> None:
    """A further class change of an object :func:`_swap_class` changed (undone with it)."""
    _, added, _ = obj.__dict__["_fastgan_source"]
    added += [k for k in attrs if k not in added]
    obj.__dict__.update(attrs)
    obj.__class__ = new_cls


def _restore_class(obj) -> bool:
    source = obj.__dict__.pop("_fastgan_source", None)
    if source is None:
        return False
    cls, added, saved = source
    for k in added:
        obj.__dict__.pop(k, None)
    obj.__dict__.update(saved)
    obj.__class__ = cls
    return True


def _biggan_W_(self):
    sn = self.__dict__.get("_fastgan_sn")
    if sn is None or not sn.fusable(self):
        return self.__dict__["_fastgan_source"][0].W_(self)
    return sn.weight(self)


# ---------------------------------------------------------------- recognising layers


def _finite(t: torch.Tensor) -> bool:
    return not t.numel() or bool(torch.isfinite(t).all())


def _is_biggan_sn(mod) -> bool:
    return ("u0" in mod._buffers and "sv0" in mod._buffers and isinstance(mod._parameters.get("weight"), nn.Parameter)
            and callable(getattr(type(mod), "W_", None)) and hasattr(mod, "num_itrs") and hasattr(mod, "num_svs"))


def _biggan_sn_problem(mod) -> str | None:
    if getattr(mod, "num_svs", 1) != 1:
        return (f"num_svs={mod.num_svs}: more than one singular value (Gram-Schmidt between them) is not fused; "
                "BigGAN's own W_() is kept")
    if getattr(mod, "transpose", False):
        return "transpose=True (W^T normalised) is not fused"
    if mod.weight.dim() < 2 or tuple(mod.u0.shape) != (1, mod.weight.shape[0]):
        return f"u0 of shape {tuple(mod.u0.shape)} does not fit a weight of shape {tuple(mod.weight.shape)}"
    if mod.u0.dtype not in _VECTOR_DTYPES:
        return f"u0 is {mod.u0.dtype}; the fused op keeps u in float32 (convert before .half())"
    return None


def _cbn_kind(mod) -> str | None:
    """'ccbn', 'bn' (BigGAN-PyTorch), 'studiogan', or None, by structure."""
    children, buffers, params = set(mod._modules), set(mod._buffers), set(mod._parameters)
    stored = {"stored_mean", "stored_var"} <= buffers
    if {"gain", "bias"} <= children and not params:
        if stored and "bn" not in children:
            return "ccbn"
        if children == {"bn", "gain", "bias"} and not buffers:
            return "studiogan"
    if {"gain", "bias"} <= params and (stored or "bn" in children):
        return "bn"
    return None


def _cbn_problem(mod, kind) -> str | None:
    if getattr(mod, "cross_replica", False) or (kind == "studiogan" and type(mod.bn).__name__ ==
                                                 "SynchronizedBatchNorm2d"):
        return ("cross_replica=True: BigGAN's SynchronizedBatchNorm2d syncs DataParallel replicas, fastgan's synced "
                "batch norm syncs torch.distributed processes; left as it is")
    if getattr(mod, "mybn", False):
        return "mybn=True (BigGAN's myBN: E[x^2]-E[x]^2 statistics, standing statistics) is left as it is"
    if kind == "ccbn" and getattr(mod, "norm_style", "bn") != "bn":
        return f"norm_style={mod.norm_style!r}: only batch norm is fused"
    if kind == "bn" and "bn" in mod._modules:
        return "a batch norm module inside (cross_replica / mybn) is left as it is"
    if kind == "studiogan":
        bn = mod.bn
        if type(bn) not in (nn.BatchNorm2d, nn.SyncBatchNorm) or bn.affine:
            return f"its bn is a {type(bn).__name__}{' with affine' if getattr(bn, 'affine', False) else ''}"
    try:
        params = list(inspect.signature(type(mod).forward).parameters)
    except (TypeError, ValueError):
        return "its forward has no signature"
    if len(params) < 2 or (kind != "bn" and len(params) != 3):
        return f"its forward takes ({', '.join(params)}), not (self, x, y)"
    return None


def _num_features(mod, kind) -> int:
    return mod.bn.num_features if kind == "studiogan" else mod.stored_mean.numel()


def _condition(layer: nn.Module, n: int, gen: torch.Generator, device):
    """A probe input for a gain/bias layer: class labels for an embedding, a vector for a linear."""
    if isinstance(getattr(layer, "num_embeddings", None), int) and not hasattr(layer, "in_features"):
        return torch.randint(layer.num_embeddings, (n,), generator=gen, device=device)
    if isinstance(getattr(layer, "in_features", None), int):
        dtype = next((p.dtype for p in layer.parameters()), torch.float32)
        return torch.randn(n, layer.in_features, generator=gen, device=device, dtype=dtype)
    return None


def _eval_probe(mod, run_source, run_fused) -> str | None:
    """Run both in eval (no state changes) under no_grad and compare; the reason if they differ."""
    modes = [(m, m.training) for m in mod.modules()]
    mod.eval()
    try:
        with torch.no_grad():
            a, b = run_source(), run_fused()
    except Exception as e:  # noqa: BLE001 - any failure means: not this layer
        return f"its output could not be checked ({type(e).__name__}: {e})"
    finally:
        for m, t in modes:
            m.training = t
    a, b = a.double(), b.double()
    tol = 1e-4 if a.dtype == torch.float64 and b.dtype == torch.float64 else 1e-2
    if a.shape != b.shape or not torch.allclose(a, b, rtol=tol, atol=tol * float(a.abs().max().clamp_min(1))):
        return "its output differs from the fused computation (another formula than its source codebase's)"
    return None


def _probe_cbn(mod, kind) -> str | None:
    device = mod.stored_mean.device if kind != "studiogan" else mod.bn.weight.device if mod.bn.weight is not None \
        else next((b.device for b in mod.bn.buffers()), torch.device("cpu"))
    gen = torch.Generator(device=device).manual_seed(0)
    c = _num_features(mod, kind)
    dtype = next((p.dtype for p in mod.parameters()), torch.float32)
    x = torch.randn(2, c, 3, 3, generator=gen, device=device, dtype=dtype)
    if kind == "bn":
        args = (x,)
    else:
        y = _condition(mod.gain, 2, gen, device)
        if y is None:
            return f"its gain layer ({type(mod.gain).__name__}) takes an input fastgan cannot build to check it"
        args = (x, y)
    return _eval_probe(mod, lambda: type(mod).forward(mod, *args), lambda: conv_fwd.CBN_FORWARD[kind](mod, *args))


def _probe_biggan_sn(mod) -> str | None:
    sn = BigGANSpectralNorm()
    return _eval_probe(mod, lambda: type(mod).W_(mod), lambda: sn.weight(mod))


# ---------------------------------------------------------------- activation fusion in traced forwards


_CONSTANT_TYPES = (str, int, float, bool, type(None))


def _constant(value) -> bool:
    return isinstance(value, _CONSTANT_TYPES) or (isinstance(value, tuple) and all(map(_constant, value)))


def _forward_problem(parent: nn.Module) -> tuple[str | None, dict]:
    """Why ``parent``'s forward cannot be replaced by its torch.fx trace (or None), and the attributes of ``parent``
    the trace would fix, with their values now (the trace checks that they still hold them). The trace equals the
    forward when nothing in it depends on Python state the trace would fix: ``self`` attributes read are submodules,
    parameters, buffers, constants (str, number, bool, None, tuples of them) or functions, never ``training`` (eval
    would run the training path); no branch whose test reads anything but those and literals; no loop, try or
    with, no starred arguments, no writes to attributes or globals (dropped by the trace), no calls of methods of
    ``self`` (traced inline, unchecked) or of print."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(type(parent).forward)))
    except (OSError, TypeError, SyntaxError):
        return "its forward's source is not available", {}
    func = tree.body[0]
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) or func.args.vararg or func.args.kwarg or \
            not func.args.args:
        return "its forward takes *args or **kwargs", {}
    me = func.args.args[0].arg  # (self, by convention)
    state = {**parent._modules, **parent._parameters, **parent._buffers}
    fixed: dict = {}
    for node in ast.walk(func):
        if isinstance(node, (ast.For, ast.While, ast.Try, ast.With, ast.ListComp, ast.GeneratorExp, ast.Lambda,
                             ast.AugAssign, ast.Global, ast.Nonlocal, ast.Yield, ast.Await)):
            return f"its forward has a {type(node).__name__} statement", {}
        if isinstance(node, ast.Assign) and any(not isinstance(t, (ast.Name, ast.Tuple)) for t in node.targets):
            return "its forward writes an attribute or an item", {}
        if isinstance(node, ast.Attribute) and node.attr == "training":
            return "its forward reads the training flag (torch.fx would keep one mode's path)", {}
        if isinstance(node, (ast.If, ast.IfExp, ast.Assert)):
            for name in ast.walk(node.test):
                if isinstance(name, ast.Name) and name.id != me:
                    return f"its forward branches on {name.id!r} (torch.fx would keep one branch)", {}
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == me and \
                node.attr not in state:
            static = inspect.getattr_static(parent, node.attr, None)
            if isinstance(static, property):
                return f"its forward reads the property self.{node.attr}", {}
            value = getattr(parent, node.attr, None)
            if inspect.ismethod(value) and value.__self__ is parent:
                return f"its forward calls the method self.{node.attr}", {}
            if not (_constant(value) or inspect.isfunction(value) or inspect.isbuiltin(value) or
                    isinstance(value, functools.partial)):
                return (f"its forward reads self.{node.attr}, a {type(value).__name__}, whose contents the trace "
                        "would fix"), {}
            fixed[node.attr] = value
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id in ("print", "setattr", "exec", "eval"):
            return f"its forward calls {node.func.id}", {}
    return None, fixed


def _run_trace(self, *args, **kwargs):
    """The forward of a module whose forward :func:`convert` replaced by its torch.fx trace with fused calls: the
    trace's code run on the module itself (so DataParallel replicas run on theirs), refusing to run once an
    attribute the trace fixed has changed (constants are checked under torch.compile too, which then guards on
    them; functions only eagerly: dynamo has no identity of a partial)."""
    trace, fixed = self.__dict__["_fastgan_trace"]
    compiling = torch.compiler.is_compiling()
    for name, value in fixed.items():
        now = getattr(self, name, None)
        if _constant(value):
            same = type(now) is type(value) and now == value
        else:
            same = compiling or now is value
        if not same:
            raise RuntimeError(
                f"fastgan.convert replaced {type(self).__name__}.forward by its torch.fx trace, taken with "
                f"self.{name} = {value!r}; it is now {now!r}, and the trace would still compute with the old one. "
                f"Set it back, or fastgan.revert(model) and convert again")
    return type(trace).forward(self, *args, **kwargs)


def _has_attr(module: nn.Module, target: str) -> bool:
    obj = module
    for part in target.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


class _LeafTracer(torch.fx.Tracer):
    """Modules are leaves; the fused call stays one node (also when torch.load re-traces the saved trace)."""

    def __init__(self):
        super().__init__(autowrap_functions=(conv_fwd.norm_then_act,))

    def is_leaf_module(self, m, qualname) -> bool:
        return True


def _fuse_in_traced_forward(parent: nn.Module, fusable: dict, path: str, report: ConversionReport,
                            plan: list) -> None:
    """If ``parent``'s forward calls a batch norm in ``fusable`` (id -> module) whose output only feeds a
    ReLU/LeakyReLU, plan the swap of its forward for its trace with the two calls made one."""
    why, fixed = _forward_problem(parent)
    if why is None and "_fastgan_source" in parent.__dict__:
        why = "it is itself a converted layer"
    if why is None:
        try:
            graph = _LeafTracer().trace(copy.copy(parent))  # (the tracer sets the constants it makes on its root)
        except Exception as e:  # noqa: BLE001 - not traceable: nothing fused here
            why = f"torch.fx cannot trace its forward ({type(e).__name__})"
    if why is not None:
        names = [n for n, c in parent._modules.items() if id(c) in fusable]
        report.skipped.append((path or "(model)", f"activation after {', '.join(names)}",
                               f"not fused: {why}"))
        return
    unresolved = [n.target for n in graph.nodes if n.op == "get_attr" and not _has_attr(parent, n.target)]
    if unresolved:  # (a tensor constant the trace made: the forward, bound to the parent, could not find it)
        report.skipped.append((path or "(model)", "activation after a batch norm",
                               f"not fused: its trace holds constants ({', '.join(unresolved)})"))
        return
    targets = {name: parent.get_submodule(name) for name in
               {n.target for n in graph.nodes if n.op == "call_module"}}
    bn_calls: dict = {}
    for node in graph.nodes:
        if node.op == "call_module" and id(targets[node.target]) in fusable:
            bn_calls.setdefault(node.target, []).append(node)
    at = (lambda name: f"{path}.{name}") if path else (lambda name: name)
    edits = []
    for target, nodes in bn_calls.items():
        if len(nodes) != 1:
            report.skipped.append((at(target), "activation after it", "not fused: the forward calls it twice"))
            continue
        users = list(nodes[0].users)
        act = None
        if len(users) == 1 and users[0].op == "call_module" and users[0].args == (nodes[0],) and not users[0].kwargs:
            act = conv_fwd._act_spec(targets[users[0].target])
        if act is None:
            if any(u.op == "call_module" and conv_fwd._act_spec(targets[u.target]) for u in users):
                report.skipped.append((at(target), "activation after it",
                                       "not fused: its output has another use (a residual)"))
            continue
        if conv_fwd._hooked(targets[target], targets[users[0].target]):
            report.skipped.append((at(users[0].target), f"activation after {at(target)}",
                                   "not fused: hooks are registered on them"))
            continue
        edits.append((nodes[0], users[0], act))
    if not edits:
        return
    for bn_node, act_node, _ in edits:  # bn(*args) -> act(...) becomes norm_then_act(bn, act, *args)
        with graph.inserting_before(bn_node):
            fused = graph.call_function(conv_fwd.norm_then_act, (graph.get_attr(bn_node.target),
                                                                 graph.get_attr(act_node.target), *bn_node.args),
                                        dict(bn_node.kwargs))
        act_node.replace_all_uses_with(fused)
        graph.erase_node(act_node)
        graph.erase_node(bn_node)
    # The GraphModule is kept for its generated forward (and pickles with the model); it runs on ``parent``.
    trace = torch.fx.GraphModule(parent, graph, class_name=type(parent).__name__)
    plan.append(lambda parent=parent, trace=trace: _swap_class(parent, _subclass(type(parent), "traced"),
                                                               _fastgan_trace=(trace, fixed)))
    for bn_node, act_node, act in edits:
        report.fused.append((path or "(model)", f"{bn_node.target} ({type(targets[bn_node.target]).__name__}) -> "
                             f"{act_node.target} ({type(targets[act_node.target]).__name__})",
                             f"one fused call ({act[0]}) in the torch.fx trace of {type(parent).__name__}.forward"))


# ---------------------------------------------------------------- convert / revert


def _unwrap(model: nn.Module):
    if type(model).__name__ == "OptimizedModule" and hasattr(model, "_orig_mod"):
        raise TypeError("fastgan.convert: this module was compiled with torch.compile; convert the plain module "
                        "first, then compile it: model = torch.compile(fastgan.convert(model))")
    wrapped = isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel))
    return (model.module, isinstance(model, nn.DataParallel)) if wrapped else (model, False)


def convert(model: nn.Module, *, spectral_norm: bool = True, batch_norm: bool = True,
            conditional_batch_norm: bool = True, conv_transpose: bool = True, group_spectral_norm: bool = True,
            fuse_activation: bool = True, report: bool = False):
    """Compute the layers of ``model`` that fastgan recognises with its fused kernels, in place; return ``model``
    (and a :class:`ConversionReport` with ``report=True``).

    Nothing about the model's state changes: each converted layer stays the same module object with the same
    Parameters, buffers and state-dict keys, computing the same function in training and eval (each spectral norm
    in its source's iteration order: legacy hooks and BigGAN layers v first, the parametrization u first). See the
    module docstring for what is recognised. A candidate that does not match exactly (structure, or its eval output
    against the fused computation) is skipped with the reason in the report.

    Args:
        spectral_norm, batch_norm, conditional_batch_norm, conv_transpose: which kinds of layer to convert.
        group_spectral_norm: compute every converted spectral norm of the model in one batched call per forward
            (a :class:`fastgan.nn.SpectralNormGroup` with ``exact=True``; not under ``nn.DataParallel``).
        fuse_activation: fuse a ReLU/LeakyReLU that only a batch norm feeds (see the module docstring).
        report: also return the report.

    ``nn.DataParallel`` / ``DistributedDataParallel`` are converted through ``.module``; a ``torch.compile``d module
    is refused (convert first, then compile). All or nothing: a weight with NaN/Inf raises ValueError before any
    layer is changed. A converted model deep-copies and pickles as itself (``torch.save(model)``, where torch can
    pickle the source model: not with parametrizations). ``fastgan.revert(model)`` undoes it.
    """
    root, data_parallel = _unwrap(model)
    rep = ConversionReport()
    plan: list = []  # closures, run after every check passed
    claimed: set = set()  # modules converted as part of another (a StudioGAN CBN's bn)
    fusable: dict = {}  # id(batch norm) -> module: batch norms (called from one place) that can take an activation
    modules = list(root.named_modules())
    refs: dict = {}
    for _, parent in modules:
        for child in parent._modules.values():
            if child is not None:
                refs[id(child)] = refs.get(id(child), 0) + 1

    def skip(path, what, why):
        rep.skipped.append((path or "(model)", what, why))

    def replace(path, what, to, fn):
        rep.replaced.append((path or "(model)", what, to))
        plan.append(fn)

    already = sum("_fastgan_source" in mod.__dict__ for _, mod in modules)
    if already:
        skip("", f"{already} layers converted before", "left as they are (fastgan.revert(model) undoes that)")
    for path, mod in modules:
        if "_fastgan_source" in mod.__dict__:
            continue  # converted already
        if spectral_norm:
            _plan_spectral_norm(path, mod, replace, skip)
        if conditional_batch_norm or batch_norm:
            kind = _cbn_kind(mod)
            if kind is not None and (conditional_batch_norm if kind != "bn" else batch_norm):
                what = {"ccbn": "BigGAN ccbn", "bn": "BigGAN bn", "studiogan": "StudioGAN ConditionalBatchNorm2d"}[
                    kind]
                why = _cbn_problem(mod, kind) or _probe_cbn(mod, kind)
                if why:
                    skip(path, f"{what} ({type(mod).__name__})", why)
                else:
                    if kind == "studiogan":
                        claimed.add(id(mod.bn))
                    cls = _subclass(type(mod), kind)
                    replace(path, f"{what} ({type(mod).__name__})", "fused conditional batch norm",
                            lambda mod=mod, cls=cls: _swap_class(mod, cls))
                    if refs.get(id(mod), 0) <= 1:
                        fusable[id(mod)] = mod
        if batch_norm and type(mod) in (nn.BatchNorm2d, nn.SyncBatchNorm) and id(mod) not in claimed:
            sync = type(mod) is nn.SyncBatchNorm  # (syncs where torch.distributed is initialised, as torch's)
            opts = {"activation": None, "negative_slope": 0.01, "process_group": getattr(mod, "process_group", None)}
            if not sync:
                opts["sync"] = False
            cls = conv_fwd.SyncBatchNorm2d if sync else BatchNorm2d
            replace(path, type(mod).__name__, "fastgan.nn.BatchNorm2d",
                    lambda mod=mod, opts=opts, cls=cls: _swap_class(mod, cls, **opts))
            if refs.get(id(mod), 0) <= 1:
                fusable[id(mod)] = mod
        if conv_transpose and isinstance(mod, nn.ConvTranspose2d) and not isinstance(mod, ConvTranspose2d):
            if type(mod) is not nn.ConvTranspose2d:
                skip(path, type(mod).__name__, "a subclass or parametrized ConvTranspose2d (its forward may differ); "
                     "left as it is")
            elif mod.padding_mode != "zeros":
                skip(path, "ConvTranspose2d", f"padding_mode={mod.padding_mode!r}")
            else:
                replace(path, "ConvTranspose2d", "fastgan.nn.ConvTranspose2d",
                        lambda mod=mod: _swap_class(mod, ConvTranspose2d, activation=None, negative_slope=0.01))

    if fuse_activation:
        for path, parent in modules:
            if isinstance(parent, nn.Sequential) and type(parent).forward is nn.Sequential.forward:
                _plan_sequential_fusion(path, parent, fusable, rep, plan, conv_transpose)
            elif not isinstance(parent, (nn.ModuleList, nn.ModuleDict)) and id(parent) not in fusable and \
                    any(id(c) in fusable for c in parent._modules.values()):
                _fuse_in_traced_forward(parent, fusable, path, rep, plan)

    for fn in plan:
        fn()
    if spectral_norm and group_spectral_norm:
        _attach_group(root, data_parallel, rep)
    return (model, rep) if report else model


def _fuse_run(seq, head, partners: tuple, runner, arg) -> None:
    """Mark ``head`` and the ``partners`` after it in ``seq`` as one run (computed by ``runner(head, partners, arg,
    x)`` while ``seq`` holds them in a row); ``seq`` runs on :func:`fastgan.nn.converted.sequential_forward`."""
    _swap_again(head, type(head), _fastgan_run=(partners, runner, arg))
    if getattr(type(seq), "_fastgan_kind", None) != "sequential":
        _swap_class(seq, _subclass(type(seq), "sequential"))


def _plan_sequential_fusion(path, seq, fusable, rep, plan, conv_transpose: bool) -> None:
    names = list(seq._modules)
    at = (lambda name: f"{path}.{name}") if path else (lambda name: name)
    i = 0
    while i < len(names) - 1:
        child, nxt = seq._modules[names[i]], seq._modules[names[i + 1]]
        if conv_transpose and type(child) is nn.ConvTranspose2d and _conv_bn_pair(child, nxt, fusable):
            after = seq._modules[names[i + 2]] if i + 2 < len(names) else None
            act = conv_fwd._act_spec(after) if after is not None and not conv_fwd._hooked(after) else None
            run = names[i:i + (3 if act else 2)]
            fusable.pop(id(nxt))
            partners = (nxt, after) if act else (nxt,)

            def apply(seq=seq, conv=child, partners=partners):
                block = ConvTransposeBNAct.from_modules(conv, *partners)
                _fuse_run(seq, conv, partners, conv_fwd.run_conv_bn, block)

            plan.append(apply)
            rep.fused.append((path or "(model)", " -> ".join(f"{n} ({type(seq._modules[n]).__name__})" for n in run),
                              "one fastgan.nn.ConvTransposeBNAct call when run in a row (BN statistics in the "
                              "conv's epilogue, BN folded into the conv in eval)"))
            i += len(run)
            continue
        if id(child) in fusable and _cbn_kind(child) not in ("ccbn", "studiogan"):
            act = conv_fwd._act_spec(nxt)
            if act is not None and conv_fwd._hooked(child, nxt):
                rep.skipped.append((at(names[i + 1]), f"{type(nxt).__name__} after {at(names[i])}",
                                    "not fused: hooks are registered on them"))
            elif act is not None:
                bn = fusable.pop(id(child))
                plan.append(lambda seq=seq, bn=bn, nxt=nxt, act=act: _fuse_run(seq, bn, (nxt,),
                                                                                conv_fwd.run_norm_act, act))
                rep.fused.append((path or "(model)", f"{names[i]} ({type(child).__name__}) -> {names[i + 1]} "
                                  f"({type(nxt).__name__})", f"one fused call ({act[0]}) when run in a row"))
                i += 2
                continue
        i += 1


def _conv_bn_pair(conv, bn, fusable) -> bool:
    return (id(bn) in fusable and type(bn) in (nn.BatchNorm2d, nn.SyncBatchNorm) and conv.padding_mode == "zeros"
            and bn.num_features == conv.out_channels and not conv_fwd._hooked(conv, bn))


def _plan_spectral_norm(path, mod, replace, skip) -> None:
    if parametrize.is_parametrized(mod):
        for tname, plist in mod.parametrizations.items():
            if len(plist) != 1 or type(plist[0]) is not TorchSN or not hasattr(plist[0], "_u"):
                continue
            sn = plist[0]
            where = f"{path}.{tname}" if path else tname
            if sn._u.dtype not in _VECTOR_DTYPES or sn._v.dtype != sn._u.dtype:
                skip(where, "parametrizations.spectral_norm", f"u, v are {sn._u.dtype}; the fused op keeps them in "
                     "float32 (convert before .half())")
                continue
            _check_finite_weight(plist.original, where)
            replace(where, "parametrizations.spectral_norm", "fastgan.nn.SpectralNorm",
                    lambda sn=sn: _swap_class(sn, SpectralNorm, _group_ref=None))
    for hook in list(mod._forward_pre_hooks.values()):
        if type(hook) is not TorchLegacySN:
            continue
        where = f"{path}.{hook.name}" if path else hook.name
        u = getattr(mod, hook.name + "_u")
        if u.dtype not in _VECTOR_DTYPES or getattr(mod, hook.name + "_orig").dim() < 2:
            skip(where, "torch.nn.utils.spectral_norm", f"u, v are {u.dtype} or the weight is 1-D; left as it is")
            continue
        _check_finite_weight(getattr(mod, hook.name + "_orig"), where)
        replace(where, "torch.nn.utils.spectral_norm", "fastgan LegacySpectralNorm (v first, same keys)",
                lambda hook=hook: _swap_class(hook, LegacySpectralNorm))
    if _is_biggan_sn(mod) and "_fastgan_sn" not in mod.__dict__:
        where = f"{path}.weight" if path else "weight"
        _check_finite_weight(mod.weight, where)
        why = _biggan_sn_problem(mod) or _probe_biggan_sn(mod)
        if why:
            skip(where, f"BigGAN {type(mod).__name__}", why)
            return
        cls = _subclass(type(mod), "biggan_sn")
        replace(where, f"BigGAN {type(mod).__name__}", "fastgan BigGANSpectralNorm (BigGAN's order, same keys)",
                lambda mod=mod, cls=cls: _swap_class(mod, cls, _fastgan_sn=BigGANSpectralNorm()))


def _check_finite_weight(tensor: torch.Tensor, where: str) -> None:
    if not _finite(tensor):
        raise ValueError(f"fastgan.convert: {where} holds NaN or Inf values ({int((~torch.isfinite(tensor)).sum())} "
                         f"of {tensor.numel()}); nothing was converted")


def _attach_group(root, data_parallel, rep) -> None:
    layers = list(spectral_norm_layers(root))
    if not layers:
        return
    if data_parallel:
        rep.skipped.append(("(model)", "SpectralNormGroup", "nn.DataParallel runs replicas: each layer computes its "
                            "own spectral norm"))
        return
    if any(sn._group_ref is not None and sn._group_ref() is not None for *_, sn in layers):
        rep.skipped.append(("(model)", "SpectralNormGroup", "the model's spectral norms already have a group"))
        return
    root.__dict__["_fastgan_sn_group"] = SpectralNormGroup(root, exact=True)
    rep.replaced.append(("(model)", f"{len(layers)} spectral norms", "one SpectralNormGroup (exact=True)"))


def revert(model: nn.Module) -> nn.Module:
    """Undo :func:`convert` in place: every converted layer is again its source class (same Parameters, buffers
    with their current values, keys), each computed on its own again, the group is removed. Layers
    fastgan built itself (``fastgan.nn.*``) stay. Returns ``model``."""
    root, _ = _unwrap(model)
    group = root.__dict__.pop("_fastgan_sn_group", None)
    if group is not None:
        group.remove()
    for mod in list(root.modules()):
        if parametrize.is_parametrized(mod):
            for plist in mod.parametrizations.values():
                for p in plist:
                    if _restore_class(p):
                        p.__dict__.pop("_group_ref", None)
        for hook in mod._forward_pre_hooks.values():
            if isinstance(hook, LegacySpectralNorm):
                hook.__dict__.pop("_group_ref", None)
                _restore_class(hook)
        _restore_class(mod)
    return model
