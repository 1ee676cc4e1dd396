"""``fastgan train vae | vqvae | pixelcnn``: the likelihood models of the zoo on the GAN trainer's data, logs,
checkpoints and exact resume (:mod:`fastgan.train`), one network and one Adam optimizer.

Per step (a batch of ``batch_size`` images drawn by the saved random generator): the model's loss and its
metrics (VAE: negative ELBO at beta, ELBO and bits/dim; VQ-VAE: reconstruction MSE, codebook perplexity and use;
PixelCNN: bits/dim), a row of ``losses.csv``. Sample grids: VAE samples from a fixed latent batch, VQ-VAE
reconstructions of a fixed real batch (top half: the images), PixelCNN samples from the cached sampler. The final
metric is on a held-out set (the embedded shapes with another seed; a folder's first images otherwise): the VAE's
importance-weighted log p(x) (k = 16) in nats and bits/dim, the VQ-VAE's reconstruction MSE and perplexity, the
PixelCNN's bits/dim.

``prior_of`` (``fastgan train pixelcnn --prior-of RUN/checkpoint.pt``): the PixelCNN models the code grid
(R/4 x R/4 indices of K codes, read through an embedding) of a trained VQ-VAE, frozen, which encodes each batch;
bits/dim are then bits per code, the samples are drawn codes decoded by the VQ-VAE.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from .data import Shapes, load_images
from .models import pixelcnn as P
from .models import vae as V
from .train import TrainConfig, Trainer, _backend_scope, _device, _world, image_grid

# name -> (learning rate, what it notes in --help)
MODELS = {"vae": (1e-3, "Kingma & Welling: conv VAE, Bernoulli likelihood, 64-d latent, Adam(1e-3)"),
          "vqvae": (2e-4, "van den Oord et al. 2017: 512 codes of 64, EMA codebook (0.99), commitment 0.25, "
                          "Adam(2e-4)"),
          "pixelcnn": (1e-3, "van den Oord et al. 2016: gated PixelCNN, 256-way softmax, Adam(1e-3)")}
SERIES = {"vae": ("loss", "bits_per_dim"), "vqvae": ("loss", "reconstruction"), "pixelcnn": ("bits_per_dim",)}


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> integer levels 0..255 (long)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().long()


class LikelihoodTrainer(Trainer):
    """:class:`fastgan.train.Trainer` for one network trained by its likelihood (``config.model`` in ``MODELS``)."""

    def __init__(self, config: TrainConfig, resume: bool = False):
        config.validate()
        self.plot_keys = ("bits_per_code",) if config.prior_of else SERIES[config.model]
        if _world()[0] > 1:
            raise ValueError(f"{config.model} trains in one process (torchrun runs the GANs); run it without torchrun")
        self.config = config
        self.world, self.rank, self._own_group = 1, 0, False
        self.device = _device(config.device)
        self.out = Path(config.out)
        self.data = (load_images(config.data, config.resolution) if config.data
                     else Shapes(config.resolution, config.data_size, seed=0))
        self.held_out = None if config.data else Shapes(config.resolution, config.eval_samples, seed=1)
        torch.manual_seed(config.seed)
        c, r, w = self.data.channels, config.resolution, config.width
        with _backend_scope(config.backend):
            if config.model == "vae":
                self.net = V.VAE(c, r, latent=64, width=w or 32, fused=config.fused)
            elif config.model == "vqvae":
                self.net = V.VQVAE(c, r, width=w or 64, fused=config.fused, backend=config.backend)
            elif config.prior_of:
                self.vq = _frozen_vqvae(config, c, self.device)
                self.net = P.PixelCNN(1, hidden=w or 60, layers=8, levels=self.vq.quantizer.weight.shape[0],
                                      embed=32, fused=config.fused, backend=config.backend)
            else:
                hidden = -(-(w or 60) // c) * c  # (a multiple of the sub-pixels: --width rounds up)
                self.net = P.PixelCNN(c, hidden=hidden, layers=8, fused=config.fused, backend=config.backend)
        self.net.to(self.device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=config.lr or MODELS[config.model][0])
        self.rng = torch.Generator().manual_seed(config.seed)
        self.fixed = torch.Generator().manual_seed(config.seed + 1)
        self.z_fixed = torch.randn(64, 64, generator=self.fixed)
        self.x_fixed = self.data.batch(torch.arange(32) % len(self.data))[0]
        self.ema, self.scalers, self.amp_dtype, self._tb = None, None, None, None
        self.step_count, self.history = 0, []
        if resume:
            if not (self.out / "checkpoint.pt").exists():
                raise FileNotFoundError(f"no checkpoint to resume from at {self.out / 'checkpoint.pt'}")
            self.load(self.out / "checkpoint.pt")

    def _losses(self, x: torch.Tensor) -> dict:
        if self.config.model == "vae":
            return self.net.losses(x, generator=self.rng)
        if self.config.model == "vqvae":
            return self.net.losses(x)
        bpd = self.net.bits_per_dim(self._levels(x))  # (of a prior: bits per code)
        return {"loss": bpd, "bits_per_code" if self.config.prior_of else "bits_per_dim": bpd}

    def _levels(self, x: torch.Tensor) -> torch.Tensor:
        """What the PixelCNN models: the image's levels, or the VQ-VAE's code grid (B, 1, R/4, R/4)."""
        if not self.config.prior_of:
            return quantize(x)
        with torch.no_grad():
            return self.vq.quantizer(self.vq.encoder(x)).indices[:, None]

    def step(self) -> dict:
        t0 = time.perf_counter()
        x, _ = self._real()
        with _backend_scope(self.config.backend):
            losses = self._losses(x)
            self.opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            self.opt.step()
        self.step_count += 1
        row = {"step": self.step_count, **{k: float(v.detach()) for k, v in losses.items()},
               "seconds": time.perf_counter() - t0}
        self.history.append(row)
        return row

    def _finite(self, row: dict) -> bool:
        return math.isfinite(row["loss"])

    @torch.no_grad()
    def samples(self, n: int = 64) -> torch.Tensor:
        """The grid's images (N, C, R, R) in [-1, 1] on the CPU."""
        was = self.net.training
        self.net.eval()
        try:
            with _backend_scope(self.config.backend):
                if self.config.model == "vae":
                    w = self.net.from_latent.weight
                    return self.net.images(self.net.decode(self.z_fixed[:n].to(w.device, w.dtype))).float().cpu()
                if self.config.model == "vqvae":
                    x = self.x_fixed.to(self.device)
                    return torch.cat([x, self.net(x)[0].clamp(-1, 1)]).float().cpu()
                g = torch.Generator().manual_seed(self.config.seed + 1)
                side = self.config.resolution // (4 if self.config.prior_of else 1)
                levels = P.sample_cached(self.net, min(n, 16), (side, side), generator=g)
                if self.config.prior_of:
                    return self.vq.decode_indices(levels[:, 0]).float().cpu()
                return (levels.float() / 127.5 - 1).cpu()
        finally:
            self.net.train(was)

    def _grid(self):
        return image_grid(self.samples())

    def state_dict(self) -> dict:
        from dataclasses import asdict

        return {"config": asdict(self.config), "step": self.step_count, "net": self.net.state_dict(),
                "opt": self.opt.state_dict(), "rng": [self.rng.get_state()], "torch_rng": torch.get_rng_state(),
                "history": self.history}

    def load(self, path: Path) -> None:
        state = self._read_checkpoint(path)
        self.net.load_state_dict(state["net"])
        self.opt.load_state_dict(state["opt"])
        self.rng.set_state(state["rng"][0])
        torch.set_rng_state(state["torch_rng"])
        self.step_count, self.history = state["step"], list(state["history"])

    def _check_in_sync(self) -> None:
        pass

    @torch.no_grad()
    def evaluate(self) -> dict:
        """The held-out metric (see the module docstring)."""
        data = self.held_out or self.data
        n = min(self.config.eval_samples, len(data))
        was = self.net.training
        self.net.eval()
        total, count, extra = 0.0, 0, {}
        g = torch.Generator().manual_seed(self.config.seed + 3)
        try:
            with _backend_scope(self.config.backend):
                for i in range(0, n, 100):
                    x = data.batch(torch.arange(i, min(i + 100, n)))[0].to(self.device)
                    if self.config.model == "vae":
                        total += float(self.net.importance_log_likelihood(x, k=16, generator=g).sum())
                    elif self.config.model == "vqvae":
                        recon, q = self.net(x)
                        total += float((recon - x).square().flatten(1).mean(1).sum())
                        extra["perplexity"] = extra.get("perplexity", 0.0) + float(q.perplexity) * len(x)
                    else:
                        total += float(self.net.nll(self._levels(x)).sum())
                    count += len(x)
        finally:
            self.net.train(was)
        dims = data.channels * self.config.resolution ** 2
        where = "held-out shapes" if self.held_out is not None else "the data's first images"
        if self.config.model == "vae":
            return {"name": f"importance-weighted log p(x), k=16, nats ({where})", "value": total / count,
                    "bits_per_dim": -total / count / (dims * math.log(2)), "samples": count}
        if self.config.model == "vqvae":
            return {"name": f"reconstruction MSE ({where})", "value": total / count,
                    "perplexity": extra["perplexity"] / count, "samples": count}
        if self.config.prior_of:
            grid = (self.config.resolution // 4) ** 2
            return {"name": f"bits per code of the VQ-VAE's {grid} codes per image ({where})",
                    "value": total / count / (grid * math.log(2)), "samples": count}
        return {"name": f"bits/dim ({where})", "value": total / count / (dims * math.log(2)), "samples": count}


def _frozen_vqvae(config: TrainConfig, channels: int, device) -> V.VQVAE:
    """The VQ-VAE of the run whose checkpoint is ``config.prior_of``, in eval mode, without gradients."""
    state = torch.load(config.prior_of, map_location="cpu", weights_only=True)
    saved = state.get("config", {}) if isinstance(state, dict) else {}
    if saved.get("model") != "vqvae":
        raise ValueError(f"--prior-of {config.prior_of}: not a `fastgan train vqvae` checkpoint (model "
                         f"{saved.get('model')!r})")
    if saved["resolution"] != config.resolution:
        raise ValueError(f"--prior-of: the VQ-VAE was trained at --resolution {saved['resolution']}; pass "
                         f"--resolution {saved['resolution']}")
    vq = V.VQVAE(channels, saved["resolution"], width=saved["width"] or 64, fused=saved["fused"],
                 backend=config.backend)
    try:
        vq.load_state_dict(state["net"])
    except RuntimeError as e:
        raise ValueError(f"--prior-of {config.prior_of}: its VQ-VAE does not fit this data's {channels} channels "
                         f"(train the prior on the VQ-VAE's --data): {str(e).splitlines()[0]}") from None
    return vq.to(device).eval().requires_grad_(False)
