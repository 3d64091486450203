"""Task metrics: hand-made arrays with known answers; COCO AP known answers on coco128."""

from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vcfc.errors import InputError
from vcfc.results.coco import build_pseudo_gt, coco_ap, fidelity_ap, to_coco_results
from vcfc.results.metrics import (
    ConfusionMatrix,
    miou,
    output_kl,
    output_mse,
    pixel_fidelity,
    top1_fidelity,
    topk_accuracy,
)

SHARED = Path(os.environ.get("VCFC_SHARED", Path(__file__).parents[1].parent / "shared"))
COCO128 = SHARED / "data" / "coco128" / "annotations" / "instances.json"

AP_TOL = 1e-12  # pycocotools divides by (tp + fp + np.spacing(1)), so "1" is 1 - 2e-16


def ap(x: float):
    return pytest.approx(x, abs=AP_TOL)


# ---------------------------------------------------------------- classification

def test_top1_fidelity_known():
    ref = np.array([[1, 2, 3], [3, 2, 1], [0, 5, 0], [1, 0, 0]], float)
    test = np.array([[0, 0, 9], [0, 9, 0], [0, 5, 0], [0, 0, 1]], float)
    assert top1_fidelity(ref, test) == 0.5
    assert top1_fidelity(torch.tensor(ref), torch.tensor(ref)) == 1.0
    assert top1_fidelity(ref[0], test[0]) == 1.0  # a single [C] vector is one image
    with pytest.raises(InputError, match="shapes differ"):
        top1_fidelity(ref, test[:3])


def test_topk_accuracy_known():
    logits = torch.tensor([[0.9, 0.1, 0.0, 0.0, 0.0, 0.0],   # label 0: top1 hit
                           [0.1, 0.9, 0.8, 0.0, 0.0, 0.0],   # label 2: 2nd -> top5 hit
                           [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],   # label 5: 6th -> miss
                           [0.0, 0.0, 0.0, 0.0, 0.2, 0.1]])  # label 5: 2nd -> top5 hit
    labels = torch.tensor([0, 2, 5, 5])
    assert topk_accuracy(logits, labels) == {"top1": 0.25, "top5": 0.75}
    assert topk_accuracy(logits.numpy(), labels.numpy(), k=2) == {"top2": 0.75}
    with pytest.raises(InputError, match="k="):
        topk_accuracy(logits, labels, k=(7,))
    with pytest.raises(InputError):
        topk_accuracy(logits, labels[:3])


# ---------------------------------------------------------------- segmentation

def test_pixel_fidelity_known():
    ref = np.array([[0, 1, 2], [2, 2, 255]])
    test = np.array([[0, 1, 1], [2, 0, 3]])
    assert pixel_fidelity(ref, test) == pytest.approx(3 / 6)
    assert pixel_fidelity(ref, test, ignore_index=255) == pytest.approx(3 / 5)
    assert pixel_fidelity(torch.tensor(ref)[None], torch.tensor(ref)[None]) == 1.0


PRED = np.array([[0, 0, 1], [1, 2, 2]])
LABEL = np.array([[0, 1, 1], [255, 2, 0]])
# confusion (rows label, cols pred): l0: p0, p2 | l1: p0, p1 | l2: p2 -> IoU 1/3, 1/2, 1/2


def test_miou_known():
    assert miou(PRED, LABEL, num_classes=3) == pytest.approx((1 / 3 + 1 / 2 + 1 / 2) / 3)
    cm = ConfusionMatrix(4).update(PRED, LABEL)  # class 3 absent everywhere: left out of the mean
    np.testing.assert_allclose(cm.iou()[:3], [1 / 3, 1 / 2, 1 / 2])
    assert math.isnan(cm.iou()[3])
    assert cm.miou() == pytest.approx(4 / 9)
    assert cm.pixel_acc() == pytest.approx(3 / 5)
    assert cm.matrix.tolist() == [[1, 0, 1, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]


def test_confusion_matrix_accumulates():
    rng = np.random.default_rng(0)
    preds = rng.integers(0, 5, size=(3, 8, 9))
    labels = rng.integers(0, 5, size=(3, 8, 9))
    labels[:, 0] = 255
    cm = ConfusionMatrix(5)
    for p, t in zip(preds, labels):
        cm.update(torch.from_numpy(p), torch.from_numpy(t))
    whole = ConfusionMatrix(5).update(preds, labels)
    assert (cm.matrix == whole.matrix).all() and cm.miou() == whole.miou()
    assert cm.matrix.sum() == 3 * 7 * 9
    with pytest.raises(InputError, match="label values"):
        ConfusionMatrix(5).update(preds, np.full_like(labels, 7))
    with pytest.raises(InputError, match="predicted classes"):
        ConfusionMatrix(5).update(preds + 5, labels)
    with pytest.raises(InputError, match="no pixels"):
        ConfusionMatrix(5).miou()


# ---------------------------------------------------------------- output distances

def test_output_mse_per_image():
    ref = np.array([[0.0, 0.0], [1.0, 1.0]])
    test = np.array([[1.0, 1.0], [1.0, 3.0]])
    np.testing.assert_allclose(output_mse(ref, test), [1.0, 2.0])
    dense = torch.zeros(2, 3, 4, 4)
    np.testing.assert_allclose(output_mse(dense, dense + torch.tensor([1.0, 2.0])[:, None, None, None]),
                               [1.0, 4.0])


def test_output_kl_known_and_stable():
    ref = np.array([[0.0, math.log(3.0)]])  # softmax -> [1/4, 3/4]
    test = np.array([[0.0, 0.0]])           # softmax -> [1/2, 1/2]
    want = 0.25 * math.log(0.5) + 0.75 * math.log(1.5)
    np.testing.assert_allclose(output_kl(ref, test), [want], rtol=1e-12)
    big = torch.tensor([[1e4, -1e4, 0.0], [5e3, 5e3, -5e3]])
    kl = output_kl(big, big.flip(1))
    assert np.isfinite(kl).all() and (kl > 0).all()
    np.testing.assert_allclose(output_kl(big, big), [0.0, 0.0], atol=1e-12)
    # dense [N,C,H,W]: per-pixel KL averaged over pixels
    r = torch.zeros(1, 2, 1, 2, dtype=torch.float64)
    r[0, 1, 0, 0] = math.log(3.0)
    np.testing.assert_allclose(output_kl(r, torch.zeros_like(r)), [want / 2], rtol=1e-12)


# ---------------------------------------------------------------- COCO AP

@pytest.fixture(scope="module")
def coco_gt():
    if not COCO128.is_file():
        pytest.skip(f"shared data {COCO128} absent (set VCFC_SHARED to the shared/ folder)")
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(COCO128))


def _gt_as_dets(gt, iou_type="bbox"):
    out = []
    for a in gt.dataset["annotations"]:
        if a["iscrowd"]:
            continue
        d = {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0}
        if iou_type == "bbox":
            d["bbox"] = list(a["bbox"])
        else:
            rle = gt.annToRLE(a)  # polygons and uncompressed RLE -> compressed RLE
            d["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()
                                 if isinstance(rle["counts"], bytes) else rle["counts"]}
        out.append(d)
    return out


@pytest.mark.shared
def test_gt_as_predictions_scores_one(coco_gt, capsys):
    r = coco_ap(coco_gt, _gt_as_dets(coco_gt))
    assert r["AP"] == ap(1.0) and r["AP50"] == ap(1.0) and r["AP75"] == ap(1.0)
    assert len(r["stats"]) == 12
    r = coco_ap(coco_gt, _gt_as_dets(coco_gt, "segm"), iou_type="segm")
    assert r["AP"] == ap(1.0)
    assert capsys.readouterr().out == ""  # pycocotools' prints are silenced


def _single_instance_image(gt):
    for img_id in sorted(gt.getImgIds()):
        anns = gt.imgToAnns.get(img_id, [])
        if len(anns) == 1 and not anns[0]["iscrowd"]:
            return img_id, anns[0]
    raise AssertionError("coco128 has no single-instance image")


@pytest.mark.shared
def test_shifted_box_hand_computed_ap(coco_gt):
    img_id, ann = _single_instance_image(coco_gt)
    x, y, w, h = ann["bbox"]
    # Shift right by w/5: IoU = (w - w/5) / (w + w/5) = 2/3. Of the 10 thresholds
    # .50:.05:.95 it passes .50 .55 .60 .65 (AP 1 each) and fails the other 6 (AP 0).
    det = {"image_id": img_id, "category_id": ann["category_id"], "bbox": [x + w / 5, y, w, h],
           "score": 0.9}
    r = coco_ap(coco_gt, [det], img_ids=[img_id])
    assert r["AP50"] == ap(1.0) and r["AP75"] == ap(0.0)
    assert r["AP"] == ap(4 / 10)
    assert r["AR100"] == ap(4 / 10)
    # An exact box ranked below a higher-scored false positive: the PR curve is
    # (recall 0, precision 0) then (1, 1/2); interpolated precision is 1/2 at every recall
    # threshold, at every IoU threshold -> AP = 0.5.
    fp = {"image_id": img_id, "category_id": ann["category_id"],
          "bbox": [x + 3 * w, y + 3 * h, w, h], "score": 0.95}
    exact = dict(det, bbox=[x, y, w, h])
    r = coco_ap(coco_gt, [fp, exact], img_ids=[img_id])
    assert r["AP"] == ap(0.5) and r["AP50"] == ap(0.5) and r["AP75"] == ap(0.5)


@pytest.mark.shared
def test_empty_detections(coco_gt):
    r = coco_ap(coco_gt, [])
    assert r["AP"] == 0.0 and r["AP50"] == 0.0 and r["AR100"] == 0.0
    assert coco_ap(coco_gt, [], iou_type="segm")["AP"] == 0.0


@pytest.mark.shared
def test_bad_detections(coco_gt):
    with pytest.raises(InputError, match="not in the ground truth"):
        coco_ap(coco_gt, [{"image_id": -5, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}])
    with pytest.raises(InputError, match="segmentation"):
        coco_ap(coco_gt, [{"image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}],
                iou_type="segm")
    with pytest.raises(InputError, match="iou_type"):
        coco_ap(coco_gt, [], iou_type="mask")


@pytest.mark.shared
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools mask.decode vs numpy 2
def test_to_coco_results_round_trip(coco_gt):
    """torchvision-shaped outputs made from the ground truth convert back to AP 1 (bbox, segm)."""
    img_ids = sorted(coco_gt.getImgIds())[:20]
    outputs = []
    for i in img_ids:
        anns = [a for a in coco_gt.imgToAnns.get(i, []) if not a["iscrowd"]]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        info = coco_gt.imgs[i]
        masks = torch.zeros(len(anns), 1, info["height"], info["width"])
        for j, a in enumerate(anns):
            masks[j, 0] = torch.from_numpy(coco_gt.annToMask(a)).float()
        outputs.append({"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in anns]),
                        "scores": torch.ones(len(anns)), "masks": masks})
    dets = to_coco_results(outputs, img_ids)
    assert len(dets) == sum(len(o["labels"]) for o in outputs)
    assert isinstance(dets[0]["segmentation"]["counts"], str)
    assert coco_ap(coco_gt, dets, "bbox", img_ids=img_ids)["AP"] == pytest.approx(1.0, abs=1e-6)
    assert coco_ap(coco_gt, dets, "segm", img_ids=img_ids)["AP"] == ap(1.0)


# ---------------------------------------------------------------- fidelity AP

def _random_dets(seed, n_img=6, per_img=8):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(1, n_img + 1):
        xy = rng.uniform(0, 400, (per_img, 2))
        wh = rng.uniform(10, 150, (per_img, 2))
        for j in range(per_img):
            out.append({"image_id": i, "category_id": int(rng.integers(1, 4)),
                        "bbox": [*map(float, xy[j]), *map(float, wh[j])],
                        "score": float(rng.uniform(0.05, 1.0))})
    return out


def test_fidelity_ap_identity_and_degradation():
    ref = _random_dets(0)
    assert fidelity_ap(ref, ref)["AP"] == ap(1.0)
    # the pseudo gt keeps only score >= threshold
    gt = build_pseudo_gt(ref, score_threshold=0.5)
    assert len(gt.getAnnIds()) == sum(d["score"] >= 0.5 for d in ref)
    # shifting every box by w/5 (IoU 2/3) -> AP50 1, AP75 0, AP 0.4 exactly as for coco128
    shifted = [dict(d, bbox=[d["bbox"][0] + d["bbox"][2] / 5, *d["bbox"][1:]]) for d in ref]
    r = fidelity_ap(ref, shifted)
    assert r["AP50"] == ap(1.0) and r["AP75"] == ap(0.0) and r["AP"] == ap(0.4)
    assert fidelity_ap(ref, [])["AP"] == 0.0


def test_fidelity_ap_keypoints():
    rng = np.random.default_rng(1)
    ref = []
    for i in range(1, 4):
        for _ in range(3):
            x0, y0 = rng.uniform(0, 300, 2)
            kp = np.stack([x0 + rng.uniform(0, 100, 17), y0 + rng.uniform(0, 200, 17),
                           np.ones(17)], axis=1)
            ref.append({"image_id": i, "category_id": 1, "score": float(rng.uniform(0.6, 1)),
                        "bbox": [float(x0), float(y0), 100.0, 200.0],
                        "keypoints": kp.reshape(-1).tolist()})
    r = fidelity_ap(ref, ref, iou_type="keypoints")
    assert r["AP"] == ap(1.0) and len(r["stats"]) == 10


def test_to_coco_results_keypoints_and_label_map():
    out = {"boxes": torch.tensor([[10.0, 20.0, 30.0, 60.0]]), "labels": torch.tensor([1]),
           "scores": torch.tensor([0.7]), "keypoints": torch.arange(51.0).reshape(1, 17, 3)}
    (d,) = to_coco_results([out], [42], label_map={1: 5})
    assert d["image_id"] == 42 and d["category_id"] == 5
    assert d["bbox"] == [10.0, 20.0, 20.0, 40.0] and d["score"] == pytest.approx(0.7)
    assert d["keypoints"] == [float(v) for v in range(51)]
    assert to_coco_results([{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0),
                             "scores": torch.zeros(0)}], [1]) == []
    with pytest.raises(InputError):
        to_coco_results([out], [1, 2])


def test_fidelity_ap_segm_hand_computed():
    m = torch.zeros(2, 1, 50, 60, dtype=torch.float64)
    m[0, 0, 5:20, 5:30] = 1.0
    m[1, 0, 25:45, 10:50] = 0.9  # a probability above the 0.5 mask threshold
    ref_out = {"boxes": torch.tensor([[5.0, 5, 30, 20], [10, 25, 50, 45]]),
               "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.9, 0.8]), "masks": m}
    ref = to_coco_results([ref_out], [7])
    assert fidelity_ap(ref, ref, iou_type="segm")["AP"] == ap(1.0)
    # class 3's mask cut in half: mask IoU exactly 400/800 = 0.5 -> matched only at IoU .50
    # (AP 1/10); class 1 untouched (AP 1) -> mean over the 2 categories = 0.55
    m2 = m.clone()
    m2[1] = 0.0
    m2[1, 0, 25:45, 10:30] = 1.0
    r = fidelity_ap(ref, to_coco_results([dict(ref_out, masks=m2)], [7]), iou_type="segm")
    assert r["AP"] == ap(0.55) and r["AP50"] == ap(1.0) and r["AP75"] == ap(0.5)
