"""Scalar quantizers: float (C,H,W) features -> 8/10-bit integer codes + minimal side info.

Registry: QUANTIZERS (name → Quantizer). All map onto codes 0 .. 2**bits-1:
  minmax          per-tensor  [lo, hi] uniform                 arrays lo, hi: (1,)
  minmax-channel  per-channel [lo, hi] uniform                 arrays lo, hi: (C,)
  log             per-tensor, uniform in log1p((x-lo)/s)       arrays lo, hi, scale: (1,)
  zscore          per-channel mean/std, clip at +-k*std        arrays mean, std: (C,); scalar k
A new quantizer = a `Quantizer` subclass in a module here + one entry below. `quantize`,
`dequantize` and `quant_step` check inputs and parameters for every quantizer alike.
"""

from __future__ import annotations

import numpy as np

from vcfc.registry import Registry

from ..errors import PackingError
from .base import BIT_DEPTHS, F32_MAX, Quantizer, QuantParams
from .log import Log
from .minmax import MinMax, MinMaxChannel
from .zscore import ZScore

QUANTIZERS: Registry[Quantizer] = Registry(
    "quantizer", [(q.name, q) for q in (MinMax(), MinMaxChannel(), Log(), ZScore())], error=PackingError)

__all__ = ["BIT_DEPTHS", "QUANTIZERS", "QuantParams", "Quantizer", "dequantize", "quant_step", "quantize"]


def _max_code(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in BIT_DEPTHS:
        raise PackingError(f"bits must be one of {BIT_DEPTHS}, got {bits!r}")
    return (1 << int(bits)) - 1


def _check_input(x: np.ndarray) -> np.ndarray:
    """Validate features (finite, C×H×W, float) and return them unchanged."""
    if not isinstance(x, np.ndarray):
        raise PackingError(f"features must be a numpy array, got {type(x).__name__}")
    if x.ndim != 3:
        raise PackingError(f"features must have shape (C,H,W), got ndim={x.ndim} shape={x.shape}")
    if x.dtype not in (np.float16, np.float32, np.float64):
        raise PackingError(f"features must be float16/float32/float64, got dtype {x.dtype}")
    if x.size == 0:
        raise PackingError(f"features are empty, shape {x.shape}")
    # min/max propagate NaN and expose Inf, so two reductions check finiteness without a copy.
    lo, hi = float(x.min()), float(x.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        n_nan = int(np.isnan(x).sum())
        n_inf = int(np.isinf(x).sum())
        raise PackingError(f"features contain {n_nan} NaN and {n_inf} Inf values out of {x.size}")
    big = max(abs(lo), abs(hi))
    if big > F32_MAX:  # only reachable for float64 input; side info is float32
        raise PackingError(f"features exceed the float32 range (max |x| = {big:.3g} > {F32_MAX:.3g})")
    return x


def quantize(x: np.ndarray, method: str, bits: int, **opts: float) -> tuple[np.ndarray, QuantParams]:
    """Quantize features x (C,H,W) to uint16 codes in [0, 2**bits-1].

    Options: log -> scale (knee, float > 0; default: median of x - min(x) over x > min(x));
             zscore -> k (clip at +-k std, default 3).
    """
    quantizer = QUANTIZERS.get(method)
    maxc = _max_code(bits)
    unknown = sorted(set(opts) - set(quantizer.options))
    if unknown:
        raise PackingError(f"quantizer {method!r} has no option(s) {', '.join(unknown)}")
    return quantizer.quantize(_check_input(x), maxc, int(bits), **opts)


def _check_params(q: np.ndarray, params: QuantParams) -> tuple[Quantizer, int]:
    if not isinstance(params, QuantParams):
        raise PackingError(f"params must be QuantParams, got {type(params).__name__}")
    quantizer = QUANTIZERS.get(params.method)
    maxc = _max_code(params.bits)
    if not isinstance(q, np.ndarray) or q.ndim != 3:
        shape = getattr(q, "shape", None)
        raise PackingError(f"codes must be a (C,H,W) numpy array, got shape {shape}")
    if not np.issubdtype(q.dtype, np.integer):
        raise PackingError(f"codes must be an integer array, got dtype {q.dtype}")
    c = q.shape[0]
    for name, per_channel in quantizer.arrays.items():
        if name not in params.arrays:
            raise PackingError(f"{params.method} params lack array {name!r}")
        want = c if per_channel else 1
        got = params.arrays[name].shape
        if got != (want,):
            raise PackingError(
                f"{params.method} param {name!r} has shape {got}, expected ({want},) for codes of shape {q.shape}")
        if not np.isfinite(params.arrays[name]).all():
            raise PackingError(f"{params.method} param {name!r} is not finite")
    quantizer.check_scalars(params.scalars)
    if q.size and (int(q.min()) < 0 or int(q.max()) > maxc):
        raise PackingError(f"codes outside [0, {maxc}] for {params.bits}-bit params "
                           f"(min {int(q.min())}, max {int(q.max())})")
    return quantizer, maxc


def dequantize(q: np.ndarray, params: QuantParams, out: np.ndarray | None = None,
               block_elements: int = 1 << 22) -> np.ndarray:
    """Reconstruct float32 (C,H,W) features from codes and their QuantParams.

    Works on blocks of channels (at most ``block_elements`` values each) written into ``out``
    (allocated when None), so the float64 temporaries stay small next to the output: a
    512x512x512 tensor decodes in about 1.5x its float32 size instead of 5x.
    """
    quantizer, maxc = _check_params(q, params)
    if out is None:
        out = np.empty(q.shape, np.float32)
    elif out.shape != q.shape or out.dtype != np.float32:
        raise PackingError(f"out must be float32 of shape {q.shape}, got {out.dtype} {out.shape}")
    c = q.shape[0]
    step = max(1, block_elements // max(1, q[0].size)) if c else 1
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        a = {k: (v[c0:c1] if quantizer.arrays[k] else v).astype(np.float64) for k, v in params.arrays.items()}
        x = quantizer.dequantize(q[c0:c1].astype(np.float64) / maxc, a, params.scalars)
        # float64 lo + (hi-lo) can exceed hi by an ulp; keep the result inside float32.
        out[c0:c1] = np.clip(x, -F32_MAX, F32_MAX, out=x)
    return out


def quant_step(params: QuantParams) -> np.ndarray:
    """Largest reconstruction step in feature units, float64 of shape (C,) or (1,).

    Uniform methods: (hi-lo)/maxc.  log: the step at the top of the range (the widest).
    zscore: 2*k*std/maxc (inside the clipping range).
    """
    quantizer = QUANTIZERS.get(params.method)
    maxc = _max_code(params.bits)
    return quantizer.step({k: v.astype(np.float64) for k, v in params.arrays.items()}, params.scalars, maxc)
