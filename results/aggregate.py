"""From per-image rows to rate–quality points, curves and BD tables.

Input: the rows DataFrame of a grid run (one row per image × config × QP; see
docs/experiments.md for the columns). Nothing here knows about models or codecs beyond the
column names, so it works on any subset of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from vcfc.errors import InputError
from vcfc.picture import INPUT_LAYER

from .bdrate import DEFAULT_MIN_OVERLAP, DEFAULT_N_BOOT, DEFAULT_SEED, bd_rate_bootstrap, mean_ci

RATES = ("bpfe", "bpp", "bytes")  # bytes: of the whole file per image, the axis across split points
# what differs between split points (and is coded differently: features vs the image) but is
# compared on one rate axis when the anchor is a layer, e.g. "input:uniform"
SPLIT_COLUMNS = ("layer", "layout", "quant", "bits")
# per-image 0/1 (or fractional) scores: a point is their mean
LINEAR_QUALITIES = ("fidelity", "top1", "top5")
# qualities a point can have: kl_db = -10·log10(mean output_kl) is computed from the mean KL
QUALITIES = ("fidelity", "kl_db", "top1", "top5")
# seconds per image spent in each stage: the row columns every run writes (vcfc.runners.tasks.summarize)
STAGES = ("head_s", "quant_s", "pack_s", "encode_s", "decode_s", "alloc_s", "tail_s")
# describe a config; all but "allocation" define which configs are comparable (a "family")
DESCRIPTORS = ("model", "layer", "codec", "preset", "quant", "bits", "layout", "allocation")
MEAN_COLUMNS = ("bpfe", "bpp", "bytes", "side_info_bytes", "mean_qp", "skipped", *LINEAR_QUALITIES, "output_kl", "output_mse",
                *STAGES)
BD_COLUMNS = ("config", "anchor", "allocation", "model", "layer", "codec", "preset", "quant", "bits", "layout",
              "rate", "quality", "n_images", "points", "bd_rate", "bd_rate_ci_low", "bd_rate_ci_high",
              "bd_quality", "nan_resamples", "n_boot", "reason")


def point_column(rate: str) -> str:
    """The column of ``points()`` that holds a rate axis (bytes are averaged as bytes_per_image)."""
    return "bytes_per_image" if rate == "bytes" else rate


def kl_db(mean_kl):
    """Output KL in dB, ``-10·log10(mean KL)`` (higher is better; +10 dB = 10× smaller KL)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return -10.0 * np.log10(np.asarray(mean_kl, dtype=float))


def _ok(rows: pd.DataFrame) -> pd.Series:
    return rows["status"].eq("ok") if "status" in rows else pd.Series(True, index=rows.index)


def ok_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows that succeeded (all of them when there is no status column)."""
    return rows[_ok(rows)]


def image_key(rows: pd.DataFrame) -> pd.Series:
    """What identifies an image across configurations: its id, within its dataset when rows come
    from several (image ids are paths relative to each dataset's root, so they may repeat)."""
    if "dataset" in rows and rows["dataset"].nunique(dropna=True) > 1:
        return rows["dataset"].astype(str) + ":" + rows["image_id"].astype(str)
    return rows["image_id"]


def points(rows: pd.DataFrame, by: Sequence[str] = ("config", "qp"), *, n_boot: int = DEFAULT_N_BOOT,
           seed: int = DEFAULT_SEED, ci: float = 0.95) -> pd.DataFrame:
    """One row per (config, qp): means over the images that succeeded, and counts.

    Columns: ``by``, the config descriptors present (model, layer, codec, …, allocation),
    ``n`` (ok rows), ``images`` (distinct image_id), ``errors`` (status == "error"),
    ``bytes_per_image``, and the mean of every rate/quality/timing column present, with
    ``<quality>_sem`` (standard error of the mean) and ``<quality>_ci_low``/``_ci_high`` (the
    ``ci`` confidence interval of the mean over images: percentile bootstrap, ``n_boot``
    resamples, fixed ``seed``) for error bars. With ``output_kl``: ``kl_db`` =
    ``-10·log10(mean output_kl)`` and its interval. NaN qualities (top1 without labels) are
    skipped by the means; a group whose images all failed has ``n == 0``.
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
    for q in LINEAR_QUALITIES:
        if q in good:
            out[f"{q}_sem"] = g[q].sem()
    if "output_kl" in out:
        out["kl_db"] = kl_db(out["output_kl"])
    ci_cols = [c for c in (*LINEAR_QUALITIES, "output_kl") if c in good]
    if ci_cols and len(good):
        bounds = {}
        for key, d in g:
            v = d[ci_cols].to_numpy(dtype=float)
            lo, hi = mean_ci(v, n_boot=n_boot, seed=seed, ci=ci)
            rec = {}
            for j, c in enumerate(ci_cols):
                if c == "output_kl":  # KL -> dB reverses the order: the high KL bound is the low dB one
                    rec["kl_db_ci_low"], rec["kl_db_ci_high"] = kl_db(hi[j]), kl_db(lo[j])
                else:
                    rec[f"{c}_ci_low"], rec[f"{c}_ci_high"] = lo[j], hi[j]
            bounds[key] = rec
        b = pd.DataFrame.from_dict(bounds, orient="index")
        b.index = out.index
        out = out.join(b)
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


def family_columns(pts: pd.DataFrame) -> list[str]:
    """Descriptor columns present (except allocation): configs equal on all of them are comparable."""
    return [c for c in DESCRIPTORS if c in pts and c != "allocation"]


def _names(values, limit: int = 12) -> str:
    v = sorted({str(x) for x in values if pd.notna(x)})
    return ", ".join(v[:limit]) + (f", … ({len(v)} in all)" if len(v) > limit else "") if v else "none"


def layer_anchor(anchor: str) -> tuple[str, str] | None:
    """(layer, allocation) of an anchor written ``layer:allocation`` (e.g. ``input:uniform``)."""
    layer, sep, method = anchor.partition(":")
    return (layer, method) if sep and layer and method else None


def _anchor_of(cfgs: pd.DataFrame, anchor: str, family: list[str], config: str) -> dict[str, str | None]:
    """Map each config to its anchor config (None when its family has none).

    ``anchor``: a config id, an allocation (compared within the family), or ``layer:allocation``
    (every split point of a model against that layer's allocation: the family without the layer
    and how it is coded). Raises InputError when it names nothing in the rows.
    """
    cols = [config, *family, *[c for c in ("allocation", "layer") if c in cfgs and c not in family]]
    configs = cfgs[cols]
    configs = configs[configs[config].notna()].drop_duplicates(config)
    ids = set(configs[config].astype(str))
    if anchor in ids:
        return {str(c): anchor for c in configs[config]}
    allocations = set(configs["allocation"].dropna().astype(str)) if "allocation" in configs else set()
    split = layer_anchor(anchor)
    if split is not None:
        layers = set(configs["layer"].dropna().astype(str)) if "layer" in configs else set()
        if split[0] not in layers or split[1] not in allocations:
            raise InputError(f"anchor {anchor!r}: no layer {split[0]!r} with allocation {split[1]!r} in these rows "
                             f"(layers {_names(layers)}; allocations {_names(allocations)})")
        family = [c for c in family if c not in SPLIT_COLUMNS]
        match = (configs["layer"].astype(str) == split[0]) & (configs["allocation"].astype(str) == split[1])
        if not match.any():
            raise InputError(f"anchor {anchor!r}: layer {split[0]!r} has no allocation {split[1]!r} "
                             f"(it has {_names(configs.loc[configs['layer'].astype(str) == split[0], 'allocation'])})")
    elif anchor not in allocations:
        raise InputError(f"anchor {anchor!r} is neither an allocation of these rows ({_names(allocations)}) "
                         f"nor a config id ({_names(ids)}) nor a layer:allocation")
    else:
        match = configs["allocation"].astype(str) == anchor
    out: dict[str, str | None] = {}
    groups = configs.groupby(family, dropna=False) if family else [((), configs)]
    for _, fam in groups:
        anchors = fam.loc[match.loc[fam.index], config].astype(str).tolist()
        for c in fam[config].astype(str):
            out[c] = sorted(anchors)[0] if anchors else None  # several: the first id, deterministically
    return out


def check_anchor(rows: pd.DataFrame, anchor: str, config: str = "config") -> None:
    """InputError unless ``anchor`` names something bd_table can compare against in ``rows``:
    the same check, made before any work."""
    good = ok_rows(rows)
    if config in good and len(good):
        _anchor_of(good, anchor, family_columns(good), config)


def quality_columns(rows: pd.DataFrame, qualities: Sequence[str] = QUALITIES) -> list[str]:
    """The qualities of ``qualities`` the rows (or points) have data for (kl_db needs output_kl)."""
    good = rows[_ok(rows)] if "status" in rows else rows
    out = []
    for q in qualities:
        col = "output_kl" if q == "kl_db" and "kl_db" not in good else q
        if col in good and pd.to_numeric(good[col], errors="coerce").notna().any():
            out.append(q)
    return out


def _per_image(good: pd.DataFrame, config: str, cfg: str, col: str) -> pd.DataFrame:
    """[image × qp] means of one column of one config (NaN where an image has no ok row at a QP)."""
    d = good[good[config].astype(str) == cfg]
    return d.pivot_table(index="_image", columns="qp", values=col, aggfunc="mean", dropna=False)


def bd_table(rows: pd.DataFrame, anchor: str = "uniform", rate: str | Sequence[str] = "bpfe",
             qualities: Sequence[str] = QUALITIES, method: str = "pchip", family: Sequence[str] | None = None,
             min_overlap: float = DEFAULT_MIN_OVERLAP, config: str = "config", *, n_boot: int = DEFAULT_N_BOOT,
             seed: int = DEFAULT_SEED, ci: float = 0.95) -> pd.DataFrame:
    """BD-rate (percent) of every config against its anchor with a bootstrap confidence interval.

    ``rows``: the per-image rows (image_id, config, qp, rates, qualities, status). Long format,
    one row per (config, rate axis, quality), columns ``BD_COLUMNS``: config, anchor,
    allocation and the other descriptors present, rate, quality, ``n_images`` (images with
    results in both curves: the resampled unit), ``points`` (QPs of the test curve),
    ``bd_rate`` (negative = fewer bits at equal quality), ``bd_rate_ci_low``/``_high`` (the
    ``ci`` percentile interval of a paired bootstrap over images, ``n_boot`` resamples, fixed
    ``seed``; see ``bdrate.bd_rate_bootstrap``), ``bd_quality`` (quality gained at equal rate),
    ``nan_resamples``, ``n_boot`` and ``reason`` (why a value or the interval is NaN).

    ``anchor`` is a config id (one anchor for all), an allocation name: then each config is
    compared with the config of that allocation in its family (same model/layer/codec/preset/…;
    ``family`` overrides the columns), or ``layer:allocation`` (e.g. ``input:uniform``, the coded
    image): then every split point of a model is compared with that one, on the file's bytes
    (bpfe is left out: split points differ in elements); anything else raises InputError.
    ``rate`` is one rate column or several. Qualities: fidelity, kl_db (``-10·log10`` of the mean output_kl at each
    point), top1, top5 — those with data. Passing ``points()`` output instead of rows still
    gives the BD-rates, without intervals (``reason`` says so).
    """
    rates = [rate] if isinstance(rate, str) else list(rate)
    if layer_anchor(anchor) is not None:  # split points differ in elements: only the file's bytes compare
        rates = [r for r in rates if r != "bpfe"] or ["bytes"]
    per_image = "image_id" in rows and "qp" in rows
    if not per_image and "n" not in rows:
        raise ValueError("bd_table needs the per-image rows (image_id, config, qp, …)")
    if not per_image:  # points: one pseudo-image per config, no interval
        rows = rows[rows["n"] > 0].copy()
        rows["image_id"] = "mean"
        if "kl_db" in rows and "output_kl" not in rows:
            rows["output_kl"] = 10 ** (-rows["kl_db"] / 10)
    missing = [r for r in rates if r not in rows]
    if missing:
        raise ValueError(f"rows have no rate column {missing[0]!r}")
    if config not in rows:
        raise ValueError(f"rows have no {config!r} column")
    good = rows[_ok(rows) & rows[config].notna()] if "status" in rows else rows[rows[config].notna()]
    good = good.assign(_image=image_key(good))  # the paired unit of the bootstrap
    fam = list(family) if family is not None else family_columns(good)
    anchors = _anchor_of(rows, anchor, fam, config) if len(good) else {}
    anchors = {c: a for c, a in anchors.items() if c in set(good[config].astype(str))}
    qs = quality_columns(good, qualities)
    desc = [c for c in DESCRIPTORS if c in good]
    info = good.drop_duplicates(config).set_index(good.drop_duplicates(config)[config].astype(str))
    records = []
    matrices: dict[tuple[str, str], pd.DataFrame] = {}

    def matrix(cfg: str, col: str) -> pd.DataFrame:
        if (cfg, col) not in matrices:
            matrices[(cfg, col)] = _per_image(good, config, cfg, col)
        return matrices[(cfg, col)]

    for c in sorted(anchors):
        a = anchors[c]
        if a == c:
            continue
        base = {"config": c, "anchor": a}
        base.update({d: info.at[c, d] for d in desc})
        done: dict[str, tuple[str, dict]] = {}  # quality -> (rate, result) to reuse for proportional rates
        for r in rates:
            for q in qs:
                rec = {**base, "rate": r, "quality": q, "n_images": 0, "points": 0, "bd_rate": math.nan,
                       "bd_rate_ci_low": math.nan, "bd_rate_ci_high": math.nan, "bd_quality": math.nan,
                       "nan_resamples": 0, "n_boot": n_boot if per_image else 0, "reason": None}
                col = "output_kl" if q == "kl_db" else q
                if a is None:
                    rec.update(reason="no anchor in family", n_boot=0)
                    records.append(rec)
                    continue
                t_r, t_q, a_r, a_q = matrix(c, r), matrix(c, col), matrix(a, r), matrix(a, col)
                rec["points"] = int(t_q.notna().any().sum()) if len(t_q) else 0
                imgs = _shared_images(t_r, t_q, a_r, a_q)
                prev = done.get(q)
                if prev is not None and _proportional(matrix(c, prev[0]), t_r, matrix(a, prev[0]), a_r, imgs):
                    res = dict(prev[1])  # rates differ by one constant factor: the same BD-rate
                else:
                    b = bd_rate_bootstrap(*(m.reindex(imgs).to_numpy(dtype=float) for m in (a_r, a_q, t_r, t_q)),
                                          quality_of_mean=kl_db if q == "kl_db" else None, method=method,
                                          min_overlap=min_overlap, n_boot=n_boot if per_image else 0, seed=seed,
                                          ci=ci)
                    res = _bd_fields(b, per_image, None if per_image else _min_images(good, config, c, a))
                    done[q] = (r, res)
                rec.update(res)
                records.append(rec)
    if not records:
        return pd.DataFrame(columns=[c for c in BD_COLUMNS if c not in DESCRIPTORS or c in desc])
    out = pd.DataFrame.from_records(records)
    return out[[c for c in BD_COLUMNS if c in out] + [c for c in out if c not in BD_COLUMNS]]


IMAGE_ANCHORS = ("uniform", "rdo-uniform")  # the image with one QP for all, and with per-image rate control


def bd_vs_image(rows: pd.DataFrame, qualities: Sequence[str] = ("fidelity", "kl_db"), method: str = "pchip",
                min_overlap: float | None = None, *, n_boot: int = DEFAULT_N_BOOT, seed: int = DEFAULT_SEED
                ) -> pd.DataFrame:
    """Every split point against the coded image (layer `input`) with each of IMAGE_ANCHORS that
    was run, on bytes per image: what sending features costs next to sending the image."""
    image = ok_rows(rows)
    image = image[image["layer"].astype(str) == INPUT_LAYER] if "layer" in image else image.iloc[0:0]
    kw = {} if min_overlap is None else {"min_overlap": min_overlap}
    tables = [bd_table(rows, anchor=f"{INPUT_LAYER}:{a}", rate="bytes", qualities=qualities, method=method,
                       n_boot=n_boot, seed=seed, **kw)
              for a in IMAGE_ANCHORS if a in set(image["allocation"].astype(str))]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(BD_COLUMNS))


def _shared_images(t_r: pd.DataFrame, t_q: pd.DataFrame, a_r: pd.DataFrame, a_q: pd.DataFrame) -> list:
    """Images with this quality in both curves (top1/top5: only where there are labels): both
    curves' points, rates included, are means over these images, and the bootstrap draws them."""
    with_q = set(t_q.index[t_q.notna().any(axis=1)]) & set(a_q.index[a_q.notna().any(axis=1)])
    return sorted(with_q & set(t_r.index) & set(a_r.index))


def _bd_fields(b: Any, per_image: bool, n_images: int | None) -> dict[str, Any]:
    """The bd.csv fields of one bootstrap result (points instead of rows: no interval, and
    ``n_images`` counted from the points)."""
    res = {"n_images": b.n_images, "bd_rate": b.value, "bd_rate_ci_low": b.ci_low, "bd_rate_ci_high": b.ci_high,
           "bd_quality": b.bd_quality, "nan_resamples": b.nan_resamples, "reason": b.reason}
    if not per_image:
        res["n_images"] = n_images
        if b.reason is None or b.reason.startswith("no resamples"):
            res["reason"] = "points, not per-image rows: no interval"
    return res


def _proportional(r1_t: pd.DataFrame, r2_t: pd.DataFrame, r1_a: pd.DataFrame, r2_a: pd.DataFrame,
                  imgs: list) -> bool:
    """True when rate 2 = k × rate 1 for every image and QP of both curves (one k): same BD-rate."""
    ratios = []
    for r1, r2 in ((r1_t, r2_t), (r1_a, r2_a)):
        x, y = r1.reindex(imgs).to_numpy(dtype=float), r2.reindex(imgs).to_numpy(dtype=float)
        if x.shape != y.shape or not np.array_equal(np.isfinite(x), np.isfinite(y)):
            return False
        ok = np.isfinite(x) & (x > 0)
        ratios.append(y[ok] / x[ok])
    allr = np.concatenate(ratios)
    return bool(allr.size) and bool(np.allclose(allr, allr[0], rtol=1e-9, atol=0))


def _min_images(pts: pd.DataFrame, config: str, *cfgs: str) -> int:
    col = "images" if "images" in pts else "n"
    d = pts[pts[config].astype(str).isin(cfgs)]
    return int(d[col].min()) if col in d and len(d) else 0


CODING_STAGES = ("quant_s", "pack_s", "encode_s", "decode_s", "alloc_s")  # what coding costs beside the network


def timings(rows: pd.DataFrame, config: str = "config") -> pd.DataFrame:
    """Mean seconds per stage and image for each config (ok rows only), their total, the coding
    part (allocation included) and ``x_uniform``: that coding time over the uniform-QP config of
    the same family's (what a per-image allocation costs in uniform encodes)."""
    cols = [c for c in STAGES if c in rows]
    if not cols or config not in rows:
        return pd.DataFrame()
    good = rows[_ok(rows)]
    family = [c for c in DESCRIPTORS if c in good and c != "allocation"]
    keys = [config, *family, *(["allocation"] if "allocation" in good else [])]
    t = good.groupby(keys, dropna=False)[cols].mean()
    t["total_s"] = t.sum(axis=1, min_count=1)
    t["coding_s"] = t[[c for c in CODING_STAGES if c in t]].sum(axis=1, min_count=1)
    t = t.reset_index()
    t["x_uniform"] = np.nan
    if "allocation" in t:  # each config against the uniform config of its family (NaN keys match NaN)
        uniform = t.loc[t["allocation"].astype(str) == "uniform", [*family, "coding_s"]]
        uniform = uniform.drop_duplicates(family, keep="last").rename(columns={"coding_s": "_u"})
        base = t[family].merge(uniform, on=family, how="left")["_u"]
        t["x_uniform"] = (t["coding_s"] / base.where(base > 0)).to_numpy()
    return t.drop(columns=[c for c in keys if c != config])


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

