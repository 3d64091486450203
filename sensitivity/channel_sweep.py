"""Per-channel sensitivity of one cut to codec noise (Hu et al., Algorithm 1).

`ChannelSweep` measures ONE image: reference = fn(x); for each channel i, x with only channel i
replaced by its codec round trip; distance to the reference. `measure` averages it over images
into a Profile (with the codec round trip of image k+1 overlapping the sweep of image k);
per-image allocation (sensitivity.perimage) uses ChannelSweep directly.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import vcfc
from vcfc.errors import InputError
from vcfc.spec import CodingSpec

from .distances import Distance, get_distance
from .noise import rd_tables, roundtrip
from .options import PRECISIONS, SweepOptions
from .profile import Profile
from .sweep import ChunkTuner, chunk_size, pick_linear, sweep_exact, sweep_naive, sweep_taylor



def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a GPU is an InputError."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"--device must be auto, cpu or cuda, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device available (use auto or cpu)")
    return dev


@contextlib.contextmanager
def precision(mode: str, device: torch.device) -> Iterator[None]:
    """fp32: exact float32 (TF32 off for cuBLAS and cuDNN, restored afterwards: PyTorch's Hopper
    defaults run fp32 convolutions in TF32, measured 1.3e-2 off the naive loop on an H100);
    tf32: allow TF32; bf16: autocast to bfloat16. Rank agreement with fp32: the sensitivity benchmark."""
    if mode not in PRECISIONS:
        raise InputError(f"unknown precision {mode!r}; choose from {', '.join(PRECISIONS)}")
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = mode == "tf32"
    try:
        if mode == "bf16":
            with torch.autocast(device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _as_batch(x: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
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
                s = sweep_taylor(self.fn, x, xn, self.distance, probes=o.taylor_probes,
                                 chunk=chunk_size(x, o.max_batch, o.max_bytes),
                                 distance="kl" if self.distance.name == "kl" else "mse", seed=self.images)
            else:
                channels = list(o.naive_channels) if o.naive_channels is not None else None
                s = sweep_naive(self.fn, x, self.distance, self.qp, self.spec, channels)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.images += 1
        return s

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


def measure(
    features: Iterable[Any],
    *,
    tail: Callable[[Tensor], Tensor],
    penultimate: Callable[[Tensor], Tensor] | None = None,
    qp_base: int,
    spec: CodingSpec | None = None,
    distance: str = "penultimate",
    options: SweepOptions | None = None,
    rd_qps: Sequence[int] | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
    **option_overrides: Any,
) -> Profile:
    """Per-channel sensitivity profile of a single-tensor cut, averaged over images.

    features: iterable of per-image features, (C,H,W) or (1,C,H,W) tensors/arrays.
    tail / penultimate: callables on (B,C,H,W) batches; the distance says which one it reads.
      For method "taylor" they must be differentiable (pass GraphModules, e.g.
      `split.penultimate_module()`, not no_grad wrappers).
    spec: how features are coded (default: x265, minmax, 8-bit, layout frames -- one picture per
      channel, so one encode per image gives each channel's round trip exactly as if coded alone).
    options / option_overrides: SweepOptions (method, device, max_batch, ..., precision).
    rd_qps: also measure per-channel rate/distortion tables at these QPs (for the Lagrangian).
    """
    opts = SweepOptions.build(options, option_overrides)
    spec = (spec or replace(CodingSpec(), layout="frames")).checked()
    dist = get_distance(distance)
    fn = sweep_function(dist, tail, penultimate)
    spec.check_qp(int(qp_base), "qp_base")
    sweep = ChannelSweep(fn, dist, opts, spec, int(qp_base))
    total: np.ndarray | None = None
    rd_sum: list[np.ndarray] | None = None
    n = 0
    t_codec = t_fwd = 0.0
    for x, xn, waited in _with_noise(features, sweep, progress):
        t1 = time.perf_counter()
        s = sweep(x, xn).numpy()
        t_codec += waited
        t_fwd += time.perf_counter() - t1
        total = s if total is None else total + s
        if rd_qps:
            r, d = rd_tables(x[0].float().cpu(), list(rd_qps), spec)
            rd_sum = [r, d] if rd_sum is None else [rd_sum[0] + r, rd_sum[1] + d]
        n += 1
    if n == 0 or total is None:
        raise InputError("no images to measure")
    m = dict(meta or {})
    m.update({
        "images": n, "codec": spec.codec, "quant": spec.quant, "bits": spec.bits, "layout": spec.layout,
        "preset": spec.preset, "qp_base": int(qp_base), "distance": distance, "mode": "channel",
        "vcfc_version": vcfc.__version__, **sweep.describe(),
        "seconds_codec": t_codec, "seconds_sweep": t_fwd, "seconds_per_image": (t_codec + t_fwd) / n,
    })
    rd = None
    if rd_sum is not None and rd_qps:
        order = np.argsort(list(rd_qps))
        rd = (sorted(int(q) for q in rd_qps), rd_sum[0][:, order] / n, rd_sum[1][:, order] / n)
        m["rd_qps"] = rd[0]
    return Profile.from_arrays(total / n, m, rd=rd)


def _with_noise(features: Iterable[Any], sweep: ChannelSweep, progress: bool) -> Iterator[tuple[Tensor, Tensor | None, float]]:
    """(x, its codec round trip, seconds waited for it) per image, on the sweep's device.

    The round trip of image k+1 runs (ffmpeg, out of process) while image k is swept; the naive
    method codes channel by channel itself and gets no round trip.
    """
    o = sweep.options
    images: Iterable[Any] = features
    if progress:
        from tqdm import tqdm  # deferred: only interactive runs draw a bar

        images = tqdm(features, desc=f"sensitivity ({o.method})", unit="img", file=sys.stderr)
    pool = ThreadPoolExecutor(1) if o.method != "naive" else None

    def noisy(feat: Any) -> tuple[Tensor, Future | None]:
        x = _as_batch(feat, sweep.device, sweep.dtype)
        return x, pool.submit(roundtrip, x[0].float().cpu(), sweep.qp, sweep.spec) if pool else None

    try:
        it = iter(images)
        ahead = [noisy(f) for f in itertools.islice(it, 1)]
        while ahead:
            x, pending = ahead.pop()
            t0 = time.perf_counter()
            xn = _as_batch(pending.result(), sweep.device, sweep.dtype) if pending is not None else None
            waited = time.perf_counter() - t0
            ahead.extend(noisy(f) for f in itertools.islice(it, 1))
            yield x, xn, waited
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
