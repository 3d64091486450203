"""Your own network by import path, in Python, `vcfc eval` and experiment files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.conftest import KODAK
from tests.tiny_models import tiny
from vcfc.errors import InputError
from vcfc.runners.config import experiment_from_dict
from vcfc.runners.models import split

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(7)
    path = tmp_path / "tiny.pt"
    torch.save(tiny().state_dict(), path)
    return path


def test_an_import_path_splits_like_a_torchvision_name(checkpoint):
    sp = split("tests.tiny_models:tiny_with_transform", at="5", weights=str(checkpoint))
    net = tiny().eval()
    net.load_state_dict(torch.load(checkpoint, weights_only=True))
    x = torch.rand(2, 3, 64, 64)
    feats = sp.head(x)
    assert tuple(feats.shape) == (2, 32, 16, 16)
    torch.testing.assert_close(sp.tail(feats), net(x), rtol=0, atol=0)  # the checkpoint's network, exactly
    assert sp.task == "classification" and sp.transforms is not None
    inp = split("tests.tiny_models:tiny", at="input", weights=str(checkpoint))  # the default transform's crop
    picture = inp.transforms(__import__("PIL.Image").Image.new("RGB", (300, 260)))
    assert picture.dtype == torch.uint8 and tuple(picture.shape) == (3, 224, 224)
    assert tuple(inp.tail(inp.head(picture[None])).shape) == (1, 10)


@pytest.mark.parametrize("name, message", [
    ("tests.no_such_module:tiny", "cannot import tests.no_such_module"),
    ("tests.tiny_models:nothing", "has no callable nothing"),
    ("tests.tiny_models:not_a_module", "returned str, not a torch.nn.Module"),
])
def test_a_bad_import_path_is_one_clear_error(name, message):
    with pytest.raises(InputError, match=message):
        split(name, at="2", weights="none")


def test_a_checkpoint_that_does_not_fit_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"0.weight": torch.zeros(1)}, bad)
    with pytest.raises(InputError, match="does not match"):
        split("tests.tiny_models:tiny", at="2", weights=str(bad))


def test_experiment_files_take_import_paths_and_checkpoints_beside_them(tmp_path, checkpoint):
    exp = experiment_from_dict({"datasets": [{"path": "x"}],
                                "models": [{"name": "tests.tiny_models:tiny", "checkpoint": "tiny.pt", "layers": ["2"]}]},
                               base=tmp_path)
    assert exp.models[0].weights == str(checkpoint)


def test_vcfc_run_and_report_with_your_own_network(tmp_path, checkpoint):
    (tmp_path / "exp.toml").write_text(f"""
[[datasets]]
path = "{KODAK}"
limit = 5
[[models]]
name = "tests.tiny_models:tiny_with_transform"
checkpoint = "tiny.pt"
layers = ["2"]
[coding]
codecs = ["x265"]
presets = {{ x265 = "ultrafast" }}
layouts = ["frames"]
qps = [27, 37]
[allocation]
methods = ["uniform", "rdo"]
profile_images = 2
[run]
workers = 1
""")
    run = [sys.executable, "-m", "vcfc"]
    r = subprocess.run([*run, "run", str(tmp_path / "exp.toml"), "--out", str(tmp_path / "run"), "--no-progress"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    rows = pd.read_parquet(tmp_path / "run" / "rows.parquet")
    assert set(rows["allocation"]) == {"uniform", "rdo"} and (rows["status"] == "ok").all()
    assert set(rows["model"]) == {"tests.tiny_models:tiny_with_transform"} and rows["image_id"].nunique() == 3
    r = subprocess.run([*run, "report", str(tmp_path / "run"), "--bootstrap", "100"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "report" / "report.html").is_file()


def test_the_documented_example_file_is_valid():
    from vcfc.runners.config import load_experiment

    exp = load_experiment(REPO / "docs" / "examples" / "my_network.toml")
    m = exp.models[0]
    assert m.name == "my_network:build" and m.layers == ["features.3"]
    assert m.weights == str(REPO / "docs" / "examples" / "my_network.pt")  # beside the file, not the working folder
    sp = split(m.name, at="features.3", weights="none")  # found through the file's folder
    assert tuple(sp.head(torch.rand(1, 3, 224, 224)).shape) == (1, 64, 56, 56)


def test_your_own_segmenter_is_scored_as_segmentation_with_its_own_transform():
    from PIL import Image

    sp = split("tests.tiny_models:tiny_segmenter", at="2", weights="none", task="segmentation",
               transform="tests.tiny_models:to_64")
    assert sp.task == "segmentation"
    x = sp.transforms(Image.new("RGB", (300, 200), (200, 10, 10)))
    assert tuple(x.shape) == (3, 64, 64) and float(x.max()) <= 1.0  # the transform named, not ImageNet's
    net = __import__("tests.tiny_models", fromlist=["x"]).tiny_segmenter()
    net.load_state_dict(sp.model.state_dict())
    feats = sp.head(x[None])
    assert tuple(feats.shape) == (1, 8, 32, 32)
    torch.testing.assert_close(sp.tail(feats), net.eval()(x[None]), rtol=0, atol=0)
    from vcfc.runners.tasks import get_task

    out = sp.tail(feats)
    rows = get_task(sp.task).score(out, out.flip(1), None, ["a"])
    assert 0.0 <= rows[0]["fidelity"] < 1.0  # pixel agreement, not top-1 of a flattened output


@pytest.mark.parametrize("model, message", [
    ({"name": "squeezenet1_1", "task": "segmentation"}, "task: only for your own network"),
    ({"name": "tests.tiny_models:tiny", "task": "detection"}, "task: 'detection': your own network can be"),
    ({"name": "tests.tiny_models:tiny", "transform": "resize"}, "transform: 'resize' is not an import path"),
    ({"name": "tests.tiny_models:tiny", "transform": "tests.tiny_models:nothing"}, "has no callable nothing"),
])
def test_bad_task_or_transform_in_an_experiment_is_one_line_naming_it(model, message):
    with pytest.raises(InputError, match=message):
        experiment_from_dict({"datasets": [{"path": "x"}], "models": [{**model, "layers": ["2"]}]})


def test_unset_task_and_transform_leave_the_experiment_dict_as_before():
    exp = experiment_from_dict({"datasets": [{"path": "x"}], "models": [{"name": "tests.tiny_models:tiny", "layers": ["2"]}]})
    assert set(exp.to_dict()["models"][0]) == {"name", "weights", "layers"}  # old runs resume
    exp = experiment_from_dict({"datasets": [{"path": "x"}], "models": [
        {"name": "tests.tiny_models:tiny_segmenter", "layers": ["2"], "task": "segmentation"}]})
    assert exp.to_dict()["models"][0]["task"] == "segmentation" and exp.models[0].options == {"task": "segmentation"}


def test_vcfc_eval_takes_task_and_transform_flags(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vcfc", "eval", "--model", "tests.tiny_models:tiny_segmenter",
                        "--weights", "none", "--task", "segmentation", "--transform", "tests.tiny_models:to_64",
                        "--layer", "2", "--data", str(KODAK), "--limit", "2", "--qp", "32", "--json",
                        "--device", "cpu"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr
    import json

    out = json.loads(r.stdout)
    assert out["task"] == "segmentation" and out["images"] == 2 and 0 < out["fidelity"] <= 1
    r = subprocess.run([sys.executable, "-m", "vcfc", "eval", "--model", "squeezenet1_1", "--task", "segmentation",
                        "--layer", "fire3", "--data", str(KODAK), "--qp", "32"], capture_output=True, text=True,
                       timeout=300, cwd=REPO)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--task: only for your own network" in r.stderr


def test_the_example_files_optional_transform_exists(monkeypatch):
    import tomllib

    monkeypatch.setenv("VCFC_MODEL_PATH", str(REPO / "docs" / "examples"))  # as load_experiment adds it
    text = (REPO / "docs" / "examples" / "my_network.toml").read_text()
    line = next(x for x in text.splitlines() if x.startswith("# transform"))
    raw = tomllib.loads(text.replace(line, line[2:]))  # uncommented, as a user would
    exp = experiment_from_dict(raw, base=REPO / "docs" / "examples")
    from PIL import Image

    sp = split(exp.models[0].name, at="features.3", weights="none", transform=exp.models[0].transform)
    assert tuple(sp.transforms(Image.new("RGB", (320, 240))).shape) == (3, 224, 224)
