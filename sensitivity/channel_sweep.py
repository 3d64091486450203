"""`ChannelSweep`: one image's per-channel sensitivity to codec noise (Hu et al., Algorithm 1).

Reference = fn(x); for each channel i, x with only channel i replaced by its codec round trip;
distance to the reference. Per-image allocation (perimage, rdo) uses it directly; `measure`
(vcfc.sensitivity.measure_profile) averages it over images into a Profile.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from vcfc.errors import InputError
from vcfc.spec import CodingSpec

from .device import precision, resolve_device
from .distances import Distance
from .kernels import ChunkTuner, chunk_size, pick_linear, sweep_exact, sweep_naive, sweep_taylor
from .options import SweepOptions


def as_batch(x: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    t = torch.as_tensor(x)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1:
        raise InputError(f"features must be (C,H,W) or (1,C,H,W) per image, got {tuple(t.shape)}")
    return t.to(device, dtype)


class ChannelSweep:
    """One image's per-channel distances: fn(x) vs fn(x with channel i from xn), for every i."""

    def __init__(self, fn: Callable[[Tensor], Tensor], distance: Distance, options: SweepOptions,
                 spec: CodingSpec, qp: int) -> None:
        if options.method == "taylor" and not distance.differentiable:
            raise InputError(f"method taylor needs a differentiable distance, not {distance.name}")
        self.options, self.distance, self.spec, self.qp = options, distance, spec, qp
        self.device = resolve_device(options.device)
        self.dtype = options.dtype if isinstance(options.dtype, torch.dtype) else getattr(torch, options.dtype)
        if isinstance(fn, nn.Module):
            fn.to(self.device, self.dtype)
        self.fn = fn
        # CPU convolutions run ~2x faster on channels-last tensors; the sweep works on a converted
        # copy so the caller's module (and the naive baseline) is left as it was.
        self.fast = self.device.type == "cpu" and options.method == "exact" and isinstance(fn, nn.Module)
        self.sweep_fn = copy.deepcopy(fn).to(memory_format=torch.channels_last) if self.fast else fn
        self.tuner = ChunkTuner(options.max_batch) if self.device.type == "cpu" and options.max_bytes is None else None
        self.linear = None
        self.linear_checked = False
        self.chunk = 1
        self.images = 0

    def __call__(self, x: Tensor, xn: Tensor | None) -> Tensor:
        """(C,) float64 distances on the CPU; x and xn are (1,C,H,W) on the sweep's device."""
        o = self.options
        with precision(o.precision, self.device):
            if o.method == "exact":
                s = self._exact(x, xn)
            elif o.method == "taylor":
                s = self.taylor(x, xn, o.taylor_probes, seed=self.images)
            else:
                channels = list(o.naive_channels) if o.naive_channels is not None else None
                s = sweep_naive(self.fn, x, self.distance, self.qp, self.spec, channels)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.images += 1
        return s

    def taylor(self, x: Tensor, xn: Tensor, probes: int, seed: int) -> Tensor:
        """(C,) the Taylor estimate of the distances (sweep_taylor) with these probes and seed,
        whatever this sweep's method; the distance must be differentiable."""
        o = self.options
        with precision(o.precision, self.device):
            return sweep_taylor(self.fn, x, xn, self.distance, probes=probes,
                                chunk=chunk_size(x, o.max_batch, o.max_bytes),
                                distance="kl" if self.distance.name == "kl" else "mse", seed=seed)

    def _exact(self, x: Tensor, xn: Tensor) -> Tensor:
        o = self.options
        self.chunk = chunk_size(x, o.max_batch, o.max_bytes)
        if self.fast and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
            xn = xn.contiguous(memory_format=torch.channels_last)
        if not self.linear_checked:
            self.linear = pick_linear(self.sweep_fn, x, xn, self.distance, self.chunk, o.linear)
            self.linear_checked = True
        s = sweep_exact(self.sweep_fn, x, xn, self.distance, self.tuner or self.chunk, self.linear)
        self.chunk = self.tuner.best if self.tuner else self.chunk
        return s

    def describe(self) -> dict[str, Any]:
        o = self.options
        return {"method": o.method, "device": str(self.device), "precision": o.precision,
                "chunk": self.chunk if o.method == "exact" else 1,
                "taylor_probes": o.taylor_probes if o.method == "taylor" else None,
                "linear_trick": self.linear is not None}


def sweep_function(distance: Distance, tail: Callable[[Tensor], Tensor],
                   penultimate: Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor]:
    """The callable whose output ``distance`` compares."""
    if distance.reads == "penultimate":
        if penultimate is None:
            raise InputError("distance penultimate needs a penultimate callable (or use --distance output/kl/top1)")
        return penultimate
    return tail
