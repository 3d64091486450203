"""Experiment report: Markdown + one self-contained HTML file + CSVs + plots from the rows table.

``write_report(rows, out_dir)`` writes::

    out_dir/report.html      self-contained: tables inline, figures as base64 PNG, no JS/links
    out_dir/report.md        same content, figures linked from plots/
    out_dir/bd.csv           BD-rate [95 % CI] of each config vs its anchor: per rate axis and quality
    out_dir/points.csv       per (config, qp) means, confidence intervals and counts
    out_dir/timings.csv, errors.csv
    out_dir/plots/*.png|svg

The pages show few columns (they fit a 1280-px window) and one rate axis; the CSVs hold
everything. To look at a report as a reviewer does: ``python -m vcfc.results.screenshot
out_dir/report.html --out shots`` (headless Chromium, 1280 px wide). Every BD-rate is shown with its 95 % bootstrap interval and the number of images,
and a verdict only when the interval excludes 0.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vcfc.coding import SKIP
from vcfc.errors import InputError
from vcfc.picture import INPUT_LAYER as INPUT

from . import aggregate, plots
from .bdrate import DEFAULT_N_BOOT, DEFAULT_SEED

_CSS = """body{font-family:system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222;
line-height:1.4}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.15em;margin-top:1.6em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1em}th,td{border:1px solid #ccc;padding:3px 7px;
text-align:right;vertical-align:top}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
td.t,th.t{text-align:left;max-width:34em;overflow-wrap:anywhere}img{max-width:100%;height:auto}
figure{display:inline-block;vertical-align:top;width:49%;margin:0 0 1em;box-sizing:border-box;padding:0 .4em}
figure.wide{display:block;width:100%;max-width:900px}figcaption{font-size:12.5px;color:#444}
pre{background:#f7f7f7;padding:.5em;overflow-x:auto;font-size:12px;max-height:30em}
.banner{border:3px solid #c00;background:#fff0f0;color:#700;padding:.7em 1em;font-size:1.05em;margin:1em 0}
.banner.warn{border-color:#c80;background:#fff8e6;color:#640}dl{font-size:13px;display:grid;grid-template-columns:max-content 1fr;gap:.2em .9em;
margin:.5em 0 1em}dt{font-weight:600}dd{margin:0}.note{font-size:13px;color:#444}code{background:#f3f3f3;padding:0 .2em}"""

QUALITY_NAMES = {"fidelity": "fidelity", "kl_db": "output KL", "top1": "top-1 accuracy", "top5": "top-5 accuracy"}
CURVE_QUALITIES = ("fidelity", "kl_db", "top1")  # one chart per family and quality (top5: CSV only)
CI_PERCENT = 95
RANDOM_WEIGHTS = ("RANDOM WEIGHTS: this run used untrained, randomly initialised network weights, so every "
                  "number below is a pipeline check, not the network's behaviour. To measure the real "
                  "network, get the pretrained weights (`make weights`, or copy the torchvision .pth files "
                  "into $TORCH_HOME/hub/checkpoints) and run the experiment again.")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "—"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def _num(v: float, fmt: str = ".1f", signed: bool = False) -> str:
    if v is None or not np.isfinite(v):
        return "—"
    s = f"{v:+{fmt}}" if signed else f"{v:{fmt}}"
    return s.replace("-", "−")


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _html_table(df: pd.DataFrame, text_cols: Sequence[str] = ()) -> str:
    if df.empty:
        return "<p><em>(none)</em></p>"

    def cls(c: Any) -> str:
        return ' class="t"' if str(c) in text_cols else ""

    head = "".join(f"<th{cls(c)}>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td{cls(c)}>{html.escape(_fmt(v))}</td>" for c, v in zip(df.columns, row))
                   + "</tr>" for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_inline(text: str) -> str:
    """HTML for text with `code` spans (the only Markdown used in paragraphs)."""
    parts = re.split(r"`([^`]*)`", text)
    return "".join(f"<code>{html.escape(p)}</code>" if i % 2 else html.escape(p) for i, p in enumerate(parts))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:80] or "all"


class _Doc:
    """Builds the Markdown and the HTML side by side, so they never drift apart."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.md: list[str] = []
        self.html: list[str] = []
        self.n_figs = 0

    def heading(self, text: str, level: int = 2) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str, cls: str | None = None) -> None:
        self.md.append(text + "\n")
        self.html.append(f"<p{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>{_md_inline(text)}</p>")

    def banner(self, text: str, warn: bool = False) -> None:
        self.md.append(f"> **{'⚠ ' if not warn else ''}{text}**\n")
        self.html.append(f'<div class="banner{" warn" if warn else ""}"><strong>{_md_inline(text)}</strong></div>')

    def definitions(self, items: Sequence[tuple[str, str]]) -> None:
        self.md.append("\n".join(f"- **{term}**: {text}" for term, text in items) + "\n")
        self.html.append("<dl>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{_md_inline(x)}</dd>" for t, x in items)
                         + "</dl>")

    def pre(self, text: str) -> None:
        self.md.append("```\n" + text + "\n```\n")
        self.html.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, df: pd.DataFrame, csv_name: str | None = None, full: pd.DataFrame | None = None,
              text_cols: Sequence[str] = ()) -> None:
        """Show ``df``; write ``full`` (default ``df``) to ``csv_name`` and name the file under the table."""
        self.md.append(_md_table(df))
        self.html.append(_html_table(df, text_cols))
        if csv_name:
            (full if full is not None else df).to_csv(self.out_dir / csv_name, index=False)
            more = " (all columns)" if full is not None else ""
            self.para(f"Table{more}: `{csv_name}` next to this report.", cls="note")

    def figure(self, fig: Any, name: str, caption: str, wide: bool = False) -> None:
        self.n_figs += 1
        stem = self.out_dir / "plots" / f"{self.n_figs:02d}_{_slug(name)}"
        plots.save(fig, stem)
        self.md.append(f"![{name}](plots/{stem.name}.png)\n\n_{caption}_\n")
        self.html.append(f'<figure{" class=" + chr(34) + "wide" + chr(34) if wide else ""}>'
                         f'<img alt="{html.escape(caption)}" src="data:image/png;base64,'
                         f'{plots.png_base64(fig)}"><figcaption>{html.escape(caption)}</figcaption></figure>')
        plots.close(fig)


# --- what the rows are about -------------------------------------------------------------------

def _values(rows: pd.DataFrame, col: str) -> list[str]:
    if col not in rows:
        return []
    return sorted({str(v) for v in rows[col].dropna() if str(v) not in ("", "nan", "None")})


_ok_rows = aggregate.ok_rows


def _weights_random(rows: pd.DataFrame, extras: Mapping[str, Any]) -> bool:
    if extras.get("weights_random") is True:
        return True
    return "weights" in rows and rows["weights"].astype(str).str.strip().str.lower().eq("none").any()


def _manifest_fallback(extras: Mapping[str, Any]) -> dict[str, list[str]]:
    exp = (extras.get("manifest") or {}).get("experiment") or {}
    coding = exp.get("coding") or {}
    out = {"weights": sorted({str(m.get("weights")) for m in exp.get("models") or [] if m.get("weights")}),
           "codec": [str(c) for c in coding.get("codecs") or []],
           "preset": sorted({str(v) for v in (coding.get("presets") or {}).values()}),
           "dataset": [Path(str(d.get("path"))).name for d in exp.get("datasets") or [] if d.get("path")]}
    return {k: v for k, v in out.items() if v}


def _context(rows: pd.DataFrame, extras: Mapping[str, Any]) -> dict[str, Any]:
    """n images, weights, codec, preset, dataset … of (a subset of) the rows."""
    ok = _ok_rows(rows)
    fb = _manifest_fallback(extras)
    ctx: dict[str, Any] = {"n": int(ok["image_id"].nunique()) if "image_id" in ok else 0}
    for col in ("model", "layer", "weights", "codec", "preset", "dataset"):
        vals = _values(ok, col) or _values(rows, col) or fb.get(col, [])
        if col == "dataset":
            vals = sorted({Path(v).name or v for v in vals})
        ctx[col] = vals
    return ctx


def _join(vals: Sequence[str], unknown: str = "unknown") -> str:
    return ", ".join(vals) if vals else unknown


def _context_caption(ctx: Mapping[str, Any]) -> str:
    codec = _join(ctx["codec"])
    preset = f" (preset {_join(ctx['preset'])})" if ctx["preset"] else ""
    data = f" of {_join(ctx['dataset'])}" if ctx["dataset"] else ""
    return f"n = {ctx['n']} images{data}; weights {_join(ctx['weights'])}; codec {codec}{preset}"


def _images_with(rows: pd.DataFrame, quality: str) -> int | None:
    """How many images have a value of ``quality`` (accuracy needs labels: fewer than n)."""
    if quality not in rows or "image_id" not in rows:
        return None
    return int(rows.loc[rows[quality].notna(), "image_id"].nunique())


# --- sections ----------------------------------------------------------------------------------

def _summary(rows: pd.DataFrame) -> str:
    status = rows["status"] if "status" in rows else pd.Series("ok", index=rows.index)
    text = f"{len(rows)} rows ({int(status.eq('ok').sum())} ok, {int(status.eq('error').sum())} errors)"
    if "config" in rows:
        n = int(rows["config"].nunique())
        text += f", {n} configuration{'s' if n != 1 else ''}"
    return text


def _definitions(doc: _Doc, rate: str, qualities: Sequence[str], n_boot: int, seed: int,
                 sens_defs: Sequence[str]) -> None:
    items = [
        ("fidelity", "share of images whose top-1 class from the decoded features equals the uncompressed "
                     "network's top-1 class (Chen et al.); 1 = no decision changed. 0 or 1 per image: noisy."),
    ]
    if "kl_db" in qualities:
        items.append(("output KL", "kl_db = −10·log10(mean over images of KL(p‖q), nats), p = softmax of the "
                      "uncompressed network, q = softmax from the decoded features. Higher = closer; +10 dB = 10× "
                      "smaller KL. Continuous: far less noisy than fidelity."))
    if "top1" in qualities or "top5" in qualities:
        items.append(("top-1 / top-5", "accuracy against the dataset labels with the decoded features."))
    items += [
        ("bpfe", "bits per feature element: 8 × every byte of the .vcfc file (video and side information) ÷ "
                 "feature elements (C·H·W) at the split layer."),
        ("bpp", f"the same bits ÷ pixels of the network input. The page shows {rate}; `bd.csv` and "
                f"`points.csv` have every rate axis."),
        ("bytes", "bytes per image: the whole .vcfc file (for the `input` layer, the coded picture of the network "
                  "input). The axis on which split points, and features against the image, compare."),
        ("QP", "codec quantisation parameter (higher = coarser, fewer bits); points are labelled with the base QP, "
               "around which per-channel allocations set each channel's QP."),
        ("BD-rate", "Bjøntegaard delta rate: mean rate difference (%) against the anchor at equal quality over "
                    "the quality range both curves cover (PCHIP on log-rate, bjontegaard package; curves first "
                    "reduced to points that increase in rate and quality). Negative = fewer bits."),
        ("[low, high], n", f"{CI_PERCENT} % bootstrap confidence interval of the BD-rate: images drawn with "
                           f"replacement {n_boot} times (the same draw for a configuration and its anchor), curves "
                           f"and BD-rate recomputed, 2.5–97.5 percentiles (seed {seed}); n = images in both. "
                           f"Verdicts only when the interval excludes 0."),
        ("error bars", f"{CI_PERCENT} % confidence interval of the mean over the n images (percentile bootstrap, "
                       f"{n_boot} resamples)."),
    ]
    for d in sens_defs:
        items.append(("sensitivity", d))
    doc.definitions(items)


def _verdict(row: Mapping[str, Any], label: str, anchor_label: str) -> str:
    q = QUALITY_NAMES.get(str(row["quality"]), str(row["quality"]))
    if not np.isfinite(row["bd_rate"]):
        return f"not computable: {row['reason'] or 'no value'}"
    lo, hi = row["bd_rate_ci_low"], row["bd_rate_ci_high"]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"no interval, no verdict: {row['reason'] or 'no interval'}"
    if hi < 0:
        return f"{label} needs fewer bits than {anchor_label} at equal {q}"
    if lo > 0:
        return f"{label} needs more bits than {anchor_label} at equal {q}"
    return "no significant difference (interval includes 0)"


def bd_text(row: Mapping[str, Any], with_n: bool = True) -> str:
    """``−8.6 % [−14.2, −2.9], n = 230``: a BD-rate never goes without its interval and n."""
    n = f", n = {int(row['n_images'])}" if with_n else ""
    if not np.isfinite(row["bd_rate"]):
        return f"—{n}"
    lo, hi = row["bd_rate_ci_low"], row["bd_rate_ci_high"]
    ci = f"[{_num(lo)}, {_num(hi)}]" if np.isfinite(lo) and np.isfinite(hi) else "[no interval]"
    return f"{_num(row['bd_rate'], signed=True)} % {ci}{n}"


def _bd_section(doc: _Doc, rows: pd.DataFrame, anchor: str, rate: str, rate_axes: Sequence[str], method: str,
                min_overlap: float | None, n_boot: int, seed: int, labels: Mapping[str, str]) -> pd.DataFrame:
    doc.heading("BD-rate against the anchor")
    kw = {} if min_overlap is None else {"min_overlap": min_overlap}
    try:
        bd = aggregate.bd_table(rows, anchor=anchor, rate=list(rate_axes), method=method, n_boot=n_boot,
                                seed=seed, **kw)
    except InputError as exc:
        doc.banner(f"No BD-rates: {exc}. Choose the anchor with --anchor / write_report(anchor=…).", warn=True)
        pd.DataFrame(columns=list(aggregate.BD_COLUMNS)).to_csv(doc.out_dir / "bd.csv", index=False)
        return pd.DataFrame(columns=list(aggregate.BD_COLUMNS))
    shown = bd[bd["rate"] == rate] if len(bd) else bd
    anchors = sorted({str(a) for a in shown["anchor"].dropna()}) if len(shown) else []
    split = aggregate.layer_anchor(anchor)
    if anchor in labels:
        how = f"every configuration against configuration {labels.get(anchor, anchor)}"
    elif split is not None:
        how = (f"every configuration against '{split[1]}' at layer '{split[0]}' of the same model and codec "
               f"(split points compared on the bytes of their files)")
    else:
        how = (f"every configuration against the '{anchor}' allocation of its family (same model, layer, codec, "
               f"preset, quantiser, bits and layout)")
    doc.para(f"BD-rate on {rate} ({method}) of {how}, with its {CI_PERCENT} % bootstrap interval and the number "
             f"of images n; negative = fewer bits at equal quality."
             + (f" Anchor curve{'s' if len(anchors) > 1 else ''}: {', '.join(labels.get(a, a) for a in anchors)}."
                if anchors else " No anchor curve in this run."))
    if shown.empty:
        doc.para("No configuration to compare (a single configuration, or none with results).")
        bd.to_csv(doc.out_dir / "bd.csv", index=False)
        return bd
    view = pd.DataFrame({
        "configuration": [labels.get(str(c), str(c)) for c in shown["config"]],
        "allocation": shown["allocation"].astype(str) if "allocation" in shown else "",
        "quality": [QUALITY_NAMES.get(str(q), str(q)) for q in shown["quality"]],
        f"BD-rate [{CI_PERCENT} % CI]": [bd_text(r, with_n=False) for r in shown.to_dict("records")],
        "n": shown["n_images"].astype(int).to_numpy(),
        "verdict": [_verdict(r, labels.get(str(r["config"]), str(r["config"])),
                             labels.get(str(r["anchor"]), str(r["anchor"])) if pd.notna(r["anchor"]) else "—")
                    for r in shown.to_dict("records")],
    })
    if "allocation" in shown and (view["allocation"] == view["configuration"]).all():
        view = view.drop(columns="allocation")
    doc.table(view, "bd.csv", full=bd, text_cols=("configuration", "allocation", "quality", "verdict"))
    return bd


def _families(rows: pd.DataFrame) -> list[tuple[dict[str, str], pd.DataFrame]]:
    """One chart per (model, layer): codecs, presets and allocations of one split side by side."""
    fam = [c for c in ("model", "layer") if c in rows]
    if not fam:
        return [({}, rows)]
    out = []
    for key, d in rows.groupby(fam, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        out.append(({c: _fmt(v) for c, v in zip(fam, key)}, d))
    return out


def _curves_section(doc: _Doc, rows: pd.DataFrame, pts: pd.DataFrame, rate: str, qualities: Sequence[str],
                    extras: Mapping[str, Any]) -> None:
    doc.heading("Rate–quality curves")
    good = rows[rows["config"].notna()] if "config" in rows else rows
    for key, fam_rows in _families(good):
        ids = _values(_ok_rows(fam_rows), "config")
        fp = pts[pts["config"].astype(str).isin(ids)]
        labels, common = plots.short_labels(ids)
        ctx = _context(fam_rows, extras)
        where = " · ".join(key.values()) if key else "all configurations"
        for q in qualities:
            if q not in CURVE_QUALITIES or q not in fp or not fp[q].notna().any():
                continue
            fig = plots.plot_rate_quality(fp, rate=aggregate.point_column(rate), quality=q, labels=labels,
                                          title=f"{where}: {QUALITY_NAMES[q]} vs {rate}")
            common_txt = f" Every curve is {common}/…; the legend names the rest." if common else ""
            n_q = _images_with(_ok_rows(fam_rows), q)
            labelled = n_q is not None and n_q < ctx["n"]
            cap = _context_caption({**ctx, "n": n_q} if labelled else ctx)
            if labelled:
                cap = cap.replace(" images", f" labelled images (of {ctx['n']})", 1)
            doc.figure(fig, f"{q}_{where}", f"{QUALITY_NAMES[q]} vs {rate}, {where}. {cap}."
                                            f"{common_txt} Error bars: {CI_PERCENT} % CI of the mean over "
                                            f"images; point labels: base QP.")


def _layers(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Layers with results, per model."""
    ok = _ok_rows(rows)
    if not {"model", "layer"} <= set(ok.columns):
        return {}
    return {str(m): sorted({str(x) for x in d["layer"].dropna()}) for m, d in ok.groupby("model")}


def _image_anchor_section(doc: _Doc, rows: pd.DataFrame, method: str, min_overlap: float | None, n_boot: int,
                          seed: int) -> None:
    """When a run coded the network input (layer `input`) beside features: every split point
    against coding the image, on bytes per image (bd_vs_image.csv)."""
    layers = _layers(rows)
    if not any(INPUT in ls and len(ls) > 1 for ls in layers.values()):
        return
    doc.heading("Sending features or the image (remote inference)")
    bd = aggregate.bd_vs_image(rows, method=method, min_overlap=min_overlap, n_boot=n_boot, seed=seed)
    ok = _ok_rows(rows)
    image = ok[ok["layer"].astype(str) == INPUT]
    coded = ", ".join(f"{c} {p}" for c, p in image[["codec", "preset"]].drop_duplicates().itertuples(index=False))
    doc.para(f"BD-rate on bytes per image of every split point against coding the network input itself (layer "
             f"`input`: the picture the network sees, coded with {coded or 'the same codec'} as one picture, see "
             f"`vcfc info`) — what sending features costs next to sending the image and running the whole network "
             f"on the server. Negative = the features need fewer bytes at equal quality. Anchors: the image with "
             f"one QP for all images (`input:uniform`) and with per-image rate control (`input:rdo-uniform`), where run.")
    if bd.empty:
        doc.para("No comparison: the split points and the image share no quality range.")
        bd.to_csv(doc.out_dir / "bd_vs_image.csv", index=False)
        return
    shown = bd[bd["layer"].astype(str) != INPUT]
    view = pd.DataFrame({
        "split point": [f"{r['layer']} · {r['allocation']}" for r in shown.to_dict("records")],
        "against": [str(a).split("/")[-1] for a in shown["anchor"]],
        "quality": [QUALITY_NAMES.get(str(q), str(q)) for q in shown["quality"]],
        f"BD-rate vs image [{CI_PERCENT} % CI]": [bd_text(r, with_n=False) for r in shown.to_dict("records")],
        "n": shown["n_images"].astype(int).to_numpy(),
        "verdict": [_verdict(r, f"{r['layer']} {r['allocation']}", "the image") for r in shown.to_dict("records")],
    })
    doc.table(view, "bd_vs_image.csv", full=bd, text_cols=("split point", "against", "quality", "verdict"))


def _split_points_section(doc: _Doc, rows: pd.DataFrame, pts: pd.DataFrame, qualities: Sequence[str],
                          extras: Mapping[str, Any]) -> None:
    """Per model with several layers: every (layer, allocation) on one axis, bytes per image."""
    layers = _layers(rows)
    if not any(len(ls) > 1 for ls in layers.values()) or "bytes_per_image" not in pts:
        return
    doc.heading("Split points on one axis: bytes per image")
    for model, ls in layers.items():
        if len(ls) < 2:
            continue
        ok = _ok_rows(rows)
        fam = ok[ok["model"].astype(str) == model]
        info = fam.drop_duplicates("config")
        labels = {str(c): f"{lay} · {a}" for c, lay, a in zip(info["config"], info["layer"], info["allocation"])}
        if len(set(labels.values())) < len(labels):  # several codecs or codings per layer: name them too
            labels = plots.short_labels(list(labels))[0]
        fp = pts[pts["config"].astype(str).isin(labels)]
        ctx = _context(fam, extras)
        for q in qualities:
            if q not in ("fidelity", "kl_db") or q not in fp or not fp[q].notna().any():
                continue
            fig = plots.plot_rate_quality(fp, rate="bytes_per_image", quality=q, labels=labels,
                                          title=f"{model}: {QUALITY_NAMES[q]} vs bytes per image, every split point")
            doc.figure(fig, f"splits_{q}_{model}", f"{QUALITY_NAMES[q]} vs bytes per image of {model} at "
                       f"{', '.join(ls)} (input = the coded network input). {_context_caption(ctx)}. Error bars: "
                       f"{CI_PERCENT} % CI of the mean over images; point labels: base QP.", wide=True)


def _points_section(doc: _Doc, pts: pd.DataFrame, rate: str, qualities: Sequence[str],
                    labels: Mapping[str, str]) -> None:
    doc.heading("Rate–quality points")
    d = pts[pts["n"] > 0] if "n" in pts else pts
    n = d["images"] if "images" in d else d["n"]
    view = pd.DataFrame({"configuration": [labels.get(str(c), str(c)) for c in d["config"]],
                         "QP": d["qp"].to_numpy(), "n": n.astype(int).to_numpy()})
    col = aggregate.point_column(rate)
    view[rate] = [_num(v, ".4g") for v in d[col]] if col in d else "—"
    for q in qualities:
        if q in d and q in CURVE_QUALITIES:
            fmt = ".1f" if q == "kl_db" else ".3f"
            lows, highs = d.get(f"{q}_ci_low", d[q] * np.nan), d.get(f"{q}_ci_high", d[q] * np.nan)
            name = f"{QUALITY_NAMES[q]}{' (dB)' if q == 'kl_db' else ''} [{CI_PERCENT} % CI]"
            view[name] = [f"{_num(v, fmt)} [{_num(lo, fmt)}, {_num(hi, fmt)}]" for v, lo, hi in zip(d[q], lows, highs)]
    accuracy = [QUALITY_NAMES[q] for q in qualities if q in d and q in CURVE_QUALITIES and q.startswith("top")]
    note = f" {' and '.join(accuracy).capitalize()}: over the labelled images among them only." if accuracy else ""
    doc.para(f"Means over the images of each point (n = images with a result), on {rate}; the chart data.{note}",
             cls="note")
    doc.table(view, "points.csv", full=pts)


def _timings_section(doc: _Doc, rows: pd.DataFrame, labels: Mapping[str, str]) -> None:
    t = aggregate.timings(rows)
    if t.empty:  # no timing columns: nothing to show
        pd.DataFrame(columns=["config", "total_s"]).to_csv(doc.out_dir / "timings.csv", index=False)
        return
    doc.heading("Stage timings (s per image)")

    def col(*names: str) -> pd.Series:
        have = [c for c in names if c in t]
        return t[have].sum(axis=1, min_count=1) if have else pd.Series(np.nan, index=t.index)

    view = pd.DataFrame({"configuration": [labels.get(str(c), str(c)) for c in t["config"]],
                         "network (head + tail)": col("head_s", "tail_s"),
                         "quantise + pack": col("quant_s", "pack_s"), "encode": col("encode_s"),
                         "decode": col("decode_s"), "allocate": col("alloc_s"), "total": t["total_s"],
                         "coding ÷ uniform's": col("x_uniform")})
    doc.table(view.round(4), "timings.csv", full=t)
    doc.para("Seconds per image, averaged over every image and QP. Coding = quantise, pack, encode, decode "
             "and allocate (the QP search of a per-image method included); the last column divides it by "
             "the uniform-QP configuration's of the same model, layer, codec and layout. With layout frames "
             "the configurations of one image share its coded pictures (one frame bank), so a method is "
             "charged only the pictures no configuration before it coded: a lower bound of what it costs "
             "alone (`make bench-perimage` times methods alone).", cls="note")


def _errors_section(doc: _Doc, rows: pd.DataFrame, labels: Mapping[str, str]) -> None:
    e = aggregate.errors(rows)
    doc.heading("Errors")
    if e.empty:
        e.to_csv(doc.out_dir / "errors.csv", index=False)
        doc.para("None: every row succeeded.")
        return
    view = e.copy()
    if "config" in view:
        view["config"] = [labels.get(str(c), _fmt(c)) for c in view["config"]]
        view = view.rename(columns={"config": "configuration"})
    doc.table(view, "errors.csv", full=e, text_cols=("error",))


def _manifest_section(doc: _Doc, manifest: Mapping[str, Any]) -> None:
    doc.heading("Run")
    sw = dict(manifest.get("software", {}))
    flat = {"started": manifest.get("started"), "ended": manifest.get("ended"),
            "git commit": (manifest.get("git") or {}).get("commit"), **sw,
            **{f"machine {k}": v for k, v in (manifest.get("machine") or {}).items() if k != "argv"}}
    doc.table(pd.DataFrame({"what": list(flat), "value": [_fmt(v) for v in flat.values()]}), text_cols=("value",))
    if "experiment" in manifest:
        doc.pre(json.dumps(manifest["experiment"], indent=2, sort_keys=True, default=str))


def _qp_map_items(qp_maps: Mapping[str, Any]) -> list[tuple[str, np.ndarray, float | None, str | None, str]]:
    out = []
    for name, m in qp_maps.items():
        if isinstance(m, Mapping):
            base = m.get("base_qp")
            out.append((str(name), np.asarray(m.get("qps", []), dtype=float), None if base is None else float(base),
                        m.get("method"), str(m.get("note") or "")))
        else:  # plain per-channel QPs
            out.append((str(name), np.asarray(m, dtype=float), None, None, ""))
    return out


def _sensitivity_items(sens: Any) -> list[tuple[str, pd.DataFrame, str]]:
    if sens is None:
        return []
    if isinstance(sens, pd.DataFrame):
        sens = {"sensitivity": sens}
    out = []
    for name, s in sens.items():
        if isinstance(s, Mapping):
            out.append((str(name), s["table"], str(s.get("definition") or "")))
        else:
            out.append((str(name), s, ""))
    return out


def _extras_section(doc: _Doc, extras: Mapping[str, Any], ctx_caption: str) -> None:
    qp_maps = _qp_map_items(extras.get("qp_maps") or {})
    sens = _sensitivity_items(extras.get("sensitivity"))
    mosaics = extras.get("mosaics") or {}
    if qp_maps:
        doc.heading("Per-channel QP maps")
        for name, qps, base, method, note in qp_maps:
            what = f"{method} allocation" if method else "allocation"
            at = f" at base QP {base:g}" if base is not None else ""
            title = f"Per-channel QP: {name}"
            note = (note[:1].upper() + note[1:]).rstrip(".")
            cap = (f"{note + '. ' if note else ''}QP of each of the {qps.size} feature channels, {what}{at}; "
                   f"{'dashed red line: the base QP; ' if base is not None else ''}dotted: the mean channel QP. "
                   f"Lower QP = finer quantisation = more bits for that channel"
                   f"{'; ×: channels not coded (skipped, filled with their mean)' if (qps == SKIP).any() else ''}. "
                   f"{ctx_caption}.")
            doc.figure(plots.plot_qp_map(qps, base_qp=base, title=title, method=method), f"qpmap_{name}", cap,
                       wide=True)
    if sens:
        doc.heading("Channel sensitivity")
        for name, df, definition in sens:
            kw = {k: extras[k] for k in ("sensitivity_channel", "sensitivity_value") if k in extras}
            ch, val = kw.get("sensitivity_channel", "channel"), kw.get("sensitivity_value", "sensitivity")
            fig = plots.plot_sensitivity(df, channel=ch, value=val, title=f"Channel sensitivity, {name}")
            what = definition[:1].upper() + definition[1:] if definition else f"Per-channel sensitivity of {name}"
            cap = (f"{what.rstrip('.')}. Higher = the task output moves more when that channel is coded coarsely. "
                   f"{ctx_caption}.")
            doc.figure(fig, f"sensitivity_{name}", cap, wide=True)
    if mosaics:
        doc.heading("Sample frames")
        for name, m in mosaics.items():
            caption = ""
            if isinstance(m, Mapping):
                frame, bits, caption = m.get("frame"), m.get("bits"), str(m.get("caption") or "")
            elif isinstance(m, tuple):
                frame, bits = m
            else:
                frame, bits = m, None
            cap = f"{caption + '. ' if caption else ''}{ctx_caption}."
            doc.figure(plots.plot_mosaic(frame, bits=bits, title=str(name)), f"mosaic_{name}", cap, wide=True)
    known = {"title", "manifest", "notes", "qp_maps", "sensitivity", "mosaics", "sensitivity_channel",
             "sensitivity_value", "weights_random"}
    other = {k: v for k, v in extras.items() if k not in known}
    if other:
        doc.heading("Other")
        doc.pre(json.dumps(other, indent=2, sort_keys=True, default=str))


def write_report(rows: pd.DataFrame, out_dir: str | Path, anchor: str = "uniform",
                 extras: Mapping[str, Any] | None = None, *, rate: str = "bpfe", method: str = "pchip",
                 min_overlap: float | None = None, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED) -> Path:
    """Write the report of a rows table to ``out_dir``; returns the path of ``report.html``.

    ``anchor``: allocation name (each config vs that allocation in its family) or a config id;
    one that is neither gives a report that says so (``aggregate.bd_table`` raises InputError).
    ``rate``: the rate axis of the page (the CSVs have every rate axis). ``n_boot``/``seed``: the
    bootstrap of the confidence intervals. ``extras`` (all optional):

    - ``title``, ``notes`` (text), ``manifest`` (the run's manifest.json dict),
    - ``weights_random`` (True: the loud banner, as for rows with ``weights == "none"``),
    - ``qp_maps`` ``{label: {"qps": [int…], "base_qp": int, "method": str, "note": str}}``
      (or ``{label: [int…]}``),
    - ``sensitivity`` ``{label: {"table": DataFrame(channel, sensitivity), "definition": str}}``
      (or a DataFrame, or ``{label: DataFrame}``),
    - ``mosaics`` ``{label: {"frame": 2-D uint16 array, "bits": int, "caption": str}}``
      (or ``{label: frame}`` / ``{label: (frame, bits)}``);

    other keys are listed as JSON.
    """
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    extras = dict(extras or {})
    title = str(extras.get("title", "vcfc experiment report"))
    doc = _Doc(out_dir)
    doc.heading(title, 1)
    if _weights_random(rows, extras):
        doc.banner(RANDOM_WEIGHTS)
    usable = {"config", "qp"} <= set(rows.columns) and len(_ok_rows(rows)) > 0
    if not usable:
        n_err = int(rows["status"].eq("error").sum()) if "status" in rows else 0
        lack = [c for c in ("config", "qp") if c not in rows]
        if len(rows) == 0:
            why = "the run has no rows"
        elif len(_ok_rows(rows)) and lack:
            why = f"the rows have no {'/'.join(lack)} column"
        else:
            why = f"every one of the {len(rows)} rows failed ({n_err} error rows)"
        doc.banner(f"No results: {why}, so there are no rate–quality points, curves or BD-rates. "
                   f"{'The errors are listed below.' if n_err else ''}")
    ctx = _context(rows, extras)
    qps = sorted({int(q) for q in pd.to_numeric(rows.get("qp", pd.Series(dtype=float)), errors="coerce").dropna()})
    doc.para(f"{' · '.join(filter(None, [_join(ctx['model'], ''), _join(ctx['layer'], '')]))}"
             f"{' — ' if ctx['model'] or ctx['layer'] else ''}{_context_caption(ctx)}; QPs "
             f"{', '.join(map(str, qps)) or 'none'}; anchor '{anchor}'. {_summary(rows)}. Generated "
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}.")
    if extras.get("notes"):
        doc.pre(str(extras["notes"]))

    pts = aggregate.points(rows, n_boot=n_boot, seed=seed) if usable else pd.DataFrame()
    qualities = aggregate.quality_columns(_ok_rows(rows)) if usable else []
    sens_defs = [f"{name}: {d}" if len(_sensitivity_items(extras.get("sensitivity"))) > 1 else d
                 for name, _, d in _sensitivity_items(extras.get("sensitivity")) if d]
    if usable:
        doc.heading("Definitions")
        _definitions(doc, rate, qualities, n_boot, seed, sens_defs)

    ids = _values(_ok_rows(rows) if usable else rows, "config")
    labels = plots.short_labels(ids)[0] if ids else {}
    if usable:
        rate_axes = [r for r in dict.fromkeys([rate, *aggregate.RATES])
                     if aggregate.point_column(r) in pts and pts[aggregate.point_column(r)].notna().any()]
        if rate not in rate_axes:
            doc.banner(f"The rows have no rate column {rate!r}: no BD-rates or curves.", warn=True)
        else:
            _bd_section(doc, rows, anchor, rate, rate_axes, method, min_overlap, n_boot, seed, labels)
            _image_anchor_section(doc, rows, method, min_overlap, n_boot, seed)
            _curves_section(doc, rows, pts, rate, qualities, extras)
            _split_points_section(doc, rows, pts, qualities, extras)
        _points_section(doc, pts, rate if rate in rate_axes else (rate_axes or ["bpfe"])[0], qualities, labels)
        _timings_section(doc, rows, labels)
    else:  # the files exist in every case, for scripts that read them
        pd.DataFrame(columns=list(aggregate.BD_COLUMNS)).to_csv(out_dir / "bd.csv", index=False)
        pd.DataFrame(columns=["config", "qp", "n", "images", "errors"]).to_csv(out_dir / "points.csv", index=False)
        pd.DataFrame(columns=["config", "total_s"]).to_csv(out_dir / "timings.csv", index=False)
    _errors_section(doc, rows, labels)
    _extras_section(doc, extras, "Run: " + _context_caption(ctx).replace(" images", " evaluation images", 1))
    if extras.get("manifest"):
        _manifest_section(doc, extras["manifest"])

    (out_dir / "report.md").write_text("\n".join(doc.md), encoding="utf-8")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(doc.html)}</body></html>")
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
