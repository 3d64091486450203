"""Public API: encode features to a .vcfc bitstream, decode it back, inspect it."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import as_completed as _as_completed
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from vcfc.packing.errors import PackingError
from vcfc.packing.layouts import pack, unpack
from vcfc.packing.quantizers import dequantize

from . import container
from .coding import build_container, quantize_features, resolve_qps, restore_skipped, skipped_channels, stream_jobs
from .errors import CodecError, EncoderMissingError, FormatError
from .features import from_arrays
from .ffmpeg import children_stopped_on_interrupt
from .header import ParsedHeader, parse_header
from .picture import IMAGE_LAYOUT, NAME, PictureMeta, encode_picture, from_rgb, picture_qp
from .spec import CodingSpec

Progress = Callable[[str, int, int], None]  # (stage, streams done, streams in all)


def encode(
    features: Any,
    *,
    qp: int | None = None,
    channel_qps: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    spec: CodingSpec | None = None,
    codec: str | None = None,
    quant: str | None = None,
    bits: int | None = None,
    layout: str | None = None,
    preset: str | None = None,
    reorder: str | None = None,
    input_size: tuple[int, int] | None = None,
    ffmpeg: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    timings: dict[str, float] | None = None,
    progress: Progress | None = None,
) -> bytes:
    """Quantize, pack and code features; return the bytes of a self-describing .vcfc file.

    features: a C×H×W (or 1×C×H×W) torch tensor / numpy array, or a dict of them (e.g. an FPN).
    qp: one QP for every channel; channel_qps: one QP per channel (a flat sequence over the
    tensors in order, or a dict name → sequence). The lossless codec needs neither.
    spec: a CodingSpec; codec/quant/bits/layout/preset/reorder, when given, override its fields
    (defaults: x265, minmax, 8-bit, mosaic, the codec's preset, no reordering).
    input_size: (H, W) of the network input, recorded so that bits per pixel can be reported.
    workers: streams coded in parallel (default: one per core); threads: encoder threads each.
    timings: if given, filled with seconds spent in "quantize", "pack" and "encode" (ffmpeg).
    progress: called as progress(stage, done, total) while streams are coded.
    """
    overrides = {k: v for k, v in (("codec", codec), ("quant", quant), ("bits", bits), ("layout", layout),
                                   ("preset", preset), ("reorder", reorder)) if v is not None}
    spec = replace(spec or CodingSpec(), **overrides).checked()
    if spec.layout == IMAGE_LAYOUT:  # an RGB picture, not features: one colour picture, one QP
        return encode_picture(features, spec, picture_qp(spec, qp, channel_qps), ffmpeg=ffmpeg, threads=threads)
    backend = spec.backend(ffmpeg, threads)
    clock = _Clock(timings)
    if progress:
        progress("quantize", 0, 1)
    q = quantize_features(features, spec)
    qps = resolve_qps(q.shapes, qp, channel_qps, spec)
    clock.lap("quantize")
    jobs = stream_jobs(q.shapes, q.order, qps, spec.layout, backend.align)
    if progress:
        progress("pack", 0, 1)
    frames = [pack(q.codes, plan) for _, plan in jobs]
    clock.lap("pack")
    if progress:
        progress("encode", 0, len(jobs))

    def run(i: int) -> bytes:
        return backend.encode(frames[i], spec.bits, jobs[i][0], spec.preset)

    payloads = _map(run, len(jobs), workers, "encode", progress)
    clock.lap("encode")
    return build_container(q, spec, backend.align, qps, jobs, payloads, input_size)


def decode(data: bytes, *, ffmpeg: str | None = None, timings: dict[str, float] | None = None,
           progress: Progress | None = None, threads: int | None = None) -> Any:
    """Decode a .vcfc file to features of the original kind (torch/numpy), dtype and shape.

    timings: if given, filled with seconds spent in "decode" (payloads) and "dequantize".
    Memory: the codes (2 bytes per element) are dequantized tensor by tensor, in blocks, into
    the float32 output, so the peak stays near 1.5x the output (benchmarks/bench_memory.py).
    """
    clock = _Clock(timings)
    parsed, codes = _decode_codes(data, ffmpeg, progress, threads)
    clock.lap("decode")
    if parsed.image is not None:  # a picture: its RGB pixels in the shape and kind given
        rgb = np.moveaxis(codes[NAME], 0, -1).astype(np.uint8)
        return from_rgb(rgb, PictureMeta(parsed.tensors[0].meta.shape, parsed.image["order"], parsed.tensors[0].meta.kind))
    if progress:
        progress("dequantize", 0, 1)
    out = {}
    for t in parsed.tensors:
        try:
            out[t.meta.name] = dequantize(codes.pop(t.meta.name), t.params)  # pop: free each tensor's codes
        except PackingError as exc:
            raise FormatError(f"tensor {t.meta.name!r}: bad quantizer parameters ({exc})") from None
    result = from_arrays(out, [t.meta for t in parsed.tensors], parsed.single)
    clock.lap("dequantize")
    return result


def decode_codes(data: bytes, *, ffmpeg: str | None = None) -> dict[str, np.ndarray]:
    """Decode to the quantized integer codes (C×H×W uint16 per tensor), before dequantization
    (a picture: its R, G, B pixels as 3×H×W)."""
    return _decode_codes(data, ffmpeg, None, None)[1]


def decode_frames(data: bytes, *, ffmpeg: str | None = None) -> list[np.ndarray]:
    """The decoded pictures of every stream, (n, H, W) uint16 each, exactly as the codec coded
    them (layout, padding and all): what a report shows as "the coded frames". A picture file
    (layout image): one (1, H, W, 3) RGB picture, as decoded."""
    c = container.read(data)
    parsed = parse_header(c)
    if parsed.image is not None:  # one picture: (1, H, W, 3) RGB
        return [np.moveaxis(_picture_codes(parsed, c, ffmpeg, None), 0, -1)[None]]
    backend = CodingSpec(parsed.codec).backend(ffmpeg)
    out = []
    for i, (s, payload) in enumerate(zip(parsed.streams, c.payloads)):
        try:
            out.append(backend.decode(payload, s["frames"], s["height"], s["width"], parsed.bits))
        except EncoderMissingError:
            raise
        except CodecError as exc:
            raise FormatError(f"stream {i}: undecodable payload ({exc})") from None
    return out


def inspect(data: bytes) -> dict[str, Any]:
    """Describe a .vcfc file and its honest rate without decoding the payloads."""
    c = container.read(data)
    parsed = parse_header(c)
    total = len(data)
    elements = sum(int(np.prod(t.chw)) for t in parsed.tensors)
    info: dict[str, Any] = {
        "bytes": total,
        "side_info_bytes": container.side_info_bytes(data, c.header),
        "payload_bytes": sum(len(p) for p in c.payloads),
        "elements": elements,
        "bpfe": 8.0 * total / elements,
        "ratio_to_float32": 4.0 * elements / total,
        "codec": parsed.codec,
        "preset": parsed.preset,
        "layout": parsed.layout,
        "quant": parsed.quant,
        "bits": parsed.bits,
        "shapes": {t.meta.name: t.meta.shape for t in parsed.tensors},
        "dtypes": {t.meta.name: t.meta.dtype for t in parsed.tensors},
        "channel_qps": parsed.qps,
        "skipped": {name: len(skipped_channels(q)) for name, q in parsed.qps.items()},
        "streams": [dict(s, bytes=len(p)) for s, p in zip(parsed.streams, c.payloads)],
        "reordered": parsed.order is not None,
        "vcfc_version": parsed.writer_version,
    }
    if parsed.image is not None:
        info["color"] = parsed.image["color"]
    if parsed.input_hw is not None:
        h, w = parsed.input_hw
        info["input_hw"] = [h, w]
        info["bpp"] = 8.0 * total / (h * w)
    return info


def _decode_codes(data: bytes, ffmpeg: str | None, progress: Progress | None,
                  threads: int | None) -> tuple[ParsedHeader, dict[str, np.ndarray]]:
    c = container.read(data)
    parsed = parse_header(c)
    if parsed.image is not None:
        return parsed, {NAME: _picture_codes(parsed, c, ffmpeg, threads)}
    shapes = {t.meta.name: t.chw for t in parsed.tensors}
    order = parsed.order or {name: list(range(s[0])) for name, s in shapes.items()}
    jobs = stream_jobs(shapes, order, parsed.qps, parsed.layout, parsed.align)
    if len(jobs) != len(parsed.streams) or any(
        (q, p.n_frames, p.height, p.width) != (s["qp"], s["frames"], s["height"], s["width"])
        for (q, p), s in zip(jobs, parsed.streams)
    ):
        raise FormatError("stream table does not match the layout the header describes")
    backend = CodingSpec(parsed.codec).backend(ffmpeg, threads)
    codes = {name: np.zeros(shape, dtype=np.uint16) for name, shape in shapes.items()}
    if progress:
        progress("decode", 0, len(jobs))
    for i, ((_, plan), payload) in enumerate(zip(jobs, c.payloads)):
        try:
            frames = backend.decode(payload, plan.n_frames, plan.height, plan.width, parsed.bits)
        except EncoderMissingError:
            raise
        except CodecError as exc:
            raise FormatError(f"stream {i}: undecodable payload ({exc})") from None
        unpack(frames, plan, codes)
        del frames  # one stream's pictures alive at a time
        if progress:
            progress("decode", i + 1, len(jobs))
    if parsed.fill:
        restore_skipped(codes, parsed.qps, parsed.fill)
    limit = (1 << parsed.bits) - 1
    for name, q in codes.items():
        if int(q.max(initial=0)) > limit:
            raise FormatError(f"tensor {name!r}: decoded codes exceed {parsed.bits} bits")
    return parsed, codes


def _picture_codes(parsed: ParsedHeader, c: container.Container, ffmpeg: str | None,
                   threads: int | None) -> np.ndarray:
    """The decoded picture of a layout-image file as 3×H×W uint16 (R, G, B)."""
    height, width = parsed.input_hw
    backend = CodingSpec(parsed.codec).backend(ffmpeg, threads)
    try:
        rgb = backend.decode_image(c.payloads[0], height, width)
    except EncoderMissingError:
        raise
    except CodecError as exc:
        raise FormatError(f"undecodable picture ({exc})") from None
    return np.moveaxis(rgb, -1, 0).astype(np.uint16)


def _map(fn: Callable[[int], bytes], n: int, workers: int | None, stage: str, progress: Progress | None) -> list[bytes]:
    """fn(0..n-1) in order; ffmpeg runs out of process, so threads give real parallelism."""
    out: list[bytes] = [b""] * n
    n_workers = min(n, workers or os.cpu_count() or 1)
    if n_workers <= 1:
        for i in range(n):
            out[i] = fn(i)
            if progress:
                progress(stage, i + 1, n)
        return out
    with ThreadPoolExecutor(n_workers) as pool, children_stopped_on_interrupt():
        futures = {pool.submit(fn, i): i for i in range(n)}
        try:
            for done, fut in enumerate(_as_completed(futures), 1):
                out[futures[fut]] = fut.result()
                if progress:
                    progress(stage, done, n)
        except BaseException:
            for f in futures:
                f.cancel()
            raise
    return out


class _Clock:
    """Accumulates wall time per stage into a caller's dict (a no-op without one)."""

    def __init__(self, sink: dict[str, float] | None) -> None:
        self.sink = sink
        self.t = time.perf_counter()

    def lap(self, stage: str | None = None) -> None:
        now = time.perf_counter()
        if self.sink is not None and stage:
            self.sink[stage] = self.sink.get(stage, 0.0) + now - self.t
        self.t = now
