"""The Codec interface and the input checks every backend shares."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..ffmpeg import find_ffmpeg


class Codec:
    """One codec backend. Frames are (N, H, W) uint16 codes < 2**bits; payloads are opaque bytes."""

    name: str = ""
    bit_depths: tuple[int, ...] = (8, 10)
    align: int = 8  # H and W must be multiples of this (packing pads to it)
    presets: tuple[str, ...] = ()
    default_preset: str = ""
    qp_range: tuple[int, int] = (0, 51)
    uses_qp: bool = True
    min_size: int = 1  # smaller frames are edge-padded to this before coding, cropped after

    def coded_size(self, height: int, width: int) -> tuple[int, int]:
        return max(height, self.min_size), max(width, self.min_size)

    def pad_to_min(self, frames: np.ndarray) -> np.ndarray:
        _, h, w = frames.shape
        ch, cw = self.coded_size(h, w)
        if (ch, cw) == (h, w):
            return frames
        return np.pad(frames, ((0, 0), (0, ch - h), (0, cw - w)), mode="edge")

    def __init__(self, ffmpeg: str | None = None) -> None:
        self._ffmpeg_override = ffmpeg

    @property
    def ffmpeg(self) -> str:
        # Resolved lazily: decoding runs in-process (PyAV / Pillow) and needs no ffmpeg binary.
        return find_ffmpeg(self._ffmpeg_override)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def encode(self, frames: np.ndarray, bits: int, qp: int, preset: str | None = None) -> bytes:
        raise NotImplementedError

    def decode(self, payload: bytes, n: int, height: int, width: int, bits: int) -> np.ndarray:
        raise NotImplementedError

    # -- checks ---------------------------------------------------------------------------
    def check_bits(self, bits: int) -> None:
        if isinstance(bits, bool) or bits not in self.bit_depths:
            raise InputError(f"codec {self.name} supports {'/'.join(map(str, self.bit_depths))}-bit, not {bits!r}")

    def check_encode_args(self, frames: np.ndarray, bits: int, qp: int, preset: str | None) -> str:
        """Validate everything encode() gets; return the preset to use."""
        self.check_bits(bits)
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint16:
            got = frames.dtype if isinstance(frames, np.ndarray) else type(frames).__name__
            raise InputError(f"codec {self.name}: frames must be a uint16 numpy array, got {got}")
        if frames.ndim != 3 or 0 in frames.shape:
            raise InputError(f"codec {self.name}: frames must be a non-empty (N,H,W) array, got shape {frames.shape}")
        _, h, w = frames.shape
        if h % self.align or w % self.align:
            raise InputError(f"codec {self.name}: frame size {h}x{w} is not a multiple of {self.align}")
        if int(frames.max()) >= 1 << bits:
            raise InputError(f"codec {self.name}: frame values reach {int(frames.max())}, above {bits}-bit")
        if self.uses_qp:
            lo, hi = self.qp_range
            if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)) or not lo <= qp <= hi:
                raise InputError(f"codec {self.name}: qp must be an integer in [{lo}, {hi}], got {qp!r}")
        preset = self.default_preset if preset is None else preset
        if preset not in self.presets:
            raise InputError(f"codec {self.name} has no preset {preset!r}; choose from {', '.join(self.presets)}")
        return preset

    def check_decode_args(self, n: int, height: int, width: int, bits: int) -> None:
        self.check_bits(bits)
        for label, v in (("frame count", n), ("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise InputError(f"codec {self.name}: {label} must be a positive integer, got {v!r}")
