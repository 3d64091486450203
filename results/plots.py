"""Figures for reports (matplotlib, Agg backend: no display needed).

Every ``plot_*`` returns a Figure; ``save(fig, stem)`` writes ``stem.png`` and ``stem.svg``
(text kept as text in the SVG, for papers) and ``png_base64(fig)`` gives the bytes to embed.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # before pyplot: headless workers and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

LABELS = {"bpfe": "bits per feature element", "bpp": "bits per pixel", "fidelity": "fidelity",
          "top1": "top-1 accuracy", "top5": "top-5 accuracy", "bytes_per_image": "bytes per image"}
_MARKERS = "osD^v<>pPX*h"


def _label(col: str) -> str:
    return LABELS.get(col, col)


def plot_rate_quality(pts: pd.DataFrame, rate: str = "bpfe", quality: str = "fidelity",
                      config: str = "config", title: str | None = None, logx: bool = True,
                      annotate_qp: bool = True) -> Figure:
    """One curve per config: mean rate vs mean quality over the QP sweep (± standard error)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    data = pts[(pts.get("n", 1) > 0) & pts[rate].notna() & pts[quality].notna()] if quality in pts else pts.iloc[0:0]
    for i, (name, d) in enumerate(data.groupby(config, sort=True)):
        d = d.sort_values(rate)
        sem = d.get(f"{quality}_sem")
        ax.errorbar(d[rate], d[quality], yerr=None if sem is None or sem.isna().all() else sem,
                    marker=_MARKERS[i % len(_MARKERS)], ms=4, lw=1.3, capsize=2, label=str(name))
        if annotate_qp and "qp" in d:
            for x, y, qp in zip(d[rate], d[quality], d["qp"]):
                if pd.notna(qp):
                    ax.annotate(f"{qp:g}" if isinstance(qp, (int, float)) else str(qp), (x, y),
                                textcoords="offset points", xytext=(3, -9), fontsize=6, alpha=0.6)
    if logx and len(data) and (data[rate] > 0).all():
        ax.set_xscale("log")
        # 1-2-5 labels in plain numbers: matplotlib's default 3×10⁻¹ minor labels collide
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(_label(rate))
    ax.set_ylabel(_label(quality))
    ax.grid(True, which="both", alpha=0.3)
    if len(data):
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title or f"{_label(quality)} vs {_label(rate)}", fontsize=10)
    return fig


def plot_rate_accuracy(pts: pd.DataFrame, rate: str = "bpfe", accuracy: str = "top1", **kw) -> Figure:
    return plot_rate_quality(pts, rate=rate, quality=accuracy, **kw)


def plot_qp_map(qps: Sequence[int], per_row: int | None = None, title: str | None = None) -> Figure:
    """Per-channel QPs as a heat grid (channel c at row c // per_row, column c % per_row)."""
    q = np.asarray(qps, dtype=float).ravel()
    n = max(q.size, 1)
    if per_row is None:
        per_row = int(np.ceil(np.sqrt(n))) if n > 32 else n  # a strip for few channels, else a square
    rows = int(np.ceil(n / per_row))
    grid = np.full(rows * per_row, np.nan)
    grid[: q.size] = q
    grid = grid.reshape(rows, per_row)
    fig, ax = plt.subplots(figsize=(min(8, 1 + 0.25 * per_row), min(6, 1.2 + 0.25 * rows)), layout="constrained")
    im = ax.imshow(grid, cmap="viridis_r", aspect="auto", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="QP")
    ax.set_xlabel(f"channel mod {per_row}" if rows > 1 else "channel")
    ax.set_ylabel(f"channel // {per_row}" if rows > 1 else "")
    if rows == 1:
        ax.set_yticks([])
    default = f"per-channel QP ({q.size} channels, {np.nanmin(q):g}–{np.nanmax(q):g})" if q.size else "per-channel QP"
    ax.set_title(title or default, fontsize=10)
    return fig


def plot_sensitivity(df: pd.DataFrame, channel: str = "channel", value: str = "sensitivity",
                     top: int | None = 64, title: str | None = None) -> Figure:
    """Bar chart of per-channel sensitivity, most sensitive first (``top`` bars at most)."""
    d = df[[channel, value]].dropna().sort_values(value, ascending=False)
    total = len(d)
    if top:
        d = d.head(top)
    fig, ax = plt.subplots(figsize=(min(12, 2 + 0.12 * max(len(d), 10)), 3.6), layout="constrained")
    ax.bar(range(len(d)), d[value].to_numpy(), color="tab:blue")
    ax.set_xticks(range(len(d)))
    ax.set_xticklabels([str(c) for c in d[channel]], rotation=90, fontsize=5 if len(d) > 40 else 7)
    ax.set_xlabel(channel)
    ax.set_ylabel(value)
    shown = f"top {len(d)} of {total}" if len(d) < total else f"{total} channels"
    ax.set_title(title or f"{value} per {channel} ({shown})", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def plot_mosaic(frame: np.ndarray, bits: int | None = None, title: str | None = None) -> Figure:
    """One coded frame (2-D integers, e.g. a channel mosaic) as a grayscale picture at its true range."""
    f = np.asarray(frame)
    if f.ndim != 2:
        raise ValueError(f"mosaic frame must be 2-D, got shape {f.shape}")
    vmax = (2**bits - 1) if bits else max(int(f.max()) if f.size else 1, 1)
    h, w = f.shape
    scale = 8 / max(h, w)
    fig, ax = plt.subplots(figsize=(max(2.5, w * scale), max(2.5, h * scale) + 0.4), layout="constrained")
    ax.imshow(f, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title or f"mosaic {h}×{w}" + (f", {bits}-bit" if bits else ""), fontsize=10)
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
