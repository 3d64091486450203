"""What a network's output is for: one object per task owns how its models are cut (its
`Split` class), batching, default transforms, per-image scoring and the dataset-level summary,
so nothing else branches on task names.

Registry: TASKS (name → Task). A new task = one subclass here (with its Split class in
vcfc.runners.splits if the network must be cut differently) and one entry in TASKS.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.segmentation.deeplabv3 import DeepLabV3
from torchvision.models.segmentation.fcn import FCN

from vcfc.errors import InputError
from vcfc.registry import Registry
from vcfc.results.aggregate import STAGES
from vcfc.results.coco import coco_ap, fidelity_ap, to_coco_results
from vcfc.results.metrics import ConfusionMatrix, output_kl, output_mse, pixel_fidelity, top1_fidelity, topk_accuracy

from .splits import ClassifierSplit, RCNNSplit, SegmentationSplit, Split


class Task:
    """Base: a task scores coded outputs against the uncompressed run's."""

    name = ""
    description = ""
    batchable = True             # several images per forward pass (same size after transforms)
    channel_sensitivity = False  # per-channel sensitivity sweeps and per-image allocation apply
    model_types: tuple[type, ...] = ()
    split_class: type[Split] = ClassifierSplit

    def make_split(self, model: nn.Module, name: str, at: str, module_path: str, transforms: Callable,
                   device: torch.device, send_p6: bool = True) -> Split:
        """The model cut at ``module_path`` (``at``: what the user asked for)."""
        return self.split_class(model, name, at, module_path, transforms, device, task=self.name)

    def run_model(self, model: nn.Module, x: Tensor) -> Any:
        """The whole network on a normalised float batch: this task's output (the `input` split's tail)."""
        return model(x)

    def default_transforms(self) -> Callable:
        """Preprocessing when the weights carry none (random init, checkpoint)."""
        raise NotImplementedError

    def batch_size(self, requested: int) -> int:
        return requested if self.batchable else 1

    def score(self, ref: Any, out: Any, targets: Any, image_ids: Sequence[str]) -> list[dict[str, Any]]:
        """One dict of scores per image of `out` against the uncompressed `ref` (and labels)."""
        raise NotImplementedError

    def summarize(self, rows: list[dict[str, Any]], coco_gt: Any = None) -> dict[str, Any]:
        """Task metrics over the rows of ONE configuration (rows already filtered to status ok)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Task({self.name!r})"


class Classification(Task):
    name = "classification"
    description = "top-1 fidelity (Chen et al.), top-1/top-5 accuracy with labels, output MSE/KL"
    channel_sensitivity = True

    def default_transforms(self) -> Callable:
        return torchvision.models.ResNet50_Weights.IMAGENET1K_V1.transforms()

    def score(self, ref, out, targets, image_ids):
        n = len(image_ids)
        k5 = min(5, out.shape[1])
        mse, kl = output_mse(ref, out), output_kl(ref, out)
        labels = _labels(targets, n)
        rows = []
        for i in range(n):
            row = {"fidelity": top1_fidelity(ref[i], out[i]), "ref_top1_class": int(ref[i].argmax()),
                   "top1_class": int(out[i].argmax()), "output_mse": float(mse[i]), "output_kl": float(kl[i]),
                   "top1": np.nan, "top5": np.nan, "label": -1}
            if labels is not None:
                acc = topk_accuracy(out[i], labels[i : i + 1], (1, k5))
                row.update(label=int(labels[i]), top1=acc["top1"], top5=acc[f"top{k5}"])
            rows.append(row)
        return rows

    def summarize(self, rows, coco_gt=None):
        out = {"fidelity": _mean(rows, "fidelity"), "output_mse": _mean(rows, "output_mse"),
               "output_kl": _mean(rows, "output_kl")}
        if all(r["label"] >= 0 for r in rows):
            out["top1"] = _mean(rows, "top1")
            out["top5"] = _mean(rows, "top5")
        return out


class Segmentation(Task):
    name = "segmentation"
    description = "pixel fidelity (share of pixels whose class agrees), mIoU with labels"
    model_types = (FCN, DeepLabV3)
    split_class = SegmentationSplit

    def run_model(self, model, x):
        return model(x)["out"]  # the per-pixel logits at input resolution (the aux head not run)

    def default_transforms(self) -> Callable:
        return torchvision.models.segmentation.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1.transforms()

    def score(self, ref, out, targets, image_ids):
        rows = []
        for i in range(len(image_ids)):
            rc, tc = ref[i].argmax(0), out[i].argmax(0)
            row = {"fidelity": pixel_fidelity(rc, tc),
                   "output_mse": float(output_mse(ref[i : i + 1], out[i : i + 1])[0]), "confusion": ""}
            label = None if targets is None else targets[i]
            if isinstance(label, torch.Tensor) and label.shape == tc.shape:
                cm = ConfusionMatrix(out.shape[1]).update(tc, label)
                row["confusion"] = json.dumps(cm.matrix.astype(int).tolist())
            rows.append(row)
        return rows

    def summarize(self, rows, coco_gt=None):
        out = {"fidelity": _mean(rows, "fidelity")}
        mats = [np.array(json.loads(r["confusion"])) for r in rows if r.get("confusion")]
        if mats and len(mats) == len(rows):
            cm = ConfusionMatrix(mats[0].shape[0])
            cm.matrix = sum(mats)
            out["miou"] = float(cm.miou())
        return out


class Detection(Task):
    """R-CNN outputs; fidelity = AP of the coded run scored against the uncompressed run's detections."""

    name = "detection"
    description = "fidelity AP against the uncompressed run's detections; COCO AP with annotations"
    batchable = False  # images keep their own sizes
    model_types = (FasterRCNN, GeneralizedRCNN)
    extra_iou_types: tuple[tuple[str, str], ...] = ()  # (COCO iou type, detection key)
    split_class = RCNNSplit

    def run_model(self, model, x):
        return model(list(x))  # R-CNN takes a list of [0, 1] images and normalises them itself

    def make_split(self, model, name, at, module_path, transforms, device, send_p6=True):
        if module_path not in ("backbone", "fpn"):
            raise InputError(f"{name}: R-CNN models split after the FPN only: use at='fpn'")
        return RCNNSplit(model, name, at, "backbone", transforms, device, task=self.name, send_p6=send_p6)

    def default_transforms(self) -> Callable:
        return torchvision.models.detection.FasterRCNN_ResNet50_FPN_Weights.COCO_V1.transforms()

    def score(self, ref, out, targets, image_ids):
        rows = []
        for i in range(len(image_ids)):
            target = None if targets is None else targets[i]
            coco_id = int(target["image_id"]) if isinstance(target, dict) and "image_id" in target else i
            rows.append({"fidelity": np.nan, "coco_image_id": coco_id,
                         "ref_dets": json.dumps(to_coco_results([ref[i]], [coco_id])),
                         "dets": json.dumps(to_coco_results([out[i]], [coco_id]))})
        return rows

    def summarize(self, rows, coco_gt=None):
        ref = [d for r in rows for d in json.loads(r["ref_dets"])]
        test = [d for r in rows for d in json.loads(r["dets"])]
        ids = sorted({int(r["coco_image_id"]) for r in rows})
        out = {"fidelity": float(fidelity_ap(ref, test, img_ids=ids)["AP"])}
        extra = [t for t, key in self.extra_iou_types if test and key in test[0]]
        for iou_type in extra:
            out[f"fidelity_{iou_type}"] = float(fidelity_ap(ref, test, iou_type=iou_type, img_ids=ids)["AP"])
        if coco_gt is not None:
            out["ap"] = float(coco_ap(coco_gt, test, img_ids=ids)["AP"])
            for iou_type in extra:
                if iou_type == "segm" or any(a.get("num_keypoints") for a in coco_gt.dataset.get("annotations", [])):
                    out[f"ap_{iou_type}"] = float(coco_ap(coco_gt, test, iou_type=iou_type, img_ids=ids)["AP"])
        return out


class Instance(Detection):
    name = "instance"
    description = "Mask R-CNN: box and mask fidelity AP; COCO AP (bbox, segm) with annotations"
    model_types = (MaskRCNN,)
    extra_iou_types = (("segm", "segmentation"),)


class Keypoints(Detection):
    name = "keypoints"
    description = "Keypoint R-CNN: box and keypoint fidelity AP; COCO AP with annotations"
    model_types = (KeypointRCNN,)
    extra_iou_types = (("keypoints", "keypoints"),)


# Order matters for task_of_model: the most specific model types first.
TASKS: Registry[Task] = Registry("task", [(t.name, t) for t in (
    Instance(), Keypoints(), Detection(), Segmentation(), Classification())])


def get_task(name: str) -> Task:
    return TASKS.get(name)


def task_of_model(model: nn.Module) -> Task:
    """The task a built torchvision model performs (classification unless a known type)."""
    for task in TASKS.values():
        if task.model_types and isinstance(model, task.model_types):
            return task
    return TASKS["classification"]


def summarize(rows: Iterable[dict[str, Any]], task: str | Task, coco_gt: Any = None) -> dict[str, Any]:
    """Dataset-level metrics from per-image rows of ONE configuration: rate, the task's metrics,
    mean seconds per stage."""
    t = task if isinstance(task, Task) else get_task(task)
    rows = [r for r in rows if r.get("status", "ok") == "ok"]
    if not rows:
        return {"images": 0}
    nbytes = np.array([r["bytes"] for r in rows], float)
    out: dict[str, Any] = {
        "images": len(rows),
        "bytes_per_image": float(nbytes.mean()),
        "side_info_bytes_per_image": _mean(rows, "side_info_bytes"),
        "bpfe": float(8 * nbytes.sum() / sum(r["elements"] for r in rows)),
        "bpp": _mean(rows, "bpp"),
    }
    out.update(t.summarize(rows, coco_gt=coco_gt))
    for stage in STAGES:
        out[f"{stage}_per_image"] = float(np.mean([r.get(stage, 0.0) for r in rows]))
    return out


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def _labels(targets: Any, n: int) -> torch.Tensor | None:
    if targets is None:
        return None
    if isinstance(targets, torch.Tensor):
        return targets
    vals = list(targets)
    if all(isinstance(t, int) for t in vals) and len(vals) == n:
        return torch.tensor(vals)
    return None
