"""Per-image allocation (Hu et al.'s Algorithm 1 per image) and the closed-loop search (rdo)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_experiment
from vcfc.bank import FrameBank
from vcfc.sensitivity.allocation import allocate_linear
from vcfc.sensitivity.channel_sweep import ChannelSweep
from vcfc.sensitivity.distances import get_distance
from vcfc.sensitivity.options import RdoSettings, SweepOptions
from vcfc.sensitivity.perimage import allocate_image, image_sensitivity
from vcfc.sensitivity.rdo import calibrate_lambda, grid_qps, rdo_qps
from vcfc.spec import CodingSpec

SPEC = CodingSpec("x265", layout="frames", preset="ultrafast").checked()


def test_allocate_image_is_the_linear_rule_on_this_images_own_sensitivities(squeeze):
    sp, feats = squeeze
    feats = [f[0] for f in feats]
    pen = sp.penultimate_module()
    qps = [allocate_image(f, tail=sp.tail_module, penultimate=pen, qp=32, qp_range=5, spec=SPEC) for f in feats]
    for f, q in zip(feats, qps):
        assert q.shape == (64,) and q.max() == 32 and q.min() == 32 - 5
        bank = FrameBank(f, SPEC)
        dist = get_distance("penultimate")
        s = image_sensitivity(f, bank, 32, ChannelSweep(pen, dist, SweepOptions(), SPEC, 32))
        np.testing.assert_array_equal(q, allocate_linear(s, 32, 5, SPEC.qp_limits))
    assert not np.array_equal(qps[0], qps[1])  # each image its own QPs


def test_grid_is_shared_across_base_qps():
    assert grid_qps(32, 6, 3, (0, 51)) == [27, 30, 32, 33, 36]
    assert grid_qps(2, 6, 3, (0, 51)) == [0, 2, 3, 6]


def test_rdo_never_costs_more_than_the_best_uniform_qp_and_follows_lambda(squeeze):
    sp, feats = squeeze
    feats = [f[0] for f in feats]
    f = feats[0]
    sweep = ChannelSweep(sp.tail_module, get_distance("kl"), SweepOptions(), SPEC, 32)
    bank = FrameBank(f, SPEC)
    # with the sweep both searches score candidates through the same (channels-last) tail, so costs compare exactly
    uni = rdo_qps(f, tail=sp.tail_module, bank=bank, qp=32, settings=RdoSettings(lam=0.02, uniform_only=True), sweep=sweep)
    assert len(set(uni.qps.tolist())) == 1 and uni.qps[0] in grid_qps(32, 6, 3, (0, 51))
    full = rdo_qps(f, tail=sp.tail_module, bank=bank, qp=32, settings=RdoSettings(lam=0.02), sweep=sweep)
    assert full.cost <= uni.cost + 1e-12  # the search starts from the best uniform candidate
    assert full.history == sorted(full.history, reverse=True)  # every accepted step lowers D + λR
    assert full.bpfe == pytest.approx(8 * bank.size(full.qps.tolist()) / f.numel())  # R is the real file
    cheap = rdo_qps(f, tail=sp.tail_module, bank=bank, qp=32, settings=RdoSettings(lam=1e6), sweep=sweep)
    assert (cheap.qps == max(grid_qps(32, 6, 3, (0, 51)))).all()  # bits dominate: the coarsest QP everywhere
    lam = calibrate_lambda([(x, sp.tail_module, FrameBank(x, SPEC)) for x in feats], 32, 3, RdoSettings(lam=0.0))
    assert lam > 0


@pytest.mark.shared
def test_eval_perimage_needs_no_profile_and_gives_each_image_its_qps(shared, torch_home):
    data = shared / "data" / "imagenet-sample"
    base = [sys.executable, "-m", "vcfc", "eval", "--model", "squeezenet1_1", "--layer", "fire3", "--data", str(data),
            "--limit", "3", "--codec", "x265", "--preset", "ultrafast", "--qp", "32", "--layout", "frames", "--json"]
    r = subprocess.run([*base, "--allocation", "perimage", "--qp-range", "5"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["distinct_qp_vectors"] == 3 and 27 < out["mean_qp"] < 32 and out["allocation"] == "perimage"
    r = subprocess.run([*base, "--allocation", "rdo", "--calibrate", "2"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["lambda"] > 0 and out["distinct_qp_vectors"] >= 1 and "λ =" in r.stderr
    assert out["calibration_images"] == 2 and out["images"] == 1  # the images that set λ are not scored
    r = subprocess.run([*base, "--allocation", "rdo", "--calibrate", "3"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "none is left to score" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_experiment_with_perimage_reports_bd_rates_with_intervals(tmp_path):
    exp = write_experiment(tmp_path / "exp.toml", methods=("uniform", "perimage"), qps=(27, 37, 47), limit=5,
                           batch_size=2, profile_images=1, qp_range=5)
    r = subprocess.run([sys.executable, "-m", "vcfc", "run", str(exp), "--out", str(tmp_path / "run"), "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = pd.read_parquet(tmp_path / "run" / "rows.parquet")
    per = rows[rows["allocation"] == "perimage"]
    assert len(per) == 4 * 3 and per["qp_vector"].nunique() == 12  # every image × QP its own vector
    r = subprocess.run([sys.executable, "-m", "vcfc", "report", str(tmp_path / "run"), "--bootstrap", "200"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    bd = pd.read_csv(tmp_path / "run" / "report" / "bd.csv")
    assert {"bd_rate", "bd_rate_ci_low", "bd_rate_ci_high", "n_images"} <= set(bd.columns)
    assert set(bd["allocation"]) == {"perimage"} and (bd["n_images"] == 4).all()


def test_experiment_rdo_rows_never_cost_more_than_uniform_at_the_runs_lambda(tmp_path):
    exp = write_experiment(tmp_path / "exp.toml", methods=("uniform", "rdo"), qps=(32, 42), limit=3, profile_images=1)
    r = subprocess.run([sys.executable, "-m", "vcfc", "run", str(exp), "--out", str(tmp_path / "run"), "--no-progress"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lambdas = json.loads((tmp_path / "run" / "lambdas.json").read_text())
    assert sorted(int(k.rsplit("/", 1)[1]) for k in lambdas) == [32, 42]
    assert all(v > 0 and np.isfinite(v) for v in lambdas.values())
    rows = pd.read_parquet(tmp_path / "run" / "rows.parquet")
    assert (rows["status"] == "ok").all() and set(rows["allocation"]) == {"uniform", "rdo"}
    uni = rows[rows["allocation"] == "uniform"].set_index(["image_id", "qp"])
    for _, row in rows[rows["allocation"] == "rdo"].iterrows():
        lam = lambdas[f"{row['config']}/{row['qp']}"]
        u = uni.loc[(row["image_id"], row["qp"])]
        # the search starts from (and may keep) this very uniform coding: its cost is an upper bound
        rdo_cost, uni_cost = row["output_kl"] + lam * row["bpfe"], u["output_kl"] + lam * u["bpfe"]
        assert rdo_cost <= uni_cost * (1 + 1e-4) + 1e-9
