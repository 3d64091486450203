"""Decode HEVC / VVC / AV1 elementary streams in-process with PyAV: the luma plane of gray
pictures as uint16, or every plane of a colour picture."""

from __future__ import annotations

from collections.abc import Iterator

import av
import numpy as np

from ..errors import CodecError, EncoderMissingError

_8BIT = ("gray", "yuv420p", "yuvj420p", "gbrp")
_16BIT = ("gray10le", "yuv420p10le")
_FULL_RANGE = {"yuvj420p": "yuv420p"}  # a full-range flag in the stream: the same samples


def decode_video(payload: bytes, packets: list[bytes] | None, codec: str, n: int, height: int, width: int,
                 pix_fmt: str, threads: int | None = None) -> np.ndarray:
    """(n, height, width) uint16 luma samples of the ``n`` pictures in ``payload``.

    ``packets``: the payload already cut into decoder packets (None: libav's parser cuts it).
    ``threads``: decoder threads (None: libav's automatic choice).
    Any decoder error, a wrong picture count or size raises CodecError (corrupt payloads
    must fail loudly: the container's CRC already passed, so this is the last line).
    ``pix_fmt`` is the format the encoder was fed; a different one means a foreign payload.
    """
    out = np.empty((n, height, width), np.uint16)
    for i, frame in enumerate(_frames(payload, packets, codec, n, height, width, pix_fmt, threads)):
        out[i] = _plane(frame.planes[0], height, width, frame.format.name)
    return out


def decode_planes(payload: bytes, packets: list[bytes] | None, codec: str, height: int, width: int, pix_fmt: str,
                  threads: int | None = None) -> list[np.ndarray]:
    """Every plane (uint16, each at its own size: 4:2:0 chroma is half) of the one colour picture
    in ``payload``; checks as decode_video."""
    (frame,) = list(_frames(payload, packets, codec, 1, height, width, pix_fmt, threads))
    return [_plane(p, p.height, p.width, frame.format.name) for p in frame.planes]


def _frames(payload: bytes, packets: list[bytes] | None, codec: str, n: int, height: int, width: int, pix_fmt: str,
            threads: int | None) -> Iterator[av.VideoFrame]:
    """The ``n`` decoded pictures, each checked for size and pixel format."""
    if codec not in av.codecs_available:
        raise EncoderMissingError(f"PyAV's libav has no {codec} decoder; install a PyAV built with it")
    got = 0
    decoded = []
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
                _check(frame, codec, height, width, pix_fmt)
                decoded.append(frame)
                got += 1
    except av.FFmpegError as exc:
        raise CodecError(f"{codec} decode failed: {exc}") from None
    if got != n:
        raise CodecError(f"{codec} payload decoded to {got} pictures, expected {n}")
    yield from decoded


def _check(frame: av.VideoFrame, codec: str, height: int, width: int, pix_fmt: str) -> None:
    if (frame.height, frame.width) != (height, width):
        raise CodecError(f"{codec} picture is {frame.height}x{frame.width}, expected {height}x{width}")
    fmt = _FULL_RANGE.get(frame.format.name, frame.format.name)
    if fmt != pix_fmt:
        raise CodecError(f"{codec} picture is {fmt}, expected {pix_fmt}")


def _plane(plane: av.video.plane.VideoPlane, height: int, width: int, fmt: str) -> np.ndarray:
    if fmt in _8BIT:
        a = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]
    elif fmt in _16BIT:
        a = np.frombuffer(plane, "<u2").reshape(-1, plane.line_size // 2)[:height, :width]
    else:
        raise CodecError(f"decoded to unexpected pixel format {fmt}")
    return a.astype(np.uint16)
