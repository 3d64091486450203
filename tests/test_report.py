"""Aggregation, BD tables and the report on a synthetic rows table with known relations."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from vcfc.errors import InputError
from vcfc.results import aggregate, plots
from vcfc.results.report import write_report

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


def _bd(bd: pd.DataFrame, config: str, quality: str = "fidelity", rate: str = "bpfe") -> pd.Series:
    sel = bd[(bd["config"] == config) & (bd["quality"] == quality) & (bd["rate"] == rate)]
    assert len(sel) == 1, (config, quality, rate)
    return sel.iloc[0]


def test_bd_table_against_family_anchor():
    bd = aggregate.bd_table(_rows(), anchor="uniform", n_boot=200)
    assert list(bd.columns[:3]) == ["config", "anchor", "allocation"]
    assert {"rate", "quality", "n_images", "points", "bd_rate", "bd_rate_ci_low", "bd_rate_ci_high", "bd_quality",
            "nan_resamples", "reason"} <= set(bd.columns)
    assert set(bd["config"]) == {"x265-sens", "x265-slow-sens"}  # anchors are not compared with themselves
    s = _bd(bd, "x265-sens")
    assert s["anchor"] == "x265-uniform" and s["n_images"] == 5 and s["points"] == 5
    assert s["bd_rate"] == pytest.approx(-20.0, abs=1e-9)
    # the same images at 80 % of the bits: every resample gives -20
    assert s["bd_rate_ci_low"] == pytest.approx(-20.0, abs=1e-9) and s["bd_rate_ci_high"] == pytest.approx(-20.0, abs=1e-9)
    assert _bd(bd, "x265-sens", "top1")["bd_rate"] == pytest.approx(-20.0, abs=1e-9)
    assert s["bd_quality"] > 0 and pd.isna(s["reason"])
    assert "top5" not in set(bd["quality"])  # no labels -> no rows
    lonely = _bd(bd, "x265-slow-sens")
    assert pd.isna(lonely["anchor"]) and math.isnan(lonely["bd_rate"])
    assert lonely["reason"] == "no anchor in family"
    # an explicit anchor config compares across codecs: vvenc needs 30 % fewer bits
    bd2 = aggregate.bd_table(_rows(), anchor="x265-uniform", rate="bpp", n_boot=200)
    assert _bd(bd2, "vvenc-uniform", rate="bpp")["bd_rate"] == pytest.approx(-30.0, abs=1e-9)
    assert _bd(bd2, "x265-slow-sens", rate="bpp")["bd_rate"] == pytest.approx(-25.0, abs=1e-9)


def test_errors_and_timings():
    e = aggregate.errors(_rows())
    assert e.to_dict("records") == [{"config": "x265-sens", "error": "CodecError: ffmpeg failed", "count": 1}]
    t = aggregate.timings(_rows()).set_index("config")
    assert t.loc["x265-uniform", "total_s"] == pytest.approx(0.092)
    assert t.loc["x265-uniform", "coding_s"] == pytest.approx(0.072) and t.loc["x265-uniform", "x_uniform"] == 1
    rows = _rows()
    rows.loc[rows["config"] == "x265-sens", "alloc_s"] = 0.144  # an allocation twice the uniform coding
    t = aggregate.timings(rows).set_index("config")
    assert t.loc["x265-sens", "coding_s"] == pytest.approx(0.216) and t.loc["x265-sens", "x_uniform"] == pytest.approx(3)
    assert math.isnan(t.loc["x265-slow-sens", "x_uniform"])  # no uniform config of its preset to compare with
    assert t.loc["vvenc-uniform", "x_uniform"] == 1  # each codec against its own uniform


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
    assert _bd(bd, "x265-sens")["bd_rate"] == pytest.approx(-20.0, abs=1e-9)
    assert set(bd["rate"]) == {"bpfe", "bpp", "bytes"}  # bytes per image: the axis across split points
    assert len(pd.read_csv(out / "points.csv")) == 20
    pngs, svgs = sorted((out / "plots").glob("*.png")), sorted((out / "plots").glob("*.svg"))
    assert len(pngs) == len(svgs) >= 5  # 2 families x (fidelity, top1) + qp map + sensitivity + mosaic

    page = html_path.read_text()
    assert "<script" not in page and "<link" not in page and "@import" not in page
    srcs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']*)', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs), srcs[:3]
    assert "url(" not in page
    assert page.count("<img") == len(pngs)
    assert "−20.0 % [−20.0, −20.0]" in page  # a BD-rate always with its interval
    assert "x265-sens needs fewer bits than x265-uniform at equal fidelity" in page
    md = (out / "report.md").read_text()
    assert "plots/" in md and "| x265-sens |" in md


def test_report_without_anchor_or_labels(tmp_path):
    rows = _rows()
    rows = rows[rows["allocation"] != "uniform"].drop(columns=["top1"])
    path = write_report(rows, tmp_path, anchor="uniform", n_boot=200)
    bd = pd.read_csv(tmp_path / "bd.csv")
    assert bd.empty and "bd_rate_ci_low" in bd.columns  # no NaN table: the report says why
    page = path.read_text()
    assert "No BD-rates: anchor &#x27;uniform&#x27; is neither an allocation" in page and "sensitivity" in page
    assert "top-1" not in page.split("<h2>Rate–quality curves</h2>")[-1].split("<h2>")[0]  # no labels: no top1 chart


def test_unknown_anchor_raises_input_error():
    with pytest.raises(InputError, match=r"anchor 'unifrom' is neither an allocation of these rows "
                                         r"\(sensitivity, uniform\) nor a config id \(vvenc-uniform, x265-sens"):
        aggregate.bd_table(_rows(), anchor="unifrom")


def test_points_refuse_ambiguous_config_ids():
    rows = _rows()
    rows.loc[rows["config"] == "vvenc-uniform", "config"] = "x265-uniform"  # same id, other codec
    with pytest.raises(ValueError, match="config id 'x265-uniform'"):
        aggregate.points(rows)


def test_errors_without_config_do_not_make_points(tmp_path):
    rows = pd.concat([_rows(), pd.DataFrame([{"image_id": "img7", "status": "error", "error": "OSError: x"}])])
    pts = aggregate.points(rows)
    assert pts["config"].isna().sum() == 1 and pts.loc[pts["config"].isna(), "n"].item() == 0
    bd = aggregate.bd_table(rows, n_boot=200)
    assert set(bd["config"]) == {"x265-sens", "x265-slow-sens"}
    write_report(rows, tmp_path, n_boot=200)


IDS = [f"squeezenet1_1/fire3/x265/fast/minmax/8b/frames/{a}" for a in ("uniform", "perimage", "lagrangian")]


def _real_rows(weights: str = "DEFAULT", n_img: int = 12) -> pd.DataFrame:
    """Rows shaped like evaluate_batch's, with output_kl and long config ids."""
    rng = np.random.default_rng(5)
    noise, coin = rng.lognormal(0, 0.4, size=(n_img, 4)), rng.random((n_img, 4))  # the same for every config
    rows = []
    for cfg, factor in zip(IDS, (1.0, 0.9, 0.8)):  # the same results at 100, 90, 80 % of the bits
        for j, qp in enumerate((12, 17, 22, 27)):
            for i in range(n_img):
                bpfe = 3.4 * 2 ** (-(qp - 12) / 8) * factor * (1 + 0.05 * i)
                kl = 0.002 * 2 ** ((qp - 12) / 3) * noise[i, j]
                rows.append({"image_id": f"kodim{i:02d}", "config": cfg, "model": "squeezenet1_1", "layer": "fire3",
                             "codec": "x265", "preset": "fast", "quant": "minmax", "bits": 8, "layout": "frames",
                             "allocation": cfg.rsplit("/", 1)[1], "qp": qp, "mean_qp": float(qp), "bytes": 1000,
                             "bpfe": bpfe, "bpp": bpfe * 7.7, "fidelity": float(coin[i, j] < 1 - kl * 5),
                             "top1": np.nan, "top5": np.nan, "output_kl": kl, "output_mse": kl,
                             "weights": weights, "dataset": "kodak", "status": "ok", "error": ""})
    return pd.DataFrame(rows)


def _tables(page: str) -> list[list[str]]:
    return [re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", t) for t in re.findall(r"<table>(.*?)</table>", page, re.S)]


def test_report_of_a_real_run_shape(tmp_path):
    extras = {
        "qp_maps": {"perimage @ 17": {"qps": [16] * 100 + [19] * 28, "base_qp": 17, "method": "linear",
                                      "note": "fire3"}},
        "sensitivity": {"squeezenet1_1 fire3": {"table": pd.DataFrame({"channel": range(128),
                                                                       "sensitivity": np.linspace(1, 2, 128)}),
                                                "definition": "penultimate distance at QP 22 on 6 images"}},
        "mosaics": {"frame": {"frame": np.zeros((32, 48), np.uint16), "bits": 8, "caption": "kodim01 at QP 22"}},
    }
    path = write_report(_real_rows(), tmp_path, extras=extras, n_boot=200)
    page, md = path.read_text(), (tmp_path / "report.md").read_text()
    bd = pd.read_csv(tmp_path / "bd.csv")
    assert set(bd["quality"]) == {"fidelity", "kl_db"} and set(bd["rate"]) == {"bpfe", "bpp", "bytes"}
    kl = _bd(bd, IDS[2], "kl_db")
    assert kl["bd_rate"] == pytest.approx(-20.0, abs=1e-6) and kl["n_images"] == 12
    # every table on the page fits a 1280-px window; the BD table has its few columns
    assert all(len(cols) <= 7 for cols in _tables(page)), [c for c in _tables(page) if len(c) > 7]
    assert ["configuration", "quality", "BD-rate [95 % CI]", "n", "verdict"] in _tables(page)
    # one rate axis on the page: 2 configs x 2 qualities BD cells, not 8; "n" next to each
    assert len(re.findall(r"<td>[+−]\d+\.\d % \[", page)) == 4
    assert "<td>perimage</td>" in page and IDS[1] not in page  # short labels; the common part in captions
    assert "squeezenet1_1/fire3/x265/fast/minmax/8b/frames" in page
    # definitions, captions with n / weights / codec / preset, the caller's texts
    for text in ("Definitions", "fidelity", "bits per feature element", "Bjøntegaard", "95 % confidence interval",
                 "n = 12 images of kodak; weights DEFAULT; codec x265 (preset fast)", "kodim01 at QP 22",
                 "penultimate distance at QP 22 on 6 images", "base QP 17"):
        assert text in page and text in md, text
    assert "RANDOM WEIGHTS" not in page
    assert page.count("<figure") == 2 + 3  # fidelity and kl_db curves, QP map, sensitivity, frame


def test_random_weights_banner(tmp_path):
    path = write_report(_real_rows(weights="none", n_img=4), tmp_path / "a", n_boot=50)
    page = path.read_text()
    assert "RANDOM WEIGHTS" in page and "make weights" in page and "$TORCH_HOME/hub/checkpoints" in page
    assert page.index("RANDOM WEIGHTS") < page.index("<h2>")  # at the top
    assert "RANDOM WEIGHTS" in (tmp_path / "a" / "report.md").read_text()
    page = write_report(_rows(), tmp_path / "b", extras={"weights_random": True}, n_boot=50).read_text()
    assert "RANDOM WEIGHTS" in page


def test_report_when_every_row_failed(tmp_path):
    rows = _rows()
    rows = rows[rows["status"] == "error"]
    page = write_report(rows, tmp_path / "a").read_text()
    assert "No results: every one of the 1 rows failed" in page and "CodecError: ffmpeg failed" in page
    bare = pd.DataFrame([{"image_id": "x", "status": "error", "error": "OSError: disk full"}] * 3)
    page = write_report(bare, tmp_path / "b").read_text()
    assert "No results: every one of the 3 rows failed" in page and "OSError: disk full" in page
    assert (tmp_path / "b" / "bd.csv").is_file()


def test_short_labels_keep_what_varies():
    labels, common = plots.short_labels(IDS)
    assert labels == {IDS[0]: "uniform", IDS[1]: "perimage", IDS[2]: "lagrangian"}
    assert common == "squeezenet1_1/fire3/x265/fast/minmax/8b/frames"
    labels, _ = plots.short_labels(["m/l/x265/fast/uniform", "m/l/vvenc/medium/uniform"])
    assert labels == {"m/l/x265/fast/uniform": "x265/fast", "m/l/vvenc/medium/uniform": "vvenc/medium"}
    assert plots.short_labels(["only/one"])[0] == {"only/one": "one"}


def test_curve_chart_legend_ticks_and_qp_labels():
    pts = aggregate.points(_real_rows(), n_boot=50)
    fig = plots.plot_rate_quality(pts, rate="bpfe", quality="kl_db")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lagrangian", "perimage", "uniform"]
    lo, hi = ax.get_xlim()
    ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
    assert min(ticks) < 1.5 and len(ticks) >= 4  # the data goes down to ~1 bpfe
    labels = [a for a in ax.texts if a.get_text().isdigit()]
    assert labels  # some QPs are labelled …
    fig.canvas.draw()
    boxes = [a.get_window_extent() for a in labels]
    for i, a in enumerate(boxes):  # … and no two labels overlap
        for b in boxes[i + 1:]:
            assert not a.overlaps(b)
    plots.close(fig)


def test_log_ticks_cover_the_range():
    for lo, hi in ((0.6, 4.0), (1.05, 1.4), (0.02, 30.0), (1.1, 3.5)):
        ticks = plots.nice_log_ticks(lo, hi)
        assert len(ticks) >= 3 and all(lo <= t <= hi for t in ticks), (lo, hi, ticks)
        span = np.log10(hi / lo)
        assert np.log10(ticks[0] / lo) / span < 0.25 and np.log10(hi / ticks[-1]) / span < 0.25, (lo, hi, ticks)
    assert min(plots.nice_log_ticks(0.6, 4.0)) < 1.5


def test_qp_map_chart():
    fig = plots.plot_qp_map([16] * 30 + [20] * 34, base_qp=17, title="Per-channel QP: linear", method="linear")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "channel" and ax.get_ylabel() == "QP"
    assert "base QP 17" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(np.allclose(line.get_ydata(), 17) for line in ax.get_lines())  # the reference line
    plots.close(fig)


def test_bd_text_always_has_interval_and_n():
    from vcfc.results.report import bd_text

    row = {"bd_rate": -8.64, "bd_rate_ci_low": -14.21, "bd_rate_ci_high": -2.93, "n_images": 230}
    assert bd_text(row) == "−8.6 % [−14.2, −2.9], n = 230"
    assert bd_text({**row, "bd_rate_ci_low": math.nan}) == "−8.6 % [no interval], n = 230"
    assert bd_text({**row, "bd_rate": math.nan}) == "—, n = 230"


def test_accuracy_bd_rates_count_only_labelled_images():
    rows = _rows()
    unlabelled = rows["image_id"].isin(["img3", "img4"])
    rows.loc[unlabelled, "top1"] = math.nan  # e.g. COCO/Kodak images next to labelled ImageNet ones
    bd = aggregate.bd_table(rows, anchor="uniform", n_boot=50)
    sens = bd[(bd["config"] == "x265-sens") & (bd["rate"] == "bpfe")].set_index("quality")
    assert sens.at["fidelity", "n_images"] == 5 and sens.at["top1", "n_images"] == 3


def test_accuracy_charts_name_the_labelled_images_they_average(tmp_path):
    rows = _rows()
    rows.loc[rows["image_id"].isin(["img3", "img4"]), "top1"] = math.nan
    write_report(rows, tmp_path, anchor="uniform", n_boot=50)
    md = (tmp_path / "report.md").read_text()
    top1 = [c for c in re.findall(r"_(top-1 accuracy vs bpfe[^_]*)_", md)]
    fid = [c for c in re.findall(r"_(fidelity vs bpfe[^_]*)_", md)]
    assert top1 and all("n = 3 labelled images (of 5)" in c for c in top1)
    assert fid and all("n = 5 images" in c for c in fid)
    assert "Top-1 accuracy: over the labelled images among them only." in md


def test_vcfc_report_prints_the_same_short_names_as_the_legends(capsys):
    from vcfc.runners.cli.cmd_experiment import print_bd

    ids = ["m/l/x265/fast/zscore/8b/frames/uniform", "m/l/x265/fast/log/8b/frames/uniform"]
    bd = pd.DataFrame({"config": ids, "rate": "bpfe", "quality": "fidelity", "bd_rate": [4.0, -2.5],
                       "bd_rate_ci_low": [1.0, -6.0], "bd_rate_ci_high": [7.0, 1.0], "n_images": 10})
    print_bd(bd)
    lines = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("  ")]
    assert [ln[0] for ln in lines] == ["zscore", "log"] == [plots.short_labels(ids)[0][i] for i in ids]


# --------------------------------------------------------------------------- split points

def _split_rows(n_images: int = 30) -> pd.DataFrame:
    """Two split points and the coded image: at every QP, pool3's file is half the image's bytes
    and fire3's twice, with the same per-image outcomes (fidelity follows the QP), so at equal
    fidelity pool3 saves 50 % and fire3 costs +100 %; their bpfe says nothing (other sizes)."""
    rng = np.random.default_rng(1)
    noise = {(qp, i): (1 + 0.05 * rng.standard_normal(), rng.random()) for qp in QPS for i in range(n_images)}
    rows = []
    for layer, layout, factor, elements in (("input", "image", 1.0, 150528), ("pool3", "frames", 0.5, 93312),
                                            ("fire3", "frames", 2.0, 387200)):
        for alloc in ("uniform", "rdo-uniform"):
            cfg = f"sq/{layer}/x265/fast/{layout}/{alloc}"
            for qp in QPS:
                for i in range(n_images):
                    jitter, draw = noise[(qp, i)]  # the same image outcome whatever the split point
                    nbytes = 8000 * 2 ** (-(qp - 22) / 6) * factor * (0.8 if alloc == "rdo-uniform" else 1.0) * jitter
                    agree = float(draw < {22: 0.99, 27: 0.97, 32: 0.9, 37: 0.75, 42: 0.5}[qp])
                    rows.append({"image_id": f"i{i}", "config": cfg, "model": "sq", "layer": layer, "codec": "x265",
                                 "preset": "fast", "quant": "minmax", "bits": 8, "layout": layout, "allocation": alloc,
                                 "qp": qp, "bytes": nbytes, "bpfe": 8 * nbytes / elements, "bpp": 8 * nbytes / 50176,
                                 "fidelity": agree, "status": "ok"})
    return pd.DataFrame(rows)


def test_a_layer_anchor_compares_every_split_point_with_the_image_on_bytes():
    rows = _split_rows()
    bd = aggregate.bd_table(rows, anchor="input:uniform", rate=["bpfe", "bytes"], n_boot=200)
    assert set(bd["rate"]) == {"bytes"}  # split points differ in elements: no bpfe comparison
    assert set(bd["anchor"]) == {"sq/input/x265/fast/image/uniform"}
    pool3 = _bd(bd, "sq/pool3/x265/fast/frames/uniform", rate="bytes")
    fire3 = _bd(bd, "sq/fire3/x265/fast/frames/uniform", rate="bytes")
    assert pool3["bd_rate"] == pytest.approx(-50) and fire3["bd_rate"] == pytest.approx(100)
    assert pool3["bd_rate_ci_low"] < pool3["bd_rate"] < pool3["bd_rate_ci_high"] < 0 and pool3["n_images"] == 30
    with pytest.raises(InputError, match="no layer 'fire9'"):
        aggregate.bd_table(rows, anchor="fire9:uniform")
    # within a family, as before: rdo-uniform against uniform of the same layer
    own = aggregate.bd_table(rows, anchor="uniform", rate="bpfe", n_boot=0)
    assert _bd(own, "sq/pool3/x265/fast/frames/rdo-uniform")["anchor"] == "sq/pool3/x265/fast/frames/uniform"


def test_the_report_of_a_run_with_the_input_compares_features_with_the_image(tmp_path):
    path = write_report(_split_rows(12), tmp_path / "rep", n_boot=100)
    vs = pd.read_csv(tmp_path / "rep" / "bd_vs_image.csv")
    assert set(vs["anchor"]) == {"sq/input/x265/fast/image/uniform", "sq/input/x265/fast/image/rdo-uniform"}
    assert {"bd_rate_ci_low", "bd_rate_ci_high"} <= set(vs.columns) and set(vs["rate"]) == {"bytes"}
    page = path.read_text()
    assert "Sending features or the image" in page and "every split point" in page
    assert any(p.name.startswith(tuple(f"{k:02d}_splits_fidelity" for k in range(1, 20)))
               for p in (tmp_path / "rep" / "plots").iterdir())
