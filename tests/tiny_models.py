"""A small classifier of one's own, for the custom-model tests (`tests.tiny_models:tiny`)."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.transforms import v2


def tiny() -> nn.Module:
    """3×64×64 → 10 classes; cut it at "2" (16×32×32) or "5" (32×16×16)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # 0 1 2
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 3 4 5
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),       # 6 7 8
    )


def tiny_with_transform() -> tuple[nn.Module, v2.Compose]:
    """The same network and the input it expects: 64×64, scaled to [0, 1]."""
    return tiny(), v2.Compose([v2.PILToTensor(), v2.Resize(72), v2.CenterCrop(64),
                               v2.ToDtype(torch.float32, scale=True)])


def not_a_module() -> str:
    return "nope"


def tiny_segmenter() -> nn.Module:
    """3×64×64 → per-pixel logits of 4 classes at input resolution (one tensor, not a dict).
    Upsampled by a factor, not to x's size: an output size read from the input would bypass any cut."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 2: 8×32×32
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1),
                         nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))


def to_64(img) -> torch.Tensor:
    """A transform of one's own: any picture to 3×64×64 in [0, 1], no normalisation."""
    return v2.Compose([v2.PILToTensor(), v2.Resize((64, 64)), v2.ToDtype(torch.float32, scale=True)])(img)
