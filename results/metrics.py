"""Task metrics over numpy arrays or torch tensors (classification, segmentation, output distances).

Conventions: the first axis is the batch (image) axis; class scores/logits have the class axis
at 1 (``[N,C]`` for classification, ``[N,C,H,W]`` for segmentation). Fidelity metrics compare
a run on reconstructed features with the run on the original features, so they need no labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from vcfc.errors import InputError

ArrayLike = Any  # np.ndarray | torch.Tensor | nested lists


def _np(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except (ValueError, TypeError):
        raise InputError(f"{name}: not an array") from None


def _torch(x: ArrayLike) -> torch.Tensor:
    return x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def _same_shape(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.shape != b.shape:
        raise InputError(f"{what}: shapes differ, {a.shape} vs {b.shape}")
    if a.size == 0:
        raise InputError(f"{what}: empty input")


def _logits2d(x: ArrayLike, name: str) -> np.ndarray:
    a = _np(x, name)
    if a.ndim == 1:  # one image
        a = a[None]
    if a.ndim != 2:
        raise InputError(f"{name}: expected logits [N,C], got shape {a.shape}")
    return a


# ---------------------------------------------------------------- classification

def top1_fidelity(ref_logits: ArrayLike, test_logits: ArrayLike) -> float:
    """Share of images whose top-1 class from reconstructed features equals the top-1 class
    from the original features (Chen et al.). Logits or probabilities, ``[N,C]`` or ``[C]``."""
    ref, test = _logits2d(ref_logits, "ref_logits"), _logits2d(test_logits, "test_logits")
    _same_shape(ref, test, "top1_fidelity")
    return float(np.mean(ref.argmax(axis=1) == test.argmax(axis=1)))


def topk_accuracy(logits: ArrayLike, labels: ArrayLike, k: int | Iterable[int] = (1, 5)
                  ) -> dict[str, float]:
    """Top-k accuracy against ground-truth class indices -> ``{"top1": .., "top5": ..}``."""
    scores = _logits2d(logits, "logits")
    lab = _np(labels, "labels").reshape(-1)
    if lab.shape[0] != scores.shape[0]:
        raise InputError(f"topk_accuracy: {scores.shape[0]} logit rows vs {lab.shape[0]} labels")
    if scores.shape[0] == 0:
        raise InputError("topk_accuracy: empty input")
    ks = (k,) if isinstance(k, int) else tuple(k)
    n_cls = scores.shape[1]
    if any(kk < 1 or kk > n_cls for kk in ks):
        raise InputError(f"topk_accuracy: k={ks} must lie in 1..{n_cls}")
    # stable descending sort: ties go to the lower class index, like argmax
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(ks)]
    hit = order == lab.astype(np.int64)[:, None]
    return {f"top{kk}": float(hit[:, :kk].any(axis=1).mean()) for kk in ks}


# ---------------------------------------------------------------- segmentation

def pixel_fidelity(ref_classmap: ArrayLike, test_classmap: ArrayLike,
                   ignore_index: int | None = None) -> float:
    """Share of pixels whose class agrees with the uncompressed run (Hu et al.). Class maps are
    integer ``[H,W]`` or ``[N,H,W]`` (argmax of the logits); pixels where the reference equals
    ``ignore_index`` are left out."""
    ref, test = _np(ref_classmap, "ref_classmap"), _np(test_classmap, "test_classmap")
    _same_shape(ref, test, "pixel_fidelity")
    keep = np.ones(ref.shape, bool) if ignore_index is None else ref != ignore_index
    if not keep.any():
        raise InputError("pixel_fidelity: every pixel is ignored")
    return float(np.mean(ref[keep] == test[keep]))


class ConfusionMatrix:
    """Accumulates a ``num_classes x num_classes`` confusion matrix (rows = label, cols = pred)
    over images, so mIoU is computed over the whole set as in the VOC protocol."""

    def __init__(self, num_classes: int, ignore_index: int | None = 255) -> None:
        if num_classes < 1:
            raise InputError(f"ConfusionMatrix: num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, pred: ArrayLike, label: ArrayLike) -> "ConfusionMatrix":
        p = _np(pred, "pred").astype(np.int64, copy=False).reshape(-1)
        t = _np(label, "label").astype(np.int64, copy=False).reshape(-1)
        if p.shape != t.shape:
            raise InputError(f"ConfusionMatrix.update: pred has {p.size} pixels, label {t.size}")
        keep = np.ones(t.shape, bool) if self.ignore_index is None else t != self.ignore_index
        p, t = p[keep], t[keep]
        n = self.num_classes
        if t.size and (t.min() < 0 or t.max() >= n):
            raise InputError(f"ConfusionMatrix.update: label values outside 0..{n - 1} "
                             f"(ignore_index={self.ignore_index})")
        if p.size and (p.min() < 0 or p.max() >= n):
            raise InputError(f"ConfusionMatrix.update: predicted classes outside 0..{n - 1}")
        self.matrix += np.bincount(t * n + p, minlength=n * n).reshape(n, n)
        return self

    def iou(self) -> np.ndarray:
        """Per-class IoU; NaN for classes absent from both labels and predictions."""
        m = self.matrix.astype(np.float64)
        inter = np.diag(m)
        union = m.sum(0) + m.sum(1) - inter
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, inter / union, np.nan)

    def miou(self) -> float:
        """Mean IoU over classes that occur (in labels or predictions)."""
        iou = self.iou()
        if np.isnan(iou).all():
            raise InputError("ConfusionMatrix.miou: no pixels accumulated")
        return float(np.nanmean(iou))

    def pixel_acc(self) -> float:
        total = self.matrix.sum()
        if total == 0:
            raise InputError("ConfusionMatrix.pixel_acc: no pixels accumulated")
        return float(np.trace(self.matrix) / total)


def miou(pred: ArrayLike, label: ArrayLike, num_classes: int, ignore_index: int | None = 255
         ) -> float:
    """mIoU of one class map (or a batch ``[N,H,W]``) against labels, via a confusion matrix."""
    return ConfusionMatrix(num_classes, ignore_index).update(pred, label).miou()


# ---------------------------------------------------------------- output distances

def output_mse(ref: ArrayLike, test: ArrayLike) -> np.ndarray:
    """Per-image mean squared error between two network outputs -> float64 ``[N]``
    (a 1-D input is one image)."""
    a = _np(ref, "ref").astype(np.float64)
    b = _np(test, "test").astype(np.float64)
    _same_shape(a, b, "output_mse")
    if a.ndim == 1:
        a, b = a[None], b[None]
    return ((a - b) ** 2).reshape(a.shape[0], -1).mean(axis=1)


def kl_rows(ref_logits: torch.Tensor, test_logits: torch.Tensor) -> torch.Tensor:
    """Per-row KL(softmax(ref) || softmax(test)) in nats, float64, differentiable.

    Class axis 1; dense outputs ``[N,C,H,W]`` are averaged over pixels; ``ref`` may have one row
    broadcast against many (the sensitivity sweep). log_softmax in float64: the KL of nearly
    equal outputs is tiny and would round below zero in float32."""
    la = torch.log_softmax(ref_logits.double(), dim=1)
    lb = torch.log_softmax(test_logits.double(), dim=1)
    kl = (la.exp() * (la - lb)).sum(dim=1)  # [N, *spatial]
    return kl.reshape(kl.shape[0], -1).mean(dim=1).clamp_min(0.0)  # rounding can dip below 0


def output_kl(ref_logits: ArrayLike, test_logits: ArrayLike) -> np.ndarray:
    """Per-image KL(softmax(ref) || softmax(test)) in nats -> float64 ``[N]`` (see kl_rows)."""
    a, b = _torch(ref_logits), _torch(test_logits)
    if a.shape != b.shape:
        raise InputError(f"output_kl: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.numel() == 0:
        raise InputError("output_kl: empty input")
    if a.ndim == 1:
        a, b = a[None], b[None]
    return kl_rows(a, b).numpy()
