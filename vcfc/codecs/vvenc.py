"""VVC through ffmpeg's libvvenc: all-intra, constant QP, luma carries the codes.

libvvenc takes only yuv420p10le, so the codes go in the 10-bit luma and both chroma planes are
flat 512 (they cost a few bits per CTU). 8-bit codes are shifted left by 2 (code*4) so that a
QP means what it means for 8-bit video (HEVC/VVC scale the quantizer step with bit depth) and the
QP range behaves like x265's; decoding rounds back ((v+2)>>2). Measured on smooth frames this is
also the better rate-distortion trade than coding the 8-bit codes as small 10-bit values.

Every picture is an IDR at exactly the asked QP (checked with tests/bitstream/vvc_qp.py, i.e.
FFmpeg's own VVC header parser):
  -qp Q -qpa 0            constant QP, perceptual QP adaptation off
  IntraPeriod=1:GOPSize=1 all intra; DecodingRefreshType=2 makes each picture an IDR
  IntraQPOffset=0         VVenC otherwise codes intra pictures at Q-3
  MCTF=0:BIM=0            no motion-compensated temporal prefilter: it mixes neighbouring frames
                          into each picture, so frames would not be independent
  AccessUnitDelimiter=0:ReWriteParamSets=0   no AUD, SPS/PPS once (~60 bytes per picture saved)
  MaxParallelFrames=0     no frame-level parallelism: with it, libvvenc 1.15 through ffmpeg 9.0.2
                          intermittently returns no pictures at all (exit status 0) for streams of
                          about 7-9 frames (measured: 2-8 threads, 64x64 and 384x256 frames);
                          CTU-level threads remain
  IFP=0:WaveFrontSynchro=0:Tiles=1x1   VVenC switches on inter-frame parallelism (8 threads),
                          WPP (16) and tiles (16, large frames) by itself, each changing the
                          bitstream; pinned, the stream is the same for 1..64 threads (and the
                          same as VVenC's default below 8 threads)
With a thread budget N: ffmpeg's -threads N (VVenC's worker threads).
Payload: SPS/PPS once, then per picture [ALF APS] + one IDR slice. VVenC restarts its APS
bookkeeping at every IDR, so each picture sends the ALF APS it uses right before its slice and
never reuses an earlier picture's: split_frames keeps that APS with its picture (tested with
ALF on, pictures re-assembled in another order).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .annexb import VVC, split_pictures
from .base import FfmpegCodec

VVENC_PARAMS = ("IntraPeriod=1:GOPSize=1:DecodingRefreshType=2:IntraQPOffset=0:MCTF=0:BIM=0:AccessUnitDelimiter=0"
                ":ReWriteParamSets=0:MaxParallelFrames=0:IFP=0:WaveFrontSynchro=0:Tiles=1x1")
CHROMA = 512


class VvencCodec(FfmpegCodec):
    name = "vvenc"
    description = "VVC (libvvenc), all-intra IDR pictures at constant QP, codes in 10-bit luma"
    encoder = "libvvenc"
    decoder = "vvc"
    version_pattern = r"libvvenc version: (\S+)"
    probe_pix_fmt = "yuv420p10le"
    muxer = "vvc"
    bit_depths = (8, 10)
    align = 8
    presets = ("faster", "fast", "medium", "slow", "slower")
    default_preset = "fast"
    qp_range = (0, 63)
    min_size = 16  # libvvenc fails on 8x8 pictures
    shift8 = 2  # left shift of 8-bit codes inside the 10-bit luma

    def pix_fmt(self, bits: int) -> str:
        return "yuv420p10le"

    def encoder_options(self, bits: int, qp: int, preset: str) -> dict[str, Any]:
        opts: dict[str, Any] = {"preset": preset, "qp": int(qp), "qpa": 0, "vvenc-params": VVENC_PARAMS}
        if self.threads is not None:
            opts["threads"] = self.threads
        return opts

    def to_yuv(self, frames: np.ndarray, bits: int) -> bytes:
        n, h, w = frames.shape
        luma = frames.astype("<u2") << (self.shift8 if bits == 8 else 0)
        chroma = np.full((n, 2 * (h // 2) * (w // 2)), CHROMA, "<u2")
        return np.concatenate([luma.reshape(n, -1), chroma], axis=1).tobytes()

    raw_frames = to_yuv

    def from_luma(self, luma: np.ndarray, bits: int) -> np.ndarray:
        if bits == 8 and self.shift8:
            return np.minimum((luma + (1 << (self.shift8 - 1))) >> self.shift8, 255).astype(np.uint16)
        return luma

    # an RGB picture: 4:2:0 planes in 10 bits, 8-bit values shifted like the codes above
    def image_pix_fmt(self) -> str:
        return "yuv420p10le"

    def raw_planes(self, planes: list[np.ndarray]) -> bytes:
        return b"".join((p.astype("<u2") << self.shift8).tobytes() for p in planes)

    def rgb_of_planes(self, planes: list[np.ndarray]) -> np.ndarray:
        return super().rgb_of_planes([self.from_luma(p, 8) for p in planes])

    def split_frames(self, payload: bytes, n: int) -> tuple[bytes, list[bytes]]:
        prefix, frames = split_pictures(payload, VVC)
        return prefix, self._check_count(frames, n)
