"""head → code → tail over real data: reference accuracy, fidelity at lossless, fidelity vs QP."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_cli import vcfc_cli
from vcfc.io import bundled
from vcfc.runners.datasets import batches, open_dataset
from vcfc.runners.evaluate import EvalConfig, evaluate_batch, summarize
from vcfc.runners.models import split
from vcfc.spec import CodingSpec


@pytest.fixture(autouse=True)
def one_thread():
    # ffmpeg and torch on 2 cores: one intra-op thread keeps the timing stable.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def run(sp, data, configs, limit=None, batch_size=16):
    ds = open_dataset(data, transform=sp.transforms, limit=limit)
    rows = []
    for batch in batches(ds, batch_size):
        rows.extend(evaluate_batch(sp, batch, configs))
    return rows, ds


def by_config(rows):
    out = {}
    for r in rows:
        out.setdefault(r["config"] if r["codec"] == "none" else (r["config"], r["qp"]), []).append(r)
    return out


@pytest.mark.parametrize("model,weights,layer,expected", [
    ("squeezenet1_1", "DEFAULT", "fire3", 0.6),
    ("mobilenet_v2", "IMAGENET1K_V1", "block3", 0.85),
])
def test_reference_top1_reproduces_the_model(shared, torch_home, model, weights, layer, expected):
    sp = split(model, at=layer, weights=weights)
    rows, ds = run(sp, shared / "data" / "imagenet-sample", [EvalConfig()])
    s = summarize(rows, sp.task)
    assert s["images"] == len(ds) == 250
    assert abs(s["top1"] - expected) < 0.09, s["top1"]
    assert s["fidelity"] == 1.0 and s["top5"] >= s["top1"]


def test_lossless_fidelity_is_exactly_one_and_falls_with_qp(shared, torch_home):
    sp = split("squeezenet1_1", at="fire3", weights="DEFAULT")
    qps = (22, 32, 42, 51)
    configs = [EvalConfig(CodingSpec("lossless", bits=10))] + [EvalConfig(CodingSpec("x265", preset="ultrafast"), qp=q) for q in qps]
    rows, _ = run(sp, shared / "data" / "imagenet-sample", configs, limit=48)
    groups = {}
    for r in rows:
        groups.setdefault((r["codec"], r["qp"]), []).append(r)
    lossless = summarize(groups[("lossless", -1)], sp.task)
    assert lossless["fidelity"] == 1.0 and lossless["images"] == 48
    fid = [summarize(groups[("x265", q)], sp.task)["fidelity"] for q in qps]
    rate = [summarize(groups[("x265", q)], sp.task)["bpfe"] for q in qps]
    assert all(a >= b for a, b in zip(fid, fid[1:])), fid
    assert fid[-1] < fid[0] - 0.2, fid
    assert all(a > b for a, b in zip(rate, rate[1:])), rate
    assert lossless["bpfe"] > rate[0]


def test_detection_split_end_to_end_on_coco128(shared):
    sp = split("fasterrcnn_resnet50_fpn", at="fpn", weights=None,
               model_kwargs={"min_size": 256, "max_size": 320, "box_score_thresh": 0.0, "rpn_post_nms_top_n_test": 100,
                             "box_detections_per_img": 20})
    configs = [EvalConfig(), EvalConfig(CodingSpec("x265", preset="ultrafast"), qp=42)]
    rows, ds = run(sp, shared / "data" / "coco128", configs, limit=2, batch_size=1)
    groups = by_config(rows)
    ref = summarize(groups["none"], sp.task, coco_gt=ds.coco)
    coded = summarize(next(v for k, v in groups.items() if k != "none"), sp.task, coco_gt=ds.coco)
    assert ref["images"] == coded["images"] == 2
    assert ref["fidelity"] == pytest.approx(1.0, abs=1e-9)
    assert 0.0 <= coded["fidelity"] <= 1.0 and 0.0 <= coded["ap"] <= 1.0
    assert coded["bpfe"] < 1.0  # p2..p6 of 256 channels coded at QP 42
    assert all(json.loads(r["ref_dets"]) for r in rows)  # box_score_thresh 0: detections exist


def test_segmentation_pixel_fidelity(shared):
    sp = split("fcn_resnet50", at="layer1", weights=None)
    ds = open_dataset(shared / "data" / "kodak", transform=lambda im: sp.transforms(im.resize((96, 64))), limit=2)
    rows = []
    for batch in batches(ds, 2):
        rows.extend(evaluate_batch(sp, batch, [EvalConfig(), EvalConfig(CodingSpec("x265", preset="ultrafast"), qp=51)]))
    ref = summarize([r for r in rows if r["codec"] == "none"], sp.task)
    coded = summarize([r for r in rows if r["codec"] == "x265"], sp.task)
    assert ref["fidelity"] == 1.0
    assert 0.0 < coded["fidelity"] <= 1.0


def test_eval_cli_json(shared, torch_home):
    r = vcfc_cli("eval", "--model", "squeezenet1_1", "--layer", "pool1", "--data", str(shared / "data" / "imagenet-sample"),
                 "--codec", "x265", "--qp", "37", "--preset", "ultrafast", "--limit", "4", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for key in ("images", "fidelity", "bpfe", "bpp", "bytes_per_image", "top1", "top5"):
        assert key in out
    assert out["images"] == 4 and 0 < out["bpfe"] < 8
    assert out["bpp"] == pytest.approx(out["bytes_per_image"] * 8 / (224 * 224))


def test_extract_then_encode(shared, torch_home, tmp_path: Path):
    r = vcfc_cli("extract", "--model", "squeezenet1_1", "--layer", "pool1", "--data", str(shared / "data" / "imagenet-sample"),
                 "--limit", "2", "--out", str(tmp_path / "feats"))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "feats" / "manifest.json").read_text())
    assert len(manifest["images"]) == 2 and manifest["images"][0]["shape"] == [64, 55, 55]
    assert manifest["images"][0]["label"] is not None
    f = tmp_path / "feats" / manifest["images"][0]["file"]
    assert np.load(f).shape == (64, 55, 55)
    assert vcfc_cli("encode", str(f), str(tmp_path / "a.vcfc"), "--qp", "32", "--preset", "ultrafast").returncode == 0


def test_models_cli_lists_presets():
    r = vcfc_cli("models", "--json")
    assert r.returncode == 0, r.stderr
    models = {m["model"]: m for m in json.loads(r.stdout)}
    vgg = {p["name"]: p for p in models["vgg16"]["presets"]}
    assert vgg["conv1"]["shape"] == [64, 224, 224] and vgg["pool1"]["shape"] == [64, 112, 112]
    assert "fasterrcnn_resnet50_fpn" in models


def test_eval_cli_errors(shared, tmp_path: Path):
    from tests.test_cli import assert_one_line_error

    assert_one_line_error(vcfc_cli("eval", "--model", "nosuchnet", "--layer", "x", "--data", str(tmp_path), "--codec", "none"), "nosuchnet")
    assert_one_line_error(vcfc_cli("eval", "--model", "squeezenet1_1", "--layer", "fire3", "--weights", "none",
                                   "--data", str(tmp_path / "missing"), "--codec", "none"), "missing")
    assert_one_line_error(vcfc_cli("eval", "--model", "squeezenet1_1", "--layer", "fire3", "--weights", "none",
                                   "--data", str(shared / "data" / "kodak"), "--codec", "x265"), "--qp")


def test_eval_cli_linear_allocation_from_profile(tmp_path: Path):
    from vcfc.sensitivity import Profile, write_profile

    s = np.linspace(0.0, 1.0, 64)  # channel i gets QP 40 - round(8 * i / 63)
    write_profile(Profile.from_arrays(s, {"qp_base": 40}), tmp_path / "prof", plot=False)
    kodak = bundled("kodak")
    r = vcfc_cli("eval", "--model", "squeezenet1_1", "--layer", "pool1", "--weights", "none", "--data", str(kodak),
                 "--limit", "2", "--codec", "x265", "--preset", "ultrafast", "--qp", "40", "--allocation", "linear",
                 "--profile", str(tmp_path / "prof.parquet"), "--qp-range", "8", "--layout", "frames", "--json",
                 "--rows", str(tmp_path / "rows.parquet"))
    assert r.returncode == 0, r.stderr
    import pandas as pd

    rows = pd.read_parquet(tmp_path / "rows.parquet")
    assert (rows["allocation"] == "linear").all() and rows["mean_qp"].iloc[0] == pytest.approx(np.mean(40 - np.round(8 * s)), abs=0.05)
    uniform = json.loads(vcfc_cli("eval", "--model", "squeezenet1_1", "--layer", "pool1", "--weights", "none", "--data", str(kodak),
                                  "--limit", "2", "--codec", "x265", "--preset", "ultrafast", "--qp", "40", "--layout", "frames",
                                  "--json").stdout)
    assert json.loads(r.stdout)["bpfe"] > uniform["bpfe"]  # lower QPs on half the channels cost bits
