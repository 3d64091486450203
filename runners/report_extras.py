"""What a run folder adds to its report beyond the rows: QP maps, sensitivity profiles, the
pictures the codec really coded, and whether the weights were random (results.report draws them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from vcfc.sensitivity.allocation import ALLOCATORS
from vcfc.sensitivity.distances import DISTANCES
from vcfc.sensitivity.profile import read_profile

from .experiment import qp_maps
from .rundir import RunDir


def report_extras(run: RunDir, manifest: dict[str, Any], rows: pd.DataFrame) -> dict[str, Any]:
    extras: dict[str, Any] = {"manifest": manifest,
                              "weights_random": bool("weights" in rows and rows["weights"].eq("none").any())}
    maps = qp_maps(run.read_json(run.allocations_path) or {})
    maps.update(_per_image_maps(rows))
    if maps:
        extras["qp_maps"] = maps
    sens = {}
    for path in sorted(run.profiles_dir.glob("*.parquet")) if run.profiles_dir.is_dir() else []:
        prof = read_profile(path)
        m = prof.meta
        d = DISTANCES.get(str(m.get("distance")))
        sens[f"{m.get('model', '?')} {m.get('layer', '?')} ({m.get('codec', '?')}, {m.get('layout', '?')})"] = {
            "table": prof.table[["channel", "sensitivity"]],
            "definition": (f"sensitivity of channel i = the {d.description if d else m.get('distance')} between the "
                           f"network run on the original features and on the features with only channel i replaced by "
                           f"its {m.get('codec')} round trip at QP {m.get('qp_base')}, averaged over {m.get('images')} "
                           f"calibration images ({m.get('method')} sweep)")}
    if sens:
        extras["sensitivity"] = sens
    sample = _sample(run)
    if sample:
        extras["mosaics"] = sample
    return extras


def _per_image_maps(rows: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """One example QP vector per per-image allocator: the first image's, at the middle base QP."""
    out: dict[str, dict[str, Any]] = {}
    if not {"allocation", "qp_vector", "qp"} <= set(rows.columns):
        return out
    ok = rows[rows["status"].eq("ok")] if "status" in rows else rows
    if "layout" in ok:  # a picture (the coded network input) has one QP: no map to show
        ok = ok[ok["layout"].astype(str) != "image"]
    layers = sorted(ok["layer"].astype(str).unique()) if "layer" in ok else [None]
    for (layer, (method, alloc)) in ((lay, item) for lay in layers for item in ALLOCATORS.items()):
        sel = ok[ok["allocation"].eq(method)]
        if layer is not None:  # one map per layer: its channels are not another layer's
            sel = sel[sel["layer"].astype(str).eq(layer)]
        if alloc.source != "image" or sel.empty:
            continue
        qps = sorted(sel["qp"].unique())
        qp = qps[len(qps) // 2]
        at = sel[sel["qp"].eq(qp)].sort_values("image_id")
        varied = at[at["qp_vector"].astype(bool)]
        first = (varied if len(varied) else at).iloc[0]  # show channels that differ, when any image has them
        vec = [int(v) for v in str(first["qp_vector"]).split(",")] if first["qp_vector"] else None
        if vec is None:  # this image got one QP for every channel
            vec = [int(round(float(first["mean_qp"])))] * int(first["channels"])
        distinct = at["qp_vector"].replace("", np.nan).fillna(at["mean_qp"].astype(str)).nunique()
        where = f"{layer}, " if len(layers) > 1 else ""
        out[f"{method} ({where}image {first['image_id']})"] = {
            "qps": vec, "base_qp": int(qp), "method": method,
            "note": f"per image: each image gets its own QPs; this is image {first['image_id']}'s at base QP {qp} "
                    f"({distinct} different QP vectors over {len(at)} images)"}
    return out


def _sample(run: RunDir) -> dict[str, Any]:
    if not run.sample_path.is_file():
        return {}
    with np.load(run.sample_path, allow_pickle=False) as z:
        frames, bits, qp = z["frames"], int(z["bits"]), int(z["qp"])
        image, label, layout = str(z["image"]), str(z["label"]), str(z["layout"])
    n, h, w = frames.shape
    if n == 1:
        frame, how = frames[0], f"one {h}×{w} picture (layout {layout})"
    else:
        frame, how = tile(frames), f"{n} pictures of {h}×{w}, one per channel (layout {layout}), shown side by side"
    return {f"{label} QP {qp}": {"frame": frame, "bits": bits,
                                 "caption": f"what {label.split('/')[0]} coded for image {image} at QP {qp}: {how}"}}


def tile(frames: np.ndarray, gap: int = 2) -> np.ndarray:
    """(n, h, w) pictures in a near-square grid with mid-gray gaps (for display only)."""
    n, h, w = frames.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fill = int(frames.max()) // 2 if frames.size else 0
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), fill, frames.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = frames[i]
    return out
