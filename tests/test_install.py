"""What `pip install .` gives a user: one import package, `vcfc`, with every module of the layer
folders in it, and a `vcfc` command that works from the installed files alone (not this checkout).

The wheel is built from a copy of the sources without build isolation (setuptools and wheel are
test extras), installed with --target into a temporary folder, and run with `python -S`: no
site-packages .pth files, so the checkout's editable install cannot answer the imports; the
dependencies come from this venv's site-packages, named explicitly on PYTHONPATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("vcfc", "packing", "sensitivity", "results", "runners", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(path, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
                    "-w", str(out), str(src)], check=True, capture_output=True, text=True)
    (whl,) = out.glob("vcfc-*.whl")
    return whl


def test_the_wheel_holds_one_top_level_package_with_every_module(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert z.read(top_level).decode().split() == ["vcfc"]
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert {n.split("/")[0] for n in names if not n.startswith("vcfc-")} == {"vcfc"}
    assert "vcfc = vcfc.runners.cli:main" in entry
    want = {f"vcfc/{p.relative_to(REPO).as_posix()}" for folder in ("packing", "sensitivity", "results", "runners")
            for p in (REPO / folder).rglob("*.py")}
    want |= {p.relative_to(REPO).as_posix() for p in (REPO / "vcfc").rglob("*.py")}
    assert want - set(names) == set()  # no module left behind by the package list in pyproject.toml
    assert "vcfc/data/demo.toml" in names and sum(n.startswith("vcfc/data/kodak/") for n in names) == 24


def test_the_installed_command_runs_from_the_wheel_alone(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, text=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]])}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-S", *args], env=env, capture_output=True, text=True, cwd=tmp_path,
                              timeout=300)

    where = run("-c", "import vcfc, vcfc.packing, vcfc.runners.cli as c; print(vcfc.__file__); print(c.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(target)) for line in where.stdout.split())
    script = target / "bin" / "vcfc"
    helped = run(str(script), "--help")
    assert helped.returncode == 0 and "vcfc doctor" in helped.stdout
    doctor = run(str(script), "doctor")
    assert doctor.returncode == 0 and "codec    x265" in doctor.stdout, doctor.stdout + doctor.stderr
    x = np.random.default_rng(0).random((4, 16, 16), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    enc = run(str(script), "encode", "x.npy", "x.vcfc", "--codec", "lossless")
    dec = run(str(script), "decode", "x.vcfc", "y.npy")
    assert enc.returncode == 0 and dec.returncode == 0, enc.stderr + dec.stderr
    assert np.abs(np.load(tmp_path / "y.npy") - x).max() <= 0.5 / 255 + 1e-7
