"""AV1 through ffmpeg's libaom-av1: every picture a key frame at one fixed quantizer, monochrome.

libaom codes gray / gray10le input as a real 4:0:0 stream (sequence header mono_chrome = 1): no
chroma planes at all. Decoded in-process by PyAV's libdav1d.

QP is AV1's 0..63 quantizer scale (what libaom's min-q/max-q/cq-level take). Every frame's
base_q_idx is exactly quantizer_to_qindex(QP) = 4*QP for QP <= 61, 249 for 62, 255 for 63
(checked for all 64 values with FFmpeg's own AV1 header parser, see tests/bitstream/av1_q.py;
tests/test_av1.py re-checks 14 of them, every frame), with
delta_q_present = 0 (no per-superblock delta q), delta_q_y_dc = 0, segmentation off and no
quantizer matrices: the whole frame uses that one quantizer. QP 0 is therefore lossless.
  -usage good -g 1           every frame a shown key frame (frame_type KEY_FRAME), independent
                             of the others. 'good' rather than libaom's 'allintra' usage: measured
                             -18 % BD-rate (PSNR) at cpu-used 6 and similar speed (2 feature-like
                             256x384 8-bit frames, QP 20..52)
  -crf Q -b:v 0 -qmin Q -qmax Q   constant-quality mode clamped to Q: no rate control freedom
  -aq-mode 0, deltaq-mode=0  no segment- or superblock-level quantizer changes
  enable-qm=0                no quantizer matrices
  -lag-in-frames 0, enable-keyframe-filtering=0, enable-tpl-model=0
                             no lookahead: key-frame temporal filtering would blend neighbouring
                             frames into each picture, and the TPL model would tune by them
  -row-mt 0 -threads 1       libaom codes differently with more than one thread: row
                             multi-threading (+5 % bytes measured on a 768x1280 frame), and tile
                             threads on frames wider than 4096 (AV1's widest tile), which FPN
                             mosaics are. Single-threaded, the stream is the same on every
                             machine and for every thread budget; vcfc gets its parallelism
                             from coding streams concurrently. (Measured against libaom's own
                             threads with row-mt off: 0-32 % longer per encode.)
Presets are libaom's cpu-used 0 (slowest) .. 6, the fastest 'good' speed (7 and 8 were measured to
give the same stream as 6).
A thread budget N therefore only reaches the decoder (libdav1d threads).
Payload: TD SEQ FRAME, TD FRAME, ... (temporal delimiter, sequence header once, one frame OBU
per picture); split_frames gives (sequence header, one temporal unit per picture).
"""

from __future__ import annotations

from typing import Any

from ..errors import CodecError
from .base import FfmpegCodec
from .obu import OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER, drop_repeated_sequence_headers, obus, temporal_units

PIX_FMT = {8: "gray", 10: "gray10le"}
AOM_PARAMS = "enable-keyframe-filtering=0:deltaq-mode=0:enable-tpl-model=0:enable-qm=0"


def qindex(qp: int) -> int:
    """AV1 base_q_idx that libaom codes for quantizer ``qp`` (its quantizer_to_qindex table)."""
    return {62: 249, 63: 255}.get(qp, 4 * qp)


class Av1Codec(FfmpegCodec):
    name = "av1"
    description = "AV1 (libaom), every frame a key frame at one fixed quantizer, 4:0:0"
    encoder = "libaom-av1"
    decoder = "libdav1d"
    version_pattern = r"\[libaom-av1 @ [^\]]*\] v?(\d+\.\d+\S*)"
    muxer = "obu"
    bit_depths = (8, 10)
    align = 8  # libaom codes any size; 8 keeps the packing grid of the other codecs
    presets = tuple(str(i) for i in range(7))
    default_preset = "6"
    qp_range = (0, 63)
    min_size = 1

    def pix_fmt(self, bits: int) -> str:
        return PIX_FMT[bits]

    def encoder_options(self, bits: int, qp: int, preset: str) -> dict[str, Any]:
        q = int(qp)
        return {
            "usage": "good", "cpu-used": preset, "g": 1, "lag-in-frames": 0, "row-mt": 0,
            "crf": q, "b:v": 0, "qmin": q, "qmax": q, "aq-mode": 0, "aom-params": AOM_PARAMS,
            "threads": 1,  # whatever the budget: see the module docstring
        }  # fmt: skip

    def clean_stream(self, stream: bytes) -> bytes:
        return drop_repeated_sequence_headers(stream)

    def packets(self, payload: bytes) -> list[bytes]:
        return temporal_units(payload)

    def split_frames(self, payload: bytes, n: int) -> tuple[bytes, list[bytes]]:
        units = self._check_count(temporal_units(payload), n)
        first = obus(units[0])
        if len(first) < 2 or first[1][0] != OBU_SEQUENCE_HEADER:
            raise CodecError("AV1 payload: the first temporal unit does not begin with a sequence header")
        prefix = first[1][1]
        for unit in units[1:]:
            if any(kind == OBU_SEQUENCE_HEADER and obu != prefix for kind, obu in obus(unit)):
                raise CodecError("AV1 payload: the sequence header changes; pictures are not separable")
        return prefix, [first[0][1] + b"".join(obu for _, obu in first[2:]), *units[1:]]

    def join_frames(self, prefix: bytes, frames: list[bytes]) -> bytes:
        if not frames:
            return bytes(prefix)
        td = obus(frames[0])[0]
        if td[0] != OBU_TEMPORAL_DELIMITER:
            raise CodecError("AV1 picture does not begin with a temporal delimiter")
        # The sequence header goes right after the first temporal delimiter, where it came from.
        return td[1] + bytes(prefix) + frames[0][len(td[1]) :] + b"".join(frames[1:])
