"""`measure`: a dataset-level sensitivity profile, the one-channel sweep averaged over images,
with the codec round trip of image k+1 running (ffmpeg, out of process) while image k is swept."""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import numpy as np
from torch import Tensor

import vcfc
from vcfc.errors import InputError
from vcfc.spec import CodingSpec

from .channel_sweep import ChannelSweep, as_batch, sweep_function
from .distances import get_distance
from .noise import rd_tables, roundtrip
from .options import SweepOptions
from .profile import Profile


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
        x = as_batch(feat, sweep.device, sweep.dtype)
        return x, pool.submit(roundtrip, x[0].float().cpu(), sweep.qp, sweep.spec) if pool else None

    try:
        it = iter(images)
        ahead = [noisy(f) for f in itertools.islice(it, 1)]
        while ahead:
            x, pending = ahead.pop()
            t0 = time.perf_counter()
            xn = as_batch(pending.result(), sweep.device, sweep.dtype) if pending is not None else None
            waited = time.perf_counter() - t0
            ahead.extend(noisy(f) for f in itertools.islice(it, 1))
            yield x, xn, waited
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
