"""HEVC through ffmpeg's libx265: all-intra, constant QP (lossy) or lossless, gray 4:0:0 input.

Every picture is an IDR coded at exactly the asked QP (verified by tests/bitstream/hevc_qp.py):
  keyint=1:min-keyint=1   every picture intra, no inter prediction, so frames are independent
  scenecut=0:open-gop=0   no lookahead-driven decisions
  qp=Q:ipratio=1          constant QP; without ipratio=1 x265 codes I-slices at ~Q-3
  aq-mode=0:cutree=0      no CU-level QP changes (PPS cu_qp_delta_enabled_flag ends up 0)
  psy-rd=0:psy-rdoq=0     plain MSE rate-distortion choices; features are not watched by eyes
                          (measured: 0.7-1.6 % fewer bytes at equal PSNR on feature mosaics)
  info=0                  no ~2 KB version/options SEI (4x the payload of a small frame)
With a thread budget N: pools=N (worker threads) and frame-threads=min(N, 16): all-intra
pictures reference nothing, so concurrent frames never wait on each other and the output is
the same for every N (tested).
Payload: VPS/SPS/PPS once, then one IDR slice per picture; split_frames cuts it there.
"""

from __future__ import annotations

from typing import Any

from .annexb import HEVC, drop_repeated_hevc_parameter_sets, split_pictures
from .base import FfmpegCodec

X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
PIX_FMT = {8: "gray", 10: "gray10le"}
COMMON = "keyint=1:min-keyint=1:scenecut=0:open-gop=0:info=0:log-level=error"


class X265Codec(FfmpegCodec):
    name = "x265"
    description = "HEVC (libx265), all-intra IDR pictures at constant QP, 4:0:0"
    encoder = "libx265"
    decoder = "hevc"
    version_pattern = r"HEVC encoder version (\S+)"
    muxer = "hevc"
    bit_depths = (8, 10)
    align = 8
    presets = X265_PRESETS
    default_preset = "medium"
    qp_range = (0, 51)
    min_size = 16  # ffmpeg's libx265 wrapper rejects pictures under 16x16 ("Image size is too small")

    def x265_params(self, qp: int) -> str:
        return f"qp={int(qp)}:ipratio=1:pbratio=1:aq-mode=0:cutree=0:psy-rd=0:psy-rdoq=0:{COMMON}{self._thread_params()}"

    def _thread_params(self) -> str:
        # ffmpeg's libx265 wrapper ignores -threads; x265 takes its thread counts in x265-params.
        return "" if self.threads is None else f":pools={self.threads}:frame-threads={min(self.threads, 16)}"

    def pix_fmt(self, bits: int) -> str:
        return PIX_FMT[bits]

    def encoder_options(self, bits: int, qp: int, preset: str) -> dict[str, Any]:
        return {"preset": preset, "x265-params": self.x265_params(qp)}

    def clean_stream(self, stream: bytes) -> bytes:
        return drop_repeated_hevc_parameter_sets(stream)

    def split_frames(self, payload: bytes, n: int) -> tuple[bytes, list[bytes]]:
        prefix, frames = split_pictures(payload, HEVC)
        return prefix, self._check_count(frames, n)


class LosslessCodec(X265Codec):
    """x265 lossless (cu_transquant_bypass on every CU): decoded codes equal the input bit-exactly."""

    name = "lossless"
    description = "HEVC (libx265) lossless, all-intra, 4:0:0: decoded codes equal the input"
    uses_qp = False  # qp is ignored
    default_preset = "medium"
    image_format = "gbrp"  # pictures as R, G, B planes, 4:4:4: lossless returns the exact pixels

    def x265_params(self, qp: int) -> str:
        return f"lossless=1:{COMMON}{self._thread_params()}"
