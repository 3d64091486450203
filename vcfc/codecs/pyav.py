"""Decode HEVC / VVC / AV1 elementary streams in-process with PyAV; return the luma plane as uint16."""

from __future__ import annotations

import av
import numpy as np

from ..errors import CodecError, EncoderMissingError


def decode_video(payload: bytes, packets: list[bytes] | None, codec: str, n: int, height: int, width: int,
                 pix_fmt: str, threads: int | None = None) -> np.ndarray:
    """(n, height, width) uint16 luma samples of the ``n`` pictures in ``payload``.

    ``packets``: the payload already cut into decoder packets (None: libav's parser cuts it).
    ``threads``: decoder threads (None: libav's automatic choice).
    Any decoder error, a wrong picture count or size raises CodecError (corrupt payloads
    must fail loudly: the container's CRC already passed, so this is the last line).
    ``pix_fmt`` is the format the encoder was fed; a different one means a foreign payload.
    """
    if codec not in av.codecs_available:
        raise EncoderMissingError(f"PyAV's libav has no {codec} decoder; install a PyAV built with it")
    out = np.empty((n, height, width), np.uint16)
    got = 0
    try:
        with av.logging.Capture():  # keep libav's error chatter off the user's terminal
            ctx = av.CodecContext.create(codec, "r")
            ctx.thread_type = "AUTO"
            if threads is not None:
                ctx.thread_count = threads
            if packets is None:
                packets = ctx.parse(bytes(payload)) + ctx.parse(None)
            else:
                packets = [av.Packet(p) for p in packets]
            for frame in [f for p in packets for f in ctx.decode(p)] + list(ctx.decode(None)):
                if got >= n:
                    raise CodecError(f"{codec} payload holds more than the {n} pictures expected")
                out[got] = _luma(frame, codec, height, width, pix_fmt)
                got += 1
    except av.FFmpegError as exc:
        raise CodecError(f"{codec} decode failed: {exc}") from None
    if got != n:
        raise CodecError(f"{codec} payload decoded to {got} pictures, expected {n}")
    return out


def _luma(frame: av.VideoFrame, codec: str, height: int, width: int, pix_fmt: str) -> np.ndarray:
    if (frame.height, frame.width) != (height, width):
        raise CodecError(f"{codec} picture is {frame.height}x{frame.width}, expected {height}x{width}")
    fmt = frame.format.name
    if fmt != pix_fmt:
        raise CodecError(f"{codec} picture is {fmt}, expected {pix_fmt}")
    plane = frame.planes[0]
    if fmt in ("gray", "yuv420p", "yuvj420p"):
        a = np.frombuffer(plane, np.uint8).reshape(height, plane.line_size)[:, :width]
    elif fmt in ("gray10le", "yuv420p10le"):
        a = np.frombuffer(plane, "<u2").reshape(height, plane.line_size // 2)[:, :width]
    else:
        raise CodecError(f"{codec} decoded to unexpected pixel format {fmt}")
    return a.astype(np.uint16)
