"""Scalar quantizers: float (C,H,W) features -> 8/10-bit integer codes + minimal side info.

Every quantizer works the same way:
  1. statistics are computed in float64 (so 1e30 ranges and 1e-30 ranges neither overflow
     nor vanish),
  2. they are rounded to float32 -- the form stored in the bitstream -- and
  3. the codes are computed from those *rounded* parameters, so the encoder and the decoder
     use bit-identical numbers and dequantize(quantize(x)) is within half a step of x
     (up to the final float32 rounding of the output; zscore: for |x-mean| <= k*std, values
     beyond are clipped).  Constant channels/tensors come back exactly.

Methods (all map onto codes 0 .. 2**bits-1):
  minmax          per-tensor  [lo, hi] uniform                 arrays lo, hi: (1,)
  minmax-channel  per-channel [lo, hi] uniform                 arrays lo, hi: (C,)
  log             per-tensor, uniform in log1p((x-lo)/s)      arrays lo, hi, scale: (1,)
                  (s = knee; default median of x-lo over x > lo, see _quantize_log)
  zscore          per-channel mean/std, clip at +-k*std        arrays mean, std: (C,); scalar k
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import PackingError

BIT_DEPTHS = (8, 10)

_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.nextafter(np.float32(0), np.float32(1)))  # smallest positive subnormal

# Which side arrays each method stores, and whether they are per channel (C,) or per tensor (1,).
_ARRAYS: dict[str, dict[str, bool]] = {
    "minmax": {"lo": False, "hi": False},
    "minmax-channel": {"lo": True, "hi": True},
    "log": {"lo": False, "hi": False, "scale": False},
    "zscore": {"mean": True, "std": True},
}
QUANTIZERS = tuple(_ARRAYS)  # the registry: a method is a row of _ARRAYS (+ _OPTIONS)
_OPTIONS: dict[str, tuple[str, ...]] = {
    "minmax": (),
    "minmax-channel": (),
    "log": ("scale",),
    "zscore": ("k",),
}


@dataclass
class QuantParams:
    """Side information of one quantized tensor: everything `dequantize` needs."""

    method: str
    bits: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # float32, 1-D
    scalars: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Normalise so params rebuilt from a container behave like freshly made ones.
        self.arrays = {k: np.ascontiguousarray(v, dtype=np.float32).reshape(-1)
                       for k, v in self.arrays.items()}
        self.scalars = {k: float(v) for k, v in self.scalars.items()}

    @property
    def nbytes(self) -> int:
        """Side-info size in bytes when stored as float32 (arrays and scalars)."""
        return 4 * (sum(a.size for a in self.arrays.values()) + len(self.scalars))


# ----------------------------------------------------------------------------- helpers

def _max_code(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in BIT_DEPTHS:
        raise PackingError(f"bits must be one of {BIT_DEPTHS}, got {bits!r}")
    return (1 << int(bits)) - 1


def _check_method(method: str) -> None:
    if method not in QUANTIZERS:
        raise PackingError(f"unknown quantizer {method!r}; expected one of {', '.join(QUANTIZERS)}")


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
    if big > _F32_MAX:  # only reachable for float64 input; side info is float32
        raise PackingError(f"features exceed the float32 range (max |x| = {big:.3g} > {_F32_MAX:.3g})")
    return x


def _f32_down(v: np.ndarray) -> np.ndarray:
    """Largest float32 <= v (elementwise): a stored lower bound that still covers the data."""
    f = np.asarray(v, dtype=np.float64).astype(np.float32)
    over = f.astype(np.float64) > v
    return np.where(over, np.nextafter(f, np.float32(-np.inf)), f).astype(np.float32)


def _f32_up(v: np.ndarray) -> np.ndarray:
    """Smallest float32 >= v (elementwise)."""
    f = np.asarray(v, dtype=np.float64).astype(np.float32)
    under = f.astype(np.float64) < v
    return np.where(under, np.nextafter(f, np.float32(np.inf)), f).astype(np.float32)


def _range_params(lo64: np.ndarray, hi64: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [lo, hi] enclosing [lo64, hi64]; exact (lo == hi) for constant ranges."""
    lo = _f32_down(lo64)
    hi = _f32_up(hi64)
    const = lo64 == hi64
    # A constant must dequantize to itself, so store its nearest float32 on both ends.
    nearest = lo64.astype(np.float32)
    return np.where(const, nearest, lo), np.where(const, nearest, hi)


def _uniform_codes(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, maxc: int) -> np.ndarray:
    """Round x onto maxc+1 uniform levels of [lo, hi] (lo/hi broadcastable to x)."""
    lo64 = np.asarray(lo, np.float64)
    span = np.asarray(hi, np.float64) - lo64  # float64: hi-lo of +-3e38 would overflow float32
    gain = np.where(span > 0, maxc / np.where(span > 0, span, 1.0), 0.0)
    if x.dtype != np.float64 and np.all(span < _F32_MAX) and np.all(gain < _F32_MAX):
        # Hot path (float16/32 features): in-place float32 arithmetic, ~4x faster than float64
        # and well inside half a code step of the exact value.
        t = x.astype(np.float32)  # a copy we may overwrite
        t -= lo64.astype(np.float32)
        t *= gain.astype(np.float32)
    else:
        t = (x.astype(np.float64, copy=False) - lo64) * gain
    np.rint(t, out=t)
    np.clip(t, 0, maxc, out=t)
    return t.astype(np.uint16)


def _to_codes(v: np.ndarray, maxc: int) -> np.ndarray:
    return np.clip(np.rint(v), 0, maxc).astype(np.uint16)


def _per_channel(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64)[:, None, None]


# ----------------------------------------------------------------------------- public API

def quantize(x: np.ndarray, method: str, bits: int, **opts: float) -> tuple[np.ndarray, QuantParams]:
    """Quantize features x (C,H,W) to uint16 codes in [0, 2**bits-1].

    Options: log -> scale (knee, float > 0; default: median of x - min(x) over x > min(x));
             zscore -> k (clip at +-k std, default 3).
    """
    _check_method(method)
    maxc = _max_code(bits)
    unknown = sorted(set(opts) - set(_OPTIONS[method]))
    if unknown:
        raise PackingError(f"quantizer {method!r} has no option(s) {', '.join(unknown)}")
    x64 = _check_input(x)
    c = x64.shape[0]

    if method == "minmax":
        lo, hi = _range_params(np.array([x64.min()], np.float64), np.array([x64.max()], np.float64))
        q = _uniform_codes(x64, lo[0], hi[0], maxc)
        return q, QuantParams(method, int(bits), {"lo": lo, "hi": hi})

    if method == "minmax-channel":
        flat = x64.reshape(c, -1)
        lo, hi = _range_params(flat.min(axis=1).astype(np.float64), flat.max(axis=1).astype(np.float64))
        q = _uniform_codes(x64, lo[:, None, None], hi[:, None, None], maxc)
        return q, QuantParams(method, int(bits), {"lo": lo, "hi": hi})

    if method == "log":
        return _quantize_log(x64.astype(np.float64, copy=False), maxc, int(bits), opts.get("scale"))

    return _quantize_zscore(x64.astype(np.float64, copy=False), maxc, int(bits), opts.get("k", 3.0))


def _quantize_log(x64: np.ndarray, maxc: int, bits: int, scale: float | None) -> tuple[np.ndarray, QuantParams]:
    # t = log1p((x - lo)/s) / log1p((hi - lo)/s).  Below the knee s the map is ~linear, above
    # it logarithmic, so the many small ReLU activations keep fine steps while the rare huge
    # ones cost few codes.  Default s = median of the values above the minimum (x - lo > 0):
    # the typical magnitude of the "active" part, robust to both the spike of zeros and the
    # tail (a mean would be dragged up by the tail and waste the fine steps).  For non-heavy-
    # tailed data it is ~range/2, i.e. almost uniform, so nothing is lost vs minmax.  Floored
    # at 1e-6 of the range so log1p(range/s) <= ~14 bounds the widest (top) step.
    lo, hi = _range_params(np.array([x64.min()]), np.array([x64.max()]))
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
    s32 = np.float32(min(max(s, _F32_TINY), _F32_MAX))
    params = QuantParams("log", bits, {"lo": lo, "hi": hi, "scale": np.array([s32])})
    if span <= 0:
        return np.zeros(x64.shape, np.uint16), params
    s64 = float(s32)
    denom = np.log1p(span / s64)
    t = np.log1p((x64 - lo64) / s64) / denom
    return _to_codes(t * maxc, maxc), params


def _quantize_zscore(x64: np.ndarray, maxc: int, bits: int, k: float) -> tuple[np.ndarray, QuantParams]:
    # After "Efficient Feature Compression for Machines with Global Statistics Preservation":
    # per-channel mean/std are sent, values clipped at +-k*std, [-k, k] mapped onto the codes.
    k = float(k)
    if not np.isfinite(k) or k <= 0:
        raise PackingError(f"zscore option k must be a finite float > 0, got {k!r}")
    c = x64.shape[0]
    flat = x64.reshape(c, -1)
    mean = flat.mean(axis=1)
    const = flat.min(axis=1) == flat.max(axis=1)
    mean = np.where(const, flat[:, 0], mean)  # exact value for constant channels (no fp drift)
    mean32 = mean.astype(np.float32)
    std = np.sqrt(np.mean((flat - mean32.astype(np.float64)[:, None]) ** 2, axis=1))
    std32 = np.where(const, 0.0, np.minimum(std, _F32_MAX)).astype(np.float32)
    s = _per_channel(std32)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(s > 0, (x64 - _per_channel(mean32)) / np.where(s > 0, s, 1.0), 0.0)
    q = _to_codes((np.clip(z, -k, k) + k) * (maxc / (2 * k)), maxc)
    return q, QuantParams("zscore", bits, {"mean": mean32, "std": std32}, {"k": k})


def _check_params(q: np.ndarray, params: QuantParams) -> int:
    if not isinstance(params, QuantParams):
        raise PackingError(f"params must be QuantParams, got {type(params).__name__}")
    _check_method(params.method)
    maxc = _max_code(params.bits)
    if not isinstance(q, np.ndarray) or q.ndim != 3:
        shape = getattr(q, "shape", None)
        raise PackingError(f"codes must be a (C,H,W) numpy array, got shape {shape}")
    if not np.issubdtype(q.dtype, np.integer):
        raise PackingError(f"codes must be an integer array, got dtype {q.dtype}")
    c = q.shape[0]
    for name, per_channel in _ARRAYS[params.method].items():
        if name not in params.arrays:
            raise PackingError(f"{params.method} params lack array {name!r}")
        want = c if per_channel else 1
        got = params.arrays[name].shape
        if got != (want,):
            raise PackingError(
                f"{params.method} param {name!r} has shape {got}, expected ({want},) for codes of shape {q.shape}")
        if not np.isfinite(params.arrays[name]).all():
            raise PackingError(f"{params.method} param {name!r} is not finite")
    if params.method == "zscore":
        k = params.scalars.get("k")
        if k is None or not np.isfinite(k) or k <= 0:
            raise PackingError(f"zscore params need a finite scalar k > 0, got {k!r}")
    if q.size and (int(q.min()) < 0 or int(q.max()) > maxc):
        raise PackingError(f"codes outside [0, {maxc}] for {params.bits}-bit params "
                           f"(min {int(q.min())}, max {int(q.max())})")
    return maxc


def dequantize(q: np.ndarray, params: QuantParams, out: np.ndarray | None = None,
               block_elements: int = 1 << 22) -> np.ndarray:
    """Reconstruct float32 (C,H,W) features from codes and their QuantParams.

    Works on blocks of channels (at most ``block_elements`` values each) written into ``out``
    (allocated when None), so the float64 temporaries stay small next to the output: a
    512x512x512 tensor decodes in about 1.5x its float32 size instead of 5x.
    """
    maxc = _check_params(q, params)
    if out is None:
        out = np.empty(q.shape, np.float32)
    elif out.shape != q.shape or out.dtype != np.float32:
        raise PackingError(f"out must be float32 of shape {q.shape}, got {out.dtype} {out.shape}")
    c = q.shape[0]
    step = max(1, block_elements // max(1, q[0].size)) if c else 1
    for c0 in range(0, c, step):
        c1 = min(c, c0 + step)
        out[c0:c1] = _dequantize_block(q[c0:c1], params, maxc, c0, c1)
    return out


def _dequantize_block(q: np.ndarray, params: QuantParams, maxc: int, c0: int, c1: int) -> np.ndarray:
    per_channel = _ARRAYS[params.method]
    a = {k: (v[c0:c1] if per_channel[k] else v).astype(np.float64) for k, v in params.arrays.items()}
    v = q.astype(np.float64) / maxc  # in [0, 1]
    if params.method in ("minmax", "minmax-channel"):
        lo, hi = a["lo"], a["hi"]
        if params.method == "minmax-channel":
            lo, hi = lo[:, None, None], hi[:, None, None]
        x = lo + v * (hi - lo)
    elif params.method == "log":
        lo, hi, s = a["lo"][0], a["hi"][0], a["scale"][0]
        x = lo + s * np.expm1(v * np.log1p((hi - lo) / s)) if hi > lo else np.full(q.shape, lo)
    else:
        k = params.scalars["k"]
        x = a["mean"][:, None, None] + a["std"][:, None, None] * (v * 2 * k - k)
    # float64 lo + (hi-lo) can exceed hi by an ulp; keep the result inside float32.
    return np.clip(x, -_F32_MAX, _F32_MAX, out=x)


def quant_step(params: QuantParams) -> np.ndarray:
    """Largest reconstruction step in feature units, float64 of shape (C,) or (1,).

    Uniform methods: (hi-lo)/maxc.  log: the step at the top of the range (the widest).
    zscore: 2*k*std/maxc (inside the clipping range).
    """
    _check_method(params.method)
    maxc = _max_code(params.bits)
    a = {k: v.astype(np.float64) for k, v in params.arrays.items()}
    if params.method in ("minmax", "minmax-channel"):
        return (a["hi"] - a["lo"]) / maxc
    if params.method == "log":
        lo, hi, s = a["lo"], a["hi"], a["scale"]
        span = hi - lo
        with np.errstate(divide="ignore", invalid="ignore"):
            step = (s + span) * -np.expm1(-np.log1p(span / s) / maxc)
        return np.where(span > 0, step, 0.0)
    return 2.0 * params.scalars["k"] * a["std"] / maxc
