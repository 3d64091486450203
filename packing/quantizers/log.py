"""Logarithmic quantizer for heavy-tailed (ReLU) features: uniform in log1p((x - lo) / s)."""

from __future__ import annotations

import numpy as np

from ..errors import PackingError
from .base import F32_MAX, F32_TINY, Quantizer, QuantParams, range_params, to_codes


class Log(Quantizer):
    name = "log"
    description = "per-tensor, uniform in log1p((x - min) / knee): fine steps for the many small values"
    arrays = {"lo": False, "hi": False, "scale": False}
    options = ("scale",)

    def quantize(self, x, maxc, bits, scale=None, **opts):
        # t = log1p((x - lo)/s) / log1p((hi - lo)/s).  Below the knee s the map is ~linear, above
        # it logarithmic, so the many small ReLU activations keep fine steps while the rare huge
        # ones cost few codes.  Default s = median of the values above the minimum (x - lo > 0):
        # the typical magnitude of the "active" part, robust to both the spike of zeros and the
        # tail (a mean would be dragged up by the tail and waste the fine steps).  For non-heavy-
        # tailed data it is ~range/2, i.e. almost uniform, so nothing is lost vs minmax.  Floored
        # at 1e-6 of the range so log1p(range/s) <= ~14 bounds the widest (top) step.
        x64 = x.astype(np.float64, copy=False)
        lo, hi = range_params(np.array([x64.min()]), np.array([x64.max()]))
        lo64, hi64 = float(lo[0]), float(hi[0])
        span = hi64 - lo64
        if scale is None:
            s = 1.0
            if span > 0:
                flat = x64.reshape(-1)
                flat = flat[:: max(1, flat.size // (1 << 20))]  # a median of ~1M samples is plenty
                active = flat[flat > lo64] - lo64
                s = float(np.median(active)) if active.size else span
            s = max(s, span * 1e-6)
        else:
            s = float(scale)
            if not np.isfinite(s) or s <= 0:
                raise PackingError(f"log quantizer scale must be a finite float > 0, got {scale!r}")
        s32 = np.float32(min(max(s, F32_TINY), F32_MAX))
        params = QuantParams(self.name, bits, {"lo": lo, "hi": hi, "scale": np.array([s32])})
        if span <= 0:
            return np.zeros(x64.shape, np.uint16), params
        s64 = float(s32)
        t = np.log1p((x64 - lo64) / s64) / np.log1p(span / s64)
        return to_codes(t * maxc, maxc), params

    def dequantize(self, v, a, scalars):
        lo, hi, s = a["lo"][0], a["hi"][0], a["scale"][0]
        return lo + s * np.expm1(v * np.log1p((hi - lo) / s)) if hi > lo else np.full(v.shape, lo)

    def step(self, a, scalars, maxc):
        # the widest step, at the top of the range
        lo, hi, s = a["lo"], a["hi"], a["scale"]
        span = hi - lo
        with np.errstate(divide="ignore", invalid="ignore"):
            step = (s + span) * -np.expm1(-np.log1p(span / s) / maxc)
        return np.where(span > 0, step, 0.0)
