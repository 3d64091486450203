"""VVC through ffmpeg's libvvenc: all-intra, constant QP, luma carries the codes.

libvvenc takes only yuv420p10le, so the codes go in the 10-bit luma and both chroma planes are
flat 512 (they cost a few bits per CTU). 8-bit codes are shifted left by 2 (code*4) so that a
QP means what it means for 8-bit video (HEVC/VVC scale the quantizer step with bit depth) and the
QP range behaves like x265's; decoding rounds back ((v+2)>>2). Measured on smooth frames this is
also the better rate-distortion trade than coding the 8-bit codes as small 10-bit values.

Every picture is an IDR at exactly the asked QP (checked with vvc_qp.slice_qps, i.e. FFmpeg's
own VVC header parser):
  -qp Q -qpa 0            constant QP, perceptual QP adaptation off
  IntraPeriod=1:GOPSize=1 all intra; DecodingRefreshType=2 makes each picture an IDR
  IntraQPOffset=0         VVenC otherwise codes intra pictures at Q-3
  MCTF=0:BIM=0            no motion-compensated temporal prefilter: it mixes neighbouring frames
                          into each picture, so frames would not be independent
  AccessUnitDelimiter=0:ReWriteParamSets=0   no AUD, SPS/PPS once (~60 bytes per picture saved)
"""

from __future__ import annotations

import numpy as np

from ..ffmpeg import require_encoder, run_ffmpeg
from .base import Codec
from .pyav import decode_annexb

VVENC_PARAMS = "IntraPeriod=1:GOPSize=1:DecodingRefreshType=2:IntraQPOffset=0:MCTF=0:BIM=0:AccessUnitDelimiter=0:ReWriteParamSets=0"
CHROMA = 512


class VvencCodec(Codec):
    name = "vvenc"
    bit_depths = (8, 10)
    align = 8
    presets = ("faster", "fast", "medium", "slow", "slower")
    default_preset = "fast"
    qp_range = (0, 63)
    min_size = 16  # libvvenc fails on 8x8 pictures
    shift8 = 2  # left shift of 8-bit codes inside the 10-bit luma

    def ffmpeg_args(self, n: int, height: int, width: int, qp: int, preset: str) -> list[str]:
        return [
            "-f", "rawvideo", "-pix_fmt", "yuv420p10le", "-s", f"{width}x{height}", "-framerate", "25",
            "-i", "pipe:0", "-frames:v", str(n),
            "-c:v", "libvvenc", "-preset", preset, "-qp", str(int(qp)), "-qpa", "0",
            "-vvenc-params", VVENC_PARAMS,
            "-f", "vvc", "pipe:1",
        ]  # fmt: skip

    def to_yuv(self, frames: np.ndarray, bits: int) -> bytes:
        n, h, w = frames.shape
        luma = frames.astype("<u2") << (self.shift8 if bits == 8 else 0)
        chroma = np.full((n, 2 * (h // 2) * (w // 2)), CHROMA, "<u2")
        return np.concatenate([luma.reshape(n, -1), chroma], axis=1).tobytes()

    def encode(self, frames: np.ndarray, bits: int, qp: int, preset: str | None = None) -> bytes:
        preset = self.check_encode_args(frames, bits, qp, preset)
        path = self.ffmpeg
        require_encoder(path, "libvvenc")
        frames = self.pad_to_min(frames)
        n, h, w = frames.shape
        return run_ffmpeg(path, self.ffmpeg_args(n, h, w, qp, preset), self.to_yuv(frames, bits))

    def decode(self, payload: bytes, n: int, height: int, width: int, bits: int) -> np.ndarray:
        self.check_decode_args(n, height, width, bits)
        ch, cw = self.coded_size(height, width)
        y = decode_annexb(payload, "vvc", n, ch, cw, "yuv420p10le")[:, :height, :width]
        if bits == 8 and self.shift8:
            y = np.minimum((y + (1 << (self.shift8 - 1))) >> self.shift8, 255).astype(np.uint16)
        return y
