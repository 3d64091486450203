"""Shared fixtures: real data from ../shared, feature-like tensors, an offline TORCH_HOME."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from vcfc.io import bundled

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VCFC_SHARED", REPO.parent / "shared"))
KODAK = bundled("kodak")


def write_experiment(path: Path, methods=("uniform",), qps=(32, 42), limit=5, batch_size=1, profile_images=2, *,
                     data: Path = KODAK, layer: str = "pool1", codec: str = "x265", preset: str = "ultrafast",
                     layout: str = "frames", qp_range: int = 6, workers: int = 1, layers: tuple[str, ...] = ()) -> Path:
    """A small experiment file: squeezenet1_1 with random weights on the bundled Kodak images."""
    path.write_text(f"""
name = "test"
[[datasets]]
path = "{data}"
kind = "folder"
limit = {limit}
[[models]]
name = "squeezenet1_1"
weights = "none"
layers = {json.dumps(list(layers) or [layer])}
[coding]
codecs = ["{codec}"]
presets = {{ {codec} = "{preset}" }}
layouts = ["{layout}"]
qps = {list(qps)}
[allocation]
methods = {json.dumps(list(methods))}
qp_range = {qp_range}
profile_images = {profile_images}
profile_qp = 37
[run]
workers = {workers}
batch_size = {batch_size}
""")
    return path


def pytest_configure(config: pytest.Config) -> None:
    # A shell without job control starts background commands (`make test &`, nohup) with SIGINT
    # ignored; children inherit that, and Python then never installs its KeyboardInterrupt
    # handler (right for vcfc under nohup). The Ctrl-C tests stand for a terminal: a handled
    # SIGINT here is reset to the default in every child at exec.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def feature_like(c: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth, non-negative, heavy-tailed maps with per-channel scales: like ReLU conv features."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((c, h, w), np.float32)
    for i in range(c):
        fx, fy = rng.uniform(0.02, 0.15, 2)
        px, py = rng.uniform(0, 6.28, 2)
        base = np.sin(xx * fx + px) * np.cos(yy * fy + py)
        blob_y, blob_x = rng.uniform(0, h), rng.uniform(0, w)
        blob = 3 * np.exp(-((yy - blob_y) ** 2 + (xx - blob_x) ** 2) / (2 * (0.1 * max(h, w)) ** 2))
        out[i] = np.maximum(base + blob + 0.05 * rng.standard_normal((h, w)), 0) * rng.uniform(0.2, 5)
    return out


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "README.md").is_file():
        pytest.skip(f"real data folder not found at {SHARED} (set VCFC_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def torch_home(tmp_path_factory, shared) -> Path:
    """A TORCH_HOME whose hub cache holds the real weights, so torchvision loads them offline."""
    home = tmp_path_factory.mktemp("torch_home")
    ckpt = home / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    for f in (shared / "weights").glob("*.pth"):
        shutil.copy(f, ckpt / f.name)
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = old


@pytest.fixture(scope="module")
def squeeze():
    """squeezenet1_1 cut at pool1 (random weights) and 2 images' features (1, 64, 15, 15)."""
    import warnings

    import torch

    from vcfc.runners.models import split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sp = split("squeezenet1_1", "pool1", weights=None, seed=0)
    g = torch.Generator().manual_seed(0)
    feats = [sp.head(torch.rand(1, 3, 64, 64, generator=g)) for _ in range(2)]
    return sp, feats
