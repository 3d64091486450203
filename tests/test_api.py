"""End-to-end behaviour of vcfc.encode / decode / inspect on feature-like tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vcfc
from tests.conftest import feature_like
from vcfc.packing.quantizers import quantize

QUANTS = ["minmax", "minmax-channel", "log", "zscore"]
LAYOUTS = ["mosaic", "mosaic-level", "frames"]


def fpn(c: int = 6, seed: int = 1) -> dict[str, np.ndarray]:
    sizes = {"p2": (32, 48), "p3": (16, 24), "p4": (8, 12), "p5": (4, 6)}
    return {k: feature_like(c, h, w, seed + i) for i, (k, (h, w)) in enumerate(sizes.items())}


@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("quant", QUANTS)
def test_lossless_round_trips_codes_exactly(quant, layout, bits):
    x = feature_like(10, 20, 28, seed=3)
    data = vcfc.encode(x, codec="lossless", quant=quant, bits=bits, layout=layout)
    expected, _ = quantize(x, quant, bits)
    got = vcfc.decode_codes(data)["x"]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lossless_pyramid_round_trip(layout):
    feats = fpn()
    data = vcfc.encode(feats, codec="lossless", quant="minmax-channel", bits=10, layout=layout)
    codes = vcfc.decode_codes(data)
    for name, x in feats.items():
        np.testing.assert_array_equal(codes[name], quantize(x, "minmax-channel", 10)[0])
    out = vcfc.decode(data)
    assert set(out) == set(feats) and all(out[k].shape == feats[k].shape for k in feats)


def test_lossless_decode_inverts_quantizer_within_half_step():
    x = feature_like(8, 16, 16, seed=5)
    out = vcfc.decode(vcfc.encode(x, codec="lossless", quant="minmax-channel", bits=10))
    step = (x.max(axis=(1, 2)) - x.min(axis=(1, 2))) / 1023
    assert np.all(np.abs(out - x).max(axis=(1, 2)) <= step / 2 + 1e-6)


@pytest.mark.parametrize("codec,preset", [("x265", "ultrafast"), ("vvenc", "faster")])
def test_rate_falls_and_error_rises_with_qp(codec, preset):
    x = feature_like(16, 32, 32, seed=7)
    sizes, errors = [], []
    for qp in (22, 27, 32, 37, 42):
        data = vcfc.encode(x, codec=codec, qp=qp, preset=preset)
        sizes.append(len(data))
        errors.append(float(np.mean((vcfc.decode(data) - x) ** 2)))
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a < b for a, b in zip(errors, errors[1:])), errors


@pytest.mark.parametrize("codec,preset", [("x265", "ultrafast"), ("vvenc", "faster")])
def test_mixed_qp_channel_equals_channel_coded_alone(codec, preset):
    """Channel-as-frame: a channel from a mixed-QP file is bit-identical to it coded alone at its QP."""
    x = feature_like(6, 24, 32, seed=11)
    qps = [22, 37, 30, 22, 45, 30]
    mixed = vcfc.decode_codes(vcfc.encode(x, codec=codec, channel_qps=qps, quant="minmax-channel", layout="frames", preset=preset))["x"]
    for i, qp in enumerate(qps):
        alone = vcfc.decode_codes(vcfc.encode(x[i : i + 1], codec=codec, qp=qp, quant="minmax-channel", layout="frames", preset=preset))["x"]
        np.testing.assert_array_equal(mixed[i], alone[0], err_msg=f"channel {i} at QP {qp}")


@pytest.mark.parametrize("codec,preset", [("x265", "ultrafast"), ("vvenc", "faster")])
def test_mixed_qp_mosaic_group_equals_group_coded_alone(codec, preset):
    """Mosaic: channels sharing a QP form one mosaic; it equals those channels coded alone at that QP."""
    x = feature_like(8, 16, 16, seed=13)
    qps = np.array([27, 37, 27, 37, 27, 42, 37, 27])
    mixed = vcfc.decode_codes(vcfc.encode(x, codec=codec, channel_qps=qps, quant="minmax-channel", preset=preset))["x"]
    for qp in np.unique(qps):
        idx = np.flatnonzero(qps == qp)
        alone = vcfc.decode_codes(vcfc.encode(x[idx], codec=codec, qp=int(qp), quant="minmax-channel", preset=preset))["x"]
        np.testing.assert_array_equal(mixed[idx], alone)


def test_per_channel_qp_changes_only_that_channel_rate():
    x = feature_like(4, 32, 32, seed=17)
    base = vcfc.inspect(vcfc.encode(x, codec="x265", qp=37, layout="frames", preset="ultrafast"))
    finer = vcfc.inspect(vcfc.encode(x, codec="x265", channel_qps=[22, 37, 37, 37], layout="frames", preset="ultrafast"))
    assert finer["payload_bytes"] > base["payload_bytes"]
    assert finer["channel_qps"]["x"] == [22, 37, 37, 37]
    assert [s["qp"] for s in finer["streams"]] == [22, 37]


def test_torch_dtype_kind_and_shape_are_restored():
    x = torch.from_numpy(feature_like(4, 8, 8)).unsqueeze(0)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        out = vcfc.decode(vcfc.encode(x.to(dtype), codec="lossless", bits=10))
        assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == (1, 4, 8, 8)
    arr = feature_like(3, 8, 8).astype(np.float16)
    out = vcfc.decode(vcfc.encode(arr, codec="lossless"))
    assert isinstance(out, np.ndarray) and out.dtype == np.float16


def test_similarity_reorder_round_trips_and_is_recorded():
    x = feature_like(12, 16, 16, seed=19)
    data = vcfc.encode(x, codec="lossless", reorder="similarity", bits=10)
    np.testing.assert_array_equal(vcfc.decode_codes(data)["x"], quantize(x, "minmax", 10)[0])
    assert vcfc.inspect(data)["reordered"] is True


def test_inspect_reports_honest_rate():
    x = feature_like(8, 16, 16)
    data = vcfc.encode(x, codec="x265", qp=32, preset="ultrafast", input_size=(64, 64))
    info = vcfc.inspect(data)
    assert info["bytes"] == len(data)
    assert info["side_info_bytes"] + info["payload_bytes"] == len(data)
    assert info["bpfe"] == pytest.approx(8 * len(data) / x.size)
    assert info["bpp"] == pytest.approx(8 * len(data) / (64 * 64))
    assert info["ratio_to_float32"] == pytest.approx(4 * x.size / len(data))
    assert info["shapes"] == {"x": [8, 16, 16]} and info["codec"] == "x265" and info["bits"] == 8


def test_jpeg_baseline_monotone_in_qp():
    x = feature_like(9, 24, 24, seed=23)
    sizes = [len(vcfc.encode(x, codec="jpeg", qp=qp)) for qp in (10, 30, 50, 70, 90)]
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes


@pytest.mark.parametrize(
    "features,kwargs,match",
    [
        (np.full((2, 4, 4), np.nan, np.float32), {"qp": 30}, "NaN"),
        (np.array([[[1.0, np.inf]]], np.float32), {"qp": 30}, "Inf"),
        (np.zeros((2, 2, 4, 4), np.float32), {"qp": 30}, "one image at a time"),
        (np.zeros((2, 3, 4, 4, 4), np.float32), {"qp": 30}, "C×H×W"),
        (np.zeros((2, 4, 4), np.int32), {"qp": 30}, "floating point"),
        (np.zeros((2, 4, 4), np.float32), {"qp": 99}, "QP out of range"),
        (np.zeros((2, 4, 4), np.float32), {"channel_qps": [30]}, "2 channels"),
        (np.zeros((2, 4, 4), np.float32), {}, "needs a QP"),
        (np.zeros((2, 4, 4), np.float32), {"qp": 30, "quant": "fancy"}, "unknown quantizer"),
        (np.zeros((2, 4, 4), np.float32), {"qp": 30, "layout": "spiral"}, "unknown layout"),
        (np.zeros((2, 4, 4), np.float32), {"qp": 30, "codec": "jpeg", "bits": 10}, "8-bit"),
        (np.zeros((2, 4, 4), np.float32), {"qp": 30, "preset": "warp"}, "preset"),
        ("not a tensor", {"qp": 30}, "expected a torch tensor"),
    ],
)
def test_bad_input_is_a_clear_input_error(features, kwargs, match):
    with pytest.raises(vcfc.InputError, match=match):
        vcfc.encode(features, **kwargs)


def test_constant_and_zero_tensors_round_trip():
    z = np.zeros((3, 8, 8), np.float32)
    np.testing.assert_array_equal(vcfc.decode(vcfc.encode(z, codec="x265", qp=30, preset="ultrafast")), z)
    c = np.full((3, 8, 8), 2.5, np.float32)
    for quant in QUANTS:
        np.testing.assert_array_equal(vcfc.decode(vcfc.encode(c, codec="lossless", quant=quant)), c)
