"""The long commands' --help examples run as typed, on tiny data under the names they use.

Each example runs in a sandbox: a working folder with `imgs/`, `experiment.toml` and `feat.npy`,
and beside it `../shared/data/{imagenet-sample,kodak,coco128}` holding a few real images each, so
`--data ../shared/data/imagenet-sample` means what it says at a fraction of the cost. Real
weights come from ../shared (the torch_home fixture). What cannot run here is named, with why:
weights that do not exist offline (resnet50, Faster R-CNN), a GPU, a real Dask cluster.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import KODAK
from tests.test_help_examples import examples
from vcfc.runners.cli import main

# model -> why its examples are only parsed (no weights for it exist offline)
NO_WEIGHTS = {"resnet50": "no resnet50 weights offline", "fasterrcnn_resnet50_fpn": "no Faster R-CNN weights offline"}
GROUPS = {  # examples that build on each other's outputs run in order, in one test
    "profile": ("sensitivity", "allocate"),
    "experiment": ("run", "report"),
    "eval": ("eval",),
    "files": ("extract", "models", "doctor"),
}
# vcfc splits examples are only parsed here (tests/test_help_examples.py): one costs about a minute
# even on 9 images (λ on 8, every cut × method × QP), and tests/test_splits.py already runs the
# command end to end on real weights
EXPECTED_FAILURES = {  # (command words) -> what the one-line refusal must say; exit 2, nothing run
    "--scheduler tcp://head:8786": "scheduler",  # a placeholder host: the check refuses it quickly
    **({} if Path("/usr/local/bin/ffmpeg").is_file() else {"--ffmpeg /usr/local/bin/ffmpeg": "does not exist"}),
}


@pytest.fixture
def sandbox(tmp_path, shared, torch_home, monkeypatch) -> Path:
    data = tmp_path / "shared" / "data"
    src = shared / "data"
    inet = data / "imagenet-sample"
    inet.mkdir(parents=True)
    shutil.copy(src / "imagenet-sample" / "classes.tsv", inet)
    for f in sorted((src / "imagenet-sample").glob("*.JPEG"))[:9]:
        shutil.copy(f, inet)
    kodak = data / "kodak"
    kodak.mkdir()
    for f in sorted(Path(KODAK).glob("*.jpg"))[:2]:
        shutil.copy(f, kodak)
    coco = json.loads((src / "coco128" / "annotations" / "instances.json").read_text())
    keep = sorted(coco["images"], key=lambda i: i["file_name"])[:2]
    ids = {i["id"] for i in keep}
    coco.update(images=keep, annotations=[a for a in coco["annotations"] if a["image_id"] in ids])
    (data / "coco128" / "images").mkdir(parents=True)
    (data / "coco128" / "annotations").mkdir()
    (data / "coco128" / "annotations" / "instances.json").write_text(json.dumps(coco))
    for i in keep:
        shutil.copy(src / "coco128" / "images" / i["file_name"], data / "coco128" / "images")
    work = tmp_path / "work"
    (work / "imgs").mkdir(parents=True)
    for f in sorted(Path(KODAK).glob("*.jpg"))[:2]:
        shutil.copy(f, work / "imgs")
    (work / "experiment.toml").write_text("""
name = "help example"
[[datasets]]
path = "imgs"
[[models]]
name = "squeezenet1_1"
layers = ["input", "fire3"]
[coding]
codecs = ["x265"]
presets = { x265 = "ultrafast" }
qps = [32, 42]
[allocation]
methods = ["uniform"]
[run]
workers = 1
""")
    # the encoder example after `vcfc allocate … --out qps.txt`: fire3's 128 channels
    np.save(work / "feat.npy", np.random.default_rng(0).random((128, 8, 8), dtype=np.float32))
    monkeypatch.chdir(work)
    return work


def _group(name: str) -> list[list[str]]:
    """The argv of every help example of the group's commands, in help order, each once."""
    out: list[list[str]] = []
    for command, argv in examples():
        if command in GROUPS[name] and argv not in out:
            out.append(argv)
    return out


def _skip_reason(argv: list[str]) -> str | None:
    line = " ".join(argv)
    for model, why in NO_WEIGHTS.items():
        if f"--model {model} " in line:
            return why
    if "--device cuda" in line and not torch.cuda.is_available():
        return "needs a GPU"
    return None


@pytest.mark.parametrize("group", list(GROUPS))
def test_long_help_examples_run_as_typed(group, sandbox, capsys):
    ran, skipped = [], {}
    for argv in _group(group):
        why = _skip_reason(argv)
        if why:
            skipped[" ".join(argv)] = why
            continue
        line = " ".join(argv)
        t0 = time.perf_counter()
        code = main(argv)  # as typed (progress bars are drawn on terminals only)
        print(f"{time.perf_counter() - t0:6.1f} s  vcfc {line}", file=sys.__stderr__)
        err = capsys.readouterr().err
        expected = next((msg for words, msg in EXPECTED_FAILURES.items() if words in line), None)
        if expected:
            assert code == 2 and expected in err and err.count("\n") == 1, (line, code, err)
        else:
            assert code == 0, (line, code, err)
        ran.append(line)
    assert ran, group
    # only what cannot exist here is skipped, and it is each time said why
    assert all(why in (*NO_WEIGHTS.values(), "needs a GPU") for why in skipped.values())
    if group == "profile":
        assert (sandbox / "prof" / "sq_fire3.parquet").is_file() and (sandbox / "qps.txt").is_file()
        assert (sandbox / "feat.vcfc").is_file()
    if group == "experiment":
        assert (sandbox / "runs" / "exp1" / "report" / "report.html").is_file()
        assert any((sandbox / "paper" / "fig").iterdir())
