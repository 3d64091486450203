"""Dataset kinds (registry KINDS: name → "module:Class", imported on first use), torch-free so the
CLI can offer them as choices without importing torch. `auto` detects one of the others."""

from __future__ import annotations

import importlib
from typing import Any

from vcfc.registry import Registry

KINDS: Registry[str] = Registry("dataset kind", [
    ("auto", ""),
    ("folder", "vcfc.runners.datasets:FolderDataset"),
    ("imagenet", "vcfc.runners.datasets:ImageNetDataset"),
    ("coco", "vcfc.runners.datasets:CocoDataset"),
    ("voc", "vcfc.runners.datasets:VocDataset"),
])


def dataset_class(kind: str) -> Any:
    """The dataset class of a (detected) kind."""
    module, _, name = KINDS.get(kind).partition(":")
    return getattr(importlib.import_module(module), name)
