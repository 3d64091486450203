"""Strict validation of a .vcfc header: every field is checked before anything trusts it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vcfc.packing.layouts import LAYOUTS
from vcfc.packing.quantizers import QUANTIZERS, QuantParams

from .codecs import CODECS
from .coding import SKIP, skipped_channels
from .container import MAX_ELEMENTS, Container
from .errors import FormatError
from .features import TensorMeta
from .picture import IMAGE_LAYOUT, NAME


@dataclass
class TensorEntry:
    meta: TensorMeta
    chw: tuple[int, int, int]
    params: QuantParams | None  # None: a picture (layout image), not quantized features


@dataclass
class ParsedHeader:
    tensors: list[TensorEntry]
    single: bool
    codec: str
    preset: str
    bits: int
    layout: str
    align: int
    quant: str
    qps: dict[str, list[int]]
    streams: list[dict[str, int]]
    order: dict[str, list[int]] | None
    input_hw: tuple[int, int] | None
    writer_version: str
    image: dict[str, Any] | None = None  # layout image: the picture's order and colour conversion
    fill: dict[str, list[int]] | None = None  # skipped channels' codes (QP SKIP), per tensor


def parse_header(c: Container) -> ParsedHeader:
    h = c.header
    codec = _get(h, "codec", dict)
    name = _get(codec, "name", str)
    if name not in CODECS:
        raise FormatError(f"unknown codec {name!r}")
    bits = _get(codec, "bits", int)
    if bits not in CODECS[name].bit_depths:
        raise FormatError(f"unsupported bit depth {bits} for codec {name}")
    layout = _get(h, "layout", str)
    if layout not in LAYOUTS:
        raise FormatError(f"unknown layout {layout!r}")
    if layout == IMAGE_LAYOUT:
        return _parse_picture(h, c, name, bits)
    align = _get(h, "align", int)
    if not 1 <= align <= 256:
        raise FormatError(f"bad alignment {align}")

    raw_tensors = _get(h, "tensors", list)
    if not raw_tensors:
        raise FormatError("no tensors in header")
    tensors = [_tensor(t, c.arrays, bits) for t in raw_tensors]
    names = [t.meta.name for t in tensors]
    if len(set(names)) != len(names):
        raise FormatError("duplicate tensor names")
    if sum(int(np.prod(t.chw, dtype=np.int64)) for t in tensors) > MAX_ELEMENTS:
        raise FormatError("tensor shapes are implausibly large")
    single = _get(h, "single", bool)
    if single and len(tensors) != 1:
        raise FormatError("single-tensor file with several tensors")

    lo, hi = CODECS[name].qp_range
    qps_raw = _get(h, "qps", dict)
    qps: dict[str, list[int]] = {}
    for t in tensors:
        q = qps_raw.get(t.meta.name)
        if not (isinstance(q, list) and len(q) == t.chw[0] and all(_is_int(v) and (lo <= v <= hi or v == SKIP) for v in q)):
            raise FormatError(f"bad per-channel QP list for {t.meta.name!r}")
        qps[t.meta.name] = q
    fill = _fill(h, qps, bits)

    order = None
    if "order" in h:
        order_raw = _get(h, "order", dict)
        order = {}
        for t in tensors:
            perm = order_raw.get(t.meta.name)
            if not (isinstance(perm, list) and all(_is_int(v) for v in perm) and sorted(perm) == list(range(t.chw[0]))):
                raise FormatError(f"channel order of {t.meta.name!r} is not a permutation")
            order[t.meta.name] = perm

    streams = []
    for s in _get(h, "streams", list):
        if not isinstance(s, dict) or not all(_is_int(s.get(k)) and s.get(k) >= 0 for k in ("qp", "frames", "height", "width")):
            raise FormatError("bad stream entry")
        streams.append({k: s[k] for k in ("qp", "frames", "height", "width")})
    if len(streams) != len(c.payloads):
        raise FormatError(f"{len(streams)} streams but {len(c.payloads)} payloads")

    input_hw = None
    if "input_hw" in h:
        hw = _get(h, "input_hw", list)
        if not (len(hw) == 2 and all(_is_int(v) and v > 0 for v in hw)):
            raise FormatError("bad input size")
        input_hw = (hw[0], hw[1])
    return ParsedHeader(
        tensors=tensors,
        single=single,
        codec=name,
        preset=_get(codec, "preset", str),
        bits=bits,
        layout=layout,
        align=align,
        quant=_get(h, "quant", str),
        qps=qps,
        streams=streams,
        order=order,
        input_hw=input_hw,
        writer_version=str(h.get("vcfc", "?")),
        fill=fill,
    )


def _fill(h: dict, qps: dict[str, list[int]], bits: int) -> dict[str, list[int]] | None:
    """The fill codes of skipped channels: exactly one per skipped channel, within the bit depth."""
    skipped = {name: len(skipped_channels(q)) for name, q in qps.items()}
    if not any(skipped.values()):
        if "fill" in h:
            raise FormatError("fill codes but no skipped channel")
        return None
    raw = _get(h, "fill", dict)
    if set(raw) != {n for n, k in skipped.items() if k}:
        raise FormatError("fill codes do not match the skipped channels")
    limit = (1 << bits) - 1
    for name, values in raw.items():
        if not (isinstance(values, list) and len(values) == skipped[name]
                and all(_is_int(v) and 0 <= v <= limit for v in values)):
            raise FormatError(f"bad fill codes for {name!r}")
    return raw


def _parse_picture(h: dict, c: Container, codec: str, bits: int) -> ParsedHeader:
    """The header of a picture file (layout image): one RGB picture, one stream, one QP."""
    cls = CODECS[codec]
    img = _get(h, "image", dict)
    height, width = _get(img, "height", int), _get(img, "width", int)
    if not (0 < height <= 1 << 15 and 0 < width <= 1 << 15) or bits != 8:
        raise FormatError("bad picture size or bit depth")
    shape = _get(img, "shape", list)
    order, kind = _get(img, "order", str), _get(img, "kind", str)
    forms = {"chw": ([3, height, width], [1, 3, height, width]), "hwc": ([height, width, 3], [1, height, width, 3])}
    if order not in forms or shape not in forms[order] or kind not in ("torch", "numpy"):
        raise FormatError("bad picture shape, order or kind")
    color = _get(img, "color", dict)
    if color != cls.color() or _get(h, "align", int) != cls.image_align:
        raise FormatError(f"picture coded other than {codec} codes pictures ({cls.image_format})")
    qps = _get(h, "qps", dict).get(NAME)
    lo, hi = cls.qp_range
    if not (isinstance(qps, list) and len(qps) == 3 and all(_is_int(v) and lo <= v <= hi for v in qps)
            and len(set(qps)) == 1):
        raise FormatError("bad picture QP")
    streams = _get(h, "streams", list)
    ch, cw = cls.image_size(height, width)
    if streams != [{"qp": qps[0], "frames": 1, "height": ch, "width": cw}] or len(c.payloads) != 1:
        raise FormatError("a picture file holds one stream of one picture")
    return ParsedHeader(
        tensors=[TensorEntry(TensorMeta(NAME, shape, "uint8", kind), (3, height, width), None)], single=True,
        codec=codec, preset=_get(_get(h, "codec", dict), "preset", str), bits=8, layout=IMAGE_LAYOUT,
        align=cls.image_align, quant="none", qps={NAME: qps}, streams=streams, order=None,
        input_hw=(height, width), writer_version=str(h.get("vcfc", "?")), image={"order": order, "color": color})


def _tensor(t: Any, arrays: dict[str, np.ndarray], bits: int) -> TensorEntry:
    if not isinstance(t, dict):
        raise FormatError("bad tensor entry")
    name = _get(t, "name", str)
    chw = _get(t, "chw", list)
    if not (len(chw) == 3 and all(_is_int(v) and 0 < v < (1 << 20) for v in chw)):
        raise FormatError(f"bad shape for tensor {name!r}")
    shape = _get(t, "shape", list)
    if not (all(_is_int(v) and v > 0 for v in shape) and int(np.prod(shape, dtype=np.int64)) == int(np.prod(chw, dtype=np.int64))):
        raise FormatError(f"shape of tensor {name!r} does not match its C×H×W")
    dtype = _get(t, "dtype", str)
    if dtype not in ("float16", "bfloat16", "float32", "float64"):
        raise FormatError(f"bad dtype {dtype!r} for tensor {name!r}")
    kind = _get(t, "kind", str)
    if kind not in ("torch", "numpy") or (kind == "numpy" and dtype == "bfloat16"):
        raise FormatError(f"bad kind {kind!r} for tensor {name!r}")
    q = _get(t, "quant", dict)
    method = _get(q, "method", str)
    if method not in QUANTIZERS:
        raise FormatError(f"unknown quantizer {method!r}")
    if _get(q, "bits", int) != bits:
        raise FormatError(f"tensor {name!r} quantized at a bit depth other than the codec's")
    scalars = _get(q, "scalars", dict)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in scalars.values()):
        raise FormatError(f"bad quantizer scalars for {name!r}")
    params_arrays = {}
    for key in _get(q, "arrays", list):
        full = f"{name}/{key}"
        if not isinstance(key, str) or full not in arrays:
            raise FormatError(f"missing side array {full!r}")
        arr = arrays[full]
        if arr.size not in (1, chw[0]) or not np.all(np.isfinite(arr)):
            raise FormatError(f"bad side array {full!r}")
        params_arrays[key] = arr
    params = QuantParams(method=method, bits=bits, arrays=params_arrays, scalars={k: float(v) for k, v in scalars.items()})
    return TensorEntry(TensorMeta(name, shape, dtype, kind), (chw[0], chw[1], chw[2]), params)


def _get(d: dict, key: str, typ: type) -> Any:
    v = d.get(key) if isinstance(d, dict) else None
    ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
    if not ok:
        raise FormatError(f"header field {key!r} missing or not a {typ.__name__}")
    return v


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
