"""vcfc.sensitivity: per-channel sensitivity of a network cut to codec noise, and QP allocation.

After Hu et al., "Sensitivity-Aware Bit Allocation for Intermediate Deep Feature Compression".
Layering: this package uses vcfc.packing, the codec core and vcfc.results, never vcfc.runners:
it takes callables (tail, penultimate) and tensors. See docs/sensitivity.md.

Modules: allocation (rules + the ALLOCATORS registry), channel_sweep (one image's sweep),
kernels (exact / Taylor / naive sweep kernels), measure_profile (a dataset profile), device (device and
precision), distances, noise (codec round trips, R/D tables), perimage (Algorithm 1 per image),
rdo (closed-loop search), levels (pyramid levels), profile (on disk), tail_graphs, options.

The names below are loaded on first use (PEP 562): the registries (allocation, distances,
options) are torch-free so the CLI can list their choices without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "allocation": ("ALLOCATORS", "Allocation", "Allocator", "ImageJob", "Target", "allocate_from_profile",
                   "allocate_lagrangian", "allocate_linear", "lagrangian_for_target", "normalize", "per_channel",
                   "task_weights"),
    "channel_sweep": ("ChannelSweep",),
    "device": ("precision", "resolve_device"),
    "distances": ("DISTANCES", "Distance", "get_distance"),
    "tail_graphs": ("linear_head", "penultimate_graph"),
    "levels": ("detection_distance", "measure_levels"),
    "measure_profile": ("measure",),
    "noise": ("rd_tables", "roundtrip", "sweep_spec"),
    "options": ("DISTORTIONS", "METHODS", "PRECISIONS", "RdoSettings", "SweepOptions"),
    "perimage": ("allocate_image",),
    "profile": ("Profile", "read_profile", "write_profile"),
    "rdo": ("rdo_qps",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
