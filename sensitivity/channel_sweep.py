"""`measure`: per-channel sensitivity of one cut, averaged over images (Hu et al., Algorithm 1).

For every image: reference = fn(x); for each channel i, x with only channel i replaced by its
codec round trip at QP_base; distance to the reference; averaged over images.
"""

from __future__ import annotations

import copy
import itertools
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import vcfc
from vcfc.errors import InputError

from .distances import DISTANCES, get_distance
from .noise import CodecSpec, rd_tables, roundtrip
from .profile import Profile
from .sweep import ChunkTuner, chunk_size, pick_linear, sweep_exact, sweep_naive, sweep_taylor

METHODS = ("exact", "taylor", "naive")


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


def _as_batch(x: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    t = torch.as_tensor(x)
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[0] != 1:
        raise InputError(f"features must be (C,H,W) or (1,C,H,W) per image, got {tuple(t.shape)}")
    return t.to(device, dtype)


def measure(
    features: Iterable[Any],
    *,
    tail: Callable[[Tensor], Tensor],
    penultimate: Callable[[Tensor], Tensor] | None = None,
    qp_base: int,
    codec: str = "x265",
    quant: str = "minmax",
    bits: int = 8,
    layout: str = "frames",
    preset: str | None = None,
    distance: str = "penultimate",
    method: str = "exact",
    device: str | torch.device = "auto",
    max_batch: int = 64,
    max_bytes: int | None = None,
    linear: str = "auto",
    taylor_probes: int = 16,
    dtype: torch.dtype = torch.float32,
    rd_qps: Sequence[int] | None = None,
    naive_channels: Sequence[int] | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> Profile:
    """Per-channel sensitivity profile of a single-tensor cut.

    features: iterable of per-image features, (C,H,W) or (1,C,H,W) tensors/arrays.
    tail / penultimate: callables on (B,C,H,W) batches (on `device`); "penultimate" distance uses
      `penultimate`, the others `tail`. For method "taylor" they must be differentiable (pass the
      GraphModules, e.g. `penultimate_graph(split.tail_module)`, not no_grad wrappers).
    method: exact (batched, chunks of ≤ max_batch variants and ≤ max_bytes), naive (per channel
      one ffmpeg run and a batch-1 forward; `naive_channels` limits it to some channels, the rest
      NaN) or taylor (one backward pass per image).
    linear: on|off|auto -- the leading-conv trick for exact (auto: timed on the first image).
    taylor_probes: random probes of the Taylor estimator (0: plain gradient·noise, see sweep_taylor).
    dtype: compute precision (float64 for equality tests: MSEs of small output differences
      cancel in float32; nn.Module callables are cast, other callables must cope).
    rd_qps: also measure per-channel rate/distortion tables at these QPs (for allocate_lagrangian).
    layout: "frames" (default) codes every channel as its own picture, so one encode per image
      gives each channel's round trip exactly as if it were coded alone.
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if distance not in DISTANCES:
        raise InputError(f"unknown distance {distance!r}; choose from {', '.join(DISTANCES)}")
    if method == "taylor" and distance == "top1":
        raise InputError("method taylor needs a differentiable distance (penultimate, output or kl), not top1")
    if distance == "penultimate" and penultimate is None:
        raise InputError("distance penultimate needs a penultimate callable (or use --distance output/kl/top1)")
    if max_batch < 1:
        raise InputError(f"max_batch must be >= 1, got {max_batch}")
    dev = resolve_device(device)
    fn = penultimate if distance == "penultimate" else tail
    if isinstance(fn, nn.Module):
        fn.to(dev, dtype)
    # CPU convolutions run ~2x faster on channels-last tensors; the sweep works on a converted copy
    # so the caller's module (and the naive baseline) is left as it was.
    fast = dev.type == "cpu" and method == "exact" and isinstance(fn, nn.Module)
    sweep_fn = copy.deepcopy(fn).to(memory_format=torch.channels_last) if fast else fn
    tuner = ChunkTuner(max_batch) if dev.type == "cpu" and max_bytes is None else None
    dist = get_distance(distance)
    spec = CodecSpec(codec, quant, bits, layout, preset)
    lo, hi = spec.qp_limits()
    if not lo <= qp_base <= hi:
        raise InputError(f"qp_base {qp_base} outside {codec}'s QP range {lo}..{hi}")

    total: np.ndarray | None = None
    rd_sum: list[np.ndarray] | None = None
    n = 0
    t_codec = t_fwd = 0.0
    lin = None
    lin_checked = False
    chunk = 1
    images = features
    if progress:
        from tqdm import tqdm

        images = bar = tqdm(features, desc=f"sensitivity ({method})", unit="img", file=sys.stderr)
    # The codec round trip of image k+1 runs (ffmpeg, out of process) while image k is swept.
    pool = ThreadPoolExecutor(1) if method != "naive" else None

    def noisy(feat: Any) -> tuple[Tensor, Future | None]:
        x = _as_batch(feat, dev, dtype)
        return x, pool.submit(roundtrip, x[0].float().cpu(), qp_base, spec) if pool else None

    it = iter(images)
    ahead = [noisy(f) for f in itertools.islice(it, 1)]
    while ahead:
        x, pending = ahead.pop()
        t0 = time.perf_counter()
        xn = None
        if pending is not None:
            xn = _as_batch(pending.result(), dev, dtype)
        ahead.extend(noisy(f) for f in itertools.islice(it, 1))
        t1 = time.perf_counter()
        if method == "exact":
            chunk = chunk_size(x, max_batch, max_bytes)
            if fast and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
                xn = xn.contiguous(memory_format=torch.channels_last)
            if not lin_checked:
                lin, lin_checked = pick_linear(sweep_fn, x, xn, dist, chunk, linear), True
            s = sweep_exact(sweep_fn, x, xn, dist, tuner or chunk, lin)
            chunk = tuner.best if tuner else chunk
        elif method == "taylor":
            s = sweep_taylor(fn, x, xn, dist, probes=taylor_probes, chunk=chunk_size(x, max_batch, max_bytes),
                             distance="kl" if distance == "kl" else "mse", seed=n)
        else:
            s = sweep_naive(fn, x, dist, qp_base, spec, list(naive_channels) if naive_channels is not None else None)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        t_codec += t1 - t0
        t_fwd += t2 - t1
        total = s.numpy() if total is None else total + s.numpy()
        if rd_qps:
            r, d = rd_tables(x[0].float().cpu(), list(rd_qps), spec)
            rd_sum = [r, d] if rd_sum is None else [rd_sum[0] + r, rd_sum[1] + d]
        n += 1
    if pool is not None:
        pool.shutdown(wait=True)
    if n == 0 or total is None:
        raise InputError("no images to measure")
    m = dict(meta or {})
    m.update({
        "images": n, "codec": codec, "quant": quant, "bits": bits, "layout": layout,
        "preset": preset, "qp_base": int(qp_base), "distance": distance, "method": method,
        "mode": "channel", "vcfc_version": vcfc.__version__, "device": str(dev),
        "chunk": chunk if method == "exact" else 1, "taylor_probes": taylor_probes if method == "taylor" else None, "linear_trick": lin is not None,
        "seconds_codec": t_codec, "seconds_sweep": t_fwd, "seconds_per_image": (t_codec + t_fwd) / n,
    })
    rd = None
    if rd_sum is not None and rd_qps:
        rd = (sorted(int(q) for q in rd_qps), *(a / n for a in rd_sum))
        order = np.argsort(list(rd_qps))
        rd = (rd[0], rd[1][:, order], rd[2][:, order])
        m["rd_qps"] = rd[0]
    return Profile.from_arrays(total / n, m, rd=rd)
