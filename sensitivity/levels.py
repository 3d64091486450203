"""Per-scale importance of a feature pyramid (MSFC's destructive test).

For each level L, every channel of L is replaced by its codec round trip at QP_base (the other
levels stay clean), the tail runs, and the distance to the reference output is averaged over
images. One vcfc encode+decode of the whole pyramid per image (layout frames) gives all levels'
round trips.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

import vcfc
from vcfc.spec import CodingSpec

from .noise import roundtrip, sweep_spec
from .profile import Profile


def detection_distance(ref: list[dict], out: list[dict], score: float = 0.5, iou: float = 0.5) -> float:
    """1 − pseudo-F1 of the detections against the reference run's detections (score ≥ `score`):
    greedy matching by descending score, same label, IoU ≥ `iou`. 0 = identical detections,
    1 = nothing in common; two empty sets count as identical. Averaged over the images."""
    vals = []
    for r, o in zip(ref, out):
        rb, rl = r["boxes"][r["scores"] >= score], r["labels"][r["scores"] >= score]
        keep = o["scores"] >= score
        ob, ol, os_ = o["boxes"][keep], o["labels"][keep], o["scores"][keep]
        if len(rb) + len(ob) == 0:
            vals.append(0.0)
            continue
        used = torch.zeros(len(rb), dtype=torch.bool)
        ious = box_iou(ob.float().cpu(), rb.float().cpu()) if len(rb) and len(ob) else None
        tp = 0
        for j in torch.argsort(os_, descending=True).tolist():
            if ious is None:
                break
            cand = (ol[j].cpu() == rl.cpu()) & ~used & (ious[j] >= iou)
            if cand.any():
                k = int(torch.where(cand, ious[j], torch.tensor(-1.0)).argmax())
                used[k] = True
                tp += 1
        vals.append(1.0 - 2.0 * tp / (len(rb) + len(ob)))
    return float(np.mean(vals)) if vals else 0.0


def measure_levels(
    features: Iterable[Mapping[str, torch.Tensor]],
    *,
    tail: Callable[[Mapping[str, torch.Tensor]], Any],
    distance: Callable[[Any, Any], float],
    qp_base: int,
    spec: CodingSpec | None = None,
    levels: list[str] | None = None,
    progress: bool = False,
    meta: dict[str, Any] | None = None,
) -> Profile:
    """Per-level sensitivity of dict features (one row per level, channel = -1).

    tail(dict) -> output; distance(ref_output, output) -> float (e.g. `detection_distance`).
    Each dict is one image's pyramid (its `.meta`, if any, is kept on the perturbed copies).
    spec: codec, quantizer, bits, preset (the layout is always frames).
    """
    spec = sweep_spec(spec)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    n = 0
    it: Iterable = features
    if progress:
        from tqdm import tqdm

        it = tqdm(features, desc="sensitivity (levels)", unit="img", file=sys.stderr)
    for feats in it:
        names = levels or list(feats)
        ref = tail(feats)
        noisy = roundtrip({k: v[0] if v.dim() == 4 else v for k, v in feats.items()}, qp_base, spec)
        for name in names:
            pert = _copy(feats)
            v = feats[name]
            pert[name] = torch.as_tensor(noisy[name]).to(v.device, v.dtype).reshape(v.shape)
            sums[name] = sums.get(name, 0.0) + float(distance(ref, tail(pert)))
            counts[name] = feats[name].shape[-3]
        n += 1
    names = list(sums)
    m = dict(meta or {})
    m.update({"images": n, "codec": spec.codec, "quant": spec.quant, "bits": spec.bits, "layout": "frames",
              "preset": spec.preset, "qp_base": int(qp_base), "mode": "level", "method": "exact",
              "vcfc_version": vcfc.__version__, "level_channels": counts})
    m.setdefault("distance", getattr(distance, "__name__", "custom"))
    return Profile.from_arrays(np.array([sums[k] / max(n, 1) for k in names]), m, levels=names,
                               channels=[-1] * len(names))


def _copy(feats: Mapping[str, torch.Tensor]) -> Any:
    try:
        out = type(feats)(feats)        # keeps FeatureDict.meta? only via the attribute below
    except TypeError:
        out = dict(feats)
    if hasattr(feats, "meta"):
        out.meta = dict(feats.meta)   # type: ignore[attr-defined]
    return out
