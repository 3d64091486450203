"""Codec backends on feature-like frames: round trips, rate/distortion order, the QP each slice got,
frame independence, and failures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from tests.bitstream import vvc_qp
from tests.bitstream.hevc_qp import parse_slices, slice_qps
from vcfc.codecs import CODECS, get_codec
from vcfc.codecs.annexb import split_nal_units
from vcfc.errors import CodecError, InputError
from vcfc.ffmpeg import find_ffmpeg, run_ffmpeg

QPS = [22, 27, 32, 37, 42]
FAST = {"x265": "ultrafast", "lossless": "fast", "vvenc": "faster", "jpeg": None, "av1": "6"}


def feature_frames(n: int, h: int, w: int, bits: int, seed: int = 0) -> np.ndarray:
    """Smooth blurred random fields with a few bright blobs, quantized to ``bits``: like packed features."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w), np.uint16)
    for i in range(n):
        f = gaussian_filter(rng.standard_normal((h, w)), rng.uniform(2, 5))
        f = np.maximum(f - f.mean(), 0)  # ReLU-like: many zeros
        f /= f.max() + 1e-9
        for _ in range(3):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(2, 6)
            f += rng.uniform(0.5, 2) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        out[i] = np.round(f / f.max() * ((1 << bits) - 1))
    return out


def mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return find_ffmpeg()


# -- interface ---------------------------------------------------------------------------
def test_registry_and_attributes():
    assert set(CODECS) == {"x265", "vvenc", "jpeg", "lossless", "av1"}
    for name in CODECS:
        c = get_codec(name)
        assert c.name == name and c.align == 8
        assert c.default_preset in c.presets
        lo, hi = c.qp_range
        assert 0 <= lo < hi
    assert get_codec("jpeg").bit_depths == (8,)
    assert get_codec("vvenc").qp_range == (0, 63) and get_codec("x265").qp_range == (0, 51)
    with pytest.raises(InputError, match="unknown codec"):
        get_codec("h264")


# -- lossless ----------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [8, 10])
def test_lossless_is_bit_exact(bits):
    frames = feature_frames(3, 40, 56, bits, seed=bits)
    frames[0, 0, 0], frames[1, -1, -1] = (1 << bits) - 1, 0  # the extremes survive too
    c = get_codec("lossless")
    payload = c.encode(frames, bits, 0, FAST["lossless"])
    np.testing.assert_array_equal(c.decode(payload, 3, 40, 56, bits), frames)
    assert len(payload) < frames.size * bits / 8  # and it does compress


# -- lossy video codecs: rate/distortion order and the QP every slice really got ----------
@pytest.mark.parametrize("bits", [8, 10])
@pytest.mark.parametrize("name", ["x265", "vvenc"])
def test_bytes_fall_and_error_rises_with_qp(name, bits, ffmpeg):
    frames = feature_frames(3, 64, 96, bits, seed=1)
    c = get_codec(name)
    sizes, errors = [], []
    for qp in QPS:
        payload = c.encode(frames, bits, qp, FAST[name])
        got = c.decode(payload, 3, 64, 96, bits)
        assert got.dtype == np.uint16 and got.shape == frames.shape and int(got.max()) < 1 << bits
        sizes.append(len(payload))
        errors.append(mse(got, frames))
        # the QP each slice was coded with is exactly the asked one, with no CU-level changes
        if name == "x265":
            slices = parse_slices(payload)
            assert [s.qp for s in slices] == [qp] * 3
            assert all(s.slice_type == "I" and s.nal_type in (19, 20) for s in slices)  # all IDR
            assert not any(s.cu_qp_delta_enabled for s in slices)
        else:
            assert vvc_qp.slice_qps(ffmpeg, payload) == [qp] * 3
            assert not vvc_qp.cu_qp_delta_enabled(ffmpeg, payload)
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a < b for a, b in zip(errors, errors[1:])), errors
    scale = 4 ** (bits - 8)  # errors are in code units
    assert errors[0] < 3 * scale and errors[-1] < 150 * scale


@pytest.mark.parametrize(("name", "qps"), [("x265", [0, 51]), ("vvenc", [0, 63])])
def test_qp_range_ends_are_honoured(name, qps, ffmpeg):
    frames = feature_frames(1, 32, 32, 10, seed=2)
    for qp in qps:
        payload = get_codec(name).encode(frames, 10, qp, FAST[name])
        got = slice_qps(payload) if name == "x265" else vvc_qp.slice_qps(ffmpeg, payload)
        assert got == [qp]


def test_hevc_reader_agrees_with_ffmpeg_on_inter_streams(ffmpeg):
    """The hand-written HEVC reader matches FFmpeg's parser also on I/P/B streams with varying QP."""
    frames = feature_frames(10, 64, 64, 8, seed=3)
    args = ["-f", "rawvideo", "-pix_fmt", "gray", "-s", "64x64", "-i", "pipe:0", "-c:v", "libx265",
            "-x265-params", "qp=30:bframes=3:ref=3:weightp=1:weightb=1:keyint=6:log-level=error", "-f", "hevc", "pipe:1"]
    stream = run_ffmpeg(ffmpeg, args, frames.astype(np.uint8).tobytes())
    ours = parse_slices(stream)
    assert {s.slice_type for s in ours} == {"I", "P", "B"}
    assert [s.qp for s in ours] == vvc_qp.slice_qps(ffmpeg, stream, "hevc")
    assert len({s.qp for s in ours}) > 1  # x265's default I/P/B offsets: a real test of the reader


# -- frame independence and determinism (per-channel QP streams rely on them) ------------
@pytest.mark.parametrize("name", ["x265", "vvenc", "lossless"])
def test_frames_are_coded_independently(name):
    frames = feature_frames(5, 64, 64, 10, seed=4)
    c = get_codec(name)
    stack = c.decode(c.encode(frames, 10, 32, FAST[name]), 5, 64, 64, 10)
    for i in range(5):
        alone = c.decode(c.encode(frames[i : i + 1], 10, 32, FAST[name]), 1, 64, 64, 10)
        np.testing.assert_array_equal(stack[i], alone[0])


@pytest.mark.parametrize("name", ["x265", "vvenc", "jpeg"])
def test_encoding_is_deterministic(name):
    frames = feature_frames(2, 48, 48, 8, seed=5)
    c = get_codec(name)
    assert c.encode(frames, 8, 30, FAST[name]) == c.encode(frames, 8, 30, FAST[name])


def test_parameter_sets_sent_once():
    frames = feature_frames(4, 32, 32, 8, seed=6)
    nals = split_nal_units(get_codec("x265").encode(frames, 8, 32, "ultrafast"))
    types = [(n[0] >> 1) & 0x3F for n in nals]
    assert types.count(32) == types.count(33) == types.count(34) == 1 and types.count(39) == 0  # no SEI
    nals = split_nal_units(get_codec("vvenc").encode(frames, 8, 32, "faster"))
    types = [n[1] >> 3 for n in nals]
    assert types.count(15) == types.count(16) == 1 and 20 not in types  # SPS, PPS once; no AUD


def test_vvenc_8bit_uses_full_range():
    """8-bit codes are carried as code*4 in the 10-bit luma, and come back exactly at low QP."""
    frames = feature_frames(1, 32, 32, 8, seed=7)
    frames[0, :8, :8] = 255
    c = get_codec("vvenc")
    assert int(np.frombuffer(c.to_yuv(frames, 8), "<u2").max()) == 1020
    got = c.decode(c.encode(frames, 8, 0, "faster"), 1, 32, 32, 8)
    assert int(np.abs(got.astype(int) - frames).max()) <= 1


@pytest.mark.parametrize("name", ["x265", "vvenc", "lossless"])
def test_frames_below_encoder_minimum_are_padded_and_cropped(name):
    """x265 (via ffmpeg) refuses pictures under 16x16 and VVenC 8x8 ones; FPN levels can be that small."""
    c = get_codec(name)
    for h, w in [(8, 8), (8, 24), (24, 8)]:
        frames = feature_frames(2, h, w, 10, seed=h + w)
        got = c.decode(c.encode(frames, 10, 22, FAST[name]), 2, h, w, 10)
        assert got.shape == frames.shape
        if name == "lossless":
            np.testing.assert_array_equal(got, frames)
        else:
            assert mse(got, frames) < 200  # 10-bit units; tiny frames, fast preset


# -- jpeg --------------------------------------------------------------------------------
def test_jpeg_rate_and_error_are_monotone():
    frames = feature_frames(3, 64, 64, 8, seed=8)
    c = get_codec("jpeg")
    sizes, errors = [], []
    for qp in [5, 20, 40, 60, 80, 95]:
        payload = c.encode(frames, 8, qp, None)
        got = c.decode(payload, 3, 64, 64, 8)
        sizes.append(len(payload))
        errors.append(mse(got, frames))
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a < b for a, b in zip(errors, errors[1:])), errors
    base = c.encode(frames, 8, 40, "baseline")
    assert len(base) > sizes[2]  # optimized Huffman tables are smaller
    np.testing.assert_array_equal(c.decode(base, 3, 64, 64, 8), c.decode(c.encode(frames, 8, 40, None), 3, 64, 64, 8))


# -- bad input ---------------------------------------------------------------------------
GOOD = np.zeros((2, 16, 16), np.uint16)


@pytest.mark.parametrize(
    ("frames", "bits", "qp", "preset", "match"),
    [
        (GOOD.astype(np.float32), 8, 30, None, "uint16"),
        (GOOD.astype(np.int32), 8, 30, None, "uint16"),
        (GOOD[0], 8, 30, None, "N,H,W"),
        (np.zeros((0, 16, 16), np.uint16), 8, 30, None, "N,H,W"),
        (np.zeros((1, 12, 16), np.uint16), 8, 30, None, "multiple of 8"),
        (np.full((1, 16, 16), 256, np.uint16), 8, 30, None, "8-bit"),
        (np.full((1, 16, 16), 1024, np.uint16), 10, 30, None, "10-bit"),
        (GOOD, 12, 30, None, "12"),
        (GOOD, 8, -1, None, "qp"),
        (GOOD, 8, 99, None, "qp"),
        (GOOD, 8, True, None, "qp"),
        (GOOD, 8, 30.5, None, "qp"),
        (GOOD, 8, 30, "warp-speed", "preset"),
    ],
)
@pytest.mark.parametrize("name", ["x265", "vvenc"])
def test_bad_input_is_input_error(name, frames, bits, qp, preset, match):
    with pytest.raises(InputError, match=match) as ei:
        get_codec(name).encode(frames, bits, qp, preset)
    assert "\n" not in str(ei.value)


def test_codec_specific_limits():
    with pytest.raises(InputError, match="8-bit"):
        get_codec("jpeg").encode(GOOD, 10, 30, None)
    with pytest.raises(InputError, match="qp"):
        get_codec("jpeg").encode(GOOD, 8, 100, None)
    with pytest.raises(InputError, match="qp"):
        get_codec("x265").encode(GOOD, 8, 52, None)
    get_codec("vvenc").encode(GOOD, 8, 63, "faster")  # 63 is fine for VVC
    get_codec("lossless").encode(GOOD, 8, 999, FAST["lossless"])  # qp ignored
    with pytest.raises(InputError):
        get_codec("x265").decode(b"", 0, 16, 16, 8)


# -- corrupt payloads --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x265", "vvenc", "lossless", "jpeg"])
def test_corrupt_payload_is_codec_error(name):
    frames = feature_frames(3, 32, 32, 8, seed=9)
    c = get_codec(name)
    good = c.encode(frames, 8, 30, FAST[name])
    rng = np.random.default_rng(0)
    bad = {
        "empty": b"",
        "garbage": rng.bytes(600),
        "truncated": good[: len(good) // 2],
        "header only": good[:40],
        "extra bytes": good + good,
    }
    for label, payload in bad.items():
        with pytest.raises(CodecError):
            c.decode(payload, 3, 32, 32, 8)
            pytest.fail(f"{label}: no error")
    with pytest.raises(CodecError):  # right bytes, wrong geometry
        c.decode(good, 3, 32, 40, 8)
    with pytest.raises(CodecError):
        c.decode(good, 4, 32, 32, 8)


# -- registry: what other layers read from the backend classes ---------------------------
def test_every_backend_describes_itself(ffmpeg):
    import av

    from vcfc.codecs import BACKENDS
    from vcfc.ffmpeg import capabilities

    assert list(CODECS.values()) == list(BACKENDS)
    caps = capabilities(ffmpeg)
    for name, cls in CODECS.items():
        assert cls.name == name and cls.description and "\n" not in cls.description
        assert (cls.encoder is None) == (cls.decoder is None) == (name == "jpeg")
        if cls.encoder:
            assert cls.encoder in caps["encoders"] and cls.decoder in av.codecs_available
        assert cls.frames_separable


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_bad_thread_budget_is_input_error(threads):
    with pytest.raises(InputError, match="threads"):
        get_codec("x265", threads=threads)


# -- per-picture structure: split, join, sizes -------------------------------------------
def separable_frames(name: str) -> tuple[np.ndarray, int]:
    """3 feature-like frames big enough for VVenC to send ALF APS units (not for every picture)."""
    from tests.conftest import feature_like

    bits = 8 if name == "jpeg" else 10
    x = feature_like(3, 128, 192, seed=5)
    return np.round(x / x.max(axis=(1, 2), keepdims=True) * ((1 << bits) - 1)).astype(np.uint16), bits


@pytest.mark.parametrize("name", sorted(CODECS))
def test_any_pictures_in_any_order_decode_to_those_pictures(name):
    """The contract that lets a caller assemble payloads from pictures of other payloads."""
    from itertools import permutations

    frames, bits = separable_frames(name)
    c = get_codec(name)
    payload = c.encode(frames, bits, 27, FAST[name])
    prefix, parts = c.split_frames(payload, 3)
    assert len(parts) == 3 and c.join_frames(prefix, parts) == payload
    full = c.decode(payload, 3, 128, 192, bits)
    for k in (1, 2, 3):
        for order in permutations(range(3), k):
            got = c.decode(c.join_frames(prefix, [parts[i] for i in order]), k, 128, 192, bits)
            np.testing.assert_array_equal(got, full[list(order)], err_msg=f"{name} pictures {order}")
    sizes = c.frame_sizes(payload, 3)
    assert sizes.dtype == np.float64 and sizes.sum() == pytest.approx(len(payload), abs=1e-6)
    np.testing.assert_allclose(sizes, [len(p) + len(prefix) / 3 for p in parts])
    if name == "vvenc":  # the case that could break: ALF parameters in APS units
        aps = [[(n[1] >> 3) == 17 for n in split_nal_units(p)] for p in parts]
        assert any(map(any, aps)) and not all(map(any, aps)), aps
        assert all(a[-1] is False for a in aps)  # each picture's APS precede its slice


@pytest.mark.parametrize("name", sorted(n for n in CODECS if CODECS[n].uses_qp))
def test_pictures_of_uniform_qp_encodes_make_a_per_picture_qp_payload(name):
    frames, bits = separable_frames(name)
    c = get_codec(name)
    qps = (22, 37)
    split = [c.split_frames(c.encode(frames, bits, qp, FAST[name]), 3) for qp in qps]
    full = [c.decode(c.join_frames(*s), 3, 128, 192, bits) for s in split]
    assert split[0][0] == split[1][0]  # the prefix does not depend on the QP
    pick = [1, 0, 1]
    mixed = c.join_frames(split[0][0], [split[q][1][i] for i, q in enumerate(pick)])
    got = c.decode(mixed, 3, 128, 192, bits)
    np.testing.assert_array_equal(got, np.stack([full[q][i] for i, q in enumerate(pick)]))
    if name == "x265":
        assert slice_qps(mixed) == [qps[q] for q in pick]


def test_hevc_split_is_parameter_sets_then_one_slice_per_picture():
    c = get_codec("x265")
    prefix, parts = c.split_frames(c.encode(feature_frames(4, 32, 32, 8, seed=11), 8, 30, "ultrafast"), 4)
    assert [(n[0] >> 1) & 0x3F for n in split_nal_units(prefix)] == [32, 33, 34]
    assert [[(n[0] >> 1) & 0x3F for n in split_nal_units(p)] for p in parts] == [[20]] * 4


@pytest.mark.parametrize("name", sorted(CODECS))
def test_split_checks_the_picture_count(name):
    frames, bits = feature_frames(2, 16, 16, 8, seed=12), 8
    c = get_codec(name)
    payload = c.encode(frames, bits, 30, FAST[name])
    for n in (1, 3):
        with pytest.raises(CodecError):
            c.split_frames(payload, n)


# -- thread budget -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x265", "lossless", "vvenc"])
def test_thread_budget_does_not_change_the_stream(name):
    """pools/frame-threads (x265) and -threads (VVenC) only change speed, never the bytes."""
    frames = feature_frames(4, 64, 96, 10, seed=13)
    ref = get_codec(name).encode(frames, 10, 30, FAST[name])
    for threads in (1, 3, 16):  # VVenC would switch on IFP at 8 and WPP at 16 threads by itself
        c = get_codec(name, threads=threads)
        assert c.encode(frames, 10, 30, FAST[name]) == ref, threads
        np.testing.assert_array_equal(c.decode(ref, 4, 64, 96, 10), get_codec(name).decode(ref, 4, 64, 96, 10))
    assert "pools=1:frame-threads=1" in " ".join(get_codec("x265", threads=1).ffmpeg_args(4, 64, 96, 10, 30, "fast"))


def test_vvenc_returns_every_picture_for_any_frame_count():
    """With frame-parallel coding, libvvenc via ffmpeg 9.0.2 sometimes returned no pictures (exit 0)
    for 7-9 frames; MaxParallelFrames=0 avoids it, and encode() checks the picture count."""
    frames = feature_frames(9, 64, 64, 10, seed=14)
    for threads in (None, 4):
        c = get_codec("vvenc", threads=threads)
        for n in (6, 7, 8, 9):
            assert c.decode(c.encode(frames[:n], 10, 32, "faster"), n, 64, 64, 10).shape == (n, 64, 64)


def test_encoder_losing_pictures_is_a_codec_error(monkeypatch):
    c = get_codec("x265")
    monkeypatch.setattr(type(c), "clean_stream", lambda self, s: s[: len(s) // 2])
    with pytest.raises(CodecError, match="incomplete stream"):
        c.encode(feature_frames(4, 32, 32, 8, seed=15), 8, 30, "ultrafast")
