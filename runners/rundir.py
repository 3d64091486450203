"""A run folder: the one place that knows its file names (`RunDir`), and its manifest (what ran,
with which software, on which machine, when).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from vcfc.codecs import CODECS
from vcfc.errors import InputError
from vcfc.ffmpeg import capabilities, find_ffmpeg
from vcfc.io import atomic_write, jsonable
from vcfc.version import __version__

from .grid.rows import COMPACTED, RowStore


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)  # no import: torch would take seconds
    except metadata.PackageNotFoundError:
        return None


def _git(cwd: Path, *args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def _vcfc_checkout() -> Path | None:
    """The git checkout vcfc runs from (an editable install), or None (a wheel — even one
    installed inside somebody else's repository — or no git): the commit is vcfc's, not the
    folder the user happens to run in."""
    top = _git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel")
    return Path(top) if top and (Path(top) / "vcfc" / "registry.py").is_file() else None


def software_versions() -> dict[str, Any]:
    """vcfc, python, torch, torchvision, numpy, ffmpeg/x265/vvenc versions (None when unknown)."""
    info: dict[str, Any] = {
        "vcfc": __version__,
        "python": platform.python_version(),
        **{n: _dist_version(n) for n in ("torch", "torchvision", "numpy", "pandas", "pyarrow", "av")},
    }
    try:
        path = find_ffmpeg()
        caps = capabilities(path)
        info.update(ffmpeg_path=path, ffmpeg=caps.get("version"),
                    **{name: cls.library_version(path) for name, cls in CODECS.items() if cls.encoder})
    except Exception as exc:  # noqa: BLE001 - a manifest must not fail a run
        info.update(ffmpeg=None, x265=None, vvenc=None, ffmpeg_error=" ".join(str(exc).split()))
    return info


def write_manifest(run_dir: str | os.PathLike[str], experiment: Mapping[str, Any],
                   extra: Mapping[str, Any] | None = None, *, force: bool = False) -> Path:
    """Write ``run_dir/manifest.json``: the experiment, software, git, machine, start time.

    On a resumed run (a manifest exists) the original ``started`` is kept and the restart is
    appended to ``resumed``. A different ``experiment`` in an existing run dir raises
    ValueError unless ``force`` (rows of two experiments would mix silently).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "manifest.json"
    experiment = jsonable(dict(experiment))
    old: dict[str, Any] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("experiment") not in (None, experiment) and not force:
            raise InputError(f"{run_dir}: this run folder holds a different experiment; use another --out, "
                             f"or --new to delete its rows and start over")
    here = _vcfc_checkout()
    now = utc_now()
    manifest: dict[str, Any] = {
        "experiment": experiment,
        "extra": jsonable(dict(extra or {})),
        "software": software_versions(),
        "git": {"commit": here and _git(here, "rev-parse", "HEAD"),
                "dirty": here and (lambda s: None if s is None else bool(s))(_git(here, "status", "--porcelain"))},
        "machine": {"platform": platform.platform(), "machine": platform.machine(),
                    "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "hostname": platform.node(), "argv": sys.argv},
        "started": old.get("started", now),
        "ended": None,
        "resumed": old.get("resumed", []) + ([now] if old else []),
    }
    atomic_write(path, json.dumps(manifest, indent=2, sort_keys=True))
    return path


def update_manifest(run_dir: str | os.PathLike[str], **fields: Any) -> Path | None:
    """Merge ``fields`` into an existing manifest (e.g. ``ended``, counts); no-op without one."""
    path = Path(run_dir) / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    manifest.update(jsonable(fields))
    atomic_write(path, json.dumps(manifest, indent=2, sort_keys=True))
    return path


class RunDir:
    """The files of one experiment run folder; the only place that knows their names.

        manifest.json      the experiment, software, machine (write_manifest)
        rows/, rows.parquet the grid's rows (RowStore)
        allocations.json   fixed per-channel QPs from profiles
        lambdas.json       rdo's λ per (model, layer, codec, layout, QP), from calibration images
        profiles/          sensitivity profiles (Parquet + CSV + JSON + PNG)
        sample.npz         the pictures one image's features were really coded as (for the report)
        report/            `vcfc report`'s default output
    """

    MANIFEST = "manifest.json"
    ALLOCATIONS = "allocations.json"
    LAMBDAS = "lambdas.json"
    SAMPLE = "sample.npz"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    manifest_path = property(lambda self: self.path / self.MANIFEST)
    allocations_path = property(lambda self: self.path / self.ALLOCATIONS)
    lambdas_path = property(lambda self: self.path / self.LAMBDAS)
    sample_path = property(lambda self: self.path / self.SAMPLE)
    profiles_dir = property(lambda self: self.path / "profiles")
    report_dir = property(lambda self: self.path / "report")

    def profile_prefix(self, *parts: str) -> Path:
        return self.profiles_dir / "__".join(parts).replace("/", "_")

    def is_run(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        if not self.is_run():
            raise InputError(f"{self.path}: not a run folder (no {self.MANIFEST}); make one with `vcfc run`")
        return json.loads(self.manifest_path.read_text())

    def rows(self) -> RowStore:
        return RowStore(self.path)

    def read_json(self, path: Path) -> Any:
        return json.loads(path.read_text()) if path.is_file() else None

    def write_json(self, path: Path, obj: Any) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(obj, sort_keys=True))

    def clear(self) -> None:
        """Delete everything a run wrote here (for `vcfc run --new`); other files stay."""
        for p in (self.path / "rows", self.profiles_dir, self.report_dir):
            shutil.rmtree(p, ignore_errors=True)
        for p in (self.path / COMPACTED, self.allocations_path, self.lambdas_path, self.sample_path, self.manifest_path):
            p.unlink(missing_ok=True)
