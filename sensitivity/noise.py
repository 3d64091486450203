"""Real codec noise for the sensitivity sweep, and per-channel rate/distortion tables.

With layout "frames" every channel is its own all-intra picture, so ONE encode+decode of the
whole tensor gives every channel's round trip at once, bit-identical to coding that channel
alone (tested in tests/test_api.py for the container; checked again against the naive path in
tests/test_sensitivity.py). Quantization is the tensor's (e.g. per-tensor minmax): the noise of
channel i is what it gets inside the coded tensor, not when coded as a 1-channel tensor.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

import vcfc
from vcfc import container
from vcfc.packing.layouts import pack, plan_streams, unpack
from vcfc.packing.quantizers import dequantize, quantize
from vcfc.spec import CodingSpec

DEFAULT_LAYOUT = "frames"


def sweep_spec(spec: CodingSpec | None = None) -> CodingSpec:
    """The spec the sweep codes with: ``spec`` (default x265) in layout frames, validated."""
    return replace(spec or CodingSpec(), layout=DEFAULT_LAYOUT).checked()


def _chw(x: torch.Tensor) -> torch.Tensor:
    return x[0] if x.dim() == 4 else x


def roundtrip(features: Any, qp: int, spec: CodingSpec) -> Any:
    """Features after one vcfc encode+decode at `qp` (tensor (1,C,H,W)/(C,H,W) or dict)."""
    return vcfc.decode(vcfc.encode(features, qp=int(qp), spec=spec))


def naive_channel_roundtrip(x: torch.Tensor, channel: int, qp: int, spec: CodingSpec) -> torch.Tensor:
    """Channel `channel` of x (C,H,W or 1,C,H,W) after coding that channel ALONE (one picture,
    one ffmpeg run), quantized with the whole tensor's parameters: Algorithm 1 as written."""
    spec = spec.checked()
    arr = _chw(x).detach().cpu().float().numpy()
    codes, params = quantize(arr, spec.quant, spec.bits)
    backend = spec.backend()
    c, h, w = arr.shape
    one = {"x": codes[channel : channel + 1]}
    (plan,) = plan_streams({"x": (1, h, w)}, [("x", 0)], "frames", backend.align)
    payload = backend.encode(pack(one, plan), spec.bits, int(qp), spec.preset)
    out = {"x": np.zeros((1, h, w), np.uint16)}
    unpack(backend.decode(payload, plan.n_frames, plan.height, plan.width, spec.bits), plan, out)
    full = codes.copy()
    full[channel] = out["x"][0]
    # dequantize needs the whole tensor for per-channel parameters; cheap next to ffmpeg
    return torch.from_numpy(dequantize(full, params)[channel])


def rd_tables(x: torch.Tensor, qps: list[int], spec: CodingSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel rate (bytes) and distortion (feature MSE) of x (C,H,W) at each QP: (C, K) each.

    One encode per QP with layout frames (one picture per channel); rate per channel from the
    picture sizes in the bitstream (the backend's `frame_sizes`), distortion = MSE of the
    dequantized round trip. Side information (header, quantizer parameters) is not charged.
    """
    spec = sweep_spec(spec)
    backend = spec.backend()
    arr = _chw(x).detach().cpu().float()
    c = arr.shape[0]
    rate = np.zeros((c, len(qps)))
    dist = np.zeros((c, len(qps)))
    for k, qp in enumerate(qps):
        data = vcfc.encode(arr, qp=int(qp), spec=spec)
        (payload,) = container.read(data).payloads  # one tensor, one QP: one stream of C pictures
        rate[:, k] = backend.frame_sizes(payload, c)
        back = torch.as_tensor(vcfc.decode(data)).float()
        dist[:, k] = ((back - arr) ** 2).mean(dim=(1, 2)).double().numpy()
    return rate, dist
