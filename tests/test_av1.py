"""AV1 backend (libaom encode, libdav1d decode): round trips, rate order, the quantizer of every
frame read back from the bitstream, frame independence, stream structure, and failures."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from tests.bitstream import av1_q
from tests.conftest import feature_like
from tests.test_codecs import feature_frames, mse
from tests.test_ffmpeg import FAKE
from vcfc.codecs import get_codec
from vcfc.codecs.av1 import qindex
from vcfc.codecs.obu import obus
from vcfc.errors import CodecError, EncoderMissingError, InputError
from vcfc.ffmpeg import find_ffmpeg

PRESET = "6"
FRAME_OBUS = {3, 4, 6}  # frame header, tile group, frame


@pytest.fixture(scope="module")
def ffmpeg() -> str:
    return find_ffmpeg()


def codes(c: int, h: int, w: int, bits: int, seed: int = 0) -> np.ndarray:
    """conftest's feature-like maps, each quantized min-max to ``bits``."""
    x = feature_like(c, h, w, seed=seed)
    return np.round(x / x.max(axis=(1, 2), keepdims=True) * ((1 << bits) - 1)).astype(np.uint16)


def test_attributes():
    c = get_codec("av1")
    assert (c.encoder, c.decoder, c.qp_range, c.align) == ("libaom-av1", "libdav1d", (0, 63), 8)
    assert c.default_preset in c.presets and c.presets == tuple("0123456")


@pytest.mark.parametrize("bits", [8, 10])
def test_round_trip_is_monochrome_and_close(bits, ffmpeg):
    frames = codes(3, 64, 96, bits, seed=1)
    c = get_codec("av1")
    payload = c.encode(frames, bits, 20, PRESET)
    got = c.decode(payload, 3, 64, 96, bits)
    assert got.dtype == np.uint16 and got.shape == frames.shape and int(got.max()) < 1 << bits
    assert mse(got, frames) < 20 * 4 ** (bits - 8)  # PSNR above 35 dB
    assert av1_q.monochrome(ffmpeg, payload)  # a real 4:0:0 stream: no chroma coded at all


@pytest.mark.parametrize("bits", [8, 10])
def test_bytes_fall_and_every_frame_gets_exactly_the_asked_quantizer(bits, ffmpeg):
    frames = codes(3, 64, 96, bits, seed=2)
    c = get_codec("av1")
    sizes, errors = [], []
    for qp in (8, 16, 24, 32, 40, 48, 56, 63):
        payload = c.encode(frames, bits, qp, PRESET)
        sizes.append(len(payload))
        errors.append(mse(c.decode(payload, 3, 64, 96, bits), frames))
        headers = av1_q.frame_headers(ffmpeg, payload)
        assert len(headers) == 3
        for h in headers:
            assert h["show_existing_frame"] == 0 and h["frame_type"] == 0 and h["show_frame"] == 1  # shown key frames
            assert h["base_q_idx"] == qindex(qp)
            # nothing lets a block use another quantizer
            assert h["delta_q_present"] == h["segmentation_enabled"] == h["using_qmatrix"] == 0
            assert h["delta_q_y_dc.delta_coded"] == 0
    assert all(a > b for a, b in zip(sizes, sizes[1:])), sizes
    assert all(a < b for a, b in zip(errors, errors[1:])), errors


def test_quantizer_mapping_at_the_ends_of_the_range(ffmpeg):
    frames = feature_frames(1, 16, 16, 10, seed=3)
    c = get_codec("av1")
    for qp, q_idx in [(0, 0), (1, 4), (31, 124), (61, 244), (62, 249), (63, 255)]:
        assert qindex(qp) == q_idx
        assert av1_q.base_q_idx(ffmpeg, c.encode(frames, 10, qp, PRESET)) == [q_idx]


@pytest.mark.parametrize("bits", [8, 10])
def test_qp_0_is_lossless(bits):
    frames = codes(2, 32, 48, bits, seed=4)
    frames[0, 0, 0], frames[1, -1, -1] = (1 << bits) - 1, 0
    c = get_codec("av1")
    np.testing.assert_array_equal(c.decode(c.encode(frames, bits, 0, PRESET), 2, 32, 48, bits), frames)


def test_frames_are_coded_independently():
    """A frame coded inside a multi-frame stream decodes bit-identical to that frame coded alone."""
    frames = codes(5, 64, 64, 10, seed=5)
    c = get_codec("av1")
    stack = c.decode(c.encode(frames, 10, 32, PRESET), 5, 64, 64, 10)
    for i in range(5):
        alone = c.decode(c.encode(frames[i : i + 1], 10, 32, PRESET), 1, 64, 64, 10)
        np.testing.assert_array_equal(stack[i], alone[0])


@pytest.mark.parametrize("shape", [(4, 96, 160), (1, 32, 4160)])  # wider than 4096: two tiles
def test_encoding_is_deterministic_and_independent_of_the_thread_budget(shape):
    """libaom's multi-threaded paths (row-mt, tile threads) code differently from one thread,
    so it always runs single-threaded; the budget only reaches the decoder."""
    n, h, w = shape
    frames = codes(n, h, w, 10, seed=6)
    ref = get_codec("av1").encode(frames, 10, 34, PRESET)
    assert get_codec("av1").encode(frames, 10, 34, PRESET) == ref
    for threads in (1, 3):
        c = get_codec("av1", threads=threads)
        assert c.encode(frames, 10, 34, PRESET) == ref, threads
        np.testing.assert_array_equal(c.decode(ref, n, h, w, 10), get_codec("av1").decode(ref, n, h, w, 10))
    for threads in (None, 1, 3):
        args = get_codec("av1", threads=threads).ffmpeg_args(n, h, w, 10, 34, PRESET)
        assert args[args.index("-threads") + 1] == "1" and args[args.index("-row-mt") + 1] == "0"


def test_stream_is_sequence_header_once_then_one_temporal_unit_per_frame():
    c = get_codec("av1")
    payload = c.encode(feature_frames(4, 32, 32, 8, seed=7), 8, 30, PRESET)
    assert [k for k, _ in obus(payload)] == [2, 1, 6, 2, 6, 2, 6, 2, 6]  # TD SEQ FRAME, TD FRAME, ...
    prefix, parts = c.split_frames(payload, 4)
    assert [k for k, _ in obus(prefix)] == [1]
    assert all([k for k, _ in obus(p)][0] == 2 and {k for k, _ in obus(p)[1:]} <= FRAME_OBUS for p in parts)
    assert c.join_frames(prefix, parts) == payload
    assert c.join_frames(prefix, parts[2:3]) == parts[2][:2] + prefix + parts[2][2:]


def test_tiny_frames():
    """AV1 codes any size: FPN levels of 8x8 need no padding (x265/VVenC need 16x16)."""
    c = get_codec("av1")
    assert c.coded_size(8, 8) == (8, 8)
    for h, w in [(8, 8), (8, 24), (24, 8)]:
        frames = feature_frames(2, h, w, 10, seed=h + w)
        np.testing.assert_array_equal(c.decode(c.encode(frames, 10, 0, PRESET), 2, h, w, 10), frames)
        assert mse(c.decode(c.encode(frames, 10, 22, PRESET), 2, h, w, 10), frames) < 200


@pytest.mark.parametrize(("qp", "preset", "bits", "match"),
                         [(64, PRESET, 8, "qp"), (-1, PRESET, 8, "qp"), (30, "7", 8, "preset"),
                          (30, "fast", 8, "preset"), (30, PRESET, 12, "12")])
def test_bad_input_is_input_error(qp, preset, bits, match):
    with pytest.raises(InputError, match=match):
        get_codec("av1").encode(np.zeros((1, 16, 16), np.uint16), bits, qp, preset)


def test_corrupt_payload_is_codec_error():
    frames = feature_frames(3, 32, 32, 8, seed=9)
    c = get_codec("av1")
    good = c.encode(frames, 8, 30, PRESET)
    rng = np.random.default_rng(0)
    bad = {"empty": b"", "garbage": rng.bytes(600), "truncated": good[: len(good) // 2],
           "header only": good[:14], "extra bytes": good + good, "no delimiter": good[2:]}
    for label, payload in bad.items():
        with pytest.raises(CodecError):
            c.decode(payload, 3, 32, 32, 8)
            pytest.fail(f"{label}: no error")
    with pytest.raises(CodecError):  # right bytes, wrong geometry or depth
        c.decode(good, 3, 32, 40, 8)
    with pytest.raises(CodecError):
        c.decode(good, 3, 32, 32, 10)


def test_encode_with_ffmpeg_lacking_libaom(tmp_path):
    fake = tmp_path / "ffmpeg"
    fake.write_text(FAKE)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(EncoderMissingError, match="libaom-av1") as ei:
        get_codec("av1", ffmpeg=str(fake)).encode(np.zeros((1, 16, 16), np.uint16), 8, 32, None)
    assert str(fake) in str(ei.value) and "\n" not in str(ei.value)
