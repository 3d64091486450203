"""What every quantizer shares: its side information (`QuantParams`), the `Quantizer` interface
and the float32 rounding rules that make the encoder and the decoder use identical numbers.

Every quantizer works the same way:
  1. statistics are computed in float64 (so 1e30 ranges and 1e-30 ranges neither overflow
     nor vanish),
  2. they are rounded to float32 -- the form stored in the bitstream -- and
  3. the codes are computed from those *rounded* parameters, so the encoder and the decoder
     use bit-identical numbers and dequantize(quantize(x)) is within half a step of x
     (up to the final float32 rounding of the output). Constant channels/tensors come back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BIT_DEPTHS = (8, 10)

F32_MAX = float(np.finfo(np.float32).max)
F32_TINY = float(np.nextafter(np.float32(0), np.float32(1)))  # smallest positive subnormal


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


class Quantizer:
    """One quantization method: float (C,H,W) features → codes 0 .. maxc and back.

    ``arrays`` names the float32 side arrays it stores and whether each is per channel (C,) or
    per tensor (1,); ``options`` the keyword options ``quantize`` accepts. The public functions
    in ``vcfc.packing.quantizers`` validate inputs and parameters before calling these methods.
    """

    name: str = ""
    description: str = ""
    arrays: dict[str, bool] = {}
    options: tuple[str, ...] = ()

    def quantize(self, x: np.ndarray, maxc: int, bits: int, **opts: float) -> tuple[np.ndarray, QuantParams]:
        """Codes (uint16, shape of ``x``) and parameters of finite, validated (C,H,W) features."""
        raise NotImplementedError

    def dequantize(self, v: np.ndarray, a: dict[str, np.ndarray], scalars: dict[str, float]) -> np.ndarray:
        """float64 features of codes scaled to [0, 1] (``v`` = codes / maxc, a block of channels);
        ``a``: the side arrays as float64, per-channel ones sliced to the block's channels."""
        raise NotImplementedError

    def step(self, a: dict[str, np.ndarray], scalars: dict[str, float], maxc: int) -> np.ndarray:
        """Largest reconstruction step in feature units, (C,) or (1,)."""
        raise NotImplementedError

    def check_scalars(self, scalars: dict[str, float]) -> None:
        """PackingError unless the stored scalar parameters are usable (none by default)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# ----------------------------------------------------------------------------- float32 rules

def f32_down(v: np.ndarray) -> np.ndarray:
    """Largest float32 <= v (elementwise): a stored lower bound that still covers the data."""
    f = np.asarray(v, dtype=np.float64).astype(np.float32)
    over = f.astype(np.float64) > v
    return np.where(over, np.nextafter(f, np.float32(-np.inf)), f).astype(np.float32)


def f32_up(v: np.ndarray) -> np.ndarray:
    """Smallest float32 >= v (elementwise)."""
    f = np.asarray(v, dtype=np.float64).astype(np.float32)
    under = f.astype(np.float64) < v
    return np.where(under, np.nextafter(f, np.float32(np.inf)), f).astype(np.float32)


def range_params(lo64: np.ndarray, hi64: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 [lo, hi] enclosing [lo64, hi64]; exact (lo == hi) for constant ranges."""
    lo = f32_down(lo64)
    hi = f32_up(hi64)
    const = lo64 == hi64
    # A constant must dequantize to itself, so store its nearest float32 on both ends.
    nearest = lo64.astype(np.float32)
    return np.where(const, nearest, lo), np.where(const, nearest, hi)


def uniform_codes(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, maxc: int) -> np.ndarray:
    """Round x onto maxc+1 uniform levels of [lo, hi] (lo/hi broadcastable to x)."""
    lo64 = np.asarray(lo, np.float64)
    span = np.asarray(hi, np.float64) - lo64  # float64: hi-lo of +-3e38 would overflow float32
    gain = np.where(span > 0, maxc / np.where(span > 0, span, 1.0), 0.0)
    if x.dtype != np.float64 and np.all(span < F32_MAX) and np.all(gain < F32_MAX):
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


def to_codes(v: np.ndarray, maxc: int) -> np.ndarray:
    return np.clip(np.rint(v), 0, maxc).astype(np.uint16)


def per_channel(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64)[:, None, None]
