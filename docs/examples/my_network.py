"""An example of your own network for vcfc: `vcfc run my_network.toml --out runs/mine` from this
folder (or name it `my_network:build` anywhere this folder is on $VCFC_MODEL_PATH).

vcfc calls build() and gets an nn.Module (or a (module, transform) pair); the experiment file
names the cut by module path ("features.3": the output of that submodule) and may give a
checkpoint (a state_dict; `python my_network.py` writes one with seeded weights).
"""

from __future__ import annotations

import torch
from torch import nn


class SmallNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.ReLU(),    # features.0, .1: 32 × 112 × 112
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),   # features.2, .3: 64 × 56 × 56
            nn.Conv2d(64, 64, 3, stride=2, padding=1), nn.ReLU(),   # features.4, .5: 64 × 28 × 28
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build() -> nn.Module:
    return SmallNet()


def prepare(img) -> torch.Tensor:
    """An input transform of one's own (`transform = "my_network:prepare"`): PIL image -> 3×224×224
    in [0, 1]. Without one, ImageNet's resize 256, crop 224 and normalisation."""
    from torchvision.transforms import v2

    return v2.Compose([v2.PILToTensor(), v2.Resize(224), v2.CenterCrop(224), v2.ToDtype(torch.float32, scale=True)])(img)


if __name__ == "__main__":
    torch.manual_seed(0)
    torch.save(build().state_dict(), "my_network.pt")
    print("wrote my_network.pt")
