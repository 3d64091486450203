"""Uniform quantizers over [min, max]: per tensor (minmax) and per channel (minmax-channel)."""

from __future__ import annotations

import numpy as np

from .base import Quantizer, QuantParams, range_params, uniform_codes


class MinMax(Quantizer):
    name = "minmax"
    description = "per-tensor [min, max], uniform"
    arrays = {"lo": False, "hi": False}

    def quantize(self, x, maxc, bits, **opts):
        lo, hi = range_params(np.array([x.min()], np.float64), np.array([x.max()], np.float64))
        return uniform_codes(x, lo[0], hi[0], maxc), QuantParams(self.name, bits, {"lo": lo, "hi": hi})

    def dequantize(self, v, a, scalars):
        return a["lo"] + v * (a["hi"] - a["lo"])

    def step(self, a, scalars, maxc):
        return (a["hi"] - a["lo"]) / maxc


class MinMaxChannel(MinMax):
    name = "minmax-channel"
    description = "per-channel [min, max], uniform"
    arrays = {"lo": True, "hi": True}

    def quantize(self, x, maxc, bits, **opts):
        flat = x.reshape(x.shape[0], -1)
        lo, hi = range_params(flat.min(axis=1).astype(np.float64), flat.max(axis=1).astype(np.float64))
        q = uniform_codes(x, lo[:, None, None], hi[:, None, None], maxc)
        return q, QuantParams(self.name, bits, {"lo": lo, "hi": hi})

    def dequantize(self, v, a, scalars):
        lo, hi = a["lo"][:, None, None], a["hi"][:, None, None]
        return lo + v * (hi - lo)
