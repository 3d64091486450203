"""The CLI contract: files in, files out, JSON info, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tests.conftest import feature_like


def vcfc_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vcfc", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def assert_one_line_error(r: subprocess.CompletedProcess, match: str, code: int = 2) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip() and not line.startswith("vcfc: warning:")]
    assert len(lines) == 1 and match in lines[0], r.stderr


def test_encode_info_decode_npy(tmp_path: Path):
    x = feature_like(8, 16, 16, seed=4)
    np.save(tmp_path / "f.npy", x)
    r = vcfc_cli("encode", str(tmp_path / "f.npy"), str(tmp_path / "f.vcfc"), "--codec", "x265", "--qp", "22", "--preset", "ultrafast", "--input-size", "64x64")
    assert r.returncode == 0, r.stderr
    info = json.loads(vcfc_cli("info", str(tmp_path / "f.vcfc"), "--json").stdout)
    for key in ("bytes", "side_info_bytes", "bpfe", "codec", "layout", "quant", "bits", "shapes", "channel_qps"):
        assert key in info
    assert info["bytes"] == (tmp_path / "f.vcfc").stat().st_size
    assert info["shapes"] == {"x": [8, 16, 16]} and info["channel_qps"]["x"] == [22] * 8
    assert vcfc_cli("decode", str(tmp_path / "f.vcfc"), str(tmp_path / "out.npy")).returncode == 0
    out = np.load(tmp_path / "out.npy")
    assert out.shape == x.shape and np.mean((out - x) ** 2) < 0.01 * np.var(x)
    human = vcfc_cli("info", str(tmp_path / "f.vcfc")).stdout
    assert "bits/element" in human and "x265" in human


def test_channel_qps_file_and_safetensors_pyramid(tmp_path: Path):
    feats = {"p2": torch.from_numpy(feature_like(3, 16, 16)), "p3": torch.from_numpy(feature_like(3, 8, 8, 1)).to(torch.bfloat16)}
    save_file(feats, str(tmp_path / "fpn.safetensors"))
    (tmp_path / "qps.txt").write_text("# p2\n22\n27\n32\n# p3\n37\n37\n42\n")
    r = vcfc_cli("encode", str(tmp_path / "fpn.safetensors"), str(tmp_path / "fpn.vcfc"), "--channel-qps", str(tmp_path / "qps.txt"), "--preset", "ultrafast", "--layout", "mosaic-level")
    assert r.returncode == 0, r.stderr
    info = json.loads(vcfc_cli("info", str(tmp_path / "fpn.vcfc"), "--json").stdout)
    assert info["channel_qps"] == {"p2": [22, 27, 32], "p3": [37, 37, 42]}
    assert vcfc_cli("decode", str(tmp_path / "fpn.vcfc"), str(tmp_path / "out.safetensors")).returncode == 0
    from safetensors.torch import load_file

    out = load_file(str(tmp_path / "out.safetensors"))
    assert out["p3"].dtype == torch.bfloat16 and out["p2"].shape == (3, 16, 16)


def test_errors_are_one_line_with_exit_2(tmp_path: Path):
    np.save(tmp_path / "f.npy", feature_like(2, 8, 8))
    np.save(tmp_path / "nan.npy", np.full((2, 8, 8), np.nan, np.float32))
    (tmp_path / "foreign.vcfc").write_bytes(b"GIF89a" + bytes(50))
    (tmp_path / "bad.txt").write_text("22\nabc\n")
    (tmp_path / "pickle.npy").write_bytes(b"\x93NUMPY\x01\x00v\x00{'descr': '|O', 'fortran_order': False, 'shape': (1,), }" + b" " * 50 + b"\n" + bytes(20))
    out = str(tmp_path / "o.vcfc")
    assert_one_line_error(vcfc_cli("encode", str(tmp_path / "missing.npy"), out, "--qp", "30"), "no such file")
    assert_one_line_error(vcfc_cli("encode", str(tmp_path / "nan.npy"), out, "--qp", "30"), "NaN")
    assert_one_line_error(vcfc_cli("encode", str(tmp_path / "f.npy"), out), "needs --qp")
    assert_one_line_error(vcfc_cli("encode", str(tmp_path / "f.npy"), out, "--channel-qps", str(tmp_path / "bad.txt")), "bad.txt:2")
    assert_one_line_error(vcfc_cli("encode", str(tmp_path / "pickle.npy"), out, "--qp", "30"), "not a readable .npy")
    assert_one_line_error(vcfc_cli("decode", str(tmp_path / "foreign.vcfc"), str(tmp_path / "o.npy")), "not a .vcfc file")
    assert_one_line_error(vcfc_cli("info", str(tmp_path / "nope.vcfc")), "nope.vcfc")
    assert_one_line_error(vcfc_cli("encode", str(tmp_path / "f.npy"), out, "--qp", "30", "--ffmpeg", str(tmp_path / "no-ffmpeg")), "no-ffmpeg")
    assert not Path(out).exists() and not Path(out + ".part").exists()
    r = vcfc_cli("encode", str(tmp_path / "f.npy"), out, "--codec", "h264")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


def test_truncated_file_cli(tmp_path: Path):
    np.save(tmp_path / "f.npy", feature_like(2, 8, 8))
    assert vcfc_cli("encode", str(tmp_path / "f.npy"), str(tmp_path / "f.vcfc"), "--codec", "lossless").returncode == 0
    data = (tmp_path / "f.vcfc").read_bytes()
    (tmp_path / "t.vcfc").write_bytes(data[: len(data) // 2])
    assert_one_line_error(vcfc_cli("decode", str(tmp_path / "t.vcfc"), str(tmp_path / "o.npy")), "CRC")


def test_missing_encoder_names_it_and_the_override(tmp_path: Path):
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  *-encoders*) printf " V....D libx265  x265\\n V....D mjpeg  jpeg\\n";;\n'
        '  *-decoders*) printf " V....D hevc  HEVC\\n";;\n'
        '  *) echo "ffmpeg version 0.0-fake";;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    np.save(tmp_path / "f.npy", feature_like(2, 8, 8))
    r = vcfc_cli("encode", str(tmp_path / "f.npy"), str(tmp_path / "o.vcfc"), "--codec", "vvenc", "--qp", "30", env={"VCFC_FFMPEG": str(fake)})
    assert_one_line_error(r, "libvvenc")
    assert "VCFC_FFMPEG" in r.stderr or "--ffmpeg" in r.stderr
    r = vcfc_cli("doctor", "--ffmpeg", str(fake))
    assert r.returncode == 1 and "libvvenc  NO" in r.stdout


def test_doctor_reports_bundled_ffmpeg():
    r = vcfc_cli("doctor")
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("libx265", "libvvenc", "hevc", "vvc"):
        assert f"{name}" in r.stdout
    assert "NO" not in r.stdout


def test_help_teaches():
    r = vcfc_cli("encode", "--help")
    assert r.returncode == 0 and "--channel-qps" in r.stdout and "channel-as-frame" in r.stdout
    r = vcfc_cli()
    assert r.returncode == 2 and "encode" in r.stdout


def test_usage_errors_are_one_line_too(tmp_path: Path):
    assert_one_line_error(vcfc_cli("encode"), "required")
    assert_one_line_error(vcfc_cli("encode", "a.npy", "b.vcfc", "--layout", "spiral"), "invalid choice")
    r = vcfc_cli("nosuchcommand")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_decode_into_a_missing_folder_is_a_clear_error(tmp_path: Path):
    np.save(tmp_path / "f.npy", feature_like(2, 8, 8))
    assert vcfc_cli("encode", str(tmp_path / "f.npy"), str(tmp_path / "f.vcfc"), "--codec", "lossless").returncode == 0
    assert_one_line_error(vcfc_cli("decode", str(tmp_path / "f.vcfc"), str(tmp_path / "nope" / "dir" / "out.npy")),
                          "does not exist")
    assert_one_line_error(vcfc_cli("encode", str(tmp_path / "f.npy"), str(tmp_path / "nope" / "f.vcfc"), "--qp", "30"),
                          "does not exist")


def test_an_ignored_or_impossible_qp_is_said_out_loud(tmp_path: Path):
    np.save(tmp_path / "f.npy", feature_like(2, 8, 8))
    r = vcfc_cli("encode", str(tmp_path / "f.npy"), str(tmp_path / "f.vcfc"), "--codec", "lossless", "--qp", "30")
    assert r.returncode == 0 and "vcfc: warning:" in r.stderr and "ignored" in r.stderr
    assert_one_line_error(vcfc_cli("encode", str(tmp_path / "f.npy"), str(tmp_path / "g.vcfc"), "--qp", "60"), "0..51")


def test_every_command_teaches_with_examples():
    r = vcfc_cli("--help")
    commands = [c for c in ("encode", "decode", "info", "doctor", "models", "extract", "eval", "sensitivity",
                            "allocate", "run", "report", "demo") if c in r.stdout]
    assert len(commands) == 12
    for c in commands:
        h = vcfc_cli(c, "--help")
        assert h.returncode == 0 and "example" in h.stdout, c


def test_a_broken_file_is_named_in_its_error(tmp_path):
    bad = tmp_path / "broken.vcfc"
    bad.write_bytes(b"VCFC")
    for argv in (["info", str(bad)], ["decode", str(bad), str(tmp_path / "out.npy")]):
        r = vcfc_cli(*argv)
        assert_one_line_error(r, f"{bad}: truncated .vcfc file")
    assert not (tmp_path / "out.npy").exists()
