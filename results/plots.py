"""Figures for reports (matplotlib, Agg backend: no display needed).

Every ``plot_*`` returns a Figure; ``save(fig, stem)`` writes ``stem.png`` and ``stem.svg``
(text kept as text in the SVG, for papers) and ``png_base64(fig)`` gives the bytes to embed.
"""

from __future__ import annotations

import base64
import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # before pyplot: headless workers and CI have no display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vcfc.coding import SKIP
from vcfc.picture import INPUT_LAYER

LABELS = {"bpfe": "bits per feature element (bpfe)", "bpp": "bits per input pixel (bpp)",
          "fidelity": "fidelity (top-1 agreement)", "kl_db": "output KL (dB, higher = closer)",
          "top1": "top-1 accuracy", "top5": "top-5 accuracy", "bytes_per_image": "bytes per image"}
_MARKERS = "osD^v<>pPX*h"


def _label(col: str) -> str:
    return LABELS.get(col, col)


def _wrap(text: str, width: int = 70) -> str:
    return "\n".join(textwrap.wrap(text, width)) if text else text


def short_labels(ids: Sequence[str], sep: str = "/") -> tuple[dict[str, str], str]:
    """Labels made of only the parts of ``ids`` that vary, and the part common to all of them.

    ``["m/l/x265/fast/uniform", "m/l/x265/fast/perimage"]`` -> ``({…: "uniform", …: "perimage"},
    "m/l/x265/fast")``. Ids split on ``sep``; ids of unequal length keep the parts that are not in
    every id. A single id keeps its last part.
    """
    ids = [str(i) for i in dict.fromkeys(ids)]
    if not ids:
        return {}, ""
    parts = [i.split(sep) for i in ids]
    if len({len(p) for p in parts}) == 1:
        varies = [len({p[k] for p in parts}) > 1 for k in range(len(parts[0]))]
        common = sep.join(t for t, v in zip(parts[0], varies) if not v)
        labels = {i: sep.join(t for t, v in zip(p, varies) if v) for i, p in zip(ids, parts)}
    else:
        shared = set.intersection(*(set(p) for p in parts))
        common = sep.join(t for t in parts[0] if t in shared)
        labels = {i: sep.join(t for t in p if t not in shared) for i, p in zip(ids, parts)}
    if len(ids) == 1:
        labels = {ids[0]: parts[0][-1]}
    labels = {i: (lab or i) for i, lab in labels.items()}
    if len(set(labels.values())) < len(labels):  # would merge two curves: keep the full ids
        return {i: i for i in ids}, ""
    return labels, common


def nice_log_ticks(lo: float, hi: float, min_ticks: int = 4) -> list[float]:
    """Tick values for a log axis from ``lo`` to ``hi`` (> 0): the sparsest 1-2-5-like set with at
    least ``min_ticks`` ticks in range, else evenly spaced ones; always some tick near each end."""
    if not (lo > 0 and hi > lo and math.isfinite(hi)):
        return []
    e0, e1 = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    ticks: list[float] = []
    for subs in ((1,), (1, 2, 5), (1, 1.5, 2, 3, 5, 7), (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 9)):
        ticks = sorted({float(f"{m * 10.0**e:.6g}") for e in range(e0, e1 + 1) for m in subs
                        if lo <= m * 10.0**e <= hi})
        if len(ticks) >= min_ticks:
            break
    if len(ticks) < 3:
        ticks = [float(f"{t:.6g}") for t in matplotlib.ticker.MaxNLocator(nbins=5).tick_values(lo, hi)
                 if lo <= t <= hi and t > 0]
    span = math.log10(hi / lo)

    def frac(v: float) -> float:
        return math.log10(v / lo) / span

    # a long stretch without a tick at either end: add one at 2 significant digits
    if ticks and frac(ticks[0]) > 0.18:
        t = float(f"{lo * 1.04:.2g}")
        t = t if t >= lo else float(f"{lo * 1.1:.2g}")
        if lo <= t < ticks[0] and frac(ticks[0]) - frac(t) > 0.1:
            ticks.insert(0, t)
    if ticks and frac(ticks[-1]) < 0.82:
        t = float(f"{hi / 1.04:.2g}")
        t = t if t <= hi else float(f"{hi / 1.1:.2g}")
        if ticks[-1] < t <= hi and frac(t) - frac(ticks[-1]) > 0.1:
            ticks.append(t)
    return ticks


def _log_axis(ax, axis: str = "x") -> None:
    """Log scale with plain-number ticks spread over the whole visible range."""
    getattr(ax, f"set_{axis}scale")("log")
    ax.autoscale_view()
    lo, hi = getattr(ax, f"get_{axis}lim")()
    a = getattr(ax, f"{axis}axis")
    ticks = nice_log_ticks(lo, hi)
    if ticks:
        a.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
        a.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(matplotlib.ticker.NullFormatter())
    getattr(ax, f"set_{axis}lim")(lo, hi)


def _place_labels(fig: Figure, ax, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str],
                  fontsize: float = 7.5, color: str = "#444", bars: Sequence[tuple[float, float, float]] = ()) -> int:
    """Annotate points with texts where they fit: next to their point, clear of every marker, of
    labels already placed, of the legend and of the axes' edges; a label with no room is left out.
    Returns how many were placed."""
    fig.canvas.draw()  # final layout, so display coordinates hold
    px = fig.dpi / 72.0
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    frame = ax.get_window_extent()
    obstacles = [(x - 3.5 * px, y - 3.5 * px, x + 3.5 * px, y + 3.5 * px) for x, y in pts if np.isfinite([x, y]).all()]
    for x, lo, hi in bars:  # error bars (x, low, high): thin vertical obstacles
        (bx, by0), (_, by1) = ax.transData.transform([(x, lo), (x, hi)])
        if np.isfinite([bx, by0, by1]).all():
            obstacles.append((bx - 2 * px, min(by0, by1), bx + 2 * px, max(by0, by1)))
    legend = ax.get_legend()
    if legend is not None:
        b = legend.get_window_extent()
        obstacles.append((b.x0, b.y0, b.x1, b.y1))

    def clear(box) -> bool:
        x0, y0, x1, y1 = box
        if x0 < frame.x0 + 1 or x1 > frame.x1 - 1 or y0 < frame.y0 + 1 or y1 > frame.y1 - 1:
            return False
        return all(x1 <= a0 or x0 >= a1 or y1 <= b0 or y0 >= b1 for a0, b0, a1, b1 in obstacles)

    placed = 0
    for (x, y), text in zip(pts, texts):
        if not np.isfinite([x, y]).all():
            continue
        w, h = 0.62 * fontsize * px * len(text), 1.15 * fontsize * px
        gap = 4 * px
        for dx, dy in ((gap, gap * 0.5), (gap, -gap * 0.5 - h), (-gap - w, gap * 0.5), (-gap - w, -gap * 0.5 - h),
                       (-w / 2, gap * 1.2), (-w / 2, -gap * 1.2 - h)):
            box = (x + dx, y + dy, x + dx + w, y + dy + h)
            if clear(box):
                obstacles.append(box)
                ann = ax.annotate(text, ax.transData.inverted().transform((x, y)), textcoords="offset points",
                                  xytext=(dx / px, dy / px), ha="left", va="bottom", fontsize=fontsize, color=color)
                ann.set_in_layout(False)
                placed += 1
                break
    return placed


def _qp_text(qp) -> str:
    return f"{qp:g}" if isinstance(qp, (int, float, np.integer, np.floating)) else str(qp)


def plot_rate_quality(pts: pd.DataFrame, rate: str = "bpfe", quality: str = "fidelity",
                      config: str = "config", title: str | None = None, logx: bool = True,
                      annotate_qp: bool = True, labels: Mapping[str, str] | None = None) -> Figure:
    """One curve per config: mean rate vs mean quality over the QP sweep.

    Error bars: ``<quality>_ci_low``/``_ci_high`` (the confidence interval of the mean; none if
    the columns are absent). ``labels`` maps config ids to legend labels (default: the parts of
    the ids that differ, ``short_labels``). Points are labelled with their QP where there is room.
    """
    fig, ax = plt.subplots(figsize=(5.6, 4.0), layout="constrained")
    data = (pts[(pts.get("n", 1) > 0) & pts[rate].notna() & np.isfinite(pts[quality].astype(float))]
            if quality in pts and rate in pts else pts.iloc[0:0])
    names = sorted({str(c) for c in data[config]}) if len(data) else []
    labels = dict(labels) if labels is not None else short_labels(names)[0]
    qp_points: list[tuple[float, float, str]] = []
    bars: list[tuple[float, float, float]] = []
    for i, name in enumerate(names):
        d = data[data[config].astype(str) == name].sort_values(rate)
        y = d[quality].to_numpy(dtype=float)
        lo, hi = d.get(f"{quality}_ci_low"), d.get(f"{quality}_ci_high")
        yerr = None
        if lo is not None and hi is not None and (lo.notna() | hi.notna()).any():
            yerr = np.vstack([np.nan_to_num(y - lo.to_numpy(dtype=float), nan=0.0, posinf=0.0).clip(0),
                              np.nan_to_num(hi.to_numpy(dtype=float) - y, nan=0.0, posinf=0.0).clip(0)])
            bars += [(x, yy - e0, yy + e1) for x, yy, e0, e1 in zip(d[rate], y, yerr[0], yerr[1])]
        ax.errorbar(d[rate], y, yerr=yerr, marker=_MARKERS[i % len(_MARKERS)], ms=4, lw=1.3, capsize=2,
                    elinewidth=0.8, label=labels.get(name, name))
        if annotate_qp and "qp" in d:
            qp_points += [(x, yy, _qp_text(q)) for x, yy, q in zip(d[rate], y, d["qp"]) if pd.notna(q)]
    if logx and len(data) and (data[rate] > 0).all():
        _log_axis(ax, "x")
    ax.set_xlabel(_label(rate))
    ax.set_ylabel(_label(quality))
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)
    if len(data):
        ax.legend(fontsize=8, loc="best", title="labels: QP", title_fontsize=7)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(_wrap(title or f"{_label(quality)} vs {_label(rate)}", 72), fontsize=10)
    if qp_points:
        xs, ys, texts = zip(*qp_points)
        _place_labels(fig, ax, xs, ys, texts, bars=bars)
    return fig


def plot_qp_map(qps: Sequence[int], base_qp: float | None = None, title: str | None = None,
                method: str | None = None) -> Figure:
    """Per-channel QPs: channel index -> QP as bars (steps for many channels), with the base QP
    drawn as a reference line (lower QP = finer quantisation = more bits for that channel)."""
    q = np.asarray(qps, dtype=float).ravel()
    skipped = q == SKIP  # not coded: no QP; marked above the bars
    q = np.where(skipped, np.nan, q)
    fig, ax = plt.subplots(figsize=(8.0, 3.0), layout="constrained")
    if skipped.all() and q.size:
        ax.text(0.5, 0.5, f"all {q.size} channels skipped (not coded)", ha="center", va="center", transform=ax.transAxes)
    elif q.size:
        ch = np.arange(q.size)
        what = f"channel QP ({method})" if method else "channel QP"
        if base_qp is not None:  # bars grow from the base QP: below = finer than uniform, above = coarser
            ax.bar(ch, q - base_qp, bottom=base_qp, width=1.0 if q.size > 128 else 0.85, color="tab:blue",
                   linewidth=0, label=what)
        else:
            ax.stairs(q, np.arange(q.size + 1) - 0.5, baseline=None, color="tab:blue", lw=1.2, label=what)
        ax.axhline(float(np.nanmean(q)), color="0.2", lw=1, ls=":", label=f"mean QP {np.nanmean(q):.1f}")
        if base_qp is not None:
            ax.axhline(float(base_qp), color="tab:red", lw=1.4, ls="--", label=f"base QP {base_qp:g}")
        lo = np.nanmin(q) if base_qp is None else min(np.nanmin(q), base_qp)
        hi = np.nanmax(q) if base_qp is None else max(np.nanmax(q), base_qp)
        ax.set_ylim(max(0, lo - 2), hi + (4 if skipped.any() else 2))
        if skipped.any():
            ch = np.flatnonzero(skipped)
            ax.plot(ch, np.full(ch.size, hi + 2.5), "x", color="0.35", ms=4 if q.size > 128 else 6,
                    label=f"skipped (not coded): {ch.size}")
        ax.set_xlim(-0.7, q.size - 0.3)
        ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no channels", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("channel")
    ax.set_ylabel("QP")
    ax.grid(True, axis="y", alpha=0.3)
    default = (f"per-channel QP ({q.size} channels, {np.nanmin(q):g}–{np.nanmax(q):g})"
               if q.size and not skipped.all() else "per-channel QP")
    ax.set_title(_wrap(title or default, 90), fontsize=10)
    return fig


def plot_sensitivity(df: pd.DataFrame, channel: str = "channel", value: str = "sensitivity",
                     top: int | None = None, title: str | None = None, ylabel: str | None = None) -> Figure:
    """Per-channel sensitivity as bars in channel order (all channels, or the ``top`` most
    sensitive ones, said in the title)."""
    d = df[[channel, value]].dropna()
    total = len(d)
    if top and top < total:
        d = d.sort_values(value, ascending=False).head(top)
    d = d.sort_values(channel)
    fig, ax = plt.subplots(figsize=(8.0, 3.0), layout="constrained")
    v = d[value].to_numpy(dtype=float)
    if len(d) <= 64:
        x = np.arange(len(d))
        ax.bar(x, v, width=0.85, color="tab:purple")
        step = max(1, len(d) // 16)
        ax.set_xticks(x[::step])
        ax.set_xticklabels([str(c) for c in d[channel].iloc[::step]])
        ax.set_xlim(-0.7, len(d) - 0.3)
    else:
        x = d[channel].to_numpy()
        ax.bar(x, v, width=1.0, color="tab:purple", linewidth=0)
        ax.set_xlim(x.min() - 1, x.max() + 1)
    if len(v) > 1 and (v > 0).all() and np.percentile(v, 90) / np.percentile(v, 10) > 100:
        ax.set_yscale("log")  # a profile spread over decades (one dead channel alone does not count)
    ax.set_xlabel(channel)
    ax.set_ylabel(ylabel or value)
    shown = f"top {len(d)} of {total} channels" if len(d) < total else f"all {total} channels"
    ax.set_title(_wrap(f"{title}: {shown}" if title else f"{value} per {channel}: {shown}", 90), fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def plot_mosaic(frame: np.ndarray, bits: int | None = None, title: str | None = None) -> Figure:
    """One coded frame (2-D integers, e.g. a channel mosaic) as a grayscale picture at its true range."""
    f = np.asarray(frame)
    if f.ndim != 2:
        raise ValueError(f"mosaic frame must be 2-D, got shape {f.shape}")
    vmax = (2**bits - 1) if bits else max(int(f.max()) if f.size else 1, 1)
    h, w = f.shape
    scale = 5.5 / max(h, w)
    fig, ax = plt.subplots(figsize=(max(2.5, w * scale), max(2.5, h * scale) + 0.4), layout="constrained")
    ax.imshow(f, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(_wrap(title or f"mosaic {h}×{w}" + (f", {bits}-bit" if bits else ""), 60), fontsize=10)
    return fig


def plot_split_points(points: pd.DataFrame, targets: Sequence[float], title: str | None = None) -> Figure:
    """Bytes per image at each target fidelity against the head's share of the network's FLOPs.

    ``points``: one row per (split point, method, target) with columns layer, allocation, target,
    flops_share, bytes, ci_low, ci_high, pareto. One panel per target; the image (layer input) is
    the zero-FLOP point; error bars: the interval; the Pareto front joined by a dashed line.
    """
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 4.0), layout="constrained",
                             sharex=True, sharey=True, squeeze=False)
    methods = sorted(points["allocation"].unique()) if len(points) else []
    for ax, t in zip(axes[0], targets):
        d = points[(points["target"] == t) & np.isfinite(points["bytes"].astype(float))]
        for i, m in enumerate(methods):
            dm = d[d["allocation"] == m]
            if dm.empty:
                continue
            x = 100 * dm["flops_share"].to_numpy(float)
            y = dm["bytes"].to_numpy(float)
            lo = np.nan_to_num(y - dm["ci_low"].to_numpy(float), nan=0.0).clip(0)
            hi = np.nan_to_num(dm["ci_high"].to_numpy(float) - y, nan=0.0).clip(0)
            ax.errorbar(x, y, yerr=[lo, hi], marker=_MARKERS[i % len(_MARKERS)], ls="none", ms=5, capsize=2,
                        elinewidth=0.8, label=m)
        for name, dl in d.groupby("layer"):  # one name per split point, beside its lowest point
            best = dl.loc[dl["bytes"].astype(float).idxmin()]
            text = f"image ({INPUT_LAYER})" if name == INPUT_LAYER else str(name)
            ax.annotate(text, (100 * best["flops_share"], best["bytes"]), textcoords="offset points",
                        xytext=(6, -10), fontsize=7.5)
        front = d[d["pareto"].astype(bool)].sort_values("flops_share")
        if len(front):
            ax.plot(100 * front["flops_share"], front["bytes"], ls="--", lw=0.9, color="0.4", marker="o", ms=11,
                    mfc="none", mec="0.2", label="Pareto front")
        if len(d) and (d["bytes"] > 0).all():
            _log_axis(ax, "y")
        if len(points) and not (d["layer"] == INPUT_LAYER).any() and (points["layer"] == INPUT_LAYER).any():
            ax.annotate("image: not reached", (0, 0.03), xycoords=("data", "axes fraction"), fontsize=7.5,
                        color="0.35", rotation=90, va="bottom", ha="center")
        ax.set_xlim(-3, 100 * max(1e-9, float(points["flops_share"].max())) + 6 if len(points) else 100)
        ax.set_xlabel("head FLOPs (% of the network)")
        ax.set_title(f"fidelity {t:g}", fontsize=10)
        ax.grid(True, alpha=0.3)
        if d.empty:
            ax.text(0.5, 0.5, "no split point reaches it", ha="center", va="center", transform=ax.transAxes)
    axes[0][0].set_ylabel("bytes per image")
    legend = {}
    for ax in axes[0]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(n, h)
    names, handles = list(legend), list(legend.values())
    if handles:
        fig.legend(handles, names, loc="outside lower center", ncol=len(names), fontsize=8)
    if title:
        fig.suptitle(_wrap(title, 110), fontsize=10)
    return fig


def save(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "svg"), dpi: int = 150) -> list[Path]:
    """Write ``stem.<fmt>`` for each format (the figure stays open: ``close`` it when done)."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "vcfc"}):  # editable, reproducible
        for fmt in formats:
            p = stem.with_suffix(f".{fmt}")
            fig.savefig(p, dpi=dpi, format=fmt)
            out.append(p)
    return out


def png_base64(fig: Figure, dpi: int = 110) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def close(fig: Figure) -> None:
    plt.close(fig)
