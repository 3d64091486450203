"""Per-channel sensitivity of a network cut to codec noise, and QP allocation from it.

After Hu et al., "Sensitivity-Aware Bit Allocation for Intermediate Deep Feature Compression".
Layering: this package uses packing, vcfc and results, never runners: it takes callables
(tail, penultimate) and tensors. See docs/sensitivity.md.

The names below are loaded on first use (PEP 562): the registries (allocation, distances,
options) are torch-free so the CLI can list their choices without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "allocate": ("Allocation", "allocate_lagrangian", "allocate_levels", "allocate_linear", "lagrangian_curve",
                 "lagrangian_for_target", "normalize", "task_weights"),
    "allocation": ("ALLOCATORS", "Allocator", "Target", "allocate_from_profile", "get_allocator", "per_channel"),
    "distances": ("DISTANCES", "Distance", "get_distance"),
    "graph": ("CutBypassed", "extract_subgraph", "linear_head", "penultimate_graph"),
    "levels": ("detection_distance", "measure_levels"),
    "channel_sweep": ("ChannelSweep", "measure", "precision", "resolve_device"),
    "noise": ("rd_tables", "roundtrip", "sweep_spec"),
    "options": ("METHODS", "PRECISIONS", "RdoSettings", "SweepOptions"),
    "profile": ("Profile", "read_profile", "write_profile"),
    "stats": ("spearman",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
