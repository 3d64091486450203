"""Codec backends: numpy frames <-> compressed payload bytes, through ffmpeg (encode) and PyAV (decode).

``get_codec(name, ffmpeg=None)`` returns a backend with ``encode(frames, bits, qp, preset)`` and
``decode(payload, n, height, width, bits)``. Names: x265, vvenc, jpeg, lossless.
"""

from __future__ import annotations

from ..errors import InputError
from .base import Codec
from .jpeg import JpegCodec
from .vvenc import VvencCodec
from .x265 import LosslessCodec, X265Codec

CODECS: dict[str, type[Codec]] = {c.name: c for c in (X265Codec, VvencCodec, JpegCodec, LosslessCodec)}


def get_codec(name: str, ffmpeg: str | None = None) -> Codec:
    """The backend called ``name``; ``ffmpeg`` overrides the binary (else $VCFC_FFMPEG, imageio-ffmpeg's)."""
    if name not in CODECS:
        raise InputError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}")
    return CODECS[name](ffmpeg)


__all__ = ["CODECS", "Codec", "JpegCodec", "LosslessCodec", "VvencCodec", "X265Codec", "get_codec"]
