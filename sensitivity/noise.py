"""Real codec noise for the sensitivity sweep, and per-channel rate/distortion tables.

With layout "frames" every channel is its own all-intra picture, so ONE encode+decode of the
whole tensor gives every channel's round trip at once, bit-identical to coding that channel
alone (tested in tests/test_api.py for the container; checked again against the naive path in
tests/test_sensitivity.py). Quantization is the tensor's (e.g. per-tensor minmax): the noise of
channel i is what it gets inside the coded tensor, not when coded as a 1-channel tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import vcfc
from packing.layouts import pack, plan_streams, unpack
from packing.quantizers import dequantize, quantize
from vcfc import container
from vcfc.codecs import get_codec
from vcfc.codecs.annexb import split_nal_units

DEFAULT_LAYOUT = "frames"


@dataclass(frozen=True)
class CodecSpec:
    """How the features are coded (what `vcfc.encode` takes besides the QP)."""

    codec: str = "x265"
    quant: str = "minmax"
    bits: int = 8
    layout: str = DEFAULT_LAYOUT
    preset: str | None = None

    def qp_limits(self) -> tuple[int, int]:
        return tuple(get_codec(self.codec).qp_range)  # type: ignore[return-value]


def _chw(x: torch.Tensor) -> torch.Tensor:
    return x[0] if x.dim() == 4 else x


def roundtrip(features: Any, qp: int, spec: CodecSpec) -> Any:
    """Features after one vcfc encode+decode at `qp` (tensor (1,C,H,W)/(C,H,W) or dict)."""
    data = vcfc.encode(features, codec=spec.codec, qp=int(qp), quant=spec.quant, bits=spec.bits,
                       layout=spec.layout, preset=spec.preset)
    return vcfc.decode(data)


def naive_channel_roundtrip(x: torch.Tensor, channel: int, qp: int, spec: CodecSpec) -> torch.Tensor:
    """Channel `channel` of x (C,H,W or 1,C,H,W) after coding that channel ALONE (one picture,
    one ffmpeg run), quantized with the whole tensor's parameters: Algorithm 1 as written."""
    arr = _chw(x).detach().cpu().float().numpy()
    codes, params = quantize(arr, spec.quant, spec.bits)
    backend = get_codec(spec.codec)
    preset = backend.default_preset if spec.preset is None else spec.preset
    c, h, w = arr.shape
    one = {"x": codes[channel : channel + 1]}
    (plan,) = plan_streams({"x": (1, h, w)}, [("x", 0)], "frames", backend.align)
    payload = backend.encode(pack(one, plan), spec.bits, int(qp), preset)
    out = {"x": np.zeros((1, h, w), np.uint16)}
    unpack(backend.decode(payload, plan.n_frames, plan.height, plan.width, spec.bits), plan, out)
    full = codes.copy()
    full[channel] = out["x"][0]
    # dequantize needs the whole tensor for per-channel parameters; cheap next to ffmpeg
    return torch.from_numpy(dequantize(full, params)[channel])


def frame_bytes(payload: bytes, codec: str, n_frames: int) -> np.ndarray:
    """Bytes of each picture of an all-intra Annex-B payload (one slice per picture).

    Parameter sets before the first picture are shared: split evenly over the pictures. Other
    non-picture NAL units (e.g. VVC picture headers) go to the picture that follows them. Each NAL
    is counted with a 4-byte start code. Unknown structure (or JPEG): an even split.
    """
    even = np.full(n_frames, len(payload) / max(n_frames, 1))
    if codec not in ("x265", "vvenc", "lossless"):
        return even
    nals = split_nal_units(payload)
    if codec == "vvenc":
        is_vcl = [((n[1] >> 3) & 0x1F) < 12 for n in nals if len(n) > 1]
    else:
        is_vcl = [((n[0] >> 1) & 0x3F) < 32 for n in nals]
    sizes, shared, pending, seen = [], 0.0, 0, False
    for nal, vcl in zip(nals, is_vcl):
        b = len(nal) + 4
        if vcl:
            sizes.append(pending + b)
            pending, seen = 0, True
        elif seen:
            pending += b
        else:
            shared += b
    if len(sizes) != n_frames:
        return even
    sizes[-1] += pending
    return np.asarray(sizes, float) + shared / n_frames


def rd_tables(x: torch.Tensor, qps: list[int], spec: CodecSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel rate (bytes) and distortion (feature MSE) of x (C,H,W) at each QP: (C, K) each.

    One encode per QP with layout frames (one picture per channel); rate per channel from the
    picture sizes in the bitstream (`frame_bytes`), distortion = MSE of the dequantized round trip.
    Side information (header, quantizer parameters) is not charged to channels.
    """
    arr = _chw(x).detach().cpu().float()
    c = arr.shape[0]
    rate = np.zeros((c, len(qps)))
    dist = np.zeros((c, len(qps)))
    for k, qp in enumerate(qps):
        data = vcfc.encode(arr, codec=spec.codec, qp=int(qp), quant=spec.quant, bits=spec.bits,
                           layout="frames", preset=spec.preset)
        payloads = container.read(data).payloads
        if len(payloads) == 1:
            rate[:, k] = frame_bytes(payloads[0], spec.codec, c)
        else:  # channel sizes differ (cannot happen for one tensor) -> even split
            rate[:, k] = sum(len(p) for p in payloads) / c
        back = torch.as_tensor(vcfc.decode(data)).float()
        dist[:, k] = ((back - arr) ** 2).mean(dim=(1, 2)).double().numpy()
    return rate, dist
