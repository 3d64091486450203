"""head → encode → decode → tail over a dataset, scored against the uncompressed run.

`evaluate_batch` is the unit of work shared by `vcfc eval` and the experiment grid: the head
runs once per batch and its features are reused for every coding configuration. It returns one
row (a flat dict) per (image, configuration); `summarize` turns rows into the task's metrics.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch

import vcfc
from results.metrics import ConfusionMatrix, output_kl, output_mse

from .datasets import Batch
from .models import FeatureDict, Split

NO_CODEC = "none"


@dataclass(frozen=True)
class CodingConfig:
    """How one image's features are coded. codec "none" is the uncompressed reference."""

    codec: str = "x265"
    qp: int | None = None
    quant: str = "minmax"
    bits: int = 8
    layout: str = "mosaic"
    preset: str | None = None
    allocation: str = "uniform"  # label only; the QPs themselves are in channel_qps
    channel_qps: tuple[int, ...] | None = field(default=None, compare=False, hash=False)

    def label(self) -> str:
        if self.codec == NO_CODEC:
            return "none"
        parts = [self.codec, self.preset or "default", self.quant, f"{self.bits}b", self.layout, self.allocation]
        return "/".join(parts)

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("channel_qps")
        return d


def _per_image(features: Any, i: int) -> Any:
    if isinstance(features, dict):
        return {k: v[i] for k, v in features.items()}
    return features[i]


def _restack(items: list[Any], like: Any) -> Any:
    if isinstance(like, dict):
        out = {k: torch.stack([it[k] for it in items]) for k in like}
        return FeatureDict(out, meta=getattr(like, "meta", None))
    return torch.stack(items)


def _elements(features: Any) -> int:
    return sum(v.numel() for v in features.values()) if isinstance(features, dict) else features.numel()


def code_features(features: Any, cfg: CodingConfig, input_hw: tuple[int, int], ffmpeg: str | None = None) -> tuple[Any, dict[str, Any]]:
    """Code one image's features (C×H×W tensor or dict); return the reconstruction and rate stats."""
    n = _elements(features)
    if cfg.codec == NO_CODEC:
        nbytes = 4 * n  # float32 as sent uncompressed
        return features, {"bytes": nbytes, "side_info_bytes": 0, "elements": n, "bpfe": 32.0,
                          "bpp": 8.0 * nbytes / (input_hw[0] * input_hw[1])}
    cpu = {k: v.detach().cpu() for k, v in features.items()} if isinstance(features, dict) else features.detach().cpu()
    t: dict[str, float] = {}
    data = vcfc.encode(
        cpu, codec=cfg.codec, qp=None if cfg.channel_qps is not None else cfg.qp,
        channel_qps=list(cfg.channel_qps) if cfg.channel_qps is not None else None,
        quant=cfg.quant, bits=cfg.bits, layout=cfg.layout, preset=cfg.preset,
        input_size=input_hw, ffmpeg=ffmpeg, timings=t,
    )
    recon = vcfc.decode(data, ffmpeg=ffmpeg, timings=t)
    info = vcfc.inspect(data)
    if isinstance(features, dict):
        recon = {k: v.to(features[k].device) for k, v in recon.items()}
    else:
        recon = recon.to(features.device)
    return recon, {
        "bytes": info["bytes"], "side_info_bytes": info["side_info_bytes"], "elements": n,
        "bpfe": info["bpfe"], "bpp": info["bpp"],
        "quant_s": t.get("quantize", 0.0), "pack_s": t.get("pack", 0.0),
        "encode_s": t.get("encode", 0.0), "decode_s": t.get("decode", 0.0) + t.get("dequantize", 0.0),
    }


def evaluate_batch(split: Split, batch: Batch, configs: Sequence[CodingConfig], ffmpeg: str | None = None) -> list[dict[str, Any]]:
    """Run one batch through head once and through tail per configuration; one row per image × config."""
    images = batch.images
    if isinstance(images, list) and split.task in ("classification", "segmentation"):
        # Images of different sizes (e.g. segmentation transforms keep the aspect): one at a time.
        return [row for i in range(len(images)) for row in evaluate_batch(split, _one(batch, i), configs, ffmpeg)]
    t0 = time.perf_counter()
    features = split.head(images)
    head_s = (time.perf_counter() - t0) / len(batch.image_ids)
    meta = dict(getattr(features, "meta", None) or split.last_meta)
    t0 = time.perf_counter()
    ref = split.tail(features, meta=meta)
    ref_tail_s = (time.perf_counter() - t0) / len(batch.image_ids)
    input_hw = _input_hw(images)
    rows: list[dict[str, Any]] = []
    for cfg in configs:
        # ffmpeg runs out of process, so threads code the batch's images in parallel.
        n_img = len(batch.image_ids)
        with ThreadPoolExecutor(max(1, min(n_img, os.cpu_count() or 1))) as pool:
            coded = list(pool.map(lambda i: code_features(_per_image(features, i), cfg, input_hw[i], ffmpeg), range(n_img)))
        recons = [r for r, _ in coded]
        stats = [s for _, s in coded]
        t0 = time.perf_counter()
        out = ref if cfg.codec == NO_CODEC else split.tail(_restack(recons, features), meta=meta)
        tail_s = ref_tail_s if cfg.codec == NO_CODEC else (time.perf_counter() - t0) / len(batch.image_ids)
        scores = score_outputs(split.task, ref, out, batch.targets, batch.image_ids)
        for i, image_id in enumerate(batch.image_ids):
            rows.append({
                "image_id": image_id, "config": cfg.label(), **cfg.describe(),
                "qp": -1 if cfg.qp is None else int(cfg.qp),
                "mean_qp": float(np.mean(cfg.channel_qps)) if cfg.channel_qps is not None else float(cfg.qp if cfg.qp is not None else -1),
                **stats[i], "head_s": head_s, "tail_s": tail_s, **scores[i], "status": "ok", "error": "",
            })
    return rows


def _one(batch: Batch, i: int) -> Batch:
    targets = None if batch.targets is None else batch.targets[i : i + 1]
    return Batch(image_ids=batch.image_ids[i : i + 1], images=batch.images[i][None], targets=targets, paths=batch.paths[i : i + 1])


def _input_hw(images: Any) -> list[tuple[int, int]]:
    if isinstance(images, torch.Tensor):
        return [tuple(images.shape[-2:])] * images.shape[0]
    return [tuple(im.shape[-2:]) for im in images]


def score_outputs(task: str, ref: Any, out: Any, targets: Any, image_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Per-image scores of `out` against the uncompressed `ref` (and the labels, when present)."""
    n = len(image_ids)
    if task == "classification":
        ref_top1 = ref.argmax(1)
        test_top5 = out.topk(min(5, out.shape[1]), dim=1).indices
        mse, kl = output_mse(ref, out), output_kl(ref, out)
        labels = _labels(targets, n)
        rows = []
        for i in range(n):
            row = {"fidelity": float(test_top5[i, 0] == ref_top1[i]), "ref_top1_class": int(ref_top1[i]),
                   "top1_class": int(test_top5[i, 0]), "output_mse": float(mse[i]), "output_kl": float(kl[i]),
                   "top1": np.nan, "top5": np.nan, "label": -1}
            if labels is not None:
                row.update(label=int(labels[i]), top1=float(test_top5[i, 0] == labels[i]),
                           top5=float(bool((test_top5[i] == labels[i]).any())))
            rows.append(row)
        return rows
    if task == "segmentation":
        rows = []
        for i in range(n):
            rc, tc = ref[i].argmax(0), out[i].argmax(0)
            row = {"fidelity": float((rc == tc).float().mean()), "output_mse": float(output_mse(ref[i : i + 1], out[i : i + 1])[0]), "confusion": ""}
            label = _item(targets, i)
            if isinstance(label, torch.Tensor) and label.shape == tc.shape:
                cm = ConfusionMatrix(out.shape[1]).update(tc, label)
                row["confusion"] = json.dumps(cm.matrix.astype(int).tolist())
            rows.append(row)
        return rows
    # detection / instance / keypoints: detections are kept as JSON for AP over the whole set
    rows = []
    for i in range(n):
        target = _item(targets, i)
        coco_id = int(target["image_id"]) if isinstance(target, dict) and "image_id" in target else i
        rows.append({"fidelity": np.nan, "coco_image_id": coco_id,
                     "ref_dets": json.dumps(_dets(ref[i], coco_id)), "dets": json.dumps(_dets(out[i], coco_id))})
    return rows


def _dets(output: dict[str, Any], coco_id: int) -> list[dict[str, Any]]:
    from results.coco import to_coco_results

    return to_coco_results([output], [coco_id])


def _item(targets: Any, i: int) -> Any:
    if targets is None:
        return None
    return targets[i]


def _labels(targets: Any, n: int) -> torch.Tensor | None:
    if targets is None:
        return None
    if isinstance(targets, torch.Tensor):
        return targets
    vals = [t for t in targets]
    if all(isinstance(t, int) for t in vals) and len(vals) == n:
        return torch.tensor(vals)
    return None


def summarize(rows: Iterable[dict[str, Any]], task: str, coco_gt: Any = None) -> dict[str, Any]:
    """Dataset-level metrics from per-image rows of ONE configuration."""
    rows = [r for r in rows if r.get("status", "ok") == "ok"]
    if not rows:
        return {"images": 0}
    nbytes = np.array([r["bytes"] for r in rows], float)
    out: dict[str, Any] = {
        "images": len(rows),
        "bytes_per_image": float(nbytes.mean()),
        "side_info_bytes_per_image": float(np.mean([r["side_info_bytes"] for r in rows])),
        "bpfe": float(8 * nbytes.sum() / sum(r["elements"] for r in rows)),
        "bpp": float(np.mean([r["bpp"] for r in rows])),
    }
    if task == "classification":
        out["fidelity"] = float(np.mean([r["fidelity"] for r in rows]))
        out["output_mse"] = float(np.mean([r["output_mse"] for r in rows]))
        out["output_kl"] = float(np.mean([r["output_kl"] for r in rows]))
        if all(r["label"] >= 0 for r in rows):
            out["top1"] = float(np.mean([r["top1"] for r in rows]))
            out["top5"] = float(np.mean([r["top5"] for r in rows]))
    elif task == "segmentation":
        out["fidelity"] = float(np.mean([r["fidelity"] for r in rows]))
        mats = [np.array(json.loads(r["confusion"])) for r in rows if r.get("confusion")]
        if mats and len(mats) == len(rows):
            cm = ConfusionMatrix(mats[0].shape[0])
            cm.matrix = sum(mats)
            out["miou"] = float(cm.miou())
    else:
        from results.coco import coco_ap, fidelity_ap

        ref = [d for r in rows for d in json.loads(r["ref_dets"])]
        test = [d for r in rows for d in json.loads(r["dets"])]
        ids = sorted({int(r["coco_image_id"]) for r in rows})
        out["fidelity"] = float(fidelity_ap(ref, test, img_ids=ids)["AP"])
        # Masks and keypoints are scored too when the model predicts them (Mask / Keypoint R-CNN).
        extra = [t for t, key in (("segm", "segmentation"), ("keypoints", "keypoints")) if test and key in test[0]]
        for iou_type in extra:
            out[f"fidelity_{iou_type}"] = float(fidelity_ap(ref, test, iou_type=iou_type, img_ids=ids)["AP"])
        if coco_gt is not None:
            out["ap"] = float(coco_ap(coco_gt, test, img_ids=ids)["AP"])
            for iou_type in extra:
                if iou_type == "segm" or any(a.get("num_keypoints") for a in coco_gt.dataset.get("annotations", [])):
                    out[f"ap_{iou_type}"] = float(coco_ap(coco_gt, test, iou_type=iou_type, img_ids=ids)["AP"])
    for stage in ("head_s", "quant_s", "pack_s", "encode_s", "decode_s", "tail_s"):
        vals = [r.get(stage, 0.0) for r in rows]
        out[f"{stage}_per_image"] = float(np.mean(vals))
    return out
