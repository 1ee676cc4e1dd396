"""The ``fastgan`` command: ``fastgan info``, ``fastgan bench``, ``fastgan train`` and ``fastgan fid``."""
from __future__ import annotations

import argparse
import os
import sys

import torch


def _rows(pairs) -> list[str]:
    width = max(len(k) for k, _ in pairs) + 2
    return [f"{k:<{width}}{v}" for k, v in pairs]


def info_text() -> str:
    """What ``fastgan info`` prints: versions, the CUDA extension, the GPU and the backend choice of every op."""
    from . import _backend
    from .bench.environment import environment, summary_rows

    env = environment()
    gpu = env["gpu"]
    pairs = summary_rows(env) + [("backend in force", _backend.current_backend())]
    lines = _rows(pairs)

    devices = ([("CUDA float32", torch.device("cuda", 0))] if gpu else []) + [("CPU float32", torch.device("cpu"))]
    table = [("op", "tensors", "auto picks")]
    reasons = {}
    for op in sorted(_backend._OPS):
        for label, dev in devices:
            pick = _backend.resolve(op, dev, torch.float32, "auto")
            table.append((op, label, pick))
            reasons[(op, label)] = [(name, _backend.unavailable_reason(name, dev, torch.float32, op))
                                    for name in _backend.BACKENDS if name != pick]
    widths = [max(len(r[i]) for r in table) + 2 for i in range(3)]
    lines.append("")
    for row in table:
        lines.append("".join(f"{c:<{w}}" for c, w in zip(row, widths)).rstrip())
        for name, why in reasons.get(row[:2], []):
            lines.append(" " * widths[0] + f"  {name}: {why or 'available'}")
    return "\n".join(lines) + "\n"


NETWORK_DIMS = (64, 192, 768, 2048)  # the pooled blocks of the FID InceptionV3, as pytorch-fid


def _fid(args) -> int:
    from .metrics import frechet_distance, load_statistics, save_statistics
    from .metrics._network import default_device
    from .metrics.folders import PooledBlock, statistics_of
    from .metrics.inception import fid_inception_v3

    # everything that can be refused is refused before any image is read
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    if args.save_stats and not str(args.b).endswith(".npz"):
        raise ValueError(f"--save-stats writes an .npz file; {args.b} does not end in .npz")
    device = default_device(args.device)
    sources = [args.a] if args.save_stats else [args.a, args.b]
    loaded = {p: load_statistics(p) for p in sources if str(p).endswith(".npz")}
    dims = args.dims
    if dims is None:  # from the statistics files, else the default network block
        found = sorted({mu.shape[0] for mu, _ in loaded.values()})
        dims = found[0] if len(found) == 1 else 2048
    folders = [p for p in sources if p not in loaded]
    if folders and dims not in NETWORK_DIMS:
        raise ValueError(f"--dims {dims}: the FID InceptionV3 gives features of {', '.join(map(str, NETWORK_DIMS))} "
                         f"dimensions, so {folders[0]} cannot be compared with {dims}-d statistics")
    net = []

    def extractor():
        if not net:
            net.append(PooledBlock(fid_inception_v3(args.weights), dims))
        return net[0]

    def stats_of(path):
        if path in loaded:
            mu, sigma = loaded[path]
            if mu.shape != (dims,):
                raise ValueError(f"{path} holds {mu.shape[0]}-d statistics, but the features are {dims}-d: pass "
                                 f"--dims {mu.shape[0]}, or leave --dims out to take it from the .npz file")
            return mu, sigma
        return statistics_of(path, extractor, dims, device, args.batch_size, not args.quiet)

    stats_a = stats_of(args.a)
    if args.save_stats:
        save_statistics(args.b, *stats_a)
        print(f"statistics of {args.a} written to {args.b}")
        return 0
    fid = frechet_distance(*stats_a, *stats_of(args.b))
    # round-off can make the FID of a set with itself a tiny negative number: it prints as 0
    print(f"FID: {max(fid, 0.0) if fid > -5e-7 else fid:.6f}")
    return 0


def _train_arguments(p) -> None:
    from .train import TrainConfig

    d = TrainConfig()
    from .models import GANS
    from .train_likelihood import MODELS

    p.add_argument("model", help=", ".join([*(f"{name} ({spec.notes})" for name, spec in GANS.items()),
                                            *(f"{name} ({notes})" for name, (_, notes) in MODELS.items())]))
    p.add_argument("--steps", type=int, default=d.steps, help=f"generator steps (default {d.steps})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    p.add_argument("--resolution", type=int, default=d.resolution, help=f"pixels (default {d.resolution})")
    p.add_argument("--width", type=int, default=None, help="ngf/ndf/ch (default: the paper's, 64)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--fused", dest="fused", action="store_true", default=True,
                       help="fastgan layers (default)")
    group.add_argument("--eager", dest="fused", action="store_false", help="plain PyTorch layers")
    p.add_argument("--backend", choices=("auto", "torch", "triton", "cuda"), default=None,
                   help="fastgan backend (default: auto)")
    p.add_argument("--amp", action="store_true", help="autocast (float16 + GradScaler on CUDA, bfloat16 on CPU)")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--out", default=d.out, help=f"output folder (default {d.out})")
    p.add_argument("--data", default=None, help="image folder or .npz (default: the embedded shapes)")
    p.add_argument("--ema", type=float, default=None, help="EMA decay of G for the samples (e.g. 0.999)")
    p.add_argument("--sample-every", type=int, default=d.sample_every)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    p.add_argument("--device", default=None, help="cuda, cpu (default: cuda if available)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the model's paper's)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--inception-weights", default=None,
                   help="pt_inception-2015-12-05-6726825d.pth: end with the FID (default: on the embedded data, the "
                        "Frechet distance in a small classifier's features, which is not FID)")
    p.add_argument("--eval-samples", type=int, default=d.eval_samples, help="images per set of the final metric")
    p.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the final metric")
    p.add_argument("--joint-d", action="store_true",
                   help="run D once on real and fake images concatenated (fewer launches; one spectral-norm power "
                        "iteration per D step instead of two; refused for a D with batch norm)")
    p.add_argument("--tensorboard", action="store_true", help="also log losses and samples to OUT/tensorboard")
    p.add_argument("--prior-of", default=None, metavar="CKPT",
                   help="pixelcnn: model the codes of the VQ-VAE run whose checkpoint.pt this is (a prior; samples "
                        "are decoded by the VQ-VAE)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _train(args) -> int:
    from .train import TrainConfig, Trainer

    config = TrainConfig(model=args.model, steps=args.steps, batch_size=args.batch_size, resolution=args.resolution,
                         width=args.width, fused=args.fused, backend=args.backend, amp=args.amp, seed=args.seed,
                         out=args.out, data=args.data, ema=args.ema, sample_every=args.sample_every,
                         checkpoint_every=args.checkpoint_every, device=args.device, lr=args.lr,
                         progress=not args.quiet, evaluate=args.evaluate, eval_samples=args.eval_samples,
                         inception_weights=args.inception_weights, joint_d=args.joint_d,
                         tensorboard=args.tensorboard, prior_of=args.prior_of)
    from .train import LIKELIHOOD_MODELS
    from .train_likelihood import LikelihoodTrainer

    trainer = (LikelihoodTrainer if config.model in LIKELIHOOD_MODELS else Trainer)(config, resume=args.resume)
    summary = trainer.fit()
    if trainer.rank != 0:  # (torchrun: rank 0 speaks for the run)
        return 0
    last = summary["last"] or {}
    per_step = summary["seconds_per_step"]
    speed = f", {per_step * 1e3:.0f} ms/step" if per_step else ""
    layers = "fastgan layers" if config.fused else "PyTorch layers"
    shown = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in last.items() if k not in ("step", "seconds"))
    print(f"{config.model}: {summary['steps']} steps on {summary['device']} ({layers}{speed}); last {shown}; samples: "
          f"{trainer.out / 'samples.png'}, losses: {trainer.out / 'losses.csv'}, checkpoint: "
          f"{trainer.out / 'checkpoint.pt'}")
    metric = summary["metric"]
    if metric and metric["name"] == "ring":
        print(f"ring: {metric['modes_covered']} of {metric['modes']} modes covered, "
              f"{metric['high_quality']:.1%} of 2,500 samples within 3 std of a mode")
    elif metric and "real_vs_real" in metric:
        print(f"{metric['name']}: {metric['value']:.3f} over {metric['samples']} samples (two real sets: "
              f"{metric['real_vs_real']:.3f}; classifier accuracy {metric['classifier_accuracy']:.1%})")
    elif metric:
        more = "".join(f", {k.replace('_', ' ')} {v:.3f}" for k, v in metric.items()
                       if k in ("bits_per_dim", "perplexity"))
        print(f"{metric['name']}: {metric['value']:.3f} over {metric['samples']} samples{more}")
    elif config.evaluate:
        print("no final metric: give --inception-weights for FID (the classifier distance needs the embedded data)")
    return 0


def _version() -> str:
    from . import __version__

    return __version__


def _convert_report(spec: str) -> int:
    import importlib
    import os

    from torch import nn

    from .convert import convert

    module_name, sep, factory_name = spec.partition(":")
    if not sep or not module_name or not factory_name:
        raise ValueError(f"expected MODULE:FACTORY (e.g. BigGAN:Generator), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    factory = getattr(importlib.import_module(module_name), factory_name)
    built = factory()
    models = built.items() if isinstance(built, dict) else (
        [(f"{factory_name}[{i}]", m) for i, m in enumerate(built)] if isinstance(built, (tuple, list))
        else [(factory_name, built)])
    for name, model in models:
        if not isinstance(model, nn.Module):
            raise TypeError(f"{spec} returned a {type(model).__name__} for {name}, not an nn.Module")
        _, report = convert(model, report=True)
        print(f"== {name} ({type(model).__name__})\n{report}\n")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``fastgan`` console script and of ``python -m fastgan``."""
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader of stdout stopped early (`fastgan ... | head`): stop quietly, as tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _main(argv=None) -> int:
    from .bench import command as bench_command

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="fastgan", description="Fused Triton/CUDA kernels for GANs.")
    parser.add_argument("--version", action="version", version=f"fastgan {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="versions, the CUDA extension, the GPU and the backend each op uses")
    bench_command.add_arguments(sub.add_parser("bench",
                                               help="benchmark fastgan against eager PyTorch and torch.compile"))
    from .models import GANS

    train = sub.add_parser("train", help="train a GAN of the zoo (default data: embedded shapes, no download)",
                           description=f"Train MODEL ({', '.join(GANS)}) on the embedded shapes data or on an "
                                       "image folder / .npz array; writes samples, losses and a checkpoint to "
                                       "--out, and resumes from it with --resume.")
    _train_arguments(train)
    fid = sub.add_parser("fid", help="FID between two image folders or .npz statistics files",
                         description="FID between A and B (image folders or .npz files with mu and sigma, as "
                                     "pytorch-fid and clean-fid write them), with pytorch-fid's InceptionV3. "
                                     "With --save-stats: write the statistics of folder A to the .npz file B.")
    fid.add_argument("a", help="image folder or .npz statistics file")
    fid.add_argument("b", help="image folder or .npz statistics file (with --save-stats: the .npz to write)")
    fid.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda if available)")
    fid.add_argument("--batch-size", type=int, default=50, help="images per forward pass (default 50)")
    fid.add_argument("--dims", type=int, default=None,
                     help="feature dimension: the InceptionV3 block to use, 64, 192, 768 or 2048, as pytorch-fid "
                          "(default: that of the .npz statistics given, else 2048)")
    fid.add_argument("--weights", help="path of pt_inception-2015-12-05-6726825d.pth (default: "
                                       "$FASTGAN_INCEPTION_WEIGHTS)")
    fid.add_argument("--save-stats", action="store_true", help="write the statistics of folder A to B (.npz)")
    fid.add_argument("--quiet", action="store_true", help="no progress bar")
    conv = sub.add_parser("convert", help="what fastgan.convert would do to a model: its report",
                          description="Build the model(s) FACTORY returns (a function or class of MODULE, importable "
                                      "from the current directory, called without arguments; it may return a model, "
                                      "or a tuple / dict of models), convert them and print fastgan.convert's "
                                      "report: every layer replaced and every candidate skipped, with the reason.")
    conv.add_argument("--report", required=True, metavar="MODULE:FACTORY", help="e.g. BigGAN:Generator")
    args = parser.parse_args(argv)
    if args.command == "convert":
        try:
            return _convert_report(args.report)
        except (ImportError, AttributeError, TypeError, ValueError) as e:
            print(f"fastgan convert: error: {e}", file=sys.stderr)
            return 2
    if args.command == "info":
        sys.stdout.write(info_text())
        return 0
    if args.command == "bench":
        return bench_command.main(args, bench_command.command_line(argv))
    if args.command == "train":
        try:
            return _train(args)
        except (OSError, ValueError, RuntimeError, FloatingPointError) as e:  # bad options, missing data: one line
            print(f"fastgan train: error: {e}", file=sys.stderr)
            return 2
    if args.command == "fid":
        try:
            return _fid(args)
        except (OSError, ValueError, RuntimeError) as e:  # missing files, bad statistics, no weights: no traceback
            print(f"fastgan fid: error: {e}", file=sys.stderr)
            return 2
    parser.print_help()
    return 2
