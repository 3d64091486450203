"""Experiment report: Markdown + one self-contained HTML file + CSVs + plots from the rows table.

``write_report(rows, out_dir)`` writes::

    out_dir/report.html      self-contained: tables inline, figures as base64 PNG, no JS/links
    out_dir/report.md        same content, figures linked from plots/
    out_dir/points.csv       per (config, qp) means and counts
    out_dir/bd.csv           BD-rate / BD-quality of each config vs its anchor, per rate axis
    out_dir/timings.csv, errors.csv
    out_dir/plots/*.png|svg
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import aggregate, plots

_CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:12px;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:2px 6px;
text-align:right}th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%}
figure{display:inline-block;margin:.5em}figcaption{font-size:12px;color:#555}pre{background:#f7f7f7;padding:.5em;
overflow-x:auto;font-size:12px}.nan{color:#999}"""


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return "—"
    if isinstance(v, (float, np.floating)):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(none)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


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

    def para(self, text: str) -> None:
        self.md.append(text + "\n")
        self.html.append(f"<p>{html.escape(text)}</p>")

    def pre(self, text: str) -> None:
        self.md.append("```\n" + text + "\n```\n")
        self.html.append(f"<pre>{html.escape(text)}</pre>")

    def table(self, df: pd.DataFrame, csv_name: str | None = None) -> None:
        if csv_name:
            df.to_csv(self.out_dir / csv_name, index=False)
            self.md.append(f"(`{csv_name}`)\n")
        self.md.append(_md_table(df))
        self.html.append(_html_table(df))

    def figure(self, fig: Any, name: str, caption: str) -> None:
        self.n_figs += 1
        stem = self.out_dir / "plots" / f"{self.n_figs:02d}_{_slug(name)}"
        plots.save(fig, stem)
        self.md.append(f"![{caption}](plots/{stem.name}.png)\n")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,'
                         f'{plots.png_base64(fig)}"><figcaption>{html.escape(caption)}</figcaption></figure>')
        plots.close(fig)


def _families(pts: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One chart per (model, layer): codecs, presets and allocations of one split side by side."""
    fam = [c for c in ("model", "layer") if c in pts]
    if not fam:
        return [("all", pts)]
    out = []
    for key, d in pts.groupby(fam, dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        out.append((", ".join(f"{c}={_fmt(v)}" for c, v in zip(fam, key)), d))
    return out


def _summary(rows: pd.DataFrame) -> pd.DataFrame:
    status = rows["status"] if "status" in rows else pd.Series("ok", index=rows.index)
    items = {"rows": len(rows), "ok rows": int(status.eq("ok").sum()), "error rows": int(status.eq("error").sum())}
    for col, name in (("image_id", "images"), ("config", "configs"), ("qp", "QPs")):
        if col in rows:
            items[name] = int(rows[col].nunique())
    return pd.DataFrame({"what": list(items), "value": list(items.values())})


def _manifest_section(doc: _Doc, manifest: Mapping[str, Any]) -> None:
    doc.heading("Run")
    sw = dict(manifest.get("software", {}))
    flat = {"started": manifest.get("started"), "ended": manifest.get("ended"),
            "git commit": (manifest.get("git") or {}).get("commit"), **sw,
            **{f"machine {k}": v for k, v in (manifest.get("machine") or {}).items() if k != "argv"}}
    doc.table(pd.DataFrame({"what": list(flat), "value": [_fmt(v) for v in flat.values()]}))
    if "experiment" in manifest:
        doc.pre(json.dumps(manifest["experiment"], indent=2, sort_keys=True, default=str))


def _extras_section(doc: _Doc, extras: Mapping[str, Any]) -> None:
    qp_maps = extras.get("qp_maps") or {}
    sens = extras.get("sensitivity")
    mosaics = extras.get("mosaics") or {}
    if isinstance(sens, pd.DataFrame):
        sens = {"sensitivity": sens}
    if qp_maps:
        doc.heading("Per-channel QP maps")
        for name, qps in qp_maps.items():
            doc.figure(plots.plot_qp_map(qps, title=f"QP map: {name}"), f"qpmap_{name}", f"per-channel QP, {name}")
    if sens:
        doc.heading("Channel sensitivity")
        for name, df in sens.items():
            kw = {k: extras[k] for k in ("sensitivity_channel", "sensitivity_value") if k in extras}
            fig = plots.plot_sensitivity(df, channel=kw.get("sensitivity_channel", "channel"),
                                         value=kw.get("sensitivity_value", "sensitivity"), title=str(name))
            doc.figure(fig, f"sensitivity_{name}", f"sensitivity profile, {name}")
    if mosaics:
        doc.heading("Sample frames")
        for name, m in mosaics.items():
            frame, bits = (m if isinstance(m, tuple) else (m, None))
            doc.figure(plots.plot_mosaic(frame, bits=bits, title=str(name)), f"mosaic_{name}", f"coded frame, {name}")
    known = {"title", "manifest", "notes", "qp_maps", "sensitivity", "mosaics", "sensitivity_channel",
             "sensitivity_value"}
    other = {k: v for k, v in extras.items() if k not in known}
    if other:
        doc.heading("Other")
        doc.pre(json.dumps(other, indent=2, sort_keys=True, default=str))


def write_report(rows: pd.DataFrame, out_dir: str | Path, anchor: str = "uniform",
                 extras: Mapping[str, Any] | None = None, *, rate: str = "bpfe", method: str = "pchip",
                 min_overlap: float | None = None) -> Path:
    """Write the report of a rows table to ``out_dir``; returns the path of ``report.html``.

    ``anchor``: allocation name (each config vs that allocation in its family) or a config id.
    ``extras`` (all optional): ``title``, ``notes`` (text), ``manifest`` (manifest.json dict),
    ``qp_maps`` {name: per-channel QPs}, ``sensitivity`` (DataFrame with channel/sensitivity
    columns, or {name: DataFrame}), ``mosaics`` {name: 2-D uint16 frame or (frame, bits)};
    other keys are listed as JSON.
    """
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    extras = dict(extras or {})
    title = str(extras.get("title", "vcfc experiment report"))
    doc = _Doc(out_dir)
    doc.heading(title, 1)
    doc.para(f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}; BD method {method}, "
             f"anchor {anchor!r}. BD-rate < 0: fewer bits than the anchor at equal quality.")
    if extras.get("notes"):
        doc.pre(str(extras["notes"]))
    doc.heading("Summary")
    doc.table(_summary(rows))

    pts = aggregate.points(rows) if {"config", "qp"} <= set(rows.columns) else pd.DataFrame()
    kw = {} if min_overlap is None else {"min_overlap": min_overlap}
    rate_axes = [r for r in dict.fromkeys([rate, *aggregate.RATES]) if r in pts and pts[r].notna().any()]
    bd_frames = []
    for r in rate_axes:
        try:
            bd_frames.append(aggregate.bd_table(pts, anchor=anchor, rate=r, method=method, **kw))
        except ValueError as exc:  # e.g. no anchor at all: report it, keep the rest
            doc.para(f"BD table for {r}: {exc}")
    bd = pd.concat(bd_frames, ignore_index=True) if bd_frames else pd.DataFrame()
    doc.heading("BD-rate vs anchor")
    doc.table(bd, "bd.csv")

    qualities = [q for q in aggregate.QUALITIES if q in pts and pts[q].notna().any()]
    if len(pts) and rate in pts:
        doc.heading("Curves")
        for label, fam in _families(pts):
            for q in qualities:
                fig = plots.plot_rate_quality(fam, rate=rate, quality=q, title=f"{q} — {label}")
                doc.figure(fig, f"{q}_{label}", f"{q} vs {rate}, {label}")

    doc.heading("Rate–quality points")
    doc.table(pts, "points.csv")
    t = aggregate.timings(rows)
    doc.heading("Stage timings (s per image)")
    doc.table(t, "timings.csv")
    e = aggregate.errors(rows)
    doc.heading("Errors")
    doc.table(e, "errors.csv")

    if extras.get("manifest"):
        _manifest_section(doc, extras["manifest"])
    _extras_section(doc, extras)

    (out_dir / "report.md").write_text("\n".join(doc.md), encoding="utf-8")
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head><body>{''.join(doc.html)}</body></html>")
    path = out_dir / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
