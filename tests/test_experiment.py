"""Experiment files, `vcfc run` (resumable, after a real kill) and `vcfc report`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import KODAK, write_experiment
from vcfc.errors import InputError
from vcfc.io import bundled
from vcfc.runners.config import experiment_from_dict, load_experiment

REPO = Path(__file__).resolve().parents[1]
TIMING = ["head_s", "quant_s", "pack_s", "encode_s", "decode_s", "alloc_s", "tail_s", "task_s"]


def vcfc(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vcfc", *args], capture_output=True, text=True, timeout=600, **kw)


def test_defaults_and_validation(tmp_path: Path):
    exp = experiment_from_dict({"datasets": [{"path": "imgs"}], "models": [{"name": "resnet50", "layer": "layer1"}]}, base=tmp_path)
    assert exp.coding.codecs == ["x265"] and exp.coding.qps == [27, 32, 37, 42]
    assert exp.allocation.methods == ["uniform"] and exp.models[0].layers == ["layer1"]
    assert exp.datasets[0].path == str(tmp_path / "imgs")
    for bad, match in [
        ({"models": [{"name": "m"}]}, "datasets"),
        ({"datasets": [{"path": "x"}], "models": [{"name": "m"}], "coding": {"codecs": ["h264"]}}, "unknown codec"),
        ({"datasets": [{"path": "x"}], "models": [{"name": "m"}], "coding": {"layouts": ["image"]}}, "list layer"),
        ({"datasets": [{"path": "x"}], "models": [{"name": "m"}], "coding": {"qpz": [1]}}, "unknown field"),
        ({"datasets": [{"path": "x"}], "models": [{"name": "m"}], "allocation": {"methods": ["magic"]}}, "unknown allocation"),
    ]:
        with pytest.raises(InputError, match=match):
            experiment_from_dict(bad)
    (tmp_path / "bad.toml").write_text("name = [unclosed")
    with pytest.raises(InputError, match="not valid TOML"):
        load_experiment(tmp_path / "bad.toml")


BASE = {"datasets": [{"path": "x"}], "models": [{"name": "squeezenet1_1", "layers": ["fire3"]}]}


@pytest.mark.parametrize("extra, message", [
    ({"coding": {"qps": 32}}, "[coding] qps: must be a valid list (got 32)"),
    ({"coding": {"codecs": "x265"}}, "[coding] codecs: must be a valid list (got 'x265')"),
    ({"coding": {"presets": "fast"}}, "[coding] presets: must be a valid dictionary"),
    ({"coding": {"qps": [32, 32]}}, "[coding] qps: lists 32 twice"),
    ({"coding": {"qps": [32.0]}}, "[coding] qps[0]: must be a valid integer"),
    ({"coding": {"quant": 5}}, "[coding] quant: must be a valid string"),
    ({"coding": {"quant": ["minmax", "mystery"]}}, "[coding] quant[1]: unknown quantizer 'mystery'"),
    ({"coding": {"qps": [32, 99]}}, "[coding] qps: QP 99 is outside x265's QP range"),
    ({"run": {"device": "gpu"}}, "[run] device: must be auto, cpu, cuda, cuda:N or mps (got 'gpu')"),
    ({"run": {"workers": "two"}}, "[run] workers: must be a valid integer (got 'two')"),
    ({"run": {"batch_size": 0}}, "[run] batch_size: must be greater than or equal to 1"),
    ({"allocation": {"qp_range": "5"}}, "[allocation] qp_range: must be a valid integer (got '5')"),
    ({"allocation": {"methods": ["rdo", "rdo"]}}, "[allocation] methods: lists 'rdo' twice"),
    ({"datasets": [{"path": "x"}, {"path": "y", "limit": "2"}]}, "[[datasets]] #2 limit: must be a valid integer"),
    ({"models": [{"name": "m", "layers": ["a", "a"]}]}, "[[models]] #1 layers: lists 'a' twice"),
    ({"run": {"wokers": 2}}, "[run] wokers: unknown field"),
    ({"coding": {"presets": {"x265": "bogus"}}}, "[coding] codec x265 has no preset 'bogus'"),
    ({"coding": {"bits": 12}}, "[coding] codec x265 supports 8/10-bit"),
])
def test_every_field_is_checked_with_its_name(extra, message):
    with pytest.raises(InputError) as exc:
        experiment_from_dict({**BASE, **extra})
    assert str(exc.value) == f"experiment: {message}" or str(exc.value).startswith(f"experiment: {message}")


def test_a_bad_experiment_file_is_one_line_naming_file_and_field_before_any_task(tmp_path: Path):
    exp = tmp_path / "exp.toml"
    exp.write_text(f'[[datasets]]\npath = "{KODAK}"\n[[models]]\nname = "squeezenet1_1"\nlayers = ["fire3"]\n'
                   '[coding]\nqps = 32\n')
    r = vcfc("run", str(exp), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and r.stderr.strip() == f"vcfc: error: {exp}: [coding] qps: must be a valid list (got 32)"
    assert not (tmp_path / "run").exists()


def test_demo_experiment_file_is_valid():
    exp = load_experiment(bundled("demo.toml"))
    assert exp.models[0].name == "squeezenet1_1" and set(exp.allocation.methods) == {"uniform", "perimage", "rdo"}
    assert len(list(Path(exp.datasets[0].path).glob("*.jpg"))) == 24


def test_split_points_example_codes_the_input_as_a_picture():
    exp = load_experiment(bundled("split-points.toml"))
    assert exp.models[0].layers == ["input", "fire3", "pool3"]
    assert [s.layout for s in exp.specs("input")] == ["image"] and [s.layout for s in exp.specs("fire3")] == ["frames"]
    assert exp.methods("input") == ["uniform", "rdo-uniform"] and "rdo" in exp.methods("pool3")


def _comparable(run_dir: Path) -> pd.DataFrame:
    t = pd.read_parquet(run_dir / "rows.parquet")
    t = t.drop(columns=[c for c in TIMING if c in t.columns])
    return t.sort_values(["image_id", "config", "qp"]).reset_index(drop=True)


def test_run_resumes_after_kill_without_recomputing(tmp_path: Path):
    exp = write_experiment(tmp_path / "exp.toml", limit=8)
    ref = vcfc("run", str(exp), "--out", str(tmp_path / "ref"), "--no-progress")
    assert ref.returncode == 0, ref.stderr

    run = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "vcfc", "run", str(exp), "--out", str(run), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list((run / "rows").glob("*.ok.parquet"))) < 3:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: the run and its workers
    proc.wait()
    parts = sorted((run / "rows").glob("*.ok.parquet"))
    assert 3 <= len(parts) < 8, "the kill should land mid-run"
    # Stage timings differ on every execution: identical timings after the resume prove that
    # the tasks finished before the kill were not computed again.
    before = pd.concat([pd.read_parquet(p) for p in parts]).sort_values(["task_key", "image_id", "config", "qp"]).reset_index(drop=True)

    again = vcfc("run", str(exp), "--out", str(run), "--no-progress")
    assert again.returncode == 0, again.stderr
    assert f"{len(parts)} already done" in again.stdout
    final = pd.read_parquet(run / "rows.parquet")
    kept = final[final["task_key"].isin(before["task_key"])].sort_values(["task_key", "image_id", "config", "qp"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(kept[before.columns], before, check_dtype=False)
    pd.testing.assert_frame_equal(_comparable(run), _comparable(tmp_path / "ref"))
    # and row for row the same with another worker count (each worker its share of the cores)
    two = vcfc("run", str(exp), "--out", str(tmp_path / "two"), "--workers", "2", "--no-progress")
    assert two.returncode == 0, two.stderr
    pd.testing.assert_frame_equal(_comparable(tmp_path / "two"), _comparable(tmp_path / "ref"))


def test_run_with_allocations_and_report(tmp_path: Path):
    exp = write_experiment(tmp_path / "exp.toml", methods=("uniform", "linear", "lagrangian"), qps=(32, 37, 42), limit=4, batch_size=2)
    r = vcfc("run", str(exp), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = pd.read_parquet(tmp_path / "run" / "rows.parquet")
    assert set(rows["allocation"]) == {"uniform", "linear", "lagrangian"}
    assert len(rows) == 2 * 3 * 3 and (rows["status"] == "ok").all()  # 4 images - 2 profile images
    alloc = json.loads((tmp_path / "run" / "allocations.json").read_text())
    linear = alloc["squeezenet1_1/pool1/x265/ultrafast/minmax/8b/frames/linear/37"]
    assert len(linear) == 64 and min(linear) == 37 - 6 and max(linear) == 37
    assert (tmp_path / "run" / "profiles" / "squeezenet1_1__pool1__x265_ultrafast_minmax_8b_frames.parquet").exists()

    r = vcfc("report", str(tmp_path / "run"), "--out", str(tmp_path / "report"))
    assert r.returncode == 0, r.stderr
    assert "BD-rate" in r.stdout and "linear" in r.stdout
    html = (tmp_path / "report" / "report.html").read_text()
    assert "data:image/png;base64" in html and 'src="http' not in html
    bd = pd.read_csv(tmp_path / "report" / "bd.csv")
    assert {"linear", "lagrangian"} <= set(bd["allocation"])


def test_a_run_with_the_input_layer_compares_features_with_the_coded_image(tmp_path: Path):
    """layers = ["input", "pool1"] with uniform, rdo-uniform and rdo: the input gets the methods a
    picture can take (one QP), λ is calibrated for both, and `vcfc report --anchor input:uniform`
    gives every split point's BD-rate against the image on bytes per image, with its interval."""
    exp = write_experiment(tmp_path / "exp.toml", methods=("uniform", "rdo-uniform", "rdo"), qps=(27, 37, 47),
                           limit=5, batch_size=3, layers=("input", "pool1"))
    r = vcfc("run", str(exp), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 0, r.stderr
    rows = pd.read_parquet(tmp_path / "run" / "rows.parquet")
    got = rows.groupby("layer")["allocation"].agg(lambda a: set(a)).to_dict()
    assert got == {"input": {"uniform", "rdo-uniform"}, "pool1": {"uniform", "rdo-uniform", "rdo"}}
    image = rows[rows["layer"] == "input"]
    assert set(image["layout"]) == {"image"} and (image["channels"] == 3).all()
    assert (image["bpp"] == 8 * image["bytes"] / (224 * 224)).all()
    assert set(rows["image_id"][rows["layer"] == "input"]) == set(rows["image_id"][rows["layer"] == "pool1"])
    lambdas = json.loads((tmp_path / "run" / "lambdas.json").read_text())
    assert "squeezenet1_1/input/x265/ultrafast/image/rdo-uniform/37" in lambdas

    r = vcfc("report", str(tmp_path / "run"), "--anchor", "input:uniform", "--bootstrap", "100",
             "--out", str(tmp_path / "vs-image"))
    assert r.returncode == 0, r.stderr
    bd = pd.read_csv(tmp_path / "vs-image" / "bd.csv")
    pool1 = bd[bd["layer"] == "pool1"]
    assert set(pool1["allocation"]) == {"uniform", "rdo-uniform", "rdo"} and set(bd["rate"]) <= {"bytes", "bpp"}
    assert set(pool1["anchor"]) == {"squeezenet1_1/input/x265/ultrafast/image/uniform"}
    assert {"bd_rate_ci_low", "bd_rate_ci_high"} <= set(bd.columns) and (pool1["n_images"] == 3).all()
    r = vcfc("report", str(tmp_path / "run"), "--anchor", "input:uniform", "--rate", "bpfe")
    assert r.returncode == 2 and "--rate bytes" in r.stderr


def test_run_errors_are_one_line(tmp_path: Path):
    r = vcfc("run", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "no such experiment file" in r.stderr and "Traceback" not in r.stderr
    r = vcfc("report", str(tmp_path), "--out", str(tmp_path / "rep"))
    assert r.returncode == 2 and "not a run folder" in r.stderr


def test_a_bad_experiment_stops_before_any_task(tmp_path: Path):
    exp = write_experiment(tmp_path / "exp.toml", qps=(22, 99))
    r = vcfc("run", str(exp), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "99" in r.stderr and "0..51" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "run" / "rows").exists()  # nothing ran
    exp.write_text(exp.read_text().replace('layers = ["pool1"]', 'layers = ["pool9"]').replace("[22, 99]", "[22]"))
    r = vcfc("run", str(exp), "--out", str(tmp_path / "run"))
    assert r.returncode == 2 and "pool9" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_failures_give_exit_3_and_a_report_that_says_so(tmp_path: Path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for name in ("kodim01.jpg", "kodim02.jpg"):
        (imgs / name).write_bytes((KODAK / name).read_bytes())
    (imgs / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    exp = write_experiment(tmp_path / "exp.toml", limit=3, qps=(32,))
    exp.write_text(exp.read_text().replace(str(KODAK), str(imgs)))
    r = vcfc("run", str(exp), "--out", str(tmp_path / "run"), "--no-progress")
    assert r.returncode == 3, r.stderr
    assert "1 error row(s) for 1 image(s)" in r.stdout and "--retry-errors" in r.stderr
    r = vcfc("report", str(tmp_path / "run"), "--anchor", "nosuch")
    assert r.returncode == 2 and "nosuch" in r.stderr and "uniform" in r.stderr
