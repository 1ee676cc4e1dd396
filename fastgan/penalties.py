"""Gradient penalties of GAN discriminators: WGAN-GP (Gulrajani et al. 2017), R1 and R2 (Mescheder et al. 2018),
DRAGAN (Kodali et al. 2017), and lazy regularisation (StyleGAN2: every k steps, scaled by k).

Each takes the discriminator (any callable), the samples and its extra conditioning arguments (class labels of a
projection discriminator), computes dD/dx with ``create_graph=True`` and returns the penalty as a 0-dim float32
tensor ready to add to the loss; ``return_outputs=True`` also hands back the discriminator's outputs (R1: D(real),
which the adversarial loss can use instead of running D again). The interpolation and the penalty run as fused
ops (:func:`fastgan.interpolate_samples`, :func:`fastgan.penalty_of_gradient`).

With a ``torch.cuda.amp.GradScaler`` (``scaler=``) the gradient is taken of the scaled output and unscaled before
its norm, as PyTorch's AMP documentation prescribes for gradient penalties.

While the discriminator runs for the penalty, its ``nn.ReLU`` and ``nn.LeakyReLU`` modules run as an autograd
function whose backward takes the saved activation as a constant (functional calls, ``F.relu`` in a forward, are
left as they are: intercepting every operator would cost more host time than it saves). The values and every
gradient are the same; what goes is work on zeros: torch's backward of these activations records a dependence on
their input whose derivative is ``zeros_like``, so ``loss.backward()`` would run a whole backward of D's forward
graph (input and weight gradients of every convolution) on zeros. For a DCGAN critic that is 2 of the 4
forward-passes' worth of FLOPs of the penalty's backward (``bench/critic_step_flops.py``). One visible difference:
a parameter whose gradient through the penalty is identically zero (a bias of such a D) gets no gradient from the
penalty alone (``p.grad`` stays None, as for a parameter a loss does not use) where torch's graph gives it zeros;
added to the adversarial loss, as in a
critic step, every gradient is the textbook one.
"""
from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn

from .ops.gradient_penalty import interpolate_samples, penalty_of_gradient


def _check_samples(where: str, **samples) -> None:
    first = None
    for name, t in samples.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point() or t.dim() < 1:
            raise TypeError(f"{where}: {name} must be a floating-point tensor (N, ...), got "
                            f"{t.dtype if isinstance(t, torch.Tensor) else type(t).__name__}")
        if t.shape[0] == 0:
            raise ValueError(f"{where}: {name} has no samples (shape {tuple(t.shape)})")
        if first is None:
            first = (name, t)
        elif (t.shape, t.dtype, t.device) != (first[1].shape, first[1].dtype, first[1].device):
            raise ValueError(f"{where}: {first[0]} and {name} must have one shape, dtype and device; got "
                             f"{tuple(first[1].shape)} {first[1].dtype} {first[1].device} and {tuple(t.shape)} "
                             f"{t.dtype} {t.device}")


def _check_weight(where: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not float("-inf") < v < float("inf") or v < 0:
        raise ValueError(f"{where}: {name} must be a finite number >= 0, got {v!r}")
    return float(v)


class _PiecewiseLinear(torch.autograd.Function):
    """leaky_relu(x, slope) (ReLU: slope 0) with torch's own kernels forward and backward; the backward takes the
    saved activation detached, so that its double backward has no edge back to x (see the module docstring)."""

    @staticmethod
    def forward(ctx, x, slope, inplace):
        ctx.set_materialize_grads(False)  # an undefined gradient stays undefined, not zeros to run a backward on
        ctx.slope, ctx.inplace = slope, inplace
        if inplace:
            ctx.mark_dirty(x)
            y = F.leaky_relu_(x, slope) if slope else x.relu_()
        else:
            y = F.leaky_relu(x, slope) if slope else x.relu()
        ctx.save_for_backward(x if slope and not inplace else y)  # what torch's own backward reads
        return y

    @staticmethod
    def backward(ctx, g):
        if g is None:
            return None, None, None
        saved = ctx.saved_tensors[0].detach()
        if not ctx.slope:
            return torch.ops.aten.threshold_backward(g, saved, 0), None, None
        return torch.ops.aten.leaky_relu_backward(g, saved, ctx.slope, ctx.inplace), None, None


def _pruned_relu(module, x):
    return _pruned(x, 0.0, module.inplace)


def _pruned_leaky_relu(module, x):
    return _pruned(x, module.negative_slope, module.inplace)


def _pruned(x, slope, inplace):
    if not (torch.is_grad_enabled() and type(x) is torch.Tensor and x.requires_grad and x.is_floating_point()) or (
            inplace and x._is_view()):  # (an in-place call on a view is left to torch)
        return F.leaky_relu(x, slope, inplace) if slope else F.relu(x, inplace)
    return _PiecewiseLinear.apply(x, float(slope), inplace)


_PRUNED_FORWARD = {nn.ReLU: _pruned_relu, nn.LeakyReLU: _pruned_leaky_relu}


@contextlib.contextmanager
def _pruned_activations(discriminator):
    """The ``nn.ReLU`` / ``nn.LeakyReLU`` modules of the discriminator run as :class:`_PiecewiseLinear` inside
    (their forward replaced on the instance, and put back after; a module whose forward is already replaced on
    the instance is left alone). Per call: one walk over the modules, nothing per operator."""
    patched = []
    if isinstance(discriminator, nn.Module):
        for m in discriminator.modules():
            pruned = _PRUNED_FORWARD.get(type(m))
            if pruned is not None and "forward" not in m.__dict__:
                m.forward = functools.partial(pruned, m)
                patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def _gradient(where, discriminator, x, critic_args, critic_kwargs, scaler, nan_to_num, check_finite):
    """(D(x), dD/dx with create_graph=True): unscaled when a GradScaler scaled the output; non-finite entries
    zeroed (nan_to_num) or refused (check_finite)."""
    with _pruned_activations(discriminator):
        out = discriminator(x, *critic_args, **(critic_kwargs or {}))
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        raise TypeError(f"{where}: the discriminator must return a floating-point tensor, got {type(out).__name__}")
    total = out.sum()
    if scaler is not None:
        total = scaler.scale(total)
    (g,) = torch.autograd.grad(total, x, create_graph=True, allow_unused=True)
    if g is None:
        raise ValueError(f"{where}: the discriminator's output does not depend on its input (its gradient is None): "
                         "is the input detached inside it, or replaced?")
    if scaler is not None:
        g = g * (1.0 / scaler.get_scale())
    if nan_to_num:
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
    elif check_finite and scaler is None:  # (with a scaler, an infinite gradient makes it skip the step)
        bad = ~torch.isfinite(g.reshape(g.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            raise FloatingPointError(
                f"{where}: the discriminator's gradient holds NaN or Inf for {int(bad.sum())} of {g.shape[0]} "
                "samples (the discriminator diverged?); pass nan_to_num=True to zero those entries, or "
                "check_finite=False to skip this check and its host sync")
    return out, g


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *, weight: float = 10.0, center: float = 1.0,
                     one_sided: bool = False, critic_args=(), critic_kwargs=None, eps: torch.Tensor | None = None,
                     generator: torch.Generator | None = None, return_outputs: bool = False, scaler=None,
                     nan_to_num: bool = False, check_finite: bool = True, backend: str | None = None):
    """WGAN-GP: weight E[(||dD/dx_hat|| - center)^2] at x_hat = eps real + (1 - eps) fake, eps ~ U[0, 1) per sample.

    Args:
        critic: D(x, *critic_args, **critic_kwargs) -> scores (N, ...); it should have no batch statistics.
        real, fake: (N, ...) of one shape, dtype and device (both detached: the penalty trains the critic).
        weight: lambda (10 in the paper), >= 0; center: the target norm (1); one_sided: penalise only norms above it.
        eps: (N,) interpolation weights (default: drawn with ``generator``).
        return_outputs: also return D(x_hat).
        scaler: a GradScaler whose scale the gradient is taken with and divided by.
        nan_to_num: zero non-finite gradient entries; otherwise ``check_finite`` raises on them (one host sync).

    Returns:
        the penalty (0-dim float32), or (penalty, D(x_hat)).
    """
    where = "gradient_penalty"
    _check_samples(where, real=real, fake=fake)
    weight = _check_weight(where, "weight", weight)
    if eps is None:
        eps = torch.rand(real.shape[0], device=real.device, generator=generator)
    x_hat = interpolate_samples(real.detach(), fake.detach(), eps, backend=backend).requires_grad_(True)
    out, g = _gradient(where, critic, x_hat, critic_args, critic_kwargs, scaler, nan_to_num, check_finite)
    pen = penalty_of_gradient(g, "norm", weight, center, one_sided, backend=backend)
    return (pen, out) if return_outputs else pen


def _squared_penalty(where, discriminator, x, gamma, critic_args, critic_kwargs, return_outputs, scaler, nan_to_num,
                     check_finite, backend):
    _check_samples(where, x=x)
    gamma = _check_weight(where, "gamma", gamma)
    x = x.detach().requires_grad_(True)
    out, g = _gradient(where, discriminator, x, critic_args, critic_kwargs, scaler, nan_to_num, check_finite)
    pen = penalty_of_gradient(g, "squared", gamma, backend=backend)
    return (pen, out) if return_outputs else pen


def r1_penalty(discriminator, real: torch.Tensor, gamma: float = 10.0, *, critic_args=(), critic_kwargs=None,
               return_outputs: bool = False, scaler=None, nan_to_num: bool = False, check_finite: bool = True,
               backend: str | None = None):
    """R1: gamma / 2 E[||dD/dx||^2] on real samples. With ``return_outputs`` also D(real) (computed with x
    requiring grad, so it also serves the adversarial loss: D is not run twice). Arguments as
    :func:`gradient_penalty`."""
    return _squared_penalty("r1_penalty", discriminator, real, gamma, critic_args, critic_kwargs, return_outputs,
                            scaler, nan_to_num, check_finite, backend)


def r2_penalty(discriminator, fake: torch.Tensor, gamma: float = 10.0, *, critic_args=(), critic_kwargs=None,
               return_outputs: bool = False, scaler=None, nan_to_num: bool = False, check_finite: bool = True,
               backend: str | None = None):
    """R2: gamma / 2 E[||dD/dx||^2] on generated samples (detached). Arguments as :func:`r1_penalty`."""
    return _squared_penalty("r2_penalty", discriminator, fake, gamma, critic_args, critic_kwargs, return_outputs,
                            scaler, nan_to_num, check_finite, backend)


def dragan_penalty(discriminator, real: torch.Tensor, *, weight: float = 10.0, center: float = 1.0,
                   perturbation: float = 0.5, critic_args=(), critic_kwargs=None, generator=None,
                   return_outputs: bool = False, scaler=None, nan_to_num: bool = False, check_finite: bool = True,
                   backend: str | None = None):
    """DRAGAN: weight E[(||dD/dx_hat|| - center)^2] at x_hat = real + eps (x_p - real), x_p = real +
    perturbation std(real) u, u ~ U[0, 1) per element, eps ~ U[0, 1) per sample (Kodali et al.'s code; std over
    the whole batch). x_hat = real + (eps perturbation std) u is one pass (``torch.addcmul`` with a per-sample
    coefficient: read real and u, write x_hat), with no host sync. Arguments as :func:`gradient_penalty`."""
    where = "dragan_penalty"
    _check_samples(where, real=real)
    weight = _check_weight(where, "weight", weight)
    perturbation = _check_weight(where, "perturbation", perturbation)
    real = real.detach()
    noise = torch.rand(real.shape, device=real.device, generator=generator, dtype=real.dtype)
    eps = torch.rand(real.shape[0], device=real.device, generator=generator)
    coef = eps.to(real.dtype if real.dtype == torch.float64 else torch.float32) * (perturbation * real.std())
    x_hat = torch.addcmul(real, noise, coef.to(real.dtype).view(-1, *([1] * (real.dim() - 1))))
    out, g = _gradient(where, discriminator, x_hat.requires_grad_(True), critic_args, critic_kwargs, scaler,
                       nan_to_num, check_finite)
    pen = penalty_of_gradient(g, "norm", weight, center, backend=backend)
    return (pen, out) if return_outputs else pen


class LazyRegularizer:
    """Lazy regularisation (StyleGAN2): ``reg(*args, **kwargs)`` runs ``penalty(*args, **kwargs)`` on every
    ``every``-th call (the first included) and returns it scaled by ``every``, and None on the others, so the
    penalty's expected contribution is unchanged. Its step count is in ``state_dict()`` (resume exactly).

    >>> r1 = fastgan.LazyRegularizer(fastgan.r1_penalty, every=16)
    >>> pen = r1(D, real, gamma=10.0)          # a tensor every 16th step, else None
    """

    def __init__(self, penalty, every: int = 16):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"LazyRegularizer: every must be a positive int, got {every!r}")
        self.penalty, self.every, self.step = penalty, every, 0

    def due(self) -> bool:
        """Whether the next call computes the penalty."""
        return self.step % self.every == 0

    def __call__(self, *args, **kwargs):
        due = self.due()
        self.step += 1
        if not due:
            return None
        out = self.penalty(*args, **kwargs)
        if isinstance(out, tuple):
            return (out[0] * self.every, *out[1:])
        return out * self.every

    def state_dict(self) -> dict:
        return {"step": self.step, "every": self.every}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.every = int(state["step"]), int(state["every"])
