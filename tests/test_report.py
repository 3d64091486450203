"""Aggregation, BD tables and the report on a synthetic rows table with known relations."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from results import aggregate
from results.report import write_report

QPS = [22, 27, 32, 37, 42]
IMAGES = [f"img{i}" for i in range(5)]
# per-image 0/1 agreement: 5, 5, 4, 3, 1 of 5 images agree -> means 1, 1, .8, .6, .2 (saturated at QP 22-27)
AGREE = {22: 5, 27: 5, 32: 4, 37: 3, 42: 1}


def _rows() -> pd.DataFrame:
    rows = []
    configs = [  # (config, codec, preset, allocation, rate factor)
        ("x265-uniform", "x265", "medium", "uniform", 1.0),
        ("x265-sens", "x265", "medium", "sensitivity", 0.8),  # same task results at 80 % of the bits
        ("vvenc-uniform", "vvenc", "medium", "uniform", 0.7),
        ("x265-slow-sens", "x265", "slow", "sensitivity", 0.75),  # its family has no uniform anchor
    ]
    for cfg, codec, preset, alloc, factor in configs:
        for qp in QPS:
            for i, img in enumerate(IMAGES):
                bpfe = 4.0 * 2 ** (-(qp - 22) / 6) * (1 + 0.1 * i) * factor
                agree = float(i < AGREE[qp])
                rows.append({"image_id": img, "config": cfg, "model": "resnet50", "layer": "layer2",
                             "codec": codec, "preset": preset, "allocation": alloc, "qp": qp,
                             "bytes": int(bpfe * 1000), "side_info_bytes": 300, "bpfe": bpfe, "bpp": bpfe * 0.5,
                             "fidelity": agree, "top1": agree, "top5": math.nan, "status": "ok", "error": None,
                             "head_s": 0.01, "pack_s": 0.002, "encode_s": 0.05, "decode_s": 0.02, "tail_s": 0.01})
    rows.append({"image_id": "img9", "config": "x265-sens", "model": "resnet50", "layer": "layer2",
                 "codec": "x265", "preset": "medium", "allocation": "sensitivity", "qp": 42,
                 "status": "error", "error": "CodecError: ffmpeg failed"})
    return pd.DataFrame(rows)


def test_points():
    pts = aggregate.points(_rows())
    assert len(pts) == 4 * len(QPS)
    p = pts[(pts["config"] == "x265-sens") & (pts["qp"] == 42)].iloc[0]
    assert (p["n"], p["images"], p["errors"]) == (5, 5, 1)
    assert p["fidelity"] == pytest.approx(0.2) and p["allocation"] == "sensitivity"
    u = pts[pts["config"] == "x265-uniform"].set_index("qp")
    assert u["fidelity"].tolist() == pytest.approx([1, 1, 0.8, 0.6, 0.2])
    assert u.loc[22, "bpfe"] == pytest.approx(4.0 * 1.2) and u.loc[22, "bytes_per_image"] == pytest.approx(4800, abs=1)
    assert u["top5"].isna().all() and u.loc[32, "fidelity_sem"] > 0
    assert {"encode_s", "decode_s", "bpp"} <= set(pts.columns)


def test_bd_table_against_family_anchor():
    pts = aggregate.points(_rows())
    bd = aggregate.bd_table(pts, anchor="uniform").set_index("config")
    assert set(bd.index) == {"x265-sens", "x265-slow-sens"}  # anchors are not compared with themselves
    s = bd.loc["x265-sens"]
    assert s["anchor"] == "x265-uniform"
    assert s["bd_rate_fidelity"] == pytest.approx(-20.0, abs=1e-9)
    assert s["bd_rate_top1"] == pytest.approx(-20.0, abs=1e-9)
    assert s["bd_fidelity"] > 0 and pd.isna(s["reason_fidelity"])
    assert "bd_rate_top5" not in bd.columns  # no labels -> no column
    lonely = bd.loc["x265-slow-sens"]
    assert pd.isna(lonely["anchor"]) and math.isnan(lonely["bd_rate_fidelity"])
    assert lonely["reason_fidelity"] == "no anchor in family"
    # an explicit anchor config compares across codecs: vvenc needs 30 % fewer bits
    bd2 = aggregate.bd_table(pts, anchor="x265-uniform", rate="bpp").set_index("config")
    assert bd2.loc["vvenc-uniform", "bd_rate_fidelity"] == pytest.approx(-30.0, abs=1e-9)
    assert bd2.loc["x265-slow-sens", "bd_rate_fidelity"] == pytest.approx(-25.0, abs=1e-9)


def test_errors_and_timings():
    e = aggregate.errors(_rows())
    assert e.to_dict("records") == [{"config": "x265-sens", "error": "CodecError: ffmpeg failed", "count": 1}]
    t = aggregate.timings(_rows()).set_index("config")
    assert t.loc["x265-uniform", "total_s"] == pytest.approx(0.092)


def test_write_report(tmp_path):
    extras = {
        "title": "synthetic",
        "notes": "two configs with known relations",
        "manifest": {"software": {"vcfc": "0.1.0", "ffmpeg": "7.1"}, "started": "2024-01-01T00:00:00+00:00",
                     "experiment": {"model": "resnet50"}, "git": {"commit": "abc"}},
        "qp_maps": {"x265-sens@32": [22] * 16 + [37] * 48},
        "sensitivity": pd.DataFrame({"channel": range(64), "sensitivity": np.linspace(1, 0, 64)}),
        "mosaics": {"layer2 QP32": (np.arange(64 * 96, dtype=np.uint16).reshape(64, 96) % 1024, 10)},
        "seed": 3,
    }
    html_path = write_report(_rows(), tmp_path / "rep", anchor="uniform", extras=extras)
    out = tmp_path / "rep"
    assert html_path == out / "report.html"
    for name in ("report.md", "points.csv", "bd.csv", "timings.csv", "errors.csv"):
        assert (out / name).is_file(), name
    bd = pd.read_csv(out / "bd.csv")
    sens = bd[(bd["config"] == "x265-sens") & (bd["rate"] == "bpfe")].iloc[0]
    assert sens["bd_rate_fidelity"] == pytest.approx(-20.0, abs=1e-9)
    assert set(bd["rate"]) == {"bpfe", "bpp"}
    assert len(pd.read_csv(out / "points.csv")) == 20
    pngs, svgs = sorted((out / "plots").glob("*.png")), sorted((out / "plots").glob("*.svg"))
    assert len(pngs) == len(svgs) >= 5  # 2 families x (fidelity, top1) + qp map + sensitivity + mosaic

    page = html_path.read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    srcs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs), srcs[:3]
    assert "url(" not in page
    assert page.count("<img") == len(pngs)
    assert "−20" in page or "-20" in page
    md = (out / "report.md").read_text()
    assert "plots/" in md and "| x265-sens |" in md


def test_report_without_anchor_or_labels(tmp_path):
    rows = _rows()
    rows = rows[rows["allocation"] != "uniform"].drop(columns=["top1"])
    path = write_report(rows, tmp_path, anchor="uniform")
    bd = pd.read_csv(tmp_path / "bd.csv")
    assert set(bd["reason_fidelity"]) == {"no anchor in family"}
    assert "bd_rate_top1" not in bd.columns and path.is_file()


def test_points_refuse_ambiguous_config_ids():
    rows = _rows()
    rows.loc[rows["config"] == "vvenc-uniform", "config"] = "x265-uniform"  # same id, other codec
    with pytest.raises(ValueError, match="config id 'x265-uniform'"):
        aggregate.points(rows)


def test_errors_without_config_do_not_make_points(tmp_path):
    rows = pd.concat([_rows(), pd.DataFrame([{"image_id": "img7", "status": "error", "error": "OSError: x"}])])
    pts = aggregate.points(rows)
    assert pts["config"].isna().sum() == 1 and pts.loc[pts["config"].isna(), "n"].item() == 0
    bd = aggregate.bd_table(pts)
    assert set(bd["config"]) == {"x265-sens", "x265-slow-sens"}
    write_report(rows, tmp_path)
