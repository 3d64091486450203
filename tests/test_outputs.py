"""Every command checks where it writes before any work: a missing folder, a folder that takes
no files, an existing file without --force → exit 2, one line, fast, nothing written."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

import vcfc
from tests.conftest import KODAK
from tests.test_cli import assert_one_line_error, vcfc_cli
from vcfc.errors import InputError
from vcfc.io import output_dir, output_file

DEMO = Path(KODAK).parent / "demo.toml"
MODEL = ["--model", "squeezenet1_1", "--layer", "fire3", "--data", str(KODAK), "--limit", "2"]


def commands(out_file: str, out_dir: str, features: str) -> dict[str, list[str]]:
    """Each command that writes, with its output at ``out_file`` (a file) or ``out_dir`` (a folder)."""
    return {
        "eval": ["eval", *MODEL, "--qp", "32", "--rows", out_file],
        "extract": ["extract", *MODEL, "--out", out_dir],
        "sensitivity": ["sensitivity", *MODEL[:-2], "--images", "2", "--qp-base", "32", "--out", out_file],
        "allocate": ["allocate", "profile.parquet", "--qp-range", "4", "--out", out_file],
        "report": ["report", "some-run", "--out", out_dir],
        "run": ["run", str(DEMO), "--out", out_dir],
        "splits": ["splits", "--model", "squeezenet1_1", "--data", str(KODAK), "--out", out_dir],
        "encode": ["encode", features, out_file, "--qp", "32"],
        "decode": ["decode", str(Path(features).with_suffix(".vcfc")), out_file],
    }


@pytest.fixture
def features(tmp_path: Path) -> str:
    """f.npy, and f.vcfc coded from it."""
    path = tmp_path / "f.npy"
    x = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
    np.save(path, x)
    path.with_suffix(".vcfc").write_bytes(vcfc.encode(x, qp=32))
    return str(path)


FOLDER_OUTPUTS = ("extract", "report", "run", "splits", "sensitivity")  # folders created: only read-only fails
CASES = [(c, "read-only folder") for c in sorted(commands("x", "x", "f.npy"))] + [
    (c, "missing folder") for c in sorted(commands("x", "x", "f.npy")) if c not in FOLDER_OUTPUTS]


@pytest.mark.parametrize("command, where", CASES)
def test_a_bad_output_path_is_one_line_before_any_work(tmp_path, features, command, where):
    base = tmp_path / "nodir" if where == "missing folder" else Path("/proc")  # /proc takes no files, even as root
    suffix = {"decode": ".npy", "encode": ".vcfc", "allocate": ".txt", "sensitivity": ".parquet"}.get(command, ".parquet")
    argv = commands(str(base / f"out{suffix}"), str(base / "out"), features)[command]
    t0 = time.perf_counter()
    r = vcfc_cli(*argv)
    took = time.perf_counter() - t0
    assert_one_line_error(r, "does not exist" if where == "missing folder" else "cannot write in /proc")
    assert took < 5, f"{command} took {took:.1f} s to refuse"
    assert not (tmp_path / "nodir").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_folder_without_write_permission_is_refused(tmp_path, features):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    r = vcfc_cli("encode", features, str(locked / "x.vcfc"), "--qp", "32")
    assert_one_line_error(r, "cannot write in")
    r = vcfc_cli("extract", *MODEL, "--out", str(locked / "feats"))
    assert_one_line_error(r, "cannot write in")


def test_an_existing_output_needs_force(tmp_path, features):
    coded, decoded = tmp_path / "a.vcfc", tmp_path / "a.npy"
    assert vcfc_cli("encode", features, str(coded), "--qp", "32").returncode == 0
    first = coded.read_bytes()
    r = vcfc_cli("encode", features, str(coded), "--qp", "45")
    assert_one_line_error(r, "--force")
    assert coded.read_bytes() == first  # untouched
    assert vcfc_cli("encode", features, str(coded), "--qp", "45", "--force").returncode == 0
    assert len(coded.read_bytes()) < len(first)  # replaced by the coarser file
    assert vcfc_cli("decode", str(coded), str(decoded)).returncode == 0
    decoded.write_bytes(b"mine")
    r = vcfc_cli("decode", str(coded), str(decoded))
    assert_one_line_error(r, "exists; --force replaces it")
    assert decoded.read_bytes() == b"mine"
    assert vcfc_cli("decode", str(coded), str(decoded), "--force").returncode == 0
    assert np.load(decoded).shape == (4, 8, 8)


def test_the_rule_in_one_place(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="exists; --force"):
        output_file(tmp_path / "f")
    assert output_file(tmp_path / "f", force=True) == tmp_path / "f"
    with pytest.raises(InputError, match="is a folder"):
        output_file(tmp_path)
    with pytest.raises(InputError, match="exists and is not a folder"):
        output_dir(tmp_path / "f")
    with pytest.raises(InputError, match="holds files already"):
        output_dir(tmp_path, replace=False)
    assert output_file(tmp_path / "prof" / "p.parquet", in_new_folder=True)  # a profile's folder is created
    with pytest.raises(InputError, match="exists; --force"):
        output_file(tmp_path / "f", in_new_folder=True)
    assert output_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checked, not created
    assert list(tmp_path.iterdir()) == [tmp_path / "f"]  # the write probe leaves nothing behind


def test_progress_goes_to_terminals_only_and_every_long_command_takes_quiet(tmp_path):
    from vcfc.runners.cli import build_parser

    parser = build_parser()
    for argv in (["extract", *MODEL, "--out", "o"], ["eval", *MODEL, "--qp", "32"], ["run", "e.toml", "--out", "o"],
                 ["sensitivity", *MODEL[:-2], "--qp-base", "32", "--out", "p"], ["splits", "--model", "m", "--data", "d"],
                 ["demo"], ["encode", "a.npy", "b.vcfc"], ["decode", "b.vcfc", "a.npy"]):
        assert parser.parse_args([*argv, "--quiet"]).quiet, argv
    r = vcfc_cli("eval", *MODEL, "--weights", "none", "--qp", "32", "--preset", "ultrafast", "--layout", "frames")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "img/s" not in r.stderr  # a redirected log gets no bar
