"""Slice QPs of a VVC (or HEVC) stream read by FFmpeg's own header parser (trace_headers bsf).

VVenC prints no per-picture log through ffmpeg and a VVC SPS/picture-header reader is a large
piece of code, so the evidence for VVC comes from FFmpeg's CBS parser (independent of VVenC):
SliceQpY = 26 + pps_init_qp_minus26 + (ph_qp_delta or sh_qp_delta), per slice.
"""

from __future__ import annotations

import re
import subprocess

from vcfc.errors import CodecError

_LINE = re.compile(r"\]\s+\d+\s+([\w.]+)(?:\[[\d\]\[]*\])?\s+[01]+ = (-?\d+)\s*$")
_INIT = {"pps_init_qp_minus26", "init_qp_minus26"}
_DELTA = {"ph_qp_delta", "sh_qp_delta", "slice_qp_delta"}


def trace_syntax(ffmpeg: str, annexb: bytes, fmt: str) -> list[tuple[str, int]]:
    """(syntax element, value) pairs of every header in the stream, in bitstream order."""
    cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "debug", "-f", fmt, "-i", "pipe:0",
           "-c", "copy", "-bsf:v", "trace_headers", "-f", "null", "-"]
    proc = subprocess.run(cmd, input=annexb, capture_output=True, timeout=120)
    if proc.returncode != 0:
        raise CodecError(f"trace_headers failed on the {fmt} stream")
    out = []
    for line in proc.stderr.decode("utf-8", "replace").splitlines():
        if "trace_headers" in line:
            m = _LINE.search(line)
            if m:
                out.append((m.group(1), int(m.group(2))))
    return out


def slice_qps(ffmpeg: str, annexb: bytes, fmt: str = "vvc") -> list[int]:
    """SliceQpY of every slice (one PPS in play at a time, as VVenC/x265 write them)."""
    init, qps = None, []
    for name, value in trace_syntax(ffmpeg, annexb, fmt):
        if name in _INIT:
            init = value
        elif name in _DELTA:
            if init is None:
                raise CodecError("slice before any PPS")
            qps.append(26 + init + value)
    return qps


def cu_qp_delta_enabled(ffmpeg: str, annexb: bytes, fmt: str = "vvc") -> bool:
    """True if any PPS allows CU-level QP changes (then slice QP is not the whole story)."""
    return any(v for n, v in trace_syntax(ffmpeg, annexb, fmt) if n in ("pps_cu_qp_delta_enabled_flag", "cu_qp_delta_enabled_flag"))
