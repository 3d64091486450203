"""Per-channel sensitivity of a network cut to codec noise, and QP allocation from it.

After Hu et al., "Sensitivity-Aware Bit Allocation for Intermediate Deep Feature Compression".
This package never imports `runners`: it takes callables (tail, penultimate) and tensors.
See docs/sensitivity.md.
"""

from .allocate import (Allocation, allocate_lagrangian, allocate_levels, allocate_linear,
                       lagrangian_curve, lagrangian_for_target, task_weights)
from .distances import DISTANCES
from .graph import linear_head, penultimate_graph
from .levels import detection_distance, measure_levels
from .measure import METHODS, measure, resolve_device
from .noise import CodecSpec, rd_tables, roundtrip
from .profile import Profile, normalize, read_profile, write_profile
from .stats import spearman

__all__ = [
    "Allocation", "CodecSpec", "DISTANCES", "METHODS", "Profile", "allocate_lagrangian",
    "allocate_levels", "allocate_linear", "detection_distance", "lagrangian_curve",
    "lagrangian_for_target", "linear_head", "measure", "measure_levels", "normalize",
    "penultimate_graph", "rd_tables", "read_profile", "resolve_device", "roundtrip", "spearman",
    "task_weights", "write_profile",
]
