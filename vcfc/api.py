"""Public API: encode features to a .vcfc bitstream, decode it back, inspect it."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np

from packing.errors import PackingError
from packing.layouts import LAYOUTS, FramePlan, pack, plan_streams, similarity_order, unpack
from packing.quantizers import QUANTIZERS, QuantParams, dequantize, quantize

from . import container
from .codecs import get_codec
from .errors import CodecError, EncoderMissingError, FormatError, InputError
from .features import TensorMeta, from_arrays, to_arrays
from .header import parse_header
from .version import __version__

REORDERS = ("none", "similarity")


def encode(
    features: Any,
    *,
    codec: str = "x265",
    qp: int | None = None,
    channel_qps: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    quant: str = "minmax",
    bits: int = 8,
    layout: str = "mosaic",
    preset: str | None = None,
    reorder: str = "none",
    input_size: tuple[int, int] | None = None,
    ffmpeg: str | None = None,
    workers: int | None = None,
    timings: dict[str, float] | None = None,
) -> bytes:
    """Quantize, pack and code features; return the bytes of a self-describing .vcfc file.

    features: a C×H×W (or 1×C×H×W) torch tensor / numpy array, or a dict of them (e.g. an FPN).
    qp: one QP for every channel; channel_qps: one QP per channel (a flat sequence over the
    tensors in order, or a dict name → sequence). The lossless codec needs neither.
    input_size: (H, W) of the network input, recorded so that bits per pixel can be reported.
    timings: if given, filled with seconds spent in "quantize", "pack" and "encode" (ffmpeg).
    """
    clock = _Clock(timings)
    if quant not in QUANTIZERS:
        raise InputError(f"unknown quantizer {quant!r}; choose from {', '.join(QUANTIZERS)}")
    if layout not in LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if reorder not in REORDERS:
        raise InputError(f"unknown reorder {reorder!r}; choose from {', '.join(REORDERS)}")
    backend = get_codec(codec, ffmpeg=ffmpeg)
    if bits not in backend.bit_depths:
        raise InputError(f"codec {codec} supports {'/'.join(map(str, backend.bit_depths))}-bit, not {bits}-bit")
    preset = backend.default_preset if preset is None else preset
    if preset not in backend.presets:
        raise InputError(f"codec {codec} has no preset {preset!r}; choose from {', '.join(backend.presets)}")

    arrays, metas, single = to_arrays(features)
    shapes = {name: tuple(int(s) for s in a.shape) for name, a in arrays.items()}
    qps = _resolve_qps(shapes, qp, channel_qps, codec, backend.qp_range)

    codes: dict[str, np.ndarray] = {}
    params: dict[str, QuantParams] = {}
    clock.lap()
    for name, arr in arrays.items():
        try:
            codes[name], params[name] = quantize(arr, quant, bits)
        except PackingError as exc:
            raise InputError(f"tensor {name!r}: {exc}") from None
    order = {name: similarity_order(codes[name]) if reorder == "similarity" else np.arange(shapes[name][0]) for name in shapes}

    clock.lap("quantize")
    groups = _qp_groups(shapes, order, qps)
    jobs: list[tuple[int, FramePlan]] = []
    for group_qp, channels in groups:
        for plan in plan_streams(shapes, channels, layout, backend.align):
            jobs.append((group_qp, plan))
    frames = [pack(codes, plan) for _, plan in jobs]
    clock.lap("pack")

    def run(i: int) -> bytes:
        return backend.encode(frames[i], bits, jobs[i][0], preset)

    n_workers = workers or min(len(jobs), os.cpu_count() or 1)
    if n_workers > 1 and len(jobs) > 1:
        # ffmpeg runs out of process, so threads give real parallelism across QP groups.
        with ThreadPoolExecutor(n_workers) as pool:
            payloads = list(pool.map(run, range(len(jobs))))
    else:
        payloads = [run(i) for i in range(len(jobs))]
    clock.lap("encode")

    header: dict[str, Any] = {
        "vcfc": __version__,
        "single": single,
        "tensors": [_tensor_entry(m, shapes[m.name], params[m.name]) for m in metas],
        "codec": {"name": backend.name, "preset": preset, "bits": bits},
        "layout": layout,
        "align": backend.align,
        "quant": quant,
        "qps": {name: [int(v) for v in q] for name, q in qps.items()},
        "streams": [{"qp": q, "frames": p.n_frames, "height": p.height, "width": p.width} for q, p in jobs],
    }
    if reorder != "none":
        header["order"] = {name: [int(v) for v in perm] for name, perm in order.items()}
    if input_size is not None:
        header["input_hw"] = [int(input_size[0]), int(input_size[1])]
    side = {f"{name}/{k}": v for name, p in params.items() for k, v in p.arrays.items()}
    return container.write(container.Container(header=header, arrays=side, payloads=payloads))


def decode(data: bytes, *, ffmpeg: str | None = None, timings: dict[str, float] | None = None) -> Any:
    """Decode a .vcfc file to features of the original kind (torch/numpy), dtype and shape.

    timings: if given, filled with seconds spent in "decode" (payloads) and "dequantize".
    """
    clock = _Clock(timings)
    parsed, codes = _decode_codes(data, ffmpeg)
    clock.lap("decode")
    out = {}
    for t in parsed.tensors:
        try:
            out[t.meta.name] = dequantize(codes[t.meta.name], t.params)
        except PackingError as exc:
            raise FormatError(f"tensor {t.meta.name!r}: bad quantizer parameters ({exc})") from None
    result = from_arrays(out, [t.meta for t in parsed.tensors], parsed.single)
    clock.lap("dequantize")
    return result


def decode_codes(data: bytes, *, ffmpeg: str | None = None) -> dict[str, np.ndarray]:
    """Decode to the quantized integer codes (C×H×W uint16 per tensor), before dequantization."""
    return _decode_codes(data, ffmpeg)[1]


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
        "streams": [dict(s, bytes=len(p)) for s, p in zip(parsed.streams, c.payloads)],
        "reordered": parsed.order is not None,
        "vcfc_version": parsed.writer_version,
    }
    if parsed.input_hw is not None:
        h, w = parsed.input_hw
        info["input_hw"] = [h, w]
        info["bpp"] = 8.0 * total / (h * w)
    return info


def _decode_codes(data: bytes, ffmpeg: str | None):
    c = container.read(data)
    parsed = parse_header(c)
    shapes = {t.meta.name: t.chw for t in parsed.tensors}
    order = parsed.order or {name: list(range(s[0])) for name, s in shapes.items()}
    plans = [
        (q, plan)
        for q, channels in _qp_groups(shapes, order, parsed.qps)
        for plan in plan_streams(shapes, channels, parsed.layout, parsed.align)
    ]
    if len(plans) != len(parsed.streams) or any(
        (q, p.n_frames, p.height, p.width) != (s["qp"], s["frames"], s["height"], s["width"])
        for (q, p), s in zip(plans, parsed.streams)
    ):
        raise FormatError("stream table does not match the layout the header describes")
    backend = get_codec(parsed.codec, ffmpeg=ffmpeg)
    codes = {name: np.zeros(shape, dtype=np.uint16) for name, shape in shapes.items()}
    for i, ((_, plan), payload) in enumerate(zip(plans, c.payloads)):
        try:
            frames = backend.decode(payload, plan.n_frames, plan.height, plan.width, parsed.bits)
        except EncoderMissingError:
            raise
        except CodecError as exc:
            raise FormatError(f"stream {i}: undecodable payload ({exc})") from None
        unpack(frames, plan, codes)
    limit = (1 << parsed.bits) - 1
    for name, q in codes.items():
        if int(q.max(initial=0)) > limit:
            raise FormatError(f"tensor {name!r}: decoded codes exceed {parsed.bits} bits")
    return parsed, codes


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


def _resolve_qps(shapes, qp, channel_qps, codec, qp_range) -> dict[str, np.ndarray]:
    if qp is not None and channel_qps is not None:
        raise InputError("give either qp or channel_qps, not both")
    lo, hi = qp_range
    if channel_qps is None:
        if qp is None:
            if codec != "lossless":
                raise InputError(f"codec {codec} needs a QP: pass qp=N or channel_qps")
            qp = 0
        qps = {name: np.full(s[0], int(qp)) for name, s in shapes.items()}
    elif isinstance(channel_qps, Mapping):
        if set(channel_qps) != set(shapes):
            raise InputError(f"channel_qps names {sorted(channel_qps)} do not match the tensors {sorted(shapes)}")
        qps = {name: np.asarray(channel_qps[name]).reshape(-1) for name in shapes}
    else:
        flat = np.asarray(channel_qps).reshape(-1)
        total = sum(s[0] for s in shapes.values())
        if flat.size != total:
            raise InputError(f"channel_qps has {flat.size} values but the features have {total} channels")
        qps, start = {}, 0
        for name, s in shapes.items():
            qps[name] = flat[start : start + s[0]]
            start += s[0]
    for name, q in qps.items():
        if q.size != shapes[name][0]:
            raise InputError(f"tensor {name!r}: {q.size} QPs for {shapes[name][0]} channels")
        if not np.issubdtype(q.dtype, np.integer) and not np.all(np.equal(np.mod(q, 1), 0)):
            raise InputError(f"tensor {name!r}: QPs must be integers")
        if q.min() < lo or q.max() > hi:
            raise InputError(f"QP out of range for {codec}: got {int(q.min())}..{int(q.max())}, allowed {lo}..{hi}")
        qps[name] = q.astype(np.int64)
    return qps


def _qp_groups(shapes, order, qps) -> list[tuple[int, list[tuple[str, int]]]]:
    """Channels grouped by QP (ascending); within a group, tensors in order, channels in `order`."""
    groups: dict[int, list[tuple[str, int]]] = {}
    for name in shapes:
        for c in order[name]:
            groups.setdefault(int(qps[name][c]), []).append((name, int(c)))
    return sorted(groups.items())


def _tensor_entry(meta: TensorMeta, chw: tuple[int, int, int], params: QuantParams) -> dict[str, Any]:
    return {
        "name": meta.name,
        "shape": meta.shape,
        "dtype": meta.dtype,
        "kind": meta.kind,
        "chw": list(chw),
        "quant": {
            "method": params.method,
            "bits": params.bits,
            "scalars": {k: float(v) for k, v in params.scalars.items()},
            "arrays": sorted(params.arrays),
        },
    }
