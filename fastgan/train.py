"""The training loop behind ``fastgan train MODEL``: a zoo GAN (``fastgan.models.GANS``) on the embedded shapes
data (no download) or on an image folder / ``.npz`` array, with progress, sample grids, a loss log and plot, and
checkpoints that resume exactly.

    from fastgan.train import TrainConfig, Trainer
    Trainer(TrainConfig(model="dcgan", steps=1000, out="run")).fit()

Every random draw (data indices, latents, interpolation weights) comes from one generator seeded by ``seed`` and
saved in the checkpoint, so the step after a resume is the step the uninterrupted run would take (bitwise on the
CPU). Files in ``out``: ``losses.csv`` (a row per generator step), ``losses.png``, ``samples.png`` (the latest grid
of a fixed latent batch) and ``samples/step_NNNNNN.png``, ``checkpoint.pt``, ``summary.json``.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import models
from ._backend import use_backend
from .data import Ring, Shapes, load_images
from .penalties import gradient_penalty

CSV_FIELDS = ("step", "d_loss", "g_loss", "penalty", "d_real", "d_fake", "seconds")
LIKELIHOOD_MODELS = ("vae", "vqvae", "pixelcnn")  # trained by fastgan.train_likelihood.LikelihoodTrainer


def _world() -> tuple[int, int, int]:
    """(world size, rank, local rank) of a torchrun launch; (1, 0, 0) otherwise."""
    import os

    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


@dataclass
class TrainConfig:
    """One training run (the options of ``fastgan train``)."""

    model: str = "dcgan"
    steps: int = 1000  # generator steps
    batch_size: int = 64
    resolution: int = 32
    width: int | None = None  # ngf / ndf / ch (default: the paper's)
    fused: bool = True
    backend: str | None = None
    amp: bool = False
    seed: int = 0
    out: str = "fastgan-train"
    data: str | None = None  # an image folder or .npz; None: the embedded shapes
    data_size: int = 50_000  # images of the embedded set
    ema: float | None = None  # decay of an EMA copy of G used for samples (e.g. 0.999)
    sample_every: int = 200
    checkpoint_every: int = 500
    device: str | None = None
    lr: float | None = None  # default: the model's
    progress: bool = True
    evaluate: bool = True  # the final metric (FID with inception_weights, else the classifier distance)
    eval_samples: int = 1000
    inception_weights: str | None = None
    joint_d: bool = False  # D(real) and D(fake) as one call on the concatenated batch (D without batch norm)
    tensorboard: bool = False  # also log to out/tensorboard (needs the tensorboard package)
    prior_of: str | None = None  # pixelcnn: a VQ-VAE run's checkpoint.pt whose codes the PixelCNN models

    def validate(self) -> None:
        if self.model not in models.GANS and self.model not in LIKELIHOOD_MODELS:
            raise ValueError(f"unknown model {self.model!r}; one of {', '.join([*models.GANS, *LIKELIHOOD_MODELS])}")
        spec = models.GANS.get(self.model)
        if spec is not None and spec.resolutions != (None,) and self.resolution not in spec.resolutions:
            raise ValueError(f"{self.model} supports --resolution {' or '.join(map(str, spec.resolutions))}, "
                             f"not {self.resolution}")
        sides = {"vae": 8, "vqvae": 4, "pixelcnn": 1}.get(self.model)
        if sides and (self.resolution < sides or self.resolution % sides or (
                self.model == "vae" and self.resolution & (self.resolution - 1))):
            what = "a power of two >= 8" if self.model == "vae" else f"a multiple of {sides}"
            raise ValueError(f"{self.model} supports a --resolution that is {what}, not {self.resolution}")
        if self.prior_of is not None:
            if self.model != "pixelcnn":
                raise ValueError(f"--prior-of trains a PixelCNN prior over a VQ-VAE's codes: use it with pixelcnn, "
                                 f"not {self.model}")
            if not Path(self.prior_of).is_file():
                raise FileNotFoundError(f"--prior-of: no VQ-VAE checkpoint at {self.prior_of} (the checkpoint.pt of "
                                        "a `fastgan train vqvae` run)")
        if self.joint_d and spec is None:
            raise ValueError(f"--joint-d applies to GANs; {self.model} has no discriminator")
        for name in ("steps", "batch_size", "sample_every", "checkpoint_every", "data_size", "eval_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {v!r}")
        if self.width is not None and self.width < 1:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema must be a decay in (0, 1), got {self.ema}")
        if self.data is not None and not Path(self.data).exists():
            raise FileNotFoundError(f"no data at {self.data}: give an image folder or an .npz file")
        if self.inception_weights is not None and not Path(self.inception_weights).is_file():
            raise FileNotFoundError(f"no Inception weights at {self.inception_weights}")
        if self.tensorboard:
            try:
                import tensorboard  # noqa: F401
            except ImportError:
                raise ValueError("--tensorboard needs the tensorboard package: pip install tensorboard") from None


def _device(name: str | None, local_rank: int = 0) -> torch.device:
    if name is None:
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name} was asked for, but torch sees no CUDA device")
    return dev


class EMA:
    """An exponential moving average of a module's parameters (buffers copied), written through ``.data`` as
    BigGAN-PyTorch and StyleGAN do: p_ema <- d p_ema + (1 - d) p, with d = min(decay, (1 + t) / (10 + t)) at update
    t (TensorFlow's ExponentialMovingAverage with num_updates: a short run is not dominated by the initial
    weights)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.module, self.decay = copy.deepcopy(module).eval().requires_grad_(False), decay
        self.updates = 0

    @torch.no_grad()
    def update(self, source: torch.nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        for p_ema, p in zip(self.module.parameters(), source.parameters()):
            p_ema.data.lerp_(p.data, 1 - d)
        for b_ema, b in zip(self.module.buffers(), source.buffers()):
            b_ema.data.copy_(b.data)


class Trainer:
    """Builds the model, data, optimizers and logs of a :class:`TrainConfig`, resuming from ``out/checkpoint.pt``
    when ``resume=True`` (which must exist); :meth:`step` runs one generator step (with its critic steps), :meth:`fit`
    the rest of the run.

    Under ``torchrun`` (WORLD_SIZE > 1) each process trains on its own batches (its own random stream), the
    gradients are averaged across processes before every optimizer step, batch norms are fastgan's with synced
    statistics, the final metric's statistics are reduced across processes, and rank 0 alone writes files.
    """

    plot_keys = ("d_loss", "g_loss")  # the series of losses.png

    def __init__(self, config: TrainConfig, resume: bool = False):
        config.validate()
        self.config, self.spec = config, models.GANS[config.model]
        self.world, self.rank, local_rank = _world()
        self.device = _device(config.device, local_rank)
        self._own_group = False
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
                self._own_group = True
            self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.out = Path(config.out)
        if config.data and self.spec.data == "ring":
            raise ValueError(f"{config.model} trains on the embedded ring of Gaussians; --data does not apply")
        self.data = (load_images(config.data, config.resolution) if config.data
                     else Ring(size=config.data_size) if self.spec.data == "ring"
                     else Shapes(config.resolution, config.data_size, seed=0))
        torch.manual_seed(config.seed)
        with _backend_scope(config.backend):  # (spectral norm's initial power iterations run on it too)
            self.G, self.D = models.build(config.model, config.resolution, config.width, config.fused,
                                          self.data.channels, self.data.num_classes)
        self.nz = models.latent_size(config.model, self.G)
        if self.world > 1:
            from .nn import convert_sync_batchnorm

            self.G, self.D = convert_sync_batchnorm(self.G), convert_sync_batchnorm(self.D)
        if config.joint_d:
            _check_joint_d(config.model, self.D)
        self.G.to(self.device)
        self.D.to(self.device)
        self._broadcast()
        lr = config.lr or self.spec.lr
        lr_d = config.lr or self.spec.lr_d or self.spec.lr
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=self.spec.betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr_d, betas=self.spec.betas)
        self.ema = EMA(self.G, config.ema) if config.ema else None
        self.rng = torch.Generator().manual_seed(config.seed + 7919 * self.rank)  # each process its own batches
        self.z_fixed = torch.randn(64, self.nz, generator=torch.Generator().manual_seed(config.seed + 1))
        self.y_fixed = torch.arange(64) % self.data.num_classes  # a column of the grid per class
        amp_cuda = config.amp and self.device.type == "cuda"
        self.scalers = [torch.amp.GradScaler("cuda") for _ in range(2)] if amp_cuda else None
        self.amp_dtype = (torch.float16 if amp_cuda else torch.bfloat16) if config.amp else None
        self.step_count, self.history = 0, []
        self._tb = None
        if resume:
            if not (self.out / "checkpoint.pt").exists():
                raise FileNotFoundError(f"no checkpoint to resume from at {self.out / 'checkpoint.pt'}")
            self.load(self.out / "checkpoint.pt")

    # ------------------------------------------------------------ one step

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _real(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.data), (self.config.batch_size,), generator=self.rng)
        x, y = self.data.batch(idx)
        return x.to(self.device, non_blocking=True), y.to(self.device)

    def _z(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents and, for a conditional GAN, the classes to generate (uniform)."""
        z = torch.randn(self.config.batch_size, self.nz, generator=self.rng).to(self.device)
        if not self.spec.conditional:
            return z, None
        return z, torch.randint(0, self.data.num_classes, (self.config.batch_size,), generator=self.rng).to(
            self.device)

    def _cond(self, y) -> tuple:
        return (y,) if self.spec.conditional else ()

    def _broadcast(self) -> None:
        """Every process starts from rank 0's weights and buffers."""
        if self.world > 1:
            import torch.distributed as dist

            for m in (self.G, self.D):
                for t in list(m.parameters()) + list(m.buffers()):
                    dist.broadcast(t.data, 0)

    def _average_gradients(self, opt) -> None:
        if self.world == 1:
            return
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world
        for g, avg in zip(grads, _unflatten_dense_tensors(flat, grads)):
            g.copy_(avg)

    def _backward_step(self, loss, opt, which: int) -> None:
        opt.zero_grad(set_to_none=True)
        if self.scalers is None:
            loss.backward()
            self._average_gradients(opt)
            opt.step()
        else:
            self.scalers[which].scale(loss).backward()
            self._average_gradients(opt)
            self.scalers[which].step(opt)
            self.scalers[which].update()

    def step(self) -> dict:
        """One generator step after ``n_critic`` discriminator steps; returns the last losses (floats)."""
        cfg, spec = self.config, self.spec
        t0 = time.perf_counter()
        with _backend_scope(cfg.backend):
            for _ in range(spec.n_critic):
                real, y_real = self._real()
                z, y = self._z()
                with self._autocast():
                    with torch.no_grad():
                        fake = self.G(z, *self._cond(y))
                    if cfg.joint_d:  # one call: half the launches, one power iteration of SN per D step
                        both = self.D(torch.cat([real, fake]), *self._cond(torch.cat([y_real, y]) if
                                                                          self.spec.conditional else None))
                        d_real, d_fake = both[:len(real)], both[len(real):]
                    else:
                        d_real, d_fake = self.D(real, *self._cond(y_real)), self.D(fake, *self._cond(y))
                    loss_d = models.d_loss(spec.loss, d_real.float(), d_fake.float())
                pen = torch.zeros((), device=self.device)
                if spec.penalty == "wgan-gp":
                    eps = torch.rand(cfg.batch_size, generator=self.rng).to(self.device)
                    with self._autocast():
                        pen = gradient_penalty(self.D, real, fake.float(), weight=spec.penalty_weight, eps=eps,
                                               critic_args=self._cond(y_real),
                                               scaler=self.scalers[1] if self.scalers else None,
                                               check_finite=False)
                self._backward_step(loss_d + pen, self.opt_D, 1)
            z, y = self._z()
            with self._autocast():
                loss_g = models.g_loss(spec.loss, self.D(self.G(z, *self._cond(y)), *self._cond(y)).float())
            self._backward_step(loss_g, self.opt_G, 0)
        if self.ema is not None:
            self.ema.update(self.G)
        self.step_count += 1
        row = {"step": self.step_count, "d_loss": loss_d.item(), "g_loss": loss_g.item(), "penalty": pen.item(),
               "d_real": d_real.detach().float().mean().item(), "d_fake": d_fake.detach().float().mean().item(),
               "seconds": time.perf_counter() - t0}
        self.history.append(row)
        return row

    # ------------------------------------------------------------ samples, logs, checkpoints

    @torch.no_grad()
    def samples(self, z: torch.Tensor | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images of the fixed latent batch (or of ``z``; classes ``y`` for a conditional GAN, by default a column
        of the grid per class) from the EMA generator if any, in eval mode: (N, C, R, R) in [-1, 1] (the ring's
        GAN: points (N, 2)), on the CPU."""
        G = self.ema.module if self.ema is not None else self.G
        was = G.training
        G.eval()
        try:
            with _backend_scope(self.config.backend):
                z = (self.z_fixed if z is None else z).to(self.device)
                y = (self.y_fixed[:len(z)] if y is None else y).to(self.device)
                x = G(z, *self._cond(y)).float().cpu()
                return x if isinstance(self.data, Ring) else x.clamp(-1, 1)
        finally:
            G.train(was)

    def _grid(self) -> np.ndarray:
        """The sample grid as an (H, W, 3) uint8 image."""
        x = self.samples(*self._ring_latents()) if isinstance(self.data, Ring) else self.samples()
        return scatter_plot(x, self.data) if isinstance(self.data, Ring) else image_grid(x)

    def write_samples(self) -> Path | None:
        if self.rank != 0:
            return None
        grid = self._grid()
        if self._tb is not None:
            self._tb.add_image("samples", grid, self.step_count, dataformats="HWC")
        (self.out / "samples").mkdir(parents=True, exist_ok=True)
        path = self.out / "samples" / f"step_{self.step_count:06d}.png"
        save_png(grid, path)
        save_png(grid, self.out / "samples.png")
        return path

    def write_logs(self) -> None:
        if self.rank != 0:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "losses.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(self.history[0]) if self.history else CSV_FIELDS)
            w.writeheader()
            for row in self.history:
                w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        plot_losses(self.history, self.out / "losses.png", f"{self.config.model}: losses per step", self.plot_keys)

    def _rng_states(self) -> list:
        """Every process's random-generator state (rank order)."""
        if self.world == 1:
            return [self.rng.get_state()]
        import torch.distributed as dist

        states = [None] * self.world
        dist.all_gather_object(states, self.rng.get_state())
        return states

    def state_dict(self) -> dict:
        return {"config": asdict(self.config), "step": self.step_count, "G": self.G.state_dict(),
                "D": self.D.state_dict(), "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "G_ema": self.ema.module.state_dict() if self.ema else None,
                "ema_updates": self.ema.updates if self.ema else 0, "rng": self._rng_states(),
                "torch_rng": torch.get_rng_state(),
                "scalers": [s.state_dict() for s in self.scalers] if self.scalers else None,
                "history": self.history}

    def save(self, path: Path | None = None) -> Path:
        path = path or self.out / "checkpoint.pt"
        state = self.state_dict()  # (every process: the random states are gathered)
        if self.rank != 0:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(path)  # never a half-written checkpoint
        return path

    def _read_checkpoint(self, path: Path) -> dict:
        """The checkpoint at ``path``, refused when it was trained with another model, size or batch."""
        state = torch.load(path, map_location=self.device, weights_only=False)
        saved = {k: state["config"].get(k) for k in ("model", "resolution", "width", "batch_size")}
        mine = {k: getattr(self.config, k) for k in saved}
        if saved != mine:
            raise ValueError(f"{path} was trained with {saved}; this run asks for {mine}: use another --out")
        return state

    def load(self, path: Path) -> None:
        state = self._read_checkpoint(path)
        if len(state["rng"]) != self.world:
            raise ValueError(f"{path} was written by {len(state['rng'])} processes; this run has {self.world}")
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        if self.ema is not None and state["G_ema"] is not None:
            self.ema.module.load_state_dict(state["G_ema"])
            self.ema.updates = state["ema_updates"]
        if self.scalers and state["scalers"]:
            for s, st in zip(self.scalers, state["scalers"]):
                s.load_state_dict(st)
        self.rng.set_state(state["rng"][self.rank])
        torch.set_rng_state(state["torch_rng"])
        self.step_count, self.history = state["step"], list(state["history"])

    # ------------------------------------------------------------ the run

    def fit(self) -> dict:
        """Train up to ``config.steps`` generator steps, writing samples, logs and checkpoints; returns the
        summary (also written to ``summary.json``)."""
        from tqdm.auto import tqdm

        cfg = self.config
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
        start, t0 = self.step_count, time.perf_counter()
        where = "" if isinstance(self.data, Ring) else f" {cfg.resolution}px"
        if cfg.tensorboard and self.rank == 0:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tensorboard"), purge_step=start + 1)
        bar = tqdm(total=cfg.steps, initial=start, desc=f"{cfg.model}{where}", unit="step",
                   disable=not cfg.progress or self.rank != 0, dynamic_ncols=True)
        for _ in range(start, cfg.steps):
            row = self.step()
            if not self._finite(row):
                self.write_logs()
                losses = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("step", "seconds"))
                raise FloatingPointError(f"step {row['step']}: the losses are not finite ({losses}); the logs so "
                                         f"far are in {self.out}")
            if self._tb is not None:
                for k, v in row.items():
                    if k != "step":
                        self._tb.add_scalar(f"train/{k}", v, row["step"])
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k in ("d_loss", "g_loss", "loss",
                                                                              "bits_per_dim")})
            if self.step_count % cfg.sample_every == 0:
                self.write_samples()
            if self.step_count % cfg.checkpoint_every == 0:
                self.save()
                self.write_logs()
        bar.close()
        if self.step_count % cfg.sample_every or self.step_count == start:  # (not written at this step yet)
            self.write_samples()
        self.save()
        self.write_logs()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        steps = self.step_count - start
        summary = {"model": cfg.model, "steps": self.step_count, "device": str(self.device),
                   "fused": cfg.fused, "backend": cfg.backend or "auto",
                   "seconds_per_step": (time.perf_counter() - t0) / steps if steps else None,
                   "last": self.history[-1] if self.history else None, "out": str(self.out),
                   "processes": self.world, "metric": self.evaluate() if cfg.evaluate else None}
        self._check_in_sync()
        if self.rank == 0:
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self._own_group:
            import torch.distributed as dist

            dist.destroy_process_group()
        return summary

    def _finite(self, row: dict) -> bool:
        return math.isfinite(row["d_loss"]) and math.isfinite(row["g_loss"])

    def _check_in_sync(self) -> None:
        """Under torchrun: every process must end with the same weights (a cheap checksum each)."""
        if self.world == 1:
            return
        import torch.distributed as dist

        sums = torch.stack([torch.cat([p.detach().double().flatten() for p in m.parameters()]).sum()
                            for m in (self.G, self.D)])
        gathered = [torch.zeros_like(sums) for _ in range(self.world)]
        dist.all_gather(gathered, sums)
        if any(not torch.equal(g, gathered[0]) for g in gathered):
            sums = [g.tolist() for g in gathered]
            raise RuntimeError(f"the processes' weights differ at the end of training (checksums {sums})")


    def _ring_latents(self, n: int = 2500):
        g = torch.Generator().manual_seed(self.config.seed + 1)
        return torch.randn(n, self.nz, generator=g), None

    # ------------------------------------------------------------ the final metric

    def _fake_batches(self, n: int, batch: int = 100):
        g = torch.Generator().manual_seed(self.config.seed + 2 + 7919 * self.rank)
        for i in range(0, n, batch):
            k = min(batch, n - i)
            z = torch.randn(k, self.nz, generator=g)
            y = torch.randint(0, self.data.num_classes, (k,), generator=g)
            yield self.samples(z, y)

    def _real_batches(self, start: int, n: int, batch: int = 100):
        for i in range(start, start + n, batch):
            yield self.data.batch(torch.arange(i, min(i + batch, start + n)) % len(self.data))[0]

    def evaluate(self) -> dict | None:
        """FID against ``eval_samples`` real images when Inception weights are given; else, on the embedded shapes,
        the Fréchet distance in the features of a small classifier trained on them (labelled as such, with the
        same distance between two disjoint real sets for scale); else None."""
        from .metrics.classifier_distance import classifier_frechet_distance, train_classifier

        if isinstance(self.data, Ring):  # (PacGAN's protocol: 2,500 samples)
            return {"name": "ring", **self.data.metrics(self.samples(*self._ring_latents()))}
        n = min(self.config.eval_samples, len(self.data) // 2)
        if self.config.inception_weights:
            from .metrics import FrechetInceptionDistance
            from .metrics.inception import fid_inception_v3

            fid = FrechetInceptionDistance(fid_inception_v3(self.config.inception_weights), device=self.device)
            for x in self._real_batches(0, n):
                fid.update((x.to(self.device) + 1) / 2, real=True)
            for x in self._fake_batches(n):
                fid.update((x.to(self.device) + 1) / 2, real=False)
            return {"name": "FID", "value": fid.compute(), "samples": n}
        if not isinstance(self.data, Shapes):
            return None
        net = train_classifier(self.data, seed=self.config.seed, device=self.device)  # the same on every process
        share = -(-n // self.world)  # this process's images of each set; the statistics are reduced across them
        lo = self.rank * share
        reduce = self.world > 1
        fake = classifier_frechet_distance(net, self._real_batches(lo, share), self._fake_batches(share), reduce)
        floor = classifier_frechet_distance(net, self._real_batches(lo, share),
                                            self._real_batches(share * self.world + lo, share), reduce)
        return {"name": "Frechet distance in small-classifier features (not FID)", "value": fake,
                "real_vs_real": floor, "classifier_accuracy": net.accuracy, "samples": n}


def _check_joint_d(model: str, D: torch.nn.Module) -> None:
    """A joint D(real) + D(fake) call would mix the two batches' statistics in a batch norm: refused."""
    norms = [n for n, m in D.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        raise ValueError(f"--joint-d runs D once on real and fake images together, which mixes their batch-norm "
                         f"statistics; {model}'s discriminator has batch norm ({norms[0]}): train without --joint-d")


def _backend_scope(name: str | None):
    """``use_backend(name)`` for a name; for None nothing (``use_backend(None)`` would reset an outer choice to
    auto)."""
    return use_backend(name) if name is not None else contextlib.nullcontext()


# ---------------------------------------------------------------- images without extra packages


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """(N, C, H, W) in [-1, 1] -> an (rows (H + pad), cols (W + pad), 3) uint8 grid (gray for one channel)."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    x = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if c == 1:
        x = x.expand(-1, 3, -1, -1)
    grid = torch.zeros(3, rows * (h + pad) + pad, nrow * (w + pad) + pad, dtype=torch.uint8)
    for i in range(n):
        r, q = divmod(i, nrow)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    return grid.permute(1, 2, 0).numpy()


def scatter_plot(points: torch.Tensor, ring: Ring, size: int = 320) -> np.ndarray:
    """Generated 2-D points (blue) over the ring's modes (red circles of 3 std) as an (size, size, 3) uint8 image."""
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(im)
    extent = ring.radius * 1.5

    def px(xy):
        return ((xy[0] / extent + 1) / 2 * (size - 1), (1 - (xy[1] / extent + 1) / 2) * (size - 1))

    for x, y in points.tolist():
        u, v = px((x, y))
        draw.point((u, v), fill=(40, 90, 200))
    r = 3 * ring.std / extent / 2 * (size - 1)
    for c in ring.centers.tolist():
        u, v = px(c)
        draw.ellipse((u - r, v - r, u + r, v + r), outline=(200, 40, 40))
    return np.asarray(im).copy()


def save_png(array: np.ndarray, path: Path, min_side: int = 256) -> None:
    """Write an (H, W, 3) uint8 array as PNG, scaled up by whole pixels to at least ``min_side``."""
    from PIL import Image

    im = Image.fromarray(array)
    k = max(1, min_side // max(1, min(im.size)))
    if k > 1:
        im = im.resize((im.width * k, im.height * k), Image.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def plot_losses(history: list[dict], path: Path, title: str, keys=("d_loss", "g_loss"), size=(720, 360)) -> None:
    """A line chart of the ``keys`` of each row per step (the D and G losses; PIL only: no plotting package)."""
    from PIL import Image, ImageDraw

    if not history:
        return
    W, H = size
    left, right, top, bottom = 60, 20, 30, 40
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    colors = [(200, 40, 40), (40, 90, 200), (40, 150, 60)]
    names = {"d_loss": "D", "g_loss": "G"}
    series = {names.get(k, k): ([r[k] for r in history], colors[i % 3]) for i, k in enumerate(keys)}
    values = [v for s, _ in series.values() for v in s if math.isfinite(v)]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1.0
    steps = [r["step"] for r in history]
    s0, s1 = steps[0], max(steps[-1], steps[0] + 1)

    def xy(step, v):
        return (left + (step - s0) / (s1 - s0) * (W - left - right), top + (hi - v) / (hi - lo) * (H - top - bottom))

    draw.rectangle([left, top, W - right, H - bottom], outline=(160, 160, 160))
    for frac in (0.0, 0.5, 1.0):
        v = lo + frac * (hi - lo)
        y = xy(s0, v)[1]
        draw.text((5, y - 6), f"{v:.3g}", fill="black")
    draw.text((left, H - bottom + 8), f"step {s0}", fill="black")
    draw.text((W - right - 80, H - bottom + 8), f"step {steps[-1]}", fill="black")
    draw.text((left, 8), title, fill="black")
    for i, (name, (vals, color)) in enumerate(series.items()):
        pts = [xy(s, v) for s, v in zip(steps, vals) if math.isfinite(v)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=1)
        draw.text((W - right - 100 * (len(series) - i), 8), name, fill=color)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
