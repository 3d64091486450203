"""vcfc.ffmpeg: finding ffmpeg, its capabilities, missing encoders, and failures."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from vcfc.codecs import CODECS, get_codec
from vcfc.errors import CodecError, EncoderMissingError
from vcfc.ffmpeg import capabilities, find_ffmpeg, last_error_line, require_encoder, run_ffmpeg

# A stand-in ffmpeg: answers -version/-encoders/-decoders with a build lacking libvvenc,
# and fails any real job with a meaningful line followed by ffmpeg's generic one.
FAKE = """#!/bin/sh
for a in "$@"; do
  case "$a" in
    -version) echo "ffmpeg version fake-1.0 Copyright (c) the fakers"; exit 0;;
    -encoders) printf 'Encoders:\\n V..... = Video\\n ------\\n V....D libx265              libx265 H.265 / HEVC (codec hevc)\\n VFS..D mjpeg                MJPEG\\n'; exit 0;;
    -decoders) printf 'Decoders:\\n ------\\n VFS..D hevc                 HEVC\\n'; exit 0;;
  esac
done
echo "[libx265 @ 0x1] pretend the encoder blew up" >&2
echo "Conversion failed!" >&2
exit 1
"""


@pytest.fixture
def fake_ffmpeg(tmp_path: Path) -> str:
    p = tmp_path / "ffmpeg"
    p.write_text(FAKE)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return str(p)


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("VCFC_FFMPEG", raising=False)


def test_default_is_imageio_ffmpeg(no_env):
    import imageio_ffmpeg

    assert find_ffmpeg() == imageio_ffmpeg.get_ffmpeg_exe()


def test_override_beats_env_beats_default(monkeypatch, fake_ffmpeg, tmp_path):
    other = tmp_path / "other-ffmpeg"
    other.write_text(FAKE)
    other.chmod(0o755)
    monkeypatch.setenv("VCFC_FFMPEG", str(other))
    assert find_ffmpeg() == str(other)
    assert find_ffmpeg(fake_ffmpeg) == fake_ffmpeg


@pytest.mark.parametrize("how", ["missing", "not-executable", "directory"])
def test_bad_path_is_a_one_line_codec_error(tmp_path, how, monkeypatch):
    path = tmp_path / "ffmpeg"
    if how == "not-executable":
        path.write_text("#!/bin/sh\n")
        path.chmod(0o644)
    elif how == "directory":
        path.mkdir()
    with pytest.raises(CodecError) as ei:
        find_ffmpeg(str(path))
    assert str(path) in str(ei.value) and "\n" not in str(ei.value)
    monkeypatch.setenv("VCFC_FFMPEG", str(path))
    with pytest.raises(CodecError, match="VCFC_FFMPEG"):
        find_ffmpeg()


def test_bad_path_fails_encode_not_decode(tmp_path, no_env):
    """Decoding is in-process, so a bad --ffmpeg only matters when encoding."""
    bad = str(tmp_path / "nope")
    frames = np.zeros((1, 16, 16), np.uint16)
    good = get_codec("lossless").encode(frames, 8, 0, None)
    codec = get_codec("lossless", ffmpeg=bad)
    np.testing.assert_array_equal(codec.decode(good, 1, 16, 16, 8), frames)
    with pytest.raises(CodecError, match="does not exist"):
        codec.encode(frames, 8, 0, None)


def test_capabilities_of_bundled_ffmpeg(no_env):
    caps = capabilities(find_ffmpeg())
    assert caps["path"] == find_ffmpeg()
    assert caps["version"] and caps["version"] != "unknown"
    assert {"libx265", "libvvenc", "libaom-av1", "mjpeg"} <= caps["encoders"]
    assert {"hevc", "vvc", "libdav1d"} <= caps["decoders"]
    for name in ("x265", "vvenc", "av1"):  # each backend reads its own library's version
        assert CODECS[name].library_version(find_ffmpeg()), name
    assert capabilities(find_ffmpeg()) is caps  # cached per path


def test_capabilities_of_a_build_without_vvenc(fake_ffmpeg):
    caps = capabilities(fake_ffmpeg)
    assert caps["version"] == "fake-1.0"
    assert caps["encoders"] == {"libx265", "mjpeg"}  # every listed encoder, nothing else
    assert caps["decoders"] == {"hevc"}


def test_missing_encoder_names_encoder_and_override(fake_ffmpeg):
    with pytest.raises(EncoderMissingError) as ei:
        require_encoder(fake_ffmpeg, "libvvenc")
    msg = str(ei.value)
    assert "libvvenc" in msg and fake_ffmpeg in msg
    assert "--ffmpeg PATH" in msg and "VCFC_FFMPEG" in msg and "\n" not in msg
    require_encoder(fake_ffmpeg, "libx265")  # present: no error


def test_vvenc_encode_with_ffmpeg_lacking_it(fake_ffmpeg):
    frames = np.zeros((1, 16, 16), np.uint16)
    with pytest.raises(EncoderMissingError, match="libvvenc"):
        get_codec("vvenc", ffmpeg=fake_ffmpeg).encode(frames, 8, 32, None)


def test_env_var_reaches_codecs(monkeypatch, fake_ffmpeg):
    monkeypatch.setenv("VCFC_FFMPEG", fake_ffmpeg)
    with pytest.raises(EncoderMissingError, match="VCFC_FFMPEG"):
        get_codec("vvenc").encode(np.zeros((1, 16, 16), np.uint16), 8, 32, None)


def test_failed_run_reports_the_meaningful_stderr_line(fake_ffmpeg):
    with pytest.raises(CodecError) as ei:
        get_codec("x265", ffmpeg=fake_ffmpeg).encode(np.zeros((1, 16, 16), np.uint16), 8, 32, None)
    assert "pretend the encoder blew up" in str(ei.value)
    assert "Conversion failed" not in str(ei.value)


def test_real_ffmpeg_error_is_codec_error(no_env):
    with pytest.raises(CodecError) as ei:
        run_ffmpeg(find_ffmpeg(), ["-f", "rawvideo", "-i", "pipe:0", "-c:v", "no_such_encoder", "-f", "null", "-"], b"")
    assert "\n" not in str(ei.value)


def test_last_error_line():
    assert last_error_line(b"a\n[x] real cause\nConversion failed!\n") == "[x] real cause"
    cascade = (
        b"[libx265 @ 0x55cdae45d2c0] Image size is too small (16x8).\n"
        b"[vost#0:0/libx265 @ 0x55c] [enc:libx265 @ 0x55d] Error while opening encoder - maybe incorrect parameters\n"
        b"[vf#0:0 @ 0x55c] Task finished with error code: -22 (Invalid argument)\n"
        b"[out#0/hevc @ 0x55c] Nothing was written into output file, because at least one of its streams received no packets.\n"
    )
    assert last_error_line(cascade) == "Image size is too small (16x8)."
    assert last_error_line(b"") == "no error message"
    assert os.linesep not in last_error_line(b"one\r\ntwo\r\n")
