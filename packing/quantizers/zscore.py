"""Z-score quantizer: per-channel mean/std, values clipped at ±k·std, [-k, k] onto the codes.

After "Efficient Feature Compression for Machines with Global Statistics Preservation".
"""

from __future__ import annotations

import numpy as np

from ..errors import PackingError
from .base import F32_MAX, Quantizer, QuantParams, per_channel, to_codes


class ZScore(Quantizer):
    name = "zscore"
    description = "per-channel mean/std, clipped at ±k·std (k = 3 unless given)"
    arrays = {"mean": True, "std": True}
    options = ("k",)

    def quantize(self, x, maxc, bits, k=3.0, **opts):
        k = float(k)
        if not np.isfinite(k) or k <= 0:
            raise PackingError(f"zscore option k must be a finite float > 0, got {k!r}")
        x64 = x.astype(np.float64, copy=False)
        flat = x64.reshape(x64.shape[0], -1)
        const = flat.min(axis=1) == flat.max(axis=1)
        mean = np.where(const, flat[:, 0], flat.mean(axis=1))  # exact value for constant channels
        mean32 = mean.astype(np.float32)
        std = np.sqrt(np.mean((flat - mean32.astype(np.float64)[:, None]) ** 2, axis=1))
        std32 = np.where(const, 0.0, np.minimum(std, F32_MAX)).astype(np.float32)
        s = per_channel(std32)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(s > 0, (x64 - per_channel(mean32)) / np.where(s > 0, s, 1.0), 0.0)
        q = to_codes((np.clip(z, -k, k) + k) * (maxc / (2 * k)), maxc)
        return q, QuantParams(self.name, bits, {"mean": mean32, "std": std32}, {"k": k})

    def dequantize(self, v, a, scalars):
        k = scalars["k"]
        return a["mean"][:, None, None] + a["std"][:, None, None] * (v * 2 * k - k)

    def step(self, a, scalars, maxc):
        return 2.0 * scalars["k"] * a["std"] / maxc

    def check_scalars(self, scalars):
        k = scalars.get("k")
        if k is None or not np.isfinite(k) or k <= 0:
            raise PackingError(f"zscore params need a finite scalar k > 0, got {k!r}")
