"""From per-image rows to rate–quality points, curves and BD tables.

Input: the rows DataFrame of a grid run (one row per image × config × QP; see
docs/experiments.md for the columns). Nothing here knows about models or codecs beyond the
column names, so it works on any subset of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from .bdrate import DEFAULT_MIN_OVERLAP, bd_quality_detail, bd_rate_detail

RATES = ("bpfe", "bpp")
QUALITIES = ("fidelity", "top1", "top5")
TIMINGS = ("head_s", "pack_s", "encode_s", "decode_s", "tail_s")
# describe a config; all but "allocation" define which configs are comparable (a "family")
DESCRIPTORS = ("model", "layer", "codec", "preset", "quant", "bits", "layout", "allocation")
MEAN_COLUMNS = ("bpfe", "bpp", "bytes", "side_info_bytes", *QUALITIES, *TIMINGS)


def _ok(rows: pd.DataFrame) -> pd.Series:
    return rows["status"].eq("ok") if "status" in rows else pd.Series(True, index=rows.index)


def points(rows: pd.DataFrame, by: Sequence[str] = ("config", "qp")) -> pd.DataFrame:
    """One row per (config, qp): means over the images that succeeded, and counts.

    Columns: ``by``, the config descriptors present (model, layer, codec, …, allocation),
    ``n`` (ok rows), ``images`` (distinct image_id), ``errors`` (status == "error"),
    ``bytes_per_image``, and the mean of every rate/quality/timing column present, with
    ``<quality>_sem`` (standard error of the mean) for error bars. NaN qualities (top1 without
    labels) are skipped by the means; a group whose images all failed has ``n == 0``.
    """
    by = list(by)
    missing = [c for c in by if c not in rows]
    if missing:
        raise ValueError(f"rows lack the grouping column(s) {', '.join(missing)}")
    rows = rows.copy()
    ok = _ok(rows)
    err = rows["status"].eq("error") if "status" in rows else pd.Series(False, index=rows.index)
    means = [c for c in MEAN_COLUMNS if c in rows]
    for c in means:
        rows[c] = pd.to_numeric(rows[c], errors="coerce")
    desc = [c for c in DESCRIPTORS if c in rows and c not in by]

    good = rows[ok]
    if desc and len(good):
        # one config id must mean one model/layer/codec/…: else its points would silently mix
        n_variants = good[[by[0], *desc]].astype(str).drop_duplicates().groupby(by[0]).size()
        clash = n_variants[n_variants > 1]
        if len(clash):
            raise ValueError(f"config id {clash.index[0]!r} is used with different {'/'.join(desc)}: make "
                             f"config ids unique (e.g. prefix model and layer) or group by them")
    g = good.groupby(by, dropna=False, sort=True)
    out = g[means].mean() if means else pd.DataFrame(index=g.size().index)
    out.insert(0, "n", g.size())
    if "image_id" in rows:
        out.insert(1, "images", g["image_id"].nunique())
    for q in QUALITIES:
        if q in good:
            out[f"{q}_sem"] = g[q].sem()
    if "bytes" in out:
        out = out.rename(columns={"bytes": "bytes_per_image"})
    errors = rows[err].groupby(by, dropna=False).size().rename("errors")
    out = out.join(errors, how="outer")
    out["errors"] = out["errors"].fillna(0).astype(int)
    out["n"] = out["n"].fillna(0).astype(int)
    if "images" in out:
        out["images"] = out["images"].fillna(0).astype(int)
    if desc:
        # descriptors of a config, taken from any of its rows (error rows carry the task fields)
        first = rows.groupby(by[0], dropna=False)[desc].first()
        out = out.reset_index().merge(first, left_on=by[0], right_index=True, how="left")
    else:
        out = out.reset_index()
    lead = by + desc + ["n"] + (["images"] if "images" in out else []) + ["errors"]
    return out[lead + [c for c in out.columns if c not in lead]].reset_index(drop=True)


def curves(pts: pd.DataFrame, rate: str = "bpfe", config: str = "config") -> dict[str, pd.DataFrame]:
    """Points of each config with data, sorted by rate (for plots and BD)."""
    pts = pts[(pts["n"] > 0) & pts[rate].notna()] if rate in pts else pts.iloc[0:0]
    return {str(c): d.sort_values(rate).reset_index(drop=True) for c, d in pts.groupby(config, sort=True)}


def family_columns(pts: pd.DataFrame) -> list[str]:
    """Descriptor columns present (except allocation): configs equal on all of them are comparable."""
    return [c for c in DESCRIPTORS if c in pts and c != "allocation"]


def _anchor_of(pts: pd.DataFrame, anchor: str, family: list[str], config: str) -> dict[str, str | None]:
    """Map each config to its anchor config (None when its family has none)."""
    configs = pts[[config, *family, *(["allocation"] if "allocation" in pts else [])]].drop_duplicates(config)
    if anchor in set(configs[config].astype(str)):
        return {str(c): anchor for c in configs[config]}
    if "allocation" not in configs:
        raise ValueError(f"anchor {anchor!r} is not a config id and the rows have no 'allocation' column")
    out: dict[str, str | None] = {}
    groups = configs.groupby(family, dropna=False) if family else [((), configs)]
    for _, fam in groups:
        anchors = fam.loc[fam["allocation"].astype(str) == anchor, config].astype(str).tolist()
        for c in fam[config].astype(str):
            out[c] = sorted(anchors)[0] if anchors else None  # several: the first id, deterministically
    return out


def bd_table(pts: pd.DataFrame, anchor: str = "uniform", rate: str = "bpfe",
             qualities: Sequence[str] = QUALITIES, method: str = "pchip", family: Sequence[str] | None = None,
             min_overlap: float = DEFAULT_MIN_OVERLAP, config: str = "config") -> pd.DataFrame:
    """BD-rate (percent) and BD-quality of every config against its anchor, one row per config.

    ``anchor`` is a config id (one anchor for all) or an allocation name: then each config is
    compared with the config of that allocation in its family (same model/layer/codec/preset/…;
    ``family`` overrides the columns). Columns per quality q present in the points:
    ``bd_rate_<q>`` (negative = fewer bits at equal q), ``bd_<q>`` (q gained at equal rate) and
    ``reason_<q>`` (why NaN). Qualities that are all NaN (no labels) are left out.
    """
    if rate not in pts:
        raise ValueError(f"points have no rate column {rate!r}")
    fam = list(family) if family is not None else family_columns(pts)
    pts = pts[pts["n"] > 0] if "n" in pts else pts  # groups where every image failed have no point
    anchors = _anchor_of(pts, anchor, fam, config)
    cv = curves(pts, rate, config)
    qs = [q for q in qualities if q in pts and pts[q].notna().any()]
    desc = [c for c in DESCRIPTORS if c in pts]
    info = pts.drop_duplicates(config).set_index(pts.drop_duplicates(config)[config].astype(str))
    records = []
    for c in sorted(anchors):
        a = anchors[c]
        if a == c:
            continue
        rec: dict[str, object] = {"config": c, "anchor": a, "rate": rate}
        rec.update({d: info.at[c, d] for d in desc})
        t, an = cv.get(c), cv.get(a) if a is not None else None
        rec["points"] = 0 if t is None else len(t)
        for q in qs:
            if a is None:
                rec.update({f"bd_rate_{q}": math.nan, f"bd_{q}": math.nan, f"reason_{q}": "no anchor in family"})
                continue
            if t is None or an is None:
                rec.update({f"bd_rate_{q}": math.nan, f"bd_{q}": math.nan, f"reason_{q}": "no points"})
                continue
            r = bd_rate_detail(an[rate], an[q], t[rate], t[q], method, min_overlap)
            d = bd_quality_detail(an[rate], an[q], t[rate], t[q], method, min_overlap)
            reasons = "; ".join(dict.fromkeys(x for x in (r.reason, d.reason) if x))
            rec.update({f"bd_rate_{q}": r.value, f"bd_{q}": d.value, f"reason_{q}": reasons or None})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def timings(rows: pd.DataFrame, config: str = "config") -> pd.DataFrame:
    """Mean seconds per stage and image for each config (ok rows only)."""
    cols = [c for c in TIMINGS if c in rows]
    if not cols or config not in rows:
        return pd.DataFrame()
    good = rows[_ok(rows)]
    t = good.groupby(config)[cols].mean()
    t["total_s"] = t.sum(axis=1, min_count=1)
    return t.reset_index()


def errors(rows: pd.DataFrame, config: str = "config") -> pd.DataFrame:
    """Distinct error messages with their counts (per config when known)."""
    if "status" not in rows or "error" not in rows:
        return pd.DataFrame(columns=["error", "count"])
    bad = rows[rows["status"].eq("error")]
    keys = [c for c in (config,) if c in bad] + ["error"]
    if bad.empty:
        return pd.DataFrame(columns=keys + ["count"])
    return (bad.groupby(keys, dropna=False).size().rename("count").reset_index()
            .sort_values("count", ascending=False, kind="stable").reset_index(drop=True))

