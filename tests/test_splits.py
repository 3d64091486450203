"""Where to split: head FLOPs of cuts, bytes per image at a target fidelity, the Pareto front, and
`vcfc splits` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import KODAK
from tests.test_cli import vcfc_cli
from vcfc.runners.where_to_split import Cut, bytes_at, candidate_cuts, cut_of, summarize

pytestmark = pytest.mark.filterwarnings("ignore:.*random weights")


def test_cuts_know_their_head_flops_and_size():
    image, fire3, pool3 = cut_of("squeezenet1_1", "input"), cut_of("squeezenet1_1", "fire3"), cut_of("squeezenet1_1", "pool3")
    assert image.head_flops == 0 and image.elements == 3 * 224 * 224 and image.element_ratio == 1.0
    assert fire3.shape == [128, 55, 55] and pool3.shape == [128, 27, 27]
    assert fire3.flops_share == pytest.approx(0.265, abs=0.001) and pool3.head_flops == fire3.head_flops  # a max-pool
    assert fire3.element_ratio == pytest.approx(2.572, abs=0.001) and pool3.element_ratio == pytest.approx(0.620, abs=0.001)
    assert 0.69e9 < fire3.total_flops < 0.71e9  # squeezenet1_1: 0.35 GMAC at 224×224
    # by default: presets with no more elements than the image, within half the FLOPs, one per shape first
    assert [c.layer for c in candidate_cuts("squeezenet1_1")] == ["pool3", "pool5"]
    assert [c.layer for c in candidate_cuts("mobilenet_v2")] == ["block2", "block4", "block7"]
    assert [c.layer for c in candidate_cuts("mobilenet_v2", max_cuts=4)] == ["block2", "block3", "block4", "block7"]
    assert [c.layer for c in candidate_cuts("squeezenet1_1", ["fire3", "input"])] == ["fire3"]


def test_bytes_at_a_fidelity_interpolates_log_bytes_on_the_increasing_curve():
    rates = np.array([1000.0, 2000.0, 4000.0, 8000.0])
    fid = np.array([0.6, 0.9, 0.95, 0.95])  # the last point saturates: it is dropped
    assert bytes_at(rates, fid, 0.9) == (2000.0, None)
    value, _ = bytes_at(rates, fid, 0.925)
    assert value == pytest.approx(np.sqrt(2000 * 4000))  # half way in fidelity = geometric mean of bytes
    assert math.isnan(bytes_at(rates, fid, 0.98)[0]) and "not reached" in bytes_at(rates, fid, 0.98)[1]
    assert bytes_at(rates, fid, 0.5)[0] == 1000.0 and "at most" in bytes_at(rates, fid, 0.5)[1]  # an upper bound


def _rows() -> pd.DataFrame:
    """The image and two cuts, 40 images, 3 QPs; 'cheap' needs half the image's bytes, 'dear' twice."""
    rng = np.random.default_rng(0)
    draws = {(q, i): rng.random() for q in (22, 32, 42) for i in range(40)}
    rows = []
    for layer, factor in (("input", 1.0), ("cheap", 0.5), ("dear", 2.0)):
        for q, fid in ((22, 0.99), (32, 0.93), (42, 0.7)):
            for i in range(40):
                rows.append({"image_id": f"i{i}", "layer": layer, "allocation": "uniform", "config": f"m/{layer}/u",
                             "qp": q, "bytes": 4000 * factor * 2 ** ((32 - q) / 6), "fidelity": float(draws[(q, i)] < fid),
                             "status": "ok"})
    return pd.DataFrame(rows)


def test_summary_gives_bytes_with_intervals_and_the_pareto_front():
    cuts = [Cut("input", 0, 100, [3, 8, 8], 192, 192), Cut("cheap", 30, 100, [4, 4, 4], 64, 192),
            Cut("dear", 10, 100, [8, 4, 4], 128, 192)]
    curves = {c.layer: c for c in summarize(_rows(), cuts, targets=(0.9,), n_boot=300)}
    a = {k: c.at[0.9] for k, c in curves.items()}
    assert a["cheap"].bytes == pytest.approx(a["input"].bytes / 2) and a["dear"].bytes == pytest.approx(2 * a["input"].bytes)
    assert a["input"].ci_low < a["input"].bytes < a["input"].ci_high
    # the image (0 FLOPs) and 'cheap' (fewest bytes) are on the front; 'dear' needs more bytes than the image
    assert (a["input"].pareto, a["cheap"].pareto, a["dear"].pareto) == (True, True, False)
    # against the image at the target, paired: the same fidelities at half (twice) the bytes in every
    # resample give exactly −50 % (+100 %) with a zero-width interval, though each curve's own is wide
    cheap, dear = curves["cheap"].vs_image["uniform"][0.9], curves["dear"].vs_image["uniform"][0.9]
    assert (cheap.bytes, cheap.ci_low, cheap.ci_high) == pytest.approx((-50, -50, -50))
    assert (dear.bytes, dear.ci_low, dear.ci_high) == pytest.approx((100, 100, 100))
    assert a["input"].ci_high / a["input"].ci_low > 1.05 and not curves["input"].vs_image
    assert "does not reach" in summarize(_rows(), cuts, targets=(0.999,), n_boot=0)[1].vs_image["uniform"][0.999].reason
    # a tie in bytes with more FLOPs is not on the front
    tie = [Cut("input", 0, 100, [3, 8, 8], 192, 192), Cut("cheap", 30, 100, [4, 4, 4], 64, 192),
           Cut("dear", 30, 100, [8, 4, 4], 128, 192)]
    rows = _rows()
    rows.loc[rows["layer"] == "dear", "bytes"] = rows.loc[rows["layer"] == "cheap", "bytes"].to_numpy()
    curves = {c.layer: c for c in summarize(rows, tie, targets=(0.9,), n_boot=0)}
    assert curves["cheap"].at[0.9].pareto and curves["dear"].at[0.9].pareto  # equal FLOPs and bytes: both
    tie[2] = Cut("dear", 31, 100, [8, 4, 4], 128, 192)
    curves = {c.layer: c for c in summarize(rows, tie, targets=(0.9,), n_boot=0)}
    assert curves["cheap"].at[0.9].pareto and not curves["dear"].at[0.9].pareto


def test_vcfc_splits_end_to_end(tmp_path):
    """The command on 4 bundled images (random weights): exits 0, prints the table, writes the plot,
    the JSON (with timing) and the report; the table names the image, the cut and every method."""
    out = tmp_path / "sq"
    r = vcfc_cli("splits", "--model", "squeezenet1_1", "--weights", "none", "--data", str(KODAK), "--limit", "6",
                 "--calibrate", "2", "--layers", "pool5", "--qps", "27,42", "--preset", "ultrafast",
                 "--targets", "0.5,0.9", "--bootstrap", "50", "--workers", "1", "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "head FLOPs" in r.stdout and "fidelity 0.5" in r.stdout and "time:" in r.stdout
    table = [line.split()[:2] for line in r.stdout.splitlines() if line.startswith(("input", "pool5"))]
    assert ["input", "0.0%"] in table
    assert sum(line[0] == "pool5" for line in table) == 3 and sum(line[0] == "input" for line in table) == 2
    s = json.loads((out / "splits.json").read_text())
    assert s["images"] == 4 and s["calibration_images"] == 2 and [c["layer"] for c in s["cuts"]] == ["input", "pool5"]
    assert s["timing"]["s_per_image_per_cut"]["pool5"] > 0 and s["timing"]["wall_s"] > 0
    assert {(c["layer"], c["allocation"]) for c in s["curves"]} == {
        ("input", "uniform"), ("input", "rdo-uniform"), ("pool5", "uniform"), ("pool5", "rdo-uniform"), ("pool5", "rdo")}
    assert (out / "splits.png").stat().st_size > 10_000 and (out / "report" / "report.html").is_file()
    again = vcfc_cli("splits", "--model", "squeezenet1_1", "--weights", "none", "--data", str(KODAK), "--limit", "6",
                     "--calibrate", "2", "--layers", "pool5", "--qps", "27,42", "--preset", "ultrafast",
                     "--targets", "0.5,0.9", "--bootstrap", "50", "--workers", "1", "--out", str(out), "--json",
                     "--no-progress")
    assert again.returncode == 0 and json.loads(again.stdout)["timing"]["tasks_run"] == 0  # resumed: nothing redone


@pytest.mark.parametrize("args, msg", [
    (["--targets", "0.9,1.5"], "fidelities in (0, 1]"),
    (["--qps", "27,x"], "--qps expects"),
    (["--layers", "fire33"], "'fire33' is not a layer"),
    (["--model", "fasterrcnn_resnet50_fpn"], "compares classifiers"),
    (["--qps", "32,32"], "--qps: lists 32 twice"),  # the experiment's schema, in the flags' names
    (["--device", "gpu"], "--device must be auto, cpu, cuda, cuda:N or mps"),
    (["--model", "tests.tiny_models:tiny"], "has no split presets: name the cuts with --layers"),  # your own network
])
def test_vcfc_splits_bad_input_is_one_line_before_any_work(tmp_path, args, msg):
    base = {"--model": "squeezenet1_1", "--data": str(KODAK), "--out": str(tmp_path / "o")}
    for k in args[::2]:
        base.pop(k, None)
    argv = [x for kv in base.items() for x in kv] + args
    r = vcfc_cli("splits", *argv)
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
