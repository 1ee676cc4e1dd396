"""The network a metric runs: the user's module, or pytorch-fid's InceptionV3 built (with its weights) on first use."""
from __future__ import annotations

import torch
from torch import nn


def default_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a torch.device (default: CUDA if available, else the CPU); a CUDA device that this machine
    does not have is refused with a ValueError saying so."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device {device!r} is not a device name (use 'cpu', 'cuda' or 'cuda:N'): {e}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA device is visible")
            raise ValueError(f"device {str(device)!r} was asked for, but {why}; use device='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r} was asked for, but there are {torch.cuda.device_count()} "
                             "CUDA devices")
    return dev


class _Logits(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x, return_logits=True)


class MetricNetwork:
    """``module`` on ``device`` in eval mode; when ``module`` is None, the FID InceptionV3 (its pool features, or
    its 1008 logits with ``logits=True``), loaded only when first needed so that metrics fed with precomputed
    features never need the weight file."""

    def __init__(self, module: nn.Module | None, device: torch.device, logits: bool = False):
        self._module, self.device, self._logits = module, device, logits

    def get(self) -> nn.Module:
        if self._module is None:
            from .inception import fid_inception_v3

            net = fid_inception_v3()
            self._module = _Logits(net) if self._logits else net
        return self._module.to(self.device).eval()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.get()(images.to(self.device))
