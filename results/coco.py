"""COCO detection / segmentation / keypoint AP with pycocotools, plus fidelity AP.

Detections are COCO result dicts: ``{"image_id": int, "category_id": int, "bbox": [x,y,w,h],
"score": float}`` (+ ``"segmentation"`` as an RLE for segm, ``"keypoints"`` [x,y,v]*K for
keypoints). :func:`to_coco_results` makes them from torchvision detection outputs.

Stats that pycocotools reports as -1 (no ground truth in that area range / category set) are
returned as NaN, so they cannot silently drag an average down.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from vcfc.errors import InputError
from vcfc.registry import Registry

IOU_TYPES: Registry[str] = Registry("iou_type", [
    ("bbox", "boxes"), ("segm", "instance masks"), ("keypoints", "person keypoints (OKS)")])
STAT_NAMES = {
    "bbox": ("AP", "AP50", "AP75", "APs", "APm", "APl",
             "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"),
    "keypoints": ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"),
}
STAT_NAMES["segm"] = STAT_NAMES["bbox"]


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())  # pycocotools prints progress and tables


def _check_iou_type(iou_type: str) -> None:
    IOU_TYPES.get(iou_type)


def _load_results(coco_gt: Any, detections: Sequence[dict[str, Any]], iou_type: str) -> Any:
    """COCO.loadRes without its two traps: it mutates the dicts, and crashes on an empty list."""
    from pycocotools.coco import COCO

    if not detections:
        res = COCO()
        res.dataset = {"images": list(coco_gt.dataset["images"]),
                       "categories": copy.deepcopy(coco_gt.dataset.get("categories", [])),
                       "annotations": []}
        with _quiet():
            res.createIndex()
        return res
    need = {"bbox": "bbox", "segm": "segmentation", "keypoints": "keypoints"}[iou_type]
    for d in detections:
        for key in ("image_id", "category_id", "score", need):
            if key not in d:
                raise InputError(f"detection {d.get('image_id', '?')}: missing '{key}' "
                                 f"needed for iou_type={iou_type}")
    known = set(coco_gt.getImgIds())
    stray = {d["image_id"] for d in detections} - known
    if stray:
        raise InputError(f"detections for image ids not in the ground truth: {sorted(stray)[:5]}")
    dets = [dict(d) for d in detections]
    with _quiet():
        return coco_gt.loadRes(dets)


def coco_ap(coco_gt: Any, detections: Sequence[dict[str, Any]], iou_type: str = "bbox",
            img_ids: Iterable[int] | None = None) -> dict[str, Any]:
    """COCO AP of ``detections`` against ``coco_gt`` (a pycocotools COCO object).

    Returns ``{"AP", "AP50", "AP75", ... (the 12 named stats; 10 for keypoints), "stats": [...]}``.
    ``img_ids`` restricts the evaluation (default: every ground-truth image -- pass the ids you
    actually ran when using a ``limit``, or the others count as misses). Empty detections give
    AP 0."""
    from pycocotools.cocoeval import COCOeval

    _check_iou_type(iou_type)
    coco_dt = _load_results(coco_gt, detections, iou_type)
    with _quiet():
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        if img_ids is not None:
            ev.params.imgIds = sorted(set(int(i) for i in img_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    stats = [float("nan") if s == -1 else float(s) for s in ev.stats]
    out: dict[str, Any] = dict(zip(STAT_NAMES[iou_type], stats))
    out["stats"] = stats
    return out


def _rle_area(seg: dict[str, Any]) -> float:
    from pycocotools import mask as mask_utils

    return float(mask_utils.area(seg))


def build_pseudo_gt(ref_dets: Sequence[dict[str, Any]], score_threshold: float = 0.5,
                    img_ids: Iterable[int] | None = None,
                    category_ids: Iterable[int] | None = None) -> Any:
    """In-memory COCO ground truth from the uncompressed run's predictions (score >= threshold).
    Images / categories default to those seen in ``ref_dets``."""
    from pycocotools.coco import COCO

    kept = [d for d in ref_dets if d["score"] >= score_threshold]
    ids = set(int(i) for i in img_ids) if img_ids is not None else {int(d["image_id"]) for d in ref_dets}
    cats = (set(int(c) for c in category_ids) if category_ids is not None
            else {int(d["category_id"]) for d in ref_dets})
    sizes: dict[int, list[int]] = {}
    anns = []
    for n, d in enumerate(kept, start=1):
        a: dict[str, Any] = {"id": n, "image_id": int(d["image_id"]),
                             "category_id": int(d["category_id"]), "iscrowd": 0,
                             "bbox": [float(v) for v in d["bbox"]]}
        a["area"] = a["bbox"][2] * a["bbox"][3]
        if "segmentation" in d:
            a["segmentation"] = d["segmentation"]
            if isinstance(d["segmentation"], dict):  # RLE: true mask area, and the image size
                a["area"] = _rle_area(d["segmentation"])
                sizes.setdefault(a["image_id"], list(d["segmentation"]["size"]))
        if "keypoints" in d:
            a["keypoints"] = [float(v) for v in d["keypoints"]]
            a["num_keypoints"] = int(np.count_nonzero(np.asarray(a["keypoints"][2::3]) > 0))
        anns.append(a)
    images = []
    for i in sorted(ids | {a["image_id"] for a in anns}):
        im: dict[str, Any] = {"id": i}
        if i in sizes:
            im["height"], im["width"] = sizes[i]
        images.append(im)
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c, "name": str(c)} for c in sorted(cats)]}
    with _quiet():
        gt.createIndex()
    return gt


def fidelity_ap(ref_dets: Sequence[dict[str, Any]], test_dets: Sequence[dict[str, Any]],
                iou_type: str = "bbox", score_threshold: float = 0.5,
                img_ids: Iterable[int] | None = None) -> dict[str, Any]:
    """AP of the compressed run scored against the uncompressed run's predictions (those with
    score >= ``score_threshold``) as pseudo ground truth. Same keys as :func:`coco_ap`.
    ``img_ids``: the images both runs covered (default: every image id in either list, so an
    image where ref found nothing still penalises test's false positives there)."""
    _check_iou_type(iou_type)
    ids = (set(int(i) for i in img_ids) if img_ids is not None
           else {int(d["image_id"]) for d in (*ref_dets, *test_dets)})
    cats = {int(d["category_id"]) for d in (*ref_dets, *test_dets)}
    gt = build_pseudo_gt(ref_dets, score_threshold, ids, cats)
    return coco_ap(gt, test_dets, iou_type, img_ids=ids)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().float() if x.is_floating_point() else x.detach().cpu()
        return x.numpy()
    return np.asarray(x)


def to_coco_results(outputs: Sequence[dict[str, Any]], image_ids: Sequence[int],
                    mask_threshold: float = 0.5, label_map: dict[int, int] | None = None
                    ) -> list[dict[str, Any]]:
    """torchvision detection outputs -> COCO result dicts.

    ``outputs[i]`` holds ``boxes`` [N,4] xyxy, ``labels`` [N], ``scores`` [N] and optionally
    ``masks`` [N,1,H,W] probabilities (thresholded at ``mask_threshold``, RLE-encoded) and
    ``keypoints`` [N,K,3]. Boxes must already be in the original image's pixel coordinates
    (torchvision's detection models rescale them). torchvision's COCO-pretrained models
    predict *COCO category ids* (the 91-index scheme with gaps: 1=person ... 90=toothbrush),
    so labels are used as ``category_id`` unchanged; ``label_map`` translates other schemes."""
    from pycocotools import mask as mask_utils

    if len(outputs) != len(image_ids):
        raise InputError(f"to_coco_results: {len(outputs)} outputs vs {len(image_ids)} image ids")
    res: list[dict[str, Any]] = []
    for out, img_id in zip(outputs, image_ids):
        boxes = _np(out["boxes"]).reshape(-1, 4).astype(np.float64)
        labels = _np(out["labels"]).reshape(-1)
        scores = _np(out["scores"]).reshape(-1)
        if not (len(boxes) == len(labels) == len(scores)):
            raise InputError(f"to_coco_results: image {img_id}: boxes/labels/scores lengths differ")
        rles = None
        if "masks" in out:
            m = _np(out["masks"])
            m = m.reshape(m.shape[0], *m.shape[-2:]) >= mask_threshold
            rles = mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))
        kps = _np(out["keypoints"]).reshape(len(boxes), -1) if "keypoints" in out else None
        for j in range(len(boxes)):
            x1, y1, x2, y2 = boxes[j]
            lab = int(labels[j])
            d: dict[str, Any] = {"image_id": int(img_id),
                                 "category_id": label_map[lab] if label_map else lab,
                                 "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                                 "score": float(scores[j])}
            if rles is not None:
                rle = dict(rles[j])
                rle["counts"] = rle["counts"].decode("ascii")  # JSON-serialisable
                d["segmentation"] = rle
            if kps is not None:
                d["keypoints"] = [float(v) for v in kps[j]]
            res.append(d)
    return res
