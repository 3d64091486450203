"""Grayscale baseline JPEG per frame with Pillow (MSFC's baseline). 8-bit only.

qp maps to JPEG quality 100 - qp (qp 0..99), so a higher QP is coarser as for the video codecs.
Payload: for each frame a little-endian u32 length followed by that many bytes of JPEG.
Presets: "optimized" (optimal Huffman tables, the default) or "baseline" (standard tables).
Every frame is a self-contained JPEG, so split_frames cuts at the length fields (empty prefix).
"""

from __future__ import annotations

import io
import struct

import numpy as np
from PIL import Image

from vcfc.packing.color import check_rgb

from ..errors import CodecError, InputError
from .base import Codec


class JpegCodec(Codec):
    name = "jpeg"
    description = "baseline JPEG per frame (Pillow), grayscale, 8-bit; qp = 100 - quality"
    encoder = None  # coded in-process by Pillow
    decoder = None
    bit_depths = (8,)
    align = 8
    presets = ("optimized", "baseline")
    default_preset = "optimized"
    qp_range = (0, 99)
    image_format = "jpeg"  # Pillow's (libjpeg's) JFIF YCbCr 4:2:0, as image anchors are coded
    image_align = 1

    def encode_image(self, rgb: np.ndarray, qp: int, preset: str | None = None) -> bytes:
        preset = self.check_preset(preset)
        self.check_qp(qp)
        buf = io.BytesIO()
        try:
            Image.fromarray(check_rgb(rgb), "RGB").save(buf, "JPEG", quality=100 - int(qp), subsampling=2,
                                                        optimize=preset == "optimized")
        except ValueError as exc:
            raise InputError(f"codec {self.name}: {exc}") from None
        return buf.getvalue()

    def decode_image(self, payload: bytes, height: int, width: int) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(payload), formats=["JPEG"]) as im:
                im.load()
                if im.mode != "RGB" or im.size != (width, height):
                    raise CodecError(f"jpeg picture is {im.mode} {im.size[1]}x{im.size[0]}, expected RGB {height}x{width}")
                return np.asarray(im, np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise CodecError(f"jpeg picture undecodable: {exc}") from None

    def encode(self, frames: np.ndarray, bits: int, qp: int, preset: str | None = None) -> bytes:
        preset = self.check_encode_args(frames, bits, qp, preset)
        out = bytearray()
        for f in frames:
            buf = io.BytesIO()
            Image.fromarray(f.astype(np.uint8), "L").save(buf, "JPEG", quality=100 - int(qp), optimize=preset == "optimized")
            out += struct.pack("<I", buf.tell()) + buf.getvalue()
        return bytes(out)

    def split_frames(self, payload: bytes, n: int) -> tuple[bytes, list[bytes]]:
        frames, pos = [], 0
        for i in range(n):
            if pos + 4 > len(payload):
                raise CodecError(f"jpeg payload truncated before frame {i} of {n}")
            (size,) = struct.unpack_from("<I", payload, pos)
            if pos + 4 + size > len(payload):
                raise CodecError(f"jpeg payload truncated inside frame {i} of {n}")
            frames.append(bytes(payload[pos : pos + 4 + size]))
            pos += 4 + size
        if pos != len(payload):
            raise CodecError(f"jpeg payload has {len(payload) - pos} bytes after its {n} frames")
        return b"", frames

    def decode(self, payload: bytes, n: int, height: int, width: int, bits: int) -> np.ndarray:
        self.check_decode_args(n, height, width, bits)
        out = np.empty((n, height, width), np.uint16)
        for i, frame in enumerate(self.split_frames(payload, n)[1]):
            try:
                with Image.open(io.BytesIO(frame[4:]), formats=["JPEG"]) as im:
                    im.load()
                    if im.mode != "L" or im.size != (width, height):
                        raise CodecError(f"jpeg frame {i} is {im.mode} {im.size[1]}x{im.size[0]}, expected L {height}x{width}")
                    out[i] = np.asarray(im, np.uint8)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise CodecError(f"jpeg frame {i} undecodable: {exc}") from None
        return out
