"""Codec backends: numpy frames <-> compressed payload bytes, through ffmpeg (encode) and PyAV (decode).

``get_codec(name, ffmpeg=None, threads=None)`` returns a backend with ``encode(frames, bits, qp,
preset)``, ``decode(payload, n, height, width, bits)`` and the per-picture ``split_frames`` /
``join_frames`` / ``frame_sizes``. ``CODECS`` maps each name to its class, whose attributes
(encoder, decoder, bit_depths, presets, qp_range, ...) describe it to the other layers.
Adding a codec = one module + one entry in ``BACKENDS`` (CODECS, the registry, is made from it).
"""

from __future__ import annotations

from ..registry import Registry
from .av1 import Av1Codec
from .base import Codec, FfmpegCodec
from .jpeg import JpegCodec
from .vvenc import VvencCodec
from .x265 import LosslessCodec, X265Codec

BACKENDS: tuple[type[Codec], ...] = (X265Codec, VvencCodec, JpegCodec, LosslessCodec, Av1Codec)
CODECS: Registry[type[Codec]] = Registry("codec", [(c.name, c) for c in BACKENDS])


def get_codec(name: str, ffmpeg: str | None = None, threads: int | None = None) -> Codec:
    """The backend called ``name``; ``ffmpeg`` overrides the binary (else $VCFC_FFMPEG, imageio-ffmpeg's);
    ``threads`` limits encoder and decoder threads (None: their own defaults)."""
    return CODECS.get(name)(ffmpeg, threads)


__all__ = ["BACKENDS", "CODECS", "Av1Codec", "Codec", "FfmpegCodec", "JpegCodec", "LosslessCodec", "VvencCodec",
           "X265Codec", "get_codec"]
