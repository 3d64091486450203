"""The steps of coding, shared by `vcfc.encode` and the frame bank (`vcfc.bank`).

quantize_features → resolve_qps → stream_jobs (channels grouped by QP, laid out as frames)
→ a payload per job (the codec, or frames reused from earlier encodes) → build_container.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from vcfc.packing.errors import PackingError
from vcfc.packing.layouts import FramePlan, plan_streams
from vcfc.packing.quantizers import QuantParams, quantize
from vcfc.packing.reorder import REORDERS

from . import container
from .errors import InputError
from .features import TensorMeta, to_arrays
from .spec import CodingSpec
from .version import __version__

Shapes = dict[str, tuple[int, int, int]]
Job = tuple[int, FramePlan]  # (QP, frames of one stream)
# A channel's "QP" when it is not coded at all: the decoder fills it with one code, sent in the
# header (`fill`): the rounded mean of its codes. Costs 0 pictures and a few header bytes.
SKIP = -1


@dataclass
class Quantized:
    """One image's features as integer codes, with what decoding needs to restore them."""

    metas: list[TensorMeta]
    single: bool
    shapes: Shapes
    codes: dict[str, np.ndarray]
    params: dict[str, QuantParams]
    order: dict[str, np.ndarray]  # channel order inside each QP group (identity unless reordered)

    @property
    def channels(self) -> int:
        return sum(s[0] for s in self.shapes.values())

    @property
    def elements(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes.values())


def quantize_features(features: Any, spec: CodingSpec) -> Quantized:
    """Quantize a tensor (C×H×W, 1×C×H×W, H×W) or a dict of them with ``spec``'s quantizer."""
    arrays, metas, single = to_arrays(features)
    shapes = {name: tuple(int(s) for s in a.shape) for name, a in arrays.items()}
    codes: dict[str, np.ndarray] = {}
    params: dict[str, QuantParams] = {}
    for name, arr in arrays.items():
        try:
            codes[name], params[name] = quantize(arr, spec.quant, spec.bits)
        except PackingError as exc:
            raise InputError(f"tensor {name!r}: {exc}") from None
    reorder = REORDERS.get(spec.reorder)
    order = {name: reorder(codes[name]) for name in shapes}
    return Quantized(metas, single, shapes, codes, params, order)  # type: ignore[arg-type]


def resolve_qps(shapes: Shapes, qp: int | None, channel_qps: Sequence[int] | Mapping[str, Sequence[int]] | None,
                spec: CodingSpec) -> dict[str, np.ndarray]:
    """One int64 QP per channel of every tensor, checked against the codec's range."""
    if qp is not None and channel_qps is not None:
        raise InputError("give either qp or channel_qps, not both")
    lo, hi = spec.qp_limits
    if channel_qps is None:
        if qp is None:
            if spec.uses_qp:
                raise InputError(f"codec {spec.codec} needs a QP: pass qp=N or channel_qps")
            qp = 0
        elif not spec.uses_qp and qp != 0:
            # said out loud: a silently ignored QP would mislabel the rate points made from it
            warnings.warn(f"codec {spec.codec} takes no QP: qp={qp} is ignored", stacklevel=3)
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
        coded = q[q != SKIP]
        if coded.size and (coded.min() < lo or coded.max() > hi):
            shown = f"{int(coded.min())}" if coded.min() == coded.max() else f"{int(coded.min())}..{int(coded.max())}"
            raise InputError(f"QP out of range for {spec.codec}: got {shown}, allowed {lo}..{hi} "
                             f"(or {SKIP}: the channel not coded)")
        qps[name] = q.astype(np.int64)
    return qps


def skipped_channels(qps: Sequence[int]) -> list[int]:
    """The channels of one tensor's QP list that are not coded (QP SKIP)."""
    return [c for c, v in enumerate(qps) if int(v) == SKIP]


def fill_code(channel_codes: np.ndarray) -> int:
    """The code a skipped channel is restored to: the rounded mean of its codes."""
    return int(np.floor(float(channel_codes.mean(dtype=np.float64)) + 0.5))


def fill_codes(q: Quantized, qps: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Per tensor, the fill code of each skipped channel (channel order); only tensors with some."""
    out = {}
    for name in q.shapes:
        skipped = skipped_channels(qps[name])
        if skipped:
            out[name] = [fill_code(q.codes[name][c]) for c in skipped]
    return out


def restore_skipped(codes: dict[str, np.ndarray], qps: Mapping[str, Sequence[int]],
                    fill: Mapping[str, Sequence[int]]) -> None:
    """Set each skipped channel of ``codes`` (C×H×W per tensor, in place) to its fill code."""
    for name, values in fill.items():
        for c, v in zip(skipped_channels(qps[name]), values):
            codes[name][c] = v


def qp_groups(shapes: Shapes, order: Mapping[str, Sequence[int]], qps: Mapping[str, Sequence[int]]
              ) -> list[tuple[int, list[tuple[str, int]]]]:
    """Channels grouped by QP (ascending); within a group, tensors in order, channels in ``order``."""
    groups: dict[int, list[tuple[str, int]]] = {}
    for name in shapes:
        for c in order[name]:
            if int(qps[name][c]) != SKIP:  # not coded: no picture
                groups.setdefault(int(qps[name][c]), []).append((name, int(c)))
    return sorted(groups.items())


def stream_jobs(shapes: Shapes, order: Mapping[str, Sequence[int]], qps: Mapping[str, Sequence[int]],
                layout: str, align: int) -> list[Job]:
    """One (QP, FramePlan) per coded stream; the decoder re-derives the same list from the header."""
    return [(q, plan) for q, channels in qp_groups(shapes, order, qps)
            for plan in plan_streams(shapes, channels, layout, align)]


def build_container(q: Quantized, spec: CodingSpec, align: int, qps: Mapping[str, np.ndarray],
                    jobs: Sequence[Job], payloads: Sequence[bytes], input_size: tuple[int, int] | None) -> bytes:
    """The bytes of a .vcfc file holding ``payloads`` (one per job) and everything to decode them."""
    header: dict[str, Any] = {
        "vcfc": __version__,
        "single": q.single,
        "tensors": [_tensor_entry(m, q.shapes[m.name], q.params[m.name]) for m in q.metas],
        "codec": {"name": spec.codec, "preset": spec.preset, "bits": spec.bits},
        "layout": spec.layout,
        "align": align,
        "quant": spec.quant,
        "qps": {name: [int(v) for v in v_] for name, v_ in qps.items()},
        "streams": [{"qp": qp, "frames": p.n_frames, "height": p.height, "width": p.width} for qp, p in jobs],
    }
    fill = fill_codes(q, qps)
    if fill:
        header["fill"] = fill
    if spec.reorder != "none":
        header["order"] = {name: [int(v) for v in perm] for name, perm in q.order.items()}
    if input_size is not None:
        header["input_hw"] = [int(input_size[0]), int(input_size[1])]
    side = {f"{name}/{k}": v for name, p in q.params.items() for k, v in p.arrays.items()}
    return container.write(container.Container(header=header, arrays=side, payloads=list(payloads)))


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
