"""Frame headers of an AV1 low-overhead stream, read by FFmpeg's own AV1 parser (trace_headers bsf).

Independent of libaom: the quantizer every frame was coded with (base_q_idx), and whether any
block could deviate from it (delta_q_present, segmentation, DC delta, quantizer matrices).
"""

from __future__ import annotations

from .vvc_qp import trace_syntax

# Frame-header syntax elements kept per frame (the first occurrence after show_existing_frame).
FIELDS = ("show_existing_frame", "frame_type", "show_frame", "base_q_idx", "delta_q_y_dc.delta_coded",
          "using_qmatrix", "segmentation_enabled", "delta_q_present")


def frame_headers(ffmpeg: str, stream: bytes) -> list[dict[str, int]]:
    """One dict per frame header, in bitstream order, with the FIELDS it carries."""
    frames: list[dict[str, int]] = []
    for name, value in trace_syntax(ffmpeg, stream, "obu"):
        if name == "show_existing_frame":
            frames.append({})
        if frames and name in FIELDS:
            frames[-1].setdefault(name, value)
    return frames


def base_q_idx(ffmpeg: str, stream: bytes) -> list[int]:
    return [f["base_q_idx"] for f in frame_headers(ffmpeg, stream)]


def monochrome(ffmpeg: str, stream: bytes) -> bool:
    """True if every sequence header says mono_chrome = 1."""
    flags = [v for n, v in trace_syntax(ffmpeg, stream, "obu") if n == "mono_chrome"]
    return bool(flags) and all(flags)
